"""Importance sampling and sampling/importance resampling (SIR).

With the prior as proposal, each particle is ``model.generate(key, obs, args)``.
With a custom proposal ``q``, the proposal's choices are merged into the
constraints and the weight is ``generate``'s weight minus ``q``'s score, so ``q``
may propose some latent choices and leave the rest to the prior.
"""

from __future__ import annotations

import functools

import jax
import numpy as np

from ppl._caches import store_of
from ppl._errors import PPLError, fmt_addrs
from ppl._gfi import GenerativeFunction, as_args
from ppl.core import is_concrete
from ppl.inference import resampling
from ppl.improper import improper_addresses
from ppl.inference._util import (
    WeightedTraces,
    as_choices,
    as_key,
    check_count,
    check_proposal_disjoint,
    check_weights,
    log_mean_exp,
    take,
)


class ImportanceResult(WeightedTraces):
    """Weighted particles: ``traces`` (batched along a leading axis of size n) and
    their unnormalised ``log_weights``."""

    @property
    def log_marginal_likelihood(self):
        """``log (1/n) sum_i w_i``: its exponential is unbiased for p(observations)."""
        return log_mean_exp(self.log_weights)

    def resample(self, key, n=None, scheme="multinomial"):
        """Unweighted traces drawn in proportion to the weights."""
        idx = resampling.get_scheme(scheme)(as_key(key), self.log_weights, n)
        return take(self.traces, idx)


def propose(key, model: GenerativeFunction, observations, args, proposal=None, proposal_args=()):
    """One particle: ``(trace, log_weight)``."""
    if proposal is None:
        return model.generate(key, observations, args)
    k1, k2 = jax.random.split(key)
    q = proposal.simulate(k1, proposal_args)
    check_proposal_disjoint(q.choices, observations, proposal.name)
    tr, w = model.generate(k2, q.choices | observations, args)
    return tr, w - q.score


def importance(
    key,
    model,
    observations,
    args,
    proposal=None,
    proposal_args=(),
    n: int | np.integer = 1000,
    check=True,
):
    """Importance sampling with ``n`` particles.

    Args:
        key: a ``jax.random`` key.
        model: the generative function.
        observations: a choice map (or dict) of observed values.
        args: the model's arguments (a tuple).
        proposal: a generative function run with ``proposal_args`` whose
            choices are latent addresses of ``model`` (default: the model's prior).
        proposal_args: the proposal's arguments (a tuple).
        n: the number of particles, a positive int.
        check: raise on non-finite weights when the result is concrete.

    Returns:
        An :class:`ImportanceResult`: the traces, the log weights, the log
        marginal-likelihood estimate and the effective sample size.

    Raises:
        PPLError: if ``n`` is not a positive int; if the proposal proposes an
            observed address; if a ``ppl.improper_uniform`` choice is neither
            observed nor proposed (a flat prior cannot be sampled); with
            ``check`` and concrete values, if a weight is NaN or +inf or every
            weight is -inf (pass ``check=False`` to get
            them back instead; under ``jit`` they are returned as they are).

    Example:
        >>> result = importance(jax.random.key(0), model, {"y": 1.0}, (), n=1000)
        >>> result.log_marginal_likelihood
    """
    n = check_count(n, "n", "importance: the number of particles")
    key, observations = as_key(key), as_choices(observations)
    args = as_args(args, model.name)
    proposal_args = as_args(proposal_args, "the proposal")
    check_proper(model, observations, args, proposal, proposal_args)
    if is_concrete((key, observations, args, proposal_args)):
        run = _compiled_particles(model, proposal, n)
    else:
        run = functools.partial(_particles, model=model, proposal=proposal, n=n)
    traces, log_w = run(key, observations, args, proposal_args)
    if check:
        check_weights(
            log_w,
            f"importance sampling on {model.name}",
            "Check that the observations are in the support of their distributions and that "
            "the proposal's support covers the posterior.",
        )
    return ImportanceResult(traces, log_w)


def check_proper(model, observations, args, proposal=None, proposal_args=()) -> None:
    """Refuse to sample a ``ppl.improper_uniform`` choice from the prior: its
    ``simulate`` gives an initialisation point, not a draw, so the weights would
    mean nothing.

    Args:
        model: the generative function.
        observations: the observed choices (a choice map).
        args: the model's arguments (a tuple).
        proposal: the proposal, or ``None`` for the prior.
        proposal_args: its arguments.

    Raises:
        PPLError: naming each improper choice that is neither observed nor proposed.

    Example:
        >>> check_proper(model, ChoiceMap.d({"y": 1.0}), ())
    """
    try:
        shape = model.trace_shape(args)
    except Exception:  # a model that cannot simulate (an observed choice without a sampler):
        return  # nothing to check here; generate says what is wrong, if anything
    improper = improper_addresses(shape)
    if not improper:
        return
    covered = set(observations.addresses())
    if proposal is not None:
        covered |= set(proposal.trace_shape(proposal_args).choices.addresses())
    left = [a for a in improper if a not in covered]
    if left:
        raise PPLError(
            f"importance sampling (or SMC) on {model.name}: {fmt_addrs(left)} has an improper "
            "flat prior "
            "(ppl.improper_uniform), which is no distribution to sample from: its simulate only "
            "draws a point to start MCMC from. Give a proposal that proposes it (proposal=...), "
            "use MCMC (ppl.inference.run_mcmc with nuts or hmc), or give it a proper prior."
        )


def _particles(key, observations, args, proposal_args, *, model, proposal, n):
    def one(k):
        return propose(k, model, observations, args, proposal, proposal_args)

    return jax.vmap(one)(jax.random.split(key, n))


def _compiled_particles(model, proposal, n):
    """Called outside jit, importance sampling runs compiled (eager vmap would
    dispatch op by op). The compiled sampler lives in the model's cache store, so
    it goes with the model (a module-level jit would keep every model alive)."""
    return store_of(model).cached(
        ("importance", proposal, n),
        lambda: jax.jit(functools.partial(_particles, model=model, proposal=proposal, n=n)),
    )


def sir(
    key,
    model,
    observations,
    args,
    proposal=None,
    proposal_args=(),
    n=1000,
    m=1,
    scheme="multinomial",
):
    """Sampling/importance resampling: ``m`` traces (stacked) resampled from ``n``
    weighted particles; approximately posterior samples for large ``n``.

    Args:
        key, model, observations, args, proposal, proposal_args, n: as for :func:`importance`.
        m: the number of traces to return, a positive int.
        scheme: the resampling scheme (``"multinomial"``, ``"stratified"``,
            ``"systematic"``, ``"residual"``).

    Returns:
        The ``m`` traces, batched along a leading axis.

    Raises:
        PPLError: if ``n`` or ``m`` is not a positive int, and as :func:`importance`.

    Example:
        >>> traces = sir(jax.random.key(0), model, {"y": 1.0}, (), n=2000, m=10)
    """
    m = check_count(m, "m", "sir: the number of traces returned", "10")
    k1, k2 = jax.random.split(as_key(key))
    result = importance(k1, model, observations, args, proposal, proposal_args, n)
    return result.resample(k2, m, scheme)
