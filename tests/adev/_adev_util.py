"""Shared helpers for the ADEV tests: many estimates at once, and Monte Carlo
tolerances computed from the samples themselves."""

from __future__ import annotations

from typing import overload

import jax
import jax.numpy as jnp
import numpy as np


@overload
def grad_samples(f, args, n: int = 8000, seed: int = 0, argnum: int = 0) -> np.ndarray: ...
@overload
def grad_samples(f, args, n: int = 8000, seed: int = 0, *, argnum: None) -> list[np.ndarray]: ...
def grad_samples(f, args, n=8000, seed=0, argnum: int | None = 0):
    """``n`` independent gradient estimates of ``f`` w.r.t. ``args[argnum]`` (vectorised);
    ``argnum=None`` gives all of them (one compilation)."""
    keys = jax.random.split(jax.random.key(seed), n)
    g = jax.jit(jax.vmap(lambda k: f.grad_estimate(k, args)))(keys)
    if argnum is None:
        return [np.asarray(x, dtype=np.float64) for x in g]
    return np.asarray(g[argnum], dtype=np.float64)


def value_samples(f, args, n=8000, seed=0):
    keys = jax.random.split(jax.random.key(seed), n)
    return np.asarray(jax.jit(jax.vmap(lambda k: f.estimate(k, args)))(keys), dtype=np.float64)


def assert_close_mc(samples, exact, k=5.0, what=""):
    """The sample mean is within ``k`` Monte Carlo standard errors of ``exact``
    (plus float32 rounding, which is all that is left for zero-variance estimators)."""
    samples = np.asarray(samples, dtype=np.float64)
    exact = np.asarray(exact, dtype=np.float64)
    mean = samples.mean(axis=0)
    se = samples.std(axis=0, ddof=1) / np.sqrt(samples.shape[0])
    slack = 1e-4 * (1.0 + np.abs(exact))
    err = np.abs(mean - exact)
    assert np.all(err <= k * se + slack), (
        f"{what}: mean {mean} vs exact {exact}: error {err} exceeds {k} standard errors {se}"
    )
    return mean, se


def exact_grad(fn, theta):
    return float(jax.grad(fn)(jnp.asarray(theta, jnp.float32)))
