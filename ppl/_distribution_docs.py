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
from typing import Callable, NamedTuple

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
    bound = getattr(c, "lower_bound", None)
    if type(c).__name__.strip("_") in ("GreaterThan", "GreaterThanEq"):
        return f"{'at least' if type(c).__name__.endswith('Eq') else 'greater than'} {bound}"
    text = str(c).split("(")[0].strip("_")
    words = re.sub(r"(?<!^)(?=[A-Z])", " ", text).lower()  # PositiveDefinite: positive definite
    return words or "any value"


class Facts(NamedTuple):
    """What a distribution's docs say, read off its numpyro class."""

    shown: str  # the call with its parameters: ``normal(loc=0.0, scale=1.0)``
    source: str  # numpyro's class name
    domains: list[tuple[str, str]]  # each parameter and the values it takes
    support: str  # the values of the draws
    pathwise: bool  # reparameterized by default (else REINFORCE)


def _classes(factory: Callable) -> list:
    """The numpyro classes behind ``factory``: itself, or for numpyro's functions that
    pick a class by keyword (``Bernoulli(probs=...)`` or ``(logits=...)``) both classes."""
    if inspect.isclass(factory):
        return [factory]
    module, name = inspect.getmodule(factory), getattr(factory, "__name__", None)
    if name is None:  # a functools.partial or another callable without a name
        return []
    named = (getattr(module, f"{name}{kind}", None) for kind in ("Probs", "Logits"))
    return [c for c in named if inspect.isclass(c)]


# Built-ins that are ppl's own functions rather than numpyro classes: what their
# parameters and draws take (a diagonal normal is numpyro's Normal over a vector).
OWN_FACTORIES = {
    "mv_normal_diag": (
        {"loc": "real, elementwise over the last 1 axis", "scale_diag": "positive, elementwise"},
        "real, elementwise over the last 1 axis",
    ),
}


def _pathwise(c) -> bool:
    """Whether ppl's default strategy for draws of class ``c`` is reparameterization."""
    discrete = bool(getattr(c.support, "is_discrete", False))
    return not discrete and bool(getattr(c, "reparametrized_params", ()))


def facts(factory: Callable, name: str) -> Facts:
    """The signature, parameter domains, support and default strategy of ``name``."""
    sig = signature(factory)
    classes = _classes(factory)
    constraints = {}
    for c in reversed(classes):
        found = getattr(c, "arg_constraints", None)
        constraints.update(found if isinstance(found, dict) else {})
    support = next((c.support for c in classes if getattr(c, "support", None) is not None), None)
    own_domains, own_support = OWN_FACTORIES.get(name, ({}, None))
    return Facts(
        shown=f"{name}{sig}" if sig is not None else f"{name}(*params)",
        source=getattr(factory, "__name__", repr(factory)).lstrip("_"),
        domains=[
            (
                p,
                own_domains.get(p)
                or (_constraint(constraints[p]) if p in constraints else "see numpyro"),
            )
            for p in (sig.parameters if sig is not None else ())
        ],
        support=own_support or (_constraint(support) if support is not None else "see numpyro"),
        pathwise=name in OWN_FACTORIES or any(_pathwise(c) for c in classes),
    )


def _strategy(pathwise: bool) -> str:
    if pathwise:
        return "reparameterization (a pathwise sample)."
    return "REINFORCE (score function); ``ppl.enum`` or ``ppl.mvd`` where valid."


def markdown_table(distributions: dict[str, Callable]) -> str:
    """A Markdown table of ``{name: factory}``: call, parameter domains, support, strategy."""
    rows = ["| distribution | parameters take | draws take | gradient by default |"]
    rows.append("| --- | --- | --- | --- |")
    for name, factory in distributions.items():
        f = facts(factory, name)
        domains = "; ".join(f"`{p}`: {d}" for p, d in f.domains) or "see numpyro"
        default = "reparam" if f.pathwise else "reinforce"
        rows.append(f"| `ppl.{f.shown}` | {domains} | {f.support} | `ppl.{default}` |")
    return "\n".join(rows)


def describe(factory: Callable, name: str) -> str:
    """The docstring of the distribution ``name`` made from ``factory``.

    Args:
        factory: a numpyro distribution class, or a function returning one.
        name: the distribution's name in ppl.

    Returns:
        The text: the parameters and their domains, the support of the draws,
        the default gradient strategy, the errors, and (for the built-ins) an
        example that runs.

    Examples:
        >>> print(describe(numpyro.distributions.Normal, "normal").splitlines()[0])
        normal(loc=0.0, scale=1.0): numpyro's Normal as a ppl distribution.
    """
    f = facts(factory, name)
    lines = [
        f"{f.shown}: numpyro's {f.source} as a ppl distribution.",
        "",
        f'Make a random choice with ``ppl.{name}(...) @ "addr"`` inside an ``@ppl.gen``',
        "function; parameters go by position or by name.",
        "",
        "Args:",
        *(f"    {p}: {domain}." for p, domain in f.domains),
        "",
        "Returns:",
        f"    The call; ``@ addr`` makes the choice, a value in: {f.support}.",
        "",
        "Raises:",
        "    AddressError: a parameter that holds a value outside its domain (the",
        "        message names the address and the parameter).",
        "",
        "Gradient strategy by default: " + _strategy(f.pathwise),
    ]
    if name in EXAMPLE_ARGS:
        lines += [
            "",
            "Examples:",
            f"    >>> trace = ppl.{name}.simulate(jax.random.key(0), ({EXAMPLE_ARGS[name]},))",
            "    >>> bool(jnp.isfinite(trace.score))",
            "    True",
        ]
    return "\n".join(lines)
