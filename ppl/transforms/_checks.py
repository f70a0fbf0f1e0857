"""Checks shared by the interpreters of ``@gen`` programs."""

from __future__ import annotations

import jax.numpy as jnp

from ppl._errors import AddressError, PPLError, fmt_addrs
from ppl.choices import ChoiceMap, check_selects_some


def check_addresses(program, choices: ChoiceMap, name: str, verb: str) -> None:
    """Every top-level address in ``choices`` must be a random choice of ``program``."""
    if choices.has_value():
        raise AddressError(
            f"{verb} of {name} was given a single value at {{addr}}, but {name} is a program "
            "with addresses " + _known(program) + "; pass a choice map keyed by address."
        )
    visited = set(program.addresses)
    for addr in choices.keys():
        if addr not in visited:
            raise AddressError(
                f"{verb}: {name} makes no random choice at {{addr}}, so a value there "
                f"would be ignored. Its addresses are {_known(program)}; remove the entry "
                "or fix the address.",
                (addr,),
            )


class MissingChoice(AddressError):
    """``assess`` met a random choice with no value (callers that know where the
    values come from, such as a VI objective, catch it to say which side lacks it)."""


def missing_choice(name: str) -> AddressError:
    return MissingChoice(
        f"assess of {name} needs a value for every random choice, but {{addr}} has none. "
        "Add it to the choice map, or use generate(key, constraints, args) to sample "
        "the choices you do not constrain."
    )


def flag_of(choices: ChoiceMap):
    """The flag of a masked single value that is made or not as a whole.

    Args:
        choices: the choices given at one site.

    Returns:
        The scalar boolean ``made`` of a masked entry whose flag has no axes;
        ``None`` for anything else (a plain value, a map, per-element flags).

    >>> flag_of(ChoiceMap.masked(jnp.zeros(3), True))   # Array(True)
    >>> flag_of(ChoiceMap.value(1.0))                   # None
    """
    if not choices.is_masked():
        return None
    _, made = choices._raw()
    return made if jnp.ndim(made) == 0 else None


def _known(program) -> str:
    return "[" + fmt_addrs(program.addresses) + "]" if program.addresses else "[] (none)"


__all__ = [
    "MissingChoice",
    "check_addresses",
    "check_selects_some",
    "flag_of",
    "missing_choice",
    "PPLError",
]
