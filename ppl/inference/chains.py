"""The MCMC driver: several chains under ``vmap``, warm-up, progress and warnings.

Chains start from ``model.generate(key, observations, args)`` (or given
traces), run ``n_warmup`` adaptation steps and ``n_samples`` kept steps inside
``lax.scan``, and record ``collect(trace)`` (by default the latent choices)
and the kernel's statistics at every kept step. The draws and their
diagnostics are an ``ppl.inference.mcmc_result.MCMCResult``. With
``mesh=``, the chains are split over the devices of a one-axis mesh (each
device runs its share of the chains; the model's arguments and observations
are replicated), with the same draws as on one device for the same key.
"""

from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np

from ppl._caches import store_of
from ppl._errors import PPLError, fmt_addrs
from ppl._gfi import as_args
from ppl.inference._progress import chunk_length, progress_bar
from ppl.inference._sharding import check_divisible, particle_mesh, replicate, shard, split_keys
from ppl.inference._util import as_choices, as_key, selection_of
from ppl.inference.mcmc_result import MCMCResult, SamplerWarning, check
from ppl.primitives import has_deterministic, recorded


class _Latent:
    """The default collect: the latent choices of a state (all but the observed).
    Equal for the same observed addresses, so repeated runs reuse the compiled chain."""

    def __init__(self, observations):
        self.observed = tuple(observations.addresses())
        self.obs_sel = selection_of(observations)

    def __call__(self, kernel, state):
        if has_deterministic(state.trace):  # static: the trace's structure
            # ppl.deterministic values are functions of the current choices: read them
            # off the up-to-date trace (NUTS keeps its position outside it).
            return recorded(kernel.materialize(state).trace).without(self.obs_sel)
        return kernel.current_choices(state).without(self.obs_sel)

    def __eq__(self, other):
        return type(other) is _Latent and other.observed == self.observed

    def __hash__(self):
        return hash(self.observed)


class _UserCollect:
    """A user's ``collect(trace)`` as a collect of ``(kernel, state)``; equal for the
    same user function, so repeated runs reuse the compiled chain."""

    def __init__(self, collect):
        self.collect = collect

    def __call__(self, kernel, state):
        return self.collect(kernel.materialize(state).trace)

    def __eq__(self, other):
        return type(other) is _UserCollect and other.collect == self.collect

    def __hash__(self):
        return hash(self.collect)


