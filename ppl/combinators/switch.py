"""``switch`` and ``cond``: run one of several generative functions.

Only the branch taken makes choices and counts in the score. Shapes are static
under ``jit``, so the trace holds a slot for every branch (the slots of
branches not taken hold zeros and score 0).

**Choice maps.** When the branch index is a known number, the choice map holds
the taken branch's choices. When it is known only at run time (traced under
``jit``, or batched under ``vmap``), the choice map holds every address some
branch makes: an address that every branch makes holds the taken branch's
value, and one that only some branches make holds a *masked* entry
(``ChoiceMap.masked``), marked as made only where a branch making it was taken.
So that one slot can hold it, branches that share an address must make it with
the same shape and dtype, and no branch may make a value at an address under
which another makes sub-addresses; this is checked whatever the index, so a
program that runs eagerly also runs under ``jit``.

**Constraints** (``generate``, ``update``) and choices (``assess``) at an
address that the taken branch does not make cannot have come from this
execution: the weight (density) is ``-inf``, with a known index as with a
traced one, so eager and compiled runs agree. A masked entry counts only where
it was made. An address that no branch makes is an error.

**Index range.** A known index outside ``0..n-1`` is an error. A traced one is
clamped by ``lax.switch`` (the last or first branch runs), and the score and
weights are NaN: an out-of-range index is a bug in the program, not an
impossible event, and ``-inf`` would let inference silently drop those runs
(truncating a categorical that has more categories than branches, say) while
NaN surfaces. ``cond`` takes any nonzero predicate (bool, int or float, as
``lax.cond`` and Python do) as true.
"""

from __future__ import annotations

from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp

from ppl._errors import AddressError, PPLError
from ppl._gfi import GenerativeFunction, Trace
from ppl.choices import ChoiceMap, select, select_none
from ppl.combinators._union import check_layout, union_by_index
from ppl.core import is_concrete
from ppl.transforms.assess import assess_site
from ppl.transforms.generate import generate_site
from ppl.transforms.update import update_site


class SwitchTrace(Trace):
    gen_fn: Any = eqx.field(static=True)
    args: tuple
    branches: tuple
    retval: Any
    score: Any

    @property
    def index(self):
        return self.args[0]

    @property
    def choices(self) -> ChoiceMap:
        maps = [tr.choices for tr in self.branches]
        if isinstance(self.index, jax.ShapeDtypeStruct):
            # A shape-only trace (from trace_shape): the union of the branches' addresses.
            merged = ChoiceMap()
            for m in maps:
                merged = merged | m
            return merged
        index, _ = self.gen_fn._branch_index(self.index, strict=False)
        if is_concrete(index) and jnp.ndim(index) == 0:
            return maps[int(index)]
        return union_by_index(index, maps, self.gen_fn.name)

    def project(self, selection):
        # Slots of branches not taken hold zero scores, so they add nothing.
        return sum(tr.project(selection) for tr in self.branches)


def _any_made(flags):
    """Whether any of ``flags`` (True for a plain entry, else a bool array) holds."""
    out = False
    for f in flags:
        if f is True:
            return True
        out = out | jnp.any(f)
    return out


def _penalty(impossible):
    if impossible is False:
        return 0.0
    return jnp.where(impossible, -jnp.inf, 0.0)


