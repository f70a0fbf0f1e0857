"""Dual numbers for ADEV: a value is ``(primal, tangent)``; ``None`` is a zero tangent.

Keeping zero tangents symbolic matters twice: the primal-only pass (the
``custom_jvp`` primal) then contains no derivative code at all, and integer or
boolean values never need ``float0`` tangents.
"""

from __future__ import annotations

from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp


def is_float(x) -> bool:
    return jnp.issubdtype(jnp.result_type(x), jnp.inexact)


def is_zero(t) -> bool:
    return t is None or getattr(t, "dtype", None) == jax.dtypes.float0


def lift(x):
    return (x, None)


def primals(duals) -> list:
    return [p for p, _ in duals]


def jvp(fn: Callable, duals: list):
    """``fn(*primals) -> pytree`` under forward mode: ``(out, out_tangent)``.

    Only inputs with a tangent are differentiated; ``out_tangent`` is ``None``
    when nothing is, otherwise a pytree like ``out`` with ``None`` for leaves
    that cannot carry a tangent (integers, booleans).
    """
    ps = [p for p, _ in duals]
    live = [i for i, (_, t) in enumerate(duals) if not is_zero(t)]
    if not live:
        return fn(*ps), None

    def on_live(*xs):
        full = list(ps)
        for i, x in zip(live, xs):
            full[i] = x
        return fn(*full)

    out, out_t = jax.jvp(on_live, [ps[i] for i in live], [duals[i][1] for i in live])
    return out, jax.tree.map(lambda t: None if is_zero(t) else t, out_t)


def apply(fn: Callable, duals: list) -> list:
    """Evaluate a sample-free equation ``fn(*raw) -> list`` on dual values."""
    out, out_t = jvp(fn, duals)
    if out_t is None:
        return [(o, None) for o in out]
    return list(zip(out, out_t))


def add(a, b):
    if a is None:
        return b
    if b is None:
        return a
    return a + b


def mul(a, b):
    return None if a is None or b is None else a * b


def instantiate(p, t):
    """A concrete tangent for loop carries: zeros for reals, ``None`` otherwise."""
    if not is_float(p):
        return None
    return jnp.zeros(jnp.shape(p), jnp.result_type(p)) if t is None else t


class Result(NamedTuple):
    """What the rest of an expectation program evaluates to.

    ``p`` is the estimate, ``t`` its tangent, and ``u`` the tangent that the
    same sample path gives to the constant 1 (a zero-mean control variate:
    subtracting ``b * u`` from ``t`` is a baseline ``b`` on every reinforce
    choice, which is how leave-one-out baselines are applied).
    """

    p: Any
    t: Any
    u: Any


class Recorded(NamedTuple):
    """One call's choices recorded for an enclosing ``sim``: the ``addr`` they sit
    under, their ``choices`` (a choice map of primals), the flat ``tangents`` of
    its leaves (``None`` for none), and their log density ``logp`` as a dual."""

    addr: tuple
    choices: Any
    tangents: list
    logp: tuple


class State(NamedTuple):
    """Accumulators threaded along one sample path.

    Reinforce needs only the final value of its continuation, so instead of
    capturing the continuation it adds its score tangent to ``s`` (and
    ``baseline * score`` to ``c``); the end of the program adds
    ``value * s - c``. The same bookkeeping works inside loops.
    ``cost_p``/``cost_t`` collect ``add_cost`` terms; ``rec`` collects the
    choices of an enclosing ``sim`` as a tuple of :class:`Recorded` (``None``
    when nothing records).
    """

    s: Any = None
    c: Any = None
    cost_p: Any = None
    cost_t: Any = None
    rec: Any = None


def finish(value, state: State) -> Result:
    """The result at the end of a sample path."""
    p, t = value
    total = p if state.cost_p is None else p + state.cost_p
    t = add(add(t, mul(p, state.s)), state.cost_t)
    if state.c is not None:
        t = add(t, -state.c)
    return Result(total, t, state.s)
