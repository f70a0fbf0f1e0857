"""What every interpreter of a staged program does at its sites: derive the
site's key, and add up the sites' log densities (scores and weights)."""

from __future__ import annotations

from typing import Any, Iterable

import jax
import jax.numpy as jnp


def zero_score() -> jax.Array:
    """A log density of zero, in the default float dtype (float64 under ``jax_enable_x64``).

    Returns:
        A scalar array ``0.0``.

    Examples:
        >>> zero_score()
        Array(0., dtype=float32)
    """
    return jnp.zeros((), dtype=jnp.result_type(float))


def site_key(key, index: int):
    """The key of the site at ``index`` of a program, split deterministically from ``key``.

    Args:
        key: the key given to the interface method.
        index: the site's position in the program (``Site.index``).

    Returns:
        ``jax.random.fold_in(key, index)``: the same key gives the same draws
        under ``jit``, ``vmap`` and ``grad``.

    Examples:
        >>> k = site_key(jax.random.key(0), 3)
    """
    return jax.random.fold_in(key, index)


def total(scores: Iterable) -> Any:
    """The sum of log densities (scalars), zero for none.

    Args:
        scores: an iterable of scalar log densities.

    Returns:
        Their sum, starting from ``zero_score`` (so the result has the
        default float dtype even for no scores).

    Examples:
        >>> total([jnp.float32(-1.0), jnp.float32(-2.0)])
        Array(-3., dtype=float32)
    """
    out = zero_score()
    for s in scores:
        out = out + s
    return out
