"""Particle filtering of ``ppl.scan`` state-space models.

``particle_filter`` runs the scan's step one time step at a time for
every particle (``step.generate`` from each particle's carry, with that step's
observations), resampling when the ESS is low, all inside one ``lax.scan``;
the final particles' full traces are rebuilt along their ancestry.
"""

from __future__ import annotations

import functools
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np

from ppl._caches import store_of
from ppl._errors import PPLError, fmt_addr
from ppl._gfi import as_args
from ppl.combinators import Scan
from ppl.core import is_concrete
from ppl.inference import _progress, resampling
from ppl.inference._util import (
    as_choices,
    as_key,
    check_count,
    check_proposal_disjoint,
    check_weights,
    ess,
    log_mean_exp,
    take,
)
from ppl.inference._sharding import check_divisible, particle_mesh, replicate, shard, split_keys
from ppl.inference.importance_sampling import check_proper
from ppl.inference.particles import ParticleCollection, SMCInfo, wants_resampling


def _default_proposal_args(carry, x, obs):
    return (carry, x, obs)


def particle_filter(
    key,
    model,
    args,
    observations,
    n,
    proposal=None,
    proposal_args: Callable | None = None,
    ess_threshold=0.5,
    scheme="systematic",
    return_traces=True,
    check=True,
    progress=False,
    mesh=None,
):
    """A particle filter for a ``ppl.scan(step, length=T)`` model called with ``(init, xs)``.

    At time ``t`` each particle runs ``step.generate`` from its carry with the
    ``t``-th slice of ``observations`` (stacked along time, as the scan's
    choices are), resampling first when the ESS is below ``ess_threshold * n``.
    With the step's prior as proposal this is the bootstrap filter; a
    ``proposal`` that looks at the step's observations (trained with VI, say)
    can keep the weights far more even. The estimate
    ``particles.log_marginal_likelihood`` has an unbiased exponential for
    ``p(observations)``. All ``T`` steps run in one ``lax.scan``, compiled
    once per model and options; the cost is ``n * T`` runs of the step, plus
    a final ``generate`` per particle to rebuild the full traces along the
    ancestry (``return_traces=False`` skips it). A model with a subsampled
    ``ppl.vmap(..., subsample_of=N)``, or with a ``ppl.improper_uniform``
    choice that is neither observed nor proposed, is refused, as for
    importance sampling.

    Args:
        key: a ``jax.random`` key.
        model: a ``ppl.scan`` generative function.
        args: ``(init, xs)``, the scan's arguments.
        observations: a choice map of the step's observed addresses, each
            value with a leading time axis of length ``T``.
        n: the number of particles, a positive int.
        proposal: a generative function over the step's latent addresses
            (default: the step's prior), called with
            ``proposal_args(carry, x_t, observations_t)`` (default: those three).
        proposal_args: see ``proposal``.
        ess_threshold: resample when the ESS is below this fraction of ``n``
            (1.0: always; 0: never).
        scheme: the resampling scheme.
        return_traces: whether to rebuild each final particle's full scan trace.
        check: raise on impossible or non-finite weights (concrete values only).
        progress: show a progress bar of the time steps (outside ``jit`` only).
            The steps then run in about twenty compiled chunks, compiled for
            this call; without it the whole filter is compiled once per model
            and options and reused, which is faster for repeated calls.
        mesh: a one-axis ``jax.sharding.Mesh`` to split the particles over
            (their carries, weights, step choices and final traces; the
            arguments and observations replicated), or ``None``. The same
            keys give the same filter as on one device (up to float rounding).

    Returns:
        ``(ParticleCollection of full scan traces, SMCInfo per step)``; the
        traces follow each final particle's ancestry (``None`` without
        ``return_traces``).

    Raises:
        PPLError: if ``model`` is not a ``ppl.scan``, ``n`` is not a positive
            int (or not a multiple of the mesh's size), an observation lacks the
            time axis, a ``ppl.improper_uniform`` choice of the step is
            neither observed nor proposed, or the model subsamples; with
            ``check``, if at
            some time step every particle has weight zero (the error names the
            step and the observed addresses: those observations have zero
            probability under every particle) or a weight is NaN or +inf.
            These checks need concrete values: called inside ``jax.jit`` the
            filter cannot raise. There, after a step where every weight is
            zero the weights stay zero: from that step on ``SMCInfo.ess`` is
            NaN and ``SMCInfo.log_marginal_likelihood`` is ``-inf``, as is the
            final estimate; look at ``info`` outside ``jit`` to find the step.

    Examples:
        >>> @ppl.gen
        ... def step(z, _):
        ...     z = ppl.normal(0.9 * z, 1.0) @ "z"
        ...     ppl.normal(z, 0.5) @ "y"
        ...     return z, None
        >>> ys = jnp.array([0.5, 1.0, 0.2, -0.3, 0.1])
        >>> particles, info = ppl.inference.particle_filter(
        ...     jax.random.key(0), ppl.scan(step, length=5), (0.0, None), {"y": ys}, n=200)
        >>> particles.traces.choices["z"].shape   # (particles, time)
        (200, 5)
        >>> exact = -5.92   # log p(ys) by the Kalman filter
        >>> bool(abs(particles.log_marginal_likelihood - exact) < 0.3)
        True
    """
    if not isinstance(model, Scan):
        raise PPLError(
            f"particle_filter runs a model built with ppl.scan(step, length=T); got {model!r}. "
            "For other models use smc.init / smc.extend / smc.run."
        )
    n = check_count(n, "n", "particle_filter: the number of particles", "500")
    mesh = particle_mesh(mesh, "particle_filter")
    check_divisible(n, mesh, "n", "particle_filter")
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
    pa = proposal_args or _default_proposal_args
    _check_proper(model, observations, init_carry, xs, proposal, pa)
    opts = dict(
        model=model,
        n=n,
        proposal=proposal,
        pa=pa,
        ess_threshold=ess_threshold,
        scheme=scheme,
        return_traces=return_traces,
        T=T,
        mesh=mesh,
    )
    concrete = is_concrete((key, observations, args))
    key, observations, args = replicate((key, observations, args), mesh)
    if concrete and not progress:
        run = _compiled_filter(opts)
    else:
        run = functools.partial(_filter, **opts, progress=progress and concrete)
    particles, info, health = run(key, args, observations)
    if check:
        _check_steps(health, model, observations)
        check_weights(
            particles.log_weights,
            f"particle_filter on {model.name}",
            "Check the observations and the proposal's support.",
        )
    return particles, info


