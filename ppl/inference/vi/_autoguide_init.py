"""Reading a model for an automatic guide: its latent choices from prior draws
(checked to be continuous), their order in the program, and a starting point.

Draws come from ``ppl.inference.chains.init_traces`` (the MCMC driver's:
draws of zero density are redrawn), so the guides and MCMC start the same
way; ``initial_values`` is the public face.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from ppl._errors import PPLError, fmt_addr, fmt_addrs
from ppl._gfi import as_args, as_choices, as_key
from ppl.choices import ChoiceMap
from ppl.distributions import Distribution
from ppl.gen import StaticGenerativeFunction
from ppl.inference._sites import Site, sites
from ppl.inference._subsampling import subsampled_addresses
from ppl.inference._util import selection_of
from ppl.inference.chains import init_traces
from ppl.inference.unconstrained import unconstrain
from ppl.inference.vi._autoguide_base import Latent, Layout
from ppl.transforms.adev.strategies import WithStrategy

INIT_STRATEGIES = ("median", "mean", "sample")


def _check_latents(trace, latent: ChoiceMap, caller: str) -> None:
    if latent.is_empty():
        raise PPLError(
            f"{caller}: {trace.gen_fn.name} has no latent choice left once the observations are "
            "given, so there is nothing for a guide to approximate. Check the observations' "
            "addresses."
        )
    marked = sites(trace, selection_of(latent))
    for addr in latent.addresses():
        site = marked[addr]
        if not isinstance(site, Site):
            raise PPLError(
                f"{caller}: the latent choice {fmt_addr(addr)} is not made by a distribution an "
                f"automatic guide can see ({type(site).__name__}); write a guide by hand."
            )
        if getattr(site.dist.support, "is_discrete", False):
            raise PPLError(
                f"{caller}: the latent choice {fmt_addr(addr)} is drawn from {site.name}, a "
                "discrete distribution, and automatic guides are over continuous choices. Sum "
                f"it out of the model (ppl.sum_out(model, ppl.select({fmt_addr(addr)})), called "
                "at an address of an @ppl.gen model), observe it, or write a guide by hand that "
                f"samples {fmt_addr(addr)} (e.g. with ppl.categorical)."
            )


def prior_draws(key, model, observations, args, num_draws: int, caller: str):
    """``num_draws`` traces of ``model`` with the observations given, all of finite
    density (chains' ``ppl.inference.chains.init_traces``: draws from the
    prior, redrawn where the density is zero or NaN), and their latent part.

    Args:
        key: a ``jax.random`` key.
        model: the generative function.
        observations: a choice map (or dict) of observed values.
        args: the model's arguments (a tuple).
        num_draws: how many traces.
        caller: the public function's name, for messages.

    Returns:
        ``(traces, first)``: the traces batched along a leading axis, and the
        first of them.

    Raises:
        PPLError: if no draw of finite density is found, or a latent choice is
            discrete or not made by a distribution.

    Examples:
        >>> traces, first = prior_draws(key, model, {"y": 1.0}, (), 15, "auto_normal")
    """
    try:
        traces = init_traces(key, model, observations, args, num_draws)
    except PPLError as err:
        raise PPLError(
            f"{caller}: {err} An automatic guide can also start from a point you give: "
            "init={'address': value, ...}."
        ) from None
    first = jax.tree.map(lambda x: x[0], traces)
    latent = first.choices.without(selection_of(observations))
    _check_latents(first, latent, caller)
    return traces, first


def program_order(model, args, trace, paths: list) -> list:
    """``paths`` (latent addresses) in the order the model's program makes them.

    Choice maps that went through JAX's pytree functions list their addresses
    sorted; the guides' blocks must follow the program (a block's conditional
    sees the blocks before it), so the order is read by running the program.
    Choices inside a call of a combinator keep their relative order.

    Args:
        model: the model; anything but an ``@ppl.gen`` function keeps ``paths``.
        args: its arguments.
        trace: a trace of it, whose values the run takes.
        paths: the latent addresses.

    Returns:
        The same addresses, reordered.

    Examples:
        >>> program_order(model, (), trace, [("b",), ("a",)])  # doctest: +SKIP
        [('a',), ('b',)]
    """
    if not isinstance(model, StaticGenerativeFunction):
        return paths
    order: list = []

    def walk(gen_fn, a, path, sub_choices):
        def on_site(site, site_args):
            p, here = (*path, site.addr), sub_choices.get_submap(site.addr)
            inside = [q for q in paths if q[: len(p)] == p and q not in order]
            g = site.gen_fn
            if isinstance(g, WithStrategy):
                g, site_args = g.dist_fn, g.params_and_extra(site_args)[0]
            if isinstance(g, StaticGenerativeFunction) and inside:
                return walk(g, site_args, p, here)
            order.extend(inside)
            if isinstance(g, Distribution):
                return here.get_value()
            return g.assess(here, site_args)[1]

        return gen_fn.program(a).run(a, on_site)

    walk(model, args, (), trace.choices)
    return order + [q for q in paths if q not in order]


def make_layout(
    key, model, observations, args, caller: str, init: Any = "median", num_draws: int = 15
):
    """The ``Layout`` of ``model``'s latent choices and an initial flat point.

    Args:
        key: a ``jax.random`` key.
        model: the generative function.
        observations: a choice map (or dict) of observed values.
        args: the model's arguments (a tuple).
        caller: the public function's name, for messages.
        init: ``"median"`` or ``"mean"`` (of ``num_draws`` prior draws, taken
            in unconstrained coordinates, so the point is in the support also
            when supports depend on other choices), ``"sample"`` (one draw), or
            a choice map / dict of constrained values for some latent choices
            (the others drawn from the prior given them).
        num_draws: prior draws for ``"median"`` and ``"mean"``.

    Returns:
        ``(layout, u0)``: the layout and the initial flat unconstrained point.

    Raises:
        PPLError: as ``prior_draws``; for an unknown ``init``; for a given
            point outside the support (zero density), naming the fix.

    Examples:
        >>> layout, u0 = make_layout(jax.random.key(0), model, {"y": 1.0}, (), "auto_normal")
    """
    key, observations = as_key(key), as_choices(observations)
    args = as_args(args, getattr(model, "name", "model"))
    if not isinstance(num_draws, int) or num_draws < 1:
        raise PPLError(f"{caller}: num_draws must be an int >= 1, got {num_draws!r}.")
    point = None
    if not isinstance(init, str):
        point = as_choices(init)
    elif init not in INIT_STRATEGIES:
        raise PPLError(
            f"{caller}: init={init!r} is not an initialisation strategy; use one of "
            f"{INIT_STRATEGIES} or a dict of constrained values, e.g. init={{'mu': 0.0}}."
        )
    n = 1 if point is not None or init == "sample" else num_draws
    traces, first = prior_draws(key, model, observations, args, n, caller)
    sel = selection_of(first.choices.without(selection_of(observations)))
    _refuse_local_latents(first, sel, caller)
    z0 = unconstrain(first, sel, caller)
    latents, offset = [], 0
    addrs = first.choices.without(selection_of(observations)).addresses()
    for addr in program_order(model, args, first, [tuple(a) for a in addrs]):
        ushape = tuple(jnp.shape(z0[addr]))
        size = int(np.prod(ushape, dtype=int))
        latents.append(
            Latent(tuple(addr), tuple(jnp.shape(first.choices[addr])), ushape, offset, size)
        )
        offset += size
    layout = Layout(tuple(latents), first, observations, offset)
    if point is not None:
        trace, _ = model.generate(key, point | observations, args)
        if not np.isfinite(float(trace.score)):
            shown = ", ".join(fmt_addr(a) for a in point.addresses())
            raise PPLError(
                f"{caller}: the initial point given ({shown}) has zero density (or NaN) under "
                f"{model.name} with the observations; give values inside the supports."
            )
        return layout, layout.flatten(unconstrain(trace, sel, caller))
    us = jax.vmap(lambda tr: layout.flatten(unconstrain(tr, sel, caller)))(traces)
    if init == "mean":
        return layout, jnp.mean(us, axis=0)
    return layout, jnp.median(us, axis=0)


def initial_values(
    key, model, observations=None, args=(), init: Any = "median", num_draws: int = 15
):
    """A starting point for inference: constrained values of every latent choice.

    Shared by the automatic guides (whose location starts there) and usable to
    start MCMC chains (``model.generate(key, point | observations, args)``).
    Draws come from ``ppl.inference.chains.init_traces``, so draws of zero
    density are redrawn; ``"median"``/``"mean"`` are taken in unconstrained
    coordinates and mapped back in program order, so the point is in the
    support even when a support depends on another choice.

    Args:
        key: a ``jax.random`` key.
        model: the generative function.
        observations: a choice map (or dict) of observed values.
        args: the model's arguments (a tuple).
        init: ``"median"``, ``"mean"``, ``"sample"``, or a dict / choice map of
            constrained values for some latent choices (the rest from the prior).
        num_draws: prior draws for ``"median"`` and ``"mean"``.

    Returns:
        A ``ppl.ChoiceMap`` of the latent choices' constrained values.

    Raises:
        PPLError: if no prior draw has finite density, a latent choice is
            discrete, ``init`` is unknown, or a given point has zero density.

    Examples:
        >>> import jax, ppl
        >>> from ppl.inference import vi
        >>> @ppl.gen
        ... def model():
        ...     s = ppl.lognormal(0.0, 1.0) @ "s"
        ...     return ppl.normal(0.0, s) @ "y"
        >>> point = vi.initial_values(jax.random.key(0), model, {"y": 0.5})
        >>> point.addresses()
        [('s',)]
    """
    layout, u0 = make_layout(key, model, observations, args, "initial_values", init, num_draws)
    return layout.constrain(u0)


__all__ = ["initial_values"]


def _refuse_local_latents(trace, latent, caller: str) -> None:
    """An automatic guide has one parameter block per latent of the trace it reads:
    for a latent inside ``ppl.vmap(..., subsample_of=N)`` that would be one block
    per minibatch row, shared by whichever examples a step draws."""
    local = [a for a in subsampled_addresses(trace) if a in latent]
    if local:
        raise PPLError(
            f"{caller}: {fmt_addrs(local)} is a latent choice inside a "
            "ppl.vmap(..., subsample_of=N), a local latent of each example; an automatic guide "
            "would give it one parameter per minibatch row, shared by whichever examples a step "
            "draws. Write the guide as an @ppl.gen function whose local latents are amortised "
            "(computed from each example, mapped with ppl.vmap(..., subsample_of=N) at the same "
            "address), or fit on the full data without subsampling."
        )
