"""The one module that touches JAX internals.

A random choice is the primitive ``sample_p``. A generative function is
staged with ``jax.make_jaxpr`` into a :class:`Program`: a flat list of
instructions in which every call-like equation that holds a random choice
(``jit``, ``custom_jvp_call``, ``remat``...) has been inlined, so that each
random choice is a top-level :class:`Site`. Interpreters then run the
program with a handler for sites; every other equation is re-bound as is,
so ordinary JAX code (including ``custom_jvp`` functions) needs no rule.
"""

from __future__ import annotations

import dataclasses
import itertools
from typing import Any, Callable

import jax
from jax._src import core as _jcore
from jax._src import dtypes as _jdtypes
from jax.extend import core as jex

from ppl._args import call, hold, release
from ppl._errors import PPLError, at_address, choice_outside_error, fmt_addr

# ---------------------------------------------------------------------------
# The sample primitive
# ---------------------------------------------------------------------------

sample_p = jex.Primitive("ppl_sample")
sample_p.multiple_results = True


def _outside_error(*_, addr, **__):
    raise choice_outside_error(addr)


sample_p.def_impl(_outside_error)


def _sample_abstract_eval(*in_avals, gen_fn, addr, in_tree):
    return gen_fn.retval_avals(in_tree, tuple(in_avals))


sample_p.def_abstract_eval(_sample_abstract_eval)


def _batching_error(args, dims, *, addr, **_):
    raise PPLError(
        f"random choice {fmt_addr(addr)} is inside jax.vmap within a generative "
        "function. jax.vmap cannot give each element its own address; use the "
        "combinator instead: ppl.vmap(gen_fn)(*args) @ 'addr' stacks the choices "
        "along a leading axis."
    )


def _jvp_error(primals, tangents, *, addr, **_):
    raise PPLError(
        f"random choice {fmt_addr(addr)} is inside jax.jvp/jax.grad within a "
        "generative function. Differentiate the interface instead, e.g. "
        "jax.grad(lambda p: model.assess(choices, (p,))[0]), or use an "
        "@ppl.expectation for gradients of expected values."
    )


jax.interpreters.batching.primitive_batchers[sample_p] = _batching_error
jax.interpreters.ad.primitive_jvps[sample_p] = _jvp_error


def bind_sample(gen_fn, args: tuple, addr):
    """Make the random choice ``gen_fn(*args) @ addr``; returns its value."""
    args = hold(args, repr(gen_fn))
    if hasattr(gen_fn, "hoisted"):
        gen_fn, args = gen_fn.hoisted(args)
    flat, in_tree = jax.tree.flatten(args)
    with at_address(addr):  # errors while staging the callee name this site
        outs = sample_p.bind(*flat, gen_fn=gen_fn, addr=addr, in_tree=in_tree)
        tree = gen_fn.retval_tree(in_tree, tuple(map(_aval, flat)))
    return release(jax.tree.unflatten(tree, outs))


def _aval(x):
    return jax.typeof(x)


def refuse_as_array(cls, error: Callable) -> None:
    """Make JAX raise ``error(x)`` wherever it meets an instance ``x`` of ``cls``
    as an array (``jnp`` functions, ``jax.typeof``, arguments of primitives).

    Args:
        cls: a Python class that is not a value, such as ``Invocation``.
        error: ``x -> Exception`` saying what to write instead.

    >>> refuse_as_array(Invocation, lambda inv: inv._misuse("used as an array"))
    """
    def refuse(x):
        raise error(x)

    _jcore.pytype_aval_mappings[cls] = refuse
    _jdtypes.canonicalize_value_handlers[cls] = refuse


def closes_over_tracers(fn) -> bool:
    """Whether ``fn``'s closure holds a value of a trace in progress (a nested
    ``@gen`` function using an argument of the function that defines it)."""
    for cell in getattr(fn, "__closure__", None) or ():
        try:
            contents = cell.cell_contents
        except ValueError:  # a cell not yet filled
            continue
        if not is_concrete(contents):
            return True
    return False


