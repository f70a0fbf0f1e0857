"""ADEV through the ``ppl.scan`` combinator: one ``lax.scan`` on dual numbers.

Inside a loop body the continuation is the rest of *all* steps and the program
after the loop, which a ``lax.scan`` body cannot call. Reparam needs no
continuation, and reinforce only needs its final value, so the body carries
the accumulated score tangents (``State.s``, ``State.c``) and the end of the
program multiplies them by its value. Strategies that need the continuation
as a function (enum, mvd) get the rest of the step's body
(``.within_body``): exact where the choice's value stays inside the step,
an error otherwise.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from ppl.combinators.scan import Scan
from ppl.core import Continue
from ppl.gen import StaticGenerativeFunction
from ppl.transforms.adev import dual as _dual
from ppl.transforms.adev import interpreter as _adev
from ppl.transforms.adev.within_body import BodyEnd


@_adev.rule.register(Scan)
def _scan(scan, ctx, site, key, ins, state, k, addr):
    if not isinstance(scan.step, StaticGenerativeFunction):
        return _adev.no_rule(scan, ctx, site, key, ins, state, k, addr)
    return scan_rule(_adev.call_policy(ctx, scan, addr), site, key, ins, state, addr)


def scan_rule(ctx, site, key, ins, state, addr):
    scan = site.gen_fn
    init_p, xs_p = jax.tree.unflatten(site.in_tree, _dual.primals(ins))
    T = scan._length(xs_p)
    n_carry = len(jax.tree.leaves(init_p))
    carry_in, xs_in = ins[:n_carry], ins[n_carry:]
    x0 = jax.tree.map(lambda a: a[0], xs_p)
    program = scan.step.program((init_p, x0))
    # Tangents either exist everywhere in the loop or nowhere: a carry's type must
    # not change between steps, so present tangents are made concrete.
    tangents = any(t is not None for _, t in ins) or state.s is not None or state.c is not None
    recording = state.rec is not None
    zero = jnp.zeros((), jnp.result_type(float))
    inst = (lambda p, t: _dual.instantiate(p, t)) if tangents else (lambda p, t: None)
    s0 = (_dual.add(state.s, zero), _dual.add(state.c, zero)) if tangents else (None, None)
    body_ctx = ctx.in_loop(addr)
    static = {}

    def body(carry, inputs):
        (c_p, c_t, s, c), (k_t, x_p, x_t) = carry, inputs
        duals = list(zip(c_p, c_t)) + list(zip(x_p, x_t))
        st0 = _dual.State(s=s, c=c, rec=() if recording else None)
        outs, st = _adev.run(body_ctx, program, k_t, duals, st0, addr, BodyEnd)
        c_out, y_out = outs[:n_carry], outs[n_carry:]
        new_carry = ([p for p, _ in c_out], [inst(p, t) for p, t in c_out], st.s, st.c)
        rec = None
        if recording:
            cm, rec_t, logp = _adev.recorded_choices(st.rec, addr)
            static["choices"] = jax.tree.structure(cm)
            rec = (
                jax.tree.leaves(cm),
                [inst(p, t) for p, t in zip(jax.tree.leaves(cm), rec_t)],
                logp,
            )
        ys = ([p for p, _ in y_out], [inst(p, t) for p, t in y_out], st.cost_p, st.cost_t, rec)
        return new_carry, ys

    init = ([p for p, _ in carry_in], [inst(p, t) for p, t in carry_in], *s0)
    xs_leaves = ([p for p, _ in xs_in], [inst(p, t) for p, t in xs_in])
    keys = jax.random.split(key, T)
    (c_p, c_t, s, c), (y_p, y_t, cost_p, cost_t, rec) = jax.lax.scan(
        body, init, (keys, *xs_leaves), length=T
    )
    state = state._replace(
        s=s,
        c=c,
        cost_p=_dual.add(state.cost_p, _dual.sum_leading(cost_p)),
        cost_t=_dual.add(state.cost_t, _dual.sum_leading(cost_t)),
    )
    if recording:
        assert rec is not None  # the body records when the caller does
        state = _dual.record_stacked(state, addr, rec, static["choices"])
    outs = list(zip(c_p, c_t)) + list(zip(y_p, y_t))
    return Continue(outs, state)