class Switch(GenerativeFunction):
    """Run one of ``branches``, picked by an index; see ``switch``."""

    def __init__(self, *branches: GenerativeFunction):
        if not branches or not all(isinstance(b, GenerativeFunction) for b in branches):
            raise PPLError(f"ppl.switch takes one or more generative functions, got {branches!r}.")
        self.branches = branches
        self.inner = branches

    @property
    def name(self) -> str:
        return f"switch({', '.join(b.name for b in self.branches)})"

    def _branch_index(self, raw, strict=True):
        """``(index, valid)``: the branch to run (int32, clamped as ``lax.switch``
        does) and whether ``raw`` was in range (``True`` when known)."""
        raw = jnp.asarray(raw)
        if not jnp.issubdtype(raw.dtype, jnp.integer) and raw.dtype != jnp.bool_:
            raise PPLError(
                f"{self.name}: the branch index must be an integer or bool, got dtype {raw.dtype}. "
                "Convert it, e.g. jnp.asarray(x > 0, jnp.int32), or use ppl.cond for a predicate."
            )
        n = len(self.branches)
        index = raw.astype(jnp.int32)
        if is_concrete(index):
            bad = (index < 0) | (index >= n)
            if strict and bool(jnp.any(bad)):
                shown = index.tolist() if jnp.ndim(index) == 0 else sorted(set(index[bad].tolist()))
                raise PPLError(
                    f"{self.name}: branch index {shown} is out of range; it has {n} branches, so "
                    "the "
                    f"valid indices are 0 to {n - 1}."
                )
            return jnp.clip(index, 0, n - 1), True
        return jnp.clip(index, 0, n - 1), (index >= 0) & (index < n)

    def _split(self, args):
        if not args:
            raise PPLError(f"{self.name} is called with (index, *args); got no arguments.")
        index, valid = self._branch_index(args[0])
        inner_args = args[1:]
        check_layout([s.choices for s in self._shapes_of(inner_args)], self.name)
        return index, valid, inner_args

    def _shapes_of(self, args):
        return [b.trace_shape(args) for b in self.branches]

    def _route(self, choices: ChoiceMap, args, verb):
        """``choices`` split by branch, and for each branch whether a choice is
        given (made) at an address it does not make: then it cannot be the
        execution that produced them."""
        per_branch = [set(s.choices.addresses()) for s in self._shapes_of(args)]
        union = set().union(*per_branch)
        given = choices.addresses()
        for addr in given:
            if addr not in union:
                raise AddressError(
                    f"{verb}: no branch of {self.name} makes a random choice at {{addr}}; remove "
                    "it "
                    "or fix the address.",
                    addr,
                )
        restricted = [
            choices.filter(select(*addrs)) if addrs else ChoiceMap() for addrs in per_branch
        ]
        impossible = [
            _any_made(choices.is_made(a) for a in given if a not in addrs) for addrs in per_branch
        ]
        return restricted, impossible

    def _reuse(self, old_branch: Trace, j: int, args, exclude=None) -> ChoiceMap:
        """The old branch's values at addresses branch ``j`` also makes with the same
        shape (except those in ``exclude``): kept when a trace moves to branch ``j``."""
        new_shapes = self.branches[j].trace_shape(args).choices
        old = old_branch.choices
        kept = [
            a
            for a in old.addresses()
            if a in new_shapes
            and jnp.shape(old[a]) == new_shapes[a].shape
            and jnp.result_type(old[a]) == new_shapes[a].dtype
            and not (exclude is not None and a in exclude)
        ]
        return old.filter(select(*kept)) if kept else ChoiceMap()

    def _placeholders(self, args):
        return [
            jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), shape)
            for shape in self._shapes_of(args)
        ]

    def _with_slot(self, j, tr, args):
        slots = self._placeholders(args)
        slots[j] = tr
        return tuple(slots)

    def _trace(self, args, slots, retval, valid):
        return SwitchTrace(
            self, args, slots, retval, _nan_unless(valid, sum(tr.score for tr in slots))
        )

    def _run(self, index, branch, *operands):
        return jax.lax.switch(index, [branch(j) for j in range(len(self.branches))], *operands)

    def _simulate(self, key, args):
        index, valid, inner_args = self._split(args)

        def branch(j):
            def run(key):
                tr = self.branches[j].simulate(key, inner_args)
                return self._with_slot(j, tr, inner_args), tr.retval

            return run

        slots, retval = self._run(index, branch, key)
        return self._trace(args, slots, retval, valid)

    def _assess(self, choices, args):
        index, valid, inner_args = self._split(args)
        restricted, impossible = self._route(choices, inner_args, "assess")
        retval_shape = self.branches[0].trace_shape(inner_args).retval

        def branch(j):
            def run():
                try:
                    logp, retval = assess_site(self.branches[j], restricted[j], inner_args)
                except AddressError as err:
                    if is_concrete(index) and int(index) == j:
                        raise AddressError(
                            f"in branch {j} of {self.name}: {err.template}", err.path
                        ) from None
                    # A branch not taken, or not known until run time: if it is
                    # ever taken, its NaN density says that its choices were missing.
                    return jnp.full((), jnp.nan), jax.tree.map(
                        lambda s: jnp.zeros(s.shape, s.dtype), retval_shape
                    )
                return logp + _penalty(impossible[j]), retval

            return run

        logp, retval = self._run(index, branch)
        return _nan_unless(valid, logp), retval

    def _generate(self, key, constraints, args):
        index, valid, inner_args = self._split(args)
        restricted, impossible = self._route(constraints, inner_args, "generate")

        def branch(j):
            def run(key):
                tr, w = generate_site(self.branches[j], key, restricted[j], inner_args)
                return self._with_slot(j, tr, inner_args), tr.retval, w + _penalty(impossible[j])

            return run

        slots, retval, w = self._run(index, branch, key)
        return self._trace(args, slots, retval, valid), _nan_unless(valid, w)

    def _update(self, key, trace, constraints, args):
        index, valid, inner_args = self._split(args)
        old_index, _ = self._branch_index(trace.args[0], strict=False)
        restricted, impossible = self._route(constraints, inner_args, "update")
        # Going back to the old branch must restore every old choice, so the
        # discard is the old trace's whole choice map (a superset when the branch stays).
        discard = trace.choices

        def branch(j):
            def from_branch(i):
                def run(key):
                    if i == j:
                        tr, w, _ = update_site(
                            self.branches[j], key, trace.branches[j], restricted[j], inner_args
                        )
                        return tr, w
                    kept = self._reuse(trace.branches[i], j, inner_args)
                    tr, w = generate_site(self.branches[j], key, kept | restricted[j], inner_args)
                    return tr, w - trace.score

                return run

            def run(key):
                tr, w = self._run(old_index, from_branch, key)
                return self._with_slot(j, tr, inner_args), tr.retval, w + _penalty(impossible[j])

            return run

        if jax.tree.structure(trace.branches) != jax.tree.structure(
            tuple(self._placeholders(inner_args))
        ):
            raise PPLError(
                f"{self.name}: update changed the argument shapes so that a branch's trace changed "
                "shape; a switch can only be updated to arguments of the same shapes."
            )
        slots, retval, w = self._run(index, branch, key)
        return self._trace(args, slots, retval, valid), _nan_unless(valid, w), discard

    def _regenerate(self, key, trace, selection, args):
        """Within a branch, the branch's own regenerate (with nothing selected
        when the selection names none of its addresses). When the index changed
        (the caller resampled it), the new branch keeps the old values at shared,
        unselected addresses and samples the rest from its prior; the prior
        proposals cancel, leaving the density ratio of the kept values."""
        index, valid, inner_args = self._split(args)
        old_index, _ = self._branch_index(trace.args[0], strict=False)
        chosen = [
            selection if not s.choices.filter(selection).is_empty() else select_none()
            for s in self._shapes_of(inner_args)
        ]

        def branch(j):
            def from_branch(i):
                def run(key):
                    if i == j:
                        return self.branches[j].regenerate(
                            key, trace.branches[j], chosen[j], inner_args
                        )
                    kept = self._reuse(trace.branches[i], j, inner_args, exclude=selection)
                    tr, w = generate_site(self.branches[j], key, kept, inner_args)
                    return tr, w - trace.branches[i].project(select(*kept.addresses()))

                return run

            def run(key):
                tr, w = self._run(old_index, from_branch, key)
                return self._with_slot(j, tr, inner_args), tr.retval, w

            return run

        slots, retval, w = self._run(index, branch, key)
        return self._trace(args, slots, retval, valid), _nan_unless(valid, w)


