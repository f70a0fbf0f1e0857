"""Forward-backward Gaussian VI (FB-GVI) in the Bures-Wasserstein space.

Diao, Balasubramanian, Chewi and Salim (ICML 2023) write Gaussian VI,
``min KL(q || pi)`` over Gaussians ``q = N(m, Sigma)`` with ``pi ∝ exp(-V)``,
as the composite problem ``E_q[V] + E_q[log q]`` (potential plus negative
entropy) over the Gaussians with the Wasserstein-2 metric, and take
proximal-gradient steps there:

* forward (a gradient step on the potential):
  ``m <- m - h E_q[grad V]``, ``Sigma <- M Sigma M`` with ``M = I - h E_q[Hess V]``;
* backward (the JKO step of the negative entropy, closed form for Gaussians):
  ``Sigma <- (Sigma + 2h I + [Sigma (Sigma + 4h I)]^{1/2}) / 2``, the mean unchanged.

The backward step follows from the first-order condition of the JKO problem
with a linear map ``T(x) = m + A (x - m)``: ``(A - I) / h = A^{-1} Sigma^{-1}``,
so ``A`` shares the eigenvectors of ``Sigma`` and each eigenvalue ``l``
becomes ``(l + 2h + sqrt(l (l + 4h))) / 2``, which is at least ``h``: every
iterate is symmetric positive definite whatever the forward step did.

The potential is the model's on the unconstrained coordinates of an automatic
guide (``ppl.inference.vi._autoguide_base.Layout.potential``, the same
function Laplace differentiates), so the fitted Gaussian is a full-rank
automatic guide (``FBGVIResult.auto_guide``).

Expectations under ``q`` have no closed form in general. The *deterministic*
variant uses a fixed set of base points ``eps_i`` (a Gauss-Hermite product rule
in low dimension, else antithetic standard-normal draws), mapped through
``x_i = m + L eps_i`` with ``L`` the Cholesky factor of ``Sigma``; the
*stochastic* variant draws fresh ``eps_i`` each step (the paper's stochastic
FB-GVI), with the Hessian by automatic differentiation or by Stein's identity
``E_q[Hess V] = Sigma^{-1} E_q[(x - m) grad V(x)^T]`` (gradients only).
"""

from __future__ import annotations

from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp

from ppl._errors import PPLError
from ppl.inference.vi._bures_wasserstein import (
    GaussianState,
    base_points,
    entropy,
    entropy_prox,
    gaussian_elbo,
    sym,
)
from ppl.inference.vi.autoguide import AutoGuide
from ppl.inference.vi.autoguide_mvn import multivariate_from, raw_of

VARIANTS = ("deterministic", "stochastic")
HESSIANS = ("autodiff", "stein")


class FBGVI(NamedTuple):
    """The pure pair of ``fbgvi``, as optax/blackjax write them.

    Attributes:
        init: ``init(mean, cov=None) -> GaussianState`` (``cov`` defaults to
            the identity).
        step: ``step(key, state, step_size=None) -> (state, elbo)``: one
            forward-backward step (``step_size`` overrides the pair's, e.g.
            from a schedule); ``elbo`` is ``-E_q[V] + H(q)`` at the state it
            was given, estimated with the step's base points. Jittable; the
            key is unused by the deterministic variant.

    Examples:
        >>> from ppl.inference.vi import fbgvi
        >>> init, step = fbgvi(lambda x: 0.5 * x @ x, 0.1)   # the target N(0, I)
        >>> state, elbo = step(jax.random.key(0), init(jnp.ones(2)))
        >>> [round(float(m), 2) for m in state.mean], elbo.shape
        ([0.9, 0.9], ())
    """

    init: Callable
    step: Callable


def _check(step_size, variant, hessian, num_points):
    if not callable(step_size) and (not isinstance(step_size, (int, float)) or not step_size > 0):
        raise PPLError(
            "fbgvi: step_size must be a positive number (or, for fit_fbgvi, a schedule: a "
            f"function of the step index such as optax.exponential_decay(...)), got {step_size!r}."
        )
    if variant not in VARIANTS:
        raise PPLError(f"fbgvi: variant must be one of {VARIANTS}, got {variant!r}.")
    if hessian not in HESSIANS:
        raise PPLError(f"fbgvi: hessian must be one of {HESSIANS}, got {hessian!r}.")
    if not isinstance(num_points, int) or isinstance(num_points, bool) or num_points < 1:
        raise PPLError(f"fbgvi: num_points must be a positive int, got {num_points!r}.")
    if variant == "stochastic" and hessian == "stein" and num_points < 2:
        raise PPLError(
            "fbgvi: Stein's estimator of the Hessian from one point has rank one; use "
            "num_points >= 2 (or hessian='autodiff')."
        )


