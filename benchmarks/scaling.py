"""Step time from 1 to 8 devices: a VAE training step and an SMC step.

Each device count D runs in its own process started with
``XLA_FLAGS=--xla_force_host_platform_device_count=D`` (the number of devices
is fixed when JAX starts), over a one-axis mesh of all D devices:

* VAE: the ELBO of a minibatch of binary 784-pixel images (examples/vae.py's
  networks and objective), its gradient and an Adam update under one
  ``jax.jit``; the minibatch and the per-digit keys are split over the
  devices, the networks and optimizer state replicated (what ``vi.fit(...,
  data=..., mesh=...)`` does per step);
* SMC: ``smc.init`` of 2^20 particles (2^16 with ``--quick``) of a
  normal-normal model with ``mesh=`` (its log marginal likelihood and the
  particles), jitted; and the same followed by systematic resampling of all
  of them.

Per row: the median step time, the speed-up over one device, and the peak
resident memory of the worker process (``ru_maxrss``; the CPU devices share
the process's memory, so per device it is this over D). On a CPU the "devices"
share the cores: the speed-up is bounded by the cores the run may use.

    taskset -c 0 python benchmarks/scaling.py [--quick] [--json PATH] [--devices 1 2 4 8]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time

import jax
import jax.numpy as jnp
import optax
from jax.sharding import NamedSharding, PartitionSpec

import ppl
from ppl.inference import smc
from ppl.inference._sharding import particle_mesh, replicate, shard, split_keys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "examples"))

import vae as V  # noqa: E402
from _report import print_table, write_rows  # noqa: E402


def _median_time(fn, reps: int) -> float:
    fn()  # compile
    times = []
    for _ in range(reps):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def worker(quick: bool) -> dict:
    """Time both steps on every local device; the result as a dict."""
    d = jax.device_count()
    mesh = particle_mesh(jax.make_mesh((d,), ("particles",)), "scaling")
    assert mesh is not None
    reps = 5
    out = {"devices": d, "hardware": str(jax.devices()[0].device_kind)}

    batch_size = 256 if quick else 1024
    elbo = V.bound("elbo", 1, "reparam")
    optimizer = optax.adam(1e-3)
    whole = NamedSharding(mesh, PartitionSpec())

    @jax.jit
    def vae_step(vae, opt_state, key, batch):
        def loss(v):
            keys = split_keys(key, batch.shape[0], mesh)
            per_digit = jax.vmap(lambda k, x: elbo.estimate(k, (v, x)))(keys, batch)
            return -jnp.mean(per_digit)

        value, grads = jax.value_and_grad(loss)(vae)
        updates, opt_state = optimizer.update(grads, opt_state, vae)
        out = (optax.apply_updates(vae, updates), opt_state, value)
        return jax.lax.with_sharding_constraint(out, whole)

    vae = V.VAE(jax.random.key(0))
    state = replicate((vae, optimizer.init(vae)), mesh)  # pyright: ignore[reportArgumentType]
    pixels = jax.random.bernoulli(jax.random.key(1), 0.3, (batch_size, V.PIXELS))
    batch = shard(pixels.astype(jnp.float32), mesh)
    key = replicate(jax.random.key(2), mesh)
    out["vae_batch"] = batch_size
    out["vae_s"] = _median_time(lambda: jax.block_until_ready(vae_step(*state, key, batch)), reps)

    @ppl.gen
    def model(zeros):
        mu = ppl.normal(0.0, 1.0) @ "mu"
        ppl.normal(mu + zeros, 0.5) @ "y"

    n = 2**16 if quick else 2**20
    n_resampled = n
    obs = {"y": jnp.array([1.2, 0.3, 2.1, 1.7, 0.9])}

    @jax.jit
    def smc_step(key, zeros):
        k1, k2 = jax.random.split(key)
        particles = smc.init(k1, model, obs, (zeros,), n_resampled, mesh=mesh)
        particles = smc.resample(k2, particles, "systematic")
        return particles.log_marginal_likelihood, particles.traces["mu"]

    @jax.jit
    def smc_init(key, zeros):
        particles = smc.init(key, model, obs, (zeros,), n, mesh=mesh)
        return particles.log_marginal_likelihood, particles.traces["mu"]

    zeros = jnp.zeros(5)
    out["smc_particles"], out["resampled_particles"] = n, n_resampled
    out["init_s"] = _median_time(
        lambda: jax.block_until_ready(smc_init(jax.random.key(3), zeros)), reps
    )
    out["smc_s"] = _median_time(
        lambda: jax.block_until_ready(smc_step(jax.random.key(3), zeros)), reps
    )
    lml, mus = smc_step(jax.random.key(3), zeros)
    out["smc_lml"], out["smc_spread"] = float(lml), len(mus.sharding.device_set)
    stats = jax.devices()[0].memory_stats()
    out["device_peak_bytes"] = (stats or {}).get("peak_bytes_in_use")
    out["maxrss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--quick", action="store_true", help="2^16 particles, batches of 256")
    ap.add_argument("--json", metavar="PATH")
    ap.add_argument("--devices", type=int, nargs="+", default=[1, 2, 4, 8])
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.worker:
        print(json.dumps(worker(args.quick)))
        return 0

    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    results = []
    for d in args.devices:
        env = dict(os.environ, JAX_PLATFORMS="cpu")
        env["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={d}"
        cmd = [sys.executable, os.path.abspath(__file__), "--worker"]
        cmd += ["--quick"] if args.quick else []
        run = subprocess.run(cmd, env=env, capture_output=True, text=True)
        if run.returncode != 0:
            sys.stderr.write(run.stderr[-4000:])
            return 1
        results.append(json.loads(run.stdout.strip().splitlines()[-1]))
    print(
        f"hardware: {platform.processor() or platform.machine()}, os.cpu_count()="
        f"{os.cpu_count()}, cores this run may use: {cores}; JAX devices: "
        f"{results[-1]['hardware']} x {results[-1]['devices']} (forced)"
    )
    rows, lines = [], []
    base = {k: results[0][f"{k}_s"] for k in ("vae", "init", "smc")}
    for r in results:
        for k, config in (
            ("vae", f"VAE step, batch {r['vae_batch']}"),
            ("init", f"SMC init, 2^{r['smc_particles'].bit_length() - 1} particles"),
            ("smc", f"SMC init+resample, 2^{r['resampled_particles'].bit_length() - 1}"),
        ):
            speedup = base[k] / r[f"{k}_s"]
            rows.append(
                {
                    "benchmark": "scaling",
                    "system": "ppl",
                    "config": f"{config}, {r['devices']} devices",
                    "median_s": r[f"{k}_s"],
                    "ratio": 1.0 / speedup,
                    "devices": r["devices"],
                    "speedup": speedup,
                    "maxrss_mb": r["maxrss_mb"],
                    "cores": cores,
                }
            )
            lines.append(
                f"{config:<38} {r['devices']:>7} {r[f'{k}_s'] * 1e3:>10.1f} {speedup:>8.2f} "
                f"{r['maxrss_mb']:>9.0f} {r['maxrss_mb'] / r['devices']:>9.0f}"
            )
    header = f"{'step':<38} {'devices':>7} {'median ms':>10} {'speed-up':>8} "
    header += f"{'peak MB':>9} {'MB/dev':>9}"
    print_table(header, lines)
    write_rows(args.json, rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
