"""``mix``: a mixture of generative functions, itself a generative function.

Built from the pieces a user has: a categorical choice at ``"component"``
and a ``switch`` over the components at ``"value"``.
"""

from __future__ import annotations

import jax.numpy as jnp

from ppl._errors import PPLError
from ppl._gfi import GenerativeFunction
from ppl.combinators.switch import switch
from ppl.distributions import categorical
from ppl.gen import gen


def mix(*components: GenerativeFunction) -> GenerativeFunction:
    """Mixture: call as ``mix(g0, g1, ...)(logits, *args) @ "addr"``.

    Args:
        *components: two or more generative functions taking ``*args`` and
            returning values of the same shape and dtype.

    Returns:
        An ``@gen`` function of ``(logits, *args)``, ``logits`` a vector with one
        entry per component. Choices: ``"component"`` (the index drawn from
        ``categorical(logits=logits)``) and ``"value"`` (the chosen component's
        choices; addresses that only some components make are masked under
        ``jit``/``vmap``, see ``ppl.switch``).

    Raises:
        PPLError: for fewer than two components; when called, for logits that
            are not a vector of one entry per component (shapes are static, so
            this is found when the function is staged).
        AddressError: when called, as for ``ppl.switch``: components whose
            choices cannot share one choice map.

    Examples:
        >>> both = ppl.mix(ppl.normal, ppl.laplace)  # each takes (loc, scale)
        >>> logits = jnp.log(jnp.array([0.7, 0.3]))
        >>> tr = both.simulate(jax.random.key(0), (logits, 0.0, 1.0))
        >>> tr.choices.addresses()
        [('component',), ('value',)]
    """
    if len(components) < 2:
        raise PPLError(f"ppl.mix needs at least two components, got {len(components)}.")
    branches = switch(*components)
    n = len(components)

    @gen
    def mixture(logits, *args):
        if jnp.shape(logits) != (n,):
            raise PPLError(
                f"{mixture.__qualname__} has {n} components, so it takes {n} logits (a vector of "
                "shape "
                f"({n},)), got shape {jnp.shape(logits)}. Give one logit per component."
            )
        index = categorical(logits=logits) @ "component"
        return branches(index, *args) @ "value"

    mixture.__qualname__ = f"mix({', '.join(c.name for c in components)})"
    return mixture
