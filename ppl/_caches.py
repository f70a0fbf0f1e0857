"""Caches: made here, weak, and cleared together by ``clear_caches``.

ppl caches two kinds of things: what belongs to one object (the staged
programs of a generative function, the shapes of its return value and trace,
the compiled MCMC chains of a model) and module-level compiled functions
(``jax.jit`` objects whose static arguments are models or objectives).

Entries of one object live in a ``Store`` that the object receives when
it is made (``Owner``); nothing is written onto the object afterwards.
A store is reachable only through its owner (this module keeps a weak set of
them, for clearing and counting), so its entries are freed with the owner.
That is why the entries are not kept in one module-level weak-keyed
dictionary: they often refer back to their owner (a trace shape records its
generative function, a compiled chain calls its model), and a value that
refers to its own weak key keeps that key alive forever.

Module-level caches (a ``jax.jit``'s own cache) register their clearing
function with ``register``.
"""

from __future__ import annotations

import weakref
from typing import Any, Callable, Hashable

_stores: weakref.WeakSet = weakref.WeakSet()
_clears: list = []  # the clearing functions of module-level caches


class Store(dict):
    """The cache entries of one owner: a dictionary that ``clear_caches`` empties.

    ``Owner`` makes one for each instance (reach it with ``store_of``);
    ``ppl.core.program_cache`` makes one per generative function for its
    staged programs. It is an ordinary ``dict`` plus ``cached``.

    Examples:
        >>> store = Store()
        >>> store.cached(("shape", 3), lambda: 3 * 2)
        6
        >>> len(store)
        1
    """

    __slots__ = ("__weakref__",)

    def __init__(self):
        super().__init__()
        _stores.add(self)

    def cached(
        self, key: Hashable, make: Callable[[], Any], keep: Callable[[Any], bool] | None = None
    ):
        """The entry at ``key``, made by ``make()`` the first time.

        Args:
            key: a hashable key (include a tag naming the kind of entry).
            make: builds the value when there is none.
            keep: ``value -> bool``; a new value is stored only when it returns
                true (e.g. not a program that closed over a tracer). Default: keep all.

        Returns:
            The cached or newly made value.

        Raises:
            TypeError: if ``key`` is not hashable.

        Examples:
            >>> Store().cached("k", lambda: [1], keep=lambda v: False)  # made, not kept
            [1]
        """
        try:
            return self[key]
        except KeyError:
            pass
        value = make()
        if keep is None or keep(value):
            self[key] = value
        return value

    def __eq__(self, other):  # a store is one object's cache, not a value
        return self is other

    __hash__ = object.__hash__  # pyright: ignore[reportAssignmentType]  # identity, as __eq__


class Owner:
    """Base class of objects that own cache entries: each instance gets its own
    ``Store`` when it is made (before ``__init__`` runs), so subclasses need
    not call a base ``__init__``. A shallow copy starts with an empty store.

    Examples:
        >>> class Model(Owner):
        ...     pass
        >>> len(store_of(Model()))
        0
    """

    def __new__(cls, *args, **kwargs):
        self = super().__new__(cls)
        object.__setattr__(self, "_ppl_store", Store())
        return self

    def __copy__(self):
        new = object.__new__(type(self))
        new.__dict__.update(self.__dict__)
        object.__setattr__(new, "_ppl_store", Store())
        return new


def store_of(owner: Owner) -> Store:
    """The cache store of ``owner``.

    Args:
        owner: an ``Owner`` (every generative function and every other
            callee that can sit at a random-choice site is one).

    Returns:
        Its ``Store``.

    Raises:
        TypeError: if ``owner`` is not an ``Owner``.

    Examples:
        >>> store_of(ppl.normal).cached(("my entry",), lambda: 1)
        1
    """
    try:
        return owner.__dict__["_ppl_store"]
    except (AttributeError, KeyError):
        raise TypeError(
            f"{type(owner).__name__} does not own a ppl cache store (not a ppl.core.Callee)."
        ) from None


def register(clear: Callable[[], None]) -> Callable[[], None]:
    """Have ``clear_caches`` call ``clear`` (a module-level cache's clearing function).

    Args:
        clear: a function of no arguments that empties one cache, such as the
            ``clear_cache`` method of a module-level ``jax.jit``.

    Returns:
        ``clear`` itself.

    Examples:
        >>> _run = jax.jit(lambda x, spec: x * spec, static_argnames="spec")
        >>> clear = register(_run.clear_cache)
    """
    _clears.append(clear)
    return clear


def clear_caches() -> None:
    """Empty every cache ppl keeps: staged programs, shapes, compiled chains and
    the module-level compiled functions.

    Entries are weak already (they go with the generative function that owns
    them); this drops the rest, e.g. in a long session that has built many
    models, or before measuring memory. ppl's caches hold JAX's compiled code,
    and JAX's own caches hold the structure of the traces it returned (which
    names their generative function), so call ``jax.clear_caches()`` afterwards
    to free those too. Nothing breaks:
    the next call stages and compiles again.

    Returns:
        None.

    Raises:
        Nothing of its own: an error from a registered clearing function passes
            through.

    Examples:
        >>> from ppl._caches import live_entries
        >>> @ppl.gen
        ... def model():
        ...     return ppl.normal(0.0, 1.0) @ "x"
        >>> _ = model.simulate(jax.random.key(0), ())  # stages (and caches) the program
        >>> ppl.clear_caches()
        >>> jax.clear_caches()
        >>> live_entries()
        0
    """
    for store in list(_stores):
        store.clear()
    for clear in _clears:
        clear()


def live_entries() -> int:
    """The number of entries in the stores of all live owners (for tests and diagnostics).

    Returns:
        The total, an int.

    Examples:
        >>> ppl.clear_caches(); live_entries()
        0
    """
    return sum(len(store) for store in list(_stores))
