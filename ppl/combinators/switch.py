"""``switch`` and ``cond``: run one of several generative functions.

Only the branch taken makes choices and counts in the score. Shapes are
static under ``jit``, so the trace holds a slot for every branch (the slots of
branches not taken hold zeros and score 0), and the choice map is the union
of the branches' addresses; an address shared by branches with the same
shape takes the value of the branch taken. When the branch index is a known
number (not traced), the choice map holds only the taken branch's choices.
"""

from __future__ import annotations

from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp

from ppl import _jax
from ppl._errors import AddressError, PPLError
from ppl._gfi import GenerativeFunction, Trace
from ppl.choices import ChoiceMap, select


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
            # A shape-only trace (from trace_shape, e.g. of a switch nested in a
            # branch): the union of the branches' addresses, no values to select.
            merged = ChoiceMap()
            for m in maps:
                merged = merged | m
            return merged
        # The index is clipped when the switch runs; the choices follow the branch run.
        index = jnp.clip(jnp.asarray(self.index).astype(jnp.int32), 0, len(maps) - 1)
        if _jax.is_concrete(index) and jnp.ndim(index) == 0:
            return maps[int(index)]
        return _merge_by_index(index, maps)

    def project(self, selection):
        # Slots of branches not taken hold zero scores, so they add nothing.
        return sum(tr.project(selection) for tr in self.branches)


def _merge_by_index(index, maps):
    merged = ChoiceMap()
    for addr in dict.fromkeys(a for m in maps for a in m.addresses()):
        holders = [(j, m[addr]) for j, m in enumerate(maps) if addr in m]
        value = holders[0][1]
        for j, v in holders[1:]:
            if jnp.shape(v) == jnp.shape(value) and jnp.result_type(v) == jnp.result_type(value):
                # A batched trace (under vmap) has a batch of indices: align their axes.
                taken = jnp.reshape(index == j, jnp.shape(index) + (1,) * (jnp.ndim(v) - jnp.ndim(index)))
                value = jnp.where(taken, v, value)
        merged = merged | ChoiceMap.d({addr: value})
    return merged


