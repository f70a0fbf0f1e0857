"""Modelling primitives that are not random choices: ``factor``, ``deterministic``
and the improper flat prior ``improper_uniform``.

Each is a generative function (or a distribution), so it sits at an address
inside ``@ppl.gen``, ``ppl.scan`` and ``ppl.vmap`` and composes with every
interface method, objective and inference algorithm.

Choice-map semantics, the one design decision everything else follows from:

* ``ppl.factor(log_weight) @ "f"`` adds ``log_weight`` to the model's log
  density (Stan's ``target +=``). Its trace records **no choice**: its choice
  map is empty, so no kernel moves it, no guide or proposal must cover it, and
  ``assess`` needs no value for it. Constraining it is an error.
* ``ppl.deterministic(value) @ "d"`` records ``value`` and returns it. It has no
  density (score 0) and its trace records **no choice** either, for the same
  reasons: it is a function of the other choices, not a latent. The value is
  read with :func:`recorded` (the choices plus every deterministic value), and
  the inference drivers return it with their draws (``run_mcmc``'s default
  samples, ``predictive``). ``assess`` ignores a value given at its address
  (it is recomputed); ``generate``/``update`` refuse one, naming the address.
* ``ppl.improper_uniform(support, shape) @ "x"`` has log density 0 over a
  support. ``simulate`` draws an *initialisation point* (uniform in
  ``[-2, 2]`` in unconstrained coordinates, numpyro's ``init_to_uniform``), not
  a sample of a distribution: MCMC can start from it, importance sampling
  from it is refused, and so is resampling it from the prior (``mh`` without
  a proposal).
"""

from __future__ import annotations

from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpyro.distributions as nd
from numpyro.distributions.transforms import biject_to

from ppl._errors import AddressError, PPLError
from ppl._gfi import GenerativeFunction, Trace
from ppl.choices import ChoiceMap
from ppl.distributions import Distribution, DistributionTrace


def zero_score() -> jax.Array:
    """A log density of 0 in the default float dtype."""
    return jnp.zeros((), jnp.result_type(float))


# ---------------------------------------------------------------------------
# factor
# ---------------------------------------------------------------------------


class FactorTrace(Trace):
    """The trace of ``ppl.factor(log_weight)``: a score and no choice.

    Attributes:
        gen_fn: the :class:`Factor`.
        args: ``(log_weight,)``.
        score: the log weight, summed to a scalar.
    """

    gen_fn: Any = eqx.field(static=True)
    args: tuple
    score: Any

    @property
    def retval(self):
        return None

    @property
    def choices(self) -> ChoiceMap:
        return ChoiceMap.empty()

    def project(self, selection):
        # A term of the density that belongs to no choice: only the whole model's.
        return self.score if selection.is_all() else jnp.zeros_like(self.score)


def _log_weight(args) -> jax.Array:
    if len(args) != 1:
        raise PPLError(
            f"ppl.factor takes one argument, the log weight, as in ppl.factor(lw) @ 'f'; got "
            f"{len(args)} arguments."
        )
    (lw,) = args
    try:
        lw = jnp.asarray(lw)
    except TypeError as e:
        raise AddressError(
            f"ppl.factor at {{addr}} needs a number or an array of numbers as its log weight; "
            f"got {type(lw).__name__}."
        ) from e
    if not jnp.issubdtype(lw.dtype, jnp.number):
        raise AddressError(
            f"ppl.factor at {{addr}} needs a real log weight; got dtype {lw.dtype}. Pass a float."
        )
    return jnp.sum(lw.astype(jnp.result_type(float)))


def _no_constraint(what: str, verb: str) -> AddressError:
    return AddressError(
        f"{verb} was given a value at {{addr}}, but {what}, so there is nothing to constrain "
        "there. Remove {addr} from the choice map (to condition on data, observe a random "
        "choice instead)."
    )


_FACTOR_HAS_NO_CHOICE = "ppl.factor records no random choice there (it only adds to the density)"


