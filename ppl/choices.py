"""Choice maps: address -> value (selections, sets of addresses, are in
``ppl.selections`` and re-exported here).

A ``ChoiceMap`` is a pytree: its addresses are static structure and its
values are leaves, so choice maps pass through ``jit``, ``vmap`` and ``grad``.
An address is a string, or a tuple of strings for a path through nested
calls: ``cm["x"]`` and ``cm["encoder", "z"]`` (or ``cm[("encoder", "z")]``).

**Choices made only on some executions.** Shapes are static under ``jit`` and
``vmap``, so the choice map of a ``ppl.switch`` whose branch index is known
only at run time (traced, or batched) holds every address that some branch
makes. An address that only some branches make holds a *masked* entry
(``ChoiceMap.masked``): the value plus a boolean ``made`` flag, both
leaves of the pytree. The interface reads a masked entry as present where
``made`` is true and as absent elsewhere, so ``assess(trace.choices)`` is the
trace's score and ``generate`` with it reproduces the trace. A plain entry
(what users write) at an address the execution does not make means the
execution cannot have produced the choice map: ``generate``, ``assess`` and
``update`` weigh it ``-inf``.

Reading a masked entry with ``cm[addr]`` gives its value where it was made,
and NaN elsewhere (floating-point values; integer and boolean values hold 0
there); ``cm.is_made(addr)`` says where it was made.
"""

from __future__ import annotations

from typing import Any, Iterator, Mapping

import jax
import jax.numpy as jnp
import numpy as np

from ppl._errors import AddressError, PPLError, fmt_addr, fmt_addrs
from ppl.core import is_tracer
from ppl.selections import (  # re-exported: selections were defined here once
    Selection,
    address_path,
    check_selects_some,
    select,
    select_all,
    select_none,
)

_NO_VALUE = object()
_MASKED = "<masked>"  # tree_flatten's aux data for a masked entry (keys are tuples)


