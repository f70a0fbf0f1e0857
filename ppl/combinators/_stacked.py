"""Helpers shared by the combinators whose choices stack along a leading axis."""

from __future__ import annotations

import jax.numpy as jnp

from ppl._errors import AddressError
from ppl.choices import ChoiceMap


def check_leading_axis(choices: ChoiceMap, n: int, name: str, axis: str, element: str) -> None:
    """Every value in ``choices`` must have a leading axis of length ``n``."""
    for addr in choices.addresses():
        leaf = choices[addr]
        if jnp.ndim(leaf) == 0 or jnp.shape(leaf)[0] != n:
            raise AddressError(
                f"{name} stacks its choices along a leading {axis} of length {n}, but the value "
                f"at {{addr}} has shape {jnp.shape(leaf)}. Give one value per {element}.",
                addr,
            )


def per_element(choices: ChoiceMap, n: int) -> ChoiceMap:
    """Give masked entries that are made or not as a whole one flag per element.

    Args:
        choices: choices stacked along a leading axis of length ``n``; a masked
            entry with a single flag (e.g. the values of a ``ppl.vmap`` inside a
            ``ppl.switch`` branch) is made for all elements or for none.
        n: the length of the stacked axis.

    Returns:
        The same choices, those flags broadcast to shape ``(n,)``, so that
        ``jax.vmap``/``lax.scan`` can hand one to each element.

    >>> cm = ChoiceMap.d({"x": ChoiceMap.masked(jnp.zeros(3), True)})
    >>> per_element(cm, 3).is_made("x")  # [True]*3
    """
    if choices.is_masked():
        value, made = choices._raw()
        return (
            ChoiceMap.masked(value, jnp.broadcast_to(made, (n,)))
            if jnp.ndim(made) == 0
            else choices
        )
    if choices.has_value() or choices.is_empty():
        return choices
    return ChoiceMap({k: per_element(sub, n) for k, sub in choices.items()})
