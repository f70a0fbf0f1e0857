"""``mix``: a mixture of generative functions, itself a generative function.

Built from the pieces a user has: a categorical choice at ``"component"``
and a ``switch`` over the components at ``"value"``.
"""

from __future__ import annotations

from ppl._errors import PPLError
from ppl._gfi import GenerativeFunction
from ppl.combinators.switch import switch
from ppl.distributions import categorical
from ppl.gen import gen


def mix(*components: GenerativeFunction) -> GenerativeFunction:
    """Mixture: call as ``mix(g0, g1, ...)(logits, *args) @ "addr"``.

    Choices: ``"component"`` (the index drawn from ``categorical(logits=logits)``)
    and ``"value"`` (the chosen component's choices).
    """
    if len(components) < 2:
        raise PPLError(f"ppl.mix needs at least two components, got {len(components)}.")
    branches = switch(*components)

    @gen
    def mixture(logits, *args):
        index = categorical(logits=logits) @ "component"
        return branches(index, *args) @ "value"

    mixture.__qualname__ = f"mix({', '.join(c.name for c in components)})"
    return mixture
