"""Helpers shared by the inference algorithms."""

from __future__ import annotations

from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from ppl._errors import PPLError, fmt_addr
from ppl._gfi import as_choices, as_key
from ppl._numerics import log_mean_exp as _log_mean_exp
from ppl.choices import ChoiceMap, select
from ppl.core import is_concrete


def ess(log_weights):
    """The effective sample size ``1 / sum_i w_i^2`` of the normalised weights
    ``w = softmax(log_weights)`` (Kish's estimate).

    It says how many equally weighted particles the weighted ones are worth:
    ``n`` when every weight is equal, 1 when one particle holds all the
    weight. SMC resamples when it drops below a fraction of ``n``. The cost is
    one softmax over the last axis.

    Args:
        log_weights: unnormalised log weights along the last axis (any leading
            axes are kept).

    Returns:
        The ESS, between 1 and the number of weights (NaN when every weight
        is zero, i.e. every log weight is ``-inf``), with the leading axes of
        ``log_weights``.

    Raises:
        Nothing of its own: NaN log weights give a NaN ESS.

    Examples:
        >>> float(ppl.inference.ess(jnp.zeros(4)))  # equal weights
        4.0
        >>> float(ppl.inference.ess(jnp.array([0.0, -jnp.inf, -jnp.inf])))  # one particle
        1.0
    """
    w = jax.nn.softmax(log_weights, axis=-1)
    return 1.0 / jnp.sum(w * w, axis=-1)


def log_mean_exp(log_weights, axis: int = -1):
    """``log(mean(exp(log_weights)))`` along ``axis``, computed stably (by ``logsumexp``).

    Applied to importance weights ``log p(z_i, obs) - log q(z_i)`` this is the
    log of the importance-sampling estimate of ``p(obs)``: its exponential is
    unbiased, the log itself is a lower bound in expectation (IWELBO).

    Args:
        log_weights: an array of log weights (a list or tuple of scalars is stacked).
        axis: the axis to average over.

    Returns:
        The log of the mean weight, without ``axis``; ``-inf`` when every weight
        is zero.

    Raises:
        ValueError: if ``axis`` is out of range for ``log_weights`` (raised by
            ``jax.nn.logsumexp``).

    Examples:
        >>> lw = jnp.log(jnp.array([1.0, 3.0]))
        >>> round(float(ppl.inference.log_mean_exp(lw)), 4)  # log 2
        0.6931
    """
    return _log_mean_exp(log_weights, axis)


class WeightedTraces(eqx.Module):
    """``traces`` batched along a leading axis of size n, with unnormalised ``log_weights``."""

    traces: Any
    log_weights: jax.Array

    @property
    def normalized_weights(self):
        return jax.nn.softmax(self.log_weights)

    @property
    def ess(self):
        return ess(self.log_weights)

    def expectation(self, f):
        """Self-normalised estimate of E[f(trace)] under the weighted target."""
        vals = jax.vmap(f)(self.traces)
        w = self.normalized_weights.reshape((-1,) + (1,) * (jnp.ndim(vals) - 1))
        return jnp.sum(w * vals, axis=0)


def take(tree, idx):
    """Index the leading axis of every leaf of a batched pytree."""
    return jax.tree.map(lambda x: x[idx], tree)


def selection_of(choices: ChoiceMap):
    """The selection of every address that holds a value in ``choices``."""
    return select(*choices.addresses()) if not choices.is_empty() else select()


def check_weights(log_weights, what: str, hint: str) -> None:
    """Raise when importance weights are NaN/+inf or all zero. Only possible on
    concrete values: under ``jit`` the caller's result carries the NaNs instead."""
    if not is_concrete(log_weights):
        return
    lw = np.asarray(log_weights)
    bad = np.isnan(lw) | (lw == np.inf)
    if bad.any():
        raise PPLError(
            f"{what}: {int(bad.sum())} of {lw.size} log weights are NaN or +inf. "
            f"A density or a proposal produced a non-finite value. {hint}"
        )
    if lw.size and np.all(lw == -np.inf):
        raise PPLError(
            f"{what}: every log weight is -inf, so the observations have zero probability "
            f"under every particle. {hint}"
        )


def check_count(n, argument: str, what: str, example: str = "1000") -> int:
    """``n`` as a positive Python int, or an error naming ``argument``.

    Args:
        n: the value given (an int, or a NumPy integer).
        argument: the argument's name, e.g. ``"n"``.
        what: the algorithm and what ``n`` counts, e.g. ``"importance: the number of particles"``.
        example: a sensible value to suggest.

    Returns:
        ``int(n)``.

    Raises:
        PPLError: if ``n`` is not an integer or is below 1 (with 0 particles,
            the estimates are 0/0, NaN).

    Examples:
        >>> check_count(100, "n", "importance: the number of particles")
        100
    """
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)):
        raise PPLError(
            f"{what}, {argument}, must be a positive int (e.g. {argument}={example}); got {n!r}."
        )
    if n < 1:
        raise PPLError(
            f"{what}, {argument}, is {int(n)}; it must be at least 1 (with no particles every "
            f"estimate would be 0/0, NaN). Pass e.g. {argument}={example}."
        )
    return int(n)


def check_proposal_disjoint(
    proposed: ChoiceMap, observations: ChoiceMap, name: str, role: str = "proposal"
) -> None:
    """A proposal (or a guide: ``role``) may sample latent choices only: at an observed
    address the observation would win in the model's density while the proposal's
    density still counted its own draw, and the weight would be wrong."""
    clash = proposed.filter(selection_of(observations))
    if not clash.is_empty():
        shown = ", ".join(fmt_addr(a) for a in clash.addresses())
        raise PPLError(
            f"the {role} {name} samples {shown}, which is observed. A {role} must only sample "
            f"latent choices; remove those addresses from the {role} or from the observations."
        )


__all__ = [
    "ess",
    "log_mean_exp",
    "take",
    "selection_of",
    "check_count",
    "check_weights",
    "as_choices",
    "as_key",
]
