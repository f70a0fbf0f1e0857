"""Automatic guides: variational families built by reading the model.

Each constructor takes the model, its observations and arguments, reads the
latent choices' addresses, shapes and supports off a prior draw, and returns
an ``AutoGuide``: the guide, an ordinary ``@ppl.gen`` function of one
argument (a dict of parameters), and its initial arguments ``(params,)``,
in the shape ``vi.fit`` takes guide arguments::

    guide, guide_args = vi.auto_normal(model, obs, args)
    result = vi.fit(vi.elbo(model, guide, obs), key, args, guide_args, ...)

The guide is a distribution over the constrained values the model sees: each
choice is the image of unconstrained coordinates under numpyro's
``biject_to(support)``, built in program order (so ``b ~ uniform(0, a)``
follows the guide's ``a``), with the log-Jacobian in its density. It works in
every objective (``elbo``, ``iwelbo``, ``renyi``, ``rws_wake_q``, ...) and in
``ppl.marginal``. The families:

- ``auto_normal``: mean-field normal in unconstrained coordinates;
- ``auto_multivariate_normal``: full-rank normal (a Cholesky factor), and
  ``auto_low_rank_normal``: covariance ``W W^T + diag(d^2)``
  (``.autoguide_mvn``);
- ``auto_delta``: a point (MAP estimation with ``vi.elbo``);
- ``auto_laplace``: a normal at the mode with the inverse Hessian,
  obtained from a fitted delta guide (``.autoguide_laplace``).
"""

from __future__ import annotations

from typing import Any, Iterator

import jax
import jax.numpy as jnp
import numpyro.distributions as nd

from ppl._errors import PPLError
from ppl.choices import ChoiceMap
from ppl.inference.predictions import compiled_draws
from ppl.inference.vi._autoguide_base import Family, Layout, Walker, pushforward
from ppl.inference.vi._autoguide_init import make_layout


def inv_softplus(y):
    """The inverse of ``jax.nn.softplus``: ``log(expm1(y))``."""
    return jnp.log(jnp.expm1(y))


class AutoGuide:
    """An automatic guide and its initial arguments; unpacks as ``(guide, guide_args)``.

    Built by ``auto_normal``, ``auto_delta``,
    ``auto_multivariate_normal``, ``auto_low_rank_normal``, ``auto_laplace``
    and ``fit_fbgvi``'s ``auto_guide()``, not usually by hand. With fitted
    arguments (``result.guide_args``), ``median`` gives the constrained
    values at the location, ``sample`` draws from the guide, ``covariance``
    gives the covariance of the unconstrained coordinates.

    Args:
        walker: the family's guide for the model (it holds the guide, the
            layout, the model, its arguments and the family's name).
        guide_args: ``(params,)``, the initial parameters.
        covariance: ``covariance(params)``, the covariance of the unconstrained
            coordinates under those parameters.

    Attributes:
        guide: the ``@ppl.gen`` guide, called with ``*guide_args``.
        guide_args: ``(params,)``, the initial parameters (a dict of float arrays).
        layout: the model's latent choices and their blocks of unconstrained
            coordinates (``layout.latents``, in program order).
        model, args: the model and the arguments the guide was built with.
        kind: the family's name (``"auto_normal"``, ...).

    Examples:
        >>> import jax, ppl
        >>> from ppl.inference import vi
        >>> @ppl.gen
        ... def model():
        ...     mu = ppl.normal(0.0, 1.0) @ "mu"
        ...     return ppl.normal(mu, 1.0) @ "y"
        >>> auto = vi.auto_normal(model, {"y": 1.0})
        >>> guide, guide_args = auto
        >>> sorted(guide_args[0])
        ['loc', 'raw_scale']
        >>> float(auto.median()["mu"]) == float(guide_args[0]["loc"][0])
        True
    """

    def __init__(self, walker: Walker, guide_args: tuple, covariance):
        self.guide, self.guide_args = walker.guide, guide_args
        self.layout: Layout = walker.layout
        self.model, self.args, self.kind = walker.model, walker.args, walker.family.name
        self._covariance = covariance

    def __iter__(self) -> Iterator[Any]:
        return iter((self.guide, self.guide_args))

    def __repr__(self):
        n, size = len(self.layout.latents), self.layout.size
        return f"AutoGuide({self.kind}, {n} latent choices, {size} coordinates)"

    def _params(self, guide_args):
        guide_args = self.guide_args if guide_args is None else guide_args
        if not isinstance(guide_args, tuple) or len(guide_args) != 1:
            raise PPLError(
                f"{self.kind}: guide_args must be (params,), as the guide was built or as "
                f"vi.fit returned them (result.guide_args); got {type(guide_args).__name__}."
            )
        return guide_args[0]

    def median(self, guide_args: tuple | None = None) -> ChoiceMap:
        """The constrained values at the guide's location (its median, choice by choice).

        Args:
            guide_args: ``(params,)`` (default: the initial ones), e.g. ``result.guide_args``.

        Returns:
            A ``ppl.ChoiceMap`` of the latent choices.

        Raises:
            PPLError: if ``guide_args`` is not ``(params,)``.
        """
        return self.layout.constrain(self._params(guide_args)["loc"])

    def sample(self, key, guide_args: tuple | None = None, n: int = 1000) -> ChoiceMap:
        """``n`` draws of the latent choices from the guide (vectorised, compiled once
        per guide and ``n``).

        Args:
            key: a ``jax.random`` key.
            guide_args: ``(params,)`` (default: the initial ones).
            n: the number of draws.

        Returns:
            A ``ppl.ChoiceMap`` whose values have a leading axis of ``n``.

        Raises:
            PPLError: if ``guide_args`` is not ``(params,)``.
        """
        return compiled_draws(self.guide, n)(key, (self._params(guide_args),))

    def covariance(self, guide_args: tuple | None = None):
        """The covariance of the unconstrained coordinates, ``(size, size)`` (zeros for a delta).

        Args:
            guide_args: ``(params,)`` (default: the initial ones).

        Returns:
            A float array; coordinates are ordered as ``layout.latents``.

        Raises:
            PPLError: if ``guide_args`` is not ``(params,)``.
        """
        return self._covariance(self._params(guide_args))


