"""A normalizing-flow automatic guide on flowjax (an optional dependency: ``pip
install ppl[flow]``, which pins ``flowjax``).

The guide is autoregressive over the model's latent choices in program order:
the block of unconstrained coordinates of choice ``i`` is
``loc_i + scale_i * f_i(eps_i; u_<i)``, ``f_i`` a masked autoregressive flow
(flowjax) over the block, conditioned on the unconstrained coordinates of the
choices before it. The product of these conditionals is a joint flow over all
coordinates, and each choice is then mapped into its support with
``biject_to`` as in the other automatic guides, so supports that depend on
earlier choices follow them and the density is over constrained values.
"""

from __future__ import annotations

from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpyro.distributions as nd
from numpyro.distributions.transforms import AffineTransform, IndependentTransform

from ppl._errors import PPLError
from ppl.inference.vi._autoguide_base import Family, Walker, pushforward
from ppl.inference.vi._autoguide_init import make_layout
from ppl.inference.vi.autoguide import AutoGuide, inv_softplus

try:  # optional: only this module needs flowjax
    import paramax
    from flowjax.distributions import Normal as _FlowNormal
    from flowjax.flows import masked_autoregressive_flow

    HAVE_FLOWJAX = True
except ImportError:  # pragma: no cover - depends on the installation
    HAVE_FLOWJAX = False


class _FlowDistribution(nd.Distribution):
    """A flowjax flow as a numpyro distribution over a flat block (reparameterized)."""

    arg_constraints: dict = {}
    support = nd.constraints.real_vector  # pyright: ignore[reportAssignmentType]
    reparametrized_params: list = []

    def __init__(self, flow, condition):
        self.flow, self.condition = flow, condition
        super().__init__(batch_shape=(), event_shape=flow.shape)

    def _cond(self):
        return None if self.flow.cond_shape is None else self.condition

    def sample(self, key, sample_shape=()):
        return self.flow.sample(key, sample_shape, condition=self._cond())

    def rsample(self, key, sample_shape=()):
        return self.sample(key, sample_shape)

    def log_prob(self, value):
        return self.flow.log_prob(value, condition=self._cond())


def auto_flow(
    model,
    observations=None,
    args: tuple = (),
    *,
    key=None,
    init: Any = "median",
    num_draws: int = 15,
    init_scale: float = 0.1,
    flow_layers: int = 2,
    nn_width: int = 16,
) -> AutoGuide:
    """A normalizing-flow guide: block-autoregressive masked autoregressive flows
    (flowjax) over the unconstrained coordinates, choice by choice in program order.

    Args:
        model: an ``@ppl.gen`` model.
        observations: a choice map (or dict) of observed values.
        args: the model's arguments (a tuple).
        key: a ``jax.random`` key for the prior draws and the flows' weights
            (default ``key(0)``).
        init: where ``loc`` starts, as for ``ppl.inference.vi.auto_normal``.
        num_draws: prior draws for ``"median"``/``"mean"``.
        init_scale: the initial ``scale`` of every coordinate.
        flow_layers: masked autoregressive layers per choice.
        nn_width: the width of their networks.

    Returns:
        An ``ppl.inference.vi.AutoGuide``; ``guide_args[0]`` is ``{"loc",
        "raw_scale", "flows"}``, ``flows`` a tuple holding the arrays of
        each choice's flowjax flow (``eqx.partition``'s array part; ``vi.fit``
        trains them).

    Raises:
        ImportError: if flowjax is not installed (``pip install ppl[flow]``).
        PPLError: as ``ppl.inference.vi.auto_normal``.

    Examples:
        >>> import ppl
        >>> from ppl.inference.vi.autoguide_flow import auto_flow
        >>> @ppl.gen
        ... def model():
        ...     s = ppl.lognormal(0.0, 1.0) @ "s"
        ...     return ppl.normal(0.0, s) @ "y"
        >>> guide, guide_args = auto_flow(model, {"y": 0.5})
        >>> len(guide_args[0]["flows"])
        1
    """
    if not HAVE_FLOWJAX:
        raise ImportError("auto_flow needs flowjax: pip install 'ppl[flow]' (flowjax==19.1.2).")
    if not isinstance(init_scale, (int, float)) or init_scale <= 0:
        raise PPLError(f"auto_flow: init_scale must be a positive number, got {init_scale!r}.")
    k_layout, k_flows = jax.random.split(jax.random.key(0) if key is None else key)
    layout, u0 = make_layout(k_layout, model, observations, args, "auto_flow", init, num_draws)
    flows, statics = [], {}
    for lat, k in zip(layout.latents, jax.random.split(k_flows, len(layout.latents))):
        flow = masked_autoregressive_flow(
            k,
            base_dist=_FlowNormal(jnp.zeros(lat.size)),
            cond_dim=lat.offset or None,
            flow_layers=flow_layers,
            nn_width=nn_width,
        )
        # the trained arrays go in the parameters; the rest (shapes, activations) stays here
        arrays, static = eqx.partition(flow, eqx.is_inexact_array)
        statics[lat.path] = (jax.tree.structure(arrays), static)
        flows.append(arrays)
    index = {lat.path: i for i, lat in enumerate(layout.latents)}

    def site(params, u, latent):
        o, d = latent.offset, latent.size
        leaves = jax.tree.leaves(params["flows"][index[latent.path]])
        scale = jax.nn.softplus(params["raw_scale"][o : o + d])
        return (params["loc"][o : o + d], scale, u[:o], *leaves)

    def dist(latent, transform, loc, scale, cond, *leaves):
        treedef, static = statics[latent.path]
        flow = paramax.unwrap(eqx.combine(jax.tree.unflatten(treedef, leaves), static))
        base = nd.TransformedDistribution(
            _FlowDistribution(flow, cond),
            IndependentTransform(AffineTransform(loc, scale), 1),
        )
        return pushforward(base, latent, transform)

    def after(params, u, latent, block, base):
        return u.at[latent.offset : latent.offset + latent.size].set(block)

    def start(params):
        return jnp.zeros_like(params["loc"])

    family = Family("auto_flow", start, site, dist, after)
    walker = Walker(layout, model, tuple(args), family)
    params = {
        "loc": u0.astype(jnp.result_type(float)),
        "raw_scale": jnp.full(layout.size, inv_softplus(float(init_scale))),
        "flows": tuple(flows),
    }

    def covariance(_):
        raise PPLError("auto_flow: a flow has no closed-form covariance; estimate it from .sample.")

    auto = AutoGuide(walker, (params,), covariance)
    jax.eval_shape(lambda p: walker.guide.simulate(jax.random.key(0), (p,)), params)
    return auto


__all__ = ["auto_flow"]