@jax.tree_util.register_pytree_node_class
class ChoiceMap:
    """An immutable map from addresses to the values of random choices.

    Build one with ``ChoiceMap.d({"x": 1.0, ("enc", "z"): z})``; read values with
    ``cm["x"]``; combine with ``cm1 | cm2`` (right wins); restrict with
    ``cm.filter(selection)``. An entry may be *masked* (made only on some
    executions, see the module docstring and ``masked``). Reading an
    address that holds nothing raises ``ppl.AddressError``.

    Args:
        children: the sub-maps by address part (prefer ``d``).
        value: the value of a single choice (a leaf node).
        made: for a masked entry, the boolean flags saying where it was made.

    Examples:
        >>> cm = ppl.ChoiceMap.d({"x": 1.0, ("enc", "z"): jnp.array([0.5, 2.0])})
        >>> cm["enc", "z"].shape, cm.addresses()
        ((2,), [('x',), ('enc', 'z')])
        >>> cm | ppl.ChoiceMap.d({"x": 3.0})
        ChoiceMap({'x': 3.0, ('enc', 'z'): [0.5, 2.0]})
    """

    __slots__ = ("_value", "_children", "_made")

    def __init__(
        self,
        children: Mapping[str, "ChoiceMap"] | None = None,
        value: Any = _NO_VALUE,
        made: Any = None,
    ):
        self._value = value
        self._children = dict(children or {})
        self._made = made  # None: a plain entry (or no entry); else a bool array

    # -- construction -------------------------------------------------------
    @staticmethod
    def empty() -> "ChoiceMap":
        return ChoiceMap()

    @staticmethod
    def value(v) -> "ChoiceMap":
        """The choice map of a single random choice: the value itself."""
        return ChoiceMap(value=v)

    @staticmethod
    def masked(value, made) -> "ChoiceMap":
        """A single random choice made only on some executions.

        Args:
            value: the value where the choice was made (anything of the right
                shape elsewhere: it is not read there).
            made: a boolean (array) saying where the choice was made. Its shape
                is a prefix of ``value``'s shape (one flag per element of the
                leading batch axes, e.g. under ``jax.vmap``).

        Returns:
            A ``ChoiceMap`` that the interface reads as holding ``value``
            where ``made`` is true and as holding nothing elsewhere.

        Raises:
            PPLError: if ``made``'s shape is not a prefix of ``value``'s shape.

        Examples:
            >>> x = ppl.ChoiceMap.masked(jnp.array([1.0, 2.0]), jnp.array([True, False]))
            >>> cm = ppl.ChoiceMap.d({"x": x})
            >>> cm["x"]
            Array([ 1., nan], dtype=float32)
            >>> cm.is_made("x")
            Array([ True, False], dtype=bool)
        """
        made = jnp.asarray(made)
        if made.dtype != jnp.bool_:
            made = made.astype(jnp.bool_)
        v_shape, m_shape = jnp.shape(value), jnp.shape(made)
        if tuple(v_shape[: len(m_shape)]) != tuple(m_shape):
            raise PPLError(
                f"ChoiceMap.masked: the flags 'made' have shape {m_shape}, which is not a leading "
                "part of "
                f"the value's shape {v_shape}. Give one flag per element of the value's leading "
                "axes."
            )
        return ChoiceMap(value=value, made=made)

    @staticmethod
    def d(mapping: Mapping) -> "ChoiceMap":
        """From a dict whose keys are addresses (str or tuple of str).

        Values may be arrays, numbers, nested dicts or choice maps.
        """
        out = ChoiceMap()
        for addr, v in mapping.items():
            if isinstance(v, Mapping):
                v = ChoiceMap.d(v)
            elif not isinstance(v, ChoiceMap):
                v = ChoiceMap.value(v)
            out = out | _nest(address_path(addr), v)
        return out

    # -- reading ------------------------------------------------------------
    def has_value(self) -> bool:
        return self._value is not _NO_VALUE

    def is_masked(self) -> bool:
        """Whether this node is a single choice made only on some executions.

        Returns:
            ``True`` for an entry built by ``masked`` (as in the choice map of a
            ``ppl.switch`` with a traced index), ``False`` otherwise.

        Examples:
            >>> ppl.ChoiceMap.masked(1.0, False).is_masked(), ppl.ChoiceMap.value(1.0).is_masked()
            (True, False)
        """
        return self._made is not None

    def get_value(self):
        """The value of the single choice stored here.

        Returns:
            The value (an array or number) of a plain entry.

        Raises:
            AddressError: if this is a map of several choices, or a masked
                entry (made only on some executions), whose value alone would
                be read as made everywhere. Read it with ``cm[()]``/``cm[addr]``
                (NaN where not made) and ``is_made``, or pass the choice map to
                the interface, which reads the mask.

        Examples:
            >>> ppl.ChoiceMap.value(1.0).get_value()
            1.0
        """
        if not self.has_value():
            raise AddressError(
                "no value at {addr}: this is a map of several choices, not one choice."
            )
        if self.is_masked():
            raise AddressError(
                "the choice at {addr} is made only on some executions (it comes from a ppl.switch "
                "branch whose index is known only at run time), so its value alone would be read "
                "as "
                "made everywhere. Pass the choice map to generate/assess/update of a generative "
                "function that makes the address (an @gen function or a combinator reads the "
                "mask), or "
                "read it with cm[addr] (NaN where not made) and cm.is_made(addr)."
            )
        return self._value

    def _raw(self):
        """``(value, made)`` of the single choice here; ``made`` is None when plain."""
        return self._value, self._made

    def is_made(self, addr=()):
        """Where the choice at ``addr`` was made.

        Args:
            addr: an address (string or tuple of strings); ``()`` for this node.

        Returns:
            ``True`` for a plain entry, ``False`` where there is no choice, and
            the boolean flags of a masked entry (an array, traced under ``jit``).

        Raises:
            AddressError: if ``addr`` holds several choices (a sub-map).

        Examples:
            >>> x = ppl.ChoiceMap.masked(jnp.array([1.0, 2.0]), jnp.array([True, False]))
            >>> cm = ppl.ChoiceMap.d({"x": x})
            >>> cm.is_made("x"), ppl.ChoiceMap.d({"y": 2.0}).is_made("y"), cm.is_made("y")
            (Array([ True, False], dtype=bool), True, False)
        """
        sub = self.get_submap(addr)
        if sub.is_empty():
            return False
        if not sub.has_value():
            raise AddressError(
                "{addr} holds several choices, not one; ask is_made of one of them.",
                address_path(addr),
            )
        return True if sub._made is None else sub._made

    def is_empty(self) -> bool:
        return not self.has_value() and not self._children

    def get_submap(self, addr) -> "ChoiceMap":
        """The choices under ``addr`` (empty when there are none)."""
        cm = self
        for p in address_path(addr):
            cm = cm._children.get(p)
            if cm is None:
                return ChoiceMap()
        return cm

    def __getitem__(self, addr) -> Any:
        sub = self.get_submap(addr)
        if sub.is_empty():
            known = fmt_addrs(self.addresses(), limit=12)
            raise AddressError(
                "no random choice at {addr}; the addresses here are: " + known, address_path(addr)
            )
        return _read(sub) if sub.has_value() else sub

    def __contains__(self, addr) -> bool:
        return not self.get_submap(addr).is_empty()

    def keys(self):
        return self._children.keys()

    def items(self):
        return self._children.items()

    def __iter__(self) -> Iterator[str]:
        return iter(self._children)

    def __len__(self) -> int:
        return len(self._children)

    def addresses(self) -> list[tuple]:
        """Every address that holds a value, as tuples of strings."""
        if self.has_value():
            return [()]
        return [(k, *rest) for k, sub in self._children.items() for rest in sub.addresses()]

    def to_dict(self) -> Any:
        """The choices as a nested dict keyed by address parts.

        Returns:
            A dict of dicts whose leaves are the values; a masked entry reads as
            with ``cm[addr]`` (NaN where not made, for floating-point values).
            A single choice gives its value.

        Examples:
            >>> ppl.ChoiceMap.d({("enc", "z"): 1.0}).to_dict()
            {'enc': {'z': 1.0}}
        """
        if self.has_value():
            return _read(self)
        return {k: sub.to_dict() for k, sub in self._children.items()}

    # -- combining ----------------------------------------------------------
    def __or__(self, other: "ChoiceMap | Mapping") -> "ChoiceMap":
        """Merge; on an address present in both, ``other`` wins.

        A masked entry of ``other`` wins where it was made: over a value of the
        same shape, the result holds ``other``'s value there and ``self``'s
        elsewhere.

        Args:
            other: a choice map, or a dict (read as ``ChoiceMap.d``).

        Returns:
            A ``ChoiceMap`` with the addresses of both.

        Raises:
            AddressError: if a masked entry of ``other`` meets sub-addresses or a
                value of another shape in ``self`` (no one choice map holds both).

        Examples:
            >>> ppl.ChoiceMap.d({"x": 1.0, "y": 2.0}) | ppl.ChoiceMap.d({"y": 0.3})
            ChoiceMap({'x': 1.0, 'y': 0.3})
        """
        if isinstance(other, Mapping):  # a dict, as every interface method accepts
            other = ChoiceMap.d(other)
        if not isinstance(other, ChoiceMap):
            return NotImplemented
        if other.is_masked() and not self.is_empty():
            return _merge_masked(self, other)
        if other.has_value() or self.is_empty():
            return other
        if self.has_value():
            return other if not other.is_empty() else self
        children = dict(self._children)
        for k, sub in other._children.items():
            children[k] = children[k] | sub if k in children else sub
        return ChoiceMap(children)

    merge = __or__

    def __ror__(self, other) -> "ChoiceMap":
        """``dict | ChoiceMap``: the dict as a choice map, merged under this one."""
        if isinstance(other, Mapping):
            return ChoiceMap.d(other) | self
        return NotImplemented

    def filter(self, selection) -> "ChoiceMap":
        """The choices whose addresses are in ``selection``."""
        if self.has_value():
            return self if selection.selects_value() else ChoiceMap()
        if selection.is_all():
            return self
        if selection.is_none():
            return ChoiceMap()
        children = {}
        for k, sub in self._children.items():
            kept = sub.filter(selection.child(k))
            if not kept.is_empty():
                children[k] = kept
        return ChoiceMap(children)

    def without(self, selection) -> "ChoiceMap":
        """The choices whose addresses are not in ``selection``."""
        return self.filter(~selection)

    # -- pytree -------------------------------------------------------------
    def tree_flatten(self):
        if self.is_masked():
            return (self._value, self._made), _MASKED
        if self.has_value():
            return (self._value,), None
        keys = tuple(sorted(self._children))
        return tuple(self._children[k] for k in keys), keys

    @classmethod
    def tree_unflatten(cls, keys, children):
        if keys is None:
            return cls(value=children[0])
        if keys == _MASKED:
            return cls(value=children[0], made=children[1])
        return cls(dict(zip(keys, children)))

    def __repr__(self) -> str:
        if self.is_masked():
            return f"ChoiceMap.masked({_short(_read(self))}, made={_short(self._made)})"
        if self.has_value():
            return f"ChoiceMap.value({_short(self._value)})"
        return (
            "ChoiceMap({"
            + ", ".join(f"{fmt_addr(a)}: {_entry(self.get_submap(a))}" for a in self.addresses())
            + "})"
        )

    def __eq__(self, other):
        return (
            isinstance(other, ChoiceMap)
            and jax.tree.structure(self) == jax.tree.structure(other)
            and all(
                np.array_equal(a, b) for a, b in zip(jax.tree.leaves(self), jax.tree.leaves(other))
            )
        )

    __hash__ = None  # pyright: ignore[reportAssignmentType]  # equal maps need not hash alike