def _build(kind, family, model, observations, args, key, init, num_draws, params_of, covariance):
    k_layout, k_params = jax.random.split(jax.random.key(0) if key is None else key)
    layout, u0 = make_layout(k_layout, model, observations, args, kind, init, num_draws)
    walker = Walker(layout, model, tuple(args), family)
    params = params_of(layout, u0.astype(jnp.result_type(float)), k_params)
    auto = AutoGuide(walker, (params,), covariance)
    jax.eval_shape(lambda p: walker.guide.simulate(jax.random.key(0), (p,)), params)  # errors now
    return auto


def _no_state(params):
    return None


def _keep(params, state, latent, u, base):
    return state


def _block(v, latent):
    return v[latent.offset : latent.offset + latent.size]


def _normal_site(params, state, latent):
    return _block(params["loc"], latent), jax.nn.softplus(_block(params["raw_scale"], latent))


def _normal_dist(latent, transform, loc, scale):
    return pushforward(nd.Normal(loc, scale).to_event(1), latent, transform)


_MEAN_FIELD = Family("auto_normal", _no_state, _normal_site, _normal_dist, _keep)


def _check_scale(init_scale, kind):
    if not isinstance(init_scale, (int, float)) or init_scale <= 0:
        raise PPLError(f"{kind}: init_scale must be a positive number, got {init_scale!r}.")


