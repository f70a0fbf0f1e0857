"""Log densities as separate terms of an expectation's value, for Rao-Blackwellization.

A density is one number, so with it as one value every score that any of its
parts reads multiplies all of it. Here each part is its own term (as in
Pyro's per-site log probabilities), added to the value like ``ppl.add_cost``
and depending only on the values it reads (see ``.dataflow``):

* ``SimTerms`` samples ``q`` as ``ppl.sim`` does and adds each recorded
  ``-log q(z_i | ...)``. For a score-function choice (its value carries no
  tangent) the term's own tangent, ``-d/dtheta log q(z_i; theta)`` at fixed
  ``z_i``, has mean zero and is dropped; for reparam, enum and mvd choices it is
  kept. Valid where ``log q`` enters the value linearly: the ELBO.
* ``DensityTerms`` adds ``log p(choices)`` of an ``@gen`` model site by
  site: each random choice's log density depends on the values of its
  parameters and of the choice; a call of a combinator (or any other kind of
  generative function) is one term, its ``assess``, depending on everything
  it reads.

The value is the same as ``density(p)(choices) - logq``; only which scores
multiply which part changes.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from ppl.combinators.vmap import Vmap
from ppl.core import Continue
from ppl.distributions import Distribution
from ppl.gen import StaticGenerativeFunction
from ppl.transforms.adev import dataflow as _dataflow
from ppl.transforms.adev import dual as _dual
from ppl.transforms.adev import interpreter as _adev
from ppl.transforms.adev.expectation import Sim, _AdevOnly, sim_outputs
from ppl.transforms.adev.strategies import WithStrategy


class SimTerms(Sim):
    """``choices, logq = SimTerms(q)(*args) @ addr``: ``.expectation.Sim``
    that also adds ``-log q`` of each recorded choice to the value as its own term.

    The program that uses it must not subtract ``logq`` again (the ELBO adds
    ``DensityTerms(p)`` and returns zero)."""

    @property
    def name(self) -> str:
        return f"sim_terms({self.q.name})"

    def hoisted(self, args):
        q, args = self.q.hoisted(args)
        return (self if q is self.q else SimTerms(q)), args


@_adev.rule.register(SimTerms)
def _sim_terms(s, ctx, site, key, ins, state, k, addr):
    outer = state.rec

    def done(_outs, st):
        for entry in st.rec:
            lp, lt = entry.logp
            aligned = getattr(entry, "aligned", frozenset())
            if aligned:  # a vectorised call's entry: element by element
                lp, lt = entry.per_element
            if isinstance(entry, _dataflow.Tagged) and entry.scored:
                lt = None  # the score itself: mean zero (see the module docstring)
            term = (-lp, None if lt is None else -lt)
            deps = _dataflow.entry_deps(entry)
            if aligned:
                st = _dataflow.add_term_per_element(st, term, deps, aligned)
            else:
                st = _dataflow.add_term(st, term, deps)
        return k(sim_outputs(st, addr), st._replace(rec=outer))

    program = s.q.program(jax.tree.unflatten(site.in_tree, _dual.primals(ins)))
    return _adev.run(ctx, program, key, ins, state._replace(rec=()), addr, done)


class DensityTerms(_AdevOnly):
    """``DensityTerms(p)(choices, *args)`` (no address): adds ``log p(choices)`` to
    the value of the expectation, one term per random choice of ``p``."""

    addressless = True

    def __init__(self, p: StaticGenerativeFunction):
        self.p = p

    @property
    def name(self) -> str:
        return f"density_terms({self.p.name})"

    def _shape_fn(self, args):
        # The caller checks the choices as density(p) would (vi's elbo_terms does,
        # outside this call site, so that errors name the model's own addresses).
        return None


@_adev.rule.register(DensityTerms)
def _density_terms(d, ctx, site, key, ins, state, k, addr):
    choices, *_ = jax.tree.unflatten(site.in_tree, _dual.primals(ins))
    n = len(jax.tree.leaves(choices))
    ids = jax.tree.unflatten(jax.tree.structure(choices), list(range(n)))
    model_args = jax.tree.unflatten(site.in_tree, list(range(len(ins))))[1:]
    args_tree = jax.tree.structure(model_args)
    _, state = _terms(d.p, ids, list(ins[:n]), list(ins[n:]), args_tree, state)
    return Continue([], state)


def _terms(gen_fn, ids, choice_duals, arg_duals, args_tree, state):
    """Walk ``gen_fn``'s program, adding a term per choice: ``(outs, state)``."""
    args_p = jax.tree.unflatten(args_tree, _dual.primals(arg_duals))
    program = gen_fn.program(args_p)

    def on_site(site, s_ins, st, _k):
        sub = ids.get_submap(site.addr)
        g = site.gen_fn
        if isinstance(g, StaticGenerativeFunction):
            outs, st = _terms(g, sub, choice_duals, s_ins, site.in_tree, st)
            return Continue(outs, st)
        if isinstance(g, (Distribution, WithStrategy)) and sub.has_value() and not sub.is_masked():
            value = choice_duals[sub._raw()[0]]
            (lp, lt), _ = _assessed(g, sub, [value], s_ins, site.in_tree)
            deps = _dual.union([_dual.deps_of(value)] + [_dual.deps_of(x) for x in s_ins])
            return Continue([value], _dataflow.add_term(st, (lp, lt), deps))
        leaves = [choice_duals[i] for i in jax.tree.leaves(sub)]
        deps = _dual.union([_dual.deps_of(x) for x in leaves + list(s_ins)])
        aligned = _aligned_elements(g, sub, leaves, s_ins, site.in_tree, deps, st)
        if aligned:
            (lp, lt), outs = _assessed_per_element(g, sub, leaves, s_ins, site.in_tree)
            st = _dataflow.add_term_per_element(st, (lp, lt), deps, aligned)
            return Continue([_dual.tainted(o, deps, aligned) for o in outs], st)
        (lp, lt), outs = _assessed(g, sub, leaves, s_ins, site.in_tree)
        return Continue(
            [_dual.tainted(o, deps) for o in outs], _dataflow.add_term(st, (lp, lt), deps)
        )

    return program.walk(
        arg_duals,
        lift=_dual.lift_known,
        apply=_dual.apply,
        on_site=on_site,
        finish=lambda outs, st: (outs, st),
        state=state,
    )


