"""Variance: enumeration is exact; baselines keep the mean and cut the variance."""

import itertools

import jax
import jax.numpy as jnp
import numpy as np

import ppl
from ppl import E, categorical, enum, enum_sequential, flip, reinforce

from _adev_util import assert_close_mc, grad_samples

sig = jax.nn.sigmoid
VALUES = jnp.array([0.5, -1.0, 2.0])


def _chain(strategy):
    @ppl.expectation
    def f(theta):
        a = strategy(flip)(sig(theta)) @ "a"
        c = (
            strategy(categorical)(jax.nn.softmax(jnp.stack([theta, jnp.where(a, 1.0, -1.0), 0.0])))
            @ "c"
        )
        b = strategy(flip)(sig(VALUES[c] * theta)) @ "b"
        return jnp.where(b, VALUES[c], 1.0) + jnp.where(a, theta, 0.0) ** 2

    return f


def _chain_exact(theta):
    total = 0.0
    for a, c, b in itertools.product([False, True], range(3), [False, True]):
        pa = sig(theta) if a else 1 - sig(theta)
        pc = jax.nn.softmax(jnp.stack([theta, 1.0 if a else -1.0, 0.0]))[c]
        pb = sig(VALUES[c] * theta) if b else 1 - sig(VALUES[c] * theta)
        value = (VALUES[c] if b else 1.0) + (theta if a else 0.0) ** 2
        total = total + pa * pc * pb * value
    return total


def test_enum_is_exact_with_zero_variance():
    exact = jax.grad(_chain_exact)(0.7)
    for strategy in (enum, enum_sequential):
        g = grad_samples(_chain(strategy), (0.7,), n=50)
        assert g.std() == 0.0
        np.testing.assert_allclose(g.mean(), exact, rtol=1e-5)
    g = grad_samples(_chain(reinforce), (0.7,), n=8000)
    assert_close_mc(g, exact, what="the same chain under reinforce")
    assert g.std() > 0.1


def _offset_coin(baseline=None):
    @ppl.expectation
    def f(theta, b0):
        s = reinforce(flip, baseline=b0 if baseline == "learned" else baseline)
        return jnp.where(s(sig(theta)) @ "b", 3.0, 1.0) + 5.0

    return f


def test_baselines_keep_the_mean_and_reduce_variance():
    exact = float(jax.grad(lambda t: 2 * sig(t))(0.3))
    plain = grad_samples(_offset_coin(), (0.3, 0.0), n=8000)
    assert_close_mc(plain, exact, what="no baseline")
    for kind in (7.0, "learned"):
        with_b = grad_samples(_offset_coin(kind), (0.3, 7.0), n=8000)
        assert_close_mc(with_b, exact, what=f"baseline {kind}")
        ratio = with_b.var() / plain.var()
        print(f"baseline {kind}: variance ratio {ratio:.4f}")
        assert ratio < 0.05


def test_leave_one_out_keeps_the_mean_and_reduces_variance():
    f = _offset_coin()
    exact = float(jax.grad(lambda t: 2 * sig(t))(0.3))
    plain = grad_samples(E(f, 8), (0.3, 0.0), n=4000)
    loo = grad_samples(E(f, 8, loo=True), (0.3, 0.0), n=4000)
    assert_close_mc(plain, exact, what="E(f, 8)")
    assert_close_mc(loo, exact, what="E(f, 8, loo=True)")
    ratio = loo.var() / plain.var()
    print(f"leave-one-out: variance ratio {ratio:.4f}")
    assert ratio < 0.1


def test_mvd_and_enum_beat_reinforce_on_a_coin():
    variances = {}
    for s in (reinforce, ppl.mvd, enum):
        f = ppl.adev(_offset_coin(), {"b": s})
        variances[s.name] = grad_samples(f, (0.3, 0.0), n=2000).var()
    print("coin gradient variances:", variances)
    assert variances["enum"] < 1e-10 and variances["mvd"] < 1e-10 < variances["reinforce"]
