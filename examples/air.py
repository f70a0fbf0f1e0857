"""Attend-Infer-Repeat on multi-digit MNIST canvases, with a choice of estimator.

Each 50 x 50 canvas holds 0 to 2 digits (made from a seed). AIR explains it
as a sequence of objects: per step a discrete "present" choice, a continuous
where (scale and position of a window) and what (a 50-d code the decoder
turns into a 28 x 28 object, drawn in the window by a spatial transformer).
A recurrent guide proposes the steps. See airlib/model.py for the programs.

Every estimator the strategies allow is a flag, not a code change:
``--presence reinforce`` (REINFORCE with a baseline network that learns
from the same gradient, the call site's default), ``enum`` (exact sum over
presence), ``mvd`` (measure-valued derivative); where/what always use
reparam; ``--objective elbo|iwelbo --k K``.
After training it reports the count accuracy of the guide on held-out canvases.

Digits are drawn 22 pixels wide on the canvas (``--digit-size``; MNIST's 28
scaled down by 1.3, the size of the usual multi-MNIST digits); at 28 pixels
every run explains each single digit with two objects. A run ends in one of
three places: it counts; it reads every single digit as two objects (held-out
count accuracy about 0.67); or it never switches an object on (about 0.32).
Which one depends on the seed, so the example trains ``--restarts`` runs (3 by
default) and keeps the one with the highest bound on validation canvases,
made of training digits held out of training: no labels and no held-out
canvas take part in the choice, and the counting runs have the highest bound.
With REINFORCE and its learned baseline (the default), the three restarts of
seed 0 reach held-out count accuracy 0.674, 0.316 and 0.980 (validation
bound 621.3, 437.6 and 626.4) and the kept run counts 0.980 of 500 held-out
canvases (23,400 steps, 8 minutes on one shared core). Enumeration learns to
draw half of each single digit with each of two objects unless a second
object is priced out at first, so ``--presence enum`` starts the second
step's rho at 1e-7 and lets it rise to ``--rho`` over 20 epochs
(``--rho-start``, ``--anneal-epochs``); its three restarts of seed 0 reach
0.996, 0.674 and 0.674 and keep 0.996 (21 minutes). "Making AIR count" in
docs/dgm.md has every run measured and what else was tried.

    python examples/air.py [--presence reinforce|enum|mvd] [--objective elbo|iwelbo]
                           [--k 2] [--epochs 100] [--restarts 3] [--out out/] [--quick]
                           [--pilot 32]

``--pilot N`` ends the run with ``ppl.choose_strategies`` on the presence
choices of the trained guide (N pilot gradient estimates per strategy, on one
held-out canvas, the gradient with respect to the presence layer): for each
step, the guide's REINFORCE with its learned baseline (as written) against
enum and mvd, scored by gradient variance x time per estimate, and the table
printed. It costs five compilations of the AIR gradient (about half a minute
on a CPU), so it is off by default.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Hashable
from typing import NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax

import ppl

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from _dgm import evaluate, load_mnist, train  # noqa: E402
from airlib import data as D  # noqa: E402
from airlib import figures  # noqa: E402
from airlib import model as M  # noqa: E402


def datasets(
    n_train: int, n_test: int, seed: int = 0, size: int = D.SIZE, validation_digits: int = 0
):
    """Train canvases from the training digits, held-out canvases from held-out digits.

    The last ``validation_digits`` training digits are kept out of the training
    canvases, for :func:`validation_canvases`."""
    (train_digits, _), (test_digits, _) = load_mnist()
    fit_digits = train_digits[: len(train_digits) - validation_digits]
    return (
        D.canvases(fit_digits, n_train, seed, size),
        D.canvases(test_digits, n_test, seed + 1, size),
    )


def validation_canvases(n: int, seed: int, size: int, validation_digits: int) -> np.ndarray:
    """Canvases of the training digits that :func:`datasets` kept out of training,
    without their counts: the bound on them chooses between restarts, so neither
    the held-out canvases nor any label take part in the choice."""
    (train_digits, _), _ = load_mnist()
    images, _ = D.canvases(train_digits[len(train_digits) - validation_digits :], n, seed + 2, size)
    return images


# Training digits kept out of the training canvases when restarts are compared.
VALIDATION_DIGITS = 500


def count_accuracy(air, images, counts, key) -> tuple[float, np.ndarray]:
    """Fraction of canvases whose guide sample has the right number of objects, and the
    confusion matrix."""
    guessed = np.asarray(jax.jit(M.counts)(air, key, jnp.asarray(images)))
    confusion = np.zeros((D.MAX_DIGITS + 1, D.MAX_DIGITS + 1), int)
    np.add.at(confusion, (counts, guessed), 1)
    return float(np.mean(guessed == counts)), confusion


class AnnealState(NamedTuple):
    count: jax.Array


def anneal(start, end, steps: int) -> optax.GradientTransformation:
    """Moves a parameter from ``start`` to ``end`` linearly over ``steps`` updates,
    then holds it; the gradient is ignored. For the log prior probability of one
    more object: a per-object charge that grows as training goes on."""
    schedule = optax.linear_schedule(start, end, max(steps, 1))

    def init(params):
        del params
        return AnnealState(jnp.zeros([], jnp.int32))

    def update(updates, state, params=None):
        del updates
        target = schedule(state.count + 1)
        return jax.tree.map(lambda p: target - p, params), AnnealState(state.count + 1)

    return optax.GradientTransformation(init, update)


def optimizer(
    air,
    lr: float,
    baseline_lr: float | None = None,
    rho_end: float | None = None,
    anneal_steps: int = 0,
):
    """Adam for AIR's networks. The guide's baseline network gets its own step
    size when ``baseline_lr`` is given; the prior's log rho moves from its value
    in ``air`` to ``log(rho_end)`` over ``anneal_steps`` steps when ``rho_end`` is
    given, and is held fixed otherwise."""
    start = air.log_rho
    end = start if rho_end is None else jnp.log(jnp.broadcast_to(rho_end, start.shape))
    groups: dict[Hashable, optax.GradientTransformation] = {
        "air": optax.adam(lr),
        "prior": anneal(start, end, anneal_steps),
    }
    with_baseline = baseline_lr is not None and air.guide.baseline is not None
    if baseline_lr is not None and with_baseline:
        groups["baseline"] = optax.adam(baseline_lr)

    def labels(params):
        marks = jax.tree.map(lambda _: "air", params)
        marks = eqx.tree_at(lambda a: a.log_rho, marks, "prior")
        if with_baseline:
            marks = eqx.tree_at(
                lambda a: a.guide.baseline,
                marks,
                jax.tree.map(lambda _: "baseline", params.guide.baseline),
            )
        return marks

    return optax.multi_transform(groups, labels)


def objective_values(objective):
    def values(air, key, batch):
        keys = jax.random.split(key, batch.shape[0])
        return jax.vmap(lambda k, x: objective.estimate(k, (air, x)))(keys, batch)

    return values


def presence_pilot(objective, air, image, key, n: int):
    """``ppl.choose_strategies`` on the presence choices: the bound of one canvas as
    an expectation of the guide's presence layer (the rest of AIR an input, not
    differentiated), enum and mvd against the call site's REINFORCE + baseline."""

    @ppl.expectation
    def bound(pres, air, x):
        return objective(eqx.tree_at(lambda a: a.guide.pres, air, pres), x) @ "bound"

    presence = [("bound", "particle0", f"present{t}") for t in range(M.STEPS)]
    args = (air.guide.pres, air, jnp.asarray(image))
    return ppl.choose_strategies(
        bound, key, args, addresses=presence, candidates=(ppl.enum, ppl.mvd), n=n, argnums=0
    )


