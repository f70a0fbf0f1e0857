"""Importance sampling and sampling/importance resampling (SIR).

With the prior as proposal, each particle is ``model.generate(key, obs, args)``.
With a custom proposal ``q``, the proposal's choices are merged into the
constraints and the weight is ``generate``'s weight minus ``q``'s score, so ``q``
may propose some latent choices and leave the rest to the prior.

With ``mesh=`` the particles are split over the devices of a one-axis mesh
(see ``ppl.inference._sharding``); the estimates equal the one-device run's
for the same key.
"""

from __future__ import annotations

import functools

import equinox as eqx
import jax
import numpy as np
from jax.sharding import Mesh

from ppl._caches import store_of
from ppl._errors import PPLError, fmt_addrs
from ppl._gfi import GenerativeFunction, as_args
from ppl.core import is_concrete
from ppl.inference import resampling
from ppl.inference._subsampling import model_trace_shape, refuse_in_trace
from ppl.inference._sharding import check_divisible, particle_mesh, replicate, shard, split_keys
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
    """Weighted particles from ``importance``: ``traces`` batched along a
    leading axis of size ``n``, and their unnormalised ``log_weights``.

    The weights target the posterior ``p(latents | observations)``. From them:
    ``log_marginal_likelihood`` (``log (1/n) sum_i w_i``, whose exponential is
    unbiased for ``p(observations)``), ``ess`` (the effective sample size),
    ``normalized_weights``, ``expectation(f)`` (the self-normalised estimate
    of ``E[f(trace)]``, consistent but biased for finite ``n``) and
    ``resample(key, n, scheme)`` (unweighted traces). Usually built by
    ``importance``, not by hand.

    Attributes:
        traces: the traces, batched along a leading particle axis.
        log_weights: their unnormalised log weights, shape ``(n,)``.
        mesh: the one-axis ``jax.sharding.Mesh`` the particles are split over
            (``importance(..., mesh=mesh)``), or ``None``. Static.

    Examples:
        >>> @ppl.gen
        ... def model():
        ...     mu = ppl.normal(0.0, 1.0) @ "mu"
        ...     return ppl.normal(mu, 1.0) @ "y"
        >>> result = ppl.inference.importance(jax.random.key(0), model, {"y": 1.0}, (), n=1000)
        >>> result.log_weights.shape, bool(result.ess > 500)
        ((1000,), True)
        >>> round(float(result.expectation(lambda tr: tr.choices["mu"])), 1)  # exact: 0.5
        0.5
        >>> result.resample(jax.random.key(1), 100, "systematic").choices["mu"].shape
        (100,)
    """

    mesh: Mesh | None = eqx.field(static=True, default=None)

    @property
    def log_marginal_likelihood(self):
        """``log (1/n) sum_i w_i``: its exponential is unbiased for p(observations)."""
        return log_mean_exp(self.log_weights)

    def resample(self, key, n=None, scheme="multinomial"):
        """Unweighted traces drawn in proportion to the weights.

        Args:
            key: a ``jax.random`` key.
            n: how many traces to draw (default: the number of particles).
            scheme: ``"multinomial"``, ``"stratified"``, ``"systematic"``,
                ``"residual"``, or a function ``(key, log_weights, n) -> indices``.

        Returns:
            The ``n`` traces, batched along a leading axis; on the result's mesh,
            split over its devices.

        Raises:
            PPLError: for an unknown scheme, or, on a mesh, an ``n`` that is not a
                multiple of the mesh's size.

        Examples:
            >>> traces = result.resample(jax.random.key(1), 100, "systematic")
        """
        if n is not None:
            n = check_count(n, "n", "ImportanceResult.resample: the number of traces", "100")
            check_divisible(n, self.mesh, "n", "ImportanceResult.resample")
        idx = resampling.get_scheme(scheme)(as_key(key), self.log_weights, n)
        return shard(take(self.traces, idx), self.mesh)


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
    mesh=None,
):
    """Importance sampling with ``n`` particles.

    Each particle is ``model.generate(key, observations, args)``: the latent
    choices are drawn from the prior and weighted by the likelihood of the
    observations. With a ``proposal``, its choices are drawn first and merged
    into the constraints, and the weight is ``generate``'s weight minus the
    proposal's score, so the proposal may cover some latent choices and leave
    the rest to the prior. The particles run under ``vmap`` in one compiled
    call (compiled once per model, proposal, ``n`` and mesh); the cost is
    ``n`` runs of the model. The estimate of ``log p(observations)`` is
    consistent, its exponential unbiased; its variance grows quickly when the
    proposal is far from the posterior (watch ``result.ess``).

    Refused: a ``ppl.improper_uniform`` choice that is neither observed nor
    proposed (a flat prior has no draws to weight), and a model with a
    subsampled ``ppl.vmap(..., subsample_of=N)`` (the scaled minibatch
    density would bias the weights).

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
        mesh: a one-axis ``jax.sharding.Mesh`` to split the particles over
            (``n`` a multiple of its size; arguments and observations are
            replicated), or ``None`` (one device). The estimates equal the
            one-device run's for the same key, within float rounding.

    Returns:
        An ``ImportanceResult``: the traces, the log weights, the log
        marginal-likelihood estimate and the effective sample size (on the
        mesh, the traces and weights split over its devices).

    Raises:
        PPLError: if ``n`` is not a positive int; if the proposal proposes an
            observed address; if a ``ppl.improper_uniform`` choice is neither
            observed nor proposed, or the model subsamples; with
            ``check`` and concrete values, if a weight is NaN or +inf or every
            weight is -inf (pass ``check=False`` to get
            them back instead; under ``jit`` they are returned as they are);
            if ``mesh`` is not a one-axis mesh or its size does not divide ``n``.
        AddressError: if an observation (or a proposed choice) is at an
            address the model does not make.

    Examples:
        >>> @ppl.gen
        ... def model():
        ...     mu = ppl.normal(0.0, 1.0) @ "mu"
        ...     return ppl.normal(mu, 1.0) @ "y"
        >>> result = ppl.inference.importance(jax.random.key(0), model, {"y": 1.0}, (), n=1000)
        >>> round(float(result.log_marginal_likelihood), 1)  # exact: log N(1; 0, 2) = -1.52
        -1.5
        >>> @ppl.gen
        ... def proposal():
        ...     return ppl.normal(0.5, 0.8) @ "mu"
        >>> better = ppl.inference.importance(
        ...     jax.random.key(0), model, {"y": 1.0}, (), proposal=proposal, n=1000)
        >>> bool(better.ess > result.ess)
        True
        >>> mesh = jax.make_mesh((jax.device_count(),), ("particles",))
        >>> on_mesh = ppl.inference.importance(
        ...     jax.random.key(0), model, {"y": 1.0}, (), n=1000, mesh=mesh)
        >>> bool(jnp.allclose(on_mesh.log_weights, result.log_weights))
        True
    """
    n = check_count(n, "n", "importance: the number of particles")
    mesh = particle_mesh(mesh, "importance")
    check_divisible(n, mesh, "n", "importance")
    key, observations = as_key(key), as_choices(observations)
    args = as_args(args, model.name)
    proposal_args = as_args(proposal_args, "the proposal")
    check_proper(model, observations, args, proposal, proposal_args)
    if is_concrete((key, observations, args, proposal_args)):
        run = _compiled_particles(model, proposal, n, mesh)
        observations, args, proposal_args = replicate((observations, args, proposal_args), mesh)
    else:
        run = functools.partial(_particles, model=model, proposal=proposal, n=n, mesh=mesh)
    traces, log_w = run(key, observations, args, proposal_args)
    if check:
        check_weights(
            log_w,
            f"importance sampling on {model.name}",
            "Check that the observations are in the support of their distributions and that "
            "the proposal's support covers the posterior.",
        )
    return ImportanceResult(traces, log_w, mesh)


