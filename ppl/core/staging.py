"""Staging: a generative function traced to a ``ppl.core.program.Program``.

``jax.make_jaxpr`` traces the function; every call-like equation that holds a
random choice (``jit``, ``custom_jvp_call``, ``remat``...) is inlined, so each
random choice becomes a top-level ``ppl.core.program.Site``. A random
choice inside a loop or branch of JAX's own (``lax.scan``, ``lax.cond``...) is
refused with an error naming the combinator to use. Also here: hoisting the
traced values a nested function closes over, the per-function program cache,
and data-flow dependence by tracing.
"""

from __future__ import annotations

import itertools
from typing import Callable

import jax
from jax._src import core as _jcore
from jax.extend import core as jex

from ppl._args import call, hold
from ppl._caches import Store
from ppl._errors import PPLError, choice_inside_error, fmt_addr
from ppl.core.primitive import aval, is_concrete, sample_p
from ppl.core.program import Eqn, Lit, Program, Site

_CALL_PRIMITIVES = {
    "pjit": "jaxpr",
    "jit": "jaxpr",
    "closed_call": "call_jaxpr",
    "core_call": "call_jaxpr",
    "remat2": "jaxpr",
    "checkpoint": "jaxpr",
    "custom_jvp_call": "call_jaxpr",
    "custom_vjp_call": "call_jaxpr",
    "custom_vjp_call_jaxpr": "fun_jaxpr",
}


def hoist_closure(fn: Callable, args: tuple):
    """``(converted, hoisted)`` with ``converted(*args, hoisted) == fn(*args)``, where
    the values ``fn`` closes over from the enclosing trace come in as ``hoisted``.

    A site keeps its generative function to run later; one that closed over a
    tracer of the staging trace would see that tracer, long gone, instead of
    the value flowing at run time. Passed as operands, the values flow.

    Args:
        fn: the function, called as ``fn(*args)``.
        args: its arguments (shapes are what matter).

    Returns:
        ``(converted, hoisted)``: the equivalent function taking the hoisted
        values as a last argument, and those values (tracers of the enclosing trace).

    Examples:
        >>> converted, values = hoist_closure(inner_fn, args)
        >>> converted(*args, values)   # == inner_fn(*args)
    """
    closed, _, out_tree = _flat_jaxpr(fn, args)
    traced = [not is_concrete(c) for c in closed.consts]
    hoisted = tuple(c for c, t in zip(closed.consts, traced) if t)
    kept = [c for c, t in zip(closed.consts, traced) if not t]

    def converted(*args_and_hoisted):
        *call_args, values = args_and_hoisted
        values, kept_values = iter(values), iter(kept)
        consts = [next(values) if t else next(kept_values) for t in traced]
        outs = _jcore.eval_jaxpr(closed.jaxpr, consts, *jax.tree.leaves(hold(tuple(call_args), "")))
        return jax.tree.unflatten(out_tree, outs)

    return converted, hoisted


def _flat_jaxpr(fn: Callable, args: tuple):
    """``(closed jaxpr, in_tree, out_tree)`` of ``fn(*args)`` over flat leaves."""
    flat, in_tree = jax.tree.flatten(args)
    out_tree = []

    def flat_fn(*xs):
        leaves, tree = jax.tree.flatten(fn(*jax.tree.unflatten(in_tree, xs)))
        out_tree.append(tree)
        return leaves

    return jax.make_jaxpr(flat_fn)(*flat), in_tree, out_tree[-1]


def _addresses_inside(jaxpr) -> list:
    """Addresses of random choices anywhere inside ``jaxpr``."""
    found = []
    for eqn in jaxpr.eqns:
        if eqn.primitive is sample_p:
            found.append(eqn.params["addr"])
        for sub in jex.jaxprs_in_params(eqn.params):
            found.extend(_addresses_inside(sub))
    return found


def _control_flow_error(name, addrs):
    where = {
        "scan": "ppl.scan",
        "while": "ppl.scan (a loop of static length)",
        "cond": "ppl.switch / ppl.cond",
    }
    fix = where.get(name, "a ppl combinator (ppl.scan, ppl.switch, ppl.vmap)")
    return choice_inside_error(
        addrs,
        f"made inside jax.lax.{name}",
        ", whose body JAX runs as one opaque loop or branch: ppl could not record or constrain it. "
        f"Use {fix} instead, which gives each choice an address and the right weights.",
    )


