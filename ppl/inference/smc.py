"""Sequential Monte Carlo: particle collections and composable steps.

A :class:`ParticleCollection` holds batched traces, their log weights and
``log_z``, the log marginal-likelihood mass absorbed by past resamplings, so
``log_z + log mean exp(log_weights)`` is always the current estimate of
``log p(observations so far)`` (unbiased in exp-space).

Steps: :func:`init` (importance sampling from a proposal), :func:`extend`
(move to a new target with new arguments and observations through
``update``, or to another generative function through ``generate``),
:func:`reweight`, :func:`resample`, :func:`maybe_resample` (when the ESS drops
below a fraction of n), :func:`rejuvenate` (any MCMC kernel). :func:`run`
drives a sequence of same-shaped targets under ``lax.scan``;
:func:`particle_filter` runs a ``ppl.scan`` state-space model step by step.
"""

from __future__ import annotations

from typing import Callable

import equinox as eqx
import jax
import jax.numpy as jnp

from ppl import _jax
from ppl._errors import PPLError
from ppl._gfi import as_args
from ppl.choices import Selection
from ppl.inference import resampling
from ppl.inference._util import (
    WeightedTraces,
    as_choices,
    as_key,
    check_proposal_disjoint,
    check_weights,
    ess,
    log_mean_exp,
    selection_of,
    take,
)
from ppl.inference.importance import propose


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


def init(key, model, observations, args, n, proposal=None, proposal_args=()) -> ParticleCollection:
    """``n`` particles by importance sampling from ``proposal`` (default: the prior)."""
    key, observations = as_key(key), as_choices(observations)
    args, proposal_args = as_args(args, model.name), as_args(proposal_args, "the proposal")
    one = lambda k: propose(k, model, observations, args, proposal, proposal_args)
    traces, log_w = jax.vmap(one)(jax.random.split(key, n))
    return ParticleCollection(traces, log_w, jnp.zeros((), log_w.dtype))


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


def extend(key, particles: ParticleCollection, args, observations=None, model=None, proposal=None,
           proposal_args=()) -> ParticleCollection:
    """Move every particle to the next target: new ``args`` and new
    ``observations`` of the same model (through ``update``), or ``model``, a
    different generative function whose addresses include the old ones (through
    ``generate``). ``proposal``, called with ``(trace, *proposal_args)``,
    proposes the new latent choices (default: their prior)."""
    observations = as_choices(observations)
    name = (model or particles.traces.gen_fn).name
    args, proposal_args = as_args(args, name), as_args(proposal_args, "the proposal")
    one = lambda k, tr: _extend_one(k, tr, args, observations, model, proposal, proposal_args)
    traces, w = jax.vmap(one)(jax.random.split(as_key(key), particles.n), particles.traces)
    return ParticleCollection(traces, particles.log_weights + w, particles.log_z)


def change_target(key, particles, args, observations=None, model=None) -> ParticleCollection:
    """Reweight to a new target without proposing new choices (``extend`` without a proposal)."""
    return extend(key, particles, args, observations, model)


def reweight(particles: ParticleCollection, log_increments) -> ParticleCollection:
    """Multiply each particle's weight by ``exp(log_increments)``."""
    return ParticleCollection(particles.traces, particles.log_weights + log_increments, particles.log_z)


def resample(key, particles: ParticleCollection, scheme="systematic") -> ParticleCollection:
    """Draw n ancestors in proportion to the weights; weights become equal and
    their mean moves into ``log_z``."""
    idx = resampling.get_scheme(scheme)(as_key(key), particles.log_weights, particles.n)
    lw = particles.log_weights
    return ParticleCollection(take(particles.traces, idx), jnp.zeros_like(lw), particles.log_z + log_mean_exp(lw))


def _wants_resampling(log_weights, ess_threshold):
    if ess_threshold >= 1.0:
        return jnp.ones((), bool)
    return ess(log_weights) < ess_threshold * log_weights.shape[0]


def maybe_resample(key, particles, ess_threshold=0.5, scheme="systematic"):
    """Resample when the ESS is below ``ess_threshold * n`` (1.0: always; 0: never).
    Returns ``(particles, resampled)``."""
    if ess_threshold <= 0:
        return particles, jnp.zeros((), bool)
    do = _wants_resampling(particles.log_weights, ess_threshold)
    out = jax.lax.cond(do, lambda p: resample(key, p, scheme), lambda p: p, particles)
    return out, do


