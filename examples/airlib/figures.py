"""AIR's figures: reconstructions with the inferred windows, the training curve,
and the count confusion matrix (matplotlib, written as small PNGs)."""

from __future__ import annotations

import os

import jax
import jax.numpy as jnp
import numpy as np

from airlib import data as D
from airlib import model as M


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def reconstructions(air, images, key, path: str, n: int = 8) -> None:
    """The first ``n`` canvases with the guide's windows drawn on them (one colour
    per step, only for objects present), and the model's mean canvas below each."""
    from matplotlib.patches import Rectangle

    plt = _pyplot()
    traces = jax.vmap(lambda k, x: M.guide.simulate(k, (air.guide, x)).choices)(
        jax.random.split(key, n), jnp.asarray(images[:n])
    )
    recon = jax.vmap(lambda c: M.render(air.decoder, c))(traces)
    fig, axes = plt.subplots(2, n, figsize=(2 * n, 4.2))
    half = D.CANVAS / 2
    for i in range(n):
        axes[0, i].imshow(images[i].reshape(D.CANVAS, D.CANVAS), cmap="gray", vmin=0, vmax=1)
        axes[1, i].imshow(np.asarray(recon[i]), cmap="gray", vmin=0, vmax=1)
        alive = True
        for t in range(M.STEPS):
            alive = alive and bool(traces[f"present{t}"][i])
            if alive:  # the window in pixels: centre (tx, ty), half-width s, in [-1, 1] units
                s, tx, ty = np.asarray(M.window(traces[f"where{t}"][i]))
                corner = ((tx - s + 1) * half - 0.5, (ty - s + 1) * half - 0.5)
                axes[0, i].add_patch(
                    Rectangle(
                        corner, 2 * s * half, 2 * s * half, fill=False, color="rgb"[t], lw=1.5
                    )
                )
        for a in axes[:, i]:
            a.axis("off")
    axes[0, 0].set_title("held-out canvases, inferred windows", loc="left")
    axes[1, 0].set_title("reconstructions", loc="left")
    fig.savefig(path, dpi=90, bbox_inches="tight")
    plt.close(fig)


def training_curve(history, held_out: float, path: str) -> None:
    """The minibatch bound per step, its moving average, and the held-out bound."""
    plt = _pyplot()
    w = max(1, len(history) // 50)
    fig = plt.figure(figsize=(6, 4))
    plt.plot(history, alpha=0.3, label="minibatch estimate")
    plt.plot(
        np.arange(w - 1, len(history)),
        np.convolve(history, np.ones(w) / w, "valid"),
        label="moving average",
    )
    plt.axhline(held_out, color="k", ls="--", label=f"held-out {held_out:.1f}")
    # The first steps are hundreds of nats below the rest; show where training ends up.
    tail = np.asarray(history)[len(history) // 10 :]
    if tail.size:
        plt.ylim(np.percentile(tail, 1) - 10, max(tail.max(), held_out) + 10)
    plt.xlabel("step")
    plt.ylabel("bound (nats per canvas)")
    plt.legend()
    fig.savefig(path, dpi=90, bbox_inches="tight")
    plt.close(fig)


def confusion_matrix(confusion, path: str) -> None:
    """The held-out count confusion matrix: true counts by row, inferred by column,
    each cell its number of canvases and its share of the row."""
    plt = _pyplot()
    confusion = np.asarray(confusion)
    share = confusion / np.maximum(confusion.sum(axis=1, keepdims=True), 1)
    fig, ax = plt.subplots(figsize=(3.6, 3.2))
    ax.imshow(share, cmap="Blues", vmin=0, vmax=1)
    for i, j in np.ndindex(confusion.shape):
        colour = "white" if share[i, j] > 0.5 else "black"
        ax.text(
            j, i, f"{confusion[i, j]}\n{share[i, j]:.0%}", ha="center", va="center", color=colour
        )
    ticks = range(confusion.shape[0])
    ax.set_xticks(ticks)
    ax.set_yticks(ticks)
    ax.set_xlabel("inferred count")
    ax.set_ylabel("true count")
    ax.set_title(f"held-out accuracy {np.trace(confusion) / confusion.sum():.3f}")
    fig.savefig(path, dpi=90, bbox_inches="tight")
    plt.close(fig)


def write_all(air, history, images, confusion, held_out: float, tag: str, out: str, key):
    """All three figures into ``out``, named ``air_<tag>_*.png``."""
    os.makedirs(out, exist_ok=True)
    stem = os.path.join(out, f"air_{tag}")
    reconstructions(air, images, key, f"{stem}_reconstructions.png")
    training_curve(history, held_out, f"{stem}_objective.png")
    confusion_matrix(confusion, f"{stem}_confusion.png")