def hoist_closure(fn: Callable, args: tuple):
    """``(converted, hoisted)`` with ``converted(*args, hoisted) == fn(*args)``, where
    the values ``fn`` closes over from the enclosing trace come in as ``hoisted``.

    A site keeps its generative function to run later; one that closed over a
    tracer of the staging trace would see that tracer, long gone, instead of
    the value flowing at run time. Passed as operands, the values flow."""
    closed, _, out_tree = _flat_jaxpr(fn, args)
    traced = [not is_concrete(c) for c in closed.consts]
    hoisted = tuple(c for c, t in zip(closed.consts, traced) if t)
    kept = [c for c, t in zip(closed.consts, traced) if not t]

    def converted(*args_and_hoisted):
        *call_args, values = args_and_hoisted
        values, kept_values = iter(values), iter(kept)
        consts = [next(values) if t else next(kept_values) for t in traced]
        outs = jax.core.eval_jaxpr(closed.jaxpr, consts, *jax.tree.leaves(hold(tuple(call_args), "")))
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


def is_concrete(x) -> bool:
    """True when every leaf of ``x`` holds a value now (not a tracer)."""
    return not any(isinstance(leaf, jax.core.Tracer) for leaf in jax.tree.leaves(x))


# ---------------------------------------------------------------------------
# Programs: staged generative functions with their random choices on top
# ---------------------------------------------------------------------------

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


@dataclasses.dataclass(frozen=True)
class Site:
    """One random choice of a program: ``gen_fn(*args) @ addr``."""

    index: int
    addr: Any
    gen_fn: Any
    in_tree: Any
    ins: tuple
    outs: tuple


@dataclasses.dataclass(frozen=True)
class _Eqn:
    eqn: Any
    ins: tuple
    outs: tuple


@dataclasses.dataclass(frozen=True)
class _Lit:
    val: Any


@dataclasses.dataclass
class Program:
    """A staged generative function: instructions over scoped variables."""

    instrs: list
    sites: list
    invars: tuple
    outvars: tuple
    const_refs: tuple
    consts: tuple
    in_tree: Any
    out_tree: Any

    @property
    def addresses(self) -> list:
        return [s.addr for s in self.sites]

    def run(self, args: tuple, on_site: Callable) -> Any:
        """Evaluate the program; ``on_site(site, args) -> retval`` at each choice."""
        env = self._initial_env(args)
        for instr in self.instrs:
            _step(instr, env, on_site)
        return self._result(env)

    def walk(self, flat_args, *, lift, apply, on_site, finish, state=None):
        """Continuation-passing evaluation over a value domain chosen by the caller.

        This is what non-standard interpretations (ADEV's dual numbers) need:
        environment values are opaque here. ``lift(x)`` turns a constant or
        literal into a domain value; ``apply(fn, ins)`` evaluates a sample-free
        equation, given ``fn(*raw_inputs) -> list of raw outputs``;
        ``on_site(site, ins, state, k)`` handles a random choice, where ``ins``
        are the domain values of its flattened arguments. A handler either
        returns :class:`Continue` (the walk goes on in a loop, so long programs
        do not deepen the Python stack) or returns the result of calling
        ``k(outs, state)`` as many times as it likes. ``finish(outs, state)``
        receives the flat domain values of the program's outputs.
        """
        env = {}
        _write_all(env, self.const_refs, [lift(c) for c in self.consts])
        _write_all(env, self.invars, list(flat_args))

        def from_(i, env, state):
            def read(ref):
                return lift(ref.val) if isinstance(ref, _Lit) else env[ref]

            while i < len(self.instrs):
                instr = self.instrs[i]
                i += 1
                if isinstance(instr, _Eqn):
                    _write_all(env, instr.outs, apply(eqn_fn(instr.eqn), [read(r) for r in instr.ins]))
                    continue

                def k(outs, state, i=i, env=env, instr=instr):
                    env = dict(env)
                    _write_all(env, instr.outs, list(outs))
                    return from_(i, env, state)

                res = on_site(instr, [read(r) for r in instr.ins], state, k)
                if not isinstance(res, Continue):
                    return res
                _write_all(env, instr.outs, list(res.outs))
                state = res.state
            return finish([read(r) for r in self.outvars], state)

        return from_(0, env, state)

    def _initial_env(self, args):
        flat, in_tree = jax.tree.flatten(args)
        if in_tree != self.in_tree:
            raise PPLError(f"arguments have structure {in_tree}, but the program was staged for {self.in_tree}.")
        env = {}
        _write_all(env, self.const_refs, self.consts)
        _write_all(env, self.invars, flat)
        return env

    def _result(self, env):
        return jax.tree.unflatten(self.out_tree, [_read(env, r) for r in self.outvars])


