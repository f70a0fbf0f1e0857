"""ADEV overhead: compiled gradient estimators against the same estimators
written by hand in JAX, side by side in one process.

Each program has an ADEV version (an ``@ppl.expectation``) and a hand-written
version that draws the same random numbers from the same keys and computes
the same estimator, so the two return the same gradient and any difference in
time is the transformation's overhead. Timings are interleaved (ADEV, hand,
ADEV, hand, ...) so that machine load affects both alike; we report the median
ratio of run times and the ratio of trace+compile times.

    python benchmarks/adev_overhead.py [--quick] [--json PATH]
"""

from __future__ import annotations

import argparse
import statistics
import time

import jax
import jax.numpy as jnp
import numpy as np
import numpyro.distributions as nd

import ppl
from _report import print_table, write_rows
from ppl import categorical, enum, flip, normal

# ---------------------------------------------------------------------------
# Programs
# ---------------------------------------------------------------------------


def deep_chain(depth):
    """z_i ~ normal(0.9 z_{i-1} + theta_i, 1), reparameterized; E[sum z_i^2]."""

    @ppl.expectation
    def adev(theta):
        z, total = 0.0, 0.0
        for i in range(depth):
            z = normal(0.9 * z + theta[i], 1.0) @ f"z{i}"
            total = total + z**2
        return total

    def hand(theta, key):
        z, total = 0.0, 0.0
        for i in range(depth):
            z = 0.9 * z + theta[i] + jax.random.normal(jax.random.fold_in(key, i))
            total = total + z**2
        return total

    return adev, jax.grad(hand), (jnp.linspace(-1.0, 1.0, depth),)


def scan_chain(length):
    """The same chain as a loop: ppl.scan against jax.lax.scan."""

    @ppl.gen
    def step(z, theta_t):
        z = normal(0.9 * z + theta_t, 1.0) @ "z"
        return z, z**2

    @ppl.expectation
    def adev(theta):
        _, squares = ppl.scan(step)(0.0, theta) @ "loop"
        return jnp.sum(squares)

    def hand(theta, key):
        loop_key = jax.random.fold_in(key, 0)

        def body(z, inputs):
            k, theta_t = inputs
            z = 0.9 * z + theta_t + jax.random.normal(jax.random.fold_in(k, 0))
            return z, z**2

        _, squares = jax.lax.scan(body, 0.0, (jax.random.split(loop_key, length), theta))
        return jnp.sum(squares)

    return adev, jax.grad(hand), (jnp.linspace(-1.0, 1.0, length),)


def _mixture_args(n_components=3):
    return (
        jnp.float32(0.3),
        jnp.linspace(-1.0, 1.0, 2 * n_components).reshape(2, n_components),
        jnp.linspace(-1.5, 1.5, n_components),
    )


def _enum_then_reinforce(branch, logit_z):
    """Exact sum over the regime z of p(z) V_z, with REINFORCE for the choices
    inside each branch: the surrogate whose gradient is the ADEV estimator."""
    values, logq = jax.vmap(branch)(jnp.array([False, True]))
    p1 = jax.nn.sigmoid(logit_z)
    probs = jnp.stack([1 - p1, p1])
    return jnp.sum(probs * values + jax.lax.stop_gradient(probs * values) * logq)


def mixture(n_data, hoisted=False):
    """An enumerated regime z and, per datum, a reinforced component c_j (one
    address each, unrolled). ``hoisted=True`` gives the hand-written version an
    optimisation ADEV does not make: one log-softmax shared by all c_j."""
    y = jnp.linspace(-2.0, 2.0, n_data)

    @ppl.expectation
    def adev(logit_z, w, mu):
        z = enum(flip)(jax.nn.sigmoid(logit_z)) @ "z"
        logits = jnp.where(z, w[1], w[0])
        total = 0.0
        for j in range(n_data):
            c = categorical(logits=logits) @ f"c{j}"  # default strategy: reinforce
            total = total - 0.5 * (y[j] - mu[c]) ** 2
        return total

    def hand(logit_z, w, mu, key):
        def branch(z):
            logits = jnp.where(z, w[1], w[0])
            shared = jax.nn.log_softmax(logits)
            value, logq = 0.0, 0.0
            for j in range(n_data):
                d = nd.CategoricalLogits(logits)
                c = d.sample(jax.random.fold_in(key, j + 1))
                value = value - 0.5 * (y[j] - mu[c]) ** 2
                logq = logq + (shared[c] if hoisted else d.log_prob(c))
            return value, logq

        return _enum_then_reinforce(branch, logit_z)

    return adev, jax.grad(hand, argnums=(0, 1, 2)), _mixture_args()