def _check_proper(model, observations, init_carry, xs, proposal, pa):
    """Refuse, as importance sampling does, a subsampled model and an improper
    choice of the step that is neither observed nor proposed. What the proposal
    proposes is read from its arguments at the first time step, shapes only
    (they have the same shapes at every step)."""
    args = (init_carry, xs)
    if proposal is None:  # the step's prior proposes every latent choice
        check_proper(model, observations, args)
        return

    def check_at_first_step(carry, x, obs_t):
        first = as_args(pa(carry, x, obs_t), "the proposal")
        check_proper(model, observations, args, proposal, first)

    def one_step(tree):  # the shapes of a slice along the leading (time) axis
        def sliced(v):
            aval = jax.typeof(v)
            return jax.ShapeDtypeStruct(aval.shape[1:], aval.dtype)

        return jax.tree.map(sliced, tree)

    jax.eval_shape(check_at_first_step, init_carry, one_step(xs), one_step(observations))


def _check_steps(health, model, observations):
    """Raise at the first time step whose weights are all zero or not finite
    (concrete values only: under ``jit`` there is nothing to raise from)."""
    if not is_concrete(health):
        return
    max_lw, bad = (np.asarray(h) for h in health)
    impossible, broken = np.flatnonzero(max_lw == -np.inf), np.flatnonzero(bad)
    addrs = ", ".join(fmt_addr(a) for a in observations.addresses()) or "none"
    if broken.size and (not impossible.size or broken[0] <= impossible[0]):
        t = int(broken[0])
        raise PPLError(
            f"particle_filter on {model.name}: at time step {t} (counting from 0) some log weights "
            f"are NaN or +inf. A density or the proposal produced a non-finite value there "
            f"(observed addresses: {addrs}). Check the observations at step {t} and the parameters "
            f"of the step's distributions."
        )
    if impossible.size:
        t = int(impossible[0])
        values = "; ".join(
            f"observations[{fmt_addr(a)}][{t}] = {np.asarray(observations[a][t]).tolist()!r:.60}"
            for a in observations.addresses()[:4]
        )
        raise PPLError(
            f"particle_filter on {model.name}: at time step {t} (counting from 0) every particle "
            f"has weight zero (log weight -inf): the observations at that step (observed "
            f"addresses: {addrs}) have zero probability under every particle. Likely causes: a "
            "value at that step outside its distribution's support, or a proposal (or prior) that "
            f"never reaches the states that could have produced it. The values there: "
            f"{values or 'none'}."
        )


