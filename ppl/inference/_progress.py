"""Progress bars of the long-running drivers (MCMC, SMC), drawn by tqdm.

A compiled loop cannot tell the host how far it got without a callback in
every step, so a driver that shows progress runs its loop in about twenty
compiled chunks and advances the bar between them.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from tqdm.auto import tqdm

from ppl.core import is_tracer

CHUNKS = 20


def progress_bar(total: int, enabled: bool, desc: str):
    """A tqdm bar of ``total`` steps named ``desc``, or ``None`` when disabled.

    Args:
        total: the number of steps.
        enabled: whether to show it.
        desc: its label (``"mcmc"``, ``"smc"``).

    Returns:
        A ``tqdm`` bar (call ``update(n)`` and ``close()``), or ``None``.

    Examples:
        >>> bar = progress_bar(1000, True, "mcmc")
    """
    return _bar(total, desc) if enabled else None


def _bar(total: int, desc: str) -> tqdm:
    return tqdm(total=total, desc=desc, unit="step", dynamic_ncols=True)


def chunk_length(total: int, progress: bool) -> int:
    """Steps per compiled call: all of them, or about ``total / 20`` for a bar (a
    divisor of ``total`` when one is near, so no step is padded).

    Args:
        total: the number of steps.
        progress: whether a bar is shown.

    Returns:
        A positive int.

    Examples:
        >>> chunk_length(1500, True), chunk_length(1500, False)
        (75, 1500)
    """
    if not progress or total <= CHUNKS:
        return max(total, 1)
    low = -(-total // CHUNKS)
    for c in range(low, 2 * low):
        if total % c == 0:
            return c
    return low


def scan(body, init, xs, *, progress: bool, desc: str):
    """``jax.lax.scan(body, init, xs)``, with a progress bar when asked for.

    With ``progress`` (and concrete inputs: under a trace there is no host to
    report to), the steps run in compiled chunks of ``chunk_length``; the
    last chunk's padding steps leave the carry as it is and are cut from the
    outputs, so the result is the same as one scan's.

    Args:
        body: ``(carry, x) -> (carry, y)``, as for ``lax.scan``.
        init: the initial carry.
        xs: the inputs, stacked along a leading axis.
        progress: show a bar.
        desc: the bar's label.

    Returns:
        ``(carry, ys)`` as ``lax.scan`` returns them.

    Examples:
        >>> carry, ys = scan(step, particles, inputs, progress=True, desc="smc")
    """
    total = jax.tree.leaves(xs)[0].shape[0]
    traced = any(is_tracer(x) for x in jax.tree.leaves((init, xs)))
    if not progress or traced or total <= 1:
        return jax.lax.scan(body, init, xs)
    chunk = chunk_length(total, True)
    x0 = jax.tree.map(lambda x: x[0], xs)
    y_shape = jax.eval_shape(body, init, x0)[1]

    def skip(carry, _):
        return carry, jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), y_shape)

    def masked(carry, inp):
        i, x = inp
        return jax.lax.cond(i < total, body, skip, carry, x)

    @jax.jit
    def run(carry, xs_chunk, first):
        return jax.lax.scan(masked, carry, (first + jnp.arange(chunk), xs_chunk))

    n_chunks = -(-total // chunk)
    pad = n_chunks * chunk - total
    # Padding steps read copies of the last input; their outputs are cut below.
    padded = jax.tree.map(lambda x: jnp.concatenate([x, jnp.repeat(x[-1:], pad, 0)]), xs)
    bar = _bar(total, desc)
    carry, outs = init, []
    for j in range(n_chunks):
        first = j * chunk
        carry, ys = run(carry, jax.tree.map(lambda x: x[first : first + chunk], padded), first)
        outs.append(ys)
        jax.block_until_ready(carry)
        bar.update(min(chunk, total - first))
    bar.close()
    ys = jax.tree.map(lambda *parts: jnp.concatenate(parts)[:total], *outs)
    return carry, ys
