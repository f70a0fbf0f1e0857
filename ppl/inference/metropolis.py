"""Metropolis-Hastings over traces: resample a selection from the prior, or
move to a custom proposal's choices and accept with the full ratio.

The kernel holds only its settings (a selection or a proposal and its extra
arguments); the selection it resolves at ``init`` travels in the state
(``MHAux``), so one ``MH`` object serves many models at once.
"""

from __future__ import annotations

import equinox as eqx
import jax

from ppl._errors import PPLError, fmt_addr
from ppl._gfi import GenerativeFunction, as_selection
from ppl.choices import Selection
from ppl.inference._sites import check_selection
from ppl.inference._subsampling import refuse_in_trace
from ppl.inference._util import selection_of
from ppl.inference.kernel import Kernel, MCMCState, accept, one, resolve_selection, select_where


class MHAux(eqx.Module):
    """The selection an ``MH`` kernel resolved at ``init`` (static).

    Attributes:
        selection: the choices each step resamples from the prior.
    """

    selection: Selection = eqx.field(static=True)


class MH(Kernel):
    """Metropolis-Hastings with the prior or a custom proposal; ``mh`` builds
    one and says what a step does and costs.

    Args:
        selection: the choices each step resamples from the prior (a
            ``ppl.Selection`` or what ``ppl.select`` takes), or ``None``
            (every unobserved choice, with the ``observed=`` that
            ``ppl.inference.run_mcmc`` passes to ``init``).
        proposal: a generative function called with ``(trace,
            *proposal_args)`` that proposes new values of some latent choices,
            or ``None`` (resample ``selection`` from the prior).
        proposal_args: the proposal's extra arguments (a tuple).

    The settings are stored as attributes of the same names (``selection``
    converted to a ``ppl.Selection``, ``proposal_args`` to a tuple).

    Raises:
        PPLError: when both a selection and a proposal are given.

    Examples:
        >>> kernel = ppl.inference.MH(ppl.select("mu"))
        >>> kernel == ppl.inference.mh(ppl.select("mu")), kernel.proposal is None
        (True, True)
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
            refuse_in_trace(trace, "MCMC (mh)")  # as resolve_selection does for a selection
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
    resamples those choices from the prior (``regenerate``) and accepts with
    the ratio of the likelihoods, so it mixes well only when the prior is not
    much wider than the posterior. With a ``proposal``, a generative function
    called with ``(trace, *proposal_args)`` whose addresses are choices of the
    model, each step moves to its proposal and accepts with the full
    Metropolis-Hastings ratio (the proposal's density of the way back, read
    with ``assess`` on what the move discards, included), so any proposal
    that can return works: random walks, data-driven moves, discrete jumps.
    Discrete and continuous choices alike can be moved; no gradient is used.
    A step costs one run of the model (``regenerate``, or ``update`` plus one
    ``simulate`` and one ``assess`` of the proposal).

    A ``ppl.improper_uniform`` choice cannot be resampled from its flat prior:
    move it with a proposal or a gradient kernel. Run on the full data: a
    scaled minibatch density (``ppl.vmap(..., subsample_of=N)``) would bias
    the acceptance ratio, so ``init`` refuses such a model.

    Args:
        selection: the choices to resample from the prior, or ``None``.
        proposal: a generative function proposing new values, or ``None``.
        proposal_args: extra arguments of the proposal (a tuple).

    Returns:
        An ``MH`` kernel.

    Raises:
        PPLError: when both a selection and a proposal are given; at ``init``,
            when the selection matches no choice or includes an observed one,
            the proposal proposes an address the model does not have or
            observes, or the model subsamples.
        AddressError: at the first step, when the selection resamples a
            ``ppl.improper_uniform`` choice from its prior.

    Examples:
        >>> @ppl.gen
        ... def model():
        ...     mu = ppl.normal(0.0, 1.0) @ "mu"
        ...     return ppl.normal(mu, 1.0) @ "y"
        >>> @ppl.gen
        ... def walk(trace):
        ...     return ppl.normal(trace["mu"], 0.5) @ "mu"
        >>> result = ppl.inference.run_mcmc(
        ...     jax.random.key(0), ppl.inference.mh(proposal=walk), model, (), {"y": 1.0},
        ...     n_samples=500, n_warmup=100, n_chains=1, progress=False)
        >>> result.samples["mu"].shape, bool(abs(result.summary()["mu"]["mean"] - 0.5) < 0.2)
        ((1, 500), True)
    """
    return MH(selection, proposal, proposal_args)


__all__ = ["MH", "MHAux", "mh"]
