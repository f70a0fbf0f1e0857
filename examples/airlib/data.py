"""Multi-digit canvases: 0 to 2 MNIST digits (28 x 28, drawn SIZE x SIZE)
pasted at random places on a 50 x 50 canvas, overlaps combined by maximum.
Two digits' boxes are offset by at least half a digit in some direction: they
may overlap, but one never hides the other (which would make "how many?"
moot). Made from a seed, so every run (and the Pyro benchmark) sees the same
canvases."""

from __future__ import annotations

import numpy as np

CANVAS, DIGIT, MAX_DIGITS = 50, 28, 2
# A digit's side on the canvas: MNIST's 28 pixels scaled down by 1.3, the size of the
# digits in the usual multi-MNIST. At full size each digit has so many pixels that the
# bound gains more from drawing it with two objects than one object costs, and AIR then
# counts every single digit as two.
SIZE = 22


def canvases(digits: np.ndarray, n: int, seed: int, size: int = SIZE):
    """``(images (n, 2500) float32 in [0, 1], counts (n,) int32)`` from ``digits`` (m, 784),
    each digit drawn ``size`` x ``size`` pixels (resized bilinearly from 28 x 28)."""
    rng = np.random.default_rng(seed)
    counts = rng.integers(0, MAX_DIGITS + 1, size=n)
    digits = resize(digits, size)
    out = np.zeros((n, CANVAS, CANVAS), np.float32)
    for i, c in enumerate(counts):
        corners = _corners(rng, c, size)
        for d, (y, x) in zip(rng.choice(len(digits), size=c, replace=False), corners):
            window = out[i, y : y + size, x : x + size]
            np.maximum(window, digits[d], out=window)
    return out.reshape(n, CANVAS * CANVAS), counts.astype(np.int32)


def resize(digits: np.ndarray, size: int) -> np.ndarray:
    """``digits`` (m, 784) as (m, size, size) images, by bilinear interpolation."""
    images = digits.reshape(-1, DIGIT, DIGIT).astype(np.float32)
    if size == DIGIT:
        return images
    from scipy.ndimage import zoom

    out = np.asarray(zoom(images, (1, size / DIGIT, size / DIGIT), order=1), np.float32)
    return np.clip(out, 0.0, 1.0)


def _corners(rng, c, size: int = SIZE):
    """Top-left corners of ``c`` boxes, drawn together until no two are within half a digit
    (one box placed first could leave no room for the next, so they are redrawn jointly)."""
    while True:
        corners = rng.integers(0, CANVAS - size + 1, size=(c, 2))
        gaps = np.abs(corners[:, None] - corners[None]).max(-1) + size * np.eye(c, dtype=int)
        if c < 2 or gaps.min() >= size // 2:
            return corners
