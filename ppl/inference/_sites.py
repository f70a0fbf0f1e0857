"""Per-address distributions of a trace, for algorithms that need supports.

Every random choice bottoms out in a :class:`DistributionTrace`. Replacing
each one's value by a marker that remembers the distribution, and reading the
trace's ``choices``, gives a choice map of markers with exactly the trace's
addressing, whatever the combinators in between.
"""

from __future__ import annotations

import jax
import numpyro.distributions as nd

from ppl._errors import PPLError, fmt_addr
from ppl.choices import ChoiceMap
from ppl.distributions import DistributionTrace


class Site:
    """A marker leaf: the distribution trace that made one (possibly batched) choice."""

    def __init__(self, dtrace: DistributionTrace):
        self.dtrace = dtrace

    @property
    def dist(self) -> nd.Distribution:
        return self.dtrace.gen_fn.dist(*self.dtrace.args)

    @property
    def value(self):
        return self.dtrace.value

    @property
    def name(self) -> str:
        return self.dtrace.gen_fn.name


def _is_dtrace(x):
    return isinstance(x, DistributionTrace)


def sites(trace) -> ChoiceMap:
    """A choice map with the addresses of ``trace`` holding :class:`Site` markers."""
    marked = jax.tree.map(
        lambda t: DistributionTrace(t.gen_fn, t.args, Site(t), t.score) if _is_dtrace(t) else t,
        trace,
        is_leaf=_is_dtrace,
    )
    try:
        return marked.choices
    except Exception as e:  # a trace whose choices compute on values (ppl.switch, ppl.cond, ppl.mix)
        raise PPLError(
            f"could not find the distribution behind each choice of this {type(trace).__name__}: some "
            "choice is picked among branches at run time (ppl.switch / ppl.cond / ppl.mix), so its "
            "distribution, and support, is not fixed. Gradient kernels (mala, hmc, nuts) and "
            "enumeration need a fixed distribution per address: select only choices outside the "
            f"branches, and move the others with ppl.inference.mh. ({type(e).__name__}: {e})"
        ) from e


def site_items(site_map: ChoiceMap):
    """``(address, Site)`` pairs."""
    return [(addr, site_map[addr]) for addr in site_map.addresses()]


def empty_selection_error(trace, selection, algorithm):
    """The error for a selection that matches no choice of ``trace``: names the
    selection, the model's addresses and the fix."""
    addrs = ", ".join(fmt_addr(a) for a in trace.choices.addresses()[:20])
    return PPLError(
        f"{algorithm}: the selection {selection!r} matches no random choice of "
        f"{trace.gen_fn!r}, so the kernel would do nothing. Its addresses are: {addrs}. "
        "Select some of them, e.g. ppl.select('x', ('sub', 'y'))."
    )


def check_selection(trace, selection, algorithm: str) -> None:
    if trace.choices.filter(selection).is_empty():
        raise empty_selection_error(trace, selection, algorithm)
