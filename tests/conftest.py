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


@pytest.fixture
def key():
    return jax.random.key(0)