def rejuvenate(key, particles, kernel, n_steps=1, observed=None) -> ParticleCollection:
    """Move each particle with ``n_steps`` of an MCMC kernel that leaves the
    current target invariant (weights unchanged). ``observed``: the observed
    addresses (a choice map or a selection), for kernels built without a selection."""
    if observed is not None and not isinstance(observed, Selection):
        observed = selection_of(as_choices(observed))

    def one(k, tr):
        state = kernel.init(tr, 0, observed)
        state, _ = jax.lax.scan(lambda s, kk: (kernel.step(kk, s), None), state, jax.random.split(k, n_steps))
        return kernel.materialize(state).trace

    traces = jax.vmap(one)(jax.random.split(as_key(key), particles.n), particles.traces)
    return ParticleCollection(traces, particles.log_weights, particles.log_z)


class SMCInfo(eqx.Module):
    """Per step of a driver: the ESS after reweighting (before any resampling),
    whether it resampled (:func:`run`: after the step; :func:`particle_filter`:
    before propagating), and the running log marginal-likelihood estimate."""

    ess: jax.Array
    resampled: jax.Array
    log_marginal_likelihood: jax.Array


def run(key, particles, args_seq, observations_seq=None, proposal=None, proposal_args_seq=(),
        ess_threshold=0.5, scheme="systematic", rejuvenation=None, rejuvenation_steps=1, observed=None,
        check=True):
    """Extend ``particles`` through a sequence of targets of the same model under
    ``lax.scan``: step ``s`` uses the ``s``-th slice of ``args_seq``,
    ``observations_seq`` and ``proposal_args_seq`` (pytrees with a leading step
    axis), then resamples if the ESS is low and applies ``rejuvenation`` (an MCMC
    kernel; ``observed``, the observed addresses, is needed only by kernels built
    without a selection). Returns ``(particles, SMCInfo)``."""
    observations_seq = as_choices(observations_seq)

    def body(p, inp):
        k, a, o, pa = inp
        k1, k2, k3 = jax.random.split(k, 3)
        p = extend(k1, p, a, o, proposal=proposal, proposal_args=pa)
        e = p.ess
        p, did = maybe_resample(k2, p, ess_threshold, scheme)
        if rejuvenation is not None:
            p = rejuvenate(k3, p, rejuvenation, rejuvenation_steps, observed)
        return p, SMCInfo(e, did, p.log_marginal_likelihood)

    n_steps = jax.tree.leaves(args_seq)[0].shape[0]
    keys = jax.random.split(as_key(key), n_steps)
    particles, info = jax.lax.scan(body, particles, (keys, args_seq, observations_seq, proposal_args_seq))
    if check:
        particles.check("smc.run")
    return particles, info


# ---------------------------------------------------------------------------
# Particle filtering of ppl.scan state-space models
# ---------------------------------------------------------------------------


def _default_proposal_args(carry, x, obs):
    return (carry, x, obs)


def particle_filter(key, model, args, observations, n, proposal=None, proposal_args: Callable | None = None,
                    ess_threshold=0.5, scheme="systematic", return_traces=True, check=True):
    """A particle filter for a ``ppl.scan(step, length=T)`` model called with
    ``(init, xs)``: at time t each particle runs ``step.generate`` from its carry
    with the t-th slice of ``observations`` (stacked along time, as the scan's
    choices are), resampling when the ESS is below ``ess_threshold * n``.

    ``proposal`` (a generative function over the step's latent addresses) is
    called with ``proposal_args(carry, x_t, observations_t)`` (default: those
    three). Returns ``(ParticleCollection of full scan traces, SMCInfo per
    step)``; the traces follow each final particle's ancestry.
    """
    from ppl.combinators.scan import Scan

    if not isinstance(model, Scan):
        raise PPLError(
            f"particle_filter runs a model built with ppl.scan(step, length=T); got {model!r}. "
            "For other models use smc.init / smc.extend / smc.run."
        )
    key, observations = as_key(key), as_choices(observations)
    init_carry, xs = as_args(args, model.name)
    T = _horizon(model, xs)
    for addr in observations.addresses():
        shape = jnp.shape(observations[addr])
        if not shape or shape[0] != T:
            raise PPLError(
                f"particle_filter: the observations of {model.name} are stacked along time, so the "
                f"value at {addr} needs a leading axis of length {T}; it has shape {shape}."
            )
    opts = dict(model=model, n=n, proposal=proposal, pa=proposal_args or _default_proposal_args,
                ess_threshold=ess_threshold, scheme=scheme, return_traces=return_traces, T=T)
    concrete = _jax.is_concrete((key, observations, args))
    particles, info = (_compiled_filter if concrete else _filter)(key, args, observations, **opts)
    if check:
        check_weights(particles.log_weights, f"particle_filter on {model.name}",
                      "Check the observations and the proposal's support.")
    return particles, info


