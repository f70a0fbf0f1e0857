"""The improper flat prior ``improper_uniform(support, shape)``: log density 0 over
a support (ordered and positive-ordered vectors included).

``simulate`` draws an *initialisation point* (uniform in ``[-2, 2]`` in
unconstrained coordinates, numpyro's ``init_to_uniform``), not a sample of a
distribution: MCMC can start from it, importance sampling from it is refused,
and so is resampling it from the prior (``mh`` without a proposal). See
``ppl.primitives`` for ``factor`` and ``deterministic``.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpyro.distributions as nd
from numpyro.distributions.transforms import biject_to

from ppl._errors import AddressError
from ppl._gfi import Trace
from ppl.distributions import Distribution, DistributionTrace


_SUPPORTS = {
    "real": nd.constraints.real,
    "real_vector": nd.constraints.real_vector,
    "positive": nd.constraints.positive,
    "unit_interval": nd.constraints.unit_interval,
    "simplex": nd.constraints.simplex,
    "ordered_vector": nd.constraints.ordered_vector,
    "positive_ordered_vector": nd.constraints.positive_ordered_vector,
    "corr_cholesky": nd.constraints.corr_cholesky,
    "positive_definite": nd.constraints.positive_definite,
}


def _support(support):
    if isinstance(support, str):
        if support not in _SUPPORTS:
            raise AddressError(
                f"improper_uniform at {{addr}}: unknown support {support!r}; use one of "
                f"{sorted(_SUPPORTS)} or a numpyro constraint (numpyro.distributions.constraints)."
            )
        return _SUPPORTS[support]
    if not isinstance(support, nd.constraints.Constraint):
        raise AddressError(
            f"improper_uniform at {{addr}}: the support must be a name such as 'positive' or a "
            f"numpyro constraint; got {type(support).__name__}."
        )
    return support


def _improper_uniform(support, shape=()):
    support = _support(support)
    shape = tuple(shape)
    n_event = support.event_dim
    if len(shape) < n_event:
        raise ValueError(
            f"a value of support {support} has at least {n_event} dimension(s); got shape {shape}"
        )
    split = len(shape) - n_event
    return nd.ImproperUniform(support, shape[:split], shape[split:])


class ImproperUniform(Distribution):
    """``ppl.improper_uniform(support, shape=()) @ "x"``: a flat prior, log density 0
    on a support.

    ``simulate`` (and ``generate`` without a constraint) draws an
    initialisation point, uniform in ``[-2, 2]`` in the unconstrained
    coordinates of the support; ``regenerate`` refuses to resample it.

    Args:
        support: the support: a name (``"real"``, ``"positive"``,
            ``"unit_interval"``, ``"simplex"``, ``"ordered_vector"``,
            ``"positive_ordered_vector"``, ``"real_vector"``, ``"corr_cholesky"``,
            ``"positive_definite"``) or a ``numpyro.distributions.constraints``
            object.
        shape: the shape of the value (Python ints; at least the support's event
            dimensions: ``(k,)`` for an ordered vector of length ``k``).

    Returns:
        An invocation to give an address. ``simulate`` draws an initialisation
        point inside the support, not a sample (see the module docstring).

    Raises:
        AddressError: when the choice is made, for an unknown support or a
            shape with fewer dimensions than the support's; from ``regenerate``
            of it (``mh`` without a proposal).
        PPLError: from ``ppl.inference.importance`` and ``smc.init`` on a model
            that would sample one (no proposal for it).

    Examples:
        >>> @ppl.gen
        ... def model():
        ...     return ppl.improper_uniform("ordered_vector", (3,)) @ "cutpoints"
        >>> tr = model.simulate(jax.random.key(0), ())  # a starting point, not a sample
        >>> bool(jnp.all(jnp.diff(tr["cutpoints"]) > 0)), float(tr.score)
        (True, 0.0)
    """

    def __init__(self):
        super().__init__(_improper_uniform, "improper_uniform")
        self.__doc__ = ImproperUniform.__doc__  # not the generic text made from numpyro's class

    def draw(self, key, d: nd.Distribution, *, reparam: bool = False):
        """An initialisation point in the support of ``d`` (not a sample: there is no
        distribution to sample).

        Args:
            key: a ``jax.random`` key.
            d: the numpyro ``ImproperUniform``.
            reparam: ignored (the point is a smooth function of the key only).

        Returns:
            ``biject_to(support)(u)`` with ``u`` uniform in ``[-2, 2]``.

        Examples:
            >>> d = ppl.improper_uniform.dist("positive", (3,))
            >>> bool(jnp.all(ppl.improper_uniform.draw(jax.random.key(0), d) > 0))
            True
        """
        bijection = biject_to(d.support)
        shape = bijection.inverse_shape(d.shape())
        u = jax.random.uniform(key, shape, jnp.result_type(float), -2.0, 2.0)
        return bijection(u)

    def _regenerate(self, key, trace, selection, args):
        if selection.is_all():
            raise AddressError(
                "improper_uniform at {addr} cannot be resampled from its prior: a flat prior "
                "over an unbounded support is no distribution. Move it with a gradient kernel "
                "(ppl.inference.nuts, hmc, mala) or with ppl.inference.mh and a proposal."
            )
        return super()._regenerate(key, trace, selection, args)


improper_uniform = ImproperUniform()


def improper_addresses(trace: Trace) -> list:
    """The addresses of ``improper_uniform`` choices in ``trace``.

    Args:
        trace: a trace, or a shape-only one from ``trace_shape``.

    Returns:
        A list of address tuples.

    Examples:
        >>> @ppl.gen
        ... def model():
        ...     s = ppl.improper_uniform("positive") @ "sigma"
        ...     return ppl.normal(0.0, s) @ "y"
        >>> improper_addresses(model.trace_shape(()))
        [('sigma',)]
    """
    return addresses_within(trace, _is_improper)


def addresses_within(trace: Trace, is_node) -> list:
    """The addresses of the choices made at or under the sub-traces of ``trace``
    for which ``is_node`` holds (a choice's own trace, or a combinator call's).

    Each choice found there is marked, and the marked trace's choice map
    says where the marks went: the addresses come out as every trace type
    builds them, with no walk of its own per combinator.

    Args:
        trace: a trace, or a shape-only one from ``trace_shape``.
        is_node: a predicate on sub-traces.

    Returns:
        A list of address tuples (empty when the choice map cannot be built
        from shapes: a switch on a run-time index).

    Examples:
        >>> from ppl.combinators.vmap import VmapTrace
        >>> @ppl.gen
        ... def model(xs):
        ...     return ppl.vmap(ppl.normal, in_axes=(0, None))(xs, 1.0) @ "points"
        >>> addresses_within(model.trace_shape((jnp.zeros(3),)), lambda t: isinstance(t, VmapTrace))
        [('points',)]
    """

    def mark(node):
        return jax.tree.map(
            lambda t: DistributionTrace(t.gen_fn, t.args, _MARK, t.score) if _is_choice(t) else t,
            node,
            is_leaf=_is_choice,
        )

    marked = jax.tree.map(lambda t: mark(t) if is_node(t) else t, trace, is_leaf=is_node)
    try:
        cm = marked.choices
    except Exception:  # choices computed on values (a switch on a run-time index)
        return []
    return [a for a in cm.addresses() if cm[a] is _MARK]


_MARK = object()


def _is_choice(x) -> bool:
    return isinstance(x, DistributionTrace)


def _is_improper(x) -> bool:
    return isinstance(x, DistributionTrace) and isinstance(x.gen_fn, ImproperUniform)


__all__ = ["ImproperUniform", "addresses_within", "improper_addresses", "improper_uniform"]
