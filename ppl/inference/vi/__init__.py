"""Programmable variational inference: objectives as programs, and fitting them."""

from ppl.inference.vi.diagnostics import GradientStats, gradient_variance
from ppl.inference.vi.fit import FitResult, NonFiniteLoss, fit
from ppl.inference.vi.objectives import (
    Objective,
    cubo,
    diwhvi,
    elbo,
    forward_kl,
    hvi,
    iwelbo,
    iwhvi,
    renyi,
    rws_wake_p,
    rws_wake_q,
    vimco,
)

__all__ = [
    "FitResult", "GradientStats", "NonFiniteLoss", "Objective", "cubo", "diwhvi", "elbo", "fit",
    "forward_kl", "gradient_variance", "hvi", "iwelbo", "iwhvi", "renyi", "rws_wake_p",
    "rws_wake_q", "vimco",
]
