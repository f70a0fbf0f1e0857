"""Seconds per epoch of Attend-Infer-Repeat: ppl variants against Pyro.

Same canvases (examples/airlib/data.py, 5,000 per epoch), same network sizes,
same spatial transformer, same batch size (64) on both sides. ppl runs five
variants (presence by REINFORCE with a learned baseline, enumeration, MVD;
ELBO, and IWELBO with 2 particles under REINFORCE and MVD), each one jitted
training step (bound, gradient, Adam); Pyro runs the two it supports directly
(REINFORCE with a learned baseline under TraceGraph_ELBO, parallel
enumeration under TraceEnum_ELBO), each one ``svi.step``. Steps are timed
interleaved, round after round, and an epoch is the median step time times
the steps per epoch (a ppl round times 5 consecutive steps). ``ratio`` = ppl
time / the row's time on the same variant.

How close to the hardware's limit: ``GFLOP/step`` is XLA's cost analysis of
the compiled ppl step (benchmarks/_flops.py). The step has no loops of its
own (the two object steps and the particles are Python loops, unrolled at
trace time); the only ``while`` loops XLA sees are the rolled threefry hashes
behind ``jax.random``, whose bodies XLA counts once rather than five times.
Their other four trips are added from the HLO text: about 1.2 MFLOP a step
(0.1%), so the count is XLA's own to three digits. (The same estimate from
the text, with loops counted once, reproduces XLA's count to four digits.)

The count checks out by hand for the REINFORCE ELBO (sizes in
examples/airlib/model.py). Forward matrix products per canvas: the embedding
2*2500*200 = 1.00 M and the baseline 2*(2500*100 + 100*2) = 0.50 M; per
object step the GRU 2*600*(254 + 200) = 0.545 M (at step 0 the state is zero
and XLA drops that product: 2*600*254 = 0.305 M), the glimpse
2*(28*50*50 + 28*50*28) = 0.218 M, the encoder 2*(784*200 + 200*100) =
0.354 M, the decoder 2*(50*200 + 200*784) = 0.334 M and the placement
2*(50*28*28 + 50*28*50) = 0.218 M: 4.60 M. The backward pass costs each
product twice again, except where one factor is data (the image's embedding
and baseline, the glimpse's product with the image: once): 7.42 M. That is
12.01 M per canvas, 769 M per batch of 64, against 770 M of matrix products
in the compiled step; XLA's total of 815 M adds the elementwise work.

``peak`` is a jitted float32 2048 x 2048 ``jnp.dot`` timed in the same
rounds as the steps (median over the rounds), and ``peak64`` the step's largest product at its
own shape, (64, 2500) @ (2500, 200): a product this small need not reach
the big one's rate, and the step's batched products of the spatial
transformer (64 x 28 x 50 @ 50 x 50) are smaller still. Both are per the
process's thread settings: pinned to one core with

    XLA_FLAGS="--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1" \\
        taskset -c 0 python benchmarks/air_epoch.py

the fractions are per core. ``GFLOP/s`` = FLOPs per step / median step time;
a fraction of a peak is the median over rounds of the round's rate over the
round's peak.
torch has no XLA cost analysis, so a Pyro row's rate is the same work counted
by ppl (the ppl variant's FLOPs per step) over Pyro's step time.

    python benchmarks/air_epoch.py [--quick] [--json PATH]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

import jax
import jax.numpy as jnp
import optax

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "examples"))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from _dgm import load_mnist  # noqa: E402
from _flops import matmul_timer, step_flops  # noqa: E402
from _report import print_table, write_rows  # noqa: E402
from airlib import data as D  # noqa: E402
from airlib import model as M  # noqa: E402

N_TRAIN, BATCH = 5000, 64
INNER = 5
VARIANTS = [  # (name, objective, presence); the Pyro side runs the plain-ELBO reinforce and enum
    ("reinforce", "elbo", "reinforce"),
    ("enum", "elbo", "enum"),
    ("mvd", "elbo", "mvd"),
    ("iwelbo2+reinforce", "iwelbo", "reinforce"),
    ("iwelbo2+mvd", "iwelbo", "mvd"),
]
PYRO = {"reinforce", "enum"}
PEAK_SHAPE = (2048, 2048, 2048)
# The embedding of the image, the step's largest matrix product.
PEAK64_SHAPE = (BATCH, 2500, 200)


def ppl_step(objective: str, presence: str, batch):
    """A runner of compiled ``(air, opt_state, key) -> (air, opt_state, bound)``
    steps on ``batch``, the seconds its compilation took, and its FLOPs per step."""
    optimizer = optax.adam(1e-3)
    loss = M.loss_function(M.bound(objective, 2, presence), presence == "reinforce")
    air = M.AIR(jax.random.key(0), baseline=presence == "reinforce")
    # optax's Params alias lists arrays, sequences and mappings only; any pytree
    # works, an equinox Module included.
    opt_state = optimizer.init(air)  # pyright: ignore[reportArgumentType]

    def step(air, opt_state, key):
        (_, value), grads = jax.value_and_grad(loss, has_aux=True)(air, key, batch)
        updates, opt_state = optimizer.update(grads, opt_state, air)
        return optax.apply_updates(air, updates), opt_state, value

    t = time.perf_counter()
    compiled = jax.jit(step).lower(air, opt_state, jax.random.key(1)).compile()
    compile_s = time.perf_counter() - t
    flops, _ = step_flops(compiled)
    state = {"air": air, "opt": opt_state}

    def run(i):
        # Carry the parameters along, as training does. A ppl step is short next
        # to Pyro's, so each round times INNER of them (and reports one).
        for j in range(INNER):
            state["air"], state["opt"], value = compiled(
                state["air"], state["opt"], jax.random.key(INNER * i + j)
            )
        jax.block_until_ready(value)

    return run, compile_s, flops


def hardware() -> dict:
    """What the numbers were measured on, and under which thread settings."""
    model = ""
    try:
        with open("/proc/cpuinfo") as f:
            model = next(
                (ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name")), ""
            )
    except OSError:
        pass
    pinned = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None
    return {
        "devices": [str(d) for d in jax.devices()],
        "cpu": model,
        "cpu_count": os.cpu_count(),
        "cores_usable": pinned,
        "xla_flags": os.environ.get("XLA_FLAGS", ""),
    }


def pyro_step(presence: str, batch):
    # pyro and torch come from the optional `bench` extra; main() reports their absence.
    import pyro  # pyright: ignore[reportMissingImports]
    import torch  # pyright: ignore[reportMissingImports]

    import _air_pyro

    # One intra-op thread is Pyro's fastest setting for these small tensors on a
    # shared 2-core machine: with the default two, spinning threads made a step
    # up to 40x slower, which would flatter ppl.
    torch.set_num_threads(1)
    pyro.set_rng_seed(0)
    _, step = _air_pyro.make(presence)
    x = torch.tensor(batch)

    def run(i):
        step(x)

    run(0)  # registers the modules' parameters
    return run


def main(argv=None):
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument(
        "--quick",
        action="store_true",
        help="reinforce and enum only, few repeats (under two minutes)",
    )
    ap.add_argument("--json", metavar="PATH", help="also write one record per row as JSON")
    ap.add_argument("--reps", type=int, default=None)
    ap.add_argument("--no-pyro", action="store_true", help="time ppl only")
    args = ap.parse_args(argv)
    reps = args.reps or (3 if args.quick else 10)
    variants = [v for v in VARIANTS if v[0] in PYRO] if args.quick else VARIANTS
    (digits, _), _ = load_mnist()
    images, _ = D.canvases(digits, BATCH, 0)
    steps_per_epoch = N_TRAIN // BATCH

    runs, compiles, flops = {}, {}, {}
    for name, objective, presence in variants:
        runs[("ppl", name)], compiles[name], flops[name] = ppl_step(
            objective, presence, jnp.asarray(images)
        )
    if not args.no_pyro:
        try:
            for name in PYRO & {v[0] for v in variants}:
                runs[("pyro", name)] = pyro_step(name, images)
        except ImportError:
            print("pyro-ppl / torch are not installed (pip install -e '.[bench]'): timing ppl only")
    for f in runs.values():  # warm-up
        f(0)
    # The peaks are timed in the same rounds as the steps, under the same
    # threads, so a busy spell on the shared machine lowers both.
    # The small product first: after the big one's 48 MB it would start from
    # caches the steps never leave it in.
    peaks = {shape: matmul_timer(*shape) for shape in (PEAK64_SHAPE, PEAK_SHAPE)}
    rates = {shape: [] for shape in peaks}
    times = {k: [] for k in runs}
    for i in range(reps):
        for k, f in runs.items():
            t = time.perf_counter()
            f(i + 1)
            times[k].append((time.perf_counter() - t) / (INNER if k[0] == "ppl" else 1))
        for shape, once in peaks.items():
            rates[shape].append(once())
    peak, peak64 = (statistics.median(rates[shape]) for shape in (PEAK_SHAPE, PEAK64_SHAPE))

    hw = hardware()
    rows = []
    for (system, name), ts in times.items():
        objective, presence = next((o, p) for n, o, p in VARIANTS if n == name)
        ppl_epoch = statistics.median(times[("ppl", name)]) * steps_per_epoch
        epoch = statistics.median(ts) * steps_per_epoch
        gflops = flops[name] / statistics.median(ts) / 1e9
        # Per round, against that round's peak, as the ratios are: a busy
        # spell then lowers the numerator and the denominator alike.
        frac, frac64 = (
            statistics.median(flops[name] / t / 1e9 / r for t, r in zip(ts, rates[shape]))
            for shape in (PEAK_SHAPE, PEAK64_SHAPE)
        )
        rows.append(
            {
                "benchmark": "air_epoch",
                "system": system,
                "config": {
                    "variant": name,
                    "objective": objective,
                    "presence": presence,
                    "batch_size": BATCH,
                    "steps_per_epoch": steps_per_epoch,
                    "reps": reps,
                },
                "median_s": epoch,
                "ratio": ppl_epoch / epoch,
                **({"compile_s": compiles[name]} if system == "ppl" else {}),
                # Pyro's rows count ppl's FLOPs for the same step: torch has no cost analysis.
                "gflop_per_step": flops[name] / 1e9,
                "gflops": gflops,
                "peak_gflops": peak,
                "peak64_gflops": peak64,
                "frac_peak": frac,
                "frac_peak64": frac64,
                "hardware": hw,
            }
        )
    print(
        f"AIR seconds per epoch ({N_TRAIN} canvases, batch {BATCH}; median step of {reps} "
        f"interleaved rounds x {steps_per_epoch} steps; ratio = ppl / system)"
    )
    print(
        f"on {', '.join(hw['devices'])} ({hw['cpu'] or 'cpu'}; {hw['cores_usable']} of "
        f"{hw['cpu_count']} cores usable; XLA_FLAGS={hw['xla_flags']!r})"
    )
    print(
        f"matmul peak: {peak:.1f} GFLOP/s at {'x'.join(map(str, PEAK_SHAPE))} (m x k x n), "
        f"{peak64:.1f} GFLOP/s at {'x'.join(map(str, PEAK64_SHAPE))}; "
        "Pyro rows: ppl's FLOP count for the same step over Pyro's time"
    )
    print_table(
        f"{'variant':<20} {'system':>6} {'s/epoch':>9} {'ratio':>7} {'speed-up':>9} "
        f"{'compile s':>10} {'GFLOP/step':>11} {'GFLOP/s':>8} {'%peak':>6} {'%peak64':>8}",
        (
            f"{r['config']['variant']:<20} {r['system']:>6} {r['median_s']:>9.2f} "
            f"{r['ratio']:>7.3f} {1 / r['ratio']:>8.1f}x "
            f"{r.get('compile_s', float('nan')):>10.1f} {r['gflop_per_step']:>11.3f} "
            f"{r['gflops']:>8.1f} {100 * r['frac_peak']:>5.1f}% {100 * r['frac_peak64']:>7.1f}%"
            for r in sorted(rows, key=lambda r: (r["config"]["variant"], r["system"]))
        ),
    )
    write_rows(args.json, rows)
    return rows


if __name__ == "__main__":
    main()