class Factor(GenerativeFunction):
    """``ppl.factor(log_weight) @ "addr"``: add ``log_weight`` to the log density.

    An arbitrary term of the model's log density (Stan's ``target +=``): it
    enters the score under ``simulate``, ``assess``, ``generate`` and
    ``update``, hence every importance weight, MCMC acceptance ratio and
    objective built on them (``ppl.density`` of a model inside an
    ``@ppl.expectation``). An array log weight is summed. Its trace records no
    choice (an empty choice map): nothing to move, cover or constrain. It
    returns ``None``.

    Args:
        log_weight: the log-density term, traced like any argument (it may
            depend on earlier choices and on parameters being differentiated).

    Returns:
        An invocation to give an address; the call returns ``None``.

    Raises:
        AddressError: the log weight is not a real number, or a value is given
            at its address to ``assess``/``generate``/``update`` (it records no
            choice).

    Example:
        >>> @ppl.gen
        ... def model():
        ...     mu = ppl.normal(0.0, 10.0) @ "mu"
        ...     ppl.factor(ppl.normal.log_density(0.5, (mu, 1.0))) @ "lik"
    """

    @property
    def name(self) -> str:
        return "factor"

    def _simulate(self, key, args):
        return FactorTrace(self, args, _log_weight(args))

    def _assess(self, choices, args):
        if not choices.is_empty():
            raise _no_constraint(_FACTOR_HAS_NO_CHOICE, "assess")
        return _log_weight(args), None

    def _generate(self, key, constraints, args):
        if not constraints.is_empty():
            raise _no_constraint(_FACTOR_HAS_NO_CHOICE, "generate")
        tr = self._simulate(key, args)
        return tr, tr.score

    def _update(self, key, trace, constraints, args):
        if not constraints.is_empty():
            raise _no_constraint(_FACTOR_HAS_NO_CHOICE, "update")
        tr = self._simulate(key, args)
        return tr, tr.score - trace.score, ChoiceMap.empty()

    def _regenerate(self, key, trace, selection, args):
        tr = self._simulate(key, args)
        return tr, tr.score - trace.score

    def retval_abstract(self, args):
        return None


factor = Factor()


# ---------------------------------------------------------------------------
# deterministic
# ---------------------------------------------------------------------------


class DeterministicTrace(Trace):
    """The trace of ``ppl.deterministic(value)``: the value, no choice, score 0.

    Attributes:
        gen_fn: the :class:`Deterministic`.
        args: ``(value,)``.
        shown: whether ``choices`` shows the value (set by :func:`recorded` only).
    """

    gen_fn: Any = eqx.field(static=True)
    args: tuple
    shown: bool = eqx.field(static=True, default=False)

    @property
    def retval(self):
        return self.args[0]

    @property
    def score(self):
        return zero_score()

    @property
    def choices(self) -> ChoiceMap:
        return ChoiceMap.value(self.args[0]) if self.shown else ChoiceMap.empty()

    def project(self, selection):
        return zero_score()


_DETERMINISTIC_HAS_NO_CHOICE = (
    "ppl.deterministic records a value computed from the other choices there, not a random "
    "choice: it has no density and cannot be conditioned on"
)


class Deterministic(GenerativeFunction):
    """``ppl.deterministic(value) @ "addr"``: record a value computed from the choices.

    The value (any pytree of arrays) is returned, kept in the trace and read with
    :func:`recorded`; ``ppl.inference.run_mcmc`` (default samples) and
    ``ppl.inference.predictive`` return it with their draws, and importance and
    SMC particles hold it in their traces. It has no density (score 0) and is not
    a random choice: the trace's ``choices`` leave it out, so kernels do not move
    it and guides need not cover it. ``assess`` ignores a value given at its
    address (the value is recomputed from the other choices, so
    ``assess(recorded(tr), args)`` works); ``generate`` and ``update`` refuse one.

    Args:
        value: the value to record.

    Returns:
        An invocation to give an address; the call returns ``value``.

    Raises:
        AddressError: a value is given at its address to ``generate`` or
            ``update``: it cannot be constrained.

    Example:
        >>> sigma = ppl.deterministic(jnp.exp(log_sigma)) @ "sigma"
    """

    @property
    def name(self) -> str:
        return "deterministic"

    def _value(self, args):
        if len(args) != 1:
            raise PPLError(
                "ppl.deterministic takes one argument, the value to record, as in "
                f"ppl.deterministic(x) @ 'd'; got {len(args)} arguments."
            )
        return args

    def _simulate(self, key, args):
        return DeterministicTrace(self, self._value(args))

    def _assess(self, choices, args):
        # A value given here is ignored: it is recomputed from the other choices.
        tr = self._simulate(None, args)
        return tr.score, tr.retval

    def _generate(self, key, constraints, args):
        if not constraints.is_empty():
            raise _no_constraint(_DETERMINISTIC_HAS_NO_CHOICE, "generate")
        return self._simulate(key, args), zero_score()

    def _update(self, key, trace, constraints, args):
        if not constraints.is_empty():
            raise _no_constraint(_DETERMINISTIC_HAS_NO_CHOICE, "update")
        return self._simulate(key, args), zero_score(), ChoiceMap.empty()

    def _regenerate(self, key, trace, selection, args):
        return self._simulate(key, args), zero_score()

    def retval_abstract(self, args):
        return self._value(args)[0]


