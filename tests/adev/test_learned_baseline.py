"""A traced reinforce baseline learns itself: its slot of ``grad_estimate`` is
the regression signal ``(continuation - b) * db`` (gradient ascent moves b
towards the mean of the value its score multiplies), while every other
argument's derivative is the unbiased score-function estimate, unchanged."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import ppl

from _adev_util import assert_close_mc, grad_samples

sig = jax.nn.sigmoid
HI, LO = 13.0, 9.0  # far from 0, where a baseline matters


@ppl.expectation
def coin(theta, b):
    x = ppl.reinforce(ppl.flip, baseline=b)(sig(theta)) @ "x"
    return jnp.where(x, HI, LO)


@ppl.expectation
def coin_fixed(theta):
    x = ppl.reinforce(ppl.flip, baseline=0.7)(sig(theta)) @ "x"
    return jnp.where(x, HI, LO)


def _mean(theta):
    return sig(theta) * HI + (1 - sig(theta)) * LO


def _sgd(f, args, lr, steps, seed=0, learn=(1,)):
    """Plain SGD (ascent) on the arguments ``learn`` using only ``grad_estimate``."""

    def step(a, k):
        g = f.grad_estimate(k, a)
        return tuple(x + lr * gx if i in learn else x for i, (x, gx) in enumerate(zip(a, g))), a

    keys = jax.random.split(jax.random.key(seed), steps)
    return jax.jit(lambda a: jax.lax.scan(step, a, keys))(args)


def test_signal_is_continuation_minus_baseline():
    for i in range(5):
        key = jax.random.key(i)
        value = coin.estimate(key, (0.3, 0.7))
        _, g_b = coin.grad_estimate(key, (0.3, 0.7))
        np.testing.assert_allclose(g_b, value - 0.7, rtol=1e-6)


def test_other_gradients_are_unchanged():
    """With the same key, theta's derivative equals that with the same baseline
    given as a number (the old behaviour), and it stays unbiased."""
    for i in range(5):
        key = jax.random.key(i)
        g_theta, _ = coin.grad_estimate(key, (0.3, 0.7))
        (g_fixed,) = coin_fixed.grad_estimate(key, (0.3,))
        assert float(g_theta) == float(g_fixed)
    g = grad_samples(coin, (jnp.float32(0.3), jnp.float32(0.7)), n=4000, argnum=0)
    assert_close_mc(g, float(jax.grad(_mean)(0.3)), what="d/dtheta with a learned baseline")


def test_baseline_converges_to_the_mean_continuation_and_lowers_the_variance():
    (theta, b), (_, path) = _sgd(coin, (jnp.float32(0.3), jnp.float32(-4.0)), 0.02, 3000)
    assert float(theta) == pytest.approx(0.3)  # only b was stepped
    late = np.asarray(path[1500:])
    # SGD's stationary spread is about sqrt(lr / 2) * sd(value) = 0.2; the mean is much closer
    assert abs(late.mean() - float(_mean(0.3))) < 0.1
    learned = jnp.float32(late.mean())
    v = [
        grad_samples(coin, (jnp.float32(0.3), bb), n=4000, argnum=0).var()
        for bb in (jnp.float32(0.0), learned)
    ]
    print(
        f"\nlearned baseline {late.mean():.3f} (sd {late.std():.3f} over the last 1500 steps), "
        f"E[value] {_mean(0.3):.3f}; var of d/dtheta: baseline 0: {v[0]:.3f}, "
        f"learned: {v[1]:.3f}"
    )
    assert v[1] < 0.1 * v[0]


def _net(w, context):
    return w[0] + w[1] * context


@ppl.expectation
def contextual(theta, w, context):
    """The baseline is a (linear) network of the data, with its own parameters."""
    p = sig(theta + 2.0 * context)
    x = ppl.reinforce(ppl.flip, baseline=_net(w, context))(p) @ "x"
    return jnp.where(x, HI, LO) + 4.0 * context


def test_network_baseline_learns_per_context_means():
    def step(a, k):
        theta, w = a
        k0, k1 = jax.random.split(k)
        g0 = contextual.grad_estimate(k0, (theta, w, 0.0))[1]
        g1 = contextual.grad_estimate(k1, (theta, w, 1.0))[1]
        return (theta, w + 0.02 * (g0 + g1)), w

    keys = jax.random.split(jax.random.key(1), 3000)
    (_, w), path = jax.jit(lambda a: jax.lax.scan(step, a, keys))((jnp.float32(0.3), jnp.zeros(2)))
    w_late = np.asarray(path[1500:]).mean(axis=0)
    for context in (0.0, 1.0):
        p = sig(0.3 + 2.0 * context)
        want = p * HI + (1 - p) * LO + 4.0 * context
        assert abs(float(_net(w_late, context)) - float(want)) < 0.15, (context, w_late)
    # and theta's derivative is untouched by the network: unbiased
    g = grad_samples(contextual, (jnp.float32(0.3), jnp.asarray(w), 1.0), n=4000, argnum=0)
    assert_close_mc(g, float(jax.grad(lambda t: sig(t + 2.0) * (HI - LO))(0.3)), what="theta")


@ppl.gen
def coin_step(count, b):
    x = ppl.reinforce(ppl.flip, baseline=b)(0.4) @ "x"
    return count + jnp.where(x, 1.0, 0.0), x


@ppl.expectation
def coins(b):
    ppl.add_cost(10.0)  # before every choice: not part of any continuation
    count, _ = ppl.scan(coin_step, length=4)(0.0, b * jnp.ones(4)) @ "loop"
    ppl.add_cost(2.0 * count)  # after them: part of every continuation
    return count**2


def test_signal_in_a_loop_counts_later_costs_only():
    for i in range(4):
        key = jax.random.key(i)
        total = coins.estimate(key, (0.5,))
        (g_b,) = coins.grad_estimate(key, (0.5,))
        np.testing.assert_allclose(g_b, 4 * (total - 10.0 - 0.5), rtol=1e-5)


@ppl.expectation
def costed(b):
    x = ppl.reinforce(ppl.flip, baseline=b)(0.4) @ "x"
    ppl.add_cost(5.0)  # after the choice, but independent of it
    ppl.add_cost(jnp.where(x, 1.0, 0.0))
    return jnp.where(x, 2.0, 0.0)


def test_signal_follows_rao_blackwellization():
    """The baseline learns what the score multiplies: with Rao-Blackwellization
    (the default) the terms that depend on the choice, without it all of them."""
    for i in range(4):
        key = jax.random.key(i)
        x = costed.estimate(key, (0.5,)) > 5.0
        dependent = 3.0 if x else 0.0
        (g_rb,) = costed.grad_estimate(key, (0.5,))
        (g_plain,) = costed.with_rao_blackwell(False).grad_estimate(key, (0.5,))
        assert float(g_rb) == pytest.approx(dependent - 0.5)
        assert float(g_plain) == pytest.approx(dependent + 5.0 - 0.5)


def test_a_baseline_that_is_not_a_scalar_is_refused():
    @ppl.expectation
    def f(b):
        return jnp.where(ppl.reinforce(ppl.flip, baseline=b)(0.3) @ "x", 1.0, 0.0)

    with pytest.raises(ppl.PPLError, match=r"baseline of reinforce at 'x' has shape \(2,\)"):
        f.grad_estimate(jax.random.key(0), (jnp.zeros(2),))
