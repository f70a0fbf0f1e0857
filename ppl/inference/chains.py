"""The MCMC driver: several chains under ``vmap``, warm-up, and diagnostics.

Chains start from ``model.generate(key, observations, args)`` (or given
traces), run ``n_warmup`` adaptation steps and ``n_samples`` kept steps inside
one ``lax.scan`` each, and record ``collect(trace)`` (by default the latent
choices) at every kept step. Diagnostics use numpyro's split R-hat and
effective sample size.
"""

from __future__ import annotations

from typing import Any, Callable

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from numpyro.diagnostics import effective_sample_size, split_gelman_rubin

from ppl._caches import store_of
from ppl._errors import PPLError, fmt_addr
from ppl._gfi import as_args
from ppl.choices import ChoiceMap
from ppl.inference._util import as_choices, as_key, selection_of
from ppl.primitives import has_deterministic, recorded


class MCMCResult(eqx.Module):
    """The draws of :func:`run`.

    Attributes:
        samples: a pytree (by default a :class:`~ppl.ChoiceMap` of the latent
            choices and the ``ppl.deterministic`` values) whose leaves have
            leading axes ``(chains, draws)``.
        accept_prob: the acceptance probability of each step, ``(chains, draws)``.
        final: the last state of each chain (batched along chains).

    The diagnostics (:meth:`ess`, :meth:`rhat`, :meth:`summary`) are keyed by
    the addresses as written in the model: ``"mu"`` for a top-level choice,
    the tuple ``("sub", "z")`` for a choice made inside a call at ``"sub"``.
    For samples from a custom ``collect``, the keys are the pytree's own keys
    (dict keys, tuple indices, attribute names; a tuple of them for nested
    leaves, ``"value"`` for a bare array).
    """

    samples: Any
    accept_prob: jax.Array
    final: Any

    def _flat(self):
        if isinstance(self.samples, ChoiceMap):
            return {
                _key_of_address(a): np.asarray(self.samples[a]) for a in self.samples.addresses()
            }
        leaves = jax.tree_util.tree_leaves_with_path(self.samples)
        return {_key_of_path(p): np.asarray(x) for p, x in leaves}

    @property
    def acceptance_rate(self):
        """Mean acceptance probability per chain (an array of shape ``(chains,)``)."""
        return np.asarray(self.accept_prob).mean(axis=1)

    def ess(self) -> dict:
        """Effective sample size per address (numpyro's estimator, over all chains).

        Returns:
            A dict from address (``"mu"``, ``("sub", "z")``) to an array with the
            shape of one draw of that choice.

        Example:
            >>> result.ess()["mu"]
        """
        return {k: effective_sample_size(_float(v)) for k, v in self._flat().items()}

    def rhat(self) -> dict:
        """Split Gelman-Rubin R-hat per address (numpyro's estimator).

        Returns:
            A dict from address to an array with the shape of one draw.

        Raises:
            AssertionError: from numpyro, with fewer than 2 draws per chain.

        Example:
            >>> max(float(np.max(r)) for r in result.rhat().values()) < 1.01
        """
        return {k: split_gelman_rubin(_float(v)) for k, v in self._flat().items()}

    def summary(self) -> dict:
        """Per address: mean, sd, MCSE of the mean (sd / sqrt(ESS)), ESS and R-hat.

        Returns:
            A dict from address to ``dict(mean=, sd=, mcse=, ess=, rhat=)``,
            each an array with the shape of one draw.

        Example:
            >>> s = result.summary()["mu"]
            >>> abs(s["mean"] - exact) < 5 * s["mcse"]
        """
        out = {}
        for k, v in self._flat().items():
            v = _float(v)
            ess = effective_sample_size(v)
            sd = v.std(axis=(0, 1))
            out[k] = dict(
                mean=v.mean(axis=(0, 1)),
                sd=sd,
                mcse=sd / np.sqrt(ess),
                ess=ess,
                rhat=split_gelman_rubin(v),
            )
        return out

    def print_summary(self, file=None) -> None:
        """Print :meth:`summary` as a table (one row per scalar element) and the
        acceptance rate per chain.

        Args:
            file: where to print (default ``sys.stdout``).
        """
        rows = []
        for k, s in self.summary().items():
            for j in np.ndindex(np.shape(s["mean"])):
                name = _show(k) + (str(list(j)) if j else "")
                rows.append(
                    (
                        name,
                        *(
                            float(np.asarray(s[c])[j])
                            for c in ("mean", "sd", "mcse", "ess", "rhat")
                        ),
                    )
                )
        width = max([len(r[0]) for r in rows] + [8])
        print(
            f"{'':{width}} {'mean':>10} {'sd':>10} {'mcse':>10} {'ess':>9} {'r_hat':>7}", file=file
        )
        for name, m, sd, se, e, r in rows:
            print(f"{name:{width}} {m:10.4f} {sd:10.4f} {se:10.4f} {e:9.1f} {r:7.3f}", file=file)
        print(f"acceptance rate per chain: {np.round(self.acceptance_rate, 3).tolist()}", file=file)

    def to_arviz(self):
        """An ``arviz.InferenceData`` of the draws; a nested address becomes the
        variable ``"sub/z"``.

        Returns:
            ``arviz.InferenceData`` with ``posterior`` and ``sample_stats`` groups.

        Raises:
            ImportError: if arviz (an optional dependency) is not installed.
        """
        try:
            # an optional dependency, not installed where the checker runs
            import arviz  # pyright: ignore[reportMissingImports]
        except ImportError as e:
            raise ImportError("to_arviz needs arviz: pip install arviz") from e
        posterior = {_show(k, "/"): _float(v) for k, v in self._flat().items()}
        stats = {"acceptance_rate": np.asarray(self.accept_prob)}
        # ArviZ 1.x takes {group: {variable: array}}; 0.x took the groups as keywords.
        if int(arviz.__version__.split(".")[0]) >= 1:
            return arviz.from_dict({"posterior": posterior, "sample_stats": stats})
        return arviz.from_dict(posterior=posterior, sample_stats=stats)


