"""Programmable variational inference: objectives as programs, and fitting them.

``fit`` (module ``fit_loop``) is the driver (chunks, progress bar, history,
errors) around the pure pair ``fitter(objective, optimizer, trainable=...) ->
Fitter(init, step)`` (module ``fit_step``).
"""

from ppl.inference.vi._autoguide_init import initial_values
from ppl.inference.vi.autoguide import AutoGuide, auto_delta, auto_normal
from ppl.inference.vi.autoguide_laplace import auto_laplace
from ppl.inference.vi.autoguide_mvn import auto_low_rank_normal, auto_multivariate_normal
from ppl.inference.vi.diagnostics import GradientStats, gradient_variance
from ppl.inference.vi.fbgvi import (
    FBGVI,
    FBGVIResult,
    GaussianState,
    base_points,
    entropy_prox,
    fbgvi,
    fit_fbgvi,
    gaussian_elbo,
)
from ppl.inference.vi.fit_loop import FitResult, NonFiniteLoss, fit
from ppl.inference.vi.fit_step import Fitter, FitState, fitter
from ppl.inference.vi.implicit import (
    ImplicitFamily,
    g_and_jacobian,
    implicit_family,
    linearized_log_density,
)
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
    "AutoGuide",
    "auto_delta",
    "auto_laplace",
    "auto_low_rank_normal",
    "auto_multivariate_normal",
    "auto_normal",
    "initial_values",
    "FBGVI",
    "FBGVIResult",
    "GaussianState",
    "ImplicitFamily",
    "base_points",
    "entropy_prox",
    "fbgvi",
    "fit_fbgvi",
    "g_and_jacobian",
    "gaussian_elbo",
    "implicit_family",
    "linearized_log_density",
    "FitResult",
    "FitState",
    "Fitter",
    "GradientStats",
    "NonFiniteLoss",
    "Objective",
    "cubo",
    "diwhvi",
    "elbo",
    "fit",
    "fitter",
    "forward_kl",
    "gradient_variance",
    "hvi",
    "iwelbo",
    "iwhvi",
    "renyi",
    "rws_wake_p",
    "rws_wake_q",
    "vimco",
]