def _compile(instrs, sites, scopes, jaxpr, scope, alias):
    """Emit flat instructions for ``jaxpr``; ``alias`` maps its variables to refs."""

    def ref(atom):
        if isinstance(atom, jex.Literal):
            return Lit(atom.val)
        return alias.get(atom, (scope, atom))

    def out(var):
        return None if isinstance(var, jex.DropVar) else (scope, var)

    for eqn in jaxpr.eqns:
        ins = tuple(ref(a) for a in eqn.invars)
        if eqn.primitive is sample_p:
            p = eqn.params
            site = Site(
                len(sites), p["addr"], p["gen_fn"], p["in_tree"], ins, tuple(map(out, eqn.outvars))
            )
            sites.append(site)
            instrs.append(site)
            continue
        inside = [a for sub in jex.jaxprs_in_params(eqn.params) for a in _addresses_inside(sub)]
        if not inside:
            instrs.append(Eqn(eqn, ins, tuple(map(out, eqn.outvars))))
            continue
        name = eqn.primitive.name
        if name not in _CALL_PRIMITIVES:
            raise _control_flow_error(name, inside)
        sub = eqn.params[_CALL_PRIMITIVES[name]]
        sub_jaxpr, sub_consts = (
            (sub.jaxpr, sub.consts) if isinstance(sub, jex.ClosedJaxpr) else (sub, ())
        )
        sub_scope = next(scopes)
        # Call-like primitives pass any leading extra operands (consts) first.
        sub_alias = dict(zip(sub_jaxpr.constvars, map(Lit, sub_consts)))
        sub_alias.update(zip(sub_jaxpr.invars, ins[len(ins) - len(sub_jaxpr.invars) :]))
        _compile(instrs, sites, scopes, sub_jaxpr, sub_scope, sub_alias)
        for var, atom in zip(eqn.outvars, sub_jaxpr.outvars):
            if not isinstance(var, jex.DropVar):
                alias[var] = (
                    Lit(atom.val)
                    if isinstance(atom, jex.Literal)
                    else sub_alias.get(atom, (sub_scope, atom))
                )


def stage(fn: Callable, args: tuple, name: str = "generative function") -> Program:
    """Stage ``fn(*args)`` into a ``Program`` (shapes from ``args``).

    Args:
        fn: the body of a generative function, making choices with ``@``.
        args: arguments (only their shapes and static leaves are used).
        name: the function's name, for errors.

    Returns:
        A ``Program`` whose random choices are all top-level sites.

    Raises:
        PPLError: an address used twice; a random choice inside JAX's own
            control flow (``lax.scan``, ``lax.cond``, ``while``); anything
            ``ppl._args.call`` refuses (Python control flow on traced values).

    Examples:
        >>> prog = stage(lambda mu: ppl.normal(mu, 1.0) @ "x", (0.0,), "model")
        >>> prog.addresses
        ['x']
    """
    closed, in_tree, out_tree = _flat_jaxpr(lambda *a: call(fn, a, name), hold(args, name))
    jaxpr = closed.jaxpr
    instrs, sites = [], []
    scope = 0
    const_refs = tuple((scope, v) for v in jaxpr.constvars)
    invars = tuple((scope, v) for v in jaxpr.invars)
    alias = {}
    _compile(instrs, sites, itertools.count(1), jaxpr, scope, alias)
    outvars = tuple(
        Lit(a.val) if isinstance(a, jex.Literal) else alias.get(a, (scope, a))
        for a in jaxpr.outvars
    )
    seen = set()
    for s in sites:
        if s.gen_fn.addressless:  # e.g. ppl.add_cost: may repeat
            continue
        if s.addr in seen:
            raise PPLError(
                f"address {fmt_addr(s.addr)} is used twice in {name}. Each random choice "
                "needs its own address; for repeated choices use distinct names or "
                "ppl.vmap / ppl.repeat / ppl.scan, which stack them under one address."
            )
        seen.add(s.addr)
    return Program(
        instrs, sites, invars, outvars, const_refs, tuple(closed.consts), in_tree, out_tree
    )


def program_cache() -> Callable:
    """A cache of staged programs for one function, keyed by argument shapes.

    Made once per generative function, when it is made; its entries live in a
    ``ppl._caches.Store`` (freed with the function, emptied by
    ``ppl.clear_caches()``).

    Returns:
        ``get(fn, args, name) -> Program``: the program of ``fn`` for arguments
        shaped like ``args``, staged the first time. A program that closed over
        tracers of an enclosing trace is not kept (it must not outlive that
        trace); nor is one for arguments JAX cannot describe by shape.

    Raises:
        PPLError: from ``stage``, when ``get`` stages.

    Examples:
        >>> programs = program_cache()
        >>> prog = programs(model_fn, (1.0,), "model")
        >>> programs(model_fn, (2.0,), "model") is prog   # same shapes
        True
    """
    store = Store()

    def get(fn, args, name):
        flat, tree = jax.tree.flatten(args)
        try:
            key = (tree, tuple(aval(x) for x in flat))
        except TypeError:
            return stage(fn, args, name)
        # A program that closed over tracers of an enclosing trace must not outlive it.
        return store.cached(
            key, lambda: stage(fn, args, name), keep=lambda prog: is_concrete(prog.consts)
        )

    return get


def depends_on(fn: Callable, args: list, which: list) -> bool:
    """Whether an output of ``fn(*args)`` depends, by data flow, on ``args[i]`` for
    ``i`` in ``which`` (decided by tracing, without running anything).

    Args:
        fn: a JAX-traceable function of positional arrays.
        args: example arguments (their shapes).
        which: the indices of the arguments asked about.

    Returns:
        True if some output is computed from one of those arguments.

    Examples:
        >>> depends_on(lambda a, b: a * 2, [1.0, 2.0], [1])
        False
    """
    closed = jax.make_jaxpr(fn)(*args)
    jaxpr = closed.jaxpr
    live = {jaxpr.invars[i] for i in which}
    for eqn in jaxpr.eqns:
        if any(not isinstance(v, jex.Literal) and v in live for v in eqn.invars):
            live.update(eqn.outvars)
    return any(not isinstance(v, jex.Literal) and v in live for v in jaxpr.outvars)
