"""What every automatic guide is built from: the model's latent choices read off
a prior draw, their unconstrained coordinates, initial points, and the guide
itself as an ``@ppl.gen`` function that walks the model's program in order.

A guide made here is an ordinary ``@ppl.gen`` function of one argument, a dict
of parameters. Its body runs the model's staged program (the same walk as
``ppl.inference.unconstrained.constrain``): at each latent choice of the
model it builds the model's distribution from the values computed so far (its
own earlier choices and the observations), takes that support's bijection
``biject_to(support)`` (numpyro), and samples the choice from a distribution
pushed through it, so a support that depends on other choices (``b ~
uniform(0, a)``) follows the guide's value of ``a``, and the guide's density
is over the constrained values the model sees (the log-Jacobian is part of
it). Observed choices take their observed values; the model's other
computations are dead code in the guide, removed by XLA under ``jit``.

A family (mean-field normal, multivariate normal, delta, ...) says how one
choice is sampled from its flat block of unconstrained coordinates; the walk,
the layout of the blocks and the initialisation are shared.
"""

from __future__ import annotations

from typing import Any, Callable, NamedTuple

import jax.numpy as jnp
import numpyro.distributions as nd
from numpyro.distributions.transforms import ReshapeTransform, biject_to

from ppl._errors import PPLError, fmt_addr
from ppl.choices import ChoiceMap, select
from ppl.distributions import Distribution, distribution
from ppl.gen import StaticGenerativeFunction, gen
from ppl.inference._subsampling import refuse_in_trace
from ppl.inference._sites import sites
from ppl.inference.unconstrained import _parameter_free, constrain
from ppl.transforms.adev.strategies import WithStrategy


class Latent(NamedTuple):
    """One latent choice of the model and its block of unconstrained coordinates.

    Attributes:
        path: the address, a tuple (``("mu",)``, ``("sub", "z")``).
        shape: the shape of the constrained value (stacked, under ``ppl.vmap``).
        ushape: the shape of its unconstrained coordinates.
        offset: where its block starts in the flat vector.
        size: the number of coordinates, ``prod(ushape)``.
    """

    path: tuple
    shape: tuple
    ushape: tuple
    offset: int
    size: int


class Layout(NamedTuple):
    """The model's latent choices, in program order, with a prior trace to build on.

    Attributes:
        latents: the ``Latent`` blocks, in program order.
        prototype: one trace of the model with the observations (its latent
            values are replaced wherever the layout is used).
        observations: the observed choice map.
        size: the total number of unconstrained coordinates.
    """

    latents: tuple
    prototype: Any
    observations: ChoiceMap
    size: int

    def by_path(self) -> dict:
        """``{path: Latent}``."""
        return {lat.path: lat for lat in self.latents}

    def unflatten(self, u) -> ChoiceMap:
        """The choice map of unconstrained coordinates held by the flat vector ``u``."""
        return ChoiceMap.d(
            {
                lat.path: jnp.reshape(u[lat.offset : lat.offset + lat.size], lat.ushape)
                for lat in self.latents
            }
        )

    def flatten(self, z: ChoiceMap):
        """The flat vector of the unconstrained coordinates in ``z`` (program order)."""
        return jnp.concatenate([jnp.reshape(z[lat.path], (-1,)) for lat in self.latents])

    def selection(self):
        """The selection of the latent choices."""
        return select(*[lat.path for lat in self.latents])

    def constrain(self, u) -> ChoiceMap:
        """The constrained latent values at the flat unconstrained point ``u``, in
        program order (supports that depend on other choices follow them)."""
        return constrain(self.prototype, self.selection(), self.unflatten(u), "auto guide").choices

    def potential(self, u):
        """``-log p(x(u), observations) - log |det dx/du|``: the negative log
        density of the unconstrained coordinates (what Laplace's Hessian is of).

        Raises:
            PPLError: if the model subsamples its data (``ppl.vmap(...,
                subsample_of=N)``): the potential of one fixed minibatch, scaled,
                is not the full data's, and the algorithms that use it
                (``vi.fit_fbgvi``, ``vi.auto_laplace``) would be biased.
        """
        refuse_in_trace(self.prototype, "the model's potential (vi.fit_fbgvi, vi.auto_laplace)")
        out = constrain(self.prototype, self.selection(), self.unflatten(u), "auto guide")
        return -(out.log_density + out.log_det)


