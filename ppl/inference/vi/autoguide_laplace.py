"""The Laplace approximation as an automatic guide, from a fitted delta guide.

A fitted ``ppl.inference.vi.auto_delta`` holds the MAP in constrained
space, in unconstrained coordinates ``u``. The Laplace approximation is a
normal in those coordinates at the mode of their density, ``p(x(u), obs)
|det dx/du|`` (the Jacobian moves the mode a little away from the
constrained MAP), with covariance the inverse Hessian of its negative log,
the potential. ``auto_laplace`` starts at the delta's point, takes Newton
steps on the potential to its mode (one step when the posterior in ``u`` is
normal), and returns a full-rank guide with that location and the Cholesky
factor of the inverse Hessian. The potential is
``ppl.inference.vi._autoguide_base.Layout.potential``, which maps ``u``
to the choices in program order with ``ppl.inference.unconstrained.constrain``.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from ppl._errors import PPLError
from ppl.inference.vi.autoguide import AutoGuide
from ppl.inference.vi.autoguide_mvn import multivariate_from


def auto_laplace(
    delta: AutoGuide, guide_args: tuple | None = None, *, newton_steps: int = 20, tol: float = 1e-6
) -> AutoGuide:
    """A Laplace approximation: a full-rank normal guide at the mode of the
    unconstrained density with the inverse Hessian of its negative log.

    From the delta guide's point, Newton steps on the model's potential in the
    guide's unconstrained coordinates (log-Jacobians included) find the mode
    ``u*``; the guide is ``N(u*, H^{-1})`` with ``H`` the Hessian there, pushed
    through the supports' bijections. It is close to the posterior when the
    posterior is close to Gaussian in those coordinates, and says nothing of
    other modes. A Newton step costs a Hessian of the potential (about ``d``
    gradients) and a ``d x d`` solve, ``O(d^3)``; the loop runs on the host,
    one compiled call per step, and stops early when a step is below ``tol``
    or not finite.

    Args:
        delta: an ``ppl.inference.vi.auto_delta`` guide.
        guide_args: its fitted arguments ``(params,)`` (``result.guide_args``;
            default: its initial ones).
        newton_steps: at most this many Newton steps from the delta's point.
        tol: stop when the largest step is below ``tol``.

    Returns:
        An ``AutoGuide`` of the full-rank family (``auto_multivariate_normal``'s
        parameters), ready to sample or to use in any objective.

    Raises:
        PPLError: if ``delta`` is not a delta guide, ``guide_args`` is not
            ``(params,)``, or the Hessian at the point reached is not positive
            definite (not a mode: fit the delta guide longer, or from another
            start).

    Examples:
        >>> import jax, optax, ppl
        >>> from ppl.inference import vi
        >>> @ppl.gen
        ... def model():
        ...     mu = ppl.normal(0.0, 1.0) @ "mu"
        ...     return ppl.normal(mu, 1.0) @ "y"
        >>> delta = vi.auto_delta(model, {"y": 1.0})
        >>> laplace = vi.auto_laplace(delta)   # Newton from the start: exact here
        >>> round(float(laplace.covariance()[0, 0]), 4)  # the posterior variance, 1/2
        0.5
    """
    if not isinstance(delta, AutoGuide) or delta.kind != "auto_delta":
        raise PPLError(
            f"auto_laplace takes an auto_delta guide (fitted, with its guide_args); got {delta!r}."
        )
    u = jnp.asarray(delta._params(guide_args)["loc"])
    potential = delta.layout.potential
    grad_hess = jax.jit(lambda v: (jax.grad(potential)(v), jax.hessian(potential)(v)))
    for _ in range(newton_steps):
        g, h = grad_hess(u)
        step = jnp.linalg.solve(h, g)
        if not np.all(np.isfinite(np.asarray(step))):
            break
        u = u - step
        if float(jnp.max(jnp.abs(step))) < tol:
            break
    _, h = grad_hess(u)
    cov = jnp.linalg.inv(h)
    scale_tril = jnp.linalg.cholesky((cov + cov.T) / 2)
    if not np.all(np.isfinite(np.asarray(scale_tril))):
        raise PPLError(
            "auto_laplace: the Hessian of the negative log density at the point reached is not "
            "positive definite, so the point is not a mode. Fit the auto_delta guide longer (or "
            "from another init=) and pass its fitted guide_args."
        )
    return multivariate_from(delta, u, scale_tril)


__all__ = ["auto_laplace"]
