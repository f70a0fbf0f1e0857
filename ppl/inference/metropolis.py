"""Metropolis-Hastings over traces: resample a selection from the prior, or
move to a custom proposal's choices and accept with the full ratio.

The kernel holds only its settings (a selection or a proposal and its extra
arguments); the selection it resolves at ``init`` travels in the state
(:class:`MHAux`), so one :class:`MH` object serves many models at once.
"""

from __future__ import annotations

import equinox as eqx
import jax

from ppl._errors import PPLError, fmt_addr
from ppl._gfi import GenerativeFunction, as_selection
from ppl.choices import Selection
from ppl.inference._sites import check_selection
from ppl.inference._util import selection_of
from ppl.inference.kernel import Kernel, MCMCState, accept, one, resolve_selection, select_where


class MHAux(eqx.Module):
    """The selection an :class:`MH` kernel resolved at ``init`` (static).

    Attributes:
        selection: the choices each step resamples from the prior.
    """

    selection: Selection = eqx.field(static=True)


class MH(Kernel):
    """Metropolis-Hastings with the prior or a custom proposal. Build with :func:`mh`.

    Attributes:
        selection: the selection given, or ``None`` (every unobserved choice).
        proposal: the proposal generative function, or ``None``.
        proposal_args: the proposal's extra arguments (a tuple).
    """

    selection: Selection | None
    proposal: GenerativeFunction | None
    proposal_args: tuple

    def __init__(self, selection=None, proposal=None, proposal_args=()):
        if selection is not None and proposal is not None:
            raise PPLError(
                "mh takes a selection (resample those choices from the prior) or a proposal "
                "generative function (which chooses its own addresses), not both."
            )
        super().__init__(
            selection=None if selection is None else as_selection(selection),
            proposal=proposal,
            proposal_args=tuple(proposal_args),
        )

    def init(self, trace, n_warmup=0, observed=None, *, shared=False):
        if self.proposal is not None:
            self._check_proposal(trace, observed)
            return MCMCState(trace, one(), None)
        selection = resolve_selection("mh", self.selection, trace, observed)
        check_selection(trace, selection, "mh")
        return MCMCState(trace, one(), MHAux(selection))

    def _check_proposal(self, trace, observed):
        proposal = self.proposal
        assert proposal is not None  # init checks only a kernel built with a proposal
        proposed = proposal.trace_shape((trace, *self.proposal_args)).choices
        known = selection_of(trace.choices)
        for addr in proposed.addresses():
            if addr not in known:
                shown = ", ".join(fmt_addr(a) for a in trace.choices.addresses()[:12])
                raise PPLError(
                    f"mh: the proposal {proposal.name} proposes {fmt_addr(addr)}, which is "
                    f"not a random choice of {trace.gen_fn!r} (its addresses: {shown}). Fix the "
                    "proposal's addresses."
                )
            if observed is not None and addr in observed:
                raise PPLError(
                    f"mh: the proposal {proposal.name} proposes {fmt_addr(addr)}, which is "
                    "observed; a kernel must not move observations. Propose only latent choices."
                )

    def step(self, key, state):
        k1, k2, k3 = jax.random.split(key, 3)
        tr = state.trace
        if self.proposal is None:
            new, log_alpha = tr.gen_fn.regenerate(k1, tr, state.aux.selection)
        else:
            fwd = self.proposal.simulate(k1, (tr, *self.proposal_args))
            new, w, discard = tr.gen_fn.update(k2, tr, fwd.choices)
            bwd, _ = self.proposal.assess(discard, (new, *self.proposal_args))
            log_alpha = w - fwd.score + bwd
        accepted, prob = accept(k3, log_alpha)
        return MCMCState(select_where(accepted, new, tr), prob, state.aux)


def mh(selection=None, proposal=None, proposal_args=()) -> MH:
    """A Metropolis-Hastings kernel.

    With a ``selection`` (or none: every unobserved choice), each step
    resamples those choices from the prior (``regenerate``). With a
    ``proposal``, a generative function called with ``(trace,
    *proposal_args)`` whose addresses are choices of the model, each step
    moves to its proposal and accepts with the full Metropolis-Hastings ratio.

    Args:
        selection: the choices to resample from the prior.
        proposal: a generative function proposing new values.
        proposal_args: extra arguments of the proposal.

    Returns:
        An :class:`MH` kernel.

    Raises:
        PPLError: when both a selection and a proposal are given; at ``init``,
            when the selection is empty or observed, or the proposal proposes
            an address the model does not have or observes.

    Example:
        >>> @ppl.gen
        ... def walk(trace):
        ...     return ppl.normal(trace["mu"], 0.3) @ "mu"
        >>> kernel = ppl.inference.mh(proposal=walk)
    """
    return MH(selection, proposal, proposal_args)


__all__ = ["MH", "MHAux", "mh"]