@dataclasses.dataclass(frozen=True)
class Continue:
    """What a :meth:`Program.walk` site handler returns to go on without
    capturing its continuation: the site's output values and the new state."""

    outs: list
    state: Any


def eqn_fn(eqn) -> Callable:
    """A sample-free equation as a function of its raw inputs (returns a list).

    A ``custom_vjp`` function cannot be run under forward-mode AD, so it is
    run as its primal jaxpr: tangents then flow through the primal code (the
    custom backward rule is not used).
    """
    if eqn.primitive.name == "custom_vjp_call":
        return jex.jaxpr_as_fun(eqn.params["call_jaxpr"])
    params = eqn.primitive.get_bind_params(eqn.params)

    def fn(*ins):
        outs = eqn.primitive.bind(*ins, **params)
        return list(outs) if eqn.primitive.multiple_results else [outs]

    return fn


def _read(env, ref):
    return ref.val if isinstance(ref, _Lit) else env[ref]


def _write_all(env, refs, values):
    for ref, v in zip(refs, values, strict=True):
        if ref is not None:
            env[ref] = v


def _step(instr, env, on_site):
    if isinstance(instr, Site):
        site_args = jax.tree.unflatten(instr.in_tree, [_read(env, r) for r in instr.ins])
        _write_all(env, instr.outs, jax.tree.leaves(on_site(instr, site_args)))
        return
    eqn = instr.eqn
    ins = [_read(env, r) for r in instr.ins]
    outs = eqn.primitive.bind(*ins, **eqn.primitive.get_bind_params(eqn.params))
    if not eqn.primitive.multiple_results:
        outs = [outs]
    _write_all(env, instr.outs, outs)


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
    where = {"scan": "ppl.scan", "while": "ppl.scan (a loop of static length)", "cond": "ppl.switch / ppl.cond"}
    fix = where.get(name, "a ppl combinator (ppl.scan, ppl.switch, ppl.vmap)")
    shown = ", ".join(fmt_addr(a) for a in addrs)
    return PPLError(
        f"random choice {shown} is made inside jax.lax.{name}, whose body JAX runs "
        f"as one opaque loop or branch: ppl could not record or constrain it. Use "
        f"{fix} instead, which gives each choice an address and the right weights."
    )


def _compile(instrs, sites, scopes, jaxpr, scope, alias):
    """Emit flat instructions for ``jaxpr``; ``alias`` maps its variables to refs."""

    def ref(atom):
        if isinstance(atom, jex.Literal):
            return _Lit(atom.val)
        return alias.get(atom, (scope, atom))

    def out(var):
        return None if isinstance(var, jex.DropVar) else (scope, var)

    for eqn in jaxpr.eqns:
        ins = tuple(ref(a) for a in eqn.invars)
        if eqn.primitive is sample_p:
            p = eqn.params
            site = Site(len(sites), p["addr"], p["gen_fn"], p["in_tree"], ins, tuple(map(out, eqn.outvars)))
            sites.append(site)
            instrs.append(site)
            continue
        inside = [a for sub in jex.jaxprs_in_params(eqn.params) for a in _addresses_inside(sub)]
        if not inside:
            instrs.append(_Eqn(eqn, ins, tuple(map(out, eqn.outvars))))
            continue
        name = eqn.primitive.name
        if name not in _CALL_PRIMITIVES:
            raise _control_flow_error(name, inside)
        sub = eqn.params[_CALL_PRIMITIVES[name]]
        sub_jaxpr, sub_consts = (sub.jaxpr, sub.consts) if isinstance(sub, jex.ClosedJaxpr) else (sub, ())
        sub_scope = next(scopes)
        # Call-like primitives pass any leading extra operands (consts) first.
        sub_alias = dict(zip(sub_jaxpr.constvars, map(_Lit, sub_consts)))
        sub_alias.update(zip(sub_jaxpr.invars, ins[len(ins) - len(sub_jaxpr.invars):]))
        _compile(instrs, sites, scopes, sub_jaxpr, sub_scope, sub_alias)
        for var, atom in zip(eqn.outvars, sub_jaxpr.outvars):
            if not isinstance(var, jex.DropVar):
                alias[var] = _Lit(atom.val) if isinstance(atom, jex.Literal) else sub_alias.get(atom, (sub_scope, atom))


