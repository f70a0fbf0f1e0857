"""Arguments: arrays and numbers are traced, any other leaf is held static.

An equinox module often holds functions next to its arrays (``eqx.nn.MLP``
keeps its activation), and settings such as strings are natural arguments
too. JAX cannot trace those leaves, so ``hold`` moves each of them into
the tree structure. They then travel with the treedef through ``jit``,
``vmap``, staging and nested calls, and ``release`` gives them back as
they were just before user code runs.
"""

from __future__ import annotations

import contextvars

import jax
import numpy as np

from ppl._errors import COND_CALL, SCAN_CALL, SWITCH_CALL, PPLError


class Held:
    """A leaf JAX cannot trace, kept in the tree structure (it has no children)."""

    __slots__ = ("value",)

    def __init__(self, value):
        self.value = value

    def __eq__(self, other):
        # Same type too: Held(1) and Held(True) must not share a staged program.
        same_type = isinstance(other, Held) and type(self.value) is type(other.value)
        return same_type and bool(self.value == other.value)

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
    if all(
        isinstance(x, _PLAIN) for x in jax.tree.leaves(args, is_leaf=lambda x: isinstance(x, Held))
    ):
        return args  # the common case, without rebuilding the tree

    def one(path, leaf):
        if isinstance(leaf, Held) or is_traceable(leaf):
            return leaf
        try:
            hash(leaf)
        except TypeError:
            raise PPLError(
                f"argument {jax.tree_util.keystr(path) or '?'} of {name} is a "
                f"{type(leaf).__name__}, "
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
        The same tree with those leaves wrapped in ``Held``.

    >>> hold_static_ints((3, 2.0))
    (Held(3), 2.0)
    """

    def one(leaf):
        return (
            Held(leaf) if isinstance(leaf, (int, np.integer, np.bool_)) else leaf
        )  # bool is an int

    return jax.tree.map(one, args, is_leaf=lambda x: isinstance(x, Held))


def release(tree):
    """``tree`` with held values back in place, as user code expects them."""
    return jax.tree.map(
        lambda x: x.value if isinstance(x, Held) else x, tree, is_leaf=lambda x: isinstance(x, Held)
    )


# The names of the user functions being run by call(), innermost last: one
# stack per thread and per asyncio task, as a context variable.
_staging: contextvars.ContextVar[tuple] = contextvars.ContextVar("ppl_staging", default=())


def staging_name() -> str | None:
    """The name of the generative function whose Python code is running under
    ``call`` (being staged), or ``None`` in the user's top-level code.

    Returns:
        The innermost such name, or ``None``.

    >>> staging_name() is None   # at the top level
    True
    """
    names = _staging.get()
    return names[-1] if names else None


def call(fn, args: tuple, name: str):
    """``fn(*args)`` with the held values given back, and the non-array parts of
    its result (a module's functions, say) held in turn.

    Args:
        fn: the user's function (the body of a generative function).
        args: its arguments, possibly with held leaves.
        name: the function's name, for errors.

    Returns:
        ``fn``'s result, with non-array leaves held.

    Raises:
        PPLError: ``fn`` used a traced value where Python needs a concrete one
            (``if``/``while`` on a random choice, ``int()``, NumPy, a shape); the message
            names ``fn`` and the combinator to use instead, with JAX's error as
            the cause.

    >>> call(lambda x: x + 1, (1.0,), "f")
    2.0
    """
    token = _staging.set((*_staging.get(), name))
    try:
        return hold(fn(*release(args)), name)
    except _CONCRETIZATION as e:
        raise _concretization_error(name, e) from e
    except TypeError as e:
        if _TRACED_SHAPE not in str(e):
            raise
        raise _concretization_error(name, e) from e
    finally:
        _staging.reset(token)


_CONCRETIZATION = (
    jax.errors.ConcretizationTypeError,
    jax.errors.TracerArrayConversionError,
    jax.errors.TracerIntegerConversionError,
)


# JAX raises a bare TypeError with this text for a traced value used as a shape.
_TRACED_SHAPE = "Shapes must be 1D sequences of concrete values of integer type"


def _concretization_error(name: str, e: Exception) -> PPLError:
    if _TRACED_SHAPE in str(e):
        what, fix = (
            "used a traced value as a shape (jnp.zeros(n), jnp.full(n, x), a reshape)",
            "Shapes must be known when the function is staged: read them from an array "
            "argument (xs.shape[0] is static), or make the size a setting as below.",
        )
    elif isinstance(e, jax.errors.TracerArrayConversionError):
        what, fix = (
            "converted a traced value to a NumPy array (np.asarray, a NumPy function)",
            "Use jax.numpy (jnp) functions on it instead.",
        )
    elif isinstance(e, jax.errors.TracerIntegerConversionError):
        what, fix = (
            "used a traced value as a Python int (int(), range(), indexing a list or tuple)",
            f"To pick one of several generative functions by a traced index, use {SWITCH_CALL}; "
            f"to index values, put them in a jnp array; for a loop, use {SCAN_CALL} with a "
            "Python int n.",
        )
    else:
        what, fix = (
            "used a traced value where Python needs a concrete one (an if or while on it, "
            "bool(), and/or/not, float())",
            f"For a branch, use {COND_CALL} or {SWITCH_CALL} (or jnp.where to select "
            f"between values); for a loop, use {SCAN_CALL}.",
        )
    return PPLError(
        f"{name} {what}. Inside a generative function, random choices, the values computed from "
        "them "
        "and the function's arguments are traced: ppl stages the function once, before any value "
        "is "
        f"known. {fix} A setting fixed in advance (a number of steps, a flag) should not be an "
        "argument: "
        "close over it or bind it with functools.partial. (JAX's own error is the cause below.)"
    )