def _nan_unless(valid, x):
    return x if valid is True else jnp.where(valid, x, jnp.nan)


def switch(*branches: GenerativeFunction) -> Switch:
    """Run ``branches[index]``: call as ``switch(g0, g1, ...)(index, *args) @ "addr"``.

    Args:
        *branches: generative functions that take the same arguments and return
            values of the same shape and dtype.

    Returns:
        A ``Switch``, called with ``(index, *args)``: ``index`` an integer
        or bool in ``0..len(branches)-1``. Its choices are those of the branch
        taken (see the module docstring for indices known only at run time).

    Raises:
        PPLError: if no branch is given or a branch is not a generative
            function; when called, for an index that is not an integer or bool,
            or a known index out of range (a traced one gives NaN scores).
        AddressError: when called, if two branches make a choice at one address
            with different shapes or dtypes, or one makes a choice where another
            makes sub-addresses; or if a constraint is at an address no branch
            makes.

    Examples:
        >>> @ppl.gen
        ... def small(s):
        ...     return ppl.normal(0.0, s) @ "x"
        >>> @ppl.gen
        ... def big(s):
        ...     return ppl.normal(10.0, s) @ "x"
        >>> tr = ppl.switch(small, big).simulate(jax.random.key(0), (1, 0.5))
        >>> bool(tr.retval > 5.0), tr.choices.addresses()  # branch 1 ran
        (True, [('x',)])
    """
    return Switch(*branches)


def cond(if_true: GenerativeFunction, if_false: GenerativeFunction) -> Switch:
    """Run ``if_true`` when the predicate holds: ``cond(t, f)(pred, *args) @ "addr"``.

    Args:
        if_true: run when ``pred`` is nonzero (``True``, ``-1``, ``0.5``...).
        if_false: run when ``pred`` is zero or ``False``.

    Returns:
        A ``Switch`` whose branch 1 is ``if_true`` and branch 0 ``if_false``.

    Raises:
        PPLError: if either is not a generative function; when called, for a
            predicate array that is not a bool or a number.
        AddressError: as for ``switch`` (branches whose choices cannot
            share one choice map, constraints no branch makes).

    Examples:
        >>> @ppl.gen
        ... def model():
        ...     coin = ppl.flip(0.5) @ "coin"
        ...     return ppl.cond(ppl.normal, ppl.laplace)(coin, 0.0, 1.0) @ "x"
        >>> model.simulate(jax.random.key(0), ()).choices.addresses()
        [('coin',), ('x',)]
    """
    return _Cond(if_false, if_true)


class _Cond(Switch):
    @property
    def name(self) -> str:
        return f"cond({self.branches[1].name}, {self.branches[0].name})"

    def _branch_index(self, raw, strict=True):
        raw = jnp.asarray(raw)
        if not (
            jnp.issubdtype(raw.dtype, jnp.integer)
            or jnp.issubdtype(raw.dtype, jnp.floating)
            or raw.dtype == jnp.bool_
        ):
            raise PPLError(
                f"{self.name}: the predicate must be a bool or a real number (nonzero is true), "
                f"got dtype {raw.dtype}."
            )
        # Nonzero is true, as for lax.cond and Python's bool (NaN included).
        return (raw != 0).astype(jnp.int32), True