def auto_normal(
    model,
    observations=None,
    args: tuple = (),
    *,
    key=None,
    init: Any = "median",
    num_draws: int = 15,
    init_scale: float = 0.1,
) -> AutoGuide:
    """A mean-field normal guide in unconstrained coordinates (NumPyro's ``AutoNormal``).

    Every coordinate ``u_j`` is an independent ``normal(loc_j, softplus(raw_scale_j))``;
    each latent choice is ``biject_to(support)`` of its block, in program order.

    Args:
        model: an ``@ppl.gen`` model.
        observations: a choice map (or dict) of observed values.
        args: the model's arguments (a tuple); the guide builds the supports with
            them, so rebuild it if arguments the supports depend on change.
        key: a ``jax.random`` key for the prior draws (default ``key(0)``).
        init: where ``loc`` starts: ``"median"`` (default) or ``"mean"`` of
            ``num_draws`` prior draws in unconstrained coordinates, ``"sample"``,
            or a dict of constrained values (see ``initial_values``).
        num_draws: prior draws for ``"median"``/``"mean"``.
        init_scale: the initial scale of every coordinate.

    Returns:
        An ``AutoGuide``; ``guide_args[0]`` is ``{"loc": (d,), "raw_scale": (d,)}``.

    Raises:
        PPLError: if a latent choice is discrete (name and fix), the model is
            not ``@ppl.gen``, no prior draw has finite density, or ``init`` is unknown.

    Examples:
        >>> import jax, jax.numpy as jnp, optax, ppl
        >>> from ppl.inference import vi
        >>> @ppl.gen
        ... def model():
        ...     s = ppl.lognormal(0.0, 1.0) @ "s"
        ...     return ppl.normal(0.0, s) @ "y"
        >>> obs = {"y": 0.5}
        >>> guide, guide_args = vi.auto_normal(model, obs)
        >>> result = vi.fit(vi.elbo(model, guide, obs), jax.random.key(0), (), guide_args,
        ...                 optimizer=optax.adam(0.05), steps=200, progress=False)
        >>> result.history.shape
        (200,)
    """
    _check_scale(init_scale, "auto_normal")

    def params_of(layout, u0, _):
        return {"loc": u0, "raw_scale": jnp.full(layout.size, inv_softplus(float(init_scale)))}

    def covariance(params):
        return jnp.diag(jax.nn.softplus(params["raw_scale"]) ** 2)

    return _build(
        "auto_normal",
        _MEAN_FIELD,
        model,
        observations,
        args,
        key,
        init,
        num_draws,
        params_of,
        covariance,
    )


# ---------------------------------------------------------------------------
# Delta: a point in constrained space (MAP with vi.elbo)
# ---------------------------------------------------------------------------


def _delta_site(params, state, latent):
    return (_block(params["loc"], latent),)


def _delta_dist(latent, transform, loc):
    return nd.Delta(transform(jnp.reshape(loc, latent.ushape)), event_dim=len(latent.shape))


_DELTA = Family("auto_delta", _no_state, _delta_site, _delta_dist, _keep)


def auto_delta(
    model,
    observations=None,
    args: tuple = (),
    *,
    key=None,
    init: Any = "median",
    num_draws: int = 15,
) -> AutoGuide:
    """A point-mass guide (NumPyro's ``AutoDelta``): ``vi.elbo`` with it is
    ``log p(x, obs)``, so fitting it finds the MAP in constrained space.

    The point is kept in unconstrained coordinates ``loc`` (so it stays in the
    support); ``auto_laplace`` turns a fitted one into a Laplace approximation.

    Args:
        model: an ``@ppl.gen`` model.
        observations: a choice map (or dict) of observed values.
        args: the model's arguments (a tuple).
        key: a ``jax.random`` key for the prior draws (default ``key(0)``).
        init: as for ``auto_normal``.
        num_draws: prior draws for ``"median"``/``"mean"``.

    Returns:
        An ``AutoGuide``; ``guide_args[0]`` is ``{"loc": (d,)}``.

    Raises:
        PPLError: as ``auto_normal``.

    Examples:
        >>> import jax, optax, ppl
        >>> from ppl.inference import vi
        >>> @ppl.gen
        ... def model():
        ...     mu = ppl.normal(0.0, 1.0) @ "mu"
        ...     return ppl.normal(mu, 1.0) @ "y"
        >>> auto = vi.auto_delta(model, {"y": 1.0})
        >>> result = vi.fit(vi.elbo(model, auto.guide, {"y": 1.0}), jax.random.key(0), (),
        ...                 auto.guide_args, optimizer=optax.adam(0.1), steps=300, progress=False)
        >>> round(float(auto.median(result.guide_args)["mu"]), 2)  # the MAP, 0.5
        0.5
    """

    def params_of(layout, u0, _):
        return {"loc": u0}

    def covariance(params):
        return jnp.zeros((params["loc"].size,) * 2, params["loc"].dtype)

    return _build(
        "auto_delta",
        _DELTA,
        model,
        observations,
        args,
        key,
        init,
        num_draws,
        params_of,
        covariance,
    )


__all__ = ["AutoGuide", "auto_delta", "auto_normal"]
