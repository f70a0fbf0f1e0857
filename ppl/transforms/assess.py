"""assess: the log density of a complete choice map, and the return value.

A masked entry (``ChoiceMap.masked``, made only on some executions) is the
choice where it was made; where it was not, the choice is missing, and a
missing choice has no density: the result is NaN there (an error that surfaces
under ``jit``, where no exception can be raised).
"""

from __future__ import annotations

import jax.numpy as jnp

from ppl._errors import at_address
from ppl._gfi import GenerativeFunction
from ppl.choices import ChoiceMap
from ppl.transforms._checks import check_addresses, flag_of, missing_choice
from ppl.transforms._sites import total


def assess(program, choices, args, name):
    """Returns ``(log_density, retval)``."""
    check_addresses(program, choices, name, "assess")
    scores = []

    def on_site(site, site_args):
        sub = choices.get_submap(site.addr)
        if sub.is_empty() and not _makes_no_choice(site.gen_fn, site_args):
            raise missing_choice(name).under(site.addr)
        with at_address(site.addr):
            logp, retval = assess_site(site.gen_fn, sub, site_args)
        scores.append(logp)
        return retval

    retval = program.run(args, on_site)
    return total(scores), retval


def assess_site(gen_fn, choices: ChoiceMap, args):
    """``gen_fn.assess(choices, args)``, reading a masked value.

    Args:
        gen_fn: the generative function called at the site.
        choices: its choices; a masked single value (one flag for the whole
            site) is the choice where it was made and missing elsewhere.
        args: its arguments.

    Returns:
        ``(log_density, retval)``; the density is NaN where a masked value was
        not made (a missing choice has no density).

    Raises:
        AddressError: as ``gen_fn.assess`` does.

    >>> logp, _ = assess_site(ppl.normal, ChoiceMap.masked(0.3, made), (0.0, 1.0))
    >>> # made: log N(0.3; 0, 1); not made: nan
    """
    made = flag_of(choices)
    if made is None:
        return gen_fn.assess(choices, args)
    value, _ = choices._raw()
    logp, retval = gen_fn.assess(ChoiceMap.value(value), args)
    return jnp.where(made, logp, jnp.nan), retval


def _makes_no_choice(gen_fn, args) -> bool:
    """Whether a call makes no random choice at all (``ppl.factor``, ``ppl.deterministic``,
    a function of only those): assess then needs no value for it.

    Args:
        gen_fn: the generative function called at a site.
        args: its arguments.

    Returns:
        True when its trace's choice map has no address (decided from shapes only).

    >>> _makes_no_choice(ppl.factor, (0.5,))
    True
    """
    if not isinstance(gen_fn, GenerativeFunction):  # e.g. add_cost: its own assess refuses
        return False
    return not gen_fn.trace_shape(args).choices.addresses()
