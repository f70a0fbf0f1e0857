"""Sequential Monte Carlo: particle collections and composable steps.

A ``ParticleCollection`` holds batched traces, their log weights and
``log_z``, the log marginal-likelihood mass absorbed by past resamplings, so
``log_z + log mean exp(log_weights)`` is always the current estimate of
``log p(observations so far)`` (unbiased in exp-space).

Steps: ``init`` (importance sampling from a proposal), ``extend``
(move to a new target with new arguments and observations through
``update``, or to another generative function through ``generate``),
``reweight``, ``resample``, ``maybe_resample`` (when the ESS drops
below a fraction of n), ``rejuvenate`` (any MCMC kernel). ``run``
drives a sequence of same-shaped targets under ``lax.scan``.
``particle_filter`` (from ``ppl.inference.filtering``) runs a
``ppl.scan`` state-space model step by step; ``ParticleCollection`` and
``SMCInfo`` live in ``ppl.inference.particles``. All are importable
from here.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from ppl._errors import AddressError
from ppl._gfi import as_args
from ppl.choices import ChoiceMap, Selection
from ppl.inference import _progress, resampling
from ppl.inference._sharding import check_divisible, particle_mesh, replicate, shard, split_keys
from ppl.inference._util import (
    as_choices,
    as_key,
    check_count,
    check_proposal_disjoint,
    log_mean_exp,
    selection_of,
    take,
)
from ppl.inference.filtering import particle_filter
from ppl.inference.importance_sampling import check_proper, propose
from ppl.inference.particles import ParticleCollection, SMCInfo, wants_resampling


def init(
    key, model, observations, args, n, proposal=None, proposal_args=(), mesh=None
) -> ParticleCollection:
    """``n`` particles by importance sampling from ``proposal`` (default: the prior).

    The weights are ``ppl.inference.importance``'s (not compiled here:
    call it inside ``jit`` for speed); refused as importance sampling is.

    Args:
        key: a ``jax.random`` key.
        model: the generative function of the first target.
        observations: a choice map (or dict) of observed values.
        args: the model's arguments (a tuple).
        n: the number of particles, a positive int.
        proposal: a generative function run with ``proposal_args`` whose choices
            are latent addresses of ``model`` (default: the prior).
        proposal_args: the proposal's arguments (a tuple).
        mesh: a one-axis ``jax.sharding.Mesh`` to split the particles over
            (``n`` a multiple of its size), or ``None`` (one device). The
            collection keeps it: every later step keeps the particles split,
            with the same results as on one device for the same keys.

    Returns:
        A ``ParticleCollection`` with ``log_z = 0``.

    Raises:
        PPLError: if ``n`` is not a positive int, the proposal proposes an observed address,
            a ``ppl.improper_uniform`` choice is neither observed nor proposed, the
            model subsamples, or ``mesh`` is not a one-axis mesh whose size divides ``n``.
        AddressError: if an observation is at an address the model does not make.

    Examples:
        >>> from ppl.inference import smc
        >>> @ppl.gen
        ... def model(beta):   # the prior times the likelihood of y = 1 to the power beta
        ...     mu = ppl.normal(0.0, 1.0) @ "mu"
        ...     ppl.factor(beta * jax.scipy.stats.norm.logpdf(1.0, mu, 1.0)) @ "lik"
        >>> particles = smc.init(jax.random.key(0), model, {}, (0.0,), n=1000)
        >>> particles.n, float(particles.log_marginal_likelihood)   # beta = 0: the prior
        (1000, 0.0)
    """
    n = check_count(n, "n", "smc.init: the number of particles")
    mesh = particle_mesh(mesh, "smc.init")
    check_divisible(n, mesh, "n", "smc.init")
    key, observations = as_key(key), as_choices(observations)
    args, proposal_args = as_args(args, model.name), as_args(proposal_args, "the proposal")
    check_proper(model, observations, args, proposal, proposal_args)
    observations, args, proposal_args = replicate((observations, args, proposal_args), mesh)

    def one(k):
        return propose(k, model, observations, args, proposal, proposal_args)

    traces, log_w = jax.vmap(one)(split_keys(key, n, mesh))
    traces, log_w, log_z = shard((traces, log_w, jnp.zeros((), log_w.dtype)), mesh)
    return ParticleCollection(traces, log_w, log_z, mesh)


def _extend_one(key, trace, args, observations, model, proposal, proposal_args):
    k1, k2 = jax.random.split(key)
    constraints, q_score = observations, 0.0
    if proposal is not None:
        q = proposal.simulate(k1, (trace, *proposal_args))
        check_proposal_disjoint(q.choices, observations, proposal.name)
        constraints, q_score = q.choices | observations, q.score
    if model is None or model is trace.gen_fn:
        new, w, _ = trace.gen_fn.update(k2, trace, constraints, args)
        return new, w - q_score
    # A different generative function: keep the old choices, sample the new ones
    # from the prior; the increment is p_new(all) / (p_old(old) q(new)).
    new, w = model.generate(k2, trace.choices | constraints, args)
    return new, w - trace.score - q_score


def _refuse_replaced(made: ChoiceMap, observations: ChoiceMap) -> None:
    """An observation may not land on a value the particles already made:
    ``update`` would weigh the new value against the old one, and the old value,
    drawn from its prior, carries no density of its own in the weight. (A
    masked entry may be one the model did not make; that is decided at run time.)"""
    for addr in observations.addresses():
        if addr in made and not made.get_submap(addr).is_masked():
            raise AddressError(
                "smc.extend: the observation at {addr} replaces a value the particles "
                "already made, and the incremental weight would be wrong (update weighs "
                "the new value against the old, which was drawn from its prior). Observe "
                "it when the particles are made (smc.init), or let the model make it "
                "under a mask argument that the next target turns on (see smc.run).",
                addr,
            )


def extend(
    key,
    particles: ParticleCollection,
    args,
    observations=None,
    model=None,
    proposal=None,
    proposal_args=(),
) -> ParticleCollection:
    """Move every particle to the next target and multiply in the incremental weight.

    The next target is the same model with new ``args`` and new
    ``observations`` (through ``update``), or ``model``, a different
    generative function whose addresses include the old ones (through
    ``generate``).

    Args:
        key: a ``jax.random`` key.
        particles: the ``ParticleCollection`` to move.
        args: the next target's arguments (a tuple).
        observations: the new observations (a choice map or dict).
        model: a different generative function for the next target, or
            ``None`` (the particles' own model).
        proposal: a generative function called with ``(trace,
            *proposal_args)`` proposing the new latent choices (default:
            their prior).
        proposal_args: the proposal's extra arguments (a tuple).

    Returns:
        The moved ``ParticleCollection`` (``log_z`` unchanged).

    Observations must be at addresses the particles have not yet made
    (``update`` weighs no density for a value it replaces); to bring in data
    the model already makes, mask it with an argument, as in the example of
    ``run``. The cost is one ``update`` (or ``generate``) per particle.

    Raises:
        PPLError: if the proposal proposes an observed address.
        AddressError: if an observation is at an address the next target does
            not make, or at one the particles already made (unmasked): its
            weight would be wrong.

    Examples:
        >>> from ppl.inference import smc
        >>> @ppl.gen
        ... def model(beta):   # the prior times the likelihood of y = 1 to the power beta
        ...     mu = ppl.normal(0.0, 1.0) @ "mu"
        ...     ppl.factor(beta * jax.scipy.stats.norm.logpdf(1.0, mu, 1.0)) @ "lik"
        >>> particles = smc.init(jax.random.key(0), model, {}, (0.0,), n=1000)
        >>> particles = smc.extend(jax.random.key(1), particles, (1.0,))   # to the posterior
        >>> round(float(particles.log_marginal_likelihood), 1)   # exact: log N(1; 0, 2) = -1.52
        -1.5
    """
    observations = as_choices(observations)
    name = (model or particles.traces.gen_fn).name
    args, proposal_args = as_args(args, name), as_args(proposal_args, "the proposal")
    if model is None or model is particles.traces.gen_fn:  # the update path
        _refuse_replaced(particles.traces.choices, observations)

    def one(k, tr):
        return _extend_one(k, tr, args, observations, model, proposal, proposal_args)

    keys = split_keys(as_key(key), particles.n, particles.mesh)
    traces, w = jax.vmap(one)(keys, particles.traces)
    return particles.moved(traces, particles.log_weights + w)


def change_target(key, particles, args, observations=None, model=None) -> ParticleCollection:
    """Reweight to a new target without proposing new choices (``extend`` without a proposal).

    Args:
        key: a ``jax.random`` key (choices the new target adds are drawn from the prior).
        particles: the ``ParticleCollection``.
        args: the new target's arguments (a tuple).
        observations: its observations (a choice map or dict).
        model: a different generative function, or ``None`` (the same model).

    Returns:
        The reweighted ``ParticleCollection``.

    Raises:
        AddressError: as ``extend``.

    Examples:
        >>> from ppl.inference import smc
        >>> @ppl.gen
        ... def model(beta):   # the prior times the likelihood of y = 1 to the power beta
        ...     mu = ppl.normal(0.0, 1.0) @ "mu"
        ...     ppl.factor(beta * jax.scipy.stats.norm.logpdf(1.0, mu, 1.0)) @ "lik"
        >>> particles = smc.init(jax.random.key(0), model, {}, (0.0,), n=1000)
        >>> halfway = smc.change_target(jax.random.key(1), particles, (0.5,))
        >>> bool(halfway.ess < particles.ess)
        True
    """
    return extend(key, particles, args, observations, model)


def reweight(particles: ParticleCollection, log_increments) -> ParticleCollection:
    """Multiply each particle's weight by ``exp(log_increments)``.

    Args:
        particles: the ``ParticleCollection``.
        log_increments: shape ``(n,)``, added to the log weights.

    Returns:
        The reweighted ``ParticleCollection``.

    Raises:
        Nothing of its own: NaN increments give NaN weights (``particles.check()``
            raises on them).

    Examples:
        >>> from ppl.inference import smc
        >>> particles = smc.ParticleCollection(jnp.arange(4.0), jnp.zeros(4), jnp.zeros(()))
        >>> reweighted = smc.reweight(particles, jnp.log(jnp.array([1.0, 1.0, 1.0, 3.0])))
        >>> round(float(reweighted.ess), 2)   # 1 / sum(w^2), w = (1, 1, 1, 3) / 6
        3.0
    """
    return particles.moved(particles.traces, particles.log_weights + log_increments)


def resample(key, particles: ParticleCollection, scheme="systematic") -> ParticleCollection:
    """Draw n ancestors in proportion to the weights; the weights become equal and
    their mean moves into ``log_z`` (so the marginal-likelihood estimate is unchanged).

    Args:
        key: a ``jax.random`` key.
        particles: the ``ParticleCollection``.
        scheme: a scheme name (``"multinomial"``, ``"stratified"``,
            ``"systematic"``, ``"residual"``) or a function ``(key,
            log_weights, n) -> indices``.

    Returns:
        The resampled ``ParticleCollection``.

    Raises:
        PPLError: for an unknown scheme name.

    Examples:
        >>> from ppl.inference import smc
        >>> weights = jnp.log(jnp.array([0.0, 0.0, 0.0, 1.0]))   # all on the last particle
        >>> particles = smc.ParticleCollection(jnp.arange(4.0), weights, jnp.zeros(()))
        >>> resampled = smc.resample(jax.random.key(0), particles, "stratified")
        >>> resampled.traces.tolist(), resampled.log_weights.tolist()
        ([3.0, 3.0, 3.0, 3.0], [0.0, 0.0, 0.0, 0.0])
    """
    idx = resampling.get_scheme(scheme)(as_key(key), particles.log_weights, particles.n)
    lw = particles.log_weights
    return particles.moved(
        take(particles.traces, idx), jnp.zeros_like(lw), particles.log_z + log_mean_exp(lw)
    )


def maybe_resample(key, particles, ess_threshold=0.5, scheme="systematic"):
    """Resample when the ESS is below ``ess_threshold * n`` (1.0: always; 0: never).

    Args:
        key: a ``jax.random`` key.
        particles: the ``ParticleCollection``.
        ess_threshold: the fraction of ``n`` below which to resample.
        scheme: as for ``resample``.

    Returns:
        ``(particles, resampled)``, ``resampled`` a boolean scalar array.

    Raises:
        PPLError: for an unknown scheme name.

    Examples:
        >>> from ppl.inference import smc
        >>> weights = jnp.log(jnp.array([1.0, 1.0, 1.0, 3.0]))   # ESS 3 of 4
        >>> particles = smc.ParticleCollection(jnp.arange(4.0), weights, jnp.zeros(()))
        >>> [bool(smc.maybe_resample(jax.random.key(0), particles, t)[1]) for t in (0.7, 0.8)]
        [False, True]
    """
    if ess_threshold <= 0:
        return particles, jnp.zeros((), bool)
    do = wants_resampling(particles.log_weights, ess_threshold)
    out = jax.lax.cond(do, lambda p: resample(key, p, scheme), lambda p: p, particles)
    return out, do


def rejuvenate(key, particles, kernel, n_steps=1, observed=None) -> ParticleCollection:
    """Move each particle with ``n_steps`` of an MCMC kernel that leaves the
    current target invariant (weights unchanged).

    Each particle gets its own chain of the one kernel (``kernel.init`` on its
    trace, then ``n_steps`` pure steps), under ``vmap``.

    Args:
        key: a ``jax.random`` key.
        particles: the ``ParticleCollection``.
        kernel: an MCMC kernel (``mh``, ``mala``, a composition, ...).
        n_steps: the kernel's steps per particle.
        observed: the observed addresses (a choice map or a selection), for
            kernels built without a selection.

    Returns:
        The moved ``ParticleCollection``.

    Raises:
        PPLError: if the kernel cannot move the particles' choices (see the
            kernel's ``init``).

    Examples:
        >>> from ppl.inference import smc
        >>> @ppl.gen
        ... def model(beta):   # the prior times the likelihood of y = 1 to the power beta
        ...     mu = ppl.normal(0.0, 1.0) @ "mu"
        ...     ppl.factor(beta * jax.scipy.stats.norm.logpdf(1.0, mu, 1.0)) @ "lik"
        >>> particles = smc.init(jax.random.key(0), model, {}, (1.0,), n=100)
        >>> moved = smc.rejuvenate(jax.random.key(1), particles,
        ...                        ppl.inference.mh(ppl.select("mu")), n_steps=2)
        >>> bool((moved.log_weights == particles.log_weights).all())   # weights unchanged
        True
    """
    if observed is not None and not isinstance(observed, Selection):
        observed = selection_of(as_choices(observed))

    def one(k, tr):
        state = kernel.init(tr, 0, observed)
        state, _ = jax.lax.scan(
            lambda s, kk: (kernel.step(kk, s), None), state, jax.random.split(k, n_steps)
        )
        return kernel.materialize(state).trace

    keys = split_keys(as_key(key), particles.n, particles.mesh)
    return particles.moved(jax.vmap(one)(keys, particles.traces), particles.log_weights)


def step(
    key,
    particles,
    args,
    observations=None,
    proposal=None,
    proposal_args=(),
    ess_threshold=0.5,
    scheme="systematic",
    rejuvenation=None,
    rejuvenation_steps=1,
    observed=None,
):
    """One SMC step: extend to the next target, resample if the ESS is low, rejuvenate.

    A pure function of the key, the particles and the next target, so a loop
    of any kind (``lax.scan`` in ``run``, a Python loop over a stream of
    observations) drives it; the particles carry everything between steps.

    Args:
        key: a ``jax.random`` key.
        particles: the current ``ParticleCollection``.
        args: the model's arguments for the next target (a tuple).
        observations: the next target's observations (a choice map or dict).
        proposal: a generative function called with ``(trace, *proposal_args)``
            proposing the new latent choices (default: their prior).
        proposal_args: the proposal's extra arguments (a tuple).
        ess_threshold: resample when the ESS is below this fraction of n
            (1.0: always; 0: never).
        scheme: the resampling scheme.
        rejuvenation: an MCMC kernel applied to every particle after
            resampling, or ``None``.
        rejuvenation_steps: its steps per particle.
        observed: the observed addresses, for a rejuvenation kernel built
            without a selection.

    Returns:
        ``(particles, SMCInfo)``: the info's ESS is taken after reweighting
        and before resampling.

    Raises:
        PPLError: if the proposal proposes an observed address, or the
            rejuvenation kernel cannot move the particles' choices.

    Examples:
        >>> from ppl.inference import smc
        >>> @ppl.gen
        ... def model(beta):   # the prior times the likelihood of y = 1 to the power beta
        ...     mu = ppl.normal(0.0, 1.0) @ "mu"
        ...     ppl.factor(beta * jax.scipy.stats.norm.logpdf(1.0, mu, 1.0)) @ "lik"
        >>> particles = smc.init(jax.random.key(0), model, {}, (0.0,), n=1000)
        >>> particles, info = smc.step(jax.random.key(1), particles, (1.0,), ess_threshold=1.0)
        >>> bool(info.resampled), round(float(particles.ess))   # resampled: equal weights
        (True, 1000)
    """
    k1, k2, k3 = jax.random.split(as_key(key), 3)
    particles = extend(
        k1, particles, args, observations, proposal=proposal, proposal_args=proposal_args
    )
    e = particles.ess
    particles, did = maybe_resample(k2, particles, ess_threshold, scheme)
    if rejuvenation is not None:
        particles = rejuvenate(k3, particles, rejuvenation, rejuvenation_steps, observed)
    return particles, SMCInfo(e, did, particles.log_marginal_likelihood)


def run(
    key,
    particles,
    args_seq,
    observations_seq=None,
    proposal=None,
    proposal_args_seq=(),
    ess_threshold=0.5,
    scheme="systematic",
    rejuvenation=None,
    rejuvenation_steps=1,
    observed=None,
    check=True,
    progress=True,
):
    """``step`` through a sequence of targets of the same model, under ``lax.scan``.

    Step ``s`` uses the ``s``-th slice of ``args_seq``, ``observations_seq``
    and ``proposal_args_seq`` (pytrees with a leading step axis).

    Args:
        key: a ``jax.random`` key.
        particles: the starting ``ParticleCollection`` (from ``init``).
        args_seq: the model's arguments per step, stacked along a leading axis.
        observations_seq: the observations per step, stacked likewise.
        proposal: as for ``step``.
        proposal_args_seq: the proposal's extra arguments per step, stacked.
        ess_threshold: as for ``step``.
        scheme: as for ``step``.
        rejuvenation: as for ``step``.
        rejuvenation_steps: as for ``step``.
        observed: as for ``step``.
        check: raise on NaN or impossible weights at the end (concrete values only).
        progress: show a progress bar of the steps (only outside ``jit``: the steps
            then run in about twenty compiled chunks, with the same result).

    Returns:
        ``(particles, SMCInfo)``, the info with a leading step axis.

    Raises:
        PPLError: as ``step``; with ``check``, if the final weights are
            NaN or +inf or all zero.

    Examples:
        >>> from ppl.inference import smc
        >>> @ppl.gen
        ... def model(beta):   # the prior times the likelihood of y = 1 to the power beta
        ...     mu = ppl.normal(0.0, 1.0) @ "mu"
        ...     ppl.factor(beta * jax.scipy.stats.norm.logpdf(1.0, mu, 1.0)) @ "lik"
        >>> particles = smc.init(jax.random.key(0), model, {}, (0.0,), n=500)
        >>> betas = jnp.linspace(0.25, 1.0, 4)   # anneal from the prior to the posterior
        >>> particles, info = smc.run(jax.random.key(1), particles, (betas,), progress=False,
        ...                           rejuvenation=ppl.inference.mh(ppl.select("mu")))
        >>> info.ess.shape, round(float(particles.log_marginal_likelihood), 1)   # exact: -1.52
        ((4,), -1.5)
    """
    observations_seq = as_choices(observations_seq)
    opts = (ess_threshold, scheme, rejuvenation, rejuvenation_steps, observed)

    def body(p, inp):
        k, a, o, pa = inp
        return step(k, p, a, o, proposal, pa, *opts)

    n_steps = jax.tree.leaves(args_seq)[0].shape[0]
    keys = jax.random.split(as_key(key), n_steps)
    inputs = (keys, args_seq, observations_seq, proposal_args_seq)
    particles, info = _progress.scan(body, particles, inputs, progress=progress, desc="smc")
    if check:
        particles.check("smc.run")
    return particles, info


__all__ = [
    "ParticleCollection",
    "SMCInfo",
    "change_target",
    "extend",
    "init",
    "maybe_resample",
    "particle_filter",
    "rejuvenate",
    "resample",
    "reweight",
    "run",
    "step",
]
