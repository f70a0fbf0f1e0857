"""Monte Carlo inference on generative functions: importance sampling, SMC, MCMC
and exact enumeration, written against the generative-function interface.

    importance(key, model, obs, args, proposal=None, n=1000)  -> ImportanceResult
    sir(key, model, obs, args, n=..., m=...)                   -> resampled traces
    smc.init / extend / reweight / resample / maybe_resample / rejuvenate / run
    particle_filter(key, ppl.scan model, args, obs, n, proposal=...)
    mh / mala / hmc / nuts kernels; cycle / mixture_kernel / repeat_kernel; run_mcmc
    diagnostics.rhat / ess_bulk / ess_tail / mcse_mean / bfmi  convergence of MCMC draws
    enumerate_posterior(model, obs, args)                      -> exact posterior
    predictive(key, model, args, posterior=..., n=...)         -> prior/posterior predictive
    unconstrained.constrain / unconstrain                      the gradient kernels' coordinates
    vi                                                          variational inference

Modules: ``kernel`` (the kernel interface), ``metropolis``, ``gradient`` (MALA,
HMC), ``no_u_turn`` (NUTS), ``composition``, ``mcmc`` (all kernels in one
namespace), ``chains`` (the multi-chain driver), ``mcmc_result`` (its draws
and warnings), ``diagnostics``, ``importance_sampling``,
``smc``, ``particles``, ``filtering``, ``resampling``, ``enumeration``,
``predictions``, ``unconstrained``, ``vi``. Module names differ from the
functions they define (``importance`` lives in ``importance_sampling``,
``predictive`` in ``predictions``, ``vi.fit`` in ``vi.fit_loop``), so
``ppl.inference.importance`` is always the function.
"""

from ppl.inference import (
    chains,
    composition,
    diagnostics,
    enumeration,
    filtering,
    gradient,
    kernel,
    mcmc,
    mcmc_result,
    metropolis,
    no_u_turn,
    particles,
    predictions,
    resampling,
    smc,
    unconstrained,
    vi,
)
from ppl.inference._util import ess, log_mean_exp
from ppl.inference.mcmc_result import MCMCResult, SamplerWarning
from ppl.inference.chains import run as run_mcmc
from ppl.inference.enumeration import Enumeration, enumerate_posterior
from ppl.inference.filtering import particle_filter
from ppl.inference.importance_sampling import ImportanceResult, importance, sir
from ppl.inference.mcmc import (
    HMC,
    MALA,
    MH,
    NUTS,
    Cycle,
    Kernel,
    MCMCState,
    MixtureKernel,
    RepeatKernel,
    cycle,
    hmc,
    mala,
    mh,
    mixture_kernel,
    nuts,
    repeat_kernel,
)
from ppl.inference.particles import ParticleCollection, SMCInfo
from ppl.inference.predictions import PredictiveDraws, predictive

__all__ = [
    "Cycle",
    "Enumeration",
    "HMC",
    "ImportanceResult",
    "Kernel",
    "MALA",
    "MCMCResult",
    "SamplerWarning",
    "MCMCState",
    "MH",
    "MixtureKernel",
    "NUTS",
    "ParticleCollection",
    "PredictiveDraws",
    "RepeatKernel",
    "SMCInfo",
    "chains",
    "composition",
    "diagnostics",
    "cycle",
    "enumerate_posterior",
    "enumeration",
    "ess",
    "filtering",
    "gradient",
    "hmc",
    "importance",
    "kernel",
    "log_mean_exp",
    "mala",
    "mcmc",
    "mcmc_result",
    "metropolis",
    "mh",
    "mixture_kernel",
    "no_u_turn",
    "nuts",
    "particle_filter",
    "particles",
    "predictions",
    "predictive",
    "repeat_kernel",
    "resampling",
    "run_mcmc",
    "sir",
    "smc",
    "unconstrained",
    "vi",
]
