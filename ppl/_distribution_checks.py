"""Support and parameter checks for distributions: which parameters a numpyro
factory takes, whether values are in a support, draws moved off an open
support's boundary, and the error for a parameter outside its domain."""

from __future__ import annotations

import inspect

import jax
import jax.numpy as jnp
import numpy as np
import numpyro.distributions as nd

from ppl._errors import AddressError, parameter_error
from ppl.core import is_concrete, is_tracer


def parameter_names(factory) -> list | None:
    """The names of a numpyro factory's positional parameters, in order.

    Args:
        factory: a numpyro distribution class or a function returning one.

    Returns:
        A list of names (without ``self`` and ``validate_args``), or ``None``
        when the signature cannot be read (a builtin, say).

    Examples:
        >>> parameter_names(numpyro.distributions.Normal)
        ['loc', 'scale']
    """
    try:
        sig = inspect.signature(factory)
    except (TypeError, ValueError):
        return None
    return [
        n
        for n, p in sig.parameters.items()
        if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)
        and n not in ("self", "validate_args")
    ]


def inside_support(support, x):
    """``x`` moved off the boundary of an open positive, unit-interval or simplex support.

    A sampler can round a draw onto the boundary (0 for a gamma in float32),
    where the log density is -inf; the draw is moved to the nearest inside value.

    Args:
        support: the distribution's numpyro support.
        x: a drawn value.

    Returns:
        ``x`` with entries outside ``[tiny, max]`` (or ``[tiny, 1)``) clamped;
        unchanged for other supports and for non-float values. The derivative
        is exactly 1 wherever nothing is clamped.

    Examples:
        >>> inside_support(nd.constraints.positive, jnp.zeros(2))   # [tiny, tiny]
    """
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
    return jnp.where(
        x < lo, jnp.asarray(lo, x.dtype), jnp.where(x > hi, jnp.asarray(hi, x.dtype), x)
    )


def support_name(d) -> str:
    """The name of a numpyro distribution's support, for messages (``"Positive"``...).

    Args:
        d: a numpyro distribution.

    Returns:
        The support's class name without leading underscores.

    Examples:
        >>> support_name(nd.Gamma(1.0))
        'Positive'
    """
    return type(d.support).__name__.lstrip("_")


def membership(support, value, concrete=False):
    """Whether each value (over the support's event dims) is in ``support``.

    Args:
        support: a numpyro support.
        value: the values.
        concrete: evaluate now (``jax.ensure_compile_time_eval``), to raise an
            error before staging goes on.

    Returns:
        A boolean array; ``None`` for supports without a test, and for real
        lines (numpyro's log density is already -inf at +-inf there).

    Examples:
        >>> membership(nd.constraints.positive, jnp.array([1.0, -1.0]))
        Array([ True, False], dtype=bool)
    """
    base = support
    while isinstance(base, nd.constraints.independent):
        base = base.base_constraint
    if isinstance(base, type(nd.constraints.real)):
        return None
    if concrete:
        with jax.ensure_compile_time_eval():
            return membership(support, value)
    try:
        if (
            support is nd.constraints.simplex
        ):  # numpyro's 1e-6 is below float32 rounding for long vectors
            x = jnp.asarray(value)
            tol = max(1e-6, x.shape[-1] * float(jnp.finfo(jnp.result_type(x.dtype, float)).eps))
            return jnp.all(x >= 0, axis=-1) & (jnp.abs(jnp.sum(x, axis=-1) - 1) <= tol)
        return jnp.asarray(support(value))
    except Exception:  # a support without a membership test: nothing to check
        return None


def parameter_problem(name, d, given: dict) -> AddressError | None:
    """The error for the first concrete parameter outside numpyro's domain for it.

    Args:
        name: the ppl distribution's name, for the message.
        d: the numpyro distribution built from the parameters.
        given: the parameters as passed, by name (traced ones are skipped).

    Returns:
        An ``AddressError`` naming the parameter and its domain, or
        ``None`` when every concrete parameter is in its domain.

    Examples:
        >>> parameter_problem("normal", nd.Normal(0.0, -1.0), {"loc": 0.0, "scale": -1.0})
        AddressError("parameter 'scale' of normal at (top level) must be > 0; ...")
    """
    base = d
    while isinstance(base, (nd.Independent, nd.ExpandedDistribution, nd.MaskedDistribution)):
        base = base.base_dist
    domains = getattr(type(base), "arg_constraints", None) or {}
    held = vars(base)
    for param, constraint in domains.items():
        value = given[param] if param in given else held.get(param)
        if value is None or not is_concrete(value) or callable(value):
            continue
        try:
            x = np.asarray(value)
            ok = np.asarray(constraint(x))
        except Exception:
            continue
        if ok.dtype == np.bool_ and not ok.all():
            while isinstance(constraint, nd.constraints.independent):
                constraint = constraint.base_constraint
            return parameter_error(name, param, type(constraint).__name__, x, ok)
    return None


def is_traced_integer(v) -> bool:
    """Whether ``v`` is a traced integer or boolean (a parameter numpyro may need concrete).

    Args:
        v: a parameter.

    Returns:
        True for a JAX tracer of integer or boolean dtype.

    Examples:
        >>> is_traced_integer(3)
        False
    """
    return is_tracer(v) and (
        jnp.issubdtype(v.dtype, jnp.integer) or jnp.issubdtype(v.dtype, jnp.bool_)
    )