def _filter(key, args, observations, *, model, n, proposal, pa, ess_threshold, scheme, return_traces, T):
    init_carry, xs = args
    step = model.step
    xs_t = xs if xs is not None else jnp.zeros((T, 0))

    def propagate(k, carry, x, obs_t):
        x = None if xs is None else x
        if proposal is None:
            return step.generate(k, obs_t, (carry, x))
        k1, k2 = jax.random.split(k)
        q = proposal.simulate(k1, as_args(pa(carry, x, obs_t), "the proposal"))
        check_proposal_disjoint(q.choices, obs_t, proposal.name)
        tr, w = step.generate(k2, q.choices | obs_t, (carry, x))
        return tr, w - q.score

    def body(state, inp):
        carries, log_w, log_z = state
        k, x, obs_t = inp
        k1, k2 = jax.random.split(k)
        do = _wants_resampling(log_w, ess_threshold) if ess_threshold > 0 else jnp.zeros((), bool)
        resample_idx = lambda: resampling.get_scheme(scheme)(k1, log_w, n).astype(jnp.int32)
        idx = jax.lax.cond(do, resample_idx, lambda: jnp.arange(n, dtype=jnp.int32))
        carries = take(carries, idx)
        log_z = jnp.where(do, log_z + log_mean_exp(log_w), log_z)
        log_w = jnp.where(do, jnp.zeros_like(log_w), log_w)
        trs, w = jax.vmap(lambda kk, c: propagate(kk, c, x, obs_t))(jax.random.split(k2, n), carries)
        carries = trs.retval[0]
        log_w = log_w + w
        info = SMCInfo(ess(log_w), do, log_z + log_mean_exp(log_w))
        return (carries, log_w, log_z), (trs.choices, idx, info)

    carry0 = jax.tree.map(lambda c: jnp.broadcast_to(c, (n,) + jnp.shape(c)), init_carry)
    dtype = jnp.result_type(float)
    state0 = (carry0, jnp.zeros((n,), dtype), jnp.zeros((), dtype))
    keys = jax.random.split(key, T + 1)
    (_, log_w, log_z), (choices, ancestors, info) = jax.lax.scan(body, state0, (keys[:T], xs_t, observations))
    traces = _lineages(keys[T], model, args, choices, ancestors, n) if return_traces else None
    return ParticleCollection(traces, log_w, log_z), info


# Called outside jit, the filter runs compiled (the lineage reconstruction
# would otherwise dispatch op by op); every option is part of the cache key.
_compiled_filter = jax.jit(
    _filter, static_argnames=("model", "n", "proposal", "pa", "ess_threshold", "scheme", "return_traces", "T")
)


def _horizon(model, xs) -> int:
    lengths = {jnp.shape(leaf)[0] for leaf in jax.tree.leaves(xs)}
    if model.length is not None:
        lengths.add(model.length)
    if len(lengths) != 1:
        raise PPLError(f"particle_filter: cannot tell the number of steps of {model.name} (got {sorted(lengths)}).")
    return lengths.pop()


def _lineages(key, model, args, choices, ancestors, n):
    """Full scan traces along each final particle's ancestry."""

    def back(idx, inp):
        c_t, a_t = inp
        return a_t[idx], take(c_t, idx)

    _, path = jax.lax.scan(back, jnp.arange(n, dtype=jnp.int32), (choices, ancestors), reverse=True)
    per_particle = jax.tree.map(lambda v: jnp.swapaxes(v, 0, 1), path)
    traces, _ = jax.vmap(lambda k, c: model.generate(k, c, args))(jax.random.split(key, n), per_particle)
    return traces
