"""ADEV through ``ppl.switch`` / ``ppl.cond`` (and so ``ppl.mix``).

The branch index is an argument of the switch, computed from the program's
earlier choices; its own strategy lives at the choice that made it (``enum``
there evaluates every branch, ``reinforce`` scores the one taken). Choices
inside a branch keep their own strategies, exactly as outside a switch:

* a known (concrete) index runs the taken branch inline, with the rest of
  the program as its continuation, so every strategy works;
* a traced index runs ``lax.switch`` over the branches, each walked on dual
  numbers to its end. Like a loop body, a branch then cannot call the rest of
  the program, so reparam and reinforce work inside it and strategies that
  need the continuation as a function (enum, mvd) get the rest of the branch
  (``.within_body``): exact where the choice's value stays inside it, an
  error otherwise.
  Each branch returns its values, score tangents and costs; a branch that
  carries no tangent where another does contributes zeros.

Inside ``sim`` (choices recorded for a density) under a traced index, every
branch runs and records its choices, which meet in the switch's own choice
map (every branch's addresses, masked where only some make them; the taken
branch's values and log density), so the choices inside keep their own
strategies there too.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from ppl.combinators._union import union_by_index
from ppl.combinators.switch import Switch
from ppl.core import Continue, Site, is_concrete
from ppl.transforms.adev import dual as _dual
from ppl.transforms.adev import interpreter as _adev
from ppl.transforms.adev.dual import Recorded


@_adev.rule.register(Switch)
def switch_rule(switch, ctx, site, key, ins, state, k, addr):
    ctx = _adev.call_policy(ctx, switch, addr)
    args_p = jax.tree.unflatten(site.in_tree, _dual.primals(ins))
    known = is_concrete(args_p[0]) and jnp.ndim(args_p[0]) == 0
    with jax.ensure_compile_time_eval():  # a known index stays known under an enclosing jit
        index, valid, inner_args = switch._split(args_p)
    n_index = len(jax.tree.leaves(args_p[0]))
    inner_ins, inner_tree = ins[n_index:], jax.tree.structure(inner_args)
    if known:
        branch = switch.branches[int(index)]
        inner = Site(site.index, site.addr, branch, inner_tree, (), ())
        return _adev.dispatch(ctx, inner, key, inner_ins, state, k, addr)
    if valid is not True:
        # An index out of range runs no branch: the estimate is NaN, as the switch's score is.
        nan_if_invalid = jnp.where(valid, 0.0, jnp.nan).astype(jnp.result_type(float))
        state = state._replace(cost_p=_dual.add(state.cost_p, nan_if_invalid))
    return _traced(ctx, switch, index, key, inner_ins, inner_tree, state, addr)


def _traced(ctx, switch, index, key, ins, tree, state, addr):
    body_ctx = ctx.in_loop(addr, f"{switch.name} with an index known only at run time")
    ps, ts = _dual.primals(ins), [t for _, t in ins]
    recording = state.rec is not None
    recorded = []

    def branch(j):
        def run(ps, ts):
            st0 = _dual.State(rec=() if recording else None)
            outs, st = _adev.open_call(
                body_ctx, switch.branches[j], key, list(zip(ps, ts)), tree, st0, addr
            )
            if recording:
                recorded.append(_adev.recorded_choices(st.rec, addr))
            return [p for p, _ in outs], [t for _, t in outs], (st.s, st.c, st.cost_p, st.cost_t)

        return run

    if recording:
        # Every branch runs, so that their recorded choices meet in the switch's own
        # choice map (every branch's addresses, masked where only some make them).
        mains = [branch(j)(ps, ts) for j in range(len(switch.branches))]
        branches = _aligned([(lambda *_, m=m: m) for m in mains], ps, ts)
        out_p, out_t, (s, c, cost_p, cost_t) = _select(index, [b(ps, ts) for b in branches])
        state = state._replace(rec=state.rec + (_union_record(switch, index, recorded, addr),))
    else:
        branches = _aligned([branch(j) for j in range(len(switch.branches))], ps, ts)
        if all(t is None for t in ts):
            out_p, out_t, (s, c, cost_p, cost_t) = jax.lax.switch(index, branches, ps, ts)
        else:
            out_p, out_t, (s, c, cost_p, cost_t) = _select(index, [b(ps, ts) for b in branches])
    state = state._replace(
        s=_dual.add(state.s, s),
        c=_dual.add(state.c, c),
        cost_p=_dual.add(state.cost_p, cost_p),
        # costs inside the branch also meet the scores of the choices made before it
        cost_t=_dual.add(state.cost_t, _dual.add(cost_t, _dual.mul(cost_p, state.s))),
    )
    return Continue(list(zip(out_p, out_t)), state)


def _union_record(switch, index, recorded, addr) -> Recorded:
    """One recorded entry for the switch: the branches' choices in the switch's
    union choice map (the taken branch's values), their tangents alike, and the
    taken branch's log density."""
    maps = [cm for cm, _, _ in recorded]
    tangent_maps = [
        jax.tree.unflatten(
            jax.tree.structure(cm),
            [jnp.zeros_like(p) if t is None else t for p, t in zip(jax.tree.leaves(cm), ts)],
        )
        for cm, ts, _ in recorded
    ]
    choices = union_by_index(index, maps, switch.name)
    tangent_leaves = jax.tree.leaves(union_by_index(index, tangent_maps, switch.name))
    any_tangent = any(t is not None for _, ts, _ in recorded for t in ts)
    tangents = [
        t if any_tangent and _dual.is_float(p) else None
        for p, t in zip(jax.tree.leaves(choices), tangent_leaves, strict=True)
    ]
    logps = [lp for _, _, (lp, _) in recorded]
    dlogps = [dl for _, _, (_, dl) in recorded]
    dlogp = None
    if any(d is not None for d in dlogps):
        dlogp = jax.lax.select_n(
            index, *[jnp.zeros_like(lp) if d is None else d for lp, d in zip(logps, dlogps)]
        )
    return Recorded(addr, choices, tangents, (jax.lax.select_n(index, *logps), dlogp))


def _select(index, outs):
    """The outputs of the branch ``index``, every branch evaluated.

    With tangents, ``lax.switch`` is not used: under ``vmap`` (``enum``, ``E``,
    ``ppl.vmap``) JAX turns a batched switch into a select whose operands pass
    through ``stop_gradient``, which reverse mode cannot transpose when the
    operands are tangents. A select of the outputs transposes."""
    return jax.tree.map(
        lambda *xs: None if xs[0] is None else jax.lax.select_n(index, *xs), *outs, is_leaf=_is_none
    )


def _is_none(x):
    return x is None


def _aligned(fns, *args):
    """The branch functions with one output structure: where one branch has no
    tangent (``None``) and another has, the first returns zeros of that shape."""
    shapes = [jax.eval_shape(f, *args) for f in fns]
    flat = [jax.tree.flatten(s, is_leaf=_is_none) for s in shapes]
    treedef = flat[0][1]
    templates = [
        next((leaves[i] for leaves, _ in flat if leaves[i] is not None), None)
        for i in range(treedef.num_leaves)
    ]

    def align(f):
        def g(*a):
            leaves = jax.tree.flatten(f(*a), is_leaf=_is_none)[0]
            return jax.tree.unflatten(
                treedef,
                [
                    jnp.zeros(t.shape, t.dtype)
                    if x is None and t is not None
                    else (x if t is None else jnp.asarray(x, t.dtype))
                    for x, t in zip(leaves, templates)
                ],
            )

        return g

    return [align(f) for f in fns]
