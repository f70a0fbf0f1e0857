"""What can sit at a random-choice site: the ``Callee`` base class.

``callee(*args) @ addr`` binds the sample primitive with the callee as a
parameter. Staging needs three things of it, which this base class gives:
the shapes of its return value (traced abstractly once per argument shape
and cached in the callee's own store), the values it closes over moved into
its arguments (``Callee.hoisted``), and whether it may be called at one
address any number of times (``Callee.addressless``). Generative
functions derive from it, and so do the callees that only have meaning
inside an expectation (``sim``, ``add_cost``, nested expectations).
"""

from __future__ import annotations

from typing import Any, Callable

import jax
from jax._src import core as _jcore

from ppl._caches import Owner, store_of


class Callee(Owner):
    """Base class of everything that can be called at an address, ``callee(*args) @ addr``.

    Subclasses define ``retval_abstract`` (the return value for given
    arguments, run only abstractly, to learn its shapes) and, if they need it,
    ``hoisted`` and ``addressless``. Nothing is written onto a callee
    after it is made: shapes are cached in its store (``ppl._caches``).

    Examples:
        >>> class Constant(Callee):
        ...     def retval_abstract(self, args):
        ...         return args[0]
        >>> Constant().retval_tree(jax.tree.structure((1.0,)), (jax.typeof(1.0),))
        PyTreeDef(*)
    """

    addressless: bool = False
    """Whether the callee may be called at the same address any number of times
    (``ppl.add_cost``): such sites are exempt from the check for repeated addresses."""

    @property
    def name(self) -> str:
        """The callee's name, for error messages (its class name unless overridden)."""
        return type(self).__name__

    def hoisted(self, args: tuple) -> tuple:
        """``(callee, args)`` to record at a call site.

        A callee that closes over values of a trace in progress (a function
        defined inside a generative function, using its arguments) returns an
        equivalent callee that takes those values as extra arguments, so the
        site sees the values of each run. The default records ``self`` as is.

        Args:
            args: the call's arguments.

        Returns:
            ``(callee, args)``: by default ``(self, args)``.

        Raises:
            PPLError: in subclasses that cannot take such values (combinators).

        Examples:
            >>> ppl.normal.hoisted((0.0, 1.0))
            (normal, (0.0, 1.0))
        """
        return self, args

    def retval_abstract(self, args: tuple) -> Any:
        """The return value for ``args``, run only abstractly (its shapes are used).

        Args:
            args: the arguments, as ``jax.ShapeDtypeStruct`` leaves (under ``jax.eval_shape``).

        Returns:
            A pytree whose leaves have the return value's shapes and dtypes.

        Raises:
            NotImplementedError: in this base class; subclasses define it.

        Examples:
            >>> ppl.normal.retval_abstract((0.0, 1.0))   # a scalar float
        """
        raise NotImplementedError(f"{type(self).__name__} must define retval_abstract(args)")

    def _shape(self, what: str, fn: Callable, in_tree, in_avals: tuple):
        """``jax.eval_shape(fn, args)`` for arguments of these shapes, cached per callee.

        Args:
            what: a tag for the kind of shape (``"retval"``, ``"trace"``).
            fn: ``args -> pytree``, run abstractly.
            in_tree: the arguments' tree structure.
            in_avals: the abstract values of their leaves (shape, dtype, weak type).

        Returns:
            A pytree of ``jax.ShapeDtypeStruct``.

        Examples:
            >>> ppl.normal._shape("retval", ppl.normal.retval_abstract, tree, avals)
        """

        def make():
            args = jax.tree.unflatten(
                in_tree,
                [jax.ShapeDtypeStruct(a.shape, a.dtype, weak_type=a.weak_type) for a in in_avals],
            )
            # JAX sees only flat leaves: its own caches (bounded, but long-lived) keep
            # the output structure, and a trace's structure names its generative function.
            out_tree = []

            def flat(a):
                leaves, tree = jax.tree.flatten(fn(a))
                out_tree.append(tree)
                return leaves

            leaves = jax.eval_shape(flat, args)
            return jax.tree.unflatten(out_tree[-1], leaves)

        return store_of(self).cached((what, in_tree, in_avals), make)

    def _retval_shape(self, in_tree, in_avals: tuple):
        """The shapes of the return value (``retval_abstract``), cached."""
        return self._shape("retval", self.retval_abstract, in_tree, in_avals)

    def retval_avals(self, in_tree, in_avals: tuple) -> list:
        """The abstract values of the flattened return value, for the sample primitive.

        Args:
            in_tree: the arguments' tree structure.
            in_avals: the abstract values of the argument leaves.

        Returns:
            A list of ``_jcore.ShapedArray``, one per leaf of the return value.

        Examples:
            >>> ppl.normal.retval_avals(jax.tree.structure((0.0, 1.0)), avals)  # [f32[]]
        """
        leaves = jax.tree.leaves(self._retval_shape(in_tree, in_avals))
        return [
            _jcore.ShapedArray(s.shape, s.dtype, weak_type=getattr(s, "weak_type", False))
            for s in leaves
        ]

    def retval_tree(self, in_tree, in_avals: tuple):
        """The tree structure of the return value, to rebuild it from the primitive's outputs.

        Args:
            in_tree: the arguments' tree structure.
            in_avals: the abstract values of the argument leaves.

        Returns:
            A ``jax.tree_util.PyTreeDef``.

        Examples:
            >>> ppl.normal.retval_tree(jax.tree.structure((0.0, 1.0)), avals)  # PyTreeDef(*)
        """
        return jax.tree.structure(self._retval_shape(in_tree, in_avals))

    def __repr__(self):
        return self.name