def _key_of_address(addr: tuple):
    return addr[0] if len(addr) == 1 else tuple(addr)


def _key_of_path(path):
    parts = []
    for entry in path:
        for attr in ("key", "idx", "name"):
            if hasattr(entry, attr):
                parts.append(getattr(entry, attr))
                break
        else:
            parts.append(str(entry))
    if not parts:
        return "value"
    return parts[0] if len(parts) == 1 else tuple(parts)


def _show(key, sep=None) -> str:
    if isinstance(key, tuple):
        return sep.join(str(p) for p in key) if sep else fmt_addr(key)
    return str(key)


def _float(v):
    return np.asarray(v, dtype=np.float64)


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


def _compiled(kernel, model, n_samples, n_warmup, thin, collect, observed, from_prior):
    # Kept in the model's cache store: the compiled chain calls the model, so it goes with it.
    key = (
        "chains.run",
        kernel,
        n_samples,
        n_warmup,
        thin,
        collect,
        tuple(observed.addresses()),
        from_prior,
    )
    fn = store_of(model).get(key)
    if fn is not None:
        return fn

    def chain(key, latent, observations, args):
        # Building the trace inside the vmapped chain keeps the arguments and
        # observations unbatched: one copy shared by all chains, as in numpyro,
        # rather than one copy per chain carried through the loop. From the
        # prior, the start is drawn here too, so a run is one call.
        k_gen, key = jax.random.split(key)
        constraints = observations if from_prior else latent | observations
        trace, _ = model.generate(k_gen, constraints, args)
        init_score = trace.score
        # One scan over warm-up and kept steps (one compiled copy of the kernel):
        # every step writes its record at the slot of the kept sample it belongs
        # to, so warm-up writes land in slot 0 and are overwritten by later steps.
        state = kernel.init(trace, n_warmup, selection_of(observed))
        record = (collect(kernel, state), state.accept_prob)
        buffers = jax.tree.map(
            lambda x: jnp.zeros((n_samples,) + jnp.shape(x), jnp.result_type(x)), record
        )

        def body(carry, inp):
            state, buffers = carry
            i, k = inp
            state = kernel.step(k, state)
            slot = jnp.clip((i - n_warmup) // thin, 0, n_samples - 1)
            rec = (collect(kernel, state), state.accept_prob)
            buffers = jax.tree.map(
                lambda b, r: jax.lax.dynamic_update_index_in_dim(b, r, slot, 0), buffers, rec
            )
            return (state, buffers), None

        total = n_warmup + n_samples * thin
        steps = (jnp.arange(total), jax.random.split(key, total))
        (state, (samples, accept)), _ = jax.lax.scan(body, (state, buffers), steps)
        return kernel.materialize(state), samples, accept, init_score

    fn = jax.jit(jax.vmap(chain, in_axes=(0, None if from_prior else 0, None, None)))
    store_of(model)[key] = fn
    return fn


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

    Example:
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
) -> MCMCResult:
    """Run ``n_chains`` chains of ``kernel`` on ``model`` given ``observations``.

    The chains run under ``vmap`` inside one compiled function (compiled once
    per kernel, model, settings and shapes): ``n_warmup`` adaptation steps,
    then ``n_samples * thin`` steps of which every ``thin``-th is kept.

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
            of ``ppl.deterministic`` sites, as :func:`ppl.recorded` reads them).
        traces: starting traces batched along chains (only their latent
            choices are used); default: draws from the prior, redrawn where the
            density is zero.

    Returns:
        An :class:`MCMCResult`.

    Raises:
        PPLError: if the kernel cannot move the model's choices (empty or
            observed selection, discrete choices under a gradient kernel, ...),
            or no starting trace of finite density is found.

    Example:
        >>> result = run(jax.random.key(0), nuts(), model, (xs,), {"y": ys}, n_samples=500)
        >>> result.summary()["mu"]["mean"]
    """
    key, observations = as_key(key), as_choices(observations)
    args = as_args(args, model.name)
    k_init, k_run = jax.random.split(key)
    collect = _Latent(observations) if collect is None else _UserCollect(collect)
    if traces is None:
        fn = _compiled(kernel, model, n_samples, n_warmup, thin, collect, observations, True)
        final, samples, accept, init_score = fn(
            jax.random.split(k_run, n_chains), None, observations, args
        )
        if np.all(np.isfinite(np.asarray(init_score))):
            return MCMCResult(samples, accept, final)
        # Some chain started where the density is zero: redraw starts on the host.
        traces = init_traces(k_init, model, observations, args, n_chains)
    n_chains = jax.tree.leaves(traces)[0].shape[0]
    fn = _compiled(kernel, model, n_samples, n_warmup, thin, collect, observations, False)
    obs_sel = selection_of(observations)
    # Per chain under vmap: some traces (ppl.switch's) read their choices per element.
    latent = jax.vmap(lambda tr: tr.choices.without(obs_sel))(traces)
    final, samples, accept, _ = fn(jax.random.split(k_run, n_chains), latent, observations, args)
    return MCMCResult(samples, accept, final)
