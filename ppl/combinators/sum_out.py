"""``sum_out``: exact marginalization of finite discrete random choices.

``sum_out(g, selection)`` is a generative function over the choices of ``g``
that ``selection`` does not name; its density is ``g``'s joint density summed
exactly over every value of the selected choices. How the sum is done depends
on where the choices are made:

* directly in ``g`` (or in ``@gen`` functions it calls): one sum over their
  joint support, evaluated as one ``jax.vmap`` over the assignments and a
  ``logsumexp``, at most ``max_assignments`` of them;
* inside a ``ppl.vmap``/``ppl.repeat`` called by ``g``: one independent sum
  per element (cost K per element, not K^n);
* inside a ``ppl.scan``: the forward (sum-product) recursion, O(T K^2), for a
  chain whose step passes on a carry that is a function of the step's
  summed choices (an HMM), see ``ppl.combinators._forward``;
* inside a ``ppl.switch`` / ``ppl.cond``: each branch's own sum (the index
  is an argument; when it is itself a summed choice, the joint sum above
  runs over it).

Such a call is summed on its own, which is exact only if the rest of ``g``
does not use the parts of its return value that depend on the summed
choices; that is checked when ``g`` is staged. ``posterior_sample`` and
``most_probable`` give the summed choices afterwards.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax.scipy.special import logsumexp

from ppl._errors import PPLError
from ppl._gfi import GenerativeFunction
from ppl.choices import ChoiceMap, Selection, select
from ppl.combinators._forward import SumOutScan
from ppl.combinators._sum_base import MAX_ASSIGNMENTS, SumOut, SumOutTrace
from ppl.combinators._sum_support import (
    Rewritten,
    assignments,
    check_contained,
    pick,
    plan,
    varies,
    zeros_of,
)
from ppl.combinators._union import union_by_index
from ppl.combinators.scan import Scan
from ppl.combinators.switch import Switch
from ppl.combinators.vmap import Vmap
from ppl.core import is_concrete

# ---------------------------------------------------------------------------
# the kinds
# ---------------------------------------------------------------------------


class SumOutJoint(SumOut):
    """Selected choices summed over their joint support, after any ``ppl.vmap`` /
    ``ppl.scan`` calls holding selected choices are summed on their own.

    The joint sum is one ``jax.vmap`` of ``assess`` over every assignment and a
    ``logsumexp``; a call summed on its own is the call's ``sum_out`` put in its
    place in the staged program (checked by ``check_contained``).

    Examples:
        >>> ppl.sum_out(model, ppl.select("z", ("points", "c")))   # z jointly, c per point
    """

    def _parts(self, args):
        joint, calls = plan(self.gen_fn, self.selection, args, self.name)
        if not calls:
            return self.gen_fn, joint
        subs = {
            a: sum_out(s_fn, calls[a], self.max_assignments)
            for a, s_fn in self._callees(args, calls)
        }
        rewritten = Rewritten(self.gen_fn, subs)  # type: ignore[arg-type]
        check_contained(rewritten, args, self.name)
        return rewritten, joint

    def _callees(self, args, calls):
        for s in self.gen_fn.program(args).sites:  # type: ignore[attr-defined]
            if s.addr in calls:
                yield s.addr, s.gen_fn

    def _table(self, kept, args):
        fn, joint = self._parts(args)
        assign = assignments(self.gen_fn, joint, kept, args, self.max_assignments, self.name)
        if not joint:
            logp, ret = fn.assess(kept, args)
            return assign, logp[None], jax.tree.map(lambda x: x[None], ret), None

        def one(a):
            return fn.assess(kept | a, args)

        logps, rets = jax.vmap(one)(assign)
        return assign, logps, rets, varies(lambda a: one(a)[1], assign)

    def _marginal(self, kept, args):
        _, logps, rets, dep = self._table(kept, args)
        dep = dep or [False] * len(jax.tree.leaves(rets))
        return logsumexp(logps), pick(rets, dep)

    def _summed(self, key, kept, args, mode):
        k_top, k_calls = jax.random.split(key)
        fn, joint = self._parts(args)
        top = ChoiceMap.empty()
        if joint:  # without choices of its own to draw, the table would only be thrown away
            assign, logps, _, _ = self._table(kept, args)
            i = jnp.argmax(logps) if mode else jax.random.categorical(k_top, logps)
            top = jax.tree.map(lambda v: v[i], assign)
        if not isinstance(fn, Rewritten):
            return top
        # Given the top-level assignment, each separately summed call draws its own.
        full, inner = kept | top, {}

        def on_site(site, site_args):
            sub = full.get_submap(site.addr)
            if isinstance(site.gen_fn, SumOut):
                k = jax.random.fold_in(k_calls, site.index)
                inner[site.addr] = site.gen_fn._summed(k, sub, site_args, mode)
            return site.gen_fn.assess(sub, site_args)[1]

        fn.program(args).run(args, on_site)
        return top | ChoiceMap(inner)

    def _generate_partial(self, key, constraints, free, args):
        """The free choices are sampled as ``gen_fn`` does (from their prior); that
        proposal's density is the same for every summed assignment only if the
        free choices do not depend on the summed ones, which is checked."""
        fn, joint = self._parts(args)
        calls = fn.calls if isinstance(fn, Rewritten) else {}
        inside = [a for a in free if a[0] in calls]
        if inside:
            raise self._partial_error(inside, " (inside a separately summed call)")
        free_sel = select(*free)
        inner, _ = self.gen_fn.generate(key, constraints, args)
        kept = constraints | inner.choices.filter(free_sel)
        score, retval = self._marginal(kept, args)
        if joint:
            assign = assignments(self.gen_fn, joint, kept, args, self.max_assignments, self.name)

            def log_q(a):
                return self.gen_fn.generate(jax.random.key(0), kept | a, args)[0].project(free_sel)

            if varies(log_q, assign)[0]:
                raise self._partial_error(free, " (whose prior depends on the summed choices)")
        return SumOutTrace(self, args, inner, retval, score), score - inner.project(free_sel)

    def dependent(self, args):
        out = []

        def probe(args):
            kept = zeros_of(self.kept_shape(args))
            _, _, rets, dep = self._table(kept, args)
            out.append(dep or [False] * len(jax.tree.leaves(rets)))
            return 0.0

        jax.eval_shape(probe, args)
        return out[0]


class SumOutVmap(SumOut):
    """Per-element sums of a ``ppl.vmap`` / ``ppl.repeat``: K per element.

    The element function's own ``sum_out`` mapped over the elements; their
    log marginals add, since the elements are independent given the arguments.

    Examples:
        >>> ppl.sum_out(ppl.repeat(point, n), ppl.select("c"))
    """

    def __init__(self, gen_fn: Vmap, selection, max_assignments):
        if gen_fn.subsample_of is not None:
            raise PPLError(
                f"ppl.sum_out of {gen_fn.name} with subsample_of={gen_fn.subsample_of}: sum the "
                "choices out inside each element instead, "
                "ppl.vmap(ppl.sum_out(element, selection), subsample_of=N), which scales the "
                "summed densities as the subsample does."
            )
        super().__init__(gen_fn, selection, max_assignments)
        self.element = sum_out(gen_fn.gen_fn, selection, max_assignments)
        self.mapped = Vmap(self.element, gen_fn.in_axes, gen_fn.axis_size)

    def _marginal(self, kept, args):
        kept = self.mapped._check_batched(kept, args)
        # The keys are mapped too: with every choice summed, kept may have no leaves.
        logp, retval = self.mapped._map(
            lambda _, c, a: self.element.assess(c, a),
            (self.mapped._keys(jax.random.key(0), args), kept),
            args,
        )
        return jnp.sum(logp), retval

    def _summed(self, key, kept, args, mode):
        kept = self.mapped._check_batched(kept, args)
        return self.mapped._map(
            lambda k, c, a: self.element._summed(k, c, a, mode),
            (self.mapped._keys(key, args), kept),
            args,
        )

    def dependent(self, args):
        vm = self.mapped
        element = tuple(
            a if ax is None else jax.tree.map(lambda x: x[0], a)
            for a, ax in zip(args, vm._axes(args))
        )
        return self.element.dependent(element)


class SumOutSwitch(SumOut):
    """Per-branch sums of a ``ppl.switch`` / ``ppl.cond``: the switch of its branches'
    ``sum_out`` (a branch that makes none of the selected choices is left as it is).

    The branch index is an argument, so the density of the branch taken, summed
    over its own selected choices, is the marginal; a known index runs that
    branch, one known only at run time runs them all and keeps the one taken.

    Examples:
        >>> ppl.sum_out(ppl.cond(mixture_a, mixture_b), ppl.select("z"))
    """

    def _parts(self, args) -> Switch:
        switch = self.gen_fn
        assert isinstance(switch, Switch)  # sum_out makes this kind for a switch only
        inner_args = args[1:]

        def summed(b):
            made = b.trace_shape(inner_args).choices.filter(self.selection)
            return b if made.is_empty() else sum_out(b, self.selection, self.max_assignments)

        return Switch(*[summed(b) for b in switch.branches])

    def _marginal(self, kept, args):
        return self._parts(args).assess(kept, args)

    def _summed(self, key, kept, args, mode):
        parts = self._parts(args)
        index, _, inner_args = parts._split(args)
        restricted, _ = parts._route(kept, inner_args, "posterior_sample")
        keys = jax.random.split(key, len(parts.branches))
        maps = [
            b._summed(k, r, inner_args, mode) if isinstance(b, SumOut) else ChoiceMap.empty()
            for b, k, r in zip(parts.branches, keys, restricted)
        ]
        if is_concrete(index) and jnp.ndim(index) == 0:
            return maps[int(index)]
        return union_by_index(index, maps, self.name)

    def dependent(self, args):
        parts = self._parts(args)
        inner_args = args[1:]
        n = len(jax.tree.leaves(parts.branches[0].retval_abstract(inner_args)))
        deps = [
            b.dependent(inner_args) if isinstance(b, SumOut) else [False] * n
            for b in parts.branches
        ]
        return [any(d[i] for d in deps) for i in range(n)]


def sum_out(
    gen_fn: GenerativeFunction, selection: Selection, max_assignments: int = MAX_ASSIGNMENTS
) -> SumOut:
    """Sum the selected finite discrete choices of ``gen_fn`` out, exactly.

    Args:
        gen_fn: an ``@ppl.gen`` function, ``ppl.vmap``/``ppl.repeat`` or ``ppl.scan``.
        selection: ``ppl.select(...)`` of finite discrete choices (flip,
            bernoulli, categorical, binomial with a Python-int count: anything
            whose numpyro distribution has ``enumerate_support``). Choices made
            directly (through ``@gen`` calls) are summed jointly; those inside
            a ``ppl.vmap`` per element; those inside a ``ppl.scan`` by the
            forward recursion (the step's carry must be a function of its
            summed choices, its other choices and ``xs``, not of the carry it
            received).
        max_assignments: the most joint assignments one joint sum may have.

    Returns:
        A generative function over the remaining choices whose ``assess`` is
        the exact log marginal and ``simulate`` samples everything and keeps
        the remaining choices; ``generate`` takes all, none, or some of them
        constrained (the free ones sampled from their prior, which must not
        depend on the summed choices); ``update`` is exact; ``regenerate`` of
        any remaining choice is refused (it is ``update`` when it resamples
        none, as for a move elsewhere in an enclosing model). Its
        ``posterior_sample`` and ``most_probable`` give the summed choices. Where
        the return value depends on the summed choices, ``assess`` and
        ``generate`` return NaN there (-1 for integers, False for booleans).

    Raises:
        PPLError: if ``gen_fn`` is not a generative function, ``selection`` not a
            selection or ``max_assignments`` not a positive int; when staged, if
            the selection names no choice, a choice without enumerable support,
            more than ``max_assignments`` joint assignments, a choice inside
            another combinator, a scan whose carry is not a function of the
            summed choices, or a separately summed call whose dependent return
            value is used.

    Examples:
        >>> @ppl.gen
        ... def model():
        ...     b = ppl.flip(0.3) @ "b"
        ...     return ppl.normal(jnp.where(b, 2.0, -2.0), 1.0) @ "x"
        >>> marg = ppl.sum_out(model, ppl.select("b"))
        >>> log_p, _ = marg.assess({"x": 0.5}, ())  # log(0.3 N(0.5; 2, 1) + 0.7 N(0.5; -2, 1))
        >>> round(float(log_p), 3)
        -2.973
        >>> marg.most_probable({"x": 0.5}, ())
        ChoiceMap({'b': True})
    """
    if not isinstance(gen_fn, GenerativeFunction):
        raise PPLError(f"ppl.sum_out takes a generative function, got {gen_fn!r}.")
    if not isinstance(selection, Selection):
        raise PPLError(
            f"ppl.sum_out needs ppl.select(...) of the choices to sum out; got {selection!r}."
        )
    if not isinstance(max_assignments, int) or max_assignments < 1:
        raise PPLError(f"ppl.sum_out needs max_assignments >= 1, got {max_assignments!r}.")
    if isinstance(gen_fn, Vmap):
        return SumOutVmap(gen_fn, selection, max_assignments)
    if isinstance(gen_fn, Scan):
        return SumOutScan(gen_fn, selection, max_assignments)
    if isinstance(gen_fn, Switch):
        return SumOutSwitch(gen_fn, selection, max_assignments)
    return SumOutJoint(gen_fn, selection, max_assignments)


__all__ = ["SumOut", "SumOutScan", "SumOutSwitch", "SumOutTrace", "sum_out"]
