"""ADEV: expectation programs as forward-mode derivative estimators.

The staged program is walked on dual numbers ``(primal, tangent)``. Equations
without random choices are evaluated under ``jax.jvp`` as a whole, so any JAX
code passes through (``custom_jvp`` functions, ``where``, ``cond``); only
random choices get rules. Each kind of callee has one rule, found by
``rule`` (a ``functools.singledispatch`` on the callee's type; the kinds
register theirs in the modules of this package); a callee of a kind with no
rule is an error naming it. Walking is continuation passing: strategies that
need the rest of the program as a function of the choice (enum, mvd) call
the continuation; the others return a value and go on.

The result is a ``Result`` whose tangent is linear in the input
tangents; ``ppl.expectation`` wraps it in a ``jax.custom_jvp``, so reverse
mode is JAX's transposition of this forward pass.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp

from ppl._errors import PPLError, fmt_addr
from ppl.choices import ChoiceMap
from ppl.core import Continue, Site
from ppl.transforms._sites import site_key
from ppl.transforms.adev import dataflow as _dataflow
from ppl.transforms.adev import dual as _dual
from ppl.transforms.adev.dual import Recorded, Result, State
from ppl.transforms.adev.strategies import Reinforce, Strategy
from ppl.transforms.adev.within_body import BodyEnd


def as_path(addr) -> tuple:
    return addr if isinstance(addr, tuple) else (addr,)


def check_policy(strategies) -> dict:
    """A policy ``{address: strategy}`` with addresses as tuples (paths)."""
    if isinstance(strategies, str) and strategies == "auto":
        raise PPLError(
            'strategies="auto" needs a pilot run, which needs a key and arguments: choose with '
            "result = ppl.choose_strategies(f, key, args), print(result) for the measured table, "
            "and pass strategies=result.policy."
        )
    if strategies is not None and not isinstance(strategies, Mapping):
        raise PPLError(
            "strategies must be a dict of address -> strategy, e.g. {'z': ppl.reinforce}; "
            f"got {type(strategies).__name__}."
        )
    policy = {}
    for addr, s in dict(strategies or {}).items():
        if not isinstance(s, Strategy):
            raise PPLError(
                f"the strategy for {fmt_addr(addr)} is {s!r}, which is not a strategy. Use one of "
                "ppl.reparam, ppl.reinforce (or reinforce(baseline=b)), ppl.enum, "
                "ppl.enum_sequential, ppl.mvd."
            )
        policy[as_path(addr)] = s
    return policy


class Ctx:
    """Settings of one ADEV pass, alive only while it is traced.

    ``forced`` maps a call's address to the strategy chosen for the whole call
    (reinforce): every choice inside that has no policy of its own takes it."""

    def __init__(
        self, policy: dict, loop=None, used=None, wanted=None, forced=None, branching=None
    ):
        self.policy, self.loop = policy, loop
        self.forced = dict(forced or {})
        # Shared by nested contexts, so that one check at the end covers all policies.
        self.used = set() if used is None else used
        self.wanted = set(policy) if wanted is None else wanted
        # The choices whose continuation is being evaluated more than once, innermost last.
        self.branching = [] if branching is None else branching

    def _with(self, **changes) -> "Ctx":
        fields: dict[str, Any] = dict(policy=self.policy, loop=self.loop, forced=self.forced)
        fields.update(changes)
        return Ctx(
            fields["policy"],
            fields["loop"],
            self.used,
            self.wanted,
            fields["forced"],
            self.branching,
        )

    def nested(self, policy: dict, path: tuple) -> "Ctx":
        """Inside a nested expectation: its own policy, overridden by the outer one."""
        merged = {path + a: s for a, s in policy.items()}
        merged.update(self.policy)
        self.wanted.update(merged)
        return self._with(policy=merged)

    def with_policy(self, policy: dict) -> "Ctx":
        """The same pass with another policy (the used/wanted checks stay shared)."""
        return self._with(policy=policy)

    def in_loop(self, addr, kind="ppl.scan") -> "Ctx":
        """Inside a body traced once for many runs (a loop, a traced branch):
        strategies that need the rest of the program get the rest of the body
        (``.within_body``)."""
        return self._with(loop=(addr, kind))

    def forcing(self, addr, strategy) -> "Ctx":
        return self._with(forced={**self.forced, addr: strategy})

    def lookup_forced(self, addr):
        """The whole-call strategy covering ``addr`` from an enclosing call, if any."""
        for prefix, forced in self.forced.items():
            if addr[: len(prefix)] == prefix:
                return forced
        return None

    def lookup(self, addr):
        s = self.policy.get(addr)
        if s is not None:
            self.used.add(addr)
            return s
        return self.lookup_forced(addr)

    def check_all_used(self):
        unused = sorted(a for a in self.wanted if a not in self.used)
        if unused:
            raise PPLError(
                "strategies were given for " + ", ".join(fmt_addr(a) for a in unused) + ", but the "
                "expectation makes no random choice there. Choices inside a called generative "
                "function are addressed by path, e.g. {('model', 'z'): ppl.reinforce}."
            )


class SiteCall:
    """What a strategy sees of one random choice."""

    def __init__(self, addr, key, dist_fn, duals, tree, extra_p=()):
        self.addr, self.key, self.dist_fn = addr, key, dist_fn
        self.duals, self.tree, self.extra_p = duals, tree, tuple(extra_p)
        self.args_p = jax.tree.unflatten(tree, _dual.primals(duals))

    def jvp(self, fn):
        """``fn(*params)`` and its tangent (``None`` if no parameter has one)."""
        tree = self.tree
        return _dual.jvp(lambda *flat: fn(*jax.tree.unflatten(tree, flat)), self.duals)


def run(ctx: Ctx, program, key, duals, state: State, path: tuple, finish):
    """Walk ``program`` on dual values; ``finish(out_duals, state)`` ends each path."""

    def on_site(site, ins, st, k):
        site_k, addr = site_key(key, site.index), path + (site.addr,)
        if not st.rb:
            return dispatch(ctx, site, site_k, ins, st, k, addr)

        def rule_of(st, k):
            return dispatch(ctx, site, site_k, ins, st, k, addr)

        return _dataflow.attributed(rule_of, site, ins, st, k)

    lift = _dual.lift_known if state.rb else _dual.lift
    return program.walk(
        duals, lift=lift, apply=_dual.apply, on_site=on_site, finish=finish, state=state
    )


def end_of_program(outs, state) -> Result:
    """The end of an expectation program: its value plus costs and score terms."""
    if len(outs) != 1 or jnp.shape(outs[0][0]) != ():
        shapes = [jnp.shape(p) for p, _ in outs]
        raise PPLError(
            "an expectation must return one real number, but it returned values of shapes "
            f"{shapes}. "
            "Return a scalar (e.g. jnp.sum(...) or one component); for several expectations, "
            "write one @ppl.expectation each or add the parts with ppl.add_cost."
        )
    p, t = outs[0]
    if not _dual.is_float(p):
        p, t = jnp.asarray(p, jnp.result_type(float)), None
    return _dual.finish(_dual.tainted((p, t), _dual.deps_of(outs[0])), state)


def dispatch(ctx, site, key, ins, state, k, addr):
    """The ADEV rule of one call site. Returns ``ppl.core.Continue`` or the
    result of calling ``k``."""
    return rule(site.gen_fn, ctx, site, key, ins, state, k, addr)


@functools.singledispatch
def rule(gen_fn, ctx, site, key, ins, state, k, addr):
    """The ADEV rule of a kind of callee, ``rule(gen_fn, ctx, site, key, ins,
    state, k, addr)``; each kind registers its own with ``@rule.register``.

    This default serves kinds with no rule: see ``no_rule``."""
    return no_rule(gen_fn, ctx, site, key, ins, state, k, addr)


def no_rule(gen_fn, ctx, site, key, ins, state, k, addr):
    """A callee with no rule of its own: estimated as a whole call by the score
    function when a policy asks for it, an error naming it otherwise."""
    strategy = ctx.lookup(addr)
    if isinstance(strategy, Reinforce):
        return whole_call(ctx, site, key, ins, state, addr, strategy)
    check_call_policy(strategy, gen_fn, addr)
    raise PPLError(
        f"{gen_fn.name} at {fmt_addr(addr)} has no gradient-estimation rule of its own inside an "
        "expectation. Estimate the whole call by the score function with a policy, "
        f"ppl.adev(f, strategies={{{fmt_addr(addr)}: ppl.reinforce}}), or write it as an @ppl.gen "
        "function of ppl's combinators."
    )


def check_call_policy(strategy, gen_fn, addr) -> None:
    """Only reinforce applies to a whole call."""
    if strategy is not None and not isinstance(strategy, Reinforce):
        raise PPLError(
            f"strategy {strategy.name} was given for {fmt_addr(addr)}, which is a call of "
            f"{gen_fn.name}, "
            "not a single random choice. Give strategies for the choices inside it, addressed by "
            f"path, e.g. {{{fmt_addr(addr + ('z',))}: {strategy.name}}}; reinforce is the one "
            "strategy that applies to a whole call."
        )


def call_policy(ctx, gen_fn, addr) -> "Ctx":
    """The context for the choices inside a call: with whole-call REINFORCE
    (a policy at the call's address), every choice inside by the score function."""
    strategy = ctx.lookup(addr)
    if strategy is None or strategy is ctx.lookup_forced(addr):
        return ctx
    check_call_policy(strategy, gen_fn, addr)
    return ctx.forcing(addr, strategy)


def open_call(ctx, gen_fn, key, duals, tree, state, addr):
    """Run one call to its own end, without the rest of the program (a loop body,
    a branch of a traced switch): ``(output duals, state)``. ``ctx`` must refuse
    strategies that need the continuation (``ctx.in_loop``)."""
    site = Site(0, addr[-1] if addr else "", gen_fn, tree, (), ())
    # Not a Continue: a walk that meets a Continue from a continuation would go on.
    res = dispatch(ctx, site, key, duals, state, lambda outs, st: BodyEnd(list(outs), st), addr)
    return res.outs, res.state


def _is_cost(x) -> bool:
    return getattr(x, "is_cost", False)


def whole_call(ctx, site, key, ins, state, addr, strategy=None):
    """Score-function estimate of a whole call, valid for any generative function.

    The call is simulated once; replaying its choices with ``update`` at the
    arguments gives the log density and the return value as functions of the
    arguments, so the return value's direct dependence on them keeps its
    pathwise derivative and the score of the choices multiplies the rest."""
    gen_fn, tree = site.gen_fn, site.in_tree
    args_p = jax.tree.unflatten(tree, _dual.primals(ins))
    shape = gen_fn.trace_shape(args_p)
    if any(_is_cost(x) for x in jax.tree.leaves(shape, is_leaf=_is_cost)):
        raise PPLError(
            f"{gen_fn.name} at {fmt_addr(addr)} calls ppl.add_cost, and its random choices are "
            "estimated here as one whole call, which cannot see costs. Return the cost from the "
            "call and add it after (ppl.add_cost(...) outside), or run the call outside ppl.sim."
        )
    k_sim, k_replay = jax.random.split(key)
    tr = gen_fn.simulate(k_sim, args_p)

    def replay(*flat):
        new, _, _ = gen_fn.update(k_replay, tr, ChoiceMap.empty(), jax.tree.unflatten(tree, flat))
        return new.score, new.retval

    (logp, retval), tangents = _dual.jvp(replay, ins)
    dlogp, dretval = (None, None) if tangents is None else tangents
    if dlogp is not None:
        b = getattr(strategy, "baseline", None)
        c = state.c if b is None else _dual.add(state.c, b * dlogp)
        state = state._replace(s=_dual.add(state.s, dlogp), c=c)
    if state.rec is not None:
        choices = tr.choices
        entry = Recorded(addr, choices, [None] * len(jax.tree.leaves(choices)), (logp, dlogp))
        state = state._replace(rec=state.rec + (entry,))
    out_tree = jax.tree.structure(retval)
    out_t = [None] * out_tree.num_leaves if dretval is None else out_tree.flatten_up_to(dretval)
    return Continue(list(zip(jax.tree.leaves(retval), out_t)), state)


def recorded_choices(entries, root: tuple):
    """The choice map (primal) and its flat tangents from recorded entries, with
    addresses relative to ``root``; and the total log density as a dual."""
    cm, ids, tangents = ChoiceMap.empty(), ChoiceMap.empty(), []
    logp, dlogp = None, None
    for addr, sub, sub_t, (lp, lt) in entries:
        rel = addr[len(root) :]
        start = len(tangents)
        tangents.extend(sub_t)
        numbered = jax.tree.unflatten(jax.tree.structure(sub), list(range(start, len(tangents))))
        cm, ids = cm | _at(rel, sub), ids | _at(rel, numbered)
        logp, dlogp = _dual.add(logp, lp), _dual.add(dlogp, lt)
    order = jax.tree.leaves(ids)
    if logp is None:
        logp = jnp.zeros((), jnp.result_type(float))
    return cm, [tangents[i] for i in order], (logp, dlogp)


def recorded_deps(entries, root: tuple) -> list:
    """What each leaf of ``recorded_choices``'s choice map depends on: its
    entry's tag ``(deps, aligned)`` (see ``.dataflow``), in the same order."""
    ids, deps = ChoiceMap.empty(), []
    for entry in entries:
        rel = entry.addr[len(root) :]
        start = len(deps)
        tag = (_dataflow.entry_deps(entry), getattr(entry, "aligned", frozenset()))
        deps.extend([tag] * len(jax.tree.leaves(entry.choices)))
        numbered = jax.tree.unflatten(
            jax.tree.structure(entry.choices), list(range(start, len(deps)))
        )
        ids = ids | _at(rel, numbered)
    return [deps[i] for i in jax.tree.leaves(ids)]


def _at(path, cm):
    for part in reversed(path):
        cm = ChoiceMap({part: cm})
    return cm


def top_level(expectation, key, args, targs):
    """``(estimate, tangent)`` of an expectation at ``args`` with tangents ``targs``
    (``None``, or a pytree like ``args`` whose zero leaves may be ``None``)."""
    flat, tree = jax.tree.flatten(args)
    if targs is None:
        duals = [(p, None) for p in flat]
    else:
        ts = tree.flatten_up_to(targs)
        duals = [
            (p, None if _symbolic_zero(t) or not _dual.is_float(p) else t) for p, t in zip(flat, ts)
        ]
    ctx = Ctx({})
    result = expectation._result(ctx, key, duals, tree, ())
    ctx.check_all_used()
    return result.p, result.t


def _symbolic_zero(t) -> bool:
    return t is None or isinstance(t, jax.custom_derivatives.SymbolicZero) or _dual.is_zero(t)
