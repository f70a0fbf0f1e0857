"""Multivariate normal automatic guides: full rank and low rank plus diagonal.

The blocks of unconstrained coordinates are sampled in program order, each
from its conditional given the blocks before it, so supports that depend on
earlier choices follow them (see ``ppl.inference.vi._autoguide_base``).
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpyro.distributions as nd

from ppl._errors import PPLError
from ppl.inference.vi._autoguide_base import Family, Walker, pushforward
from ppl.inference.vi.autoguide import AutoGuide, _block, _build, _check_scale, inv_softplus

# ---------------------------------------------------------------------------
# Multivariate normal: a Cholesky factor L, choices in program order
# ---------------------------------------------------------------------------
# u = loc + L eps. Block i given the blocks before it is normal with mean
# loc_i + L[i, :i] eps[:i] and Cholesky factor L[i, i]; the state carries L and
# the eps of the blocks sampled so far (recovered from their values).


def tril_of(raw):
    """The Cholesky factor of a raw square matrix: its strict lower part and
    ``softplus`` of its diagonal."""
    return jnp.tril(raw, -1) + jnp.diag(jax.nn.softplus(jnp.diag(raw)))


def raw_of(tril):
    """The inverse of ``tril_of``."""
    return jnp.tril(tril, -1) + jnp.diag(inv_softplus(jnp.diag(tril)))


def _mvn_site(params, state, latent):
    scale_tril, eps = state
    rows = scale_tril[latent.offset : latent.offset + latent.size]
    block = rows[:, latent.offset : latent.offset + latent.size]
    return _block(params["loc"], latent) + rows @ eps, block


def _mvn_dist(latent, transform, mean, block):
    return pushforward(nd.MultivariateNormal(mean, scale_tril=block), latent, transform)


def _mvn_after(params, state, latent, u, base):
    scale_tril, eps = state
    mean, block = base
    e = jax.scipy.linalg.solve_triangular(block, u - mean, lower=True)
    return scale_tril, eps.at[latent.offset : latent.offset + latent.size].set(e)


def _full_start(params):
    return tril_of(params["raw_tril"]), jnp.zeros_like(params["loc"])


def _low_rank_cov(params):
    w, d = params["cov_factor"], jax.nn.softplus(params["raw_scale"])
    return w @ w.T + jnp.diag(d**2)


def _low_rank_start(params):
    return jnp.linalg.cholesky(_low_rank_cov(params)), jnp.zeros_like(params["loc"])


_FULL_RANK = Family("auto_multivariate_normal", _full_start, _mvn_site, _mvn_dist, _mvn_after)
_LOW_RANK = Family("auto_low_rank_normal", _low_rank_start, _mvn_site, _mvn_dist, _mvn_after)


def full_rank_covariance(params):
    """``L L^T`` for the parameters of ``auto_multivariate_normal``."""
    scale_tril = tril_of(params["raw_tril"])
    return scale_tril @ scale_tril.T


def auto_multivariate_normal(
    model,
    observations=None,
    args: tuple = (),
    *,
    key=None,
    init: Any = "median",
    num_draws: int = 15,
    init_scale: float = 0.1,
) -> AutoGuide:
    """A full-rank normal guide in unconstrained coordinates (NumPyro's
    ``AutoMultivariateNormal``): ``u = loc + L eps`` with ``L`` lower triangular.

    Args:
        model: an ``@ppl.gen`` model.
        observations: a choice map (or dict) of observed values.
        args: the model's arguments (a tuple).
        key: a ``jax.random`` key for the prior draws (default ``key(0)``).
        init: as for ``auto_normal``.
        num_draws: prior draws for ``"median"``/``"mean"``.
        init_scale: the initial diagonal of ``L``.

    Returns:
        An ``AutoGuide``; ``guide_args[0]`` is ``{"loc": (d,), "raw_tril":
        (d, d)}``, ``L = tril(raw_tril, -1) + diag(softplus(diag(raw_tril)))``.

    Raises:
        PPLError: as ``auto_normal``.

    Examples:
        >>> import ppl
        >>> from ppl.inference import vi
        >>> @ppl.gen
        ... def model():
        ...     a = ppl.normal(0.0, 1.0) @ "a"
        ...     b = ppl.normal(a, 1.0) @ "b"
        ...     return ppl.normal(a + b, 1.0) @ "y"
        >>> auto = vi.auto_multivariate_normal(model, {"y": 1.0})
        >>> auto.guide_args[0]["raw_tril"].shape
        (2, 2)
    """
    _check_scale(init_scale, "auto_multivariate_normal")

    def params_of(layout, u0, _):
        raw = jnp.diag(jnp.full(layout.size, inv_softplus(float(init_scale))))
        return {"loc": u0, "raw_tril": raw}

    return _build(
        "auto_multivariate_normal",
        _FULL_RANK,
        model,
        observations,
        args,
        key,
        init,
        num_draws,
        params_of,
        full_rank_covariance,
    )


def auto_low_rank_normal(
    model,
    observations=None,
    args: tuple = (),
    *,
    rank: int = 2,
    key=None,
    init: Any = "median",
    num_draws: int = 15,
    init_scale: float = 0.1,
) -> AutoGuide:
    """A normal guide whose covariance is ``W W^T + diag(d^2)`` with ``W`` of shape
    ``(size, rank)`` (NumPyro's ``AutoLowRankMultivariateNormal``).

    Each call factors the covariance (``O(size^3)``), then samples the choices
    in program order as ``auto_multivariate_normal`` does.

    Args:
        model: an ``@ppl.gen`` model.
        observations: a choice map (or dict) of observed values.
        args: the model's arguments (a tuple).
        rank: the number of columns of ``W``.
        key: a ``jax.random`` key for the prior draws and ``W``'s start (default ``key(0)``).
        init: as for ``auto_normal``.
        num_draws: prior draws for ``"median"``/``"mean"``.
        init_scale: the initial ``d`` (``W`` starts small and random, so its
            columns can differ).

    Returns:
        An ``AutoGuide``; ``guide_args[0]`` is ``{"loc", "cov_factor",
        "raw_scale"}`` with ``d = softplus(raw_scale)``.

    Raises:
        PPLError: as ``auto_normal``, or if ``rank`` is not a positive int.

    Examples:
        >>> import jax.numpy as jnp, ppl
        >>> from ppl.inference import vi
        >>> @ppl.gen
        ... def model():
        ...     z = ppl.normal(jnp.zeros(5), 1.0) @ "z"
        ...     return ppl.normal(jnp.sum(z), 1.0) @ "y"
        >>> vi.auto_low_rank_normal(model, {"y": 1.0}, rank=2).guide_args[0]["cov_factor"].shape
        (5, 2)
    """
    _check_scale(init_scale, "auto_low_rank_normal")
    if not isinstance(rank, int) or isinstance(rank, bool) or rank < 1:
        raise PPLError(f"auto_low_rank_normal: rank must be a positive int, got {rank!r}.")

    def params_of(layout, u0, k):
        w = 0.1 * init_scale * jax.random.normal(k, (layout.size, rank), u0.dtype)
        return {
            "loc": u0,
            "cov_factor": w,
            "raw_scale": jnp.full(layout.size, inv_softplus(float(init_scale))),
        }

    return _build(
        "auto_low_rank_normal",
        _LOW_RANK,
        model,
        observations,
        args,
        key,
        init,
        num_draws,
        params_of,
        _low_rank_cov,
    )


def multivariate_from(delta: AutoGuide, loc, scale_tril) -> AutoGuide:
    """A full-rank guide over the same layout as ``delta`` with the given
    location and Cholesky factor (for ``auto_laplace``)."""
    walker = Walker(delta.layout, delta.model, delta.args, _FULL_RANK)
    params: dict[str, Any] = {"loc": loc, "raw_tril": raw_of(scale_tril)}
    return AutoGuide(walker, (params,), full_rank_covariance)


__all__ = ["auto_low_rank_normal", "auto_multivariate_normal"]
