"""What ``ppl.combinators.sum_out`` needs to enumerate: the joint assignments
of finite discrete choices, which selected choices are summed where, and which
parts of a return value depend on the summed choices."""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np

from ppl._errors import PPLError, fmt_addr
from ppl.choices import ChoiceMap, Selection
from ppl.combinators.scan import ScanTrace
from ppl.combinators.switch import SwitchTrace
from ppl.combinators.vmap import VmapTrace
from ppl.core.program import Lit
from ppl.distributions import DistributionTrace
from ppl.gen import StaticGenerativeFunction, StaticTrace


# ---------------------------------------------------------------------------


def varies(fn, batched) -> list[bool]:
    """For each leaf of ``fn(x)``: whether it depends on ``x`` (mapped over axis 0).

    Decided when traced, by asking ``jax.vmap`` for an unmapped output: first for
    all leaves at once (the common answer, one trace), then leaf by leaf. It
    is as conservative as batching: ``0 * x`` counts as depending on ``x``.

    Args:
        fn: a function of one (pytree) argument.
        batched: values of that argument stacked along axis 0 (or their shapes).

    Returns:
        One bool per leaf of ``fn``'s output.

    Examples:
        >>> varies(lambda a: (a * 2.0, 3.0), jnp.arange(3.0))
        [True, False]
    """

    def leaves(x):
        return jax.tree.leaves(fn(x))

    def unmapped(f) -> bool:
        try:
            jax.eval_shape(jax.vmap(f, out_axes=None), batched)
            return True
        except ValueError:  # "vmap has mapped output but out_axes is None"
            return False

    n = len(jax.eval_shape(jax.vmap(leaves), batched))
    if unmapped(leaves):
        return [False] * n
    return [not unmapped(lambda x, i=i: leaves(x)[i]) for i in range(n)]


def pick(stacked, dependent: list[bool]):
    """One value from a stack of return values: the first where no leaf depends on
    the summed choices, and a marker elsewhere (NaN; -1 for integers, False for
    booleans), since there the summed choices have no one value.

    Args:
        stacked: return values stacked along axis 0 (one per assignment).
        dependent: one bool per leaf, from ``varies``.

    Returns:
        One return value.

    Examples:
        >>> pick((jnp.ones(4), jnp.arange(4)), [False, True])   # (1.0, -1)
    """
    leaves, tree = jax.tree.flatten(stacked)

    def one(x, dep):
        x = x[0]
        if not dep:
            return x
        if jnp.issubdtype(x.dtype, jnp.inexact):
            return jnp.full_like(x, jnp.nan)
        return jnp.full_like(x, False if x.dtype == jnp.bool_ else -1)

    return jax.tree.unflatten(tree, [one(x, d) for x, d in zip(leaves, dependent, strict=True)])


def zeros_of(shapes):
    """Zeros of the given ``jax.ShapeDtypeStruct`` leaves (to trace with)."""
    return jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), shapes)


def _walk(tr, path):
    """The sub-trace at ``path`` through ``@gen`` calls, or the first other kind met."""
    for i, part in enumerate(path):
        if not isinstance(tr, StaticTrace):
            return tr, path[:i]
        tr = tr.subtraces[part]
    return tr, path


