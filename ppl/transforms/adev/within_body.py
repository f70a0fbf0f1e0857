"""Enum and mvd for a choice inside a loop body or a traced branch.

Such a body is traced once for all its runs, so a strategy there cannot call
the rest of the *program*; it can call the rest of the *body*. That is exact
when the choice's value stays inside the body: when neither the body's
outputs (its return value, a scan's carry) nor the choices it records for an
enclosing ``sim`` depend on it, everything after the body is the same for
every value, and the strategy's weighted sum (or difference) of the rest of
the body is the whole effect of the choice. The value of an expectation is
then a sum of per-run terms (``add_cost``, densities inside the body), and
each run's choice is summed against its own terms only: K evaluations per
run, never K to the number of runs.

What a run of the rest of the body leaves behind (its costs and score
accumulators, as changes from the state at the choice) is packed into one
vector, so each strategy combines it with its own rule unchanged: the costs
as the value and tangent of a ``Result``, and the score accumulators as a
tangent with value zero, which every strategy's rule then averages with the
branch weights and nothing else.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from ppl._errors import PPLError, fmt_addr
from ppl.core import depends_on
from ppl.transforms.adev import dual as _dual
from ppl.transforms.adev.dual import Result, State


class BodyEnd(NamedTuple):
    """The end of a loop body or traced branch walked without the rest of the
    program: its output duals and the state there."""

    outs: list
    state: State


def with_rest_of_body(strategy, call, state: State, rest, loop) -> Any:
    """Run ``strategy`` (enum or mvd) at a choice inside a body, on the rest of the body.

    Args:
        strategy: a strategy that needs the continuation.
        call: the choice (a ``ppl.transforms.adev.interpreter.SiteCall``).
        state: the state at the choice.
        rest: ``rest(value_dual, state)``, the rest of the body from the choice:
            a ``BodyEnd`` (or, inside an expectation nested in the body,
            that expectation's ``Result``).
        loop: ``(address, kind)`` of the innermost enclosing body.

    Returns:
        What ``rest`` returns: the body's end with the choice summed in.

    Raises:
        PPLError: naming the choice, the body and the fix, if the body's outputs
            or recorded choices depend on the choice's value.
    """
    d = call.dist_fn.dist(*call.args_p)
    probe = call.dist_fn.draw(call.key, d)
    end = rest((probe, None), state)
    if isinstance(end, Result):  # the rest ends an expectation nested in the body
        return strategy.with_continuation(call, state, rest)
    _check_contained(strategy, call, state, rest, probe, loop)

    def packed(v, st):
        return _pack(state, rest(v, st).state)

    summed = strategy.with_continuation(call, state, packed)
    return BodyEnd(end.outs, _unpack(state, end.state, summed))


def _leaving(end: BodyEnd) -> list:
    """The arrays that leave the body: its outputs and its recorded choices."""
    leaves = jax.tree.leaves((end.outs, end.state.rec))
    return [x for x in leaves if hasattr(x, "dtype")]


def _check_contained(strategy, call, state, rest, probe, loop) -> None:
    if not depends_on(lambda v: _leaving(rest((v, None), state)), [probe], [0]):
        return
    recorded = state.rec is not None
    what = "the body's return value or carry" + (
        ", or the choices it records for an enclosing ppl.sim," if recorded else ""
    )
    raise PPLError(
        f"strategy {strategy.name} at {fmt_addr(call.addr)} is inside {fmt_addr(loop[0])} "
        f"({loop[1]}), and {what} depends on its value. Inside a body traced once for all its "
        f"runs, {strategy.name} evaluates only the rest of the body, so the value must feed only "
        "terms added inside it (ppl.add_cost, densities computed there). Use reinforce (with a "
        "baseline) or reparam for this choice"
        + (
            ", or, for a guide's discrete choices, sum them out of the guide "
            "(ppl.sum_out(guide, ppl.select(...)))"
            if recorded
            else ""
        )
        + "; to sum a model's discrete choices exactly, use ppl.sum_out on the model."
    )


# The packed vector: [cost, s, c]; the value has zeros where only tangents live.
def _change(after, before):
    if after is None:
        return None
    return after if before is None else after - before


def _pack(before: State, after: State) -> Result:
    zero = jnp.zeros((), jnp.result_type(float))
    cost = _change(after.cost_p, before.cost_p)
    p = jnp.stack([zero if cost is None else cost, zero, zero])
    tangents = [
        _change(after.cost_t, before.cost_t),
        _change(after.s, before.s),
        _change(after.c, before.c),
    ]
    if all(t is None for t in tangents):
        return Result(p, None, None)
    return Result(p, jnp.stack([zero if t is None else t for t in tangents]), None)


def _unpack(before: State, end: State, summed: Result) -> State:
    """The state after the body: ``before`` plus the weighted changes (the
    tangents stay empty when nothing along the body has one)."""
    cost_p = before.cost_p if end.cost_p is None else _dual.add(before.cost_p, summed.p[0])
    t = summed.t
    if t is None:
        return end._replace(cost_p=cost_p, cost_t=before.cost_t, s=before.s, c=before.c)
    return end._replace(
        cost_p=cost_p,
        cost_t=_dual.add(before.cost_t, t[0]),
        s=_dual.add(before.s, t[1]),
        c=_dual.add(before.c, t[2]),
    )
