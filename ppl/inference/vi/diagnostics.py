"""Gradient-estimator diagnostics: compare strategies by their variance.

The gradient is taken with respect to what ``trainable=`` marks, as in
``ppl.inference.vi.fit``: the guide's arguments by default, never data.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from ppl._errors import PPLError
from ppl._gfi import as_key
from ppl.inference.vi._trainable import split
from ppl.inference.vi._loss import estimator


class GradientStats(NamedTuple):
    """What ``gradient_variance`` returns: per-parameter summaries of ``n`` estimates.

    ``mean`` and ``variance`` are shaped like ``(model_args, guide_args)``, with
    an array (of the parameter's shape) at every trained leaf and ``None``
    everywhere else: data, unmarked arguments, non-float leaves.

    Attributes:
        mean: the sample mean of the gradient estimates.
        variance: their sample variance (with ``n - 1`` in the denominator).
        n: the number of estimates.

    Examples:
        >>> import jax, jax.numpy as jnp
        >>> from ppl.inference import vi
        >>> def objective(key, model_args, guide_args):  # gradient 2 + noise of sd 1
        ...     return (2.0 + jax.random.normal(key)) * guide_args[0]
        >>> key = jax.random.key(0)
        >>> stats = vi.gradient_variance(objective, key, (), (jnp.array(0.0),), n=1000)
        >>> bool(abs(stats.mean[1][0] - 2.0) < 5 * stats.standard_error()[1][0])
        True
    """

    mean: Any
    variance: Any
    n: int

    def standard_error(self) -> Any:
        """The standard error of ``mean``, ``sqrt(variance / n)``.

        Returns:
            A pytree shaped like ``mean`` (``None`` where it is ``None``).

        Examples:
            >>> stats = GradientStats((None, (jnp.array(2.0),)), (None, (jnp.array(4.0),)), 100)
            >>> stats.standard_error()[1][0]
            Array(0.2, dtype=float32, weak_type=True)
        """
        return jax.tree.map(lambda v: jnp.sqrt(v / self.n), self.variance)


def gradient_variance(
    objective,
    key,
    model_args: tuple = (),
    guide_args: tuple = (),
    n: int = 1000,
    *,
    trainable: Any = (False, True),
) -> GradientStats:
    """Draw ``n`` independent gradient estimates of ``objective`` and summarise them.

    The gradient is with respect to the leaves that ``trainable`` marks, with
    the same default and meaning as in ``ppl.inference.vi.fit``: a prefix
    of ``(model_args, guide_args)`` whose entries are ``True``, ``False`` or a
    function ``leaf -> bool``. The default ``(False, True)`` differentiates
    with respect to the guide's floating-point arrays and treats the model's
    arguments as data; ``(True, True)`` adds model parameters;
    ``((True, False), True)`` the first of two model arguments and the
    guide's. Only floating-point arrays are differentiated; everything else
    gets ``None``, so the result has no entry for data. Each estimate uses its
    own key, split from ``key``; the same key gives the same summary.

    Args:
        objective: a variational objective (``vi.elbo(...)``, ...) or any
            function ``(key, model_args, guide_args) -> scalar``.
        key: a ``jax.random.key`` (or legacy ``PRNGKey``).
        model_args: a tuple of the model's arguments (any pytrees).
        guide_args: a tuple of the guide's arguments.
        n: the number of independent estimates (an int, at least 2).
        trainable: which leaves to differentiate with respect to, as above.

    Returns:
        A ``GradientStats`` ``(mean, variance, n)``; ``mean`` and
        ``variance`` are shaped like ``(model_args, guide_args)`` with ``None``
        at every leaf that is not differentiated.

    Raises:
        PPLError: if ``n`` is not an int of at least 2, if ``objective`` is not
            callable, if ``trainable`` does not match the arguments, or if it
            marks no floating-point array (the message lists the leaves looked
            at and the fix).

    Warns:
        UserWarning: naming each leaf that ``trainable`` marks but that cannot
            be differentiated (a Python int or float, an integer array).

    Examples:
        >>> import jax, jax.numpy as jnp
        >>> import ppl
        >>> from ppl import gen, normal
        >>> from ppl.inference import vi
        >>> @gen
        ... def model(m, x):  # m: a prior mean (a parameter), x: a covariate (data)
        ...     w = normal(m, 1.0) @ "w"
        ...     return normal(w * x, 1.0) @ "y"
        >>> @gen
        ... def guide(mu, log_s):
        ...     return normal(mu, jnp.exp(log_s)) @ "w"
        >>> objective = vi.elbo(model, guide, ppl.ChoiceMap.d({"y": 1.0}))
        >>> args = ((jnp.array(0.0), jnp.array(2.0)), (jnp.array(0.0), jnp.array(0.0)))
        >>> key = jax.random.key(0)
        >>> vi.gradient_variance(objective, key, *args, n=500).mean[0]  # the model's: data
        (None, None)
        >>> m_only = ((True, False), True)  # differentiate m too, but not the data x
        >>> stats = vi.gradient_variance(objective, key, *args, n=500, trainable=m_only)
        >>> stats.mean[0][1] is None and stats.variance[0][0].shape == ()
        True
    """
    if not isinstance(n, (int, np.integer)) or isinstance(n, bool) or n < 2:
        raise PPLError(
            f"gradient_variance needs n, the number of gradient estimates, to be an int of at "
            f"least 2 (a variance needs two), got n={n!r}; n=1000 is a good start."
        )
    estimate = estimator(objective, "gradient_variance")
    params, frozen, layout = split(model_args, guide_args, trainable, caller="gradient_variance")
    grad = jax.grad(lambda p, k, fr: estimate(k, *layout.rebuild(p, fr)))

    @jax.jit
    def draw(keys, params, frozen):  # frozen arrays as arguments, not constants baked in
        return jax.vmap(lambda k: grad(params, k, frozen))(keys)

    grads = draw(jax.random.split(as_key(key), int(n)), params, frozen)
    mean = jax.tree.map(lambda g: jnp.mean(g, axis=0), grads)
    var = jax.tree.map(lambda g: jnp.var(g, axis=0, ddof=1), grads)
    return GradientStats(mean, var, int(n))
