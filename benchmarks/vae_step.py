"""One VAE training step three ways: ppl, hand-written JAX, NumPyro SVI.

The step is the one examples/vae.py takes: the ELBO of a minibatch of
binarized MNIST digits with a reparameterized 10-d latent, its gradient, and
an Adam update, all under one ``jax.jit``. The three versions share the
networks (the same equinox modules) and the optimizer:

* ppl: the ELBO expectation from examples/vae.py, ``jax.vmap`` over the batch;
* hand-written: the same ELBO with sampling and log densities written out and
  ``jax.grad``; it draws the same noise from the same keys as ppl, so both
  return the same value (checked here and in tests/examples/test_dgm.py);
* NumPyro: ``SVI`` with ``Trace_ELBO`` on the same model and guide in a plate.

Timings are interleaved (ppl, hand, numpyro, ppl, ...) so machine load hits
all alike; we report medians, the median of per-round ratios ppl / other, and
trace+compile times.

    python benchmarks/vae_step.py [--quick] [--json PATH] [--batch-sizes 64 128 ...]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from typing import cast

import jax
import jax.numpy as jnp
import numpy as np
import optax

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "examples"))

import vae as V  # noqa: E402
from _dgm import binarize, load_mnist  # noqa: E402
from _report import print_table, write_rows  # noqa: E402

LR = 1e-3


# ---------------------------------------------------------------------------
# The ELBO by hand
# ---------------------------------------------------------------------------


def _normal_logpdf(x, loc, scale):
    return -0.5 * ((x - loc) / scale) ** 2 - jnp.log(scale) - 0.5 * jnp.log(2 * jnp.pi)


def hand_elbo(vae, key, x):
    """The per-digit ELBO estimate, drawing z's noise from the key ppl gives the
    choice "z" inside the guide called at "particle0" (site 0 of site 0)."""
    mu, scale = V._posterior(vae.encoder, x)
    eps = jax.random.normal(jax.random.fold_in(jax.random.fold_in(key, 0), 0), (V.LATENT,))
    z = mu + eps * scale
    logits = vae.decoder(z)
    log_lik = jnp.sum(x * logits - jax.nn.softplus(logits))
    log_prior = jnp.sum(_normal_logpdf(z, 0.0, 1.0))
    return log_lik + log_prior - jnp.sum(_normal_logpdf(z, mu, scale))


def hand_values(vae, key, batch):
    keys = jax.random.split(key, batch.shape[0])
    return jax.vmap(hand_elbo, in_axes=(None, 0, 0))(vae, keys, batch)


def ppl_values():
    return V.batch_values(V.bound("elbo", 1, "reparam"))


# ---------------------------------------------------------------------------
# Steps
# ---------------------------------------------------------------------------


def make_step(values_fn, optimizer):
    """A jitted ``(vae, opt_state, key, batch) -> (vae, opt_state, elbo)``."""

    def step(vae, opt_state, key, batch):
        def loss(v):
            e = jnp.mean(values_fn(v, key, batch))
            return -e, e

        (_, elbo), grads = jax.value_and_grad(loss, has_aux=True)(vae)
        updates, opt_state = optimizer.update(grads, opt_state, vae)
        return optax.apply_updates(vae, updates), opt_state, elbo

    return jax.jit(step)


def numpyro_step(vae0, batch_size):
    """SVI.update for the same model and guide, written the NumPyro way."""
    import numpyro
    import numpyro.distributions as nd
    from numpyro.contrib.module import eqx_module
    from numpyro.infer import SVI, Trace_ELBO

    def model(batch):
        # numpyro's eqx_module is unannotated and pyright infers an array from its
        # eqx.combine; it returns the module with its parameters registered.
        decoder = cast(V.MLP, eqx_module("decoder", vae0.decoder))
        with numpyro.plate("data", batch.shape[0]):
            z = numpyro.sample("z", nd.Normal(jnp.zeros(V.LATENT), 1.0).to_event(1))
            numpyro.sample("x", nd.Bernoulli(logits=jax.vmap(decoder)(z)).to_event(1), obs=batch)

    def guide(batch):
        encoder = eqx_module("encoder", vae0.encoder)
        mu, scale = jax.vmap(lambda x: V._posterior(encoder, x))(batch)
        with numpyro.plate("data", batch.shape[0]):
            numpyro.sample("z", nd.Normal(mu, scale).to_event(1))

    svi = SVI(model, guide, optax.adam(LR), Trace_ELBO())
    return svi, jax.jit(svi.update)


# ---------------------------------------------------------------------------
# Timing
# ---------------------------------------------------------------------------


def _compile(fn, *args):
    t = time.perf_counter()
    compiled = fn.lower(*args).compile()
    return compiled, time.perf_counter() - t


def _time(fn, *args):
    t = time.perf_counter()
    jax.block_until_ready(fn(*args))
    return time.perf_counter() - t


def measure(batch_size, reps, data):
    vae = V.VAE(jax.random.key(0))
    optimizer = optax.adam(LR)
    # optax's Params alias lists arrays, sequences and mappings only; any pytree
    # works, an equinox Module included.
    opt_state = optimizer.init(vae)  # pyright: ignore[reportArgumentType]
    batch = jnp.asarray(data[:batch_size])
    key = jax.random.key(1)

    ppl_c, ppl_compile = _compile(make_step(ppl_values(), optimizer), vae, opt_state, key, batch)
    hand_c, hand_compile = _compile(make_step(hand_values, optimizer), vae, opt_state, key, batch)
    svi, svi_update = numpyro_step(vae, batch_size)
    svi_state = svi.init(jax.random.key(2), batch)
    np_c, np_compile = _compile(svi_update, svi_state, batch)

    # Equal work: the same ELBO value from the same key and parameters.
    e_ppl, e_hand = (
        float(ppl_c(vae, opt_state, key, batch)[2]),
        float(hand_c(vae, opt_state, key, batch)[2]),
    )
    if not np.isclose(e_ppl, e_hand, rtol=1e-4):
        raise AssertionError(
            f"ppl and the hand-written ELBO disagree at batch {batch_size}: {e_ppl} vs {e_hand}"
        )

    runs = {
        "ppl": lambda k: ppl_c(vae, opt_state, k, batch),
        "jax": lambda k: hand_c(vae, opt_state, k, batch),
        "numpyro": lambda k: np_c(svi_state, batch),
    }
    for _ in range(5):  # warm-up
        for f in runs.values():
            _time(f, key)
    times = {name: [] for name in runs}
    for i in range(reps):
        k = jax.random.key(100 + i)
        for name, f in runs.items():
            times[name].append(_time(f, k))
    compiles = {"ppl": ppl_compile, "jax": hand_compile, "numpyro": np_compile}
    rows = []
    for name in runs:
        per_round = [a / b for a, b in zip(times["ppl"], times[name])]
        rows.append(
            {
                "benchmark": "vae_step",
                "system": name,
                "config": {"batch_size": batch_size, "reps": reps},
                "median_s": statistics.median(times[name]),
                "ratio": statistics.median(per_round),
                "compile_s": compiles[name],
                "compile_ratio": compiles["ppl"] / compiles[name],
            }
        )
    return rows


def main(argv=None):
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--quick", action="store_true", help="fewer repeats (well under two minutes)")
    ap.add_argument("--json", metavar="PATH", help="also write one record per row as JSON")
    ap.add_argument("--batch-sizes", type=int, nargs="+", default=[64, 128, 256, 512, 1024])
    ap.add_argument("--reps", type=int, default=None)
    args = ap.parse_args(argv)
    reps = args.reps or (30 if args.quick else 200)
    (train_x, _), _ = load_mnist()
    data = binarize(train_x)
    rows = []
    for b in args.batch_sizes:
        rows.extend(measure(b, reps, data))
    print(
        f"VAE ELBO gradient step + Adam, median of {reps} interleaved repeats "
        f"(ratio = ppl time / system time, per round)"
    )
    print_table(
        f"{'batch':>6} {'system':>8} {'median ms':>10} {'ratio':>7} {'compile s':>10} "
        f"{'compile ratio':>14}",
        (
            f"{r['config']['batch_size']:>6} {r['system']:>8} {1e3 * r['median_s']:>10.3f} "
            f"{r['ratio']:>7.3f} {r['compile_s']:>10.2f} {r['compile_ratio']:>14.2f}"
            for r in rows
        ),
    )
    write_rows(args.json, rows)
    return rows


if __name__ == "__main__":
    main()
