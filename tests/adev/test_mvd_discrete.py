"""MVD on discrete choices (categorical by probabilities and by logits, poisson,
geometric, binomial): the mean of many gradient estimates matches the exact
derivative (a closed form or a truncated sum) within five Monte Carlo standard
errors, and its variance is compared with REINFORCE's on the same integrand."""

import functools

import jax
import jax.numpy as jnp
import pytest

import ppl
from ppl import binomial, categorical, geometric, mvd, poisson, reinforce

from _adev_util import assert_close_mc, exact_grad, grad_samples, value_samples

sig = jax.nn.sigmoid
VALUES = jnp.array([1.0, -2.0, 5.0, 0.5])
KS = jnp.arange(400.0)  # truncation of the infinite sums: the tails are below 1e-30 here


def _cat_probs(t):
    return jax.nn.softmax(jnp.stack([t, -t, 0.5 * t, jnp.ones_like(t)]))


def _cat_logits(t):
    return jnp.stack([t, 2.0 * t, -1.0, 0.3])


def _poisson_sum(h, rate):
    logp = KS * jnp.log(rate) - rate - jax.scipy.special.gammaln(KS + 1.0)
    return jnp.sum(jnp.exp(logp) * h(KS))


def _geometric_sum(h, p):
    return jnp.sum(p * (1.0 - p) ** KS * h(KS))


def _binomial_sum(h, n, p):
    ks = jnp.arange(n + 1.0)
    ways = jnp.exp(
        jax.scipy.special.gammaln(n + 1.0)
        - jax.scipy.special.gammaln(ks + 1.0)
        - jax.scipy.special.gammaln(n - ks + 1.0)
    )
    return jnp.sum(ways * p**ks * (1.0 - p) ** (n - ks) * h(ks))


def _cubic(n):
    n = jnp.asarray(n, jnp.float32)
    return n**3 / 10.0 - n


def _bumpy(n):  # not a polynomial: the weak derivative must not rely on the form of h
    return jnp.sin(jnp.asarray(n, jnp.float32))


# name: (theta -> invocation, integrand h, exact E[h](theta), theta)
CASES = {
    "categorical-probs": (
        lambda t: categorical(_cat_probs(t)),
        lambda c: VALUES[c],
        lambda t: _cat_probs(t) @ VALUES,
        0.4,
    ),
    "categorical-logits": (
        lambda t: categorical(logits=_cat_logits(t)),
        lambda c: VALUES[c] ** 2,
        lambda t: jax.nn.softmax(_cat_logits(t)) @ VALUES**2,
        -0.3,
    ),
    "poisson-square": (
        lambda t: poisson(jnp.exp(t)),
        lambda n: jnp.asarray(n, jnp.float32) ** 2,
        lambda t: jnp.exp(t) + jnp.exp(2 * t),
        0.3,
    ),
    "poisson-sin": (
        lambda t: poisson(t),
        _bumpy,
        lambda t: _poisson_sum(_bumpy, t),
        2.5,
    ),
    "geometric-mean": (
        lambda t: geometric(sig(t)),
        lambda n: jnp.asarray(n, jnp.float32),
        lambda t: (1 - sig(t)) / sig(t),
        0.4,
    ),
    "geometric-cubic": (
        lambda t: geometric(t),
        _cubic,
        lambda t: _geometric_sum(_cubic, t),
        0.35,
    ),
    "geometric-logits-sin": (
        lambda t: geometric(logits=t),
        _bumpy,
        lambda t: _geometric_sum(_bumpy, sig(t)),
        -0.5,
    ),
    "binomial": (
        lambda t: binomial(6, sig(t)),
        _cubic,
        lambda t: _binomial_sum(_cubic, 6, sig(t)),
        0.2,
    ),
}


# where mvd's variance is well below reinforce's (for sin(n) it is not: the score
# function's weights average out the bounded integrand better than f(n + 1) - f(n))
LOWER_VARIANCE = {"categorical-probs", "poisson-square", "geometric-mean", "binomial"}


def _expectation(name, strategy):
    choice, h, *_ = CASES[name]

    @ppl.expectation
    def f(theta):
        return h(choice(theta) @ "x")

    return ppl.adev(f, {"x": strategy})


@functools.cache
def _samples(name, strategy):
    theta = (jnp.float32(CASES[name][3]),)
    return grad_samples(_expectation(name, strategy), theta, n=4000, seed=1)


@pytest.mark.parametrize("name", list(CASES))
def test_mvd_gradient_is_unbiased(name):
    _, _, exact, theta = CASES[name]
    assert_close_mc(
        _samples(name, mvd), exact_grad(exact, theta), what=f"d/dtheta E[h] for {name} under mvd"
    )


@pytest.mark.parametrize("name", sorted(LOWER_VARIANCE))
def test_mvd_variance_against_reinforce(name):
    _, _, exact, theta = CASES[name]
    want = exact_grad(exact, theta)
    g_mvd, g_rf = _samples(name, mvd), _samples(name, reinforce)
    assert_close_mc(g_rf, want, what=f"d/dtheta E[h] for {name} under reinforce")
    print(
        f"\n{name}: exact {want:.4f}; mvd mean {g_mvd.mean():.4f} variance {g_mvd.var():.4g}; "
        f"reinforce mean {g_rf.mean():.4f} variance {g_rf.var():.4g} "
        f"(reinforce / mvd {g_rf.var() / max(g_mvd.var(), 1e-12):.3g})"
    )
    assert g_mvd.var() < g_rf.var(), f"{name}: mvd's variance is not below reinforce's"


def test_mvd_values_are_draws_of_the_distribution():
    """The estimate (primal) under mvd is E[h] too: binomial draws its value as
    Y + B, which keeps its law."""
    _, _, exact, theta = CASES["binomial"]
    f = _expectation("binomial", mvd)
    vals = value_samples(f, (jnp.float32(theta),), n=4000, seed=3)
    assert_close_mc(vals, float(exact(theta)), what="E[h] for binomial under mvd")


def test_mvd_categorical_with_downstream_choice():
    """The continuation of a categorical has its own randomness and parameter:
    both gradients stay unbiased (the value's branch keeps its tangent)."""

    @ppl.expectation
    def f(theta, mu):
        c = categorical(_cat_probs(theta)) @ "c"
        z = ppl.normal(mu * VALUES[c], 1.0) @ "z"
        return z**2

    def exact(theta, mu):
        return _cat_probs(theta) @ (mu**2 * VALUES**2 + 1.0)

    g = grad_samples(ppl.adev(f, {"c": mvd}), (jnp.float32(0.2), jnp.float32(0.7)), argnum=None)
    want = jax.grad(exact, argnums=(0, 1))(jnp.float32(0.2), jnp.float32(0.7))
    for got, w, what in zip(g, want, ["theta", "mu"]):
        assert_close_mc(got, float(w), what=f"d/d{what}")


def test_mvd_refuses_what_it_has_no_weak_derivative_for():
    @ppl.expectation
    def f(t):
        return ppl.gamma(t, 1.0) @ "g"

    with pytest.raises(
        ppl.PPLError,
        match=r"mvd cannot be used for the random choice 'g' \(gamma\).*Use reparam or reinforce",
    ):
        ppl.adev(f, {"g": mvd}).grad_estimate(jax.random.key(0), (1.5,))