def _assessed(gen_fn, sub_ids, sub_duals, arg_duals, args_tree):
    """``gen_fn.assess`` of the sub-choice map on duals: ``(log p dual, retval duals)``."""
    sub_tree, n = jax.tree.structure(sub_ids), len(sub_duals)

    def assess(*flat):
        cm = jax.tree.unflatten(sub_tree, flat[:n])
        score, retval = gen_fn.assess(cm, jax.tree.unflatten(args_tree, flat[n:]))
        return [score, *jax.tree.leaves(retval)]

    outs = _dual.apply(assess, [(p, t) for p, t in list(sub_duals) + list(arg_duals)])
    return outs[0], outs[1:]


def _aligned_elements(gen_fn, sub_ids, leaves, arg_duals, args_tree, deps, state) -> frozenset:
    """The ids a ``ppl.vmap`` site of the model may meet element by element: those
    with one score per element (a vectorised guide call) that every input depending
    on them carries element-aligned and mapped along axis 0 (its choices always
    are; an argument when its ``in_axes`` is 0). Empty for any other site."""
    if not isinstance(gen_fn, Vmap) or not deps:
        return frozenset()
    args_p = jax.tree.unflatten(args_tree, _dual.primals(arg_duals))
    axes = gen_fn._axes(args_p)
    arg_axes = [ax for a, ax in zip(args_p, axes) for _ in jax.tree.leaves(a)]
    n = gen_fn._size(args_p)
    inputs = [(x, 0) for x in leaves] + list(zip(arg_duals, arg_axes))
    out = set()
    for i in deps:
        entry = state.table[i] if i < len(state.table) else None
        if entry is None or jnp.shape(entry) != (n,):
            continue
        readers = [(x, ax) for x, ax in inputs if i in (_dual.deps_of(x) or ())]
        if readers and all(i in _dual.aligned_of(x) and ax == 0 for x, ax in readers):
            out.add(i)
    return frozenset(out)


def _assessed_per_element(vm, sub_ids, sub_duals, arg_duals, args_tree):
    """``vm``'s log density element by element on duals: ``(per-element log p dual,
    retval duals)``."""
    sub_tree, n = jax.tree.structure(sub_ids), len(sub_duals)

    def assess(*flat):
        args = jax.tree.unflatten(args_tree, flat[n:])
        cm = vm._check_batched(jax.tree.unflatten(sub_tree, flat[:n]), args)
        keys = vm._keys(jax.random.key(0), args)
        logp, retval = vm._map(lambda _, c, a: vm.gen_fn.assess(c, a), (keys, cm), args)
        return [logp * vm.scale(args), *jax.tree.leaves(retval)]

    outs = _dual.apply(assess, [(p, t) for p, t in list(sub_duals) + list(arg_duals)])
    return outs[0], outs[1:]