def _compiled(kernel, model, settings, collect, observed, from_prior, mesh):
    """``(start, advance)``: the chains' initial states and record buffers, and
    ``chunk`` steps of every chain from a given step index, each compiled once.
    On a mesh, their outputs are constrained to the chains' layout, so each
    chunk's output is laid out as its input and one compilation serves all."""
    n_samples, n_warmup, thin, chunk = settings
    # Kept in the model's cache store: the compiled chain calls the model, so it goes with it.
    key = ("chains.run", kernel, settings, collect, tuple(observed.addresses()), from_prior, mesh)
    fns = store_of(model).get(key)
    if fns is not None:
        return fns
    total = n_warmup + n_samples * thin

    def record(state):
        return collect(kernel, state), state.accept_prob, kernel.stats(state)

    def start(key, latent, observations, args):
        # Building the trace inside the vmapped chain keeps the arguments and
        # observations unbatched: one copy shared by all chains, as in numpyro,
        # rather than one copy per chain carried through the loop. From the
        # prior, the start is drawn here too.
        constraints = observations if from_prior else latent | observations
        trace, _ = model.generate(key, constraints, args)
        state = kernel.init(trace, n_warmup, selection_of(observed))
        buffers = jax.tree.map(
            lambda x: jnp.zeros((n_samples,) + jnp.shape(x), jnp.result_type(x)), record(state)
        )
        return state, buffers, trace.score

    def advance(key, state, buffers, first):
        # Step i uses the key fold_in(key, i), so the draws do not depend on how
        # the run is cut into chunks. Every step writes its record at the slot of
        # the kept sample it belongs to: warm-up writes land in slot 0 and are
        # overwritten by later steps.
        def one_step(carry, i):
            state, buffers = carry
            state = kernel.step(jax.random.fold_in(key, i), state)
            slot = jnp.clip((i - n_warmup) // thin, 0, n_samples - 1)
            buffers = jax.tree.map(
                lambda b, r: jax.lax.dynamic_update_index_in_dim(b, r, slot, 0),
                buffers,
                record(state),
            )
            return state, buffers

        def body(carry, i):
            if total % chunk == 0:
                return one_step(carry, i), None
            # The last chunk runs past the end: its extra steps do nothing (the
            # index is the same for every chain, so this stays a branch under vmap).
            return jax.lax.cond(i < total, one_step, lambda c, _: c, carry, i), None

        (state, buffers), _ = jax.lax.scan(body, (state, buffers), first + jnp.arange(chunk))
        return state, buffers, kernel.materialize(state)

    def start_chains(*inputs):
        starts = jax.vmap(start, in_axes=(0, None if from_prior else 0, None, None))
        return shard(starts(*inputs), mesh)

    def advance_chains(*inputs):
        return shard(jax.vmap(advance, in_axes=(0, 0, 0, None))(*inputs), mesh)

    fns = (jax.jit(start_chains), jax.jit(advance_chains, donate_argnums=(1, 2)))
    store_of(model)[key] = fns
    return fns


def _sample(advance, keys, state, buffers, total, chunk, progress):
    """Run the compiled chains chunk by chunk, advancing a progress bar."""
    bar = progress_bar(total, progress, "mcmc")
    final = state
    for first in range(0, total, chunk):
        state, buffers, final = advance(keys, state, buffers, first)
        if bar is not None:
            jax.block_until_ready(buffers)
            bar.update(min(chunk, total - first))
    if bar is not None:
        bar.close()
    samples, accept, stats = buffers
    return MCMCResult(samples, accept, final, stats)


def init_traces(key, model, observations, args, n_chains, attempts=20):
    """One trace per chain from ``model.generate`` (the prior on latent choices),
    redrawing chains whose density is zero or NaN up to ``attempts`` times.

    Args:
        key: a ``jax.random`` key.
        model: the generative function.
        observations: a choice map (or dict) of observed values.
        args: the model's arguments (a tuple).
        n_chains: the number of traces.
        attempts: how many times to redraw.

    Returns:
        Traces batched along a leading chain axis, all of finite density.

    Raises:
        PPLError: if some chain still has a zero or NaN density after ``attempts`` draws.

    Examples:
        >>> traces = init_traces(jax.random.key(0), model, {"y": 0.5}, (), 4)
    """
    generate = store_of(model).cached(
        ("chains.init",),
        lambda: jax.jit(jax.vmap(lambda k, o, a: model.generate(k, o, a), in_axes=(0, None, None))),
    )
    observations = as_choices(observations)
    traces = None
    for k in jax.random.split(key, attempts):
        fresh, _ = generate(jax.random.split(k, n_chains), observations, args)
        if traces is None:
            traces = fresh
        else:
            bad = ~np.isfinite(np.asarray(traces.score))
            traces = jax.tree.map(
                lambda old, new: jnp.where(bad.reshape((-1,) + (1,) * (old.ndim - 1)), new, old),
                traces,
                fresh,
            )
        scores = np.asarray(traces.score)
        if np.all(np.isfinite(scores)):
            return traces
    raise PPLError(
        f"{int((~np.isfinite(scores)).sum())} of {n_chains} initial traces of {model.name} have a "
        f"non-finite log density (zero probability or NaN) after {attempts} draws from the prior. "
        "Check that the observations are in the support of their distributions, or pass traces= "
        "with valid starting traces."
    )


def run(
    key,
    kernel,
    model,
    args,
    observations=None,
    n_samples=1000,
    n_warmup=500,
    n_chains=4,
    thin=1,
    collect: Callable | None = None,
    traces=None,
    init=None,
    progress: bool = True,
    warn: bool = True,
    mesh=None,
) -> MCMCResult:
    """Run ``n_chains`` chains of ``kernel`` on ``model`` given ``observations``
    (exported as ``ppl.inference.run_mcmc``).

    Each chain starts from ``model.generate(key, observations, args)`` (the
    prior on the latent choices; chains that start at zero density are
    redrawn), or from ``traces`` or ``init``. The chains run under ``vmap``
    in compiled functions (compiled once per kernel, model, settings and
    shapes, so a second identical call compiles nothing): ``n_warmup``
    adaptation steps, then ``n_samples * thin`` steps of which every
    ``thin``-th is kept. With a progress bar, the steps run in about twenty
    compiled chunks (the host only counts between them); without, in one.
    The cost is ``n_chains * (n_warmup + n_samples * thin)`` kernel steps,
    plus the diagnostics of ``warn`` on the host.

    Args:
        key: a ``jax.random`` key.
        kernel: an MCMC kernel (``mh``, ``mala``, ``hmc``, ``nuts``, a composition, ...).
        model: the generative function.
        args: the model's arguments (a tuple).
        observations: a choice map (or dict) of observed values; a kernel
            built without a selection moves every other choice.
        n_samples: the number of kept draws per chain.
        n_warmup: the number of adaptation steps per chain.
        n_chains: the number of chains.
        thin: keep every ``thin``-th draw.
        collect: ``collect(trace)`` picks what to record at each kept step
            (default: the choice map of the latent choices, with the values
            of ``ppl.deterministic`` sites, as ``ppl.recorded`` reads them).
        traces: starting traces batched along chains (only their latent
            choices are used); default: draws from the prior, redrawn where the
            density is zero.
        init: a starting point for every chain instead: a dict or choice map of
            values of some latent choices (the others drawn from the prior per
            chain), e.g. ``vi.initial_values(key, model, observations, args)``
            (the median of prior draws, as the automatic guides start) or a
            fitted guide's point.
        progress: show a progress bar (tqdm) of the steps.
        warn: after the run, warn (``SamplerWarning``) about divergent
            transitions, R-hat above 1.01 and E-BFMI below 0.3, naming the
            addresses (see ``ppl.inference.mcmc_result.check``).
        mesh: a one-axis ``jax.sharding.Mesh`` to split the chains over (the
            number of chains a multiple of its size), or ``None`` (one device).
            The draws equal the one-device run's for the same key, within float
            rounding; the result's arrays are split over the mesh's devices.

    Returns:
        An ``MCMCResult``: the draws, acceptance probabilities, sampler
        statistics (``result.stats``; for NUTS divergences, tree depth, step
        size, energy) and final states.

    Raises:
        PPLError: if the kernel cannot move the model's choices (empty or
            observed selection, discrete choices under a gradient kernel, a
            subsampled ``ppl.vmap``, ...), no starting trace of finite density
            is found, ``init`` has zero density, gives an observed value or is
            given with ``traces``, a count is not an int of at least 1
            (``n_warmup``: at least 0), or ``mesh`` is not a one-axis mesh
            whose size divides the number of chains (``n_chains``, or the
            number of ``traces``).
        AddressError: if an observation or an ``init`` value is at an address
            the model does not make, or ``mh`` resamples a
            ``ppl.improper_uniform`` choice from its prior.

    Examples:
        >>> @ppl.gen
        ... def model(xs):
        ...     slope = ppl.normal(0.0, 1.0) @ "slope"
        ...     return ppl.normal(slope * xs, 0.5) @ "y"
        >>> xs = jnp.array([-1.0, 0.0, 1.0])
        >>> result = ppl.inference.run_mcmc(
        ...     jax.random.key(0), ppl.inference.hmc(step_size=0.1, n_steps=3), model, (xs,),
        ...     {"y": jnp.array([-1.0, 0.1, 0.9])}, n_samples=300, n_warmup=200, n_chains=2,
        ...     progress=False)
        >>> result.samples["slope"].shape   # (chains, draws)
        (2, 300)
        >>> s = result.summary()["slope"]   # exact posterior mean 7.6 / 9 = 0.84
        >>> bool(abs(s["mean"] - 0.84) < 0.1), bool(s["rhat"] < 1.05)
        (True, True)
    """
    key, observations = as_key(key), as_choices(observations)
    args = as_args(args, model.name)
    _check_counts(n_samples=n_samples, n_warmup=n_warmup, n_chains=n_chains, thin=thin)
    mesh = particle_mesh(mesh, "run_mcmc")
    if traces is None:
        check_divisible(n_chains, mesh, "n_chains", "run_mcmc")
    total = n_warmup + n_samples * thin
    chunk = chunk_length(total, progress)
    settings = (n_samples, n_warmup, thin, chunk)
    k_init, k_start, k_steps = jax.random.split(key, 3)
    collect = _Latent(observations) if collect is None else _UserCollect(collect)
    state = None
    if init is not None:
        traces = _traces_at(k_init, model, observations, args, n_chains, init, traces)
    if traces is None:
        start, advance = _compiled(kernel, model, settings, collect, observations, True, mesh)
        observations, args = replicate((observations, args), mesh)
        state, buffers, init_score = start(
            split_keys(k_start, n_chains, mesh), None, observations, args
        )
        if not np.all(np.isfinite(np.asarray(init_score))):
            # Some chain starts where the density is zero: redraw starts on the host.
            traces, state = init_traces(k_init, model, observations, args, n_chains), None
    if state is None:
        n_chains = jax.tree.leaves(traces)[0].shape[0]
        check_divisible(n_chains, mesh, "the number of starting traces", "run_mcmc")
        start, advance = _compiled(kernel, model, settings, collect, observations, False, mesh)
        obs_sel = selection_of(observations)
        # Per chain under vmap: some traces (ppl.switch's) read their choices per element.
        latent = shard(jax.vmap(lambda tr: tr.choices.without(obs_sel))(traces), mesh)
        observations, args = replicate((observations, args), mesh)
        state, buffers, _ = start(split_keys(k_start, n_chains, mesh), latent, observations, args)
    keys = split_keys(k_steps, n_chains, mesh)
    result = _sample(advance, keys, state, buffers, total, chunk, progress)
    if warn:
        check(result)
    return result


def _traces_at(key, model, observations, args, n_chains, init, traces):
    """Starting traces at the point ``init`` (the rest drawn per chain)."""
    if traces is not None:
        raise PPLError(
            "run_mcmc: pass either traces= (one per chain) or init= (a point), not both."
        )
    point = as_choices(init)
    clash = [a for a in point.addresses() if a in selection_of(observations)]
    if clash:
        raise PPLError(
            f"run_mcmc: init gives a value for the observed choice {fmt_addrs(clash)}; an observed "
            "value comes from observations. Give init values of latent choices only."
        )
    keys = jax.random.split(key, n_chains)
    traces, _ = jax.vmap(lambda k: model.generate(k, point | observations, args))(keys)
    if not np.all(np.isfinite(np.asarray(traces.score))):
        raise PPLError(
            f"run_mcmc: the starting point init has zero density (or NaN) under {model.name} "
            f"(at {fmt_addrs(point.addresses())}, with the other latent choices from the prior). "
            "Give values inside the supports, e.g. "
            "vi.initial_values(key, model, observations, args)."
        )
    return traces


def _check_counts(**counts):
    for name, n in counts.items():
        low = 0 if name == "n_warmup" else 1
        if not isinstance(n, (int, np.integer)) or isinstance(n, bool) or n < low:
            raise PPLError(
                f"run_mcmc: {name} must be an int of at least {low}; got {n!r}. Pass it as a "
                f"Python int (e.g. {name}={max(low, 1) * 100})."
            )


__all__ = ["MCMCResult", "SamplerWarning", "init_traces", "run"]
