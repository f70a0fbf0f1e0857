"""update and regenerate: move an existing trace, with incremental weights."""

from __future__ import annotations

from ppl._errors import at_address
from ppl._gfi import site_key, total
from ppl.choices import ChoiceMap
from ppl.transforms._checks import check_addresses


def update(program, key, trace, constraints, args, name):
    """Returns ``(subtraces, retval, log_weight, discard)``."""
    check_addresses(program, constraints, name, "update")
    subtraces, weights, discard = {}, [], {}

    def on_site(site, site_args):
        k, sub = site_key(key, site.index), constraints.get_submap(site.addr)
        old = trace.subtraces.get(site.addr)
        with at_address(site.addr):
            if old is None:
                tr, w = site.gen_fn.generate(k, sub, site_args)
                d = ChoiceMap.empty()
            else:
                tr, w, d = site.gen_fn.update(k, old, sub, site_args)
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
    """
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


def _forget_unvisited(trace, subtraces, discard):
    """Choices of the old trace that the new run no longer makes."""
    for addr, old in trace.subtraces.items():
        if addr not in subtraces:
            discard[addr] = old.choices
            yield -old.score


def _non_empty(discard: dict) -> ChoiceMap:
    return ChoiceMap({k: v for k, v in discard.items() if not v.is_empty()})
