"""Every strategy on every distribution it supports: the mean of many gradient
estimates matches the derivative of a closed-form expectation, within five
Monte Carlo standard errors computed from the estimates."""

import math

import jax
import jax.numpy as jnp
import pytest

import ppl
from ppl import (
    beta,
    binomial,
    categorical,
    dirichlet,
    enum,
    enum_sequential,
    exponential,
    flip,
    gamma,
    geometric,
    implicit_reparam,
    laplace,
    logistic,
    lognormal,
    mv_normal,
    mv_normal_diag,
    mvd,
    normal,
    poisson,
    reinforce,
    reparam,
    student_t,
    uniform,
)

from _adev_util import assert_close_mc, exact_grad, grad_samples, value_samples

sig = jax.nn.sigmoid
COV = jnp.array([[1.0, 0.3], [0.3, 2.0]])
CAT_VALUES = jnp.array([1.0, 2.0, 5.0])


def _cat_probs(t):
    return jax.nn.softmax(jnp.stack([t, jnp.zeros_like(t), jnp.ones_like(t)]))


# name: (choice(theta) -> invocation, integrand h(x), exact E[h](theta), theta, strategies)
CASES = {
    "normal-loc": (
        lambda t: normal(t, 1.5),
        lambda x: x**2,
        lambda t: t**2 + 2.25,
        0.7,
        [reparam, reinforce, mvd],
    ),
    "normal-scale": (
        lambda t: normal(0.3, t),
        lambda x: x**2 + x,
        lambda t: 0.09 + t**2 + 0.3,
        1.2,
        [reparam, reinforce, mvd],
    ),
    "normal-cubic": (
        lambda t: normal(t, 0.5),
        lambda x: x**3,
        lambda t: t**3 + 3 * t * 0.25,
        0.4,
        [reparam, mvd],
    ),
    "mv_normal": (
        lambda t: mv_normal(jnp.stack([t, -t]), COV),
        lambda x: jnp.sum(x**2) + x[0],
        lambda t: 2 * t**2 + 3.0 + t,
        0.5,
        [reparam, reinforce],
    ),
    "mv_normal_diag": (
        lambda t: mv_normal_diag(jnp.stack([t, 1.0]), jnp.stack([1.0, t])),
        lambda x: jnp.sum(x**2),
        lambda t: t**2 + 1 + 1 + t**2,
        0.8,
        [reparam, reinforce],
    ),
    "uniform": (
        lambda t: uniform(t, t + 2.0),
        lambda x: x**2,
        lambda t: ((t + 2) ** 3 - t**3) / 6,
        0.3,
        [reparam],
    ),
    "laplace": (
        lambda t: laplace(t, 0.8),
        lambda x: x**2,
        lambda t: t**2 + 2 * 0.64,
        0.5,
        [reparam, reinforce],
    ),
    "logistic": (
        lambda t: logistic(t, 0.5),
        lambda x: x**2,
        lambda t: t**2 + 0.25 * math.pi**2 / 3,
        0.5,
        [reparam, reinforce],
    ),
    "lognormal": (
        lambda t: lognormal(t, 0.5),
        lambda x: x,
        lambda t: jnp.exp(t + 0.125),
        0.2,
        [reparam, reinforce],
    ),
    "exponential": (
        lambda t: exponential(t),
        lambda x: x**2,
        lambda t: 2 / t**2,
        1.5,
        [reparam, reinforce],
    ),
    "student_t": (
        lambda t: student_t(5.0, t, 1.0),
        lambda x: x**2,
        lambda t: t**2 + 5 / 3,
        0.6,
        [reparam, reinforce],
    ),
    "gamma": (
        lambda t: gamma(t, 2.0),
        lambda x: x**2,
        lambda t: t * (t + 1) / 4,
        1.5,
        [reparam, reinforce],
    ),
    "beta": (lambda t: beta(t, 2.0), lambda x: x, lambda t: t / (t + 2), 1.5, [implicit_reparam]),
    "dirichlet": (
        lambda t: dirichlet(jnp.stack([t, 1.0, 2.0])),
        lambda x: x[0],
        lambda t: t / (t + 3),
        1.5,
        [implicit_reparam],
    ),
    "flip": (
        lambda t: flip(sig(t)),
        lambda b: jnp.where(b, 3.0, -1.0),
        lambda t: 4 * sig(t) - 1,
        0.3,
        [reinforce, enum, enum_sequential, mvd],
    ),
    "flip-logits": (
        lambda t: flip(logits=t),
        lambda b: jnp.where(b, 3.0, -1.0),
        lambda t: 4 * sig(t) - 1,
        -0.4,
        [enum, mvd],
    ),
    "categorical": (
        lambda t: categorical(_cat_probs(t)),
        lambda c: CAT_VALUES[c],
        lambda t: _cat_probs(t) @ CAT_VALUES,
        0.3,
        [reinforce, enum, enum_sequential],
    ),
    "binomial": (
        lambda t: binomial(5, sig(t)),
        lambda n: n.astype(jnp.float32) ** 2,
        lambda t: 5 * sig(t) * (1 - sig(t)) + 25 * sig(t) ** 2,
        0.2,
        [reinforce, enum],
    ),
    "geometric": (
        lambda t: geometric(sig(t)),
        lambda n: n.astype(jnp.float32),
        lambda t: (1 - sig(t)) / sig(t),
        0.4,
        [reinforce],
    ),
    "poisson": (
        lambda t: poisson(jnp.exp(t)),
        lambda n: n.astype(jnp.float32) ** 2,
        lambda t: jnp.exp(t) + jnp.exp(2 * t),
        0.3,
        [reinforce],
    ),
}

PAIRS = [(name, s) for name, case in CASES.items() for s in case[4]]


def _expectation(name, strategy):
    choice, h, *_ = CASES[name]

    @ppl.expectation
    def f(theta):
        return h(choice(theta) @ "x")

    return ppl.adev(f, {"x": strategy})


@pytest.mark.parametrize("name,strategy", PAIRS, ids=[f"{n}-{s.name}" for n, s in PAIRS])
def test_gradient_is_unbiased(name, strategy):
    _, _, exact, theta, _ = CASES[name]
    f = _expectation(name, strategy)
    samples = grad_samples(f, (jnp.float32(theta),), n=4000)
    assert_close_mc(
        samples, exact_grad(exact, theta), what=f"d/dtheta E[h] for {name} under {strategy.name}"
    )
    if strategy.name.startswith("enum"):
        assert samples.std() < 1e-5, "enumeration must have zero variance"


@pytest.mark.parametrize("name", ["normal-loc", "categorical", "poisson"])
def test_estimate_is_unbiased(name):
    _, _, exact, theta, strategies = CASES[name]
    f = _expectation(name, strategies[-1])
    assert_close_mc(
        value_samples(f, (jnp.float32(theta),), n=6000),
        float(exact(theta)),
        what=f"E[h] for {name}",
    )


def test_defaults_are_reparam_where_valid_else_reinforce():
    from ppl.transforms.adev.strategies import default_strategy

    assert default_strategy(normal.dist(0.0, 1.0)) is reparam
    assert default_strategy(gamma.dist(2.0, 1.0)) is reparam
    assert default_strategy(flip.dist(0.3)) is reinforce
    assert default_strategy(poisson.dist(2.0)) is reinforce