def mixture_vectorised(n_data):
    """The same mixture with the components as one vectorised choice (ppl.repeat)."""
    y = jnp.linspace(-2.0, 2.0, n_data)

    @ppl.expectation
    def adev(logit_z, w, mu):
        z = enum(flip)(jax.nn.sigmoid(logit_z)) @ "z"
        probs = jax.nn.softmax(jnp.where(z, w[1], w[0]))
        cs = ppl.repeat(categorical, n_data)(probs) @ "c"  # reinforce on the whole call
        return jnp.sum(-0.5 * (y - mu[cs]) ** 2)

    def hand(logit_z, w, mu, key):
        keys = jax.random.split(jax.random.fold_in(key, 1), n_data)

        def branch(z):
            d = nd.CategoricalProbs(jax.nn.softmax(jnp.where(z, w[1], w[0])))
            cs = jax.vmap(d.sample)(keys)
            return jnp.sum(-0.5 * (y - mu[cs]) ** 2), jnp.sum(d.log_prob(cs))

        return _enum_then_reinforce(branch, logit_z)

    return adev, jax.grad(hand, argnums=(0, 1, 2)), _mixture_args()


# ---------------------------------------------------------------------------
# Timing
# ---------------------------------------------------------------------------


def _batched(grad_fn, batch):
    """Gradient estimates for a batch of keys, averaged: one compiled call."""

    def run(args, key):
        keys = jax.random.split(key, batch)
        return jax.tree.map(
            lambda g: jnp.mean(g, axis=0), jax.vmap(lambda k: grad_fn(args, k))(keys)
        )

    return jax.jit(run)


def _compile(fn, args, key):
    t = time.perf_counter()
    compiled = fn.lower(args, key).compile()
    return compiled, time.perf_counter() - t


def _time_once(compiled, args, key):
    t = time.perf_counter()
    jax.block_until_ready(compiled(args, key))
    return time.perf_counter() - t


def measure(name, adev_f, hand_grad, args, batch, reps):
    def adev_grad(a, k):
        return jax.grad(lambda a: adev_f.estimate(k, a))(a)

    def hand(a, k):
        return hand_grad(*a, k)

    key = jax.random.key(0)
    fa, fh = _batched(adev_grad, batch), _batched(hand, batch)
    ca, ta = _compile(fa, args, key)
    ch, th = _compile(fh, args, key)
    ga, gh = ca(args, key), ch(args, key)
    for x, y in zip(jax.tree.leaves(ga), jax.tree.leaves(gh)):
        np.testing.assert_allclose(
            np.asarray(x),
            np.asarray(y),
            rtol=2e-3,
            atol=2e-3,
            err_msg=f"{name}: ADEV and hand-written estimators disagree",
        )
    for _ in range(3):  # warm up both
        _time_once(ca, args, key), _time_once(ch, args, key)
    ratios, times_a, times_h = [], [], []
    for i in range(reps):
        k = jax.random.key(i + 1)
        a, h = _time_once(ca, args, k), _time_once(ch, args, k)
        times_a.append(a), times_h.append(h), ratios.append(a / h)
    return {
        "program": name,
        "batch": batch,
        "adev_ms": 1e3 * statistics.median(times_a),
        "hand_ms": 1e3 * statistics.median(times_h),
        "run_ratio": statistics.median(ratios),
        "adev_compile_s": ta,
        "hand_compile_s": th,
        "compile_ratio": ta / th,
    }


def main():
    assert __doc__ is not None
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small programs and few repetitions")
    parser.add_argument("--json", metavar="PATH", help="also write the results as JSON")
    opts = parser.parse_args()
    depth, length, n_data, reps, batch = (
        (10, 20, 10, 20, 64) if opts.quick else (40, 200, 50, 200, 256)
    )
    programs = [
        (f"normal chain, depth {depth}", *deep_chain(depth)),
        (f"scan chain, length {length}", *scan_chain(length)),
        (f"mixture, enum + {n_data} reinforce", *mixture(n_data)),
        ("  same, hand-optimised", *mixture(n_data, hoisted=True)),
        (f"mixture, enum + repeat({n_data})", *mixture_vectorised(n_data)),
    ]
    rows = [measure(name, f, g, args, batch, reps) for name, f, g, args in programs]
    print_table(
        f"{'program':<34} {'ADEV ms':>9} {'hand ms':>9} {'run ratio':>10} "
        f"{'compile s (ADEV/hand)':>24} {'ratio':>6}",
        (
            f"{r['program']:<34} {r['adev_ms']:>9.3f} {r['hand_ms']:>9.3f} "
            f"{r['run_ratio']:>10.3f} {r['adev_compile_s']:>11.2f} / "
            f"{r['hand_compile_s']:<10.2f} {r['compile_ratio']:>6.2f}"
            for r in rows
        ),
    )
    write_rows(
        opts.json,
        [
            {
                **r,
                "benchmark": "adev_overhead",
                "system": "hand-written JAX",
                "config": {"program": r["program"].strip(), "batch": batch, "reps": reps},
                "median_s": r["adev_ms"] / 1e3,
                "ratio": r["run_ratio"],
            }
            for r in rows
        ],
    )


if __name__ == "__main__":
    main()
