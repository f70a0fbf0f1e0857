"""Distributions: primitive generative functions backed by ``numpyro.distributions``.

Each distribution's choice map is its value. Parameters may be batched
(``normal(jnp.zeros(3), 1.0)`` makes a vector-valued choice); the score sums
the log densities of all elements.
"""

from __future__ import annotations

from typing import Any, Callable

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import numpyro.distributions as nd

from ppl._args import hold_static_ints, release
from ppl._distribution_docs import describe, signature
from ppl._errors import AddressError, PPLError, escape
from ppl._gfi import GenerativeFunction, Trace
from ppl.choices import ChoiceMap
from ppl._distribution_checks import (
    inside_support,
    is_traced_integer,
    membership,
    parameter_names,
    parameter_problem,
    support_name,
)
from ppl.core import is_concrete


class DistributionTrace(Trace):
    gen_fn: Any = eqx.field(static=True)
    args: tuple
    value: Any
    score: Any

    @property
    def retval(self):
        return self.value

    @property
    def choices(self) -> ChoiceMap:
        return ChoiceMap.value(self.value)

    def project(self, selection):
        return self.score if selection.is_all() else jnp.zeros_like(self.score)


class Distribution(GenerativeFunction):
    """A primitive generative function made from a numpyro distribution factory.

    ``factory(*params)`` must return a ``numpyro.distributions.Distribution``.
    Keyword parameters at the call site are put in the factory's positional
    order, so ``flip(logits=x)`` and ``flip(0.3)`` are both fine. Python ints
    and bools among the parameters are held static (numpyro needs some of
    them as Python values: ``LKJCholesky``'s dimension, a count to enumerate
    a binomial's support), so ``distribution(LKJCholesky)(3, 2.0)`` works.

    Parameters that hold values now (eager calls, constants under ``jit``)
    are checked against numpyro's domains (a positive scale, probabilities in
    [0, 1] that sum to 1, a positive-definite covariance, finite locations);
    one outside raises an ``AddressError`` naming the address and the
    parameter. Parameters computed under ``jit`` cannot be checked: there the
    score follows numpyro (typically NaN or -inf). Build one with ``distribution``.

    Args:
        factory: a numpyro distribution class, or a function of the parameters
            returning a numpyro distribution.
        name: the name used in messages (default: the factory's name).
        value_dtype: the dtype the values are cast to (``flip`` uses
            ``jnp.bool_``); ``None`` keeps numpyro's.

    Examples:
        >>> import numpyro.distributions as nd
        >>> coin = ppl.Distribution(nd.Bernoulli, "coin", value_dtype=jnp.bool_)
        >>> coin.simulate(jax.random.key(0), (0.3,)).retval.dtype
        dtype('bool')
    """

    def __init__(self, factory: Callable, name: str | None = None, value_dtype=None):
        self.factory = factory
        self._name = name or getattr(factory, "__name__", repr(factory))
        self.value_dtype = value_dtype
        self._params = parameter_names(factory)
        # What help() and inspect.signature() show: the parameters' names and domains.
        self.__doc__ = describe(factory, self._name)
        self.__signature__ = signature(factory)

    @property
    def name(self) -> str:
        return self._name

    def __call__(self, *args, **kwargs):
        return super().__call__(*self.parameters(args, kwargs))

    def parameters(self, args: tuple, kwargs: dict) -> tuple:
        """The parameters of a call ``self(*args, **kwargs)`` as the call site
        records them: in the factory's positional order, Python ints and bools
        held static (wrappers such as strategies use this too).

        Args:
            args: positional parameters.
            kwargs: keyword parameters, by the factory's parameter names.

        Returns:
            A tuple of parameters.

        Raises:
            PPLError: an unknown keyword, or a parameter given twice.

        Examples:
            >>> ppl.flip.parameters((), {"logits": 0.0})
            (None, 0.0)
        """
        return hold_static_ints(self._positional(args, kwargs))

    def _positional(self, args, kwargs) -> tuple:
        if not kwargs:
            return args
        if self._params is None:
            raise PPLError(
                f"{self.name} takes positional parameters only; got keywords {sorted(kwargs)}."
            )
        out = list(args) + [None] * (len(self._params) - len(args))
        for k, v in kwargs.items():
            if k not in self._params:
                raise PPLError(
                    f"{self.name} has no parameter {k!r}; its parameters are {self._params}."
                )
            i = self._params.index(k)
            if i < len(args):
                raise PPLError(
                    f"{self.name} got parameter {k!r} twice (by position and by keyword)."
                )
            out[i] = v
        while out and out[-1] is None:
            out.pop()
        return tuple(out)

    def _param_names(self, n: int) -> list:
        names = list(self._params or ())[:n]
        return names + [f"#{i}" for i in range(len(names), n)]

    def dist(self, *args) -> nd.Distribution:
        """The numpyro distribution for these parameters.

        Args:
            *args: the parameters, in the factory's positional order.

        Returns:
            ``factory(*args)``, a ``numpyro.distributions.Distribution``.

        Raises:
            AddressError: the factory refuses the parameters (a traced integer
                where numpyro needs a Python int is named as such), or a
                concrete parameter is outside its domain (see the class).

        Examples:
            >>> ppl.normal.dist(0.0, 2.0).scale
            2.0
        """
        params = release(args)
        names = self._param_names(len(params))
        # A shape (a tuple of ints) is never traceable; numpyro would fail later, in its sampler.
        shapes = [n for n, v in zip(names, params) if isinstance(v, (tuple, list)) and _traced(v)]
        if shapes:
            raise _traced_error(self.name, shapes)
        try:
            return self.factory(*params)
        except (TypeError, ValueError) as e:
            raise self._build_error(params, e) from e

    def _build_error(self, params, e) -> AddressError:
        names = self._param_names(len(params))
        traced = [n for n, v in zip(names, params) if _traced(v)]
        if traced:
            return _traced_error(self.name, traced)
        if isinstance(e, ValueError):  # numpyro's check of concrete parameters: say which and why
            validate, nd.Distribution._validate_args = nd.Distribution._validate_args, False
            try:
                problem = parameter_problem(
                    self.name, self.factory(*params), dict(zip(names, params))
                )
            except Exception:
                problem = None
            finally:
                nd.Distribution._validate_args = validate
            if problem is not None:
                return problem
        return AddressError(
            f"could not build {self.name} at {{addr}} from parameters "
            f"{escape(f'{params!r:.200}')}: "
            f"{escape(str(e))}. Its parameters are {escape(str(self._params))}; pass values of "
            "those."
        )

    # -- values -------------------------------------------------------------
    def _to_value(self, raw):
        return raw.astype(self.value_dtype) if self.value_dtype is not None else raw

    def _for_density(self, d, value):
        if jnp.issubdtype(value.dtype, jnp.bool_):
            return value.astype(jnp.result_type(float))
        if getattr(d.support, "is_discrete", False) and not jnp.issubdtype(
            value.dtype, jnp.integer
        ):
            return value.astype(jnp.result_type(int))  # e.g. a categorical given 1.0
        return value

    def log_density(self, value, args) -> jax.Array:
        """The log density of ``value`` under this distribution with ``args``,
        summed over elements: -inf outside the support (also under ``jit``,
        where the value cannot be checked before running, and for NaN).

        Args:
            value: an array of the distribution's value shape (any dtype that
                holds the value: ``flip`` takes bools, 0/1 ints or floats).
            args: the parameters, a tuple.

        Returns:
            A scalar.

        Raises:
            AddressError: as ``dist``.

        Examples:
            >>> ppl.flip.log_density(2, (0.3,))  # not a boolean: impossible
            Array(-inf, dtype=float32)
        """
        d = self.dist(*args)
        value = jnp.asarray(value)
        ok = membership(d.support, value)
        if ok is None:
            return jnp.sum(d.log_prob(self._for_density(d, value)))
        # Score an in-support stand-in where the value is outside, so neither the
        # score nor its gradient sees numpyro's arithmetic on an impossible value.
        support = d.support
        assert support is not None  # membership() gave a mask, so the support is known
        event = (None,) * (value.ndim - ok.ndim)
        safe = jnp.where(ok[(..., *event)], value, support.feasible_like(value).astype(value.dtype))
        lp = d.log_prob(self._for_density(d, safe))
        return jnp.sum(jnp.where(ok, lp, -jnp.inf))

    def _given(self, choices: ChoiceMap, args):
        """``(value as stored, log density)`` of a value given in ``choices``."""
        if not choices.has_value():
            raise AddressError(
                f"{self.name} makes one random choice, so it takes a value at {{addr}}, "
                f"not a map of sub-addresses {escape(str(choices.addresses()))}."
            )
        d = self.dist(*args)
        value = jnp.asarray(choices.get_value())
        expected = d.shape()
        if value.shape != expected:
            raise AddressError(
                f"the value at {{addr}} has shape {value.shape}, but {self.name} with these "
                f"parameters makes values of shape {expected}. Give a value of that shape."
            )
        if is_concrete(value):
            if jnp.issubdtype(value.dtype, jnp.inexact) and bool(np.isnan(np.asarray(value)).any()):
                raise AddressError(
                    "the value given at {addr} is NaN, which no distribution produces (under jit "
                    "it "
                    "scores -inf, zeroing the weight). Give a number; for a missing observation, "
                    "leave the address out of the choice map (generate then samples it)."
                )
            # Check the support before casting: a cast to bool would turn 2 or 0.5 into True.
            ok = membership(d.support, value, concrete=True)
            if ok is not None and is_concrete(ok) and not bool(np.all(np.asarray(ok))):
                raise AddressError(
                    f"the value at {{addr}} is outside the support of {self.name} "
                    f"({support_name(d)}); its log density would be -inf. Give a value in the "
                    "support."
                )
        score = self.log_density(value, args)
        # Stored with the dtype simulate gives (int for categorical, float for geometric):
        # the rest of a staged program was traced for that dtype.
        flat, tree = jax.tree.flatten(hold_static_ints(args))
        dtype = self._retval_shape(tree, tuple(jax.typeof(x) for x in flat)).dtype
        return value.astype(dtype), score

    def draw(self, key, d: nd.Distribution, *, reparam: bool = False):
        """Draw one value of ``d`` (this distribution's numpyro object for some
        parameters, from ``dist``), strictly inside its support.

        Finite-precision samplers can land on the boundary of an open support:
        float32 ``gamma`` with concentration 0.05 gives an exact 0 about once
        in a hundred draws (the true value is below the smallest float), and
        a log density of +-inf there turns every gradient estimate into NaN.
        So values of positive supports are kept in [smallest normal float,
        largest finite float], values of the unit interval in [smallest normal
        float, the float just below 1], and simplex components at least the
        smallest normal float (the sum stays 1 to float precision). Elsewhere
        the value is the sampler's own, and so is its pathwise derivative (a
        clamped element has derivative 0).

        Args:
            key: a ``jax.random`` key.
            d: the numpyro distribution, ``self.dist(*args)``.
            reparam: draw with ``d.rsample`` (pathwise derivatives, for the
                reparameterization strategies) instead of ``d.sample``.

        Returns:
            The value, in this distribution's value dtype (bool for ``flip``).

        Raises:
            NotImplementedError: ``reparam=True`` for a distribution numpyro
                cannot ``rsample``.

        Examples:
            >>> d = ppl.gamma.dist(0.05, 1.0)
            >>> x = ppl.gamma.draw(jax.random.key(7), d)  # > 0 even where d.sample gives 0
        """
        raw = d.rsample(key) if reparam else d.sample(key)
        return self._to_value(inside_support(d.support, raw))

    # -- the interface ------------------------------------------------------
    def _simulate(self, key, args):
        d = self.dist(*args)
        value = self.draw(key, d)
        return DistributionTrace(
            self, args, value, jnp.sum(d.log_prob(self._for_density(d, value)))
        )

    def _assess(self, choices, args):
        value, score = self._given(choices, args)
        return score, value

    def _generate(self, key, constraints, args):
        if constraints.is_empty():
            tr = self._simulate(key, args)
            return tr, jnp.zeros_like(tr.score)
        value, score = self._given(constraints, args)
        return DistributionTrace(self, args, value, score), score

    def _update(self, key, trace, constraints, args):
        if constraints.is_empty():
            score = self.log_density(trace.value, args)
            return (
                DistributionTrace(self, args, trace.value, score),
                score - trace.score,
                ChoiceMap.empty(),
            )
        value, score = self._given(constraints, args)
        return DistributionTrace(self, args, value, score), score - trace.score, trace.choices

    def _regenerate(self, key, trace, selection, args):
        if selection.is_all():
            tr = self._simulate(key, args)
            return tr, jnp.zeros_like(tr.score)
        tr, w, _ = self._update(key, trace, ChoiceMap.empty(), args)
        return tr, w

    def __repr__(self):
        return self.name