# ---------------------------------------------------------------------------
# The guide: the model's program walked in order
# ---------------------------------------------------------------------------


class Family(NamedTuple):
    """How a family samples each latent choice from its block of coordinates.

    Attributes:
        name: the family's name (``"auto_normal"``), for the guide's name.
        start: ``start(params) -> state``, computed once per guide call and
            passed along the walk (``None``, or e.g. a Cholesky factor and
            the standardised noise of the choices made so far).
        site: ``site(params, state, latent) -> base_params``: the parameters of
            the block's distribution, given what was sampled before.
        dist: ``dist(latent, transform, *base_params) -> numpyro distribution``
            over the constrained value (``transform`` maps the block's
            unconstrained coordinates, reshaped, to the value).
        after: ``after(params, state, latent, u, base_params) -> state``, given
            the block's unconstrained coordinates ``u`` (flat).
    """

    name: str
    start: Callable
    site: Callable
    dist: Callable
    after: Callable


def pushforward(base, latent: Latent, transform):
    """``base`` (a numpyro distribution over a flat block) pushed through the
    reshape to the block's shape and the support's bijection.

    Examples:
        >>> pushforward(nd.Normal(jnp.zeros(1), 1.0).to_event(1), latent, ExpTransform())
    """
    return nd.TransformedDistribution(
        base, [ReshapeTransform(latent.ushape, (latent.size,)), transform]
    )