def main(argv=None):
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument(
        "--presence", choices=M.PRESENCE, default="reinforce", help="estimator for present_t"
    )
    ap.add_argument("--objective", choices=("elbo", "iwelbo"), default="elbo")
    ap.add_argument("--k", type=int, default=2, help="particles of the IWELBO")
    ap.add_argument("--epochs", type=int, default=100)
    ap.add_argument("--n-train", type=int, default=5000)
    ap.add_argument("--n-test", type=int, default=500)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument(
        "--rho", type=float, default=M.RHO, help="prior probability of one more object, at the end"
    )
    ap.add_argument(
        "--rho-start",
        type=float,
        nargs="+",
        default=None,
        help="rho at the start: one value, or one per step (default: --rho; for enum,"
        " --rho for the first object and 1e-7 for the second)",
    )
    ap.add_argument(
        "--anneal-epochs",
        type=int,
        default=None,
        help="epochs over which rho moves to --rho (default: 20 for enum, else none)",
    )
    ap.add_argument(
        "--baseline-lr", type=float, default=1e-2, help="Adam step of the baseline network"
    )
    ap.add_argument(
        "--pixel-sd", type=float, default=M.PIXEL_SD, help="likelihood noise of each pixel"
    )
    ap.add_argument(
        "--digit-size", type=int, default=D.SIZE, help="side of a digit on the canvas, pixels"
    )
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument(
        "--restarts",
        type=int,
        default=3,
        help="training runs from fresh inits; the one with the highest validation bound is kept",
    )
    ap.add_argument("--out", default="out")
    ap.add_argument("--no-progress", action="store_true")
    ap.add_argument("--no-plots", action="store_true")
    ap.add_argument("--quick", action="store_true", help="a small run, for a smoke test")
    ap.add_argument(
        "--pilot", type=int, default=0, help="pilot estimates per presence strategy (0: none)"
    )
    args = ap.parse_args(argv)
    if args.quick:
        args.epochs, args.n_train = min(args.epochs, 2), min(args.n_train, 1000)

    # read by the model when it is traced
    M.PIXEL_SD = args.pixel_sd
    M.WHERE_LOC = M.WHERE_LOC.at[0].set(np.log(args.digit_size / D.CANVAS))
    held_back = VALIDATION_DIGITS if args.restarts > 1 else 0
    (train_x, _), (test_x, test_counts) = datasets(
        args.n_train, args.n_test, args.seed, args.digit_size, held_back
    )
    if held_back:
        valid_x = validation_canvases(args.n_test, args.seed, args.digit_size, held_back)
    objective = M.bound(args.objective, args.k, args.presence)
    name = "elbo" if args.objective == "elbo" else f"iwelbo(k={args.k})"
    tag = f"{args.objective}{args.k if args.objective == 'iwelbo' else ''}_{args.presence}"
    values = objective_values(objective)
    start = time.perf_counter()
    runs = []
    for r in range(args.restarts):
        air, history = fit(objective, train_x, restart_key(args.seed, r), args, f"air {tag}")
        if held_back:
            # Kept by the bound on canvases of digits it never saw, not by the training
            # bound (a run that memorises more is not a run that counts), and no labels.
            chosen_by = evaluate(values, air, jnp.asarray(valid_x), jax.random.key(105))
            accuracy, _ = count_accuracy(air, test_x, test_counts, jax.random.key(102))
            print(
                f"  restart {r}: validation {name} {chosen_by:9.2f}"
                f"   (held-out count accuracy {accuracy:.3f}, not used to choose)"
            )
        else:
            chosen_by = 0.0
        runs.append((chosen_by, r, air, history))
    seconds = time.perf_counter() - start
    _, best, air, history = max(runs, key=lambda run: run[0])
    train_value = evaluate(values, air, jnp.asarray(train_x[:1000]), jax.random.key(100))
    test_value = evaluate(values, air, jnp.asarray(test_x), jax.random.key(101))
    accuracy, confusion = count_accuracy(air, test_x, test_counts, jax.random.key(102))
    steps = len(history) * args.restarts
    print(f"AIR, {name} with presence by {args.presence}: {steps} steps in {seconds:.1f} s")
    if args.restarts > 1:
        print(f"  kept restart {best} of {args.restarts}, the highest validation {name}")
    print(f"  train {name}:    {train_value:9.2f} nats per canvas")
    print(f"  held-out {name}: {test_value:9.2f} nats per canvas")
    print(f"  held-out count accuracy: {accuracy:.3f} ({len(test_x)} canvases)")
    print(
        "  confusion (rows: true count 0..2, columns: inferred):\n"
        + "\n".join("    " + str(r) for r in confusion)
    )
    if args.pilot:
        canvas = test_x[int(np.argmax(test_counts > 0))]  # a canvas with a digit
        pilot = presence_pilot(objective, air, canvas, jax.random.key(104), args.pilot)
        print("  presence strategies by ppl.choose_strategies (one held-out canvas):")
        print("    " + str(pilot).replace("\n", "\n    "))
    if not args.no_plots:
        figures.write_all(
            air, history, test_x, confusion, test_value, tag, args.out, jax.random.key(103)
        )
        print(f"  pictures in {args.out}/air_{tag}_*.png")
    return {
        "history": history,
        "train": train_value,
        "test": test_value,
        "accuracy": accuracy,
        "confusion": confusion,
        "seconds": seconds,
        "restart": best,
    }


