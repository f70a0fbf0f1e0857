"""Monte Carlo inference on generative functions: importance sampling, SMC, MCMC
and exact enumeration. Every algorithm is written against the generative
function interface and runs under ``jit``/``vmap``."""

from ppl.inference import chains, enum, importance as _importance_mod, mcmc, nuts as _nuts_mod, resampling, smc, vi
from ppl.inference._util import ess, log_mean_exp
from ppl.inference.chains import MCMCResult, run as run_mcmc
from ppl.inference.enum import Enumeration, enumerate_posterior
from ppl.inference.importance import ImportanceResult, importance, sir
from ppl.inference.mcmc import HMC, MALA, MH, Cycle, Kernel, MCMCState, Mixture, Repeat, cycle, hmc, mala, mh, mixture, repeat
from ppl.inference.nuts import NUTS, nuts
from ppl.inference.smc import ParticleCollection, particle_filter

__all__ = [
    "Cycle", "Enumeration", "HMC", "ImportanceResult", "Kernel", "MALA", "MCMCResult", "MCMCState", "MH",
    "Mixture", "NUTS", "ParticleCollection", "Repeat", "particle_filter", "chains", "cycle", "enum", "enumerate_posterior", "ess",
    "hmc", "importance", "log_mean_exp", "mala", "mcmc", "mh", "mixture", "nuts", "repeat", "resampling",
    "run_mcmc", "sir", "smc", "vi",
]
