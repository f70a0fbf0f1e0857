"""Minibatches of examples for ``ppl.inference.vi.fit``'s ``data=``, and the
checks of ``subsample=True`` (the minibatch passed whole to a model that scales it).

``data`` is a pytree of arrays whose leading axis indexes independent
examples. ``check_data`` validates it once, on the host, with errors that
say what to pass instead; ``minibatch`` draws examples inside the
compiled step.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from ppl._errors import PPLError
from ppl.inference._subsampling import model_trace_shape, subsample_sizes


def check_data(
    data: Any, batch_size: int | None, caller: str = "fit", subsample: bool = False
) -> tuple[int | None, int | None]:
    """The number of examples in ``data`` and the batch size to draw.

    Args:
        data: ``None``, or a pytree of arrays sharing a non-empty leading axis
            of examples.
        batch_size: examples per step, or ``None`` for ``min(64, number of
            examples)``.
        caller: the public function's name, for messages.
        subsample: whether the model subsamples the data (``subsample=True``).

    Returns:
        ``(number of examples, batch size)``; ``(None, None)`` when ``data``
        is ``None``.

    Raises:
        PPLError: if ``batch_size`` or ``subsample`` comes without ``data``; if ``data`` holds no
            arrays, a scalar, arrays that disagree on the number of examples,
            or 0 examples; if ``batch_size`` is not an int between 1 and the
            number of examples.

    Examples:
        >>> check_data({"x": jnp.zeros((100, 2)), "y": jnp.zeros(100)}, None)
        (100, 64)
        >>> check_data(None, None)
        (None, None)
    """
    if data is None:
        if subsample:
            raise PPLError(
                f"{caller} got subsample=True but no data; pass data=... (the examples along the "
                "leading axis) and batch_size=..., and map them in the model with "
                "ppl.vmap(..., subsample_of=N)."
            )
        if batch_size is not None:
            raise PPLError(
                f"{caller} got batch_size but no data; pass data=... (examples along the leading "
                f"axis)."
            )
        return None, None
    leaves = jax.tree.leaves(data)
    if not leaves:
        raise PPLError(
            f"{caller} got data={data!r}, which holds no arrays. Pass the examples as an array (or "
            f"a pytree of arrays) with one example per row of the leading axis, or leave data=None "
            "to fit without minibatches."
        )
    if any(jnp.ndim(x) < 1 for x in leaves):
        raise PPLError(
            f"{caller}'s data must be arrays with a leading axis of examples (a pytree of them is "
            f"fine)."
        )
    sizes = {int(jnp.shape(x)[0]) for x in leaves}
    if len(sizes) != 1:
        raise PPLError(
            f"{caller}'s data arrays disagree on the number of examples (leading axes "
            f"{sorted(sizes)})."
        )
    n = sizes.pop()
    if n == 0:
        shapes = sorted({tuple(jnp.shape(x)) for x in leaves})
        raise PPLError(
            f"{caller} got data with 0 examples (shape{'s' if len(shapes) > 1 else ''} "
            f"{', '.join(map(str, shapes))}): the leading axis indexes examples and is empty. Pass "
            f"at least one example (check the slicing or filtering that built it), or leave "
            "data=None to fit without minibatches."
        )
    batch_size = min(n, 64) if batch_size is None else batch_size
    is_int = isinstance(batch_size, (int, np.integer)) and not isinstance(batch_size, bool)
    if not is_int or not 1 <= batch_size <= n:
        raise PPLError(
            f"{caller}'s batch_size must be an int between 1 and the {n} examples, got "
            f"{batch_size!r}."
        )
    return n, int(batch_size)


def minibatch(key, data: Any, n: int, batch_size: int) -> Any:
    """``batch_size`` of the ``n`` examples of ``data``, drawn without replacement.

    Args:
        key: a ``jax.random`` key.
        data: a pytree of arrays with a leading axis of ``n`` examples.
        n: the number of examples (static).
        batch_size: how many to draw (static, at most ``n``).

    Returns:
        ``data`` with a leading axis of ``batch_size`` examples, the same
        examples in every leaf.

    Examples:
        >>> batch = minibatch(jax.random.key(0), {"x": jnp.arange(10.0)}, 10, 4)
        >>> batch["x"].shape
        (4,)
    """
    # The examples with the batch_size largest of n uniforms are a uniform random subset. It
    # costs a top_k, where jax.random.choice(replace=False) shuffles all n (1.2 s a step for a
    # million examples on a CPU, against 11 ms).
    idx = jax.lax.top_k(jax.random.uniform(key, (n,)), batch_size)[1]
    return jax.tree.map(lambda a: a[idx], data)


def check_subsampling(objective, caller: str = "fit") -> None:
    """Refuse ``subsample=True`` for an objective it would bias.

    A subsampled model's log density is a minibatch's scaled by ``N / B``: an
    unbiased estimate of the full data's, so an objective linear in it stays
    unbiased (``vi.elbo``, which records its model as ``objective.model``).
    The others exponentiate it (``iwelbo``'s log-mean-exp, ``renyi``,
    ``vimco``, the reweighted wake-sleep objectives, ``cubo``), which a
    scaled minibatch biases; a plain function cannot say which it is.

    Args:
        objective: the objective given to ``fit``.
        caller: the public function's name, for messages.

    Raises:
        PPLError: if ``objective`` does not name its model (it is not ``vi.elbo``).

    Examples:
        >>> check_subsampling(vi.elbo(model, guide, obs))  # accepted
    """
    if getattr(objective, "model", None) is None:
        raise PPLError(
            f"{caller}(..., subsample=True) scales a minibatch's log likelihood by N/B, which "
            f"keeps an objective unbiased only when it is linear in the model's log density: "
            f"vi.elbo. {objective!r} is not one (a log-mean-exp of weights, as in vi.iwelbo, "
            "is biased by a scaled minibatch). Use vi.elbo(model, guide, observations), or fit "
            "on the full data without subsample."
        )


def check_batch_size(objective, model_args: tuple, n_data: int, subsample: bool) -> None:
    """Check, at trace time, that the model subsamples exactly the data given.

    Args:
        objective: the objective (its ``model``, if it names one, is read).
        model_args: the model's arguments with the minibatch appended.
        n_data: the number of examples in ``data``.
        subsample: whether ``fit`` was called with ``subsample=True``.

    Raises:
        PPLError: with ``subsample``, if the model has no
            ``ppl.vmap(..., subsample_of=N)`` (the minibatch would count as all
            the data) or its ``N`` is not the number of examples; without it,
            if the model has one (pass ``subsample=True``).

    Examples:
        >>> check_batch_size(vi.elbo(model, guide, obs), (x_batch,), 10_000, True)
    """
    model = getattr(objective, "model", None)
    if model is None:
        return
    shape = model_trace_shape(model, model_args)
    sizes = set() if shape is None else subsample_sizes(shape)
    if not subsample:
        if sizes:
            raise PPLError(
                f"fit got data and a model {model.name} with ppl.vmap(..., "
                f"subsample_of={min(sizes)}), but no subsample=True: it would run the model once "
                "per example. Pass subsample=True to give it the whole minibatch."
            )
        return
    if sizes != {n_data}:
        found = (
            f"subsample_of={sorted(sizes)}"
            if sizes
            else "no ppl.vmap(..., subsample_of=N) over the minibatch"
        )
        raise PPLError(
            f"fit(..., subsample=True) draws minibatches of {n_data} examples, but "
            f"{model.name} has {found}: its minibatch's log likelihood would not be scaled to "
            f"the {n_data} examples. Map the examples with "
            f"ppl.vmap(point, ..., subsample_of={n_data})(*batch) @ 'addr'."
        )