class Walker:
    """The guide of one family for one model: the ``@ppl.gen`` function ``guide``.

    Args:
        layout: the model's ``Layout``.
        model: the model (an ``@ppl.gen`` function).
        args: the model's arguments the guide walks the program with.
        family: the ``Family``.

    Attributes:
        guide: the ``@ppl.gen`` guide, called with one argument (the parameters).

    Raises:
        PPLError: if the model is not an ``@ppl.gen`` function.
    """

    def __init__(self, layout: Layout, model, args: tuple, family: Family):
        if not isinstance(model, StaticGenerativeFunction):
            raise PPLError(
                f"{family.name} builds guides for @ppl.gen models; got {model!r}. Wrap it in an "
                "@ppl.gen function that calls it at an address."
            )
        self.layout, self.model, self.args, self.family = layout, model, args, family
        self.latents = layout.by_path()
        self._dists: dict = {}
        self._subs: dict = {}

        def guide(params, *minibatch):
            # The latents are global (make_layout refuses any inside a subsampled map),
            # so the minibatch that vi.fit(..., subsample=True) appends changes nothing.
            del minibatch
            cell = [family.start(params)]
            self._walk(model, args, (), layout.observations, params, cell)

        guide.__name__ = guide.__qualname__ = f"{family.name}({model.name})"
        self.guide = gen(guide)

    def _has_latent(self, path: tuple) -> bool:
        return any(p[: len(path)] == path for p in self.latents)

    def _walk(self, gen_fn, args, path, obs, params, cell):
        def on_site(site, site_args):
            p, sub_obs = (*path, site.addr), obs.get_submap(site.addr)
            g, a = site.gen_fn, site_args
            if isinstance(g, WithStrategy):
                g, a = g.dist_fn, g.params_and_extra(a)[0]
            if not self._has_latent(p):
                return (
                    sub_obs.get_value() if isinstance(g, Distribution) else g.assess(sub_obs, a)[1]
                )
            if isinstance(g, Distribution):
                return self._choice(p, site.addr, params, cell, g, a)
            if isinstance(g, StaticGenerativeFunction):
                sub = self._sub_gen(p, g, sub_obs)
                cell[0], retval = sub(params, cell[0], *a) @ site.addr
                return retval
            sub = self._sub_fixed(p, site.gen_fn)
            cell[0], choices = sub(params, cell[0]) @ site.addr
            return site.gen_fn.assess(choices | sub_obs, site_args)[1]

        return gen_fn.program(args).run(args, on_site)

    def _choice(self, p, addr, params, cell, g, a, transform=None):
        latent, fam = self.latents[p], self.family
        base = fam.site(params, cell[0], latent)
        d = self._dists.get(p)
        if d is None:
            if transform is None:

                def factory(*all_params):
                    margs = all_params[len(base) :]
                    support = g.dist(*margs).support
                    return fam.dist(latent, biject_to(support), *all_params[: len(base)])
            else:

                def factory(*all_params):
                    return fam.dist(latent, transform, *all_params)

            d = self._dists[p] = distribution(factory, f"{fam.name}[{fmt_addr(p)}]")
        if transform is None:
            x = d(*base, *a) @ addr
            transform = biject_to(g.dist(*a).support)
        else:
            x = d(*base) @ addr
        u = jnp.reshape(transform.inv(x), (-1,))
        cell[0] = fam.after(params, cell[0], latent, u, base)
        return x

    def _sub_gen(self, p, g, sub_obs):
        sub = self._subs.get(p)
        if sub is None:

            def body(params, state, *a):
                cell = [state]
                retval = self._walk(g, a, p, sub_obs, params, cell)
                return cell[0], retval

            body.__name__ = body.__qualname__ = f"{self.family.name}[{fmt_addr(p)}]"
            sub = self._subs[p] = gen(body)
        return sub

    def _sub_fixed(self, p, gen_fn):
        """The latent choices under a call of a combinator (``ppl.vmap``, ``ppl.scan``,
        ...) at ``p``: sampled as whole stacked blocks, with the supports of the
        prior trace, which must be fixed (no parameters)."""
        sub = self._subs.get(p)
        if sub is not None:
            return sub
        inside = [lat for lat in self.layout.latents if lat.path[: len(p)] == p]
        marked = sites(self.layout.prototype, select(*[lat.path for lat in inside]))
        transforms = {}
        for lat in inside:
            support = marked[lat.path].dist.support
            if not _parameter_free(support):
                raise PPLError(
                    f"{self.family.name}: the support of {fmt_addr(lat.path)} ({support}) has "
                    f"parameters, and the choice is made inside {gen_fn.name}, whose elements an "
                    "automatic guide samples as one block with the support of a prior draw, so "
                    "a support that follows other choices cannot be tracked there. Write that "
                    "part of the model with @ppl.gen functions and a Python loop, or write a "
                    "guide by hand."
                )
            transforms[lat.path] = biject_to(support)

        def build(prefix):
            if prefix in self._subs:
                return self._subs[prefix]
            # in program order (the layout's), so each block's conditional sees those before it
            rel = list(
                dict.fromkeys(
                    lat.path[len(prefix)] for lat in inside if lat.path[: len(prefix)] == prefix
                )
            )

            def body(params, state):
                cell, out = [state], {}
                for name in rel:
                    q = (*prefix, name)
                    if q in self.latents:
                        out[name] = self._choice(q, name, params, cell, None, (), transforms[q])
                    else:
                        cell[0], out[name] = build(q)(params, cell[0]) @ name
                return cell[0], ChoiceMap.d(out)

            body.__name__ = body.__qualname__ = f"{self.family.name}[{fmt_addr(prefix)}]"
            self._subs[prefix] = gen(body)
            return self._subs[prefix]

        return build(p)


__all__ = ["Family", "Latent", "Layout", "Walker", "pushforward"]