class Switch(GenerativeFunction):
    def __init__(self, *branches: GenerativeFunction):
        if not branches or not all(isinstance(b, GenerativeFunction) for b in branches):
            raise PPLError(f"ppl.switch takes one or more generative functions, got {branches!r}.")
        self.branches = branches
        self.inner = branches

    @property
    def name(self) -> str:
        return f"switch({', '.join(b.name for b in self.branches)})"

    def _split(self, args):
        if not args:
            raise PPLError(f"{self.name} is called with (index, *args); got no arguments.")
        index = jnp.asarray(args[0])
        if not jnp.issubdtype(index.dtype, jnp.integer) and index.dtype != jnp.bool_:
            raise PPLError(f"{self.name}: the branch index must be an integer or bool, got dtype {index.dtype}.")
        return jnp.clip(index.astype(jnp.int32), 0, len(self.branches) - 1), args[1:]

    def _addresses(self, args):
        return [set(b.trace_shape(args).choices.addresses()) for b in self.branches]

    def _restrict(self, choices: ChoiceMap, index, args, verb):
        """``choices`` split by branch; an address no branch could make is an error
        (with a known index, an address the taken branch does not make too)."""
        per_branch = self._addresses(args)
        known = _jax.is_concrete(index)
        allowed = per_branch[int(index)] if known else set().union(*per_branch)
        union = set().union(*per_branch)
        for addr in choices.addresses():
            if addr not in union:
                raise AddressError(
                    f"{verb}: no branch of {self.name} makes a random choice at {{addr}}; remove it "
                    "or fix the address.",
                    addr,
                )
            if addr not in allowed:
                raise AddressError(
                    f"{verb}: only branches not taken make a random choice at {{addr}}, not branch "
                    f"{int(index)} of {self.name} (the one taken), so the value would be ignored.",
                    addr,
                )
        return [choices.filter(select(*addrs)) if addrs else ChoiceMap() for addrs in per_branch]

    def _reuse(self, old_branch: Trace, j: int, args, exclude=None) -> ChoiceMap:
        """The old branch's values at addresses branch ``j`` also makes with the same
        shape (except those in ``exclude``): kept when a trace moves to branch ``j``."""
        new_shapes = self.branches[j].trace_shape(args).choices
        old = old_branch.choices
        kept = [
            a for a in old.addresses()
            if a in new_shapes and jnp.shape(old[a]) == new_shapes[a].shape
            and jnp.result_type(old[a]) == new_shapes[a].dtype and not (exclude is not None and a in exclude)
        ]
        return old.filter(select(*kept)) if kept else ChoiceMap()

    def _placeholders(self, args):
        return [
            jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), b.trace_shape(args)) for b in self.branches
        ]

    def _with_slot(self, j, tr, args):
        slots = self._placeholders(args)
        slots[j] = tr
        return tuple(slots)

    def _trace(self, args, slots, retval):
        return SwitchTrace(self, args, slots, retval, sum(tr.score for tr in slots))

    def _simulate(self, key, args):
        index, inner_args = self._split(args)

        def branch(j):
            def run(key):
                tr = self.branches[j].simulate(key, inner_args)
                return self._with_slot(j, tr, inner_args), tr.retval

            return run

        slots, retval = jax.lax.switch(index, [branch(j) for j in range(len(self.branches))], key)
        return self._trace(args, slots, retval)

    def _assess(self, choices, args):
        index, inner_args = self._split(args)
        restricted = self._restrict(choices, index, inner_args, "assess")
        retval_shape = self.branches[0].trace_shape(inner_args).retval

        def branch(j):
            def run():
                try:
                    return self.branches[j].assess(restricted[j], inner_args)
                except AddressError as err:
                    if _jax.is_concrete(index) and int(index) == j:
                        raise AddressError(f"in branch {j} of {self.name}: {err.template}", err.path) from None
                    # A branch not taken, or not known until run time: if it is
                    # ever taken, its NaN density says that its choices were missing.
                    return jnp.full((), jnp.nan), jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), retval_shape)

            return run

        return jax.lax.switch(index, [branch(j) for j in range(len(self.branches))])

    def _generate(self, key, constraints, args):
        index, inner_args = self._split(args)
        restricted = self._restrict(constraints, index, inner_args, "generate")

        def branch(j):
            def run(key):
                tr, w = self.branches[j].generate(key, restricted[j], inner_args)
                return self._with_slot(j, tr, inner_args), tr.retval, w

            return run

        slots, retval, w = jax.lax.switch(index, [branch(j) for j in range(len(self.branches))], key)
        return self._trace(args, slots, retval), w

    def _update(self, key, trace, constraints, args):
        index, inner_args = self._split(args)
        old_index, _ = self._split(trace.args)
        restricted = self._restrict(constraints, index, inner_args, "update")
        # Going back to the old branch must restore every old choice, so the
        # discard is the old trace's whole choice map (a superset when the branch stays).
        discard = trace.choices

        def branch(j):
            def from_branch(i):
                def run(key):
                    if i == j:
                        tr, w, _ = self.branches[j].update(key, trace.branches[j], restricted[j], inner_args)
                        return tr, w
                    kept = self._reuse(trace.branches[i], j, inner_args)
                    tr, w = self.branches[j].generate(key, kept | restricted[j], inner_args)
                    return tr, w - trace.score

                return run

            def run(key):
                tr, w = jax.lax.switch(old_index, [from_branch(i) for i in range(len(self.branches))], key)
                return self._with_slot(j, tr, inner_args), tr.retval, w

            return run

        if jax.tree.structure(trace.branches) != jax.tree.structure(tuple(self._placeholders(inner_args))):
            raise PPLError(
                f"{self.name}: update changed the argument shapes so that a branch's trace changed "
                "shape; a switch can only be updated to arguments of the same shapes."
            )
        slots, retval, w = jax.lax.switch(index, [branch(j) for j in range(len(self.branches))], key)
        return self._trace(args, slots, retval), w, discard

    def _regenerate(self, key, trace, selection, args):
        """Within a branch, the branch's own regenerate. When the index changed (the
        caller resampled it), the new branch keeps the old values at shared,
        unselected addresses and samples the rest from its prior; the prior
        proposals cancel, leaving the density ratio of the kept values."""
        index, inner_args = self._split(args)
        old_index, _ = self._split(trace.args)

        def branch(j):
            def from_branch(i):
                def run(key):
                    if i == j:
                        return self.branches[j].regenerate(key, trace.branches[j], selection, inner_args)
                    kept = self._reuse(trace.branches[i], j, inner_args, exclude=selection)
                    tr, w = self.branches[j].generate(key, kept, inner_args)
                    return tr, w - trace.branches[i].project(select(*kept.addresses()))

                return run

            def run(key):
                tr, w = jax.lax.switch(old_index, [from_branch(i) for i in range(len(self.branches))], key)
                return self._with_slot(j, tr, inner_args), tr.retval, w

            return run

        slots, retval, w = jax.lax.switch(index, [branch(j) for j in range(len(self.branches))], key)
        return self._trace(args, slots, retval), w


def switch(*branches: GenerativeFunction) -> Switch:
    """Run ``branches[index]``: call as ``switch(g0, g1, ...)(index, *args) @ "addr"``.

    All branches take the same arguments and return values of the same shape.
    """
    return Switch(*branches)


def cond(if_true: GenerativeFunction, if_false: GenerativeFunction) -> Switch:
    """Run ``if_true`` when the predicate holds: ``cond(t, f)(pred, *args) @ "addr"``."""
    return _Cond(if_false, if_true)


class _Cond(Switch):
    @property
    def name(self) -> str:
        return f"cond({self.branches[1].name}, {self.branches[0].name})"