def fbgvi(
    potential: Callable,
    step_size: float,
    *,
    variant: str = "deterministic",
    num_points: int = 256,
    hessian: str = "autodiff",
    key=None,
) -> FBGVI:
    """FB-GVI as a pure ``init``/``step`` pair over ``GaussianState``.

    Each ``step`` is one proximal-gradient step of ``KL(q || pi)`` over
    Gaussians ``q`` in the Wasserstein-2 geometry: a forward step on the
    potential (the mean moves by ``-h E_q[grad V]``, the covariance by ``M
    Sigma M`` with ``M = I - h E_q[Hess V]``), then the closed-form backward
    step of the entropy (``entropy_prox``), which keeps every iterate
    positive definite; see the module's text for the maths (Diao et al.,
    ICML 2023). ``init(mean, cov=None)`` checks the shapes (``cov`` defaults
    to the identity); ``step(key, state, step_size=None)`` returns the new
    state and ``-E_q[V] + H(q)`` at the old one. A step costs ``num_points``
    evaluations of ``V``'s gradient and, with ``hessian="autodiff"``, of its
    Hessian (``d`` times a gradient each), plus a Cholesky factorization and an
    eigendecomposition of a ``d x d`` matrix (``O(d^3)``).

    Args:
        potential: ``V(x) = -log pi(x)`` up to a constant, a scalar function on
            ``(d,)`` (an automatic guide's ``layout.potential``, or any).
        step_size: ``h``; the paper's guarantees need ``h <= 1/L`` for an
            ``L``-smooth ``V`` (the largest eigenvalue of its Hessian).
        variant: ``"deterministic"`` (fixed base points: ``base_points``)
            or ``"stochastic"`` (``num_points`` fresh draws per step).
        num_points: the number of base points (at most, for the quadrature).
        hessian: ``"autodiff"`` (``jax.hessian`` at each point) or
            ``"stein"`` (Stein's identity from the gradients: ``O(d)`` cheaper
            per point, noisier).
        key: the key of the deterministic variant's draws (default ``key(0)``).

    Returns:
        ``FBGVI``.

    Raises:
        PPLError: an unknown variant or Hessian estimator, a step size that is not
            a positive number (a schedule goes to ``fit_fbgvi``), or
            ``num_points`` not a positive int (at least 2 for Stein's
            estimator in the stochastic variant); from ``init``, a mean that is
            not a vector or a covariance that is not ``(d, d)``.

    Examples:
        >>> from ppl.inference.vi import fbgvi
        >>> solver = fbgvi(lambda x: 0.5 * jnp.sum((x - 1.0) ** 2), 0.1)
        >>> state = solver.init(jnp.zeros(2))
        >>> state, elbo = jax.jit(solver.step)(jax.random.key(0), state)
        >>> [round(float(m), 2) for m in state.mean]
        [0.1, 0.1]
    """
    _check(step_size, variant, hessian, num_points)
    if callable(step_size):
        raise PPLError(
            "fbgvi: step_size must be a number here; pass a schedule to fit_fbgvi, or call "
            "step(key, state, step_size=schedule(i)) yourself."
        )
    default_h = float(step_size)
    grad = jax.vmap(jax.value_and_grad(potential))
    hess = jax.vmap(jax.hessian(potential))

    def init(mean, cov=None) -> GaussianState:
        mean = jnp.asarray(mean, jnp.result_type(float))
        if mean.ndim != 1:
            raise PPLError(f"fbgvi: the mean must be a vector (d,), got shape {mean.shape}.")
        cov = jnp.eye(mean.shape[0], dtype=mean.dtype) if cov is None else jnp.asarray(cov)
        if cov.shape != (mean.shape[0],) * 2:
            raise PPLError(
                f"fbgvi: the covariance must have shape {(mean.shape[0],) * 2}, got {cov.shape}."
            )
        return GaussianState(mean, sym(cov.astype(mean.dtype)))

    def points(k, d, dtype):
        if variant == "deterministic":
            return base_points(d, num_points, key)
        eps = jax.random.normal(k, (num_points, d), dtype)
        return eps, jnp.full(num_points, 1.0 / num_points, dtype)

    def step(k, state: GaussianState, step_size=None):
        h = default_h if step_size is None else step_size
        m, cov = state
        eps, w = points(k, m.shape[0], m.dtype)
        chol = jnp.linalg.cholesky(cov)
        x = m + eps @ chol.T
        v, g = grad(x)
        if hessian == "autodiff":
            e_hess = jnp.einsum("n,nij->ij", w, hess(x))
        else:
            # Stein: Sigma^{-1} E[(x - m) g^T] = L^{-T} E[eps g^T]. The mean
            # gradient is subtracted (E[eps] = 0): without it the estimate's noise
            # grows with |E grad V| / scale, far from the mode.
            centred = (w[:, None] * eps).T @ (g - w @ g)
            if variant == "stochastic":  # each g_i is in its own mean: unbias
                centred = centred * (num_points / (num_points - 1))
            e_hess = jax.scipy.linalg.solve_triangular(chol.T, centred)
        a = jnp.eye(m.shape[0], dtype=m.dtype) - h * sym(e_hess)
        half = sym(a @ cov @ a)
        new = GaussianState(m - h * (w @ g), entropy_prox(half, h))
        return new, -jnp.sum(w * v) + entropy(cov)

    return FBGVI(init, step)


