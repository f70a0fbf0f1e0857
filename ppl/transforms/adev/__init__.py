"""ADEV: unbiased derivatives of expected values by program transformation.

The modules, in the order the data flows:

* :mod:`~ppl.transforms.adev.dual`: dual numbers, and the state threaded
  along one sample path (score tangents, costs, recorded choices);
* :mod:`~ppl.transforms.adev.strategies`: how one random choice is sampled
  and differentiated (reparam, reinforce, ...), with enumeration in
  :mod:`~ppl.transforms.adev.enum_strategy` and the measure-valued derivative
  in :mod:`~ppl.transforms.adev.mvd`;
* :mod:`~ppl.transforms.adev.interpreter`: the continuation-passing walk of
  a staged program, the policy context, and :func:`rule`, the one dispatch
  that finds the rule of each kind of callee;
* one module per kind of callee, each registering its rule: a single choice
  (:mod:`.choice`), an ``@gen`` call (:mod:`.calls`), ``scan``, ``vmap``,
  ``switch``/``cond``/``mix``, expectations with ``sim`` and ``add_cost``
  (:mod:`.expectation`), estimated densities (:mod:`.marginal`), exactly summed ones
  (:mod:`.summed`),
  ``ppl.deterministic`` and ``ppl.factor`` (:mod:`.recorded_sites`), and the
  per-choice density terms of Rao-Blackwellized objectives (:mod:`.terms`,
  with the data flow of scores in :mod:`.dataflow`).

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
