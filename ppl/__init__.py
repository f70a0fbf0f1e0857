"""ppl: probabilistic programming with programmable variational inference, on JAX."""

from ppl._errors import AddressError, PPLError
from ppl._gfi import GenerativeFunction, Trace
from ppl.choices import ChoiceMap, Selection, select, select_all, select_none
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
from ppl.combinators import cond, mix, repeat, scan, switch, vmap
from ppl.gen import gen
from ppl.marginals import marginal
from ppl.normalize import normalize
from ppl.expectations import E, Expectation, add_cost, adev, density, expectation, sim
from ppl.transforms.adev.strategies import (
    Strategy, enum, enum_sequential, implicit_reparam, mvd, reinforce, reparam,
)

__version__ = "0.1.0"

__all__ = [
    "AddressError", "ChoiceMap", "Distribution", "GenerativeFunction", "PPLError",
    "Selection", "Trace", "bernoulli", "cond", "mix", "repeat", "scan", "switch", "vmap", "beta", "binomial", "categorical", "cauchy",
    "dirichlet", "distribution", "exponential", "flip", "gamma", "gen", "geometric",
    "laplace", "logistic", "lognormal", "mv_normal", "mv_normal_diag", "normal",
    "poisson", "select", "select_all", "select_none", "student_t", "uniform",
]
__all__ += [
    "E", "Expectation", "Strategy", "add_cost", "adev", "density", "enum", "enum_sequential",
    "expectation", "implicit_reparam", "mvd", "reinforce", "reparam", "sim",
]
__all__ += ["marginal"]
from ppl import inference  # noqa: E402  (subpackage: ppl.inference.importance, .smc, .mcmc, .vi, ...)
__all__ += ["inference"]
__all__ += ["normalize"]
