"""``sum_out`` on the sampling side of an expectation: a guide whose discrete
choices are summed out is differentiated by the score of its exact marginal,
checked against the exact gradient (closed form, and quadrature for an ELBO)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from _adev_util import assert_close_mc

import ppl
from ppl.inference import vi


@ppl.gen
def mixture_guide(theta):
    z = ppl.flip(jax.nn.sigmoid(theta[0])) @ "z"
    return ppl.normal(jnp.where(z, theta[1], theta[2]), 1.0) @ "x"


@ppl.gen
def model():
    z = ppl.flip(0.3) @ "z"
    x = ppl.normal(jnp.where(z, 2.0, -1.0), 1.0) @ "x"
    return ppl.normal(x, 1.0) @ "y"


GUIDE = ppl.sum_out(mixture_guide, ppl.select("z"))
THETA = jnp.array([0.4, 1.0, -0.5])
A = 0.3


def _grads(fn, n=6000):
    keys = jax.random.split(jax.random.key(0), n)
    return np.asarray(jax.jit(jax.vmap(fn))(keys), np.float64)


def test_sim_of_a_summed_guide_is_unbiased_for_a_closed_form_expectation():
    @ppl.expectation
    def f(theta):
        choices, _ = ppl.sim(GUIDE)(theta) @ "q"
        return -((choices["x"] - A) ** 2)

    def exact(theta):  # E[-(x - a)^2] for x ~ N(m, 1) is -((m - a)^2 + 1)
        w = jax.nn.sigmoid(theta[0])
        return -(w * ((theta[1] - A) ** 2 + 1) + (1 - w) * ((theta[2] - A) ** 2 + 1))

    samples = _grads(lambda k: f.grad_estimate(k, (THETA,))[0])
    assert_close_mc(samples, jax.grad(exact)(THETA), what="d/dtheta E[f]")


def test_a_sum_out_called_inside_a_gen_function_is_estimated_whole():
    @ppl.gen
    def outer(theta):
        return GUIDE(theta) @ "inner"

    @ppl.expectation
    def f(theta):
        choices, logq = ppl.sim(outer)(theta) @ "q"
        return -((choices["inner", "x"] - A) ** 2)

    def exact(theta):
        w = jax.nn.sigmoid(theta[0])
        return -(w * ((theta[1] - A) ** 2 + 1) + (1 - w) * ((theta[2] - A) ** 2 + 1))

    samples = _grads(lambda k: f.grad_estimate(k, (THETA,))[0])
    assert_close_mc(samples, jax.grad(exact)(THETA), what="d/dtheta E[f]")


@jax.jit
def _exact_elbo(theta):
    """The ELBO of the summed guide against the summed model, by quadrature in x."""
    x = jnp.linspace(-9.0, 9.0, 2001)
    dx = x[1] - x[0]
    obs = ppl.ChoiceMap.d({"y": 0.5})
    marginal = ppl.sum_out(model, ppl.select("z"))
    log_p = jax.vmap(lambda xi: marginal.assess(obs | ppl.ChoiceMap.d({"x": xi}), ())[0])(x)
    log_q = jax.vmap(lambda xi: GUIDE.assess(ppl.ChoiceMap.d({"x": xi}), (theta,))[0])(x)
    return jnp.sum(jnp.exp(log_q) * (log_p - log_q)) * dx


@pytest.mark.parametrize("baseline", [None, 0.5])
def test_the_elbo_with_summed_guide_and_model_has_the_quadrature_gradient(baseline):
    obs = ppl.ChoiceMap.d({"y": 0.5})
    strategies = None if baseline is None else {(): ppl.reinforce(baseline=baseline)}
    objective = vi.elbo(ppl.sum_out(model, ppl.select("z")), GUIDE, obs, strategies=strategies)
    values = _grads(lambda k: objective.estimate(k, (), (THETA,)))
    assert_close_mc(values, _exact_elbo(THETA), what="ELBO")
    samples = _grads(lambda k: objective.grad_estimate(k, (), (THETA,))[1][0])
    assert_close_mc(samples, jax.grad(_exact_elbo)(THETA), what="d/dtheta ELBO")


def test_strategies_for_choices_inside_a_summed_guide_are_refused_with_the_fix():
    objective = vi.elbo(
        ppl.sum_out(model, ppl.select("z")),
        GUIDE,
        ppl.ChoiceMap.d({"y": 0.5}),
        strategies={"x": ppl.reparam},
    )
    with pytest.raises(ppl.PPLError, match=r"score function of its exact marginal.*reinforce"):
        objective.estimate(jax.random.key(0), (), (THETA,))


def test_fit_moves_a_summed_guide_towards_the_exact_posterior():
    """Fitting raises the exact ELBO (by quadrature) of the summed guide."""
    obs = ppl.ChoiceMap.d({"y": 0.5})
    objective = vi.elbo(ppl.sum_out(model, ppl.select("z")), GUIDE, obs)
    fitted = vi.fit(
        objective, jax.random.key(1), (), (THETA,), steps=1500, num_samples=16, progress=False
    )
    assert float(_exact_elbo(fitted.guide_args[0])) > float(_exact_elbo(THETA)) + 0.05
