"""The flowjax guide: a normalised density over constrained values in program order."""

import collections
import contextlib

import jax
import numpy as np
import optax
import pytest
from scipy import integrate, stats

import ppl
from ppl.inference import vi

pytest.importorskip("flowjax")

from ppl.inference.vi.autoguide_flow import auto_flow  # noqa: E402


@contextlib.contextmanager
def compiles():
    """Count XLA compilations by function name while the block runs."""
    counts = collections.Counter()

    def listener(event: str, duration_secs: float, **kwargs: str | int) -> None:
        if event == "/jax/core/compile/backend_compile_duration":
            counts[kwargs.get("fun_name", "?")] += 1

    jax.monitoring.register_event_duration_secs_listener(listener)
    try:
        yield counts
    finally:
        jax.monitoring.unregister_event_duration_listener(listener)


def _log_evidence(y=0.3):
    """log p(y) of the model below, by quadrature over a (b integrated in closed form)."""

    def integrand(a):
        inside = stats.norm.cdf((a - y) / 0.5) - stats.norm.cdf(-y / 0.5)
        return stats.gamma.pdf(a, 2.0) / a * inside

    return float(np.log(integrate.quad(integrand, 0.0, np.inf)[0]))


@ppl.gen
def dependent():
    a = ppl.gamma(2.0, 1.0) @ "a"
    b = ppl.uniform(0.0, a) @ "b"  # the support of b follows a
    return ppl.normal(b, 0.5) @ "y"


def test_flow_guide_fits_with_one_compile_and_is_a_normalised_density():
    obs = {"y": 0.3}
    guide, guide_args = auto_flow(dependent, obs, flow_layers=1, nn_width=8)
    objective = vi.elbo(dependent, guide, obs)
    with compiles() as counts:
        result = vi.fit(
            objective,
            jax.random.key(1),
            (),
            guide_args,
            optimizer=optax.adam(0.01),
            steps=300,
            num_samples=4,
            progress=False,
        )
    assert counts["jit(_run_chunk)"] == 1, dict(counts)
    fitted = result.guide_args

    def log_weight(key):
        tr = guide.simulate(key, fitted)
        logp, _ = dependent.assess(tr.choices | ppl.ChoiceMap.d(obs), ())
        return logp - tr.score, tr.choices["b"] < tr.choices["a"]

    log_w, inside = jax.jit(jax.vmap(log_weight))(jax.random.split(jax.random.key(7), 20_000))
    assert bool(np.all(inside))
    w = np.exp(np.asarray(log_w, np.float64))
    estimate, mcse = np.log(w.mean()), w.std() / w.mean() / np.sqrt(w.size)
    # E_q[p / q] = p(y) only if the flow's density, Jacobians included, is right
    assert abs(estimate - _log_evidence()) < 4 * mcse, (estimate, _log_evidence(), mcse)
    assert np.mean(np.log(w)) < _log_evidence()
