"""Particle collections and what the SMC drivers share.

A ``ParticleCollection`` holds batched traces, their log weights and
``log_z``, the log marginal-likelihood mass absorbed by past resamplings, so
``log_z + log mean exp(log_weights)`` is always the current estimate of
``log p(observations so far)`` (unbiased in exp-space). A collection made on
a device mesh (``smc.init(..., mesh=mesh)``) remembers it, and every step keeps
its particles split over the mesh's devices. ``SMCInfo`` is
what the drivers (``ppl.inference.smc.run``,
``ppl.inference.filtering.particle_filter``) report per step.
"""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
from jax.sharding import Mesh

from ppl.inference._sharding import shard
from ppl.inference._util import WeightedTraces, check_weights, ess, log_mean_exp


class ParticleCollection(WeightedTraces):
    """A population of weighted particles: the state of sequential Monte Carlo.

    ``log_z + log mean exp(log_weights)`` (``log_marginal_likelihood``) is the
    running estimate of ``log p(observations so far)``: its exponential is
    unbiased, and resampling moves the weights' mean into ``log_z`` so the
    estimate is unchanged. ``ess``, ``normalized_weights``, ``expectation(f)``
    and ``n`` read the population; ``check()`` raises a ``ppl.PPLError``
    on NaN, +inf or all-zero weights. Built by ``smc.init`` and moved by the
    steps of ``ppl.inference.smc`` (``extend``, ``reweight``, ``resample``,
    ``rejuvenate``, ``step``, ``run``) and by
    ``ppl.inference.particle_filter``; not usually by hand.

    Attributes:
        traces: traces batched along a leading axis of size ``n``.
        log_weights: their unnormalised log weights, shape ``(n,)``.
        log_z: the log marginal likelihood absorbed by past resamplings.
        mesh: the one-axis ``jax.sharding.Mesh`` whose devices share the
            particles (``traces`` and ``log_weights`` split along their leading
            axis, ``log_z`` replicated), or ``None`` (one device). Static: it is
            part of the collection's structure, not data.

    Examples:
        >>> from ppl.inference import smc
        >>> @ppl.gen
        ... def model():
        ...     mu = ppl.normal(0.0, 1.0) @ "mu"
        ...     return ppl.normal(mu, 1.0) @ "y"
        >>> particles = smc.init(jax.random.key(0), model, {"y": 1.0}, (), n=100)
        >>> particles.n, float(particles.log_z), bool(particles.ess < 100)
        (100, 0.0, True)
        >>> resampled = smc.resample(jax.random.key(1), particles)
        >>> float(resampled.ess)  # equal weights; the estimate moved into log_z
        100.0
        >>> bool(jnp.isclose(resampled.log_marginal_likelihood, particles.log_marginal_likelihood))
        True
    """

    log_z: jax.Array
    mesh: Mesh | None = eqx.field(static=True, default=None)

    def moved(self, traces, log_weights, log_z=None) -> "ParticleCollection":
        """A collection of new values on this one's mesh: what every SMC step returns.

        On a mesh, the particle arrays are constrained to stay split over its
        devices (under ``jit`` the partitioner would otherwise be free to
        gather them, e.g. after resampling's gather), so a step's output is
        laid out as its input and a compiled step is reused.

        Args:
            traces: the new traces, batched along the particle axis.
            log_weights: their log weights, shape ``(n,)``.
            log_z: the new ``log_z`` (default: this collection's).

        Returns:
            A ``ParticleCollection`` with this collection's ``mesh``.

        Examples:
            >>> particles = particles.moved(particles.traces, particles.log_weights + w)
        """
        log_z = self.log_z if log_z is None else log_z
        traces, log_weights, log_z = shard((traces, log_weights, log_z), self.mesh)
        return ParticleCollection(traces, log_weights, log_z, self.mesh)

    @property
    def n(self) -> int:
        """The number of particles."""
        return self.log_weights.shape[0]

    @property
    def log_marginal_likelihood(self):
        """``log_z + log mean exp(log_weights)``: its exponential is unbiased for
        the marginal likelihood of the observations so far."""
        return self.log_z + log_mean_exp(self.log_weights)

    def check(self, what="SMC") -> "ParticleCollection":
        """Raise a clear error if the weights are NaN/+inf or all -inf.

        Args:
            what: the algorithm's name, for the message.

        Returns:
            ``self``, when the weights are fine (or not concrete: under ``jit``
            there is nothing to check).

        Raises:
            PPLError: naming the problem and its likely causes.

        Examples:
            >>> particles = smc.extend(key, particles, args, obs).check("my filter")
        """
        check_weights(
            self.log_weights,
            what,
            "Check that the observations are in the support of their distributions, and that the "
            "proposal covers the target (its log density must be finite wherever the model's is).",
        )
        return self


class SMCInfo(eqx.Module):
    """What a driver reports per step (each attribute has a leading step axis
    when it comes from ``smc.run`` or ``ppl.inference.particle_filter``;
    ``smc.step`` reports one step, without it).

    Attributes:
        ess: the ESS after reweighting (before any resampling).
        resampled: whether it resampled (``smc.run``: after the step;
            ``particle_filter``: before propagating).
        log_marginal_likelihood: the running log marginal-likelihood estimate.

    Examples:
        >>> @ppl.gen
        ... def step(z, _):
        ...     z = ppl.normal(0.9 * z, 1.0) @ "z"
        ...     ppl.normal(z, 0.5) @ "y"
        ...     return z, None
        >>> ys = jnp.array([0.5, 1.0, 0.2, -0.3, 0.1])
        >>> _, info = ppl.inference.particle_filter(
        ...     jax.random.key(0), ppl.scan(step, length=5), (0.0, None), {"y": ys}, n=200)
        >>> info.ess.shape, info.resampled.dtype, info.log_marginal_likelihood.shape
        ((5,), dtype('bool'), (5,))
    """

    ess: jax.Array
    resampled: jax.Array
    log_marginal_likelihood: jax.Array


def wants_resampling(log_weights, ess_threshold):
    """Whether to resample: the ESS of ``log_weights`` is below ``ess_threshold``
    times their number (always, when ``ess_threshold >= 1``).

    Args:
        log_weights: shape ``(n,)``.
        ess_threshold: a fraction of ``n``.

    Returns:
        A boolean scalar array.

    Examples:
        >>> wants_resampling(jnp.array([0.0, -10.0]), 0.9)   # True
    """
    if ess_threshold >= 1.0:
        return jnp.ones((), bool)
    return ess(log_weights) < ess_threshold * log_weights.shape[0]
