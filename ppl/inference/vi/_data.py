"""Minibatches of examples for :func:`ppl.inference.vi.fit`'s ``data=``.

``data`` is a pytree of arrays whose leading axis indexes independent
examples. :func:`check_data` validates it once, on the host, with errors that
say what to pass instead; :func:`minibatch` draws examples inside the
compiled step.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from ppl._errors import PPLError


def check_data(
    data: Any, batch_size: int | None, caller: str = "fit"
) -> tuple[int | None, int | None]:
    """The number of examples in ``data`` and the batch size to draw.

    Args:
        data: ``None``, or a pytree of arrays sharing a non-empty leading axis
            of examples.
        batch_size: examples per step, or ``None`` for ``min(64, number of
            examples)``.
        caller: the public function's name, for messages.

    Returns:
        ``(number of examples, batch size)``; ``(None, None)`` when ``data``
        is ``None``.

    Raises:
        PPLError: if ``batch_size`` comes without ``data``; if ``data`` holds no
            arrays, a scalar, arrays that disagree on the number of examples,
            or 0 examples; if ``batch_size`` is not an int between 1 and the
            number of examples.

    Example:
        >>> check_data({"x": jnp.zeros((100, 2)), "y": jnp.zeros(100)}, None)
        (100, 64)
        >>> check_data(None, None)
        (None, None)
    """
    if data is None:
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

    Example:
        >>> batch = minibatch(jax.random.key(0), {"x": jnp.arange(10.0)}, 10, 4)
        >>> batch["x"].shape
        (4,)
    """
    idx = jax.random.choice(key, n, (batch_size,), replace=False)
    return jax.tree.map(lambda a: a[idx], data)
