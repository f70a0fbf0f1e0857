"""The docstring and signature of each built-in distribution, read off its numpyro class.

``help(ppl.normal)`` and ``inspect.signature(ppl.normal)`` should say what the
parameters are called, what values they take and what the draws are, without
the user learning it from an error. numpyro's classes know all of that
(their signatures, ``arg_constraints``, ``support``, ``has_rsample``); this
module turns it into text once, when the distribution is made.
"""

from __future__ import annotations

import inspect
import re
from typing import Callable

# Parameters for each built-in's example, as written in its docstring.
EXAMPLE_ARGS = {
    "normal": "0.0, 1.0",
    "mv_normal": "jnp.zeros(2), jnp.eye(2)",
    "mv_normal_diag": "jnp.zeros(2), jnp.ones(2)",
    "uniform": "0.0, 2.0",
    "beta": "2.0, 3.0",
    "gamma": "2.0, 1.0",
    "exponential": "1.5",
    "laplace": "0.0, 1.0",
    "logistic": "0.0, 1.0",
    "cauchy": "0.0, 1.0",
    "student_t": "3.0, 0.0, 1.0",
    "lognormal": "0.0, 0.5",
    "dirichlet": "jnp.ones(3)",
    "flip": "0.3",
    "categorical": "jnp.array([0.2, 0.5, 0.3])",
    "geometric": "0.4",
    "poisson": "3.0",
    "binomial": "10, 0.5",
    "half_normal": "1.0",
    "half_cauchy": "1.0",
}


def signature(factory: Callable) -> inspect.Signature | None:
    """The factory's signature without ``self`` and ``validate_args``, or ``None``."""
    try:
        sig = inspect.signature(factory)
    except (TypeError, ValueError):
        return None
    kept = [
        p.replace(annotation=inspect.Parameter.empty)
        for n, p in sig.parameters.items()
        if n not in ("self", "validate_args")
    ]
    return sig.replace(parameters=kept, return_annotation=inspect.Signature.empty)


def _constraint(c) -> str:
    base = getattr(c, "base_constraint", None)
    if base is not None:  # an independent constraint over the last axes
        return f"{_constraint(base)}, elementwise over the last {c.reinterpreted_batch_ndims} axis"
    if type(c).__name__.lower().lstrip("_").startswith("dependent"):
        return "depends on the parameters"
    text = str(c).split("(")[0].strip("_")
    words = re.sub(r"(?<!^)(?=[A-Z])", " ", text).lower()  # PositiveDefinite: positive definite
    return words or "any value"


def describe(factory: Callable, name: str) -> str:
    """The docstring of the distribution ``name`` made from ``factory``.

    Args:
        factory: a numpyro distribution class, or a function returning one.
        name: the distribution's name in ppl.

    Returns:
        The text: the parameters and their domains, the support of the draws,
        the default gradient strategy, the errors, and (for the built-ins) an
        example that runs.

    Example:
        >>> print(describe(numpyro.distributions.Normal, "normal").splitlines()[0])
        normal(loc=0.0, scale=1.0): numpyro's Normal as a ppl distribution.
    """
    sig = signature(factory)
    shown = f"{name}{sig}" if sig is not None else f"{name}(*params)"
    source = getattr(factory, "__name__", repr(factory)).lstrip("_")
    constraints = getattr(factory, "arg_constraints", None)
    constraints = constraints if isinstance(constraints, dict) else {}
    lines = [
        f"{shown}: numpyro's {source} as a ppl distribution.",
        "",
        f'Make a random choice with ``ppl.{name}(...) @ "addr"`` inside an ``@ppl.gen``',
        "function; parameters go by position or by name.",
        "",
        "Args:",
    ]
    for p in sig.parameters.values() if sig is not None else ():
        domain = _constraint(constraints[p.name]) if p.name in constraints else "see numpyro"
        lines.append(f"    {p.name}: {domain}.")
    support = getattr(factory, "support", None)
    support_text = _constraint(support) if support is not None else "see numpyro"
    pathwise = bool(getattr(factory, "has_rsample", False))
    lines += [
        "",
        "Returns:",
        f"    The call; ``@ addr`` makes the choice, a value in: {support_text}.",
        "",
        "Raises:",
        "    AddressError: a parameter that holds a value outside its domain (the",
        "        message names the address and the parameter).",
        "",
        "Gradient strategy by default: "
        + (
            "reparameterization (a pathwise sample)."
            if pathwise
            else "REINFORCE (score function); ``ppl.enum`` or ``ppl.mvd`` where valid."
        ),
    ]
    if name in EXAMPLE_ARGS:
        lines += [
            "",
            "Example:",
            f"    >>> trace = ppl.{name}.simulate(jax.random.key(0), ({EXAMPLE_ARGS[name]},))",
            "    >>> bool(jnp.isfinite(trace.score))",
            "    True",
        ]
    return "\n".join(lines)