def restart_key(seed: int, restart: int):
    """Restart 0 is the run of ``--seed`` itself; the others fold in their number."""
    key = jax.random.key(seed)
    return key if restart == 0 else jax.random.fold_in(key, 1000 + restart)


# Enumeration trains the second step on every canvas in proportion to its
# probability, and from the start it learns to draw half of each single digit.
# Pricing a second object out at first (rho_2 = 1e-7, 16 nats) lets the first
# object learn whole digits; rho_2 then rises to --rho over 20 epochs, while the
# second step's window can still learn to find a second digit. REINFORCE's
# second step learns only when it is sampled, so for it the same start ends
# with every pair read as one: it keeps a constant prior.
ENUM_SECOND_RHO_START, ENUM_ANNEAL_EPOCHS = 1e-7, 20


def count_prior_schedule(args):
    """``(rho at the start, per step or one value; epochs to reach --rho)``: the
    flags when given, else the estimator's default (annealed for enum only)."""
    if args.rho_start is not None or args.anneal_epochs is not None:
        start = args.rho if args.rho_start is None else args.rho_start
        return start, args.anneal_epochs or 0
    if args.presence == "enum":
        return [args.rho, ENUM_SECOND_RHO_START], ENUM_ANNEAL_EPOCHS
    return args.rho, 0


def fit(objective, train_x, key, args, desc: str):
    """One training run from a fresh AIR: its init and its minibatches from ``key``."""
    rho_start, anneal_epochs = count_prior_schedule(args)
    air = M.AIR(jax.random.fold_in(key, 0), baseline=args.presence == "reinforce", rho=rho_start)
    anneal_steps = anneal_epochs * (len(train_x) // args.batch_size)
    return train(
        M.loss_function(objective),
        air,
        jnp.asarray(train_x),
        jax.random.fold_in(key, 1),
        epochs=args.epochs,
        batch_size=args.batch_size,
        optimizer=optimizer(air, args.lr, args.baseline_lr, args.rho, anneal_steps),
        progress=not args.no_progress,
        desc=desc,
    )


if __name__ == "__main__":
    main()
