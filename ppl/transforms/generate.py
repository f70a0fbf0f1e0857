"""generate: run a program with some choices constrained; importance weight."""

from __future__ import annotations

from ppl._errors import at_address
from ppl._gfi import site_key, total
from ppl.transforms._checks import check_addresses


def generate(program, key, constraints, args, name):
    """Returns ``(subtraces, retval, log_weight)``."""
    check_addresses(program, constraints, name, "generate")
    subtraces, weights = {}, []

    def on_site(site, site_args):
        with at_address(site.addr):
            tr, w = site.gen_fn.generate(
                site_key(key, site.index), constraints.get_submap(site.addr), site_args
            )
        subtraces[site.addr] = tr
        weights.append(w)
        return tr.retval

    retval = program.run(args, on_site)
    return subtraces, retval, total(weights)
