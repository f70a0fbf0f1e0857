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


class Dual(tuple):
    """A dual value ``(primal, tangent)`` that knows which score-function choices it
    depends on by data flow: ``deps``, a frozenset of their ids in ``State.table``.

    It unpacks as a pair, so every rule reads it as a plain dual; a plain pair
    (a value some rule built afresh) depends on every choice so far, which is
    always a sound answer."""

    deps: frozenset
    # Ids of vectorised calls (``ppl.vmap``) with one score per element whose
    # element j this value's element j (along axis 0) depends on alone.
    aligned: frozenset

    def __new__(cls, p, t, deps: frozenset, aligned: frozenset = frozenset()):
        self = super().__new__(cls, (p, t))
        self.deps, self.aligned = deps, aligned
        return self


def deps_of(x):
    """The ids ``x`` depends on; ``None`` (every choice) for a plain pair."""
    return getattr(x, "deps", None)


def union(deps_list):
    """The union of dependence sets; ``None`` (every choice) if any is ``None``."""
    out = frozenset()
    for d in deps_list:
        if d is None:
            return None
        out = out | d
    return out


def aligned_of(x) -> frozenset:
    """The ids ``x`` depends on element by element (see ``Dual``)."""
    return getattr(x, "aligned", frozenset())


def tainted(x, deps, aligned: frozenset = frozenset()):
    """``x`` as a dual that depends on ``deps`` (a plain pair for ``None``), element
    by element on the ids in ``aligned``."""
    return (x[0], x[1]) if deps is None else Dual(x[0], x[1], deps, aligned & deps)


def lift_known(x):
    """A constant: depends on no random choice."""
    return Dual(x, None, frozenset())


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
    outs = [(o, None) for o in out] if out_t is None else list(zip(out, out_t))
    deps = union(deps_of(d) for d in duals)
    if deps is None:
        return outs
    return [Dual(p, t, deps) for p, t in outs]


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


def sum_leading(t):
    """A tangent (or ``None``, zero) summed over its leading axis: the elements of a
    loop or a vectorised call."""
    return None if t is None else jnp.sum(t, axis=0)


class StackedRecord(Recorded):
    """The entry of a loop or vectorised call, which also keeps the log density
    of each element (``per_element``: the stacked ``(logp, logp tangent)``)."""

    per_element: Any = None


def record_stacked(state: "State", addr: tuple, rec: tuple, choices_tree) -> "State":
    """``state`` with the choices a loop or vectorised call made at ``addr`` recorded
    for an enclosing ``sim``: ``rec`` is ``(leaves, leaf tangents, (logp, logp
    tangent))`` stacked along the leading axis, ``choices_tree`` their structure."""
    leaves, leaves_t, (lp, lt) = rec
    stacked = jax.tree.unflatten(choices_tree, leaves)
    entry = StackedRecord(addr, stacked, list(leaves_t), (jnp.sum(lp), sum_leading(lt)))
    entry.per_element = (lp, lt)
    return state._replace(rec=state.rec + (entry,))


class State(NamedTuple):
    """Accumulators threaded along one sample path.

    Reinforce needs only the final value of its continuation, so instead of
    capturing the continuation it adds its score tangent to ``s`` (and
    ``baseline * score`` to ``c``); the end of the program adds
    ``value * s - c``. The same bookkeeping works inside loops.
    ``cost_p``/``cost_t`` collect ``add_cost`` terms; ``rec`` collects the
    choices of an enclosing ``sim`` as a tuple of ``Recorded`` (``None``
    when nothing records).

    With Rao-Blackwellization on (``rb``, see ``.dataflow``), each call
    site's own score goes from ``s`` to ``table`` (its id is its position),
    and each term multiplies only the scores of the ids it depends on;
    ``priced`` is the part of ``cost_p`` whose tangent already has its scores.
    A ``ppl.vmap``'s entry is the vector of its elements' scores, which a term
    made element by element multiplies element by element (``score_of``
    sums it for any other term).
    """

    s: Any = None
    c: Any = None
    cost_p: Any = None
    cost_t: Any = None
    rec: Any = None
    rb: Any = None
    table: tuple = ()
    priced: Any = None


def score_of(state: State, deps):
    """The sum of the scores ``deps`` names (every score for ``None``)."""
    if not state.rb:
        return state.s
    if deps is None:
        total = state.s
        for t in state.table:
            total = add(total, _whole(t))
        return total
    total = None
    for i in sorted(deps):
        total = add(total, _whole(state.table[i]))
    return total


def _whole(score):
    """A score as one number: a per-element entry summed."""
    return score if score is None or jnp.ndim(score) == 0 else jnp.sum(score)


def per_element_scores(state: State, aligned: frozenset, n: int):
    """The summed element-wise scores (a vector of ``n``) of the ids in ``aligned``,
    or ``None`` if an id's entry is not such a vector."""
    total = None
    for i in sorted(aligned):
        t = state.table[i] if i < len(state.table) else None
        if t is None or jnp.shape(t) != (n,):
            return None
        total = add(total, t)
    return total


def finish(value, state: State) -> Result:
    """The result at the end of a sample path: the value times the scores it
    depends on, plus the costs (already times theirs), minus the baselines."""
    p, t = value
    total = p if state.cost_p is None else p + state.cost_p
    t = add(add(t, mul(p, score_of(state, deps_of(value)))), state.cost_t)
    if state.c is not None:
        t = add(t, -state.c)
    return Result(total, t, score_of(state, None))
