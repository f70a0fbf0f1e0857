"""Selections: sets of addresses, as used by ``regenerate``, MCMC kernels and
``ChoiceMap.filter``.

Build one with ``select`` (named addresses and everything below them),
``select_all`` or ``select_none``; ``~s`` is the complement and
``s | t`` the union. A selection is a tree: ``Selection.child`` gives the
selection of the addresses below one key, which is how interpreters walk it
alongside nested calls. Addresses are strings, or tuples of strings for a path
through nested calls; ``address_path`` checks and normalises them.
"""

from __future__ import annotations

import abc

from ppl._errors import PPLError, fmt_addr, fmt_addrs


def address_path(addr) -> tuple:
    """An address as a path: a tuple of strings.

    Args:
        addr: a string, or a tuple of strings (a path through nested calls).

    Returns:
        ``(addr,)`` for a string; the tuple itself otherwise.

    Raises:
        PPLError: if a part of the address is not a string.

    Examples:
        >>> address_path("x"), address_path(("enc", "z"))
        (('x',), ('enc', 'z'))
    """
    parts = addr if isinstance(addr, tuple) else (addr,)
    for p in parts:
        if not isinstance(p, str):
            raise PPLError(
                f"address {fmt_addr(addr)} has a part {p!r} that is not a string; addresses are "
                "strings or tuples of strings."
            )
    return parts


class Selection(abc.ABC):
    """A set of addresses. Build with ``select``; ``~s`` is the complement,
    ``s | t`` the union. ``"x" in s`` and ``("enc", "z") in s`` test membership.

    Examples:
        >>> s = ppl.select("x", ("enc", "z"))
        >>> "x" in s, ("enc", "z") in s, "y" in s, "y" in ~s
        (True, True, False, True)
    """

    @abc.abstractmethod
    def child(self, key: str) -> "Selection":
        """The selection of the addresses below ``key``.

        Args:
            key: one part of an address.

        Returns:
            A ``Selection`` (``select_none()`` when nothing below is selected).

        Examples:
            >>> ppl.select(("enc", "z")).child("enc")
            select('z')
        """

    def is_all(self) -> bool:
        """Whether every address is selected (``select_all()``, ``~select_none()``...)."""
        return False

    def is_none(self) -> bool:
        """Whether no address is selected (``select_none()``, ``~select_all()``...)."""
        return False

    def selects_value(self) -> bool:
        """Whether a single choice stored here is selected: only when the whole
        address is (a selection of deeper addresses does not select it)."""
        return self.is_all()

    def __contains__(self, addr) -> bool:
        s = self
        for p in address_path(addr):
            s = s.child(p)
        return s.selects_value()

    def __invert__(self) -> "Selection":
        return _Complement(self)

    def _parts(self) -> tuple:
        """What makes this selection what it is; equal parts, equal selections."""
        return ()

    def __eq__(self, other):
        # By value: a kernel built twice with select("mu") is the same kernel.
        return type(other) is type(self) and other._parts() == self._parts()

    def __hash__(self):
        return hash((type(self).__name__, self._parts()))

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

    def _parts(self):
        return tuple(sorted(self._children.items(), key=lambda kv: kv[0]))

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

    def _parts(self):
        return (self.inner,)

    def selects_value(self):
        return not self.inner.selects_value()

    def __repr__(self):
        return f"~{self.inner!r}"


class _Union(Selection):
    def __init__(self, a, b):
        self.a, self.b = a, b

    def child(self, key):
        return self.a.child(key) | self.b.child(key)

    def _parts(self):
        return (self.a, self.b)

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
        A ``Selection``; ``select()`` selects nothing.

    Raises:
        PPLError: if an address is not a string or a tuple of strings, e.g. a
            list of addresses passed as one argument.

    Examples:
        >>> s = ppl.select("x", ("encoder", "z"))  # x, and z inside the call at "encoder"
        >>> s
        select('x', ('encoder', 'z'))
        >>> ("encoder", "z") in s, "z" in s
        (True, False)
        >>> names = ["a", "b"]
        >>> ppl.select(*names)  # addresses held in a list
        select('a', 'b')
    """
    tree: dict = {}
    for addr in addrs:
        if not isinstance(addr, (str, tuple)):
            shown = repr(addr) if len(repr(addr)) < 80 else type(addr).__name__
            example = (
                ", ".join(repr(a) for a in addr)
                if isinstance(addr, (list, set, frozenset))
                else "'a', 'b'"
            )
            raise PPLError(
                f"ppl.select takes addresses as separate arguments, got {shown}. Write "
                f"ppl.select({example}) (or ppl.select(*addresses) for a list); a path through "
                "nested calls is a tuple, as in ppl.select(('outer', 'inner'))."
            )
        node = tree
        path = address_path(addr)
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
    """The selection of every address.

    ``regenerate`` with it resamples every choice from the prior.

    Returns:
        A ``Selection`` whose ``Selection.is_all`` is true.

    Raises:
        Nothing of its own: it takes no input.

    Examples:
        >>> "x" in ppl.select_all(), ("enc", "z") in ppl.select_all()
        (True, True)
        >>> ppl.ChoiceMap.d({"x": 1.0}).filter(ppl.select_all())
        ChoiceMap({'x': 1.0})
    """
    return _ALL


def select_none() -> Selection:
    """The selection of no address.

    Returns:
        A ``Selection`` whose ``Selection.is_none`` is true.

    Raises:
        Nothing of its own: it takes no input.

    Examples:
        >>> "x" in ppl.select_none(), "x" in ~ppl.select_none()
        (False, True)
        >>> ppl.ChoiceMap.d({"x": 1.0}).filter(ppl.select_none()).is_empty()
        True
    """
    return _NONE


def check_selects_some(selection: Selection, possible, name: str) -> None:
    """Refuse a selection that names addresses but none of ``possible``.

    Args:
        selection: the selection given to ``regenerate`` (or a kernel).
        possible: a ``ppl.ChoiceMap`` holding every address that some
            execution of ``name`` could make (e.g. ``gen_fn.trace_shape(args).choices``).
        name: the generative function's name, for the message.

    Raises:
        PPLError: if ``selection`` was built by naming addresses
            (``select("x", ...)``) and selects none of ``possible``: it would do
            nothing. ``select()``, ``select_none()``, ``select_all()`` and
            complements are never refused.

    Examples:
        >>> possible = ppl.ChoiceMap.d({"x": 1.0})
        >>> check_selects_some(ppl.select("typo"), possible, "model")
        Traceback (most recent call last):
        ppl._errors.PPLError: regenerate: the selection select('typo') names no random choice...
    """
    if selection._names() and possible.filter(selection).is_empty():
        shown = fmt_addrs(possible.addresses(), limit=20, empty="")
        raise PPLError(
            f"regenerate: the selection {selection!r} names no random choice of {name}, so it "
            f"would resample nothing. Its addresses are: {shown or 'none'}. Select some of "
            "them, e.g. ppl.select('x', ('sub', 'y')) for x and y inside the call at 'sub'."
        )
