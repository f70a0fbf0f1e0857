"""ADEV: unbiased derivatives of expected values by program transformation.

The modules, in the order the data flows:

* ``ppl.transforms.adev.dual``: dual numbers, and the state threaded
  along one sample path (score tangents, costs, recorded choices);
* ``ppl.transforms.adev.strategies``: how one random choice is sampled
  and differentiated (reparam, reinforce, ...), with enumeration in
  ``ppl.transforms.adev.enum_strategy`` and the measure-valued derivative
  in ``ppl.transforms.adev.mvd``;
* ``ppl.transforms.adev.interpreter``: the continuation-passing walk of
  a staged program, the policy context, and ``rule``, the one dispatch
  that finds the rule of each kind of callee;
* one module per kind of callee, each registering its rule: a single choice
  (``.choice``), an ``@gen`` call (``.calls``), ``scan``, ``vmap``,
  ``switch``/``cond``/``mix``, expectations with ``sim`` and ``add_cost``
  (``.expectation``), estimated densities (``.marginal``), exactly summed ones
  (``.summed``),
  ``ppl.deterministic`` and ``ppl.factor`` (``.recorded_sites``), and the
  per-choice density terms of Rao-Blackwellized objectives (``.terms``,
  with the data flow of scores in ``.dataflow``).

Importing this package registers every rule.
"""

from ppl.transforms.adev import dual, strategies, enum_strategy, mvd, interpreter  # noqa: F401  (order: the rules below use them)
from ppl.transforms.adev import (  # noqa: F401  (each registers its rules)
    calls,
    choice,
    expectation,
    marginal,
    recorded_sites,
    scan,
    summed,
    switch,
    vmap,
)
from ppl.transforms.adev import dataflow, terms  # noqa: F401
from ppl.transforms.adev.interpreter import rule

__all__ = ["rule"]
