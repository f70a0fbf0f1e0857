"""ADEV composes with JAX: jit, vmap and grad in any order give the same
estimate; ordinary JAX code (custom_jvp/custom_vjp functions, where, cond)
passes through; nested calls, costs, averages, sim and density work."""

import jax
import jax.numpy as jnp
import numpy as np

import ppl
from ppl import E, add_cost, density, enum, flip, mvd, normal, reinforce, sim

from _adev_util import assert_close_mc, grad_samples, value_samples

KEY = jax.random.key(7)
sig = jax.nn.sigmoid


@jax.custom_vjp
def _clip_grad(x):
    return x


_clip_grad.defvjp(lambda x: (x, None), lambda _, g: (jnp.clip(g, -1.0, 1.0),))


@ppl.expectation
def busy(theta):
    """Every kind of ordinary JAX code next to random choices."""
    x = normal(theta, 1.0) @ "x"
    y = jax.nn.relu(x) + jax.nn.softplus(x) + _clip_grad(x) + jax.nn.gelu(x)
    z = jax.lax.cond(x > 0, lambda v: 2.0 * v, lambda v: -v, x)
    b = enum(flip)(sig(theta)) @ "b"
    w = jax.jit(lambda a: jnp.tanh(a) * theta)(x)
    return jnp.where(b, y, z) + w


def test_issue_example():
    @ppl.expectation
    def f(theta):
        x = normal(theta, 1.0) @ "x"
        b = enum(flip)(sig(theta)) @ "b"
        return x**2 + jnp.where(b, 1.0, -1.0) * x

    est = f.estimate(KEY, (0.5,))
    (g,) = f.grad_estimate(KEY, (0.5,))
    assert np.isfinite(est)
    np.testing.assert_allclose(jax.grad(lambda t: f.estimate(KEY, (t,)))(0.5), g, rtol=1e-6)
    exact = jax.grad(lambda t: t**2 + 1 + (2 * sig(t) - 1) * t)(0.5)
    for strategies in ({}, {"x": reinforce}, {"x": mvd}):
        assert_close_mc(
            grad_samples(ppl.adev(f, strategies), (0.5,), n=4000), exact, what=str(strategies)
        )


def test_jit_vmap_grad_orders_agree():
    thetas = jnp.linspace(-1.0, 1.0, 3)
    keys = jax.random.split(KEY, 3)

    def g(t, k):
        return busy.estimate(k, (t,))

    a = jax.jit(jax.vmap(jax.grad(g)))(thetas, keys)
    b = jax.vmap(jax.jit(jax.grad(g)))(thetas, keys)
    c = jnp.stack([jax.grad(jax.jit(g))(t, k) for t, k in zip(thetas, keys)])
    d = jax.vmap(lambda t, k: busy.grad_estimate(k, (t,))[0])(thetas, keys)
    for other in (b, c, d):
        np.testing.assert_allclose(a, other, rtol=2e-5, atol=2e-6)
    # and forward mode gives the same estimate as reverse mode
    np.testing.assert_allclose(jax.jacfwd(g)(0.3, KEY), jax.grad(g)(0.3, KEY), rtol=1e-5)


def test_same_key_same_estimate_and_legacy_keys():
    a = busy.estimate(KEY, (0.3,))
    np.testing.assert_allclose(jax.jit(lambda k: busy.estimate(k, (0.3,)))(KEY), a, rtol=1e-6)
    legacy = jax.random.PRNGKey(3)
    np.testing.assert_allclose(
        busy.estimate(legacy, (0.3,)), busy.estimate(jax.random.wrap_key_data(legacy), (0.3,))
    )


def test_pass_through_code_is_unbiased():
    # Reference: the same program with x reparameterized, under plain JAX autodiff.
    def by_hand(theta, eps):
        x = theta + eps
        y = jax.nn.relu(x) + jax.nn.softplus(x) + x + jax.nn.gelu(x)
        z = jnp.where(x > 0, 2.0 * x, -x)
        p = sig(theta)
        return p * y + (1 - p) * z + jnp.tanh(x) * theta

    eps = jax.random.normal(jax.random.key(99), (200000,))
    exact = float(jnp.mean(jax.vmap(jax.grad(by_hand), (None, 0))(0.3, eps)))
    assert_close_mc(grad_samples(busy, (0.3,), n=4000), exact, k=6, what="busy program")


def test_gen_function_inside_expectation_with_hierarchical_policy():
    @ppl.gen
    def model(t):
        z = normal(t, 1.0) @ "z"
        b = flip(sig(z)) @ "b"
        return z, b

    @ppl.expectation
    def f(t):
        z, b = model(t) @ "m"
        return z**2 + jnp.where(b, 1.0, 0.0)

    # E = t^2 + 1 + E[sigmoid(z)], z ~ N(t, 1)
    eps = jax.random.normal(jax.random.key(5), (200000,))
    exact = float(
        2 * 0.4 + jnp.mean(jax.vmap(jax.grad(lambda t, e: sig(t + e)), (None, 0))(0.4, eps))
    )
    for pol in ({}, {("m", "b"): enum}, {("m", "z"): reinforce, ("m", "b"): mvd}):
        assert_close_mc(grad_samples(ppl.adev(f, pol), (0.4,), n=4000), exact, what=str(pol))
    v = value_samples(ppl.adev(f, {("m", "b"): enum}), (0.4,), n=16)
    assert len(set(np.round(v, 4))) > 1  # enum on b, but z still random


