"""Particle collections and what the SMC drivers share.

A :class:`ParticleCollection` holds batched traces, their log weights and
``log_z``, the log marginal-likelihood mass absorbed by past resamplings, so
``log_z + log mean exp(log_weights)`` is always the current estimate of
``log p(observations so far)`` (unbiased in exp-space). :class:`SMCInfo` is
what the drivers (:func:`ppl.inference.smc.run`,
:func:`ppl.inference.filtering.particle_filter`) report per step.
"""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp

from ppl.inference._util import WeightedTraces, check_weights, ess, log_mean_exp


class ParticleCollection(WeightedTraces):
    """``traces`` batched along a leading axis of size n, their ``log_weights``,
    and ``log_z`` (log marginal likelihood accumulated at past resamplings)."""

    log_z: jax.Array

    @property
    def n(self) -> int:
        return self.log_weights.shape[0]

    @property
    def log_marginal_likelihood(self):
        return self.log_z + log_mean_exp(self.log_weights)

    def check(self, what="SMC") -> "ParticleCollection":
        """Raise a clear error if the weights are NaN/+inf or all -inf (concrete values only)."""
        check_weights(
            self.log_weights,
            what,
            "Check that the observations are in the support of their distributions, and that "
            "the proposal covers the target (its log density must be finite wherever the model's is).",
        )
        return self


class SMCInfo(eqx.Module):
    """Per step of a driver: the ESS after reweighting (before any resampling),
    whether it resampled (:func:`run`: after the step; :func:`particle_filter`:
    before propagating), and the running log marginal-likelihood estimate."""

    ess: jax.Array
    resampled: jax.Array
    log_marginal_likelihood: jax.Array


def wants_resampling(log_weights, ess_threshold):
    """Whether the ESS of ``log_weights`` is below ``ess_threshold`` times their number (always at 1.0 or more)."""
    if ess_threshold >= 1.0:
        return jnp.ones((), bool)
    return ess(log_weights) < ess_threshold * log_weights.shape[0]
