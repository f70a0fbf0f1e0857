"""The compiled chunk of ``ppl.inference.vi.fit``: its steps in a ``while``
loop, how many run per call, and the recovery of the last finite parameters.

The steps run unguarded (``ppl.inference.vi.fit_step.advance``): the loop
stops after the first one whose estimate or gradient is not finite, and
``last_good`` recomputes the parameters before it from the chunk's start,
with the same keys.
"""

from __future__ import annotations

import dataclasses
import functools
import time
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from ppl._caches import register as register_cache
from ppl.inference._sharding import keep_replicated
from ppl.inference.vi.fit_step import FitState, Spec, advance

# The most steps one call of the compiled chunk runs by default (its history buffer).
MAX_CHUNK = 4096
# How long the host lets a default chunk run: progress and the loss shown update this often.
CHUNK_SECONDS = 0.25


class Chunk(NamedTuple):
    """The static argument of the compiled chunk: the step's spec, the steps that
    share one split of keys (``block``) and the most steps a call runs (a multiple)."""

    spec: Spec
    block: int
    length: int


class Sizes:
    """Steps per call of the chunk, a multiple of its block: one block with
    ``chunk=``, else chosen by time.

    The number of steps is an argument of the compiled chunk, not a constant,
    so changing it compiles nothing, and the keys come in blocks that do not
    depend on it, so neither does the result. The first call (which compiles) runs
    one block; later ones grow (at most eightfold) towards
    ``CHUNK_SECONDS`` each.
    """

    def __init__(self, chunk: Chunk):
        self.block, self.length = chunk.block, chunk.length
        self.n, self.calls, self.clock = chunk.block, 0, time.perf_counter()

    def next(self, remaining: int) -> int:
        return min(self.n, remaining)

    def took(self, n: int) -> None:
        now = time.perf_counter()
        elapsed, self.clock, self.calls = now - self.clock, now, self.calls + 1
        # the first call's time is mostly compilation
        wanted = 8 * n if self.calls == 1 else int(n * CHUNK_SECONDS / max(elapsed, 1e-6))
        wanted = min(self.length, 8 * n, wanted)
        self.n = max(self.block, wanted - wanted % self.block)


def carried(state: FitState) -> tuple:
    """What a step changes: the chunk's loop carries only this."""
    return state.params, state.opt_state


def with_carried(state: FitState, carry: tuple) -> FitState:
    params, opt_state = carry
    return dataclasses.replace(state, params=params, opt_state=opt_state, last_good=params)


def last_good(state: FitState, done: int, bad: int, before: tuple, key, chunk: Chunk):
    """The state at the last finite step before step ``done + bad``, recomputed.

    ``state`` is the start of the chunk that failed (at step ``done``) and
    ``before`` ``(state, done)`` of the chunk before it; their steps are rerun
    with the same keys, so the parameters are those the fit passed through.
    """
    if bad == 0:
        state, prev = before
        bad = done - prev
        done = prev
    if bad <= 1:
        return state
    carry, *_ = _run_chunk(state, key, np.int32(done), np.int32(bad - 1), chunk=chunk)
    return with_carried(state, carry)


@functools.partial(jax.jit, static_argnames="chunk")
def _run_chunk(state: FitState, key, done, n, chunk: Chunk):
    """Up to ``n`` (at most ``chunk.length``) steps from ``state``, the ``done``-th first.

    ``done`` is a multiple of ``chunk.block``; the steps of each block take
    their keys from one ``split(fold_in(key, first step of the block))``. A
    ``while`` loop, stopping after the first step whose estimate or gradient is
    not finite. Frozen arrays and data come in with the state as arguments (not
    constants baked into the program) and are not carried or returned: the
    result is the moved part of the state (``carried``), the objective
    estimates in a buffer of ``chunk.length``, the number of steps run and
    whether the last one was not finite, all replicated over the spec's mesh
    when it has one.
    """

    def going(carry):
        i, _, failed, _ = carry
        return (i < n) & ~failed

    def block(carry):
        first = carry[0]
        keys = jax.random.split(jax.random.fold_in(key, done + first), chunk.block)
        end = jnp.minimum(first + chunk.block, n)

        def one(carry):
            i, dynamic, _, values = carry
            params, opt_state, value, finite = advance(
                chunk.spec, keys[i - first], with_carried(state, dynamic)
            )
            values = values.at[i].set(value.astype(values.dtype))
            return i + 1, (params, opt_state), ~finite, values

        return jax.lax.while_loop(lambda c: (c[0] < end) & ~c[2], one, carry)

    values = jnp.zeros(chunk.length, jnp.result_type(float))
    init = (jnp.int32(0), carried(state), jnp.array(False), values)
    ran, dynamic, failed, values = jax.lax.while_loop(going, block, init)
    # Whole on every device: the next call then sees its inputs laid out as this one did.
    return keep_replicated((dynamic, values, ran, failed), chunk.spec.mesh)


# its cache holds specs (objectives, models); jax's stub of a jitted function omits clear_cache
register_cache(_run_chunk.clear_cache)  # pyright: ignore[reportAttributeAccessIssue]
