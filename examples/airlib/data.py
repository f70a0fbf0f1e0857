"""Multi-digit canvases: 0 to 2 MNIST digits (28 x 28) pasted at random places
on a 50 x 50 canvas, overlaps combined by maximum. Two digits' boxes are
offset by at least half a digit in some direction: they may overlap, but one
never hides the other (which would make "how many?" moot). Made from a seed,
so every run (and the Pyro benchmark) sees the same canvases."""

from __future__ import annotations

import numpy as np

CANVAS, DIGIT, MAX_DIGITS = 50, 28, 2


def canvases(digits: np.ndarray, n: int, seed: int):
    """``(images (n, 2500) float32 in [0, 1], counts (n,) int32)`` from ``digits`` (m, 784)."""
    rng = np.random.default_rng(seed)
    counts = rng.integers(0, MAX_DIGITS + 1, size=n)
    out = np.zeros((n, CANVAS, CANVAS), np.float32)
    for i, c in enumerate(counts):
        corners = _corners(rng, c)
        for d, (y, x) in zip(rng.choice(len(digits), size=c, replace=False), corners):
            window = out[i, y : y + DIGIT, x : x + DIGIT]
            np.maximum(window, digits[d].reshape(DIGIT, DIGIT), out=window)
    return out.reshape(n, CANVAS * CANVAS), counts.astype(np.int32)


def _corners(rng, c):
    """Top-left corners of ``c`` boxes, drawn together until no two are within half a digit
    (one box placed first could leave no room for the next, so they are redrawn jointly)."""
    while True:
        corners = rng.integers(0, CANVAS - DIGIT + 1, size=(c, 2))
        gaps = np.abs(corners[:, None] - corners[None]).max(-1) + DIGIT * np.eye(c, dtype=int)
        if c < 2 or gaps.min() >= DIGIT // 2:
            return corners
