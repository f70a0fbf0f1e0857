"""generate: run a program with some choices constrained; importance weight.

A constraint may be *masked* (``ChoiceMap.masked``: made only on some
executions, as in the choice map of a ``ppl.switch`` with a traced index). At
a site, a masked constraint constrains the choice where it was made and leaves
it to be sampled elsewhere, exactly as if the entry were absent there.
"""

from __future__ import annotations

import jax.numpy as jnp

from ppl._errors import at_address
from ppl.choices import ChoiceMap
from ppl.transforms._checks import check_addresses, flag_of
from ppl.transforms._sites import site_key, total


def generate(program, key, constraints, args, name):
    """Returns ``(subtraces, retval, log_weight)``."""
    check_addresses(program, constraints, name, "generate")
    subtraces, weights = {}, []

    def on_site(site, site_args):
        with at_address(site.addr):
            tr, w = generate_site(
                site.gen_fn, site_key(key, site.index), constraints.get_submap(site.addr), site_args
            )
        subtraces[site.addr] = tr
        weights.append(w)
        return tr.retval

    retval = program.run(args, on_site)
    return subtraces, retval, total(weights)


def generate_site(gen_fn, key, constraints: ChoiceMap, args):
    """``gen_fn.generate(key, constraints, args)``, reading a masked value.

    Args:
        gen_fn: the generative function called at the site.
        key: its key.
        constraints: its constraints; a masked single value (one flag for the
            whole site) is the constraint where it was made and no constraint
            elsewhere. Masks with per-element flags are left to ``gen_fn`` (a
            ``ppl.vmap`` or ``ppl.scan`` maps them to its elements).
        args: its arguments.

    Returns:
        ``(trace, log_weight)`` as from ``gen_fn.generate``.

    Raises:
        AddressError: as ``gen_fn.generate`` does, e.g. for a value of the wrong shape.

    >>> tr, w = generate_site(ppl.normal, key, ChoiceMap.masked(0.3, made), (0.0, 1.0))
    >>> # made: tr.value == 0.3, w == log N(0.3; 0, 1); not made: a draw, w == 0
    """
    made = flag_of(constraints)
    if made is None:
        return gen_fn.generate(key, constraints, args)
    value, _ = constraints._raw()
    free, w_free = gen_fn.generate(key, ChoiceMap.empty(), args)
    drawn = free.choices
    if not drawn.has_value() or drawn.is_masked():
        return gen_fn.generate(key, constraints, args)  # not one value: gen_fn explains
    used = jnp.where(made, value, drawn.get_value())
    tr, w = gen_fn.generate(key, ChoiceMap.value(used), args)
    return tr, jnp.where(made, w, w_free)