class FBGVIResult(NamedTuple):
    """What ``fit_fbgvi`` returns.

    Attributes:
        state: the final ``GaussianState`` (over the unconstrained
            coordinates, ordered as ``auto.layout.latents``, when fitted from an
            automatic guide).
        history: the ELBO estimate before each step, shape ``(steps,)``.
        auto: the automatic guide it was fitted from, or ``None``.

    Examples:
        >>> from ppl.inference import vi
        >>> start = vi.GaussianState(jnp.zeros(2), jnp.eye(2))
        >>> result = vi.fit_fbgvi(lambda x: jnp.sum((x - 1.0) ** 2), jax.random.key(0),
        ...                       steps=100, step_size=0.1, init=start)
        >>> result.history.shape, result.auto is None   # fitted from a bare potential
        ((100,), True)
        >>> [round(float(m), 2) for m in result.state.mean]   # the target N(1, I / 2)
        [1.0, 1.0]
        >>> [[round(float(c), 2) for c in row] for row in result.state.cov]
        [[0.5, 0.0], [0.0, 0.5]]
    """

    state: GaussianState
    history: jax.Array
    auto: AutoGuide | None

    def guide_args(self) -> tuple:
        """The state as arguments of ``auto_multivariate_normal``'s guide.

        Returns:
            ``({"loc": mean, "raw_tril": raw},)``, ``raw`` such that the guide's
            Cholesky factor is that of ``state.cov``; pass it with any automatic
            full-rank guide of the same model (``vi.elbo``, ``predictive``, ...).

        Raises:
            Nothing of its own: the state's covariance is positive definite.

        Examples:
            >>> (params,) = result.guide_args()   # doctest: +SKIP
        """
        chol = jnp.linalg.cholesky(self.state.cov)
        return ({"loc": self.state.mean, "raw_tril": raw_of(chol)},)

    def auto_guide(self) -> AutoGuide:
        """The fitted Gaussian as a full-rank automatic guide of the model.

        Returns:
            An ``AutoGuide`` (``auto_multivariate_normal``'s family) whose
            ``guide_args`` are ``guide_args``; ``.sample``, ``.median``,
            ``predictive(posterior=(guide, guide_args))`` all work.

        Raises:
            PPLError: if the result was fitted from a bare potential.

        Examples:
            >>> guide, guide_args = result.auto_guide()   # doctest: +SKIP
        """
        if self.auto is None:
            raise PPLError(
                "FBGVIResult.auto_guide: this result was fitted from a bare potential, so it has "
                "no model to build a guide for; fit from an automatic guide (fit_fbgvi(vi."
                "auto_multivariate_normal(model, obs, args), ...)) or use result.state."
            )
        chol = jnp.linalg.cholesky(self.state.cov)
        return multivariate_from(self.auto, self.state.mean, chol)


