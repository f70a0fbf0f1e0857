"""Importance sampling and SIR against exact marginal likelihoods and posteriors."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import ppl
from ppl.inference import importance, sir

from _models import (
    NN_DATA,
    kalman_log_marginal,
    lgssm,
    lgssm_data,
    normal_normal,
    normal_normal_log_marginal,
    normal_normal_posterior,
)

NN_ARGS = (jnp.zeros(5),)
NN_OBS = {"y": NN_DATA}


def _ratio_mean_within(log_z_hats, log_z, k=5.0):
    """exp(log Z_hat - log Z) has mean 1 when Z_hat is unbiased; check within k MC standard
    errors."""
    r = np.exp(np.asarray(log_z_hats, np.float64) - log_z)
    se = r.std(ddof=1) / np.sqrt(len(r))
    assert abs(r.mean() - 1.0) < k * se + 1e-3, (r.mean(), se)


def test_prior_proposal_unbiased_normal_normal():
    f = jax.jit(
        jax.vmap(
            lambda k: (
                importance(
                    k, normal_normal, NN_OBS, NN_ARGS, n=50, check=False
                ).log_marginal_likelihood
            )
        )
    )
    _ratio_mean_within(f(jax.random.split(jax.random.key(0), 400)), normal_normal_log_marginal())


def test_custom_proposal_near_posterior_is_efficient():
    mean, var = normal_normal_posterior()

    @ppl.gen
    def q(m, s):
        return ppl.normal(m, s) @ "mu"

    r = importance(
        jax.random.key(1),
        normal_normal,
        NN_OBS,
        NN_ARGS,
        proposal=q,
        proposal_args=(mean, 1.2 * np.sqrt(var)),
        n=2000,
    )
    assert r.ess > 1500
    assert abs(float(r.log_marginal_likelihood) - normal_normal_log_marginal()) < 0.02
    assert abs(float(r.expectation(lambda t: t["mu"])) - mean) < 5 * np.sqrt(var / r.ess)


def test_lgssm_unbiased_and_consistent_against_kalman():
    T = 6
    ys = lgssm_data(T)
    exact = kalman_log_marginal(ys)
    obs = ppl.ChoiceMap.d({"y": ys})
    model = lgssm(T)

    def estimates(n, reps, seed):
        f = jax.jit(
            jax.vmap(
                lambda k: (
                    importance(k, model, obs, (0.0, None), n=n, check=False).log_marginal_likelihood
                )
            )
        )
        return np.asarray(f(jax.random.split(jax.random.key(seed), reps)))

    small, large = estimates(100, 200, 2), estimates(3000, 40, 3)
    _ratio_mean_within(small, exact)
    _ratio_mean_within(large, exact)
    # Consistency: the log-space error shrinks as particles grow.
    assert np.mean((large - exact) ** 2) < 0.5 * np.mean((small - exact) ** 2)


def test_sir_returns_posterior_samples():
    mean, var = normal_normal_posterior()
    traces = sir(jax.random.key(4), normal_normal, NN_OBS, NN_ARGS, n=5000, m=2000)
    mus = np.asarray(traces.choices["mu"])
    assert mus.shape == (2000,)
    # The m draws are correlated through the n particles; ESS of n=5000 prior draws is about 1000.
    assert abs(mus.mean() - mean) < 5 * np.sqrt(var / 500)


def test_mismatched_observation_address_is_an_error():
    with pytest.raises(ppl.PPLError, match="no random choice at 'why'"):
        importance(jax.random.key(0), normal_normal, {"why": NN_DATA}, NN_ARGS, n=10)


def test_observation_of_wrong_shape_is_an_error():
    with pytest.raises(ppl.PPLError, match="shape"):
        importance(jax.random.key(0), normal_normal, {"y": NN_DATA[:3]}, NN_ARGS, n=10)


def test_proposal_that_samples_an_observation_is_an_error():
    @ppl.gen
    def q():
        ppl.normal(0.0, 1.0) @ "mu"
        return ppl.normal(jnp.zeros(5), 1.0) @ "y"

    with pytest.raises(ppl.PPLError, match="samples 'y', which is observed"):
        importance(jax.random.key(0), normal_normal, NN_OBS, NN_ARGS, proposal=q, n=10)


def test_non_finite_weights_are_an_error():
    @ppl.gen
    def model():
        mu = ppl.normal(0.0, 1.0) @ "mu"
        return ppl.normal(0.0, jnp.sqrt(mu - 100.0)) @ "y"  # a NaN scale for every mu

    with pytest.raises(ppl.PPLError, match="10 of 10 log weights are NaN or \\+inf"):
        importance(jax.random.key(0), model, {"y": 1.0}, (), n=10)


def test_zero_probability_everywhere_is_an_error():
    @ppl.gen
    def model():
        p = ppl.uniform(0.0, 0.5) @ "p"
        return ppl.uniform(0.0, p) @ "y"

    with pytest.raises(ppl.PPLError, match="every log weight is -inf"):
        importance(jax.random.key(0), model, {"y": 0.9}, (), n=10)


def test_particle_counts_below_one_are_an_error_naming_the_argument():
    @ppl.gen
    def model():
        mu = ppl.normal(0.0, 1.0) @ "mu"
        return ppl.normal(mu, 1.0) @ "y"

    for n in (0, -3):
        with pytest.raises(
            ppl.PPLError, match=f"number of particles, n, is {n}; it must be at least 1.*n=1000"
        ):
            importance(jax.random.key(0), model, {"y": 1.0}, (), n=n)
    with pytest.raises(ppl.PPLError, match="n, must be a positive int.*got 2.5"):
        # a float is the mistake this checks for
        importance(jax.random.key(0), model, {"y": 1.0}, (), n=2.5)  # pyright: ignore[reportArgumentType]
    with pytest.raises(ppl.PPLError, match="sir: the number of traces returned, m, is 0"):
        ppl.inference.sir(jax.random.key(0), model, {"y": 1.0}, (), n=10, m=0)
    assert importance(
        jax.random.key(0), model, {"y": 1.0}, (), n=np.int64(1)
    ).log_weights.shape == (1,)
