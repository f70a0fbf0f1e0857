"""Distributions: primitive generative functions backed by ``numpyro.distributions``.

Each distribution's choice map is its value. Parameters may be batched
(``normal(jnp.zeros(3), 1.0)`` makes a vector-valued choice); the score sums
the log densities of all elements.
"""

from __future__ import annotations

import inspect
from typing import Any, Callable

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import numpyro.distributions as nd

from ppl import _jax
from ppl._args import release
from ppl._errors import AddressError, PPLError
from ppl._gfi import GenerativeFunction, Trace
from ppl.choices import ChoiceMap


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
    order, so ``flip(logits=x)`` and ``flip(0.3)`` are both fine.
    """

    def __init__(self, factory: Callable, name: str | None = None, value_dtype=None):
        self.factory = factory
        self._name = name or getattr(factory, "__name__", repr(factory))
        self.value_dtype = value_dtype
        self._params = _parameter_names(factory)

    @property
    def name(self) -> str:
        return self._name

    def __call__(self, *args, **kwargs):
        return super().__call__(*self._positional(args, kwargs))

    def _positional(self, args, kwargs) -> tuple:
        if not kwargs:
            return args
        if self._params is None:
            raise PPLError(f"{self.name} takes positional parameters only; got keywords {sorted(kwargs)}.")
        out = list(args) + [None] * (len(self._params) - len(args))
        for k, v in kwargs.items():
            if k not in self._params:
                raise PPLError(f"{self.name} has no parameter {k!r}; its parameters are {self._params}.")
            i = self._params.index(k)
            if i < len(args):
                raise PPLError(f"{self.name} got parameter {k!r} twice (by position and by keyword).")
            out[i] = v
        while out and out[-1] is None:
            out.pop()
        return tuple(out)

    def dist(self, *args) -> nd.Distribution:
        """The numpyro distribution for these parameters."""
        try:
            return self.factory(*release(args))
        except (TypeError, ValueError) as e:
            raise PPLError(f"could not build {self.name} from parameters {args!r:.200}: {e}") from e

    # -- values -------------------------------------------------------------
    def _to_value(self, raw):
        return raw.astype(self.value_dtype) if self.value_dtype is not None else raw

    def _for_density(self, d, value):
        if self.value_dtype is not None:
            dtype = jnp.result_type(float) if jnp.issubdtype(self.value_dtype, jnp.bool_) else value.dtype
            return value.astype(dtype)
        return value

    def log_density(self, value, args) -> jax.Array:
        d = self.dist(*args)
        return jnp.sum(d.log_prob(self._for_density(d, value)))

    def _checked_value(self, choices: ChoiceMap, args):
        if not choices.has_value():
            raise AddressError(
                f"{self.name} makes one random choice, so it takes a value at {{addr}}, "
                f"not a map of sub-addresses {choices.addresses()}."
            )
        d = self.dist(*args)
        value = jnp.asarray(choices.get_value())
        expected = d.shape()
        if value.shape != expected:
            raise AddressError(
                f"the value at {{addr}} has shape {value.shape}, but {self.name} with these "
                f"parameters makes values of shape {expected}. Give a value of that shape."
            )
        # Check the support before casting: a cast to bool would turn 2 or 0.5 into True.
        if _jax.is_concrete(value) and not _is_discrete_support_ok(d, value):
            raise AddressError(
                f"the value at {{addr}} is outside the support of {self.name} "
                f"({_support_name(d)}); its log density would be -inf. Give a value in the support."
            )
        if self.value_dtype is not None:
            value = value.astype(self.value_dtype)
        return value

    def draw(self, key, d: nd.Distribution, *, reparam: bool = False):
        """Draw one value of ``d`` (this distribution's numpyro object for some
        parameters, from :meth:`dist`), strictly inside its support.

        Finite-precision samplers can land on the boundary of an open support:
        float32 ``gamma`` with a concentration near 0.05 gives an exact 0 about
        once in a few hundred draws (the true value is below the smallest
        float), and a log density of +-inf there turns every gradient estimate
        into NaN. So values of positive supports are kept in [smallest normal
        float, largest finite float], values of the unit interval in
        [smallest normal float, the float just below 1], and simplex
        components at least the smallest normal float (the sum stays 1 to
        float precision). Elsewhere the value is the sampler's own, and so is
        its pathwise derivative (a clamped element has derivative 0).

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

        >>> d = ppl.gamma.dist(0.05, 1.0)
        >>> x = ppl.gamma.draw(jax.random.key(39), d)  # > 0 even where d.sample gives 0
        """
        raw = d.rsample(key) if reparam else d.sample(key)
        return self._to_value(_inside_support(d.support, raw))

    # -- the interface ------------------------------------------------------
    def _simulate(self, key, args):
        d = self.dist(*args)
        value = self.draw(key, d)
        return DistributionTrace(self, args, value, jnp.sum(d.log_prob(self._for_density(d, value))))

    def _assess(self, choices, args):
        value = self._checked_value(choices, args)
        return self.log_density(value, args), value

    def _generate(self, key, constraints, args):
        if constraints.is_empty():
            tr = self._simulate(key, args)
            return tr, jnp.zeros_like(tr.score)
        value = self._checked_value(constraints, args)
        score = self.log_density(value, args)
        return DistributionTrace(self, args, value, score), score

    def _update(self, key, trace, constraints, args):
        if constraints.is_empty():
            score = self.log_density(trace.value, args)
            return DistributionTrace(self, args, trace.value, score), score - trace.score, ChoiceMap.empty()
        value = self._checked_value(constraints, args)
        score = self.log_density(value, args)
        return DistributionTrace(self, args, value, score), score - trace.score, trace.choices

    def _regenerate(self, key, trace, selection, args):
        if selection.is_all():
            tr = self._simulate(key, args)
            return tr, jnp.zeros_like(tr.score)
        tr, w, _ = self._update(key, trace, ChoiceMap.empty(), args)
        return tr, w

    def __repr__(self):
        return self.name


def _parameter_names(factory) -> list | None:
    try:
        sig = inspect.signature(factory)
    except (TypeError, ValueError):
        return None
    return [
        n for n, p in sig.parameters.items()
        if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD) and n not in ("self", "validate_args")
    ]


def _inside_support(support, x):
    """``x`` moved off the boundary of an open positive, unit-interval or simplex support."""
    while isinstance(support, nd.constraints.independent):
        support = support.base_constraint
    x = jnp.asarray(x)
    if not jnp.issubdtype(x.dtype, jnp.floating):
        return x
    info = jnp.finfo(x.dtype)
    if isinstance(support, (type(nd.constraints.positive), type(nd.constraints.softplus_positive))):
        lo, hi = info.tiny, info.max
    elif support is nd.constraints.unit_interval:
        lo, hi = info.tiny, jnp.nextafter(jnp.ones((), x.dtype), 0)
    elif support is nd.constraints.simplex:
        lo, hi = info.tiny, 1.0
    else:
        return x
    # where, not clip: the derivative stays exactly 1 wherever no clamp applies.
    return jnp.where(x < lo, jnp.asarray(lo, x.dtype), jnp.where(x > hi, jnp.asarray(hi, x.dtype), x))


def _support_name(d) -> str:
    return type(d.support).__name__.lstrip("_")


def _is_discrete_support_ok(d, value) -> bool:
    try:
        with jax.ensure_compile_time_eval():
            ok = d.support(value)
    except Exception:  # a support without a membership test: nothing to check
        return True
    # With traced parameters the answer is only known at run time: nothing to say now.
    return not _jax.is_concrete(ok) or bool(np.all(np.asarray(ok)))


def distribution(numpyro_class: Callable, name: str | None = None) -> Distribution:
    """Lift any numpyro distribution (class or factory) into a ppl distribution.

    >>> vonmises = ppl.distribution(numpyro.distributions.VonMises)
    >>> x = vonmises(0.0, 2.0) @ "angle"
    """
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
