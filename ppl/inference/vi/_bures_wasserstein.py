"""The Gaussian pieces FB-GVI is built from: the iterate, the entropy's JKO
step (the backward step, closed form by eigenvalues), fixed base points for
expectations under a Gaussian, and the ELBO of a Gaussian over them."""

from __future__ import annotations

from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from ppl._errors import PPLError


class GaussianState(NamedTuple):
    """A Gaussian ``N(mean, cov)``, the iterate of ``fbgvi`` (a pytree, a
    named tuple: ``mean, cov = state``).

    Pass one as ``fit_fbgvi(..., init=)`` to start from it; ``fbgvi``'s
    ``init(mean, cov)`` builds one with its checks.

    Attributes:
        mean: the mean, shape ``(d,)``.
        cov: the covariance, shape ``(d, d)``, symmetric positive definite.

    Examples:
        >>> from ppl.inference.vi import GaussianState
        >>> state = GaussianState(jnp.zeros(2), jnp.eye(2))
        >>> state.cov.shape
        (2, 2)
    """

    mean: jax.Array
    cov: jax.Array


def base_points(dim: int, num_points: int, key=None) -> tuple[jax.Array, jax.Array]:
    """Fixed standard-normal base points and weights for the deterministic variant.

    A Gauss-Hermite product rule when one of at least 3 nodes per axis fits in
    ``num_points`` (exact for polynomials of degree ``2 * nodes - 1`` in each
    coordinate, so for a quadratic potential at any mean and covariance);
    otherwise ``num_points`` antithetic draws (``eps`` and ``-eps``, so odd
    moments vanish), equally weighted.

    Args:
        dim: the dimension ``d``.
        num_points: the largest number of points to use.
        key: a ``jax.random`` key for the draws (default ``key(0)``).

    Returns:
        ``(eps, weights)``: shapes ``(n, d)`` and ``(n,)``, weights summing to one.

    Raises:
        PPLError: if ``dim`` or ``num_points`` is not a positive int.

    Examples:
        >>> from ppl.inference.vi import base_points
        >>> eps, w = base_points(2, 100)   # a 10 x 10 Gauss-Hermite grid
        >>> eps.shape, round(float(w.sum()), 6)
        ((100, 2), 1.0)
    """
    if not isinstance(dim, int) or dim < 1 or not isinstance(num_points, int) or num_points < 1:
        raise PPLError(
            f"base_points: dim and num_points must be positive ints, got {dim!r}, {num_points!r}."
        )
    nodes = int(np.floor(num_points ** (1.0 / dim) + 1e-9))
    if nodes >= 3:
        x, w = np.polynomial.hermite_e.hermegauss(nodes)
        grid = np.stack(np.meshgrid(*([x] * dim), indexing="ij"), -1).reshape(-1, dim)
        wgrid = np.prod(np.stack(np.meshgrid(*([w] * dim), indexing="ij"), -1), -1).reshape(-1)
        dtype = jnp.result_type(float)
        return jnp.asarray(grid, dtype), jnp.asarray(wgrid / wgrid.sum(), dtype)
    half = jax.random.normal(
        jax.random.key(0) if key is None else key, ((num_points + 1) // 2, dim)
    )
    eps = jnp.concatenate([half, -half])[:num_points]
    return eps, jnp.full(eps.shape[0], 1.0 / eps.shape[0], eps.dtype)


def gaussian_elbo(potential: Callable, state: GaussianState, eps, weights=None):
    """``-E_q[V] + H(q)`` for ``q = N(state.mean, state.cov)``, the expectation over
    the base points ``x_i = mean + L eps_i`` (``L L^T = cov``).

    With ``potential`` an automatic guide's ``Layout.potential``, this is the
    ELBO of the full-rank guide with those parameters (``log p(obs)`` minus the KL).

    Args:
        potential: ``V(x)``, a scalar function on ``(d,)``.
        state: a ``GaussianState``.
        eps: base points, shape ``(n, d)`` (e.g. from ``base_points``, or
            ``jax.random.normal`` draws).
        weights: their weights, shape ``(n,)`` (default: equal).

    Returns:
        A scalar.

    Raises:
        Nothing of its own: a covariance that is not positive definite gives NaN.

    Examples:
        >>> from ppl.inference.vi import GaussianState, base_points, gaussian_elbo
        >>> state = GaussianState(jnp.zeros(2), jnp.eye(2))
        >>> value = gaussian_elbo(lambda x: 0.5 * x @ x, state, *base_points(2, 64))
        >>> round(float(value), 4)   # minus the log normalizer of N(0, I): log(2 pi)
        1.8379
    """
    n = eps.shape[0]
    w = jnp.full(n, 1.0 / n, eps.dtype) if weights is None else weights
    x = state.mean + eps @ jnp.linalg.cholesky(state.cov).T
    return -jnp.sum(w * jax.vmap(potential)(x)) + entropy(state.cov)


def entropy(cov):
    """The entropy of a Gaussian with covariance ``cov``."""
    d = cov.shape[0]
    return 0.5 * (d * jnp.log(2 * jnp.pi * jnp.e) + jnp.linalg.slogdet(cov)[1])


def sym(a):
    """The symmetric part of a square matrix (rounding makes products lose symmetry)."""
    return (a + a.T) / 2


def entropy_prox(cov, step_size):
    """The backward step: the JKO step of the negative entropy at a Gaussian's
    covariance, ``(cov + 2h I + [cov (cov + 4h I)]^{1/2}) / 2`` (by eigenvalues).

    Args:
        cov: a symmetric positive semi-definite ``(d, d)`` matrix.
        step_size: ``h > 0``.

    Returns:
        The new covariance; its eigenvalues are at least ``h``.

    Raises:
        Nothing of its own: negative eigenvalues of ``cov`` (rounding) count as zero.

    Examples:
        >>> from ppl.inference.vi import entropy_prox
        >>> float(entropy_prox(jnp.eye(1), 0.5)[0, 0])   # (1 + 1 + sqrt(3)) / 2
        1.8660254...
    """
    lam, u = jnp.linalg.eigh(sym(cov))
    lam = jnp.maximum(lam, 0.0)
    new = 0.5 * (lam + 2 * step_size + jnp.sqrt(lam * (lam + 4 * step_size)))
    return sym((u * new) @ u.T)


__all__ = ["GaussianState", "base_points", "entropy", "entropy_prox", "gaussian_elbo", "sym"]