def _traced(v) -> bool:
    """Whether a parameter (a number or a pytree, such as a shape) has a traced integer leaf."""
    return any(is_traced_integer(leaf) for leaf in jax.tree.leaves(v))


def _traced_error(name: str, params: list) -> AddressError:
    return AddressError(
        f"parameter {escape(', '.join(map(repr, params)))} of {name} at {{addr}} must be a Python "
        "int (or a tuple of them; numpyro needs its value while the program is staged), but it "
        "is traced: an argument of an @gen function or of a jitted function, or a value computed "
        "from one (ppl traces number arguments). Write the number in the call (ppl holds Python "
        "ints and bools there static), close over it (build the model in a Python function of "
        "it), or fix it in the distribution: ppl.distribution(functools.partial(<numpyro "
        f"class>, {params[0]}=...))."
    )


def distribution(numpyro_class: Callable, name: str | None = None) -> Distribution:
    """Lift any numpyro distribution (class or factory) into a ppl distribution.

    Args:
        numpyro_class: a ``numpyro.distributions`` class, or any function of
            the parameters that returns a numpyro distribution.
        name: the name used in messages (default: the class's name).

    Returns:
        A ``Distribution``; Python ints and bools among its parameters
        are held static (see ``Distribution``). Its default gradient
        strategy is ``ppl.reparam`` if numpyro can ``rsample`` it and its
        support is continuous, otherwise ``ppl.reinforce``.

    Raises:
        PPLError: if ``numpyro_class`` is not callable.
        AddressError: when a choice is made, if the factory refuses the
            parameters, or a parameter that holds a value is outside its domain.

    Examples:
        >>> import numpyro.distributions as nd
        >>> lkj = ppl.distribution(nd.LKJCholesky)
        >>> lkj.simulate(jax.random.key(0), (3, 2.0)).retval.shape  # 3 stays a Python int
        (3, 3)
    """
    if not callable(numpyro_class):
        raise PPLError(
            f"ppl.distribution needs a numpyro distribution class (or a function of the "
            f"parameters returning a numpyro distribution), got {numpyro_class!r}; for "
            "example ppl.distribution(numpyro.distributions.LKJCholesky)."
        )
    return Distribution(numpyro_class, name=name)


