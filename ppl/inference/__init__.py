"""Monte Carlo inference on generative functions: importance sampling, SMC, MCMC
and exact enumeration, written against the generative-function interface.

    importance(key, model, obs, args, proposal=None, n=1000)  -> ImportanceResult
    sir(key, model, obs, args, n=..., m=...)                   -> resampled traces
    smc.init / extend / reweight / resample / maybe_resample / rejuvenate / run
    particle_filter(key, ppl.scan model, args, obs, n, proposal=...)
    mh / mala / hmc / nuts kernels; cycle / mixture / repeat; run_mcmc (chains.run)
    enumerate_posterior(model, obs, args)                      -> exact posterior
    unconstrained.constrain / unconstrain                      the gradient kernels' coordinates
    vi                                                          variational inference
"""

from ppl.inference import (
    chains, enum, filtering, gradient, kernel, mcmc, particles, resampling, smc, unconstrained, vi,
)
from ppl.inference._util import ess, log_mean_exp
from ppl.inference.chains import MCMCResult
from ppl.inference.chains import run as run_mcmc
from ppl.inference.enum import Enumeration, enumerate_posterior
from ppl.inference.filtering import particle_filter
from ppl.inference.importance import ImportanceResult, importance, sir
from ppl.inference.mcmc import (
    HMC, MALA, MH, Cycle, Kernel, MCMCState, Mixture, Repeat, cycle, hmc, mala, mh, mixture, repeat,
)
from ppl.inference.nuts import NUTS, nuts
from ppl.inference.particles import ParticleCollection, SMCInfo

__all__ = [
    "Cycle", "Enumeration", "HMC", "ImportanceResult", "Kernel", "MALA", "MCMCResult", "MCMCState", "MH",
    "Mixture", "NUTS", "ParticleCollection", "Repeat", "SMCInfo", "chains", "cycle", "enum", "enumerate_posterior",
    "ess", "filtering", "gradient", "hmc", "importance", "kernel", "log_mean_exp", "mala", "mcmc", "mh", "mixture",
    "nuts", "particle_filter", "particles", "repeat", "resampling", "run_mcmc", "sir", "smc", "unconstrained", "vi",
]
