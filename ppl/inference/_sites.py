"""Per-address distributions of a trace, for algorithms that need supports.

Every random choice bottoms out in a ``DistributionTrace``. Replacing
each one's value by a marker that remembers the distribution, and reading the
trace's ``choices``, gives a choice map of markers with exactly the trace's
addressing, whatever the combinators in between.
"""

from __future__ import annotations

import jax
import numpyro.distributions as nd

from ppl._errors import PPLError, fmt_addr
from ppl.choices import ChoiceMap, Selection, select_all
from ppl.distributions import DistributionTrace
from ppl.gen import StaticTrace


class Site:
    """A marker leaf: the distribution trace that made one (possibly batched) choice.

    Attributes:
        dtrace: the ``ppl.distributions.DistributionTrace``; under
            ``ppl.vmap`` / ``ppl.scan`` its arguments, value and score carry
            one leading axis per level (the score's rank says how many).

    Examples:
        >>> site = sites(trace)["x"]
        >>> site.dist.support, site.value
    """

    def __init__(self, dtrace: DistributionTrace):
        self.dtrace = dtrace

    @property
    def dist(self) -> nd.Distribution:
        """The numpyro distribution built from the recorded (possibly stacked) arguments."""
        return self.dtrace.gen_fn.dist(*self.dtrace.args)

    @property
    def value(self):
        """The recorded value."""
        return self.dtrace.value

    @property
    def name(self) -> str:
        """The distribution's name, for messages."""
        return self.dtrace.gen_fn.name


def _is_dtrace(x):
    return isinstance(x, DistributionTrace)


def sites(trace, selection: Selection | None = None) -> ChoiceMap:
    """A choice map with the addresses of ``trace`` holding ``Site`` markers.

    Args:
        trace: any trace.
        selection: only these choices (default: all). Calls at unselected
            addresses are not looked into, so a ``ppl.switch`` elsewhere in the
            model does not get in the way.

    Returns:
        A ``ppl.ChoiceMap`` of ``Site`` markers (a value that no
        distribution trace made, such as a marginal's kept choices, stays as it is).

    Raises:
        PPLError: if a selected choice is made inside ``ppl.switch`` /
            ``ppl.cond`` / ``ppl.mix`` under a run-time index (its distribution
            is not fixed).

    Examples:
        >>> sites(trace, ppl.select("mu"))["mu"].dist
    """
    selection = select_all() if selection is None else selection
    if not selection.is_all():
        if isinstance(trace, StaticTrace):
            found = {}
            for addr, sub in trace.subtraces.items():
                child = selection.child(addr)
                if not child.is_none():
                    marked = sites(sub, child)
                    if not marked.is_empty():
                        found[addr] = marked
            return ChoiceMap(found)
        if trace.choices.filter(selection).is_empty():
            return ChoiceMap()
    marked = jax.tree.map(
        lambda t: DistributionTrace(t.gen_fn, t.args, Site(t), t.score) if _is_dtrace(t) else t,
        trace,
        is_leaf=_is_dtrace,
    )
    try:
        return marked.choices.filter(selection)
    except (
        Exception
    ) as e:  # a trace whose choices compute on values (ppl.switch, ppl.cond, ppl.mix)
        raise PPLError(
            f"could not find the distribution behind each choice of this {type(trace).__name__}: "
            f"some selected choice is picked among branches at run time (ppl.switch / ppl.cond / "
            "ppl.mix), so its distribution, and support, is not fixed. Gradient kernels (mala, "
            "hmc, nuts) and enumeration need a fixed distribution per address: select only choices "
            f"outside the branches, and move the others with ppl.inference.mh. "
            f"({type(e).__name__}: {e})"
        ) from e


def site_items(site_map: ChoiceMap):
    """``(address, Site)`` pairs of a choice map from ``sites``.

    Args:
        site_map: a choice map of ``Site`` markers.

    Returns:
        A list of ``(address tuple, Site)``.

    Examples:
        >>> [addr for addr, _ in site_items(sites(trace))]
    """
    return [(addr, site_map[addr]) for addr in site_map.addresses()]


def empty_selection_error(trace, selection, algorithm):
    """The error for a selection that matches no choice of ``trace``.

    Args:
        trace: the trace the kernel was given.
        selection: the selection.
        algorithm: the kernel's name.

    Returns:
        A ``ppl.PPLError`` naming the selection, the model's addresses and the fix.

    Examples:
        >>> raise empty_selection_error(trace, ppl.select("sigma"), "mh")
    """
    addrs = ", ".join(fmt_addr(a) for a in trace.choices.addresses()[:20])
    return PPLError(
        f"{algorithm}: the selection {selection!r} matches no random choice of "
        f"{trace.gen_fn!r}, so the kernel would do nothing. Its addresses are: {addrs}. "
        "Select some of them, e.g. ppl.select('x', ('sub', 'y'))."
    )


def check_selection(trace, selection, algorithm: str) -> None:
    """Raise ``empty_selection_error`` if ``selection`` matches no choice of ``trace``.

    Args:
        trace: any trace.
        selection: the choices a kernel would move.
        algorithm: the kernel's name, for the message.

    Raises:
        PPLError: when the selection is empty for this trace.

    Examples:
        >>> check_selection(trace, ppl.select("mu"), "mh")
    """
    if trace.choices.filter(selection).is_empty():
        raise empty_selection_error(trace, selection, algorithm)