def _filter(
    key,
    args,
    observations,
    *,
    model,
    n,
    proposal,
    pa,
    ess_threshold,
    scheme,
    return_traces,
    T,
    mesh=None,
    progress=False,
):
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
        do = wants_resampling(log_w, ess_threshold) if ess_threshold > 0 else jnp.zeros((), bool)

        def resample_idx():
            return resampling.get_scheme(scheme)(k1, log_w, n).astype(jnp.int32)

        idx = jax.lax.cond(do, resample_idx, lambda: jnp.arange(n, dtype=jnp.int32))
        carries = shard(take(carries, idx), mesh)
        log_z = jnp.where(do, log_z + log_mean_exp(log_w), log_z)
        log_w = jnp.where(do, jnp.zeros_like(log_w), log_w)
        trs, w = jax.vmap(lambda kk, c: propagate(kk, c, x, obs_t))(
            split_keys(k2, n, mesh), carries
        )
        carries = trs.retval[0]
        log_w = shard(log_w + w, mesh)
        info = SMCInfo(ess(log_w), do, log_z + log_mean_exp(log_w))
        health = (jnp.max(log_w), jnp.any(jnp.isnan(log_w) | (log_w == jnp.inf)))
        return (carries, log_w, log_z), (trs.choices, idx, info, health)

    carry0 = jax.tree.map(lambda c: jnp.broadcast_to(c, (n,) + jnp.shape(c)), init_carry)
    dtype = jnp.result_type(float)
    state0 = (shard(carry0, mesh), shard(jnp.zeros((n,), dtype), mesh), jnp.zeros((), dtype))
    keys = jax.random.split(key, T + 1)
    (_, log_w, log_z), (choices, ancestors, info, health) = _progress.scan(
        body, state0, (keys[:T], xs_t, observations), progress=progress, desc="particle_filter"
    )
    traces = None
    if return_traces:
        lineages = functools.partial(_lineages, model=model, args=args, n=n, mesh=mesh)
        # Run eagerly (with a bar), the reconstruction would dispatch op by op.
        traces = (jax.jit(lineages) if progress else lineages)(keys[T], choices, ancestors)
    return ParticleCollection(traces, log_w, log_z, mesh), info, health


def _compiled_filter(opts: dict):
    """Called outside jit, the filter runs compiled (the lineage reconstruction
    would otherwise dispatch op by op); every option is part of the cache key. The
    compiled filter lives in the model's cache store, so it goes with the model."""
    key = ("particle_filter",) + tuple((k, v) for k, v in opts.items() if k != "model")
    return store_of(opts["model"]).cached(key, lambda: jax.jit(functools.partial(_filter, **opts)))


def _horizon(model, xs) -> int:
    lengths = {jnp.shape(leaf)[0] for leaf in jax.tree.leaves(xs)}
    if model.length is not None:
        lengths.add(model.length)
    if len(lengths) != 1:
        raise PPLError(
            f"particle_filter: cannot tell the number of steps of {model.name} (got "
            f"{sorted(lengths)})."
        )
    return lengths.pop()


def _lineages(key, choices, ancestors, *, model, args, n, mesh=None):
    """Full scan traces along each final particle's ancestry."""

    def back(idx, inp):
        c_t, a_t = inp
        return a_t[idx], take(c_t, idx)

    _, path = jax.lax.scan(back, jnp.arange(n, dtype=jnp.int32), (choices, ancestors), reverse=True)
    per_particle = shard(jax.tree.map(lambda v: jnp.swapaxes(v, 0, 1), path), mesh)
    traces, _ = jax.vmap(lambda k, c: model.generate(k, c, args))(
        split_keys(key, n, mesh), per_particle
    )
    return shard(traces, mesh)
