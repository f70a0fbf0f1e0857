"""The ADEV rule of a single random choice (a distribution, possibly with a
strategy fixed at its call site).

The strategy samples the value and accounts for its derivative. Strategies
that evaluate the rest of the program several times (enum, mvd) are counted
as they nest, so a program that would branch past ``MAX_BRANCHES`` is
refused before anything is built.
"""

from __future__ import annotations

import math

import jax

from ppl._errors import PPLError, fmt_addr
from ppl.choices import ChoiceMap
from ppl.core import Continue
from ppl.distributions import Distribution
from ppl.transforms.adev import dual as _dual
from ppl.transforms.adev.dual import Recorded, State
from ppl.transforms.adev.interpreter import SiteCall, rule
from ppl.transforms.adev.strategies import WithStrategy, default_strategy
from ppl.transforms.adev.within_body import with_rest_of_body


@rule.register(Distribution)
@rule.register(WithStrategy)
def choice(gen_fn, ctx, site, key, ins, state, k, addr):
    """One random choice of a distribution, with its strategy: the policy's, else
    the call site's, else the distribution's default."""
    gen_fn = site.gen_fn
    if isinstance(gen_fn, WithStrategy):
        dist_fn, chosen = gen_fn.dist_fn, gen_fn.strategy
        params_p, _ = gen_fn.params_and_extra(jax.tree.unflatten(site.in_tree, _dual.primals(ins)))
        tree = jax.tree.structure(params_p)
        duals, extra = ins[: tree.num_leaves], ins[tree.num_leaves :]
    else:
        dist_fn, chosen, tree, duals, extra = gen_fn, None, site.in_tree, ins, []
    call = _ChoiceCall(addr, key, dist_fn, duals, tree, extra)
    d = dist_fn.dist(*call.args_p)
    strategy = ctx.lookup(addr) or chosen or default_strategy(d)
    strategy.check(dist_fn, d, addr)
    if not strategy.needs_continuation:
        value, state = strategy.sample(call, state)
        return Continue([value], _record_choice(state, call, value))

    def rest(v, st):
        return k([v], _record_choice(st, call, v))

    with _branching(ctx, addr, strategy.branch_count(d)):
        if ctx.loop is not None:
            return with_rest_of_body(strategy, call, state, rest, ctx.loop)
        return strategy.with_continuation(call, state, rest)


class _ChoiceCall(SiteCall):
    """A ``SiteCall`` that also keeps the tangents of the traced strategy
    settings (``extra_t``): a learned baseline's tangent is its regression signal."""

    def __init__(self, addr, key, dist_fn, duals, tree, extra):
        super().__init__(addr, key, dist_fn, duals, tree, _dual.primals(extra))
        self.extra_t = tuple(t for _, t in extra)


MAX_BRANCHES = 2**16


class _branching:
    """Counts the copies of the rest of the program that nested enum/mvd choices
    evaluate, and refuses before building more than ``MAX_BRANCHES``
    (XLA would otherwise run out of memory or abort the process)."""

    def __init__(self, ctx, addr, n):
        self.ctx, self.entry = ctx, (addr, n)

    def __enter__(self):
        stack = self.ctx.branching
        stack.append(self.entry)
        total = math.prod(n for _, n in stack)
        if total > MAX_BRANCHES:
            shown = ", ".join(f"{fmt_addr(a)} ({n})" for a, n in stack[:8]) + (
                ", ..." if len(stack) > 8 else ""
            )
            n_sites = len(stack)
            del stack[:]
            raise PPLError(
                f"enum/mvd at the {n_sites} nested choices {shown} (branches each) would evaluate "
                "the "
                f"rest of the program on at least {total} branches, more than {MAX_BRANCHES}; XLA "
                "would run out of memory. Use reinforce (with a baseline, or ppl.E(f, n, "
                "loo=True)) "
                "or reparam for some of them."
            )
        return self

    def __exit__(self, *exc):
        if self.ctx.branching and self.ctx.branching[-1] is self.entry:
            self.ctx.branching.pop()
        return False


def _record_choice(state: State, call: SiteCall, value) -> State:
    if state.rec is None:
        return state
    tree, dist_fn = call.tree, call.dist_fn
    logp = _dual.jvp(
        lambda x, *flat: dist_fn.log_density(x, jax.tree.unflatten(tree, flat)),
        [value, *call.duals],
    )
    entry = Recorded(call.addr, ChoiceMap.value(value[0]), [value[1]], logp)
    return state._replace(rec=state.rec + (entry,))
