"""The core: the only package that touches JAX internals.

Three concepts, in the order data flows:

* ``ppl.core.callee``: ``Callee``, the base class of everything that
  can be called at an address (its return-value shapes, cached per callee);
* ``ppl.core.primitive``: the sample primitive ``sample_p`` (a random
  choice), its refusing batching and JVP rules, ``bind_sample``, and
  checks on tracers (``is_concrete``, ``closes_over_tracers``,
  ``is_differentiated``);
* ``ppl.core.staging``: tracing a function to a program (inlining
  call-like equations, refusing random choices inside JAX's own control
  flow), hoisting closed-over tracers, and the program cache;
* ``ppl.core.program``: the program IR (``Site``, ``Program``)
  with its direct walker ``Program.run`` and its continuation-passing
  walker ``Program.walk`` (``Continue``, ``eqn_fn``).

A JAX upgrade touches this package only.
"""

from ppl.core.callee import Callee
from ppl.core.primitive import (
    aval,
    bind_sample,
    closes_over_tracers,
    is_concrete,
    is_differentiated,
    is_tracer,
    refuse_as_array,
    sample_p,
)
from ppl.core.program import Continue, Program, Site, eqn_fn
from ppl.core.staging import depends_on, hoist_closure, program_cache, stage

__all__ = [
    "Callee",
    "Continue",
    "Program",
    "Site",
    "aval",
    "bind_sample",
    "closes_over_tracers",
    "depends_on",
    "eqn_fn",
    "hoist_closure",
    "is_concrete",
    "is_differentiated",
    "is_tracer",
    "program_cache",
    "refuse_as_array",
    "sample_p",
    "stage",
]
