"""Static arguments of compiled programs: Python objects compared the way a cache must.

``jax.jit`` looks static arguments up by ``hash`` and ``==``. That is wrong for
two kinds of values a fit holds: ``1 == 1.0`` (so a program compiled with the
int constant would be reused for the float), and unhashable objects (which
``jax.jit`` refuses). ``Static`` wraps one value so that it compares by
type and value when it can, and by identity otherwise.
"""

from __future__ import annotations

from typing import Any


class Static:
    """One value as a static argument of ``jax.jit``, compared by type and value.

    A hashable value equals another ``Static`` holding a value of the very same
    type that compares equal to it (so ``Static(1) != Static(1.0)`` and
    ``Static(True) != Static(1)``); an unhashable value (or one whose ``==``
    does not give a plain bool) equals only a ``Static`` holding the same
    object. The latter is always safe: at worst a new object compiles again.

    Args:
        value: any Python object: an objective, an optimizer, a tree
            definition, a constant leaf of the arguments.

    Attributes:
        value: the object wrapped, unchanged.

    Examples:
        >>> Static(1) == Static(1), Static(1) == Static(1.0)
        (True, False)
        >>> xs = [1, 2]
        >>> Static(xs) == Static(xs), Static(xs) == Static([1, 2])
        (True, False)
    """

    __slots__ = ("value", "_by_value", "_hash")

    def __init__(self, value: Any):
        self.value = value
        try:
            self._hash, self._by_value = hash((type(value), value)), True
        except TypeError:
            self._hash, self._by_value = id(value), False

    def __hash__(self) -> int:
        return self._hash

    def __eq__(self, other) -> bool:
        if not isinstance(other, Static):
            return NotImplemented
        if self.value is other.value:
            return True
        if not (self._by_value and other._by_value) or type(self.value) is not type(other.value):
            return False
        try:
            return bool(self.value == other.value)
        except Exception:  # a comparison that is not a plain bool: treat as different
            return False

    def __repr__(self) -> str:
        return f"Static({self.value!r})"
