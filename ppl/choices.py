"""Choice maps (address -> value) and selections (sets of addresses).

A :class:`ChoiceMap` is a pytree: its addresses are static structure and its
values are leaves, so choice maps pass through ``jit``, ``vmap`` and ``grad``.
An address is a string, or a tuple of strings for a path through nested
calls: ``cm["x"]`` and ``cm["encoder", "z"]`` (or ``cm[("encoder", "z")]``).
"""

from __future__ import annotations

import abc
from typing import Any, Iterator, Mapping

import jax
import numpy as np

from ppl._errors import AddressError, PPLError, fmt_addr

_NO_VALUE = object()


def _path(addr) -> tuple:
    if isinstance(addr, tuple):
        parts = addr
    else:
        parts = (addr,)
    for p in parts:
        if not isinstance(p, str):
            raise PPLError(f"address {fmt_addr(addr)} has a part {p!r} that is not a string; addresses are strings or tuples of strings.")
    return parts


@jax.tree_util.register_pytree_node_class
class ChoiceMap:
    """An immutable map from addresses to the values of random choices.

    Build one with ``ChoiceMap.d({"x": 1.0, ("enc", "z"): z})``; read values with
    ``cm["x"]``; combine with ``cm1 | cm2`` (right wins); restrict with
    ``cm.filter(selection)``.
    """

    __slots__ = ("_value", "_children")

    def __init__(self, children: Mapping[str, "ChoiceMap"] | None = None, value: Any = _NO_VALUE):
        self._value = value
        self._children = dict(children or {})

    # -- construction -------------------------------------------------------
    @staticmethod
    def empty() -> "ChoiceMap":
        return ChoiceMap()

    @staticmethod
    def value(v) -> "ChoiceMap":
        """The choice map of a single random choice: the value itself."""
        return ChoiceMap(value=v)

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
            out = out | _nest(_path(addr), v)
        return out

    # -- reading ------------------------------------------------------------
    def has_value(self) -> bool:
        return self._value is not _NO_VALUE

    def get_value(self):
        if not self.has_value():
            raise AddressError("no value at {addr}: this is a map of several choices, not one choice.")
        return self._value

    def is_empty(self) -> bool:
        return not self.has_value() and not self._children

    def get_submap(self, addr) -> "ChoiceMap":
        """The choices under ``addr`` (empty when there are none)."""
        cm = self
        for p in _path(addr):
            cm = cm._children.get(p)
            if cm is None:
                return ChoiceMap()
        return cm

    def __getitem__(self, addr):
        sub = self.get_submap(addr)
        if sub.is_empty():
            known = ", ".join(fmt_addr(a) for a in self.addresses()[:12]) or "none"
            raise AddressError("no random choice at {addr}; the addresses here are: " + known, _path(addr))
        return sub._value if sub.has_value() else sub

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

    def to_dict(self) -> dict:
        if self.has_value():
            return self._value
        return {k: sub.to_dict() for k, sub in self._children.items()}

    # -- combining ----------------------------------------------------------
    def __or__(self, other: "ChoiceMap") -> "ChoiceMap":
        """Merge; on an address present in both, ``other`` wins."""
        if not isinstance(other, ChoiceMap):
            return NotImplemented
        if other.has_value() or self.is_empty():
            return other
        if self.has_value():
            return other if not other.is_empty() else self
        children = dict(self._children)
        for k, sub in other._children.items():
            children[k] = children[k] | sub if k in children else sub
        return ChoiceMap(children)

    merge = __or__

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
        if self.has_value():
            return (self._value,), None
        keys = tuple(sorted(self._children))
        return tuple(self._children[k] for k in keys), keys

    @classmethod
    def tree_unflatten(cls, keys, children):
        if keys is None:
            return cls(value=children[0])
        return cls(dict(zip(keys, children)))

    def __repr__(self) -> str:
        if self.has_value():
            return f"ChoiceMap.value({_short(self._value)})"
        return "ChoiceMap({" + ", ".join(f"{fmt_addr(a)}: {_short(self[a])}" for a in self.addresses()) + "})"

    def __eq__(self, other):
        return (
            isinstance(other, ChoiceMap)
            and jax.tree.structure(self) == jax.tree.structure(other)
            and all(np.array_equal(a, b) for a, b in zip(jax.tree.leaves(self), jax.tree.leaves(other)))
        )

    __hash__ = None


