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
scaled down by 1.3, the size of the usual multi-MNIST digits). The size
decides whether AIR can count. At full size (``--digit-size 28``) every run
explains each single digit with two objects, each drawing part of it
(held-out count accuracy 0.674, all of it in the one-digit-read-as-two cell,
with REINFORCE and with enum alike, after 7,800 steps): a digit has so many
pixels that two 50-d codes draw it more sharply than one by more than the
count prior charges for the second object (also with ``--rho`` down to 1e-60,
138 nats an object). At 22 pixels training reaches one object per digit in
some runs only. Held-out count accuracy on 500 canvases after
100 epochs (7,800 steps; REINFORCE about 2.5 minutes on one core, enum about
5.5), with the baseline network's own Adam step ``--baseline-lr`` (larger
than ``--lr`` 1e-3, as in published AIR runs):

    REINFORCE, --baseline-lr 1e-2 (the default)   seed 0: 0.674   seed 1: 0.988   seed 2: 0.994
    REINFORCE, --baseline-lr 1e-3                 seed 0: 0.982   seed 1: 0.672   seed 2: 0.328
    enum (no baseline)                            seed 0: 0.674   seed 1: 0.672
                                                  (seed 0 also with --rho 1e-4: 0.674)

At 0.672 and 0.674 every single digit is read as two objects; at 0.328 no
object is ever switched on. Empty canvases are always recognised. The
REINFORCE runs that count have the higher held-out bound (621 to 629 nats,
against 616 to 618 for two objects per single digit, 458 for none), so
restarts kept by their bound (no labels needed) pick a counting run; the enum
runs, with the exact presence gradient, settled in the two-objects optimum
(held-out bound 615 and 622) every time.

    python examples/air.py [--presence reinforce|enum|mvd] [--objective elbo|iwelbo]
                           [--k 2] [--epochs 100] [--out out/] [--quick] [--pilot 32]

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

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax

import ppl

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from _dgm import evaluate, load_mnist, train  # noqa: E402
from airlib import data as D  # noqa: E402
from airlib import model as M  # noqa: E402


def datasets(n_train: int, n_test: int, seed: int = 0, size: int = D.SIZE):
    """Train canvases from the training digits, held-out canvases from held-out digits."""
    (train_digits, _), (test_digits, _) = load_mnist()
    return (
        D.canvases(train_digits, n_train, seed, size),
        D.canvases(test_digits, n_test, seed + 1, size),
    )


def count_accuracy(air, images, counts, key) -> tuple[float, np.ndarray]:
    """Fraction of canvases whose guide sample has the right number of objects, and the
    confusion matrix."""
    guessed = np.asarray(jax.jit(M.counts)(air, key, jnp.asarray(images)))
    confusion = np.zeros((D.MAX_DIGITS + 1, D.MAX_DIGITS + 1), int)
    np.add.at(confusion, (counts, guessed), 1)
    return float(np.mean(guessed == counts)), confusion


def optimizer(air, lr: float, baseline_lr: float | None = None):
    """Adam; the guide's baseline network with its own step size when ``baseline_lr`` is given."""
    if baseline_lr is None or air.guide.baseline is None:
        return optax.adam(lr)

    def labels(params):
        marks = jax.tree.map(lambda _: "air", params)
        return eqx.tree_at(
            lambda a: a.guide.baseline,
            marks,
            jax.tree.map(lambda _: "baseline", params.guide.baseline),
        )

    return optax.multi_transform(
        {"air": optax.adam(lr), "baseline": optax.adam(baseline_lr)}, labels
    )


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