def stage(fn: Callable, args: tuple, name: str = "generative function") -> Program:
    """Stage ``fn(*args)`` into a :class:`Program` (shapes from ``args``)."""
    closed, in_tree, out_tree = _flat_jaxpr(lambda *a: call(fn, a, name), hold(args, name))
    jaxpr = closed.jaxpr
    instrs, sites = [], []
    scope = 0
    const_refs = tuple((scope, v) for v in jaxpr.constvars)
    invars = tuple((scope, v) for v in jaxpr.invars)
    alias = {}
    _compile(instrs, sites, itertools.count(1), jaxpr, scope, alias)
    outvars = tuple(
        _Lit(a.val) if isinstance(a, jex.Literal) else alias.get(a, (scope, a)) for a in jaxpr.outvars
    )
    seen = set()
    for s in sites:
        if getattr(s.gen_fn, "addressless", False):  # e.g. ppl.add_cost: may repeat
            continue
        if s.addr in seen:
            raise PPLError(
                f"address {fmt_addr(s.addr)} is used twice in {name}. Each random choice "
                "needs its own address; for repeated choices use distinct names or "
                "ppl.vmap / ppl.repeat / ppl.scan, which stack them under one address."
            )
        seen.add(s.addr)
    return Program(instrs, sites, invars, outvars, const_refs, tuple(closed.consts), in_tree, out_tree)


def program_cache() -> Callable:
    """A cache of staged programs keyed by argument shapes, for one function."""
    cache = {}

    def get(fn, args, name):
        flat, tree = jax.tree.flatten(args)
        try:
            key = (tree, tuple(_aval(x) for x in flat))
        except TypeError:
            return stage(fn, args, name)
        prog = cache.get(key)
        if prog is None:
            prog = stage(fn, args, name)
            # A program that closed over tracers of an enclosing trace must not outlive it.
            if is_concrete(prog.consts):
                cache[key] = prog
        return prog

    return get


def depends_on(fn: Callable, args: list, which: list) -> bool:
    """Whether an output of ``fn(*args)`` depends, by data flow, on ``args[i]`` for
    ``i`` in ``which`` (decided by tracing, without running anything)."""
    closed = jax.make_jaxpr(fn)(*args)
    jaxpr = closed.jaxpr
    live = {jaxpr.invars[i] for i in which}
    for eqn in jaxpr.eqns:
        if any(not isinstance(v, jex.Literal) and v in live for v in eqn.invars):
            live.update(eqn.outvars)
    return any(not isinstance(v, jex.Literal) and v in live for v in jaxpr.outvars)


def is_differentiated(tree) -> bool:
    """Whether a leaf of ``tree`` is being differentiated by an enclosing
    ``jax.jvp``/``jax.grad`` (a forward- or reverse-mode tracer)."""
    from jax._src.interpreters import ad

    kinds = tuple(getattr(ad, n) for n in ("JVPTracer", "LinearizeTracer") if hasattr(ad, n))
    return any(isinstance(leaf, kinds) for leaf in jax.tree.leaves(tree))
