"""Shared helpers for the ADEV tests: many estimates at once, and Monte Carlo
tolerances computed from the samples themselves."""

from __future__ import annotations

import itertools
from typing import overload

import jax
import jax.numpy as jnp
import numpy as np

import ppl


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


def brute_force_elbo(model, guide, model_args, guide_args, flips, obs):
    """The ELBO of a guide of flips, summed over every joint value of them (``flips``:
    their addresses with their shapes), by the model's and guide's ``assess``."""
    shapes = [(a, int(np.prod(s))) for a, s in flips]
    total = 0.0
    for bits in itertools.product([False, True], repeat=sum(n for _, n in shapes)):
        values, i = {}, 0
        for (a, n), (_, s) in zip(shapes, flips):
            values[a] = jnp.asarray(bits[i : i + n]).reshape(s)
            i += n
        cm = ppl.ChoiceMap.d(values)
        log_q, _ = guide.assess(cm, guide_args)
        log_p, _ = model.assess(cm | obs, model_args)
        total = total + jnp.exp(log_q) * (log_p - log_q)
    return total
