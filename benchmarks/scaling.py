"""Step time and memory from 1 to 8 devices: a VAE step, a multi-sample ELBO step, SMC.

Each device count D runs in its own process started with
``XLA_FLAGS=--xla_force_host_platform_device_count=D`` (the number of devices
is fixed when JAX starts), over a one-axis mesh of all D devices:

* VAE: the ELBO of a minibatch of binary 784-pixel images (examples/vae.py's
  networks and objective), its gradient and an Adam update under one
  ``jax.jit``; the minibatch and the per-digit keys are split over the
  devices, the networks and optimizer state replicated (what ``vi.fit(...,
  data=..., mesh=...)`` does per step);
* ELBO: ``vi.fitter``'s step with 2^16 estimates (2^12 with ``--quick``) of a
  regression's ELBO, split over the devices;
* SMC: ``smc.init`` of 2^20 particles (2^16 with ``--quick``) of a
  normal-normal model with ``mesh=`` (its log marginal likelihood and the
  particles), jitted; and the same followed by systematic resampling of all
  of them.

Per row: the median step time, the speed-up over one device, the peak
resident memory of the worker process (``ru_maxrss``, everything the process
did), and the memory XLA plans per device for one call of the step
(``compiled.memory_analysis()``: arguments, outputs and temporaries). On a CPU the "devices"
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
from ppl.inference import smc, vi
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


def _device_mb(jitted, *args) -> float:
    """The per-device memory XLA plans for one call: arguments, outputs and temporaries."""
    m = jitted.lower(*args).compile().memory_analysis()
    if m is None:
        return float("nan")
    total = m.argument_size_in_bytes + m.output_size_in_bytes + m.temp_size_in_bytes
    return (total - m.alias_size_in_bytes) / 2**20


@ppl.gen
def regression(xs):
    w = ppl.normal(jnp.zeros(xs.shape[1]), 1.0) @ "w"
    ppl.normal(xs @ w, 0.5) @ "y"


@ppl.gen
def regression_guide(mu, log_s):
    ppl.normal(mu, jnp.exp(log_s)) @ "w"


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
    out["vae_mb"] = _device_mb(vae_step, *state, key, batch)

    # A multi-sample ELBO: the estimates of each step split over the mesh.
    xs = jax.random.normal(jax.random.key(4), (64, 8))
    objective = vi.elbo(regression, regression_guide, {"y": xs @ jnp.linspace(-1.0, 1.0, 8)})
    n_vi = 2**12 if quick else 2**16
    init, step = vi.fitter(objective, optax.adam(1e-2), num_samples=n_vi, mesh=mesh)
    vi_state, vi_step = init((xs,), (jnp.zeros(8), jnp.zeros(8))), jax.jit(step)
    out["vi_samples"] = n_vi
    out["vi_s"] = _median_time(lambda: jax.block_until_ready(vi_step(key, vi_state)), reps)
    out["vi_mb"] = _device_mb(vi_step, key, vi_state)

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
    out["init_mb"] = _device_mb(smc_init, jax.random.key(3), zeros)
    out["smc_mb"] = _device_mb(smc_step, jax.random.key(3), zeros)
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
    base = {k: results[0][f"{k}_s"] for k in ("vae", "vi", "init", "smc")}
    for r in results:
        for k, config in (
            ("vae", f"VAE step, batch {r['vae_batch']}"),
            ("vi", f"ELBO step, 2^{r['vi_samples'].bit_length() - 1} estimates"),
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
                    "xla_mb_per_device": r[f"{k}_mb"],
                    "cores": cores,
                }
            )
            lines.append(
                f"{config:<38} {r['devices']:>7} {r[f'{k}_s'] * 1e3:>10.1f} {speedup:>8.2f} "
                f"{r['maxrss_mb']:>9.0f} {r[f'{k}_mb']:>10.1f}"
            )
    header = f"{'step':<38} {'devices':>7} {'median ms':>10} {'speed-up':>8} "
    header += f"{'peak MB':>9} {'XLA MB/dev':>10}"
    print_table(header, lines)
    write_rows(args.json, rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