def _support(addr, tr):
    """The support values of the choice at ``addr``, shape ``(K, n, *event)``."""
    if not isinstance(tr, DistributionTrace):
        raise PPLError(
            f"sum_out: {fmt_addr(addr)} is a call of {tr.gen_fn.name}, not one random choice. "
            "Select the finite discrete choices inside it, by path."
        )
    d = tr.gen_fn.dist(*tr.args)
    if not getattr(d, "has_enumerate_support", False):
        raise PPLError(
            f"sum_out: {fmt_addr(addr)} is drawn from {tr.gen_fn.name}, whose support cannot be "
            "enumerated. Only finite discrete choices (flip, bernoulli, categorical, binomial "
            "with a Python-int count, ...) can be summed out; leave it out of the selection."
        )
    try:
        vals = jnp.asarray(d.enumerate_support(expand=True), tr.value.dtype)
    except Exception as e:  # numpyro needs e.g. a binomial's count as a Python number
        first = str(e).splitlines()[0] if str(e) else ""
        raise PPLError(
            f"sum_out: the support of {fmt_addr(addr)} ({tr.gen_fn.name}) is not known when the "
            f"model is staged ({type(e).__name__}: {first}). Write counts into the model as "
            "Python ints (a number passed as an argument is traced)."
        ) from None
    n = int(np.prod(d.batch_shape))
    return vals.reshape((vals.shape[0], n, *d.event_shape))


def assignments(gen_fn, paths, kept, args, limit, name) -> ChoiceMap:
    """Every joint assignment of the choices at ``paths``, stacked along axis 0.

    The supports are read from the distributions of a run of ``gen_fn`` with
    ``kept`` given (numpyro's ``enumerate_support``); values per element of a
    batched choice count as separate choices (mixed-radix digits).

    Args:
        gen_fn: the generative function making the choices.
        paths: their addresses (through ``@gen`` calls only).
        kept: the remaining choices.
        args: the arguments.
        limit: the most assignments allowed.
        name: the name for messages.

    Returns:
        A ``ppl.ChoiceMap`` of the ``paths``, each with a leading axis of
        the number of assignments (empty if there are no paths).

    Raises:
        PPLError: naming each choice and its count beyond ``limit``; for a
            choice whose support cannot be enumerated or is not known when staged.

    Examples:
        >>> assignments(model, [("z",)], kept, args, 2**16, "sum_out(model)")["z"]
        [False, True]
    """
    if not paths:
        return ChoiceMap.empty()
    tr, _ = gen_fn.generate(jax.random.key(0), kept, args)
    supports = [_support(p, _walk(tr, p)[0]) for p in paths]
    radices = [s.shape[0] for s in supports for _ in range(s.shape[1])]
    total = int(np.prod(radices, dtype=object))
    if total > limit:
        shown = ", ".join(
            f"{fmt_addr(p)} ({s.shape[0]}^{s.shape[1]})" for p, s in zip(paths, supports)
        )
        raise PPLError(
            f"{name}: the summed choices {shown} have {total} joint assignments, more than "
            f"max_assignments={limit}. Raise max_assignments, or make them per-element choices "
            "of a ppl.vmap / steps of a ppl.scan, which are summed without the joint product."
        )
    digits = np.stack(np.unravel_index(np.arange(total), radices), axis=1)
    values, col = {}, 0
    for p, s, dt in zip(paths, supports, (_walk(tr, p)[0] for p in paths)):
        n = s.shape[1]
        v = s[digits[:, col : col + n], np.arange(n)]
        values[p] = v.reshape((total, *jnp.shape(dt.value)))
        col += n
    return ChoiceMap.d(values)


