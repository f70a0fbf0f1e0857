"""ppl.deterministic inside an expectation passes its value and derivative through;
ppl.factor there is an error naming the address and what to use instead, while
density() of a model with a factor counts it."""

import jax
import numpy as np
import pytest

import ppl


@ppl.gen
def squared(theta):
    x = ppl.normal(theta, 1.0) @ "x"
    return ppl.deterministic(x * x) @ "d"


@ppl.gen
def reweighted(theta):
    x = ppl.normal(theta, 1.0) @ "x"
    ppl.factor(-(x**2)) @ "f"
    return x


def test_deterministic_keeps_the_pathwise_derivative():
    @ppl.expectation
    def doubled(theta):
        x = ppl.normal(theta, 1.0) @ "x"
        return ppl.deterministic(2.0 * x) @ "d"

    assert float(doubled.grad_estimate(jax.random.key(0), (1.0,))[0]) == pytest.approx(2.0)

    @ppl.expectation
    def through_a_call(theta):
        return squared(theta) @ "s"

    # d/dtheta E[x^2] = 2 theta; each estimate is 2x, whose sd is 2
    n = 2000
    keys = jax.random.split(jax.random.key(1), n)
    grads = np.asarray(jax.vmap(lambda k: through_a_call.grad_estimate(k, (1.5,))[0])(keys))
    assert abs(grads.mean() - 3.0) < 4 * 2.0 / np.sqrt(n)


def test_factor_in_a_sampled_function_is_an_error_naming_it():
    @ppl.expectation
    def sampled(theta):
        _, logq = ppl.sim(reweighted)(theta) @ "q"
        return logq

    with pytest.raises(ppl.PPLError, match=r"ppl.factor at \('q', 'f'\).*ppl.density.*normalize"):
        sampled.grad_estimate(jax.random.key(0), (1.0,))


def test_density_counts_the_factor():
    @ppl.expectation
    def log_density(theta):
        return ppl.density(reweighted)({"x": 0.5}, theta)

    # log N(0.5; theta, 1) - 0.25: its derivative in theta is 0.5 - theta
    grad = log_density.grad_estimate(jax.random.key(0), (1.25,))[0]
    assert float(grad) == pytest.approx(-0.75, abs=1e-6)
    value = log_density.estimate(jax.random.key(0), (1.25,))
    exact = -0.5 * np.log(2 * np.pi) - 0.5 * 0.75**2 - 0.25
    assert float(value) == pytest.approx(exact, abs=1e-5)