def test_nested_expectation_and_add_cost():
    @ppl.expectation
    def inner(t):
        return (normal(t, 1.0) @ "x") ** 2

    @ppl.expectation
    def outer(t):
        add_cost(inner(t) @ "in")  # E = t^2 + 1
        y = reinforce(flip)(sig(t)) @ "y"
        add_cost(2.0 * t)  # seen by reinforce at y? no: y comes before, so it multiplies.
        return jnp.where(y, 3.0, 0.0)

    exact = jax.grad(lambda t: t**2 + 1 + 2 * t + 3 * sig(t))(0.2)
    for pol in ({}, {("in", "x"): mvd}, {("in", "x"): reinforce, "y": enum}):
        assert_close_mc(grad_samples(ppl.adev(outer, pol), (0.2,), n=4000), exact, what=str(pol))

    # estimate() called directly inside another expectation works as well
    @ppl.expectation
    def direct(t):
        return inner.estimate(jax.random.key(1), (t,)) + (normal(t, 1.0) @ "z")

    # the inner key is fixed, so its gradient estimate is too: d/dt = inner's estimate + 1
    inner_grad = float(inner.grad_estimate(jax.random.key(1), (0.2,))[0])
    assert_close_mc(grad_samples(direct, (0.2,), n=200), inner_grad + 1.0, what="direct nesting")


def test_cost_before_and_after_reinforce():
    @ppl.expectation
    def f(t):
        add_cost(t**2)
        b = reinforce(flip)(sig(t)) @ "b"
        add_cost(jnp.where(b, 1.0, 0.0) * t)  # depends on b: E = t^2 + sig(t) t
        return 0.0

    exact = jax.grad(lambda t: t**2 + sig(t) * t)(0.5)
    assert_close_mc(grad_samples(f, (0.5,), n=4000), exact, what="costs")


def test_average_and_loo():
    @ppl.expectation
    def f(t):
        return jnp.where(flip(sig(t)) @ "b", 3.0, 1.0) + 5.0

    exact = jax.grad(lambda t: 2 * sig(t))(0.3)
    for avg in (E(f, 4), E(f, 4, loo=True)):
        assert_close_mc(grad_samples(avg, (0.3,), n=3000), exact, what=avg.name)
    assert_close_mc(value_samples(E(f, 4), (0.3,), n=3000), 2 * sig(0.3) + 6, what="value of E")


def test_sim_and_density_make_an_elbo():
    @ppl.gen
    def q(mu, log_s):
        z = normal(mu, jnp.exp(log_s)) @ "z"
        flip(0.3) @ "b"
        return z

    @ppl.gen
    def p():
        normal(0.0, 1.0) @ "z"
        flip(0.5) @ "b"

    @ppl.expectation
    def elbo(mu, log_s):
        choices, logq = sim(q)(mu, log_s) @ "q"
        return density(p)(choices) - logq

    # ELBO = -KL(N(mu, s) || N(0, 1)) - KL(Bern(.3) || Bern(.5))
    def kl(mu, ls):
        return 0.5 * (jnp.exp(2 * ls) + mu**2 - 1) - ls

    exact = jax.grad(lambda m, ls: -kl(m, ls), argnums=(0, 1))(0.7, -0.3)
    for pol in ({}, {("q", "b"): enum}, {("q", "z"): reinforce}):
        f = ppl.adev(elbo, pol)
        for i, g in enumerate(grad_samples(f, (0.7, -0.3), n=3000, argnum=None)):
            assert_close_mc(g, exact[i], what=f"{pol} arg {i}")
    v = value_samples(ppl.adev(elbo, {("q", "b"): enum}), (0.7, -0.3), n=3000)
    kl_b = 0.3 * np.log(0.3 / 0.5) + 0.7 * np.log(0.7 / 0.5)
    assert_close_mc(v, -kl(0.7, -0.3) - kl_b, what="elbo value")


def test_whole_call_reinforce_for_other_combinators():
    vec = ppl.vmap(normal)

    @ppl.expectation
    def f(t):
        xs = vec(t * jnp.ones(3), jnp.ones(3)) @ "xs"
        return jnp.sum(xs**2)

    assert_close_mc(grad_samples(f, (0.5,), n=4000), 6 * 0.5, what="vmap combinator")


def test_learned_baseline_gets_its_regression_signal():
    # The objective does not depend on the baseline; its slot carries (value - b),
    # so that gradient ascent moves b towards the mean value (test_learned_baseline.py).
    @ppl.expectation
    def f(t, b0):
        return jnp.where(reinforce(flip, baseline=b0)(sig(t)) @ "b", 1.0, 0.0)

    g = f.grad_estimate(KEY, (0.3, 0.5))
    assert float(g[1]) == float(f.estimate(KEY, (0.3, 0.5))) - 0.5
