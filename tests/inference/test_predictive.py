"""ppl.inference.predictive against the exact predictive of a conjugate normal model.

mu ~ N(0, 2), y ~ N(mu, 1): the prior predictive of y is N(0, 5); given y = 0.5
the posterior of mu is N(0.4, 0.8) and the posterior predictive of a new y is
N(0.4, 1.8). Tolerances are four Monte Carlo standard errors (with the ESS of
correlated or resampled draws); seeds are fixed.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import ppl
from ppl.inference import predictive, vi

KEY = jax.random.key(1)
Y = 0.5
PRIOR_VAR = 5.0
POST_MEAN, POST_VAR = 0.4, 0.8
PRED_VAR = POST_VAR + 1.0


@ppl.gen
def model():
    mu = ppl.normal(0.0, 2.0) @ "mu"
    ppl.deterministic(2.0 * mu) @ "two_mu"
    return ppl.normal(mu, 1.0) @ "y"


@ppl.gen
def exact_guide(m, s):
    return ppl.normal(m, s) @ "mu"


def _check_moments(x, mean, var, ess=None):
    x = np.asarray(x, np.float64).ravel()
    ess = x.size if ess is None else ess
    assert abs(x.mean() - mean) < 4 * math.sqrt(var / ess), (x.mean(), mean)
    # the variance's standard error for normal draws: var * sqrt(2 / (ess - 1))
    assert abs(x.var() - var) < 4 * var * math.sqrt(2.0 / (ess - 1)), (x.var(), var)


def test_prior_predictive():
    draws = predictive(KEY, model, (), n=4000)
    assert draws.n == 4000
    _check_moments(draws["y"], 0.0, PRIOR_VAR)
    np.testing.assert_allclose(draws["two_mu"], 2.0 * draws["mu"], rtol=1e-6)
    np.testing.assert_allclose(draws.retval, draws["y"])
    only_y = predictive(KEY, model, (), n=10, addresses="y")
    assert only_y.choices.addresses() == [("y",)]


def test_posterior_predictive_from_mcmc():
    r = ppl.inference.run_mcmc(
        KEY, ppl.inference.hmc(step_size=0.8), model, (), {"y": Y}, n_samples=1000, n_warmup=200
    )
    assert "two_mu" in r.samples.to_dict()  # deterministic values come with the samples
    draws = predictive(KEY, model, (), posterior=r, addresses=["y", "mu"])
    assert draws.n == 4 * 1000
    np.testing.assert_allclose(draws["mu"], np.asarray(r.samples["mu"]).reshape(-1))
    ess = min(float(r.ess()["mu"]), 4000.0)
    _check_moments(draws["y"], POST_MEAN, PRED_VAR, ess)


def test_posterior_predictive_from_importance_resamples():
    obs = {"y": Y}
    r = ppl.inference.importance(KEY, model, obs, (), n=4000)
    draws = predictive(KEY, model, (), posterior=r, observations=obs, n=3000)
    assert draws.n == 3000
    ess = 1.0 / (1.0 / float(r.ess) + 1.0 / 3000)  # weights, then resampling
    _check_moments(draws["y"], POST_MEAN, PRED_VAR, ess)
    with pytest.raises(ppl.PPLError, match="observations="):
        predictive(KEY, model, (), posterior=r)


def test_posterior_predictive_from_a_guide_and_from_draws():
    guide_args = (jnp.asarray(POST_MEAN), jnp.asarray(math.sqrt(POST_VAR)))
    draws = predictive(KEY, model, (), posterior=(exact_guide, guide_args), n=4000)
    _check_moments(draws["mu"], POST_MEAN, POST_VAR)
    _check_moments(draws["y"], POST_MEAN, PRED_VAR)
    given = ppl.ChoiceMap.d({"mu": jnp.array([0.0, 10.0])})
    out = predictive(KEY, model, (), posterior=given)
    np.testing.assert_allclose(out["two_mu"], [0.0, 20.0])
    assert abs(float(out["y"][1]) - 10.0) < 5.0


def test_predictive_under_jit_and_with_new_arguments():
    @ppl.gen
    def regression(xs):
        slope = ppl.normal(0.0, 1.0) @ "slope"
        return ppl.vmap(lambda_obs)(xs, slope * jnp.ones_like(xs)) @ "y"

    draws = jax.jit(lambda k: predictive(k, regression, (jnp.arange(3.0),), n=500).choices)(KEY)
    assert draws["y", "y"].shape == (500, 3)
    given = ppl.ChoiceMap.d({"slope": jnp.ones(200)})
    new = predictive(KEY, regression, (jnp.array([10.0]),), posterior=given)
    _check_moments(new["y", "y"], 10.0, 0.01)


@ppl.gen
def lambda_obs(x, slope):
    return ppl.normal(slope * x, 0.1) @ "y"


def test_predictive_errors():
    with pytest.raises(ppl.PPLError, match="needs n="):
        predictive(KEY, model, ())
    with pytest.raises(ppl.PPLError, match="records nothing at 'z'"):
        predictive(KEY, model, (), n=3, addresses="z")
    with pytest.raises(ppl.PPLError, match="must be None"):
        predictive(KEY, model, (), posterior=3.0)
    with pytest.raises(ppl.PPLError, match="no meaning"):
        predictive(KEY, model, (), posterior=ppl.ChoiceMap.d({"mu": jnp.zeros(2)}), n=2)
    auto = vi.auto_normal(model, {"y": 0.5})
    with pytest.raises(
        ppl.PPLError, match=r"initial parameters.*\(auto.guide, result.guide_args\)"
    ):
        predictive(KEY, model, (), posterior=auto, n=3)
