"""One choice map for the branches of a ``ppl.switch`` whose index is known only
at run time: every branch's addresses, masked where only some branches make
them (see ``ppl.combinators.switch``)."""

from __future__ import annotations

import jax.numpy as jnp

from ppl._errors import AddressError, fmt_addr
from ppl.choices import ChoiceMap


def _raw_entries(m: ChoiceMap):
    return [(a, *m.get_submap(a)._raw()) for a in m.addresses()]


def _dtype(v):
    return v.dtype if hasattr(v, "dtype") else jnp.result_type(v)


def _shape(v) -> tuple:
    # Leaves may be markers standing for values (inference reads supports that
    # way), which carry no shape: they are checked where the values are.
    return tuple(v.shape) if hasattr(v, "shape") else ()


def check_layout(maps: list, name: str) -> None:
    """Check that one choice map can hold the choices of every branch.

    Args:
        maps: the branches' choice maps (of traces or of trace shapes).
        name: the combinator's name, for the message.

    Raises:
        AddressError: if two branches make one address with different shapes or
            dtypes, or one makes a value at an address under which another makes
            choices; the message names the address and says to rename.

    >>> layouts = [small.trace_shape(args).choices, big.trace_shape(args).choices]
    >>> check_layout(layouts, "switch(small, big)")
    """
    seen: dict = {}
    for j, m in enumerate(maps):
        for a, v, _ in _raw_entries(m):
            kind = (_shape(v), _dtype(v))
            if a in seen and seen[a][1] != kind:
                i, (s, d) = seen[a][0], seen[a][1]
                raise AddressError(
                    f"branches {i} and {j} of {name} both make a random choice at {{addr}}, with "
                    "shape "
                    f"{s} and dtype {d} in one and {kind[0]} and {kind[1]} in the other. With a "
                    "branch "
                    "index known only at run time (under jit or vmap) the choice map holds one "
                    "value per "
                    "address: give the two choices different addresses, or the same shape and "
                    "dtype.",
                    a,
                )
            seen.setdefault(a, (j, kind))
    for a in seen:
        for k in range(1, len(a)):
            if a[:k] in seen:
                raise AddressError(
                    f"one branch of {name} makes a random choice at {{addr}}, and another makes "
                    "choices "
                    f"below it, at {fmt_addr(a)}. With a branch index known only at run time the "
                    "choice "
                    "map holds both, which it cannot: give them different addresses.",
                    a[:k],
                )


def _align(mask, ndim):
    return jnp.reshape(mask, jnp.shape(mask) + (1,) * (ndim - jnp.ndim(mask)))


def union_by_index(index, maps, name: str) -> ChoiceMap:
    """The choices of branch ``index`` as one map over every branch's addresses.

    Args:
        index: the branch run, an int32 array known only at run time (traced, or
            batched: then every value carries its leading axes).
        maps: the branches' choice maps (slots of branches not run hold placeholders).
        name: the combinator's name, for errors.

    Returns:
        A ``ChoiceMap``: at an address every branch makes, the value of the
        branch run; elsewhere a masked entry, made where a branch making it ran.

    Raises:
        AddressError: as ``check_layout``.

    >>> union_by_index(jnp.asarray(i), [tr.choices for tr in trace.branches], "switch(small, big)")
    """
    check_layout(maps, name)
    holders: dict = {}
    for j, m in enumerate(maps):
        for a, v, made in _raw_entries(m):
            holders.setdefault(a, []).append((j, v, made))
    entries = {}
    for a, hs in holders.items():
        value = hs[0][1]
        for j, v, _ in hs[1:]:
            value = jnp.where(_align(index == j, jnp.ndim(v)), v, value)
        if len(hs) == len(maps) and all(made is None for _, _, made in hs):
            entries[a] = ChoiceMap.value(value)
            continue
        ndim = max([jnp.ndim(index)] + [jnp.ndim(made) for _, _, made in hs if made is not None])
        flag = jnp.zeros((), jnp.bool_)
        for j, _, made in hs:
            flag = jnp.where(_align(index == j, ndim), True if made is None else made, flag)
        entries[a] = ChoiceMap.masked(value, flag)
    return ChoiceMap.d(entries)
