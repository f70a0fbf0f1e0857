"""The ADEV rules of the sites that make no random choice: ``ppl.deterministic``
passes its value through with its derivative; ``ppl.factor`` inside a program
being sampled is an error that says what to do instead."""

from __future__ import annotations

from ppl._errors import PPLError, fmt_addr
from ppl.core import Continue
from ppl.primitives import Deterministic, Factor
from ppl.transforms.adev.interpreter import rule


@rule.register(Deterministic)
def _deterministic(gen_fn, ctx, site, key, ins, state, k, addr):
    # The recorded value is the value it was given: same leaves, same tangents.
    return Continue(list(ins), state)


@rule.register(Factor)
def _factor(gen_fn, ctx, site, key, ins, state, k, addr):
    raise PPLError(
        f"ppl.factor at {fmt_addr(addr)} is met while an expectation samples the generative "
        "function it is in: a factor reweights a density, so that function is an unnormalized "
        "density with no distribution to sample. Use ppl.density(model)(choices, *args) for its "
        "log density (the factor included), or sample its normalized form, "
        "ppl.normalize(model, observations, n=...) (sampling importance resampling)."
    )
