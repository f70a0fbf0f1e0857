"""Prior and posterior predictive draws.

One rule for every kind of posterior: take draws of the latent choices, run
``model.generate(key, latents, args)`` with each (so every choice that is not
a latent, the observed ones included, is drawn afresh from the model), and
record the requested addresses (choices and ``ppl.deterministic`` values) and
the return value. ``args`` may differ from those the posterior was fitted
with (new covariates). The draws run under ``jax.vmap`` in one compiled call.

Where the latent draws come from:

* ``posterior=None``: the prior (the prior predictive), ``n`` draws;
* an ``ppl.inference.MCMCResult`` (default samples): every kept draw of
  every chain, in order (chain-major);
* an ``ppl.inference.ImportanceResult`` or
  ``ppl.inference.ParticleCollection``: ``n`` traces **resampled** by
  weight (multinomial; default ``n`` = the number of particles), so the
  result is always unweighted draws. The traces hold the observed values
  too, so ``observations`` (what inference conditioned on) says which choices
  are not latents. To keep the weights instead, pass the particles' latent
  choices as a choice map (below) and weight draw ``i`` by
  ``result.normalized_weights[i]``;
* a ``(guide, guide_args)`` pair (a fitted variational family, e.g. from
  ``vi.fit``: ``(guide, result.guide_args)``): ``n`` draws of the guide;
* a ``ppl.ChoiceMap`` of latent draws along a leading axis: one
  predictive draw per draw, in order.
"""

from __future__ import annotations

import functools
from typing import Any

import equinox as eqx
import jax
import numpy as np

from ppl._caches import store_of
from ppl._errors import PPLError, fmt_addr, fmt_addrs
from ppl._gfi import GenerativeFunction, as_args
from ppl.choices import ChoiceMap, select
from ppl.core import is_concrete
from ppl.inference import resampling
from ppl.inference._util import WeightedTraces, as_choices, as_key, check_count, take
from ppl.inference.chains import MCMCResult
from ppl.primitives import recorded


class PredictiveDraws(eqx.Module):
    """What ``predictive`` returns: ``n`` draws along a leading axis.

    ``draws[addr]`` reads ``draws.choices[addr]``; ``draws.n`` is the number
    of draws. A pytree (an equinox module), so it passes through ``jit``.

    Attributes:
        choices: a ``ppl.ChoiceMap`` of the requested addresses (random
            choices and ``ppl.deterministic`` values), each with a leading
            axis of size ``n``.
        retval: the model's return value of each draw (leading axis ``n``).

    Examples:
        >>> @ppl.gen
        ... def model():
        ...     mu = ppl.normal(0.0, 1.0) @ "mu"
        ...     return ppl.normal(mu, 1.0) @ "y"
        >>> draws = ppl.inference.predictive(jax.random.key(0), model, (), n=500)
        >>> draws.n, draws["y"].shape, draws.retval.shape
        (500, (500,), (500,))
        >>> bool(abs(draws["y"].std() - 2 ** 0.5) < 0.2)   # prior predictive sd: sqrt(2)
        True
    """

    choices: ChoiceMap
    retval: Any

    @property
    def n(self) -> int:
        """The number of draws."""
        leaves = jax.tree.leaves((self.choices, self.retval))
        return int(leaves[0].shape[0]) if leaves else 0

    def __getitem__(self, addr):
        return self.choices[addr]


