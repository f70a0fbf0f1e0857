"""The ADEV rule of a call of an ``@gen`` function: its program is walked in
place, with the rest of the caller's program as its continuation, so every
choice inside keeps its own strategy. A policy of ``reinforce`` at the call's
address estimates every choice inside by the score function instead."""

from __future__ import annotations

import jax

from ppl.gen import StaticGenerativeFunction
from ppl.transforms.adev import dual as _dual
from ppl.transforms.adev.interpreter import call_policy, rule, run


@rule.register(StaticGenerativeFunction)
def _gen_call(gen_fn, ctx, site, key, ins, state, k, addr):
    ctx = call_policy(ctx, gen_fn, addr)
    program = gen_fn.program(jax.tree.unflatten(site.in_tree, _dual.primals(ins)))
    return run(ctx, program, key, ins, state, addr, k)
