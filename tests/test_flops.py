"""The FLOP counter behind benchmarks/air_epoch.py's rates (benchmarks/_flops.py)."""

from __future__ import annotations

import os
import sys

import jax
import jax.numpy as jnp
import pytest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "benchmarks"))

import _flops  # noqa: E402


def _compile(f, *args):
    return jax.jit(f).lower(*args).compile()


def test_a_matmul_is_two_m_n_k():
    m, k, n = 64, 96, 40
    compiled = _compile(jnp.dot, jnp.ones((m, k)), jnp.ones((k, n)))
    assert _flops.compiled_flops(compiled) == 2 * m * k * n
    assert _flops.step_flops(compiled) == (2 * m * k * n, 0.0)
    assert _flops.hlo_flops(compiled, dots_only=True) == 2 * m * k * n


def test_a_loop_counts_once_per_trip():
    # XLA's analysis counts a scan's body once; the correction must make the
    # rolled loop cost what the unrolled one does.
    a = jnp.ones((32, 32))

    def loop(unroll):
        return lambda a: jax.lax.scan(
            lambda x, _: (jnp.tanh(x @ a) * 2.0, None), a, None, 7, unroll=unroll
        )[0]

    rolled, unrolled = _compile(loop(1), a), _compile(loop(True), a)
    body = 2 * 32**3 + 32 * 32  # the product and the scaling (tanh is a transcendental)
    assert _flops.compiled_flops(rolled) == pytest.approx(body, rel=1e-3)
    assert _flops.compiled_flops(unrolled) == pytest.approx(7 * body, rel=1e-3)
    flops, extra = _flops.step_flops(rolled)
    assert flops == pytest.approx(7 * body, rel=1e-3)
    assert extra == pytest.approx(6 * body, rel=1e-3)


def test_a_loop_of_unknown_length_is_refused():
    def f(x):
        return jax.lax.while_loop(lambda c: c[0] < c[1], lambda c: (c[0] + 1.0, c[1]), (0.0, x))[0]

    with pytest.raises(ValueError, match="trip count"):
        _flops.step_flops(_compile(f, jnp.float32(3.0)))


def test_the_estimate_without_loops_is_xlas_count():
    def f(x, key):
        h = jax.nn.relu(x @ jnp.ones((50, 20)) + 1.0)
        return jnp.sum(h * jax.random.normal(key, h.shape))

    compiled = _compile(f, jnp.ones((8, 50)), jax.random.key(0))
    assert _flops.hlo_flops(compiled, unrolled=False) == pytest.approx(
        _flops.compiled_flops(compiled), rel=0.02
    )


def test_the_peak_is_a_positive_rate():
    assert _flops.matmul_peak(32, 32, 32, repeats=3, min_seconds=0.001) > 0
