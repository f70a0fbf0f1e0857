"""MCMC kernels over traces, gathered in one namespace.

A kernel has ``init(trace, n_warmup=0, observed=None) -> MCMCState`` and a
pure ``step(key, state) -> state`` (also available as ``kernel(key, state)``),
so kernels compose and run under ``jit``, ``vmap`` and ``lax.scan``; a kernel
object is an immutable value holding only its settings, and one serves many
models at once. The interface lives in ``ppl.inference.kernel``,
Metropolis-Hastings in ``ppl.inference.metropolis``, MALA and HMC in
``ppl.inference.gradient``, NUTS in ``ppl.inference.no_u_turn``, the
compositions in ``ppl.inference.composition`` (all importable from here),
the multi-chain driver in ``ppl.inference.chains``.
"""

from __future__ import annotations

from ppl.inference.composition import (
    Cycle,
    MixtureAux,
    MixtureKernel,
    RepeatAux,
    RepeatKernel,
    cycle,
    mixture_kernel,
    repeat_kernel,
)
from ppl.inference.gradient import HMC, MALA, GradientAux, StepSize, hmc, mala
from ppl.inference.kernel import Kernel, MCMCState
from ppl.inference.metropolis import MH, MHAux, mh
from ppl.inference.no_u_turn import NUTS, NUTSAux, nuts

__all__ = [
    "HMC",
    "MALA",
    "MH",
    "NUTS",
    "Cycle",
    "GradientAux",
    "Kernel",
    "MCMCState",
    "MHAux",
    "MixtureAux",
    "MixtureKernel",
    "NUTSAux",
    "RepeatAux",
    "RepeatKernel",
    "StepSize",
    "cycle",
    "hmc",
    "mala",
    "mh",
    "mixture_kernel",
    "nuts",
    "repeat_kernel",
]
