"""Gradient-estimator diagnostics: compare strategies by their variance."""

from __future__ import annotations

from typing import Any, NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp

from ppl._gfi import as_key
from ppl.inference.vi.fit import _estimator


class GradientStats(NamedTuple):
    """Per-parameter mean and variance of a gradient estimator, each shaped like
    ``(model_args, guide_args)`` (None where a leaf is not a float array);
    ``n`` is the number of estimates."""

    mean: Any
    variance: Any
    n: int

    def standard_error(self):
        return jax.tree.map(lambda v: jnp.sqrt(v / self.n), self.variance)


def gradient_variance(objective, key, model_args: tuple = (), guide_args: tuple = (), n: int = 1000) -> GradientStats:
    """Draw ``n`` independent gradient estimates of ``objective`` and summarise them."""
    estimate = _estimator(objective)
    params, static = eqx.partition((model_args, guide_args), eqx.is_inexact_array)
    grad = jax.grad(lambda p, k: estimate(k, *eqx.combine(p, static)))

    @jax.jit
    def draw(keys):
        return jax.vmap(lambda k: grad(params, k))(keys)

    grads = draw(jax.random.split(as_key(key), n))
    mean = jax.tree.map(lambda g: jnp.mean(g, axis=0), grads)
    var = jax.tree.map(lambda g: jnp.var(g, axis=0, ddof=1), grads)
    return GradientStats(mean, var, n)
