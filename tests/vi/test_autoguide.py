"""Automatic guides recover exact posteriors.

Each model's posterior is in the guide's family in unconstrained coordinates,
so the only error left is the optimiser's: Adam with a step decayed to 2e-3
and 8 samples per step, from a fixed seed. The tolerances are that
optimisation tolerance (observed errors are a few times smaller), stated per
test as a fraction of the posterior's standard deviation. Densities (the
log-Jacobian, supports that depend on other choices) are checked against
quadrature within 4 Monte Carlo standard errors.
"""

import collections
import contextlib
import importlib

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from scipy import integrate, stats

import ppl
from ppl import gen, normal
from ppl.inference import vi

_BACKEND_COMPILE = "/jax/core/compile/backend_compile_duration"
_CHUNK = f"jit({importlib.import_module('ppl.inference.vi.fit_loop')._run_chunk.__name__})"


@contextlib.contextmanager
def compiles():
    """Count XLA compilations by function name while the block runs."""
    counts = collections.Counter()

    def listener(event: str, duration_secs: float, **kwargs: str | int) -> None:
        if event == _BACKEND_COMPILE:
            counts[kwargs.get("fun_name", "?")] += 1

    jax.monitoring.register_event_duration_secs_listener(listener)
    try:
        yield counts
    finally:
        jax.monitoring.unregister_event_duration_listener(listener)


def _optimizer():
    return optax.adam(optax.exponential_decay(0.05, 1500, 0.04))


def _fit(model, guide, obs, guide_args, steps=1500, seed=1):
    """A fit, then the same fit again: one compile, then none."""
    objective, optimizer = vi.elbo(model, guide, obs), _optimizer()

    def run():
        return vi.fit(
            objective,
            jax.random.key(seed),
            (),
            guide_args,
            optimizer=optimizer,
            steps=steps,
            num_samples=8,
            progress=False,
        )

    with compiles() as first:
        result = run()
    with compiles() as second:
        again = run()
    assert first[_CHUNK] == 1, dict(first)
    assert sum(second.values()) == 0, dict(second)
    assert (result.history == again.history).all()
    return result


# z (3,) ~ normal, ys ~ normal(z, 0.5); s ~ lognormal(0, 1), ws ~ lognormal(log s, 0.5):
# the posterior of (z, log s) is normal with independent coordinates.
Y = jnp.array([0.5, -1.0, 2.0])
W = jnp.array([1.5, 0.7, 2.2, 1.1, 0.9])


@gen
def conjugate():
    z = normal(jnp.zeros(3), 1.0) @ "z"
    y = normal(z, 0.5) @ "y"
    s = ppl.lognormal(0.0, 1.0) @ "s"
    return y, ppl.lognormal(jnp.full(5, jnp.log(s)), 0.5) @ "w"


OBS = {"y": Y, "w": W}
Z_VAR = 1.0 / (1.0 + 4.0)
Z_MEAN = 4.0 * Y * Z_VAR
U_VAR = 1.0 / (1.0 + 5 / 0.25)
U_MEAN = U_VAR * float(jnp.sum(jnp.log(W))) / 0.25
EXACT_MEAN = jnp.concatenate([Z_MEAN, jnp.array([U_MEAN])])
EXACT_SD = jnp.sqrt(jnp.array([Z_VAR] * 3 + [U_VAR]))


def test_mean_field_recovers_a_conjugate_posterior_with_a_positive_scale():
    auto = vi.auto_normal(conjugate, OBS)
    assert [lat.path for lat in auto.layout.latents] == [("z",), ("s",)]
    result = _fit(conjugate, auto.guide, OBS, auto.guide_args)
    (params,) = result.guide_args
    sd = jnp.sqrt(jnp.diag(auto.covariance(result.guide_args)))
    # optimisation tolerance: 0.1 posterior sd for the mean, 10% for the sd
    assert jnp.all(jnp.abs(params["loc"] - EXACT_MEAN) < 0.1 * EXACT_SD), params["loc"]
    assert jnp.all(jnp.abs(sd / EXACT_SD - 1.0) < 0.1), sd
    # the median is exp(loc) for the scale: the log-Jacobian put the mode where it belongs
    assert jnp.allclose(auto.median(result.guide_args)["s"], jnp.exp(params["loc"][3]))


