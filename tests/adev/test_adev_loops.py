"""Random choices inside the ``ppl.scan`` combinator: reparam and reinforce
carry their score tangents through the loop and give the right gradient."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import ppl
from ppl import add_cost, density, flip, normal, reinforce, sim

from _adev_util import assert_close_mc, grad_samples, value_samples

T = 6
sig = jax.nn.sigmoid


@ppl.gen
def walk_step(z, scale):
    z = normal(z, scale) @ "z"
    return z, z**2


@ppl.expectation
def walk(theta, scale):
    _, squares = ppl.scan(walk_step, length=T)(theta, scale * jnp.ones(T)) @ "loop"
    return jnp.sum(squares)


def _walk_exact(theta, scale):
    # z_t = theta + sum of t noises: E z_t^2 = theta^2 + t scale^2
    return sum(theta**2 + t * scale**2 for t in range(1, T + 1))


@pytest.mark.parametrize("policy", [{}, {("loop", "z"): reinforce}], ids=["reparam", "reinforce"])
def test_random_walk(policy):
    f = ppl.adev(walk, policy)
    exact = jax.grad(_walk_exact, argnums=(0, 1))(0.3, 0.8)
    for i, g in enumerate(grad_samples(f, (0.3, 0.8), n=6000, argnum=None)):
        assert_close_mc(g, exact[i], what=f"{policy} arg {i}")
    assert_close_mc(value_samples(f, (0.3, 0.8), n=4000), _walk_exact(0.3, 0.8), what="value")


@ppl.gen
def coin_step(count, p):
    b = flip(p) @ "b"
    return count + jnp.where(b, 1.0, 0.0), b


@ppl.expectation
def coins(theta):
    count, _ = ppl.scan(coin_step, length=T)(0.0, sig(theta) * jnp.ones(T)) @ "loop"
    return count**2 + 2.0 * count  # count ~ Binomial(T, p)


def test_reinforce_on_discrete_choices_in_a_loop():
    def exact(t):
        p = sig(t)
        return T * p * (1 - p) + (T * p) ** 2 + 2 * T * p

    assert_close_mc(grad_samples(coins, (0.4,), n=6000), jax.grad(exact)(0.4), what="coins")


def test_loop_then_enum_after_it():
    """Enumeration after a loop still sees the loop's score tangents."""

    @ppl.expectation
    def f(theta):
        count, _ = ppl.scan(coin_step, length=3)(0.0, sig(theta) * jnp.ones(3)) @ "loop"
        b = ppl.enum(flip)(sig(count - 1.0)) @ "b"
        return jnp.where(b, count, -1.0)

    def exact(t):
        p = sig(t)
        probs = jnp.array([(1 - p) ** 3, 3 * p * (1 - p) ** 2, 3 * p**2 * (1 - p), p**3])
        counts = jnp.arange(4.0)
        return jnp.sum(probs * (sig(counts - 1) * counts - (1 - sig(counts - 1))))

    assert_close_mc(grad_samples(f, (0.2,), n=6000), jax.grad(exact)(0.2), what="loop then enum")


def test_costs_and_baselines_inside_a_loop():
    @ppl.gen
    def step(c, p):
        b = reinforce(flip, baseline=0.5)(p) @ "b"
        add_cost(jnp.where(b, 1.0, 0.0) * c)  # depends on the carry and on b
        return c + 1.0, 0.0

    @ppl.expectation
    def f(theta):
        ppl.scan(step, length=T)(1.0, sig(theta) * jnp.ones(T)) @ "loop"
        return 0.0

    exact = jax.grad(lambda t: sig(t) * sum(range(1, T + 1)))(0.1)
    assert_close_mc(grad_samples(f, (0.1,), n=6000), exact, what="costs in loop")


def test_sim_records_the_loop_choices():
    @ppl.gen
    def q_step(z, mu):
        z = normal(mu, 1.0) @ "z"
        return z, z

    q = ppl.gen(lambda mu: ppl.scan(q_step, length=T)(0.0, mu * jnp.ones(T)) @ "loop")

    @ppl.gen
    def p_step(z, _):
        z = normal(0.0, 1.0) @ "z"
        return z, z

    p = ppl.gen(lambda: ppl.scan(p_step, length=T)(0.0, None) @ "loop")

    @ppl.expectation
    def elbo(mu):
        choices, logq = sim(q)(mu) @ "q"
        assert choices["loop", "z"].shape == (T,)
        return density(p)(choices) - logq

    # ELBO = -T KL(N(mu, 1) || N(0, 1)) = -T mu^2 / 2
    assert_close_mc(grad_samples(elbo, (0.6,), n=3000), -T * 0.6, what="elbo over a scan")
    assert_close_mc(value_samples(elbo, (0.6,), n=3000), -T * 0.18, what="elbo value")


def test_loop_under_jit_vmap_grad():
    thetas = jnp.linspace(-0.5, 0.5, 3)
    keys = jax.random.split(jax.random.key(2), 3)
    a = jax.jit(jax.vmap(jax.grad(lambda t, k: walk.estimate(k, (t, 0.8)))))(thetas, keys)
    b = jnp.stack([walk.grad_estimate(k, (t, 0.8))[0] for t, k in zip(thetas, keys)])
    np.testing.assert_allclose(a, b, rtol=2e-5, atol=1e-5)


def test_vmap_and_repeat_combinators():
    """ppl.vmap / ppl.repeat run one jax.vmap; reparam and reinforce inside, and
    costs and choices of the elements are summed."""

    @ppl.gen
    def point(m):
        z = normal(m, 1.0) @ "z"
        b = flip(sig(z)) @ "b"
        add_cost(z)
        return jnp.where(b, z, 0.0)

    @ppl.expectation
    def f(t):
        c = reinforce(flip)(sig(t)) @ "c"
        ys = ppl.repeat(point, 4)(t + jnp.where(c, 1.0, 0.0)) @ "pts"
        return jnp.sum(ys)

    eps = jax.random.normal(jax.random.key(3), (400000,))

    def exact(t):
        def inner(m):
            return jnp.mean(sig(m + eps) * (m + eps)) + m

        return 4 * (sig(t) * inner(t + 1.0) + (1 - sig(t)) * inner(t))

    for pol in ({}, {("pts", "z"): reinforce}):
        assert_close_mc(
            grad_samples(ppl.adev(f, pol), (0.3,), n=4000),
            jax.grad(exact)(0.3),
            what=f"repeat {pol}",
        )
    with pytest.raises(ppl.PPLError, match=r"inside 'pts' \(ppl.vmap\)"):
        ppl.adev(f, {("pts", "b"): ppl.enum}).estimate(jax.random.key(0), (0.3,))


def test_vmap_of_a_distribution_in_an_elbo():
    q = ppl.gen(lambda mu: ppl.vmap(normal)(mu, jnp.ones(3)) @ "zs")
    p = ppl.gen(lambda: ppl.vmap(normal)(jnp.zeros(3), jnp.ones(3)) @ "zs")

    @ppl.expectation
    def elbo(mu):
        choices, logq = sim(q)(mu) @ "q"
        return density(p)(choices) - logq

    mu = jnp.array([0.1, 0.5, -1.0])
    assert_close_mc(grad_samples(elbo, (mu,), n=3000), -mu, what="elbo over ppl.vmap")
