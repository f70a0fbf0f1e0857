"""Choice maps (address -> value) and selections (sets of addresses).

A :class:`ChoiceMap` is a pytree: its addresses are static structure and its
values are leaves, so choice maps pass through ``jit``, ``vmap`` and ``grad``.
An address is a string, or a tuple of strings for a path through nested
calls: ``cm["x"]`` and ``cm["encoder", "z"]`` (or ``cm[("encoder", "z")]``).

**Choices made only on some executions.** Shapes are static under ``jit`` and
``vmap``, so the choice map of a ``ppl.switch`` whose branch index is known
only at run time (traced, or batched) holds every address that some branch
makes. An address that only some branches make holds a *masked* entry
(:meth:`ChoiceMap.masked`): the value plus a boolean ``made`` flag, both
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

import abc
from typing import Any, Iterator, Mapping

import jax
import jax.numpy as jnp
import numpy as np

from ppl._errors import AddressError, PPLError, fmt_addr

_NO_VALUE = object()
_MASKED = "<masked>"  # tree_flatten's aux data for a masked entry (keys are tuples)


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
    ``cm.filter(selection)``. An entry may be *masked* (made only on some
    executions, see the module docstring and :meth:`masked`).
    """

    __slots__ = ("_value", "_children", "_made")

    def __init__(self, children: Mapping[str, "ChoiceMap"] | None = None, value: Any = _NO_VALUE, made: Any = None):
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
            A :class:`ChoiceMap` that the interface reads as holding ``value``
            where ``made`` is true and as holding nothing elsewhere.

        Raises:
            PPLError: if ``made``'s shape is not a prefix of ``value``'s shape.

        >>> cm = ChoiceMap.d({"x": ChoiceMap.masked(jnp.array([1.0, 2.0]), jnp.array([True, False]))})
        >>> cm["x"]          # Array([ 1., nan])
        >>> cm.is_made("x")  # Array([ True, False])
        """
        made = jnp.asarray(made)
        if made.dtype != jnp.bool_:
            made = made.astype(jnp.bool_)
        v_shape, m_shape = jnp.shape(value), jnp.shape(made)
        if tuple(v_shape[: len(m_shape)]) != tuple(m_shape):
            raise PPLError(
                f"ChoiceMap.masked: the flags 'made' have shape {m_shape}, which is not a leading part of "
                f"the value's shape {v_shape}. Give one flag per element of the value's leading axes."
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
            out = out | _nest(_path(addr), v)
        return out

    # -- reading ------------------------------------------------------------
    def has_value(self) -> bool:
        return self._value is not _NO_VALUE

    def is_masked(self) -> bool:
        """Whether this node is a single choice made only on some executions.

        Returns:
            ``True`` for an entry built by :meth:`masked` (as in the choice map of a
            ``ppl.switch`` with a traced index), ``False`` otherwise.

        >>> ChoiceMap.masked(1.0, False).is_masked(), ChoiceMap.value(1.0).is_masked()  # (True, False)
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

        >>> ChoiceMap.value(1.0).get_value()  # 1.0
        """
        if not self.has_value():
            raise AddressError("no value at {addr}: this is a map of several choices, not one choice.")
        if self.is_masked():
            raise AddressError(
                "the choice at {addr} is made only on some executions (it comes from a ppl.switch "
                "branch whose index is known only at run time), so its value alone would be read as "
                "made everywhere. Pass the choice map to generate/assess/update of a generative "
                "function that makes the address (an @gen function or a combinator reads the mask), or "
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

        >>> trs = jax.vmap(lambda k: model.simulate(k, ()))(keys)
        >>> jnp.mean(trs.choices["s", "x"], where=trs.choices.is_made(("s", "x")))
        """
        sub = self.get_submap(addr)
        if sub.is_empty():
            return False
        if not sub.has_value():
            raise AddressError("{addr} holds several choices, not one; ask is_made of one of them.", _path(addr))
        return True if sub._made is None else sub._made

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

    def to_dict(self) -> dict:
        """The choices as a nested dict keyed by address parts.

        Returns:
            A dict of dicts whose leaves are the values; a masked entry reads as
            with ``cm[addr]`` (NaN where not made, for floating-point values).
            A single choice gives its value.

        >>> ChoiceMap.d({("enc", "z"): 1.0}).to_dict()  # {'enc': {'z': 1.0}}
        """
        if self.has_value():
            return _read(self)
        return {k: sub.to_dict() for k, sub in self._children.items()}

    # -- combining ----------------------------------------------------------
    def __or__(self, other: "ChoiceMap") -> "ChoiceMap":
        """Merge; on an address present in both, ``other`` wins.

        A masked entry of ``other`` wins where it was made: over a value of the
        same shape, the result holds ``other``'s value there and ``self``'s
        elsewhere.

        Args:
            other: a choice map.

        Returns:
            A :class:`ChoiceMap` with the addresses of both.

        Raises:
            AddressError: if a masked entry of ``other`` meets sub-addresses or a
                value of another shape in ``self`` (no one choice map holds both).

        >>> trace.choices | ChoiceMap.d({"y": 0.3})   # the trace's choices, y replaced
        """
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
        return "ChoiceMap({" + ", ".join(f"{fmt_addr(a)}: {_entry(self.get_submap(a))}" for a in self.addresses()) + "})"

    def __eq__(self, other):
        return (
            isinstance(other, ChoiceMap)
            and jax.tree.structure(self) == jax.tree.structure(other)
            and all(np.array_equal(a, b) for a, b in zip(jax.tree.leaves(self), jax.tree.leaves(other)))
        )

    __hash__ = None