def test_delta_finds_the_map_and_laplace_is_exact_from_it():
    auto = vi.auto_delta(conjugate, OBS)
    result = _fit(conjugate, auto.guide, OBS, auto.guide_args)
    point = auto.median(result.guide_args)
    # the MAP in constrained space: the mean for z, exp(mean - var) for s (a lognormal's mode)
    assert jnp.all(jnp.abs(point["z"] - Z_MEAN) < 0.02 * jnp.sqrt(Z_VAR))
    assert abs(float(jnp.log(point["s"])) - (U_MEAN - U_VAR)) < 0.02 * float(np.sqrt(U_VAR))
    # Newton from the MAP to the mode in unconstrained coordinates, then the inverse Hessian:
    # exact for a normal posterior, up to float32 round-off
    laplace = vi.auto_laplace(auto, result.guide_args)
    (params,) = laplace.guide_args
    assert jnp.allclose(params["loc"], EXACT_MEAN, atol=1e-4)
    assert jnp.allclose(laplace.covariance(), jnp.diag(EXACT_SD**2), atol=1e-4)


# a, b ~ normal(0, 1), y ~ normal(a + b, 0.5): a posterior correlation of -0.8
@gen
def correlated():
    a = normal(0.0, 1.0) @ "a"
    b = normal(0.0, 1.0) @ "b"
    return normal(a + b, 0.5) @ "y"


CORR_OBS = {"y": 1.0}
CORR_COV = jnp.array([[5.0, -4.0], [-4.0, 5.0]]) / 9.0
CORR_MEAN = CORR_COV @ jnp.array([4.0, 4.0])


@pytest.mark.parametrize("family", ["full", "low_rank"])
def test_multivariate_normals_recover_a_correlated_posterior(family):
    if family == "full":
        auto = vi.auto_multivariate_normal(correlated, CORR_OBS)
    else:
        auto = vi.auto_low_rank_normal(correlated, CORR_OBS, rank=1)
    result = _fit(correlated, auto.guide, CORR_OBS, auto.guide_args)
    (params,) = result.guide_args
    sd = jnp.sqrt(jnp.diag(CORR_COV))
    cov = auto.covariance(result.guide_args)
    # optimisation tolerance: 0.1 posterior sd for the mean, 0.1 for the correlation
    assert jnp.all(jnp.abs(params["loc"] - CORR_MEAN) < 0.1 * sd), params["loc"]
    assert jnp.all(jnp.abs(jnp.sqrt(jnp.diag(cov)) / sd - 1.0) < 0.1), cov
    corr = cov[0, 1] / jnp.sqrt(cov[0, 0] * cov[1, 1])
    assert abs(float(corr) + 0.8) < 0.1, cov


# a ~ gamma(2, 1), b ~ uniform(0, a): the support of b follows a.
@gen
def dependent():
    a = ppl.gamma(2.0, 1.0) @ "a"
    b = ppl.uniform(0.0, a) @ "b"
    return normal(b, 0.5) @ "y"


def _log_evidence(y=0.3):
    def integrand(a):
        inside = stats.norm.cdf((a - y) / 0.5) - stats.norm.cdf(-y / 0.5)
        return stats.gamma.pdf(a, 2.0) / a * inside

    return float(np.log(integrate.quad(integrand, 0.0, np.inf)[0]))


def test_dependent_support_guide_is_a_normalised_density_in_program_order():
    auto = vi.auto_normal(dependent, {"y": 0.3})
    result = _fit(dependent, auto.guide, {"y": 0.3}, auto.guide_args, steps=600)
    guide, guide_args = auto.guide, result.guide_args

    def log_weight(key):
        tr = guide.simulate(key, guide_args)
        assert_inside = tr.choices["b"] < tr.choices["a"]
        logp, _ = dependent.assess(tr.choices | ppl.ChoiceMap.d({"y": 0.3}), ())
        return logp - tr.score, assert_inside

    log_w, inside = jax.jit(jax.vmap(log_weight))(jax.random.split(jax.random.key(7), 20_000))
    assert bool(jnp.all(inside))
    w = np.exp(np.asarray(log_w, np.float64))
    estimate, mcse = np.log(w.mean()), w.std() / w.mean() / np.sqrt(w.size)
    exact = _log_evidence()
    # E_q[p / q] = p(y) only if q's density (Jacobians in program order) is right
    assert abs(estimate - exact) < 4 * mcse, (estimate, exact, mcse)
    # and the fitted ELBO is below it
    assert np.mean(np.log(w)) < exact