def plots(air, history, images, held_out, tag, out, key):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Rectangle

    os.makedirs(out, exist_ok=True)
    n = 8
    traces = jax.vmap(lambda k, x: M.guide.simulate(k, (air.guide, x)).choices)(
        jax.random.split(key, n), jnp.asarray(images[:n])
    )
    recon = jax.vmap(lambda c: M.render(air.decoder, c))(traces)
    fig, axes = plt.subplots(2, n, figsize=(2 * n, 4.2))
    for i in range(n):
        axes[0, i].imshow(images[i].reshape(D.CANVAS, D.CANVAS), cmap="gray", vmin=0, vmax=1)
        axes[1, i].imshow(np.asarray(recon[i]), cmap="gray", vmin=0, vmax=1)
        alive = True
        for t in range(M.STEPS):
            alive = alive and bool(traces[f"present{t}"][i])
            if alive:  # the window in pixels: centre (tx, ty), half-width s, in [-1, 1] units
                s, tx, ty = np.asarray(M.window(traces[f"where{t}"][i]))
                half = D.CANVAS / 2
                axes[0, i].add_patch(
                    Rectangle(
                        ((tx - s + 1) * half - 0.5, (ty - s + 1) * half - 0.5),
                        2 * s * half,
                        2 * s * half,
                        fill=False,
                        color="rgb"[t],
                        lw=1.5,
                    )
                )
        for a in axes[:, i]:
            a.axis("off")
    axes[0, 0].set_title("held-out canvases, inferred windows", loc="left")
    axes[1, 0].set_title("reconstructions", loc="left")
    fig.savefig(os.path.join(out, f"air_{tag}_reconstructions.png"), dpi=90, bbox_inches="tight")
    plt.close(fig)
    w = max(1, len(history) // 50)
    plt.figure(figsize=(6, 4))
    plt.plot(history, alpha=0.3, label="minibatch estimate")
    plt.plot(
        np.arange(w - 1, len(history)),
        np.convolve(history, np.ones(w) / w, "valid"),
        label="moving average",
    )
    plt.axhline(held_out, color="k", ls="--", label=f"held-out {held_out:.1f}")
    plt.xlabel("step")
    plt.ylabel("bound (nats per canvas)")
    plt.legend()
    plt.savefig(os.path.join(out, f"air_{tag}_objective.png"), dpi=90, bbox_inches="tight")
    plt.close()


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
    ap.add_argument("--rho", type=float, default=M.RHO, help="prior probability of one more object")
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
    M.RHO, M.PIXEL_SD = args.rho, args.pixel_sd
    M.WHERE_LOC = M.WHERE_LOC.at[0].set(np.log(args.digit_size / D.CANVAS))
    (train_x, _), (test_x, test_counts) = datasets(
        args.n_train, args.n_test, args.seed, args.digit_size
    )
    objective = M.bound(args.objective, args.k, args.presence)
    loss = M.loss_function(objective)
    name = "elbo" if args.objective == "elbo" else f"iwelbo(k={args.k})"
    tag = f"{args.objective}{args.k if args.objective == 'iwelbo' else ''}_{args.presence}"
    key = jax.random.key(args.seed)
    start = time.perf_counter()
    air = M.AIR(jax.random.fold_in(key, 0), baseline=args.presence == "reinforce")
    air, history = train(
        loss,
        air,
        jnp.asarray(train_x),
        jax.random.fold_in(key, 1),
        epochs=args.epochs,
        batch_size=args.batch_size,
        optimizer=optimizer(air, args.lr, args.baseline_lr),
        progress=not args.no_progress,
        desc=f"air {tag}",
    )
    seconds = time.perf_counter() - start
    values = objective_values(objective)
    train_value = evaluate(values, air, jnp.asarray(train_x[:1000]), jax.random.key(100))
    test_value = evaluate(values, air, jnp.asarray(test_x), jax.random.key(101))
    accuracy, confusion = count_accuracy(air, test_x, test_counts, jax.random.key(102))
    print(f"AIR, {name} with presence by {args.presence}: {len(history)} steps in {seconds:.1f} s")
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
        plots(air, history, test_x, test_value, tag, args.out, jax.random.key(103))
        print(f"  pictures in {args.out}/air_{tag}_*.png")
    return {
        "history": history,
        "train": train_value,
        "test": test_value,
        "accuracy": accuracy,
        "confusion": confusion,
        "seconds": seconds,
    }


if __name__ == "__main__":
    main()