def predictive(
    key,
    model: GenerativeFunction,
    args: tuple,
    posterior=None,
    *,
    n: int | None = None,
    addresses=None,
    observations=None,
) -> PredictiveDraws:
    """Prior or posterior predictive draws of ``model`` at ``args``.

    Each draw takes one draw of the latent choices from ``posterior`` and
    runs ``model.generate(key, latents, args)``, so every other choice (the
    observed ones included) is drawn afresh from the model given them, and
    records the requested addresses (choices and ``ppl.deterministic``
    values) and the return value. ``args`` may differ from those inference
    used (new covariates, another number of data points), as long as the
    latent choices keep their addresses and shapes. The draws run under
    ``vmap`` in one compiled call (compiled once per model and addresses);
    the cost is one run of the model per draw (plus the guide's, for a guide).

    Args:
        key: a ``jax.random`` key.
        model: the generative function.
        args: its arguments for the predictions (a tuple; may be new covariates).
        posterior: where the latent choices come from: ``None`` (the prior),
            an ``MCMCResult``, an ``ImportanceResult`` or ``ParticleCollection``
            (resampled by weight), a ``(guide, guide_args)`` pair, or a
            ``ChoiceMap`` of draws along a leading axis (see the module docstring).
        n: the number of draws: required for the prior and a guide; for
            particles, how many to resample (default: the number of particles);
            must be left out for MCMC samples and a choice map (one draw per
            posterior draw).
        addresses: the addresses to return (``"y"``, ``("sub", "z")``, or a
            list of them); default: every choice and deterministic value.
        observations: for particles only, what inference conditioned on
            (a choice map or dict; its addresses are drawn afresh).

    Returns:
        A ``PredictiveDraws`` with ``n`` draws.

    Raises:
        PPLError: ``n`` missing, not a positive int or given where it has no
            meaning; particles without ``observations``; MCMC samples from a
            custom ``collect``; draws without the leading draw axis (or with
            no latent choice); an address that is not a string or tuple of
            strings; a posterior of another type (an ``AutoGuide`` itself
            included: pass ``(auto.guide, result.guide_args)``); a requested
            address the model does not record.
        AddressError: as ``model.generate``, for a latent at an address the
            model does not make.

    Examples:
        >>> @ppl.gen
        ... def model(xs):
        ...     slope = ppl.normal(0.0, 1.0) @ "slope"
        ...     return ppl.normal(slope * xs, 0.5) @ "y"
        >>> xs, ys = jnp.array([0.0, 1.0, 2.0]), jnp.array([0.1, 1.2, 1.9])
        >>> prior = ppl.inference.predictive(jax.random.key(0), model, (xs,), n=1000,
        ...                                  addresses="y")
        >>> prior["y"].shape
        (1000, 3)
        >>> draws = ppl.ChoiceMap.d({"slope": jnp.array([0.5, 1.0])})  # two latent draws
        >>> ppl.inference.predictive(jax.random.key(1), model, (xs,), posterior=draws).n
        2
        >>> result = ppl.inference.importance(jax.random.key(2), model, {"y": ys}, (xs,), n=500)
        >>> new_xs = jnp.array([3.0, 4.0])   # predictions at new covariates
        >>> post = ppl.inference.predictive(jax.random.key(3), model, (new_xs,),
        ...                                 posterior=result, n=100, observations={"y": ys})
        >>> post["y"].shape
        (100, 2)
    """
    key = as_key(key)
    args = as_args(args, model.name)
    wanted = _addresses(addresses)
    shape = model.trace_shape(args)
    known = recorded(shape)
    missing = [a for a in wanted or () if known.get_submap(a).is_empty()]
    if missing:
        raise PPLError(
            f"predictive: {model.name} records nothing at {fmt_addrs(missing)}; its addresses are "
            f"{fmt_addrs(known.addresses(), limit=20)}. Ask for some of those (addresses=...)."
        )
    k_post, k_run = jax.random.split(key)
    latents, n = _latents(k_post, model, posterior, n, observations)
    # Deterministic values come with MCMC samples but are no choices: not constraints.
    chosen = set(shape.choices.addresses())
    derived = [a for a in known.addresses() if a not in chosen]
    if derived:
        latents = latents.without(select(*derived))
    keys = jax.random.split(k_run, n)
    if is_concrete((keys, latents, args)):
        run = store_of(model).cached(
            ("predictive", wanted),
            lambda: jax.jit(functools.partial(_draws, model=model, wanted=wanted)),
        )
    else:
        run = functools.partial(_draws, model=model, wanted=wanted)
    choices, retval = run(keys, latents, args)
    return PredictiveDraws(choices, retval)


def _addresses(addresses) -> tuple | None:
    if addresses is None:
        return None
    if isinstance(addresses, (str, tuple)) and not (
        isinstance(addresses, tuple) and addresses and isinstance(addresses[0], tuple)
    ):
        addresses = [addresses]
    out = []
    for a in addresses:
        if not isinstance(a, (str, tuple)):
            raise PPLError(
                f"predictive: addresses must be strings or tuples of strings ('y', ('sub', 'z')); "
                f"got {a!r}."
            )
        out.append(a)
    return tuple(out)


def _draws(keys, latents, args, *, model, wanted):
    def one(k, lat):
        tr, _ = model.generate(k, lat, args)
        rec = recorded(tr)
        return (rec if wanted is None else rec.filter(select(*wanted))), tr.retval

    return jax.vmap(one)(keys, latents)


