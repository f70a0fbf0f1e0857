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


def branch(n_data):
    """A reinforced flip choosing between two branches whose choices are
    reparameterized (``ppl.cond`` with an index known only at run time), against
    both branches computed by hand and selected."""
    y = jnp.linspace(-1.0, 1.0, n_data)

    @ppl.gen
    def near(theta):
        m = normal(theta[1], 1.0) @ "m"
        return jnp.sum(-0.5 * (y - m) ** 2)

    @ppl.gen
    def far(theta):
        m = normal(theta[2], 2.0) @ "m"
        return jnp.sum(-0.5 * (y - jnp.sin(m)) ** 2)

    @ppl.expectation
    def adev(theta):
        b = flip(jax.nn.sigmoid(theta[0])) @ "b"  # default strategy: reinforce
        return ppl.cond(near, far)(b, theta) @ "s"

    def hand(theta, key):
        d = nd.BernoulliProbs(jax.nn.sigmoid(theta[0]))
        b = d.sample(jax.random.fold_in(key, 0)).astype(bool)
        k_m = jax.random.fold_in(jax.random.fold_in(key, 1), 0)
        v_near = jnp.sum(-0.5 * (y - nd.Normal(theta[1], 1.0).rsample(k_m)) ** 2)
        v_far = jnp.sum(-0.5 * (y - jnp.sin(nd.Normal(theta[2], 2.0).rsample(k_m))) ** 2)
        v = jnp.where(b, v_near, v_far)
        logp = d.log_prob(b)
        return v + jax.lax.stop_gradient(v) * (logp - jax.lax.stop_gradient(logp))

    return adev, jax.grad(hand), (jnp.array([0.2, 0.5, -0.5]),)


HMM_STATES = 3


def enumerated_hmm(length):
    """The log likelihood of an HMM with its states summed out (``ppl.sum_out``
    over a ``ppl.scan``: the forward algorithm) at reparameterized state means,
    against the forward algorithm written with ``jax.lax.scan``."""
    K = HMM_STATES
    init = jnp.full(K, 1.0 / K)
    ys = jnp.sin(0.3 * jnp.arange(length)) * 2.0

    @ppl.gen
    def step(z_prev, x):
        t, means, trans = x
        z = categorical(jnp.where(t == 0, init, trans[z_prev])) @ "z"
        normal(means[z], 1.0) @ "y"
        return z, None

    @ppl.gen
    def hmm(means, trans):
        xs = (
            jnp.arange(length),
            jnp.broadcast_to(means, (length, K)),
            jnp.broadcast_to(trans, (length, K, K)),
        )
        ppl.scan(step)(0, xs) @ "chain"

    marginal = ppl.sum_out(hmm, ppl.select(("chain", "z")))
    observed = ppl.ChoiceMap.d({("chain", "y"): ys})

    @ppl.expectation
    def adev(mu, logits):
        means = normal(mu, 0.1) @ "means"
        return ppl.density(marginal)(observed, means, jax.nn.softmax(logits, axis=-1))

    def hand(mu, logits, key):
        means = nd.Normal(mu, 0.1).rsample(jax.random.fold_in(key, 0))
        log_trans = jax.nn.log_softmax(logits, axis=-1)
        log_obs = nd.Normal(means, 1.0).log_prob(ys[:, None])  # (T, K)

        def forward(alpha, log_obs_t):
            alpha = jax.scipy.special.logsumexp(alpha[:, None] + log_trans, axis=0) + log_obs_t
            return alpha, None

        alpha, _ = jax.lax.scan(forward, jnp.log(init) + log_obs[0], log_obs[1:])
        return jax.scipy.special.logsumexp(alpha)

    args = (jnp.linspace(-1.0, 1.0, K), jnp.eye(K) * 2.0)
    return adev, jax.grad(hand, argnums=(0, 1)), args


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
    depth, length, n_data, hmm_length, reps, batch = (
        (10, 20, 10, 20, 20, 64) if opts.quick else (40, 200, 50, 100, 200, 256)
    )
    programs = [
        (f"normal chain, depth {depth}", *deep_chain(depth)),
        (f"scan chain, length {length}", *scan_chain(length)),
        (f"mixture, enum + {n_data} reinforce", *mixture(n_data)),
        ("  same, hand-optimised", *mixture(n_data, hoisted=True)),
        (f"mixture, enum + repeat({n_data})", *mixture_vectorised(n_data)),
        ("branch: reinforce index, reparam in", *branch(n_data)),
        (f"HMM summed out, T={hmm_length}, K={HMM_STATES}", *enumerated_hmm(hmm_length)),
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
