"""Shared settings for the ppl test suite (strategies live in tests/_strategies.py)."""

import jax
import pytest
from hypothesis import HealthCheck, settings

settings.register_profile(
    "ppl",
    deadline=None,
    derandomize=True,  # fixed seeds: the same examples on every run
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    print_blob=True,
)
settings.load_profile("ppl")


# ``make test`` runs ``--dist loadfile``: xdist hands whole files to the workers in
# collection order, so a slow file collected last would run alone at the end.
# These (the slowest, measured with --durations) go first; the rest keep their order.
SLOWEST_FIRST = (
    "tests/inference/test_dependent_supports_random.py",
    "tests/examples/test_dgm.py",
    "tests/test_switch_laws.py",
    "tests/examples/test_hmm_nuts.py",
    "tests/examples/test_vi_examples.py",
    "tests/test_docs.py",
    "tests/vi/test_autoguide_compiles.py",
    "tests/examples/test_eight_schools.py",
    "tests/test_caches.py",
    "tests/inference/test_dependent_supports.py",
    "tests/test_sum_out_random.py",
    "tests/vi/test_autoguide_use.py",
    "tests/inference/test_examples.py",
)


def pytest_collection_modifyitems(session, config, items):
    rank = {path: i for i, path in enumerate(SLOWEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.nodeid.split("::")[0], len(rank)))


@pytest.fixture
def key():
    return jax.random.key(0)