def check_proper(model, observations, args, proposal=None, proposal_args=()) -> None:
    """Refuse to sample a ``ppl.improper_uniform`` choice from the prior (its
    ``simulate`` gives an initialisation point, not a draw, so the weights would
    mean nothing), and a model with a subsampled ``ppl.vmap`` (its scaled
    minibatch density would bias the weights).

    Args:
        model: the generative function.
        observations: the observed choices (a choice map).
        args: the model's arguments (a tuple).
        proposal: the proposal, or ``None`` for the prior.
        proposal_args: its arguments.

    Raises:
        PPLError: naming each improper choice that is neither observed nor
            proposed, or the choices of a ``ppl.vmap(..., subsample_of=N)``.

    Examples:
        >>> check_proper(model, ChoiceMap.d({"y": 1.0}), ())
    """
    shape = model_trace_shape(model, args)
    if shape is None:  # it cannot simulate: generate says what is wrong, if anything
        return
    refuse_in_trace(shape, "importance sampling (or SMC)")
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


def _particles(key, observations, args, proposal_args, *, model, proposal, n, mesh):
    def one(k):
        return propose(k, model, observations, args, proposal, proposal_args)

    return shard(jax.vmap(one)(split_keys(key, n, mesh)), mesh)


def _compiled_particles(model, proposal, n, mesh):
    """Called outside jit, importance sampling runs compiled (eager vmap would
    dispatch op by op). The compiled sampler lives in the model's cache store, so
    it goes with the model (a module-level jit would keep every model alive)."""
    return store_of(model).cached(
        ("importance", proposal, n, mesh),
        lambda: jax.jit(
            functools.partial(_particles, model=model, proposal=proposal, n=n, mesh=mesh)
        ),
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
    mesh=None,
):
    """Sampling/importance resampling: ``m`` traces (stacked) resampled from ``n``
    weighted particles of ``importance``.

    The traces are unweighted and approximately posterior samples: their law
    tends to the posterior as ``n`` grows. Several of the ``m`` traces may be
    copies of one particle; the cost is that of ``importance`` with ``n``
    particles. Refused as ``importance`` is (improper flat priors that
    are not proposed, subsampled models).

    Args:
        key: a ``jax.random`` key.
        model: the generative function.
        observations: a choice map (or dict) of observed values.
        args: the model's arguments (a tuple).
        proposal: a generative function proposing latent choices, as for
            ``importance`` (default: the prior).
        proposal_args: the proposal's arguments (a tuple).
        n: the number of weighted particles, a positive int.
        m: the number of traces to return, a positive int.
        scheme: the resampling scheme (``"multinomial"``, ``"stratified"``,
            ``"systematic"``, ``"residual"``, or a function ``(key,
            log_weights, n) -> indices``).
        mesh: as for ``importance`` (``n`` and ``m`` multiples of its size).

    Returns:
        The ``m`` traces, batched along a leading axis (on the mesh, split over
        its devices); they hold the observed values too.

    Raises:
        PPLError: if ``n`` or ``m`` is not a positive int (or, on a mesh, not a
            multiple of its size), for an unknown scheme, and as ``importance``.
        AddressError: as ``importance``.

    Examples:
        >>> @ppl.gen
        ... def model():
        ...     mu = ppl.normal(0.0, 1.0) @ "mu"
        ...     return ppl.normal(mu, 1.0) @ "y"
        >>> traces = ppl.inference.sir(jax.random.key(0), model, {"y": 1.0}, (), n=2000, m=10)
        >>> traces.choices["mu"].shape, traces.choices["y"].tolist() == [1.0] * 10
        ((10,), True)
    """
    m = check_count(m, "m", "sir: the number of traces returned", "10")
    check_divisible(m, particle_mesh(mesh, "sir"), "m", "sir")
    k1, k2 = jax.random.split(as_key(key))
    result = importance(k1, model, observations, args, proposal, proposal_args, n, mesh=mesh)
    return result.resample(k2, m, scheme)