def _read(node: ChoiceMap) -> Any:
    """A node's value as users read it: NaN where a masked float value was not made."""
    value, made = node._raw()
    if made is None or not hasattr(value, "dtype") or not jnp.issubdtype(value.dtype, jnp.inexact):
        return value
    made = jnp.reshape(made, jnp.shape(made) + (1,) * (jnp.ndim(value) - jnp.ndim(made)))
    return jnp.where(made, value, jnp.nan)


def _merge_masked(base: ChoiceMap, top: ChoiceMap) -> ChoiceMap:
    """``base | top`` for a masked ``top``: ``top`` where made, ``base`` elsewhere."""
    v, made = top._raw()
    if not base.has_value() or jnp.shape(base._value) != jnp.shape(v):
        what = (
            "sub-addresses"
            if not base.has_value()
            else f"a value of shape {jnp.shape(base._value)}"
        )
        raise AddressError(
            "cannot merge the choice at {addr}, made only on some executions (shape "
            f"{jnp.shape(v)}), over {what}: no one choice map holds both. Merge choice maps "
            "whose entries at an address have the same shape."
        )
    b, b_made = base._raw()
    m = jnp.reshape(made, jnp.shape(made) + (1,) * (jnp.ndim(v) - jnp.ndim(made)))
    value = jnp.where(m, v, jnp.asarray(b).astype(jnp.result_type(v)))
    if b_made is None:
        return ChoiceMap.value(value)
    return ChoiceMap(value=value, made=made | b_made)


def _entry(node: ChoiceMap) -> str:
    return f"masked({_short(_read(node))})" if node.is_masked() else _short(node._value)


def _nest(path: tuple, cm: ChoiceMap) -> ChoiceMap:
    for p in reversed(path):
        cm = ChoiceMap({p: cm})
    return cm


def _short(v) -> str:
    if is_tracer(v):
        return f"<traced {v.aval.str_short()}>"
    shape = getattr(v, "shape", ())
    if shape and int(np.prod(shape)) > 6:
        return f"{v.dtype}{list(shape)}"
    return repr(np.asarray(v).tolist()) if hasattr(v, "shape") else repr(v)


__all__ = ["ChoiceMap", "Selection", "check_selects_some", "select", "select_all", "select_none"]
