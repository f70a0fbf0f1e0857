"""Fitting: stochastic-gradient ascent on a variational objective with optax.

Steps run in jitted ``lax.scan`` chunks, so the host only wakes once per chunk
(to advance the progress bar and check that the loss stayed finite).
"""

from __future__ import annotations

import functools
from typing import Any, Callable, NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax

from ppl._errors import PPLError
from ppl._gfi import as_key


class FitResult(NamedTuple):
    model_args: Any
    guide_args: Any
    history: np.ndarray  # the averaged objective estimate at every step


def _estimator(objective) -> Callable:
    fn = getattr(objective, "estimate", objective)
    if not callable(fn):
        raise PPLError(f"fit needs an objective with .estimate(key, model_args, guide_args), got {objective!r}.")
    return fn


def averaged(objective, num_samples: int) -> Callable:
    """``(key, model_args, guide_args) -> mean of num_samples independent estimates``."""
    estimate = _estimator(objective)

    def mean_estimate(key, model_args, guide_args):
        keys = jax.random.split(key, num_samples)
        return jnp.mean(jax.vmap(lambda k: estimate(k, model_args, guide_args))(keys))

    return mean_estimate


def fit(
    objective,
    key,
    model_args: tuple = (),
    guide_args: tuple = (),
    *,
    data: Any = None,
    batch_size: int | None = None,
    optimizer: optax.GradientTransformation | None = None,
    steps: int = 1000,
    num_samples: int = 1,
    trainable: Callable[[Any], bool] = eqx.is_inexact_array,
    progress: bool = True,
    chunk: int | None = None,
) -> FitResult:
    """Maximise ``objective`` over the trainable leaves of ``(model_args, guide_args)``.

    ``trainable`` picks the leaves to optimise (default: every floating-point
    array, as in ``equinox``); the other leaves (data, integers, static settings)
    are held fixed. Arguments may be any pytree, including equinox modules.
    Returns the fitted arguments and the objective estimate at every step, and
    stops with an error naming the step if the loss or a gradient is not finite.

    With ``data`` (a pytree of arrays whose leading axis indexes independent
    examples), the objective is per example: each step draws ``batch_size``
    examples without replacement, estimates the objective for each with the
    example appended as the last argument of both ``model_args`` and
    ``guide_args`` (observe it with ``observations=lambda *model_args: ...``),
    and maximises the mean over the minibatch. That is the amortised
    inference of a VAE; models with latents shared across examples need
    their own scaling.
    """
    optimizer = optax.adam(1e-3) if optimizer is None else optimizer
    if steps < 1 or num_samples < 1:
        raise PPLError(f"fit needs steps >= 1 and num_samples >= 1, got steps={steps}, num_samples={num_samples}.")
    n_data, batch_size = _check_data(data, batch_size)
    key = as_key(key)
    params, static = eqx.partition((model_args, guide_args), trainable)
    if not jax.tree.leaves(params):
        raise PPLError(
            "fit found no trainable parameters: no floating-point array in model_args or guide_args. "
            "Pass parameters as float arrays (e.g. jnp.array(0.0), not 0) or choose them with trainable=."
        )
    mean_estimate = averaged(objective, num_samples)

    def loss(p, k, data):
        m, g = eqx.combine(p, static)
        if data is None:
            return -mean_estimate(k, m, g)
        k_batch, k_est = jax.random.split(k)
        idx = jax.random.choice(k_batch, n_data, (batch_size,), replace=False)
        batch = jax.tree.map(lambda a: a[idx], data)
        keys = jax.random.split(k_est, batch_size)
        return -jnp.mean(jax.vmap(lambda kk, x: mean_estimate(kk, (*m, x), (*g, x)))(keys, batch))

    def step(data, carry, inputs):
        k, active = inputs
        p, opt_state, last_good, failed = carry
        value, grads = jax.value_and_grad(loss)(p, k, data)
        finite = jnp.isfinite(value) & _all_finite(grads)
        updates, new_opt_state = optimizer.update(grads, opt_state, p)
        new_p = optax.apply_updates(p, updates)
        # After the first non-finite step (and on the padding of the last chunk)
        # the state stays as it was, and last_good keeps the parameters at which
        # the objective was last finite, for the error to hand back.
        go = finite & active & ~failed
        keep = lambda new, old: jnp.where(go, new, old)
        carry = (
            jax.tree.map(keep, new_p, p),
            jax.tree.map(keep, new_opt_state, opt_state),
            jax.tree.map(keep, p, last_good),
            failed | (active & ~finite),
        )
        return carry, (-value, finite)

    chunk = chunk or max(1, min(steps, max(steps // 100, 10)))

    @jax.jit
    def run_chunk(carry, keys, active, data):
        # The data are an argument, not a constant baked into the compiled program.
        return jax.lax.scan(functools.partial(step, data), carry, (keys, active))

    carry = (params, optimizer.init(params), params, jnp.array(False))
    history = []
    bar = _progress_bar(steps, progress)
    done = 0
    try:
        while done < steps:
            n = min(chunk, steps - done)
            # The last chunk is padded with inactive steps to keep one compiled shape.
            keys = jax.random.split(jax.random.fold_in(key, done), chunk)
            carry, (values, finite) = run_chunk(carry, keys, jnp.arange(chunk) < n, data)
            values, finite = np.asarray(values[:n]), np.asarray(finite[:n])
            if not finite.all():
                bad = int(np.argmin(finite))
                history.extend(values[:bad].tolist())
                err = NonFiniteLoss(done + bad, float(values[bad]), history)
                err.model_args, err.guide_args = eqx.combine(carry[2], static)
                raise err
            history.extend(values.tolist())
            done += n
            if bar is not None:
                bar.update(n)
                bar.set_postfix(objective=f"{np.mean(values[-max(1, n // 4):]):.4g}")
    finally:
        if bar is not None:
            bar.close()
    model_args, guide_args = eqx.combine(carry[0], static)
    return FitResult(model_args, guide_args, np.asarray(history))


class NonFiniteLoss(PPLError):
    """The objective or its gradient became NaN or infinite during ``fit``."""

    def __init__(self, step: int, value: float, history: list):
        self.step, self.value, self.history = step, value, np.asarray(history)
        super().__init__(
            f"fit stopped at step {step}: the objective estimate was {value} or a gradient was not "
            "finite. Common causes: a learning rate too large (try a smaller one), a scale "
            "parameter that reached 0 (parameterise it as exp or softplus of a free parameter), "
            "or a log density of -inf (a value outside the support). The history up to that step "
            "is in .history and the last finite parameters in .model_args and .guide_args."
        )


def _check_data(data, batch_size):
    """``(number of examples, batch size)``; ``(None, None)`` without data."""
    if data is None:
        if batch_size is not None:
            raise PPLError("fit got batch_size but no data; pass data=... (examples along the leading axis).")
        return None, None
    leaves = jax.tree.leaves(data)
    if not leaves or any(jnp.ndim(x) < 1 for x in leaves):
        raise PPLError("fit's data must be arrays with a leading axis of examples (a pytree of them is fine).")
    sizes = {int(jnp.shape(x)[0]) for x in leaves}
    if len(sizes) != 1:
        raise PPLError(f"fit's data arrays disagree on the number of examples (leading axes {sorted(sizes)}).")
    n = sizes.pop()
    batch_size = min(n, 64) if batch_size is None else batch_size
    if not isinstance(batch_size, int) or not 1 <= batch_size <= n:
        raise PPLError(f"fit's batch_size must be an int between 1 and the {n} examples, got {batch_size!r}.")
    return n, batch_size


def _all_finite(tree) -> jax.Array:
    leaves = [jnp.all(jnp.isfinite(x)) for x in jax.tree.leaves(tree)]
    return jnp.all(jnp.stack(leaves)) if leaves else jnp.array(True)


def _progress_bar(total: int, enabled: bool):
    if not enabled:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, desc="fit", unit="step", dynamic_ncols=True)
