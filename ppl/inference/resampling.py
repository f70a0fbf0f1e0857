"""Resampling schemes: ancestor indices from log weights.

Each scheme maps ``(key, log_weights, n)`` to ``n`` ancestor indices (int32) such that
the expected number of copies of particle ``i`` is ``n * w_i`` (normalised
weights), which is what keeps SMC's marginal-likelihood estimate unbiased.
They differ only in variance: multinomial > residual, stratified > systematic.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import jax
import jax.numpy as jnp

from ppl._errors import PPLError


def _normalized(log_weights):
    return jax.nn.softmax(log_weights)


def _cumulative(weights):
    """``jnp.cumsum(weights)`` in blocks: each block's own cumulative sum plus the
    total of the blocks before it. With the particles split over devices, the
    blocks follow the shards (64 blocks cover any device count dividing 64), so
    each device sums its own; a plain ``cumsum`` over a sharded axis ran in time
    quadratic in the particles on CPU (110 ms against 1.3 ms at 2^16 particles
    on 8 devices, as measured). On one device it is faster too (5.6 ms against
    26 ms at 2^20)."""
    n = weights.shape[0]
    blocks = math.gcd(n, 64)
    if blocks == 1:
        return jnp.cumsum(weights)
    within = jnp.cumsum(weights.reshape(blocks, n // blocks), axis=1)
    totals = within[:, -1]
    return (within + (jnp.cumsum(totals) - totals)[:, None]).reshape(n)


def _invert_cdf(weights, u):
    # searchsorted on the cumulative sum; the clip guards the last bin against
    # a cumulative sum that rounds to slightly below one.
    cdf = _cumulative(weights)
    idx = jnp.searchsorted(cdf, u * cdf[-1], side="right")
    return jnp.clip(idx, 0, weights.shape[0] - 1).astype(jnp.int32)


def multinomial(key, log_weights, n=None):
    """Independent draws from the weights."""
    n = log_weights.shape[0] if n is None else n
    return jax.random.categorical(key, log_weights, shape=(n,)).astype(jnp.int32)


def stratified(key, log_weights, n=None):
    """One uniform draw in each of ``n`` equal strata of [0, 1)."""
    n = log_weights.shape[0] if n is None else n
    u = (jnp.arange(n) + jax.random.uniform(key, (n,))) / n
    return _invert_cdf(_normalized(log_weights), u)


def systematic(key, log_weights, n=None):
    """One uniform offset shared by ``n`` evenly spaced points."""
    n = log_weights.shape[0] if n is None else n
    u = (jnp.arange(n) + jax.random.uniform(key, ())) / n
    return _invert_cdf(_normalized(log_weights), u)


def residual(key, log_weights, n=None):
    """``floor(n w_i)`` deterministic copies, the remainder drawn multinomially
    from the leftover weights."""
    n = log_weights.shape[0] if n is None else n
    w = _normalized(log_weights)
    counts = jnp.floor(n * w).astype(jnp.int32)
    n_fixed = jnp.sum(counts)
    fixed = jnp.repeat(jnp.arange(w.shape[0]), counts, total_repeat_length=n)
    leftover = n * w - counts
    # When every copy is deterministic the leftover weights are all zero; any
    # finite logits then do, since those draws are masked out below.
    log_left = jnp.where(leftover > 0, jnp.log(jnp.where(leftover > 0, leftover, 1.0)), -jnp.inf)
    log_left = jnp.where(n_fixed < n, log_left, 0.0)
    drawn = jax.random.categorical(key, log_left, shape=(n,))
    return jnp.where(jnp.arange(n) < n_fixed, fixed, drawn).astype(jnp.int32)


SCHEMES = {
    "multinomial": multinomial,
    "stratified": stratified,
    "systematic": systematic,
    "residual": residual,
}


def get_scheme(scheme: str | Callable[..., jax.Array]) -> Callable[..., jax.Array]:
    """A resampling scheme by name, or a callable as it is.

    Args:
        scheme: ``"multinomial"``, ``"stratified"``, ``"systematic"``,
            ``"residual"``, or a function ``(key, log_weights, n) -> indices``.

    Returns:
        The function ``(key, log_weights, n) -> n ancestor indices (int32)``.

    Raises:
        PPLError: for an unknown name, listing the known ones.

    Examples:
        >>> get_scheme("systematic")(jax.random.key(0), jnp.zeros(4), 4).shape
        (4,)
    """
    if callable(scheme):
        return scheme
    try:
        return SCHEMES[scheme]
    except KeyError:
        raise PPLError(
            f"unknown resampling scheme {scheme!r}; use one of {sorted(SCHEMES)} or pass "
            "a function (key, log_weights, n) -> ancestor indices."
        ) from None
