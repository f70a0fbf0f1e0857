"""assess: the log density of a complete choice map, and the return value."""

from __future__ import annotations

from ppl._errors import at_address
from ppl._gfi import total
from ppl.transforms._checks import check_addresses, missing_choice


def assess(program, choices, args, name):
    """Returns ``(log_density, retval)``."""
    check_addresses(program, choices, name, "assess")
    scores = []

    def on_site(site, site_args):
        sub = choices.get_submap(site.addr)
        if sub.is_empty():
            raise missing_choice(name).under(site.addr)
        with at_address(site.addr):
            logp, retval = site.gen_fn.assess(sub, site_args)
        scores.append(logp)
        return retval

    retval = program.run(args, on_site)
    return total(scores), retval
