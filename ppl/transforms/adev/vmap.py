"""ADEV through the ``ppl.vmap`` / ``ppl.repeat`` combinator: one ``jax.vmap``
on dual numbers.

Each element runs its own sample path; reparam and reinforce need no
continuation, so every element returns its score tangents and costs, which
are summed. Elements are independent, so counting one element's costs as
coming before another's choices keeps the estimate unbiased. Strategies that
need the continuation as a function (enum, mvd) get the rest of the element's
body (``.within_body``): exact where the choice's value stays inside it,
an error otherwise.
"""

from __future__ import annotations

import jax

from ppl.combinators.vmap import Vmap
from ppl.core import Continue
from ppl.distributions import Distribution
from ppl.transforms.adev import dual as _dual
from ppl.transforms.adev import interpreter as _adev
from ppl.transforms.adev.strategies import WithStrategy


def maps_one_choice(vm) -> bool:
    """Whether every element is one random choice (a vmap of a distribution)."""
    return isinstance(vm.gen_fn, (Distribution, WithStrategy))


@_adev.rule.register(Vmap)
def _vmap(vm, ctx, site, key, ins, state, k, addr):
    if not maps_one_choice(vm):
        ctx = _adev.call_policy(ctx, vm, addr)
    # A vmap of a distribution is one batched choice: a strategy at its address
    # applies to every element.
    return vmap_rule(ctx, site, key, ins, state, addr)


def vmap_rule(ctx, site, key, ins, state, addr):
    vm, inner = site.gen_fn, site.gen_fn.gen_fn
    args_p = jax.tree.unflatten(site.in_tree, _dual.primals(ins))
    axes = vm._axes(args_p)
    leaf_axes = [ax for a, ax in zip(args_p, axes) for _ in jax.tree.leaves(a)]
    keys = vm._keys(key, args_p)
    element_args = tuple(
        a if ax is None else jax.tree.map(lambda x: x[0], a) for a, ax in zip(args_p, axes)
    )
    element_tree = jax.tree.structure(element_args)
    recording = state.rec is not None
    body_ctx = ctx.in_loop(addr, "ppl.vmap")
    static = {}

    def element(k_i, ps, ts):
        duals = list(zip(ps, ts))
        st0 = _dual.State(rec=() if recording else None)
        outs, st = _adev.open_call(body_ctx, inner, k_i, duals, element_tree, st0, addr)
        rec = None
        if recording:
            cm, rec_t, logp = _adev.recorded_choices(st.rec, addr)
            static["choices"] = jax.tree.structure(cm)
            rec = (jax.tree.leaves(cm), rec_t, logp)
        return [p for p, _ in outs], [t for _, t in outs], st.s, st.c, st.cost_p, st.cost_t, rec

    ps, ts = _dual.primals(ins), [t for _, t in ins]
    out_p, out_t, s, c, cost_p, cost_t, rec = jax.vmap(element, in_axes=(0, leaf_axes, leaf_axes))(
        keys, ps, ts
    )

    cost_p = _dual.sum_leading(cost_p)
    # Under Rao-Blackwellization the call's own score stays one per element, so
    # that terms made element by element meet only their element's score.
    own = s if state.rb and state.s is None else _dual.sum_leading(s)
    state = state._replace(
        s=_dual.add(state.s, own),
        c=_dual.add(state.c, _dual.sum_leading(c)),
        cost_p=_dual.add(state.cost_p, cost_p),
        # the costs also meet the score tangents of the choices made before the call
        cost_t=_dual.add(
            state.cost_t, _dual.add(_dual.sum_leading(cost_t), _dual.mul(cost_p, state.s))
        ),
    )
    if recording:
        assert rec is not None  # the body records when the caller does
        leaves, leaves_t, (lp, lt) = rec
        # a subsample's log densities stand for the full data's; its scores do not scale
        scale = vm.scale(args_p)
        rec = (leaves, leaves_t, (lp * scale, None if lt is None else lt * scale))
        state = _dual.record_stacked(state, addr, rec, static["choices"])
    return Continue(list(zip(out_p, out_t)), state)