def _read(node: ChoiceMap):
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
        what = "sub-addresses" if not base.has_value() else f"a value of shape {jnp.shape(base._value)}"
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

    def _names(self) -> bool:
        """Whether built by naming addresses: ``select("x", ...)`` with at least
        one, or a union holding one (not ``select()``, all, none or a complement)."""
        return False

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

    def _names(self):
        return bool(self._children)

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

    def _names(self):
        return self.a._names() or self.b._names()

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
    """The selection of the given addresses (and everything below them).

    Args:
        *addrs: addresses, one per argument: a string, or a tuple of strings for
            a path through nested calls.

    Returns:
        A :class:`Selection`; ``select()`` selects nothing.

    Raises:
        PPLError: if an address is not a string or a tuple of strings, e.g. a
            list of addresses passed as one argument.

    >>> ppl.select("x", ("encoder", "z"))   # x, and z inside the call at "encoder"
    >>> ppl.select(*names)                  # addresses held in a list
    """
    tree: dict = {}
    for addr in addrs:
        if not isinstance(addr, (str, tuple)):
            shown = repr(addr) if len(repr(addr)) < 80 else type(addr).__name__
            example = ", ".join(repr(a) for a in addr) if isinstance(addr, (list, set, frozenset)) else "'a', 'b'"
            raise PPLError(
                f"ppl.select takes addresses as separate arguments, got {shown}. Write "
                f"ppl.select({example}) (or ppl.select(*addresses) for a list); a path through "
                "nested calls is a tuple, as in ppl.select(('outer', 'inner'))."
            )
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


def check_selects_some(selection: Selection, possible: ChoiceMap, name: str) -> None:
    """Refuse a selection that names addresses but none of ``possible``.

    Args:
        selection: the selection given to ``regenerate`` (or a kernel).
        possible: a choice map holding every address that some execution of
            ``name`` could make (e.g. ``gen_fn.trace_shape(args).choices``).
        name: the generative function's name, for the message.

    Raises:
        PPLError: if ``selection`` was built by naming addresses
            (``select("x", ...)``) and selects none of ``possible``: it would do
            nothing. ``select()``, ``select_none()``, ``select_all()`` and
            complements are never refused.

    >>> check_selects_some(ppl.select("typo"), model.trace_shape(args).choices, model.name)  # PPLError
    """
    if selection._names() and possible.filter(selection).is_empty():
        addrs = possible.addresses()
        shown = ", ".join(fmt_addr(a) for a in addrs[:20]) + (", ..." if len(addrs) > 20 else "")
        raise PPLError(
            f"regenerate: the selection {selection!r} names no random choice of {name}, so it "
            f"would resample nothing. Its addresses are: {shown or 'none'}. Select some of "
            "them, e.g. ppl.select('x', ('sub', 'y')) for x and y inside the call at 'sub'."
        )
