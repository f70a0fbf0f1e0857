"""enum on a batched choice sums over the product of its elements' supports: the
value and gradient equal brute-force enumeration; past the limit it is refused."""

import itertools

import jax
import jax.numpy as jnp
import pytest

import ppl

A = jnp.array([1.0, -0.5, 2.0])
C = jnp.array([[0.1, 0.5, -1.0], [2.0, 0.0, 0.3]])


def _flips_value(theta, x):
    x = x.astype(jnp.float32)
    return x[0] * x[1] + x[2] ** 2 * theta + jnp.sin(x.sum())


@ppl.expectation
def flips(theta):
    x = ppl.flip(jax.nn.sigmoid(A * theta)) @ "x"
    return _flips_value(theta, x)


def _flips_exact(theta):
    p = jax.nn.sigmoid(A * theta)
    total = 0.0
    for v in itertools.product([0.0, 1.0], repeat=3):
        v = jnp.array(v)
        total = total + jnp.prod(jnp.where(v > 0, p, 1 - p)) * _flips_value(theta, v)
    return total


@ppl.expectation
def categories(theta):
    k = ppl.categorical(jax.nn.softmax(C * theta, axis=-1)) @ "k"
    return jnp.sin(k[0] + 2.0 * k[1]) * theta


def _categories_exact(theta):
    p = jax.nn.softmax(C * theta, axis=-1)
    pairs = itertools.product(range(3), range(3))
    return sum(p[0, i] * p[1, j] * jnp.sin(i + 2.0 * j) * theta for i, j in pairs)


@pytest.mark.parametrize("strategy", [ppl.enum, ppl.enum_sequential], ids=["enum", "sequential"])
@pytest.mark.parametrize(
    "program, exact, addr",
    [(flips, _flips_exact, "x"), (categories, _categories_exact, "k")],
    ids=["flip(3,)", "categorical(2,)"],
)
def test_batched_choice_is_enumerated_exactly(strategy, program, exact, addr):
    theta = 0.7
    e = program.with_strategies({addr: strategy})
    key = jax.random.key(0)
    assert float(e.estimate(key, (theta,))) == pytest.approx(float(exact(theta)), rel=1e-5)
    (grad,) = e.grad_estimate(key, (theta,))
    assert float(grad) == pytest.approx(float(jax.grad(exact)(theta)), rel=1e-4, abs=1e-6)


def test_a_joint_support_past_the_limit_is_refused():
    @ppl.expectation
    def many(theta):
        return jnp.sum(ppl.flip(jnp.full(11, jax.nn.sigmoid(theta))) @ "x")

    with pytest.raises(ppl.PPLError, match=r"'x'.*2048 values, more than the 1024.*reinforce"):
        many.with_strategies({"x": ppl.enum}).estimate(jax.random.key(0), (0.3,))