def fit_fbgvi(
    target,
    key,
    *,
    steps: int = 500,
    step_size: float = 0.05,
    variant: str = "deterministic",
    num_points: int = 256,
    hessian: str = "autodiff",
    init: GaussianState | None = None,
) -> FBGVIResult:
    """Fit a Gaussian by FB-GVI: ``steps`` steps of ``fbgvi`` in one compiled
    ``jax.lax.scan``.

    From an automatic guide, the potential is the model's negative log joint
    on the guide's unconstrained coordinates (with the log-Jacobians), so the
    fitted Gaussian is a full-rank automatic guide
    (``FBGVIResult.auto_guide``). The paper's guarantees (a log-concave,
    ``L``-smooth target and ``h <= 1/L``) assume exact expectations under
    ``q``: the deterministic variant's base points are exact for a quadratic
    potential, the stochastic variant's draws are unbiased. The cost is
    ``steps`` times one ``fbgvi`` step, compiled once per call.

    Args:
        target: an automatic guide (``vi.auto_multivariate_normal(model, obs,
            args)``, or any ``AutoGuide``): its model's potential on the
            unconstrained coordinates, started at its ``loc`` and covariance; or
            a potential ``V(x)`` (a callable), with ``init``.
        key: a ``jax.random`` key (for the stochastic variant's draws).
        steps: the number of steps.
        step_size: ``h`` (see ``fbgvi``), or a schedule ``h(i)`` of the
            step index (an optax schedule: decreasing steps average out the
            stochastic variant's noise).
        variant: ``"deterministic"`` or ``"stochastic"``, as for ``fbgvi``.
        num_points: the number of base points, as for ``fbgvi``.
        hessian: ``"autodiff"`` or ``"stein"``, as for ``fbgvi``.
        init: the starting ``GaussianState`` (default: the guide's).

    Returns:
        ``FBGVIResult``.

    Raises:
        PPLError: as ``fbgvi``; if ``target`` is a callable without
            ``init``, a delta guide without ``init``, or ``steps`` is not a
            positive int; if the iterates become non-finite (lower ``step_size``).

    Examples:
        >>> import jax, ppl
        >>> from ppl.inference import vi
        >>> @ppl.gen
        ... def model():
        ...     mu = ppl.normal(0.0, 1.0) @ "mu"
        ...     return ppl.normal(mu, 1.0) @ "y"
        >>> auto = vi.auto_multivariate_normal(model, {"y": 1.0})
        >>> result = vi.fit_fbgvi(auto, jax.random.key(0), steps=200, step_size=0.2)
        >>> round(float(result.state.mean[0]), 3), round(float(result.state.cov[0, 0]), 3)
        (0.5, 0.5)
    """
    if not isinstance(steps, int) or isinstance(steps, bool) or steps < 1:
        raise PPLError(f"fit_fbgvi: steps must be a positive int, got {steps!r}.")
    auto = target if isinstance(target, AutoGuide) else None
    if auto is not None:
        potential = auto.layout.potential
        if init is None:
            cov = auto.covariance()
            if auto.kind == "auto_delta":
                raise PPLError(
                    "fit_fbgvi: a delta guide has no covariance to start from; pass init="
                    "GaussianState(mean, cov), or start from vi.auto_multivariate_normal."
                )
            init = GaussianState(jnp.asarray(auto._params(None)["loc"]), cov)
    elif callable(target):
        potential = target
        if init is None:
            raise PPLError(
                "fit_fbgvi: with a potential function, pass init=GaussianState(mean, cov) (the "
                "dimension is read from it)."
            )
    else:
        raise PPLError(
            f"fit_fbgvi: target must be an automatic guide or a potential function, got {target!r}."
        )
    _check(step_size, variant, hessian, num_points)
    schedule = step_size if callable(step_size) else (lambda i: step_size)
    h0 = float(schedule(0))
    solver = fbgvi(potential, h0, variant=variant, num_points=num_points, hessian=hessian, key=key)
    start = solver.init(*init)

    @jax.jit
    def run(state, keys):
        def body(s, inputs):
            i, k = inputs
            return solver.step(k, s, jnp.asarray(schedule(i), s.mean.dtype))

        return jax.lax.scan(body, state, (jnp.arange(steps), keys))

    state, history = run(start, jax.random.split(key, steps))
    if not bool(jnp.all(jnp.isfinite(state.cov)) & jnp.all(jnp.isfinite(state.mean))):
        raise PPLError(
            f"fit_fbgvi: the iterates became non-finite within {steps} steps with step_size="
            f"{step_size}; lower the step size (it should be at most 1/L for an L-smooth "
            "potential) or start closer to the posterior."
        )
    return FBGVIResult(state, history, auto)


__all__ = [
    "FBGVI",
    "FBGVIResult",
    "GaussianState",
    "base_points",
    "entropy_prox",
    "fbgvi",
    "fit_fbgvi",
    "gaussian_elbo",
]