def _latents(key, model, posterior, n, observations):
    """``(latent draws along a leading axis, their number)``."""
    if posterior is None:
        return ChoiceMap.empty(), _required(n, "the prior predictive")
    if isinstance(posterior, MCMCResult):
        _no_n(n, "MCMC samples")
        samples = posterior.samples
        if not isinstance(samples, ChoiceMap):
            raise PPLError(
                "predictive: these MCMC samples come from a custom collect, so they are not the "
                "latent choices. Run ppl.inference.run_mcmc without collect= (its default samples "
                "are the latent choices), or pass a ChoiceMap of latent draws as the posterior."
            )
        return _flatten_chains(samples), _count(samples, 2)
    if isinstance(posterior, WeightedTraces):
        if observations is None:
            raise PPLError(
                "predictive: weighted particles hold the observed values as well as the latent "
                "choices; pass observations= (the choice map inference conditioned on), so those "
                "are drawn afresh."
            )
        size = int(posterior.log_weights.shape[0])
        n = size if n is None else check_count(n, "n", "predictive: the number of draws")
        idx = resampling.get_scheme("multinomial")(key, posterior.log_weights, n)
        traces = take(posterior.traces, idx)
        observed = as_choices(observations).addresses()
        choices = traces.choices
        return (choices.without(select(*observed)) if observed else choices), n
    if isinstance(posterior, ChoiceMap):
        _no_n(n, "a choice map of draws")
        return posterior, _count(posterior, 1)
    if (
        isinstance(posterior, tuple)
        and len(posterior) == 2
        and isinstance(posterior[0], GenerativeFunction)
    ):
        guide, guide_args = posterior
        n = _required(n, "draws from a guide")
        guide_args = as_args(guide_args, guide.name)
        return compiled_draws(guide, n)(key, guide_args), n
    if hasattr(posterior, "guide") and hasattr(posterior, "guide_args"):
        raise PPLError(
            f"predictive: got a {type(posterior).__name__}, whose guide_args are the guide's "
            "initial parameters, not fitted ones. Pass the guide with the parameters vi.fit "
            "returned: posterior=(auto.guide, result.guide_args)."
        )
    raise PPLError(
        f"predictive: the posterior must be None (the prior), an MCMCResult, an ImportanceResult "
        f"or ParticleCollection, a (guide, guide_args) pair or a ChoiceMap of draws; got "
        f"{type(posterior).__name__}."
    )


def compiled_draws(gen_fn, n: int):
    """``draw(key, args)``: the choices of ``n`` independent runs of ``gen_fn``,
    vectorised and compiled once per generative function and ``n`` (kept in its
    cache store, so ``ppl.clear_caches`` frees it).

    Args:
        gen_fn: a generative function (a guide, a model).
        n: the number of draws (a Python int).

    Returns:
        A compiled function of a key and ``gen_fn``'s arguments returning a
        ``ppl.ChoiceMap`` whose values have a leading axis of ``n``.

    Examples:
        >>> draws = compiled_draws(guide, 1000)(jax.random.key(0), guide_args)
    """

    def build():
        def draw(key, args):
            keys = jax.random.split(key, n)
            return jax.vmap(lambda k: gen_fn.simulate(k, args).choices)(keys)

        return jax.jit(draw)

    return store_of(gen_fn).cached(("compiled_draws", n), build)


def _required(n, what) -> int:
    if n is None:
        raise PPLError(f"predictive: {what} needs n=, the number of draws (e.g. n=1000).")
    return check_count(n, "n", "predictive: the number of draws")


def _no_n(n, what) -> None:
    if n is not None:
        raise PPLError(
            f"predictive: with {what} there is one predictive draw per posterior draw, so n= has "
            "no meaning; leave it out (select draws yourself to use fewer)."
        )


def _count(choices: ChoiceMap, axes: int) -> int:
    leaves = jax.tree.leaves(choices)
    if not leaves:
        raise PPLError(
            "predictive: the posterior draws hold no latent choice; a model without latent "
            "choices has only a prior predictive (posterior=None, n=...)."
        )
    shape = np.shape(leaves[0])
    if len(shape) < axes:
        at = choices.addresses()[0]
        raise PPLError(
            f"predictive: the draws at {fmt_addr(at)} have shape {shape}, without the leading "
            f"draw axis{'es (chains, draws)' if axes == 2 else ''}; stack the draws along axis 0."
        )
    return int(np.prod(shape[:axes]))


def _flatten_chains(samples: ChoiceMap) -> ChoiceMap:
    return jax.tree.map(lambda x: x.reshape((-1, *x.shape[2:])), samples)


__all__ = ["PredictiveDraws", "predictive"]