def _mv_normal_diag(loc, scale_diag):
    return nd.Normal(loc, scale_diag).to_event(1)


normal = Distribution(nd.Normal, "normal")
mv_normal = Distribution(nd.MultivariateNormal, "mv_normal")
mv_normal_diag = Distribution(_mv_normal_diag, "mv_normal_diag")
uniform = Distribution(nd.Uniform, "uniform")
beta = Distribution(nd.Beta, "beta")
gamma = Distribution(nd.Gamma, "gamma")
exponential = Distribution(nd.Exponential, "exponential")
laplace = Distribution(nd.Laplace, "laplace")
logistic = Distribution(nd.Logistic, "logistic")
cauchy = Distribution(nd.Cauchy, "cauchy")
student_t = Distribution(nd.StudentT, "student_t")
lognormal = Distribution(nd.LogNormal, "lognormal")
dirichlet = Distribution(nd.Dirichlet, "dirichlet")
flip = Distribution(nd.Bernoulli, "flip", value_dtype=jnp.bool_)
bernoulli = flip
categorical = Distribution(nd.Categorical, "categorical")
geometric = Distribution(nd.Geometric, "geometric")
poisson = Distribution(nd.Poisson, "poisson")
binomial = Distribution(nd.Binomial, "binomial")
half_normal = Distribution(nd.HalfNormal, "half_normal")
half_cauchy = Distribution(nd.HalfCauchy, "half_cauchy")
