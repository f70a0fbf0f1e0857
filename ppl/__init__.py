"""ppl: probabilistic programming with programmable variational inference, on JAX.

The names below are the public surface; ``ppl.inference`` holds the inference
algorithms (importance sampling, SMC, MCMC, enumeration, ``ppl.inference.vi``).
"""

from ppl import inference
from ppl._caches import clear_caches
from ppl._errors import AddressError, PPLError
from ppl._gfi import GenerativeFunction, Trace
from ppl.choices import ChoiceMap, Selection, select, select_all, select_none
from ppl.combinators import cond, mix, repeat, scan, sum_out, switch, vmap
from ppl.distributions import (
    Distribution,
    bernoulli,
    beta,
    binomial,
    categorical,
    cauchy,
    dirichlet,
    distribution,
    exponential,
    flip,
    gamma,
    geometric,
    half_cauchy,
    half_normal,
    laplace,
    logistic,
    lognormal,
    mv_normal,
    mv_normal_diag,
    normal,
    poisson,
    student_t,
    uniform,
)
from ppl.expectations import E, Expectation, add_cost, adev, density, expectation, sim
from ppl.gen import gen
from ppl.marginals import marginal
from ppl.normalize import normalize
from ppl.improper import improper_uniform
from ppl.primitives import deterministic, factor, recorded
from ppl.transforms.adev.auto import choose_strategies
from ppl.transforms.adev.strategy_choice import StrategyChoice
from ppl.transforms.adev.mvd import mvd
from ppl.transforms.adev.enum_strategy import enum, enum_sequential
from ppl.transforms.adev.strategies import (
    Strategy,
    implicit_reparam,
    reinforce,
    reparam,
)

__version__ = "0.1.0"

__all__ = [
    # errors
    "AddressError",
    "PPLError",
    # the interface, choice maps and selections
    "ChoiceMap",
    "GenerativeFunction",
    "Selection",
    "Trace",
    "select",
    "select_all",
    "select_none",
    # generative functions
    "gen",
    "cond",
    "mix",
    "repeat",
    "scan",
    "sum_out",
    "switch",
    "vmap",
    "marginal",
    "normalize",
    # distributions
    "Distribution",
    "distribution",
    "bernoulli",
    "beta",
    "binomial",
    "categorical",
    "cauchy",
    "dirichlet",
    "exponential",
    "flip",
    "gamma",
    "geometric",
    "half_cauchy",
    "half_normal",
    "improper_uniform",
    "laplace",
    "logistic",
    "lognormal",
    "mv_normal",
    "mv_normal_diag",
    "normal",
    "poisson",
    "student_t",
    "uniform",
    # modelling primitives that are not random choices
    "deterministic",
    "factor",
    "recorded",
    # expectations and gradient strategies
    "E",
    "Expectation",
    "add_cost",
    "adev",
    "choose_strategies",
    "density",
    "expectation",
    "sim",
    "Strategy",
    "StrategyChoice",
    "enum",
    "enum_sequential",
    "implicit_reparam",
    "mvd",
    "reinforce",
    "reparam",
    # inference, caches
    "inference",
    "clear_caches",
]
