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


def ppl_step(objective: str, presence: str, batch):
    """A compiled ``(air, opt_state, key) -> (air, opt_state, bound)`` on ``batch``."""
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
    state = {"air": air, "opt": opt_state}

    def run(i):
        # Carry the parameters along, as training does. A ppl step is short next
        # to Pyro's, so each round times INNER of them (and reports one).
        for j in range(INNER):
            state["air"], state["opt"], value = compiled(
                state["air"], state["opt"], jax.random.key(INNER * i + j)
            )
        jax.block_until_ready(value)

    return run, compile_s


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

    runs, compiles = {}, {}
    for name, objective, presence in variants:
        runs[("ppl", name)], compiles[name] = ppl_step(objective, presence, jnp.asarray(images))
    if not args.no_pyro:
        try:
            for name in PYRO & {v[0] for v in variants}:
                runs[("pyro", name)] = pyro_step(name, images)
        except ImportError:
            print("pyro-ppl / torch are not installed (pip install -e '.[bench]'): timing ppl only")
    for f in runs.values():  # warm-up
        f(0)
    times = {k: [] for k in runs}
    for i in range(reps):
        for k, f in runs.items():
            t = time.perf_counter()
            f(i + 1)
            times[k].append((time.perf_counter() - t) / (INNER if k[0] == "ppl" else 1))

    rows = []
    for (system, name), ts in times.items():
        objective, presence = next((o, p) for n, o, p in VARIANTS if n == name)
        ppl_epoch = statistics.median(times[("ppl", name)]) * steps_per_epoch
        epoch = statistics.median(ts) * steps_per_epoch
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
            }
        )
    print(
        f"AIR seconds per epoch ({N_TRAIN} canvases, batch {BATCH}; median step of {reps} "
        f"interleaved rounds x {steps_per_epoch} steps; ratio = ppl / system)"
    )
    print_table(
        f"{'variant':<20} {'system':>6} {'s/epoch':>9} {'ratio':>7} {'speed-up':>9} "
        f"{'compile s':>10}",
        (
            f"{r['config']['variant']:<20} {r['system']:>6} {r['median_s']:>9.2f} "
            f"{r['ratio']:>7.3f} {1 / r['ratio']:>8.1f}x "
            f"{r.get('compile_s', float('nan')):>10.1f}"
            for r in sorted(rows, key=lambda r: (r["config"]["variant"], r["system"]))
        ),
    )
    write_rows(args.json, rows)
    return rows


if __name__ == "__main__":
    main()
