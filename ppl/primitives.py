"""Modelling primitives that are not random choices: ``factor`` and ``deterministic``
(the improper flat prior ``improper_uniform`` is in ``ppl.improper``).

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
  read with ``recorded`` (the choices plus every deterministic value), and
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

from ppl._errors import AddressError, PPLError
from ppl._gfi import GenerativeFunction, Trace
from ppl.choices import ChoiceMap


def zero_score() -> jax.Array:
    """A log density of 0 in the default float dtype."""
    return jnp.zeros((), jnp.result_type(float))


# ---------------------------------------------------------------------------
# factor
# ---------------------------------------------------------------------------


class FactorTrace(Trace):
    """The trace of ``ppl.factor(log_weight)``: a score and no choice.

    Attributes:
        gen_fn: the ``Factor``.
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

    Inside an expectation, a factor is refused (a ``PPLError``) when the
    expectation samples the function it is in (``ppl.sim`` or a call), which
    then has no distribution; ``ppl.density`` of it counts the factor.

    Args:
        *args: exactly one, ``log_weight``: the log-density term, traced like
            any argument (it may depend on earlier choices and on parameters
            being differentiated).

    Returns:
        An invocation to give an address; the call returns ``None``.

    Raises:
        PPLError: not exactly one argument.
        AddressError: the log weight is not a real number, or a value is given
            at its address to ``assess``/``generate``/``update`` (it records no
            choice).

    Examples:
        >>> @ppl.gen
        ... def model():
        ...     mu = ppl.normal(0.0, 10.0) @ "mu"
        ...     ppl.factor(-0.5 * (mu - 0.5) ** 2) @ "lik"
        >>> log_p, _ = model.assess({"mu": 0.5}, ())  # the factor is 0 at mu = 0.5
        >>> bool(log_p == ppl.normal.assess(ppl.ChoiceMap.value(0.5), (0.0, 10.0))[0])
        True
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
        gen_fn: the ``Deterministic``.
        args: ``(value,)``.
        shown: whether ``choices`` shows the value (set by ``recorded`` only).
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
    ``recorded``; ``ppl.inference.run_mcmc`` (default samples) and
    ``ppl.inference.predictive`` return it with their draws, and importance and
    SMC particles hold it in their traces. It has no density (score 0) and is not
    a random choice: the trace's ``choices`` leave it out, so kernels do not move
    it and guides need not cover it. ``assess`` ignores a value given at its
    address (the value is recomputed from the other choices, so
    ``assess(recorded(tr), args)`` works); ``generate`` and ``update`` refuse one.

    Args:
        *args: exactly one, ``value``: the value to record.

    Returns:
        An invocation to give an address; the call returns ``value``.

    Raises:
        PPLError: not exactly one argument.
        AddressError: a value is given at its address to ``generate`` or
            ``update``: it cannot be constrained.

    Examples:
        >>> @ppl.gen
        ... def model():
        ...     log_s = ppl.normal(0.0, 1.0) @ "log_s"
        ...     return ppl.deterministic(jnp.exp(log_s)) @ "sigma"
        >>> tr = model.simulate(jax.random.key(0), ())
        >>> tr.choices.addresses(), ppl.recorded(tr).addresses()
        ([('log_s',)], [('log_s',), ('sigma',)])
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
        A ``ppl.ChoiceMap``: ``trace.choices`` with each deterministic
        value at its address (nested calls and combinators address them as
        they do choices). ``assess`` accepts it (deterministic values there
        are ignored and recomputed).

    Raises:
        AttributeError: if ``trace`` is not a trace (it has no ``choices``).

    Examples:
        >>> @ppl.gen
        ... def model():
        ...     mu = ppl.normal(0.0, 1.0) @ "mu"
        ...     return ppl.deterministic(2.0 * mu) @ "twice"
        >>> tr = model.simulate(jax.random.key(0), ())
        >>> bool(ppl.recorded(tr)["twice"] == 2.0 * tr["mu"])
        True
        >>> bool(model.assess(ppl.recorded(tr), ())[0] == tr.score)
        True
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
        True if some sub-trace is a ``DeterministicTrace``.

    Examples:
        >>> has_deterministic(ppl.deterministic.trace_shape((1.0,)))
        True
    """
    leaves = jax.tree.leaves(trace, is_leaf=_is_deterministic)
    return any(_is_deterministic(x) for x in leaves)


__all__ = [
    "Deterministic",
    "DeterministicTrace",
    "Factor",
    "FactorTrace",
    "deterministic",
    "factor",
    "has_deterministic",
    "recorded",
]
