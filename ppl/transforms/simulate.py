"""simulate: run a program forward, sampling every random choice."""

from __future__ import annotations

from ppl._errors import at_address
from ppl.transforms._sites import site_key


def simulate(program, key, args):
    """Returns ``(subtraces by address, retval)``."""
    subtraces = {}

    def on_site(site, site_args):
        with at_address(site.addr):
            tr = site.gen_fn.simulate(site_key(key, site.index), site_args)
        subtraces[site.addr] = tr
        return tr.retval

    retval = program.run(args, on_site)
    return subtraces, retval