def _nest(path: tuple, cm: ChoiceMap) -> ChoiceMap:
    for p in reversed(path):
        cm = ChoiceMap({p: cm})
    return cm


def _short(v) -> str:
    if isinstance(v, jax.core.Tracer):
        return f"<traced {v.aval.str_short()}>"
    shape = getattr(v, "shape", ())
    if shape and int(np.prod(shape)) > 6:
        return f"{v.dtype}{list(shape)}"
    return repr(np.asarray(v).tolist()) if hasattr(v, "shape") else repr(v)


# ---------------------------------------------------------------------------
# Selections
# ---------------------------------------------------------------------------


class Selection(abc.ABC):
    """A set of addresses. Build with :func:`select`; ``~s`` is the complement,
    ``s | t`` the union. ``"x" in s`` and ``("enc", "z") in s`` test membership."""

    @abc.abstractmethod
    def child(self, key: str) -> "Selection":
        """The selection of addresses below ``key``."""

    def is_all(self) -> bool:
        return False

    def is_none(self) -> bool:
        return False

    def selects_value(self) -> bool:
        """Whether a single choice stored here is selected: only when the whole
        address is (a selection of deeper addresses does not select it)."""
        return self.is_all()

    def __contains__(self, addr) -> bool:
        s = self
        for p in _path(addr):
            s = s.child(p)
        return s.selects_value()

    def __invert__(self) -> "Selection":
        return _Complement(self)

    def __or__(self, other: "Selection") -> "Selection":
        return _Union(self, other)


class _All(Selection):
    def child(self, key):
        return self

    def is_all(self):
        return True

    def __repr__(self):
        return "select_all()"


class _None(Selection):
    def child(self, key):
        return self

    def is_none(self):
        return True

    def __repr__(self):
        return "select_none()"


class _Static(Selection):
    def __init__(self, children: dict):
        self._children = children

    def child(self, key):
        return self._children.get(key, _NONE)

    def __repr__(self):
        return f"select({', '.join(fmt_addr(a) for a in _flat_paths(self))})"


class _Complement(Selection):
    def __init__(self, inner):
        self.inner = inner

    def child(self, key):
        return ~self.inner.child(key)

    def is_all(self):
        return self.inner.is_none()

    def is_none(self):
        return self.inner.is_all()

    def __invert__(self):
        return self.inner

    def selects_value(self):
        return not self.inner.selects_value()

    def __repr__(self):
        return f"~{self.inner!r}"


class _Union(Selection):
    def __init__(self, a, b):
        self.a, self.b = a, b

    def child(self, key):
        return self.a.child(key) | self.b.child(key)

    def is_all(self):
        return self.a.is_all() or self.b.is_all()

    def is_none(self):
        return self.a.is_none() and self.b.is_none()

    def selects_value(self):
        return self.a.selects_value() or self.b.selects_value()

    def __repr__(self):
        return f"{self.a!r} | {self.b!r}"


_ALL, _NONE = _All(), _None()


def _flat_paths(s: _Static) -> list:
    out = []
    for k, sub in s._children.items():
        if isinstance(sub, _Static):
            out.extend((k, *rest) for rest in _flat_paths(sub))
        else:
            out.append((k,))
    return out


def select(*addrs) -> Selection:
    """The selection of the given addresses (and everything below them)."""
    tree: dict = {}
    for addr in addrs:
        node = tree
        path = _path(addr)
        for p in path[:-1]:
            nxt = node.get(p)
            if nxt is _ALL:
                break
            node = node.setdefault(p, {})
        else:
            node[path[-1]] = _ALL
    return _freeze(tree)


def _freeze(tree) -> Selection:
    if tree is _ALL:
        return _ALL
    return _Static({k: _freeze(v) for k, v in tree.items()})


def select_all() -> Selection:
    return _ALL


def select_none() -> Selection:
    return _NONE