def plan(gen_fn, selection: Selection, args, name):
    """Split the selected addresses of ``gen_fn``: ``(joint paths, {site: sub-selection})``.

    Choices reached through ``@gen`` calls only are summed jointly here; a
    top-level call whose selected choices are inside a ``ppl.vmap``/``ppl.scan``
    or ``ppl.switch`` (at any depth) is summed on its own.

    Args:
        gen_fn: the generative function.
        selection: the summed choices.
        args: its arguments.
        name: the name for messages.

    Returns:
        ``(paths, calls)``: the addresses summed jointly, and per top-level
        address summed on its own the selection below it.

    Raises:
        PPLError: if nothing is selected, or a selected choice is inside a
            combinator other than ``ppl.vmap``/``ppl.repeat``/``ppl.scan``/``ppl.switch``.

    Examples:
        >>> plan(mixture, ppl.select("g", ("points", "c")), args, "m")
        ([('g',)], {'points': select('c')})
    """
    shape = gen_fn.trace_shape(args)
    addrs = shape.choices.filter(selection).addresses()
    if not addrs:
        raise PPLError(
            f"{name}: the selection {selection!r} names none of the choices of {gen_fn.name}. "
            "Select finite discrete choices it makes, by address."
        )
    if addrs == [()]:  # a single random choice, summed over its support
        return addrs, {}
    by_site: dict = {}
    for a in addrs:
        by_site.setdefault(a[0], []).append(a)
    joint, calls = [], {}
    for site, paths in by_site.items():
        ends = [_walk(shape, p) for p in paths]
        if all(isinstance(t, DistributionTrace) for t, _ in ends):
            joint += paths
            continue
        for t, at in ends:
            if not isinstance(
                t, (VmapTrace, ScanTrace, SwitchTrace, StaticTrace, DistributionTrace)
            ):
                raise PPLError(
                    f"{name}: the selected choices under {fmt_addr(at)} are made inside "
                    f"{t.gen_fn.name}; sum_out sums choices of @gen functions, ppl.vmap / "
                    "ppl.repeat, ppl.scan and ppl.switch / ppl.cond only. Leave them out of "
                    "the selection."
                )
        if not isinstance(gen_fn, StaticGenerativeFunction):
            raise PPLError(
                f"{name}: {fmt_addr(site)} is inside a combinator of {gen_fn.name}; wrap it in an "
                "@ppl.gen function to sum it out."
            )
        calls[site] = selection.child(site)
    return joint, calls


class Rewritten(StaticGenerativeFunction):
    """``base`` with the calls at some sites replaced by their ``sum_out``: the
    same staged program, each of those sites calling another generative function."""

    def __init__(self, base: StaticGenerativeFunction, calls: dict):
        super().__init__(base.fn)
        self.base, self.calls = base, calls

    def program(self, args):
        prog = self.base.program(args)
        new = {
            id(s): dataclasses.replace(s, gen_fn=self.calls[s.addr])
            for s in prog.sites
            if s.addr in self.calls
        }
        return dataclasses.replace(
            prog,
            instrs=[new.get(id(i), i) for i in prog.instrs],
            sites=[new.get(id(s), s) for s in prog.sites],
        )


def check_contained(rewritten: Rewritten, args, name) -> None:
    """The parts of a separately summed call's return value that depend on its summed
    choices must not be used by the rest of the function: the sum would not see it.

    A value counts as used when any later instruction or the function's return
    value reads it (conservative: a read whose result is dropped counts too).

    Args:
        rewritten: the function with its separately summed calls in place.
        args: its arguments.
        name: the name for messages.

    Raises:
        PPLError: naming the call's address and the fix.

    Examples:
        >>> check_contained(Rewritten(model, {"points": ...}), args, "sum_out(model)")
    """
    prog = rewritten.program(args)
    used = {r for i in prog.instrs for r in i.ins if not isinstance(r, Lit)}
    used |= {r for r in prog.outvars if not isinstance(r, Lit)}
    found = {}

    def on_site(site, site_args):
        if hasattr(site.gen_fn, "dependent"):  # a sum_out
            found[site.index] = site.gen_fn.dependent(site_args)
        return site.gen_fn.retval_abstract(site_args)

    jax.eval_shape(lambda a: prog.run(a, on_site), args)
    for site in prog.sites:
        for ref, dep in zip(site.outs, found.get(site.index, ())):
            if dep and ref is not None and ref in used:
                raise PPLError(
                    f"{name}: the call at {fmt_addr(site.addr)} is summed on its own (its summed "
                    "choices are inside ppl.vmap / ppl.scan), but the rest of "
                    f"{rewritten.base.name} uses a part of its return value that depends on "
                    "them, so that sum would be wrong. Return from that call only what does not "
                    "depend on the summed choices (e.g. the observations), or move the use into it."
                )
