"""Programmable variational inference: objectives as programs, and fitting them."""

from ppl.inference.vi.diagnostics import GradientStats, gradient_variance
from ppl.inference.vi.fit import FitResult, NonFiniteLoss, fit

__all__ = ["FitResult", "GradientStats", "NonFiniteLoss", "fit", "gradient_variance"]
