"""A check shared by the combinators whose choices stack along a leading axis."""

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