deterministic = Deterministic()


def _is_deterministic(x) -> bool:
    return isinstance(x, DeterministicTrace)


def recorded(trace: Trace) -> ChoiceMap:
    """The choices of ``trace`` and the values of its ``ppl.deterministic`` sites.

    Args:
        trace: any trace (batched traces give batched values).

    Returns:
        A :class:`~ppl.ChoiceMap`: ``trace.choices`` with each deterministic
        value at its address (nested calls and combinators address them as
        they do choices).

    Example:
        >>> tr = model.simulate(key, args)
        >>> ppl.recorded(tr)["sigma"]     # a deterministic value
    """
    shown = jax.tree.map(
        lambda t: DeterministicTrace(t.gen_fn, t.args, True) if _is_deterministic(t) else t,
        trace,
        is_leaf=_is_deterministic,
    )
    return shown.choices


def has_deterministic(trace: Trace) -> bool:
    """Whether ``trace`` holds a ``ppl.deterministic`` site (a static property of its structure).

    Args:
        trace: any trace, or a shape-only one from ``trace_shape``.

    Returns:
        True if some sub-trace is a :class:`DeterministicTrace`.

    Example:
        >>> has_deterministic(model.trace_shape(args))
    """
    leaves = jax.tree.leaves(trace, is_leaf=_is_deterministic)
    return any(_is_deterministic(x) for x in leaves)


# ---------------------------------------------------------------------------
# improper flat priors
# ---------------------------------------------------------------------------

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
        AddressError: an unknown support, or a shape with fewer dimensions than
            the support's; ``regenerate`` of it (``mh`` without a proposal);
            ``ppl.inference.importance`` and ``smc.init`` refuse a model that
            would sample one.

    Example:
        >>> c = ppl.improper_uniform("ordered_vector", (3,)) @ "cutpoints"
    """

    def __init__(self):
        super().__init__(_improper_uniform, "improper_uniform")

    def draw(self, key, d: nd.Distribution, *, reparam: bool = False):
        """An initialisation point in the support of ``d`` (not a sample: there is no
        distribution to sample).

        Args:
            key: a ``jax.random`` key.
            d: the numpyro ``ImproperUniform``.
            reparam: ignored (the point is a smooth function of the key only).

        Returns:
            ``biject_to(support)(u)`` with ``u`` uniform in ``[-2, 2]``.

        >>> x = ppl.improper_uniform.draw(key, ppl.improper_uniform.dist("positive", (3,)))
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

    Example:
        >>> improper_addresses(model.trace_shape(args))
        [('sigma',)]
    """
    marked = jax.tree.map(
        lambda t: DistributionTrace(t.gen_fn, t.args, _MARK, t.score) if _is_improper(t) else t,
        trace,
        is_leaf=_is_improper,
    )
    try:
        cm = marked.choices
    except Exception:  # choices computed on values (a switch on a run-time index)
        return []
    return [a for a in cm.addresses() if cm[a] is _MARK]


_MARK = object()


def _is_improper(x) -> bool:
    return isinstance(x, DistributionTrace) and isinstance(x.gen_fn, ImproperUniform)


__all__ = [
    "Deterministic",
    "DeterministicTrace",
    "Factor",
    "FactorTrace",
    "ImproperUniform",
    "deterministic",
    "factor",
    "has_deterministic",
    "improper_addresses",
    "improper_uniform",
    "recorded",
]
