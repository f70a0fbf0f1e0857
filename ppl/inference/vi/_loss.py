"""The objective a fitting step maximises: ``num_samples`` estimates averaged,
without data, per example of a minibatch, or from a whole minibatch that the
model subsamples (``vi.fit(..., subsample=True)``)."""

from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp
from jax.sharding import Mesh

from ppl._errors import PPLError
from ppl.inference._sharding import shard, split_keys
from ppl.inference.vi._data import check_batch_size, minibatch


def estimator(objective, caller: str = "fit") -> Callable:
    """The function ``(key, model_args, guide_args) -> scalar`` behind ``objective``.

    Args:
        objective: a variational objective (its ``.estimate`` is used) or a
            function ``(key, model_args, guide_args) -> scalar``.
        caller: the public function's name, for the message.

    Returns:
        The estimate function.

    Raises:
        PPLError: naming ``caller``, if neither is callable.

    Examples:
        >>> import jax, jax.numpy as jnp
        >>> import ppl
        >>> from ppl.inference import vi
        >>> @ppl.gen
        ... def model():
        ...     return ppl.normal(0.0, 1.0) @ "z"
        >>> @ppl.gen
        ... def guide(mu):
        ...     return ppl.normal(mu, 1.0) @ "z"
        >>> estimate = estimator(vi.elbo(model, guide))
        >>> estimate(jax.random.key(0), (), (jnp.array(0.0),)).shape
        ()
    """
    fn = getattr(objective, "estimate", objective)
    if not callable(fn):
        raise PPLError(
            f"{caller} needs an objective with .estimate(key, model_args, guide_args) "
            f"(vi.elbo(...), ...) or a function (key, model_args, guide_args) -> scalar, "
            f"got {objective!r}."
        )
    return fn


def averaged(objective, num_samples: int, mesh: Mesh | None = None) -> Callable:
    """The mean of ``num_samples`` independent estimates of ``objective`` (each with
    its own key split from the one given, vectorised, split over ``mesh``'s
    devices when given), as one function ``(key, model_args, guide_args) -> scalar``;
    raises as ``estimator``.

    Examples:
        >>> mean = averaged(lambda key, m, g: g[0], 4)
        >>> float(mean(jax.random.key(0), (), (jnp.array(2.0),)))
        2.0
    """
    estimate = estimator(objective)

    def mean_estimate(key, model_args, guide_args):
        keys = split_keys(key, num_samples, mesh if num_samples > 1 else None)
        if num_samples == 1:  # the same key and estimate, without a batch axis of one
            return estimate(keys[0], model_args, guide_args)
        return jnp.mean(jax.vmap(lambda k: estimate(k, model_args, guide_args))(keys))

    return mean_estimate


def loss(spec, state, params, key):
    """Minus the step's objective estimate at ``params`` (the trained leaves).

    Args:
        spec: the fit's ``ppl.inference.vi.fit_step.Spec``.
        state: the ``ppl.inference.vi.fit_step.FitState`` (frozen
            arguments, data, layout).
        params: the trained leaves, shaped like ``state.params``.
        key: a ``jax.random`` key.

    Returns:
        A scalar: without data, minus the mean of ``num_samples`` estimates;
        with data, minus the mean over a minibatch of per-example estimates,
        or, with ``spec.subsample``, minus the estimate from the whole
        minibatch.

    Raises:
        PPLError: at trace time, as ``ppl.inference.vi._data.check_batch_size``.
    """
    m, g = state.layout.rebuild(params, state.frozen)
    if state.n_data is None:
        return -averaged(spec.objective.value, spec.num_samples, spec.mesh)(key, m, g)
    assert state.batch_size is not None  # check_data gives both or neither
    k_batch, k_est = jax.random.split(key)
    # Drawn whole, then split: the same examples and keys on one device or many.
    batch = shard(minibatch(k_batch, state.data, state.n_data, state.batch_size), spec.mesh)
    objective = spec.objective.value
    check_batch_size(objective, (*m, batch), state.n_data, spec.subsample)
    if spec.subsample:  # one estimate of the whole data from the minibatch, rows over the mesh
        return -averaged(objective, spec.num_samples)(k_est, (*m, batch), (*g, batch))
    # Per example, the examples split over the mesh and each one's estimates together.
    mean_estimate = averaged(objective, spec.num_samples)
    keys = split_keys(k_est, state.batch_size, spec.mesh)
    per_example = jax.vmap(lambda kk, x: mean_estimate(kk, (*m, x), (*g, x)))(keys, batch)
    return -jnp.mean(per_example)
