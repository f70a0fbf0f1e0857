"""Numerical helpers shared across ppl's layers."""

from __future__ import annotations

import jax
import jax.numpy as jnp


def log_mean_exp(log_weights, axis: int = -1):
    """``log(mean(exp(log_weights)))`` along ``axis``, computed stably.

    Args:
        log_weights: an array of log weights (a list of scalars is stacked).
        axis: the axis to average over.

    Returns:
        The log of the mean weight; ``-inf`` when every weight is zero.

    >>> float(log_mean_exp(jnp.log(jnp.array([1.0, 3.0]))))  # log 2
    0.6931...
    """
    log_weights = (
        jnp.stack(log_weights)
        if isinstance(log_weights, (list, tuple))
        else jnp.asarray(log_weights)
    )
    return jax.nn.logsumexp(log_weights, axis=axis) - jnp.log(log_weights.shape[axis])
