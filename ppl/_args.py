"""Arguments: arrays and numbers are traced, any other leaf is held static.

An equinox module often holds functions next to its arrays (``eqx.nn.MLP``
keeps its activation), and settings such as strings are natural arguments
too. JAX cannot trace those leaves, so :func:`hold` moves each of them into
the tree structure. They then travel with the treedef through ``jit``,
``vmap``, staging and nested calls, and :func:`release` gives them back as
they were just before user code runs.
"""

from __future__ import annotations

import jax
import numpy as np

from ppl._errors import PPLError


class Held:
    """A leaf JAX cannot trace, kept in the tree structure (it has no children)."""

    __slots__ = ("value",)

    def __init__(self, value):
        self.value = value

    def __eq__(self, other):
        # Same type too: Held(1) and Held(True) must not share a staged program.
        return isinstance(other, Held) and type(self.value) is type(other.value) and bool(self.value == other.value)

    def __hash__(self):
        return hash(self.value)

    def __repr__(self):
        return f"Held({self.value!r})"


jax.tree_util.register_pytree_node(Held, lambda h: ((), h.value), lambda value, _: Held(value))


def is_traceable(leaf) -> bool:
    try:
        jax.typeof(leaf)
        return True
    except TypeError:
        return False


_PLAIN = (jax.Array, np.ndarray, np.generic, bool, int, float, complex, Held)


def hold(args, name: str):
    """``args`` with every leaf that JAX cannot trace held static (idempotent)."""
    if all(isinstance(x, _PLAIN) for x in jax.tree.leaves(args, is_leaf=lambda x: isinstance(x, Held))):
        return args  # the common case, without rebuilding the tree

    def one(path, leaf):
        if isinstance(leaf, Held) or is_traceable(leaf):
            return leaf
        try:
            hash(leaf)
        except TypeError:
            raise PPLError(
                f"argument {jax.tree_util.keystr(path) or '?'} of {name} is a {type(leaf).__name__}, "
                "which is neither an array (JAX traces those) nor hashable (ppl holds other values "
                "static, and a static value must be hashable). Pass it as an array, or fix it when "
                "you define the function (close over it, or use functools.partial)."
            ) from None
        return Held(leaf)

    return jax.tree_util.tree_map_with_path(one, args, is_leaf=lambda x: isinstance(x, Held))


def hold_static_ints(args):
    """``args`` with Python (and numpy scalar) ints and bools held static.

    Used for distribution parameters: numpyro needs some of them as Python
    values while a program is staged (``LKJCholesky``'s dimension, the count
    of a binomial whose support is enumerated), and a count written as a
    literal is a constant anyway. Floats and arrays stay traceable.

    Args:
        args: a pytree of parameters.

    Returns:
        The same tree with those leaves wrapped in :class:`Held`.

    >>> hold_static_ints((3, 2.0))
    (Held(3), 2.0)
    """
    def one(leaf):
        return Held(leaf) if isinstance(leaf, (int, np.integer, np.bool_)) else leaf  # bool is an int

    return jax.tree.map(one, args, is_leaf=lambda x: isinstance(x, Held))


def release(tree):
    """``tree`` with held values back in place, as user code expects them."""
    return jax.tree.map(lambda x: x.value if isinstance(x, Held) else x, tree,
                        is_leaf=lambda x: isinstance(x, Held))


def call(fn, args: tuple, name: str):
    """``fn(*args)`` with the held values given back, and the non-array parts of
    its result (a module's functions, say) held in turn."""
    return hold(fn(*release(args)), name)
