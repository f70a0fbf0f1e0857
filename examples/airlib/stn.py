"""A spatial transformer in JAX: bilinear sampling on an affine grid.

Coordinates are normalised to [-1, 1] across an image, with pixel centres at
``(i + 0.5) / n * 2 - 1``; outside the image the value is 0. A ``where``
vector ``(s, tx, ty)`` names the square window of half-width ``s`` centred at
``(tx, ty)``: ``glimpse`` reads that window of a canvas into a small image,
``place`` writes a small image into that window of an empty canvas (the
inverse map), so ``glimpse(place(obj, w), w)`` gives back ``obj``.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp


def centres(n: int) -> jnp.ndarray:
    return (jnp.arange(n, dtype=jnp.float32) + 0.5) / n * 2.0 - 1.0


def _weights(coords, n: int):
    """Bilinear interpolation weights (len(coords), n): a triangle of width one
    pixel around each continuous pixel index, so pixels outside read as 0."""
    index = (coords + 1.0) * (n / 2.0) - 0.5
    return jax.nn.relu(1.0 - jnp.abs(index[:, None] - jnp.arange(n, dtype=coords.dtype)[None, :]))


def bilinear(image, ys, xs):
    """``image`` (H, W) read by bilinear interpolation at the grid ``ys`` x ``xs``
    (1-d normalised coordinates): out[i, j] = image at (ys[i], xs[j]).

    Windows are axis-aligned, so interpolation separates into two small matrix
    products: no gathers, which keeps XLA's compile time and the CPU run time low."""
    h, w = image.shape
    return _weights(ys, h) @ image @ _weights(xs, w).T


def glimpse(canvas, where, size: int):
    """The ``size`` x ``size`` window of ``canvas`` named by ``where = (s, tx, ty)``."""
    s, tx, ty = where[0], where[1], where[2]
    u = centres(size)
    return bilinear(canvas, s * u + ty, s * u + tx)


def place(obj, where, size: int):
    """A ``size`` x ``size`` canvas with ``obj`` drawn in the window named by ``where``."""
    s, tx, ty = where[0], where[1], where[2]
    c = centres(size)
    return bilinear(obj, (c - ty) / s, (c - tx) / s)
