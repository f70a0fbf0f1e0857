"""update and regenerate: move an existing trace, with incremental weights.

A masked constraint (``ChoiceMap.masked``) is a constraint where it was made
and no constraint elsewhere, as in ``generate``; the discard of a site whose
constraint was masked is masked the same way.
"""

from __future__ import annotations

import jax.numpy as jnp

from ppl._errors import at_address
from ppl.choices import ChoiceMap
from ppl.transforms._checks import check_addresses, check_selects_some, flag_of
from ppl.transforms._sites import site_key, total
from ppl.transforms.generate import generate_site


def update(program, key, trace, constraints, args, name):
    """Returns ``(subtraces, retval, log_weight, discard)``."""
    check_addresses(program, constraints, name, "update")
    subtraces, weights, discard = {}, [], {}

    def on_site(site, site_args):
        k, sub = site_key(key, site.index), constraints.get_submap(site.addr)
        old = trace.subtraces.get(site.addr)
        with at_address(site.addr):
            if old is None:
                tr, w = generate_site(site.gen_fn, k, sub, site_args)
                d = ChoiceMap.empty()
            else:
                tr, w, d = update_site(site.gen_fn, k, old, sub, site_args)
        subtraces[site.addr], discard[site.addr] = tr, d
        weights.append(w)
        return tr.retval

    retval = program.run(args, on_site)
    weights.extend(_forget_unvisited(trace, subtraces, discard))
    return subtraces, retval, total(weights), _non_empty(discard)


def regenerate(program, key, trace, selection, args):
    """Returns ``(subtraces, retval, log_weight)``.

    Selected choices are resampled from the prior; the others are kept and
    rescored under their (possibly changed) arguments, which is all the MH
    ratio needs since the prior proposal cancels on the selected ones.

    Raises:
        PPLError: if ``selection`` names addresses (``ppl.select("x", ...)``) but
            none that the program could make: the move would do nothing.
    """
    check_selects_some(selection, trace.gen_fn.trace_shape(args).choices, trace.gen_fn.name)
    subtraces, weights = {}, []

    def on_site(site, site_args):
        k, sub_sel = site_key(key, site.index), selection.child(site.addr)
        old = trace.subtraces.get(site.addr)
        with at_address(site.addr):
            if old is None:
                tr, w = site.gen_fn.generate(k, ChoiceMap.empty(), site_args)
            elif sub_sel.is_none():
                tr, w, _ = site.gen_fn.update(k, old, ChoiceMap.empty(), site_args)
            else:
                tr, w = site.gen_fn.regenerate(k, old, sub_sel, site_args)
        subtraces[site.addr] = tr
        weights.append(w)
        return tr.retval

    retval = program.run(args, on_site)
    # Choices the new run no longer makes would be proposed from the prior by the
    # reverse move, so they cancel from the ratio like the newly sampled ones.
    return subtraces, retval, total(weights)


def update_site(gen_fn, key, trace, constraints: ChoiceMap, args):
    """``gen_fn.update(key, trace, constraints, args)``, reading a masked value.

    Args:
        gen_fn: the generative function called at the site.
        key: its key.
        trace: its old trace.
        constraints: the new values; a masked single value (one flag for the
            whole site) is a constraint where it was made and none elsewhere.
        args: its new arguments.

    Returns:
        ``(trace, log_weight, discard)`` as from ``gen_fn.update``; for a
        masked constraint the discard (the old value) is masked the same way.

    Raises:
        AddressError: as ``gen_fn.update`` does.

    >>> new, w, d = update_site(ppl.normal, key, old, ChoiceMap.masked(0.3, made), (0.0, 1.0))
    """
    made = flag_of(constraints)
    if made is None:
        return gen_fn.update(key, trace, constraints, args)
    value, _ = constraints._raw()
    prev = trace.choices
    if not prev.has_value() or prev.is_masked():
        return gen_fn.update(key, trace, constraints, args)  # not one value: gen_fn explains
    used = jnp.where(made, value, prev.get_value())
    tr, w, discard = gen_fn.update(key, trace, ChoiceMap.value(used), args)
    if discard.has_value() and not discard.is_masked():
        discard = ChoiceMap.masked(discard.get_value(), made)
    return tr, w, discard


def _forget_unvisited(trace, subtraces, discard):
    """Choices of the old trace that the new run no longer makes."""
    for addr, old in trace.subtraces.items():
        if addr not in subtraces:
            discard[addr] = old.choices
            yield -old.score


def _non_empty(discard: dict) -> ChoiceMap:
    return ChoiceMap({k: v for k, v in discard.items() if not v.is_empty()})
