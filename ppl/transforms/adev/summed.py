"""ADEV rules for ``ppl.sum_out``: a generative function whose discrete choices
are summed out, on the sampling side of an expectation.

Its remaining choices are drawn by running the original function and
dropping the summed ones, so they have no pathwise derivative (it would pass
through the discrete draws); their density is the exact marginal, so the
score function of that marginal is a valid estimator. Both ``sim(sum_out(q))``
(a guide whose discrete choices are summed) and a ``sum_out`` called inside
an ``@gen`` function use it, as one call estimated whole; a policy at the
call's address may give ``reinforce(baseline=b)``. On the density side,
``density(sum_out(p))`` is the exact marginal (``assess``), which needs no
rule.
"""

from __future__ import annotations

import dataclasses

import jax

from ppl._errors import PPLError, fmt_addr
from ppl.combinators.sum_out import SumOut
from ppl.core import Continue
from ppl.transforms.adev import interpreter as _adev
from ppl.transforms.adev.expectation import _AdevOnly, sim_of, sim_outputs
from ppl.transforms.adev.strategies import reinforce


def _score_of_marginal(ctx, site, key, ins, state, addr):
    """The whole call by the score function of its exact marginal (the policy's
    reinforce, with its baseline, if one is given at ``addr``)."""
    inside = sorted(a for a in ctx.policy if len(a) > len(addr) and a[: len(addr)] == addr)
    if inside:
        raise PPLError(
            f"strategies were given for {', '.join(fmt_addr(a) for a in inside)}, choices of "
            f"{site.gen_fn.name}, whose remaining choices are drawn through the summed discrete "
            "ones and so have no pathwise derivative: the whole call is estimated by the score "
            "function of its exact marginal. Drop those strategies, or give "
            f"ppl.reinforce(baseline=b) for the call itself, at {fmt_addr(addr)}."
        )
    strategy = ctx.lookup(addr)
    _adev.check_call_policy(strategy, site.gen_fn, addr)
    return _adev.whole_call(ctx, site, key, ins, state, addr, strategy or reinforce)


@_adev.rule.register(SumOut)
def _sum_out_call(gen_fn, ctx, site, key, ins, state, k, addr):
    return _score_of_marginal(ctx, site, key, ins, state, addr)


class SimSummed(_AdevOnly):
    """``sim(sum_out(q))(*args) @ "q"``: the remaining choices of ``q`` and their
    exact log marginal, differentiated by the marginal's score."""

    def __init__(self, q: SumOut):
        self.q = q

    @property
    def name(self) -> str:
        return f"sim({self.q.name})"

    def _shape_fn(self, args):
        tr = self.q.simulate(jax.random.key(0), args)
        return tr.choices, tr.score


@_adev.rule.register(SimSummed)
def _sim_summed(s, ctx, site, key, ins, state, k, addr):
    call = dataclasses.replace(site, gen_fn=s.q)
    res = _score_of_marginal(ctx, call, key, ins, state._replace(rec=()), addr)
    return Continue(sim_outputs(res.state, addr), res.state._replace(rec=state.rec))


@sim_of.register(SumOut)
def _sim_of_sum_out(q: SumOut) -> SimSummed:
    return SimSummed(q)
