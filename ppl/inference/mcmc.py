"""MCMC kernels over traces: Metropolis-Hastings and composition.

A kernel has ``init(trace, n_warmup=0, observed=None) -> MCMCState`` and a
pure ``step(key, state) -> state`` (also available as ``kernel(key, state)``),
so kernels compose and run under ``jit``, ``vmap`` and ``lax.scan``; a kernel
object holds only its settings, and one serves many models at once. The
interface lives in :mod:`ppl.inference.kernel`, MALA and HMC in
:mod:`ppl.inference.gradient` (both importable from here), NUTS in
:mod:`ppl.inference.nuts`, the multi-chain driver in :mod:`ppl.inference.chains`.
"""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp

from ppl._errors import PPLError, fmt_addr
from ppl._gfi import as_selection
from ppl.choices import Selection
from ppl.inference._sites import check_selection
from ppl.inference._util import selection_of
from ppl.inference.gradient import HMC, MALA, GradientAux, StepSize, hmc, mala
from ppl.inference.kernel import Kernel, MCMCState, accept, one, resolve_selection, select_where

# ---------------------------------------------------------------------------
# Metropolis-Hastings
# ---------------------------------------------------------------------------


class MHAux(eqx.Module):
    """The selection an :class:`MH` kernel resolved at ``init`` (static)."""

    selection: Selection = eqx.field(static=True)


class MH(Kernel):
    """Metropolis-Hastings with the prior or a custom proposal. Build with :func:`mh`."""

    def __init__(self, selection=None, proposal=None, proposal_args=()):
        if selection is not None and proposal is not None:
            raise PPLError(
                "mh takes a selection (resample those choices from the prior) or a proposal generative "
                "function (which chooses its own addresses), not both."
            )
        self.selection = None if selection is None else as_selection(selection)
        self.proposal, self.proposal_args = proposal, tuple(proposal_args)

    def init(self, trace, n_warmup=0, observed=None, *, shared=False):
        if self.proposal is not None:
            self._check_proposal(trace, observed)
            return MCMCState(trace, one(), None)
        selection = resolve_selection("mh", self.selection, trace, observed)
        check_selection(trace, selection, "mh")
        return MCMCState(trace, one(), MHAux(selection))

    def _check_proposal(self, trace, observed):
        proposed = self.proposal.trace_shape((trace, *self.proposal_args)).choices
        known = selection_of(trace.choices)
        for addr in proposed.addresses():
            if addr not in known:
                raise PPLError(
                    f"mh: the proposal {self.proposal.name} proposes {fmt_addr(addr)}, which is not a random "
                    f"choice of {trace.gen_fn!r} (its addresses: "
                    f"{', '.join(fmt_addr(a) for a in trace.choices.addresses()[:12])}). Fix the proposal's addresses."
                )
            if observed is not None and addr in observed:
                raise PPLError(
                    f"mh: the proposal {self.proposal.name} proposes {fmt_addr(addr)}, which is observed; a "
                    "kernel must not move observations. Propose only latent choices."
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


# ---------------------------------------------------------------------------
# Composition
# ---------------------------------------------------------------------------


def _sub(state, aux):
    return MCMCState(state.trace, state.accept_prob, aux)


class Cycle(Kernel):
    """Apply each kernel in turn; the acceptance probability is their mean. Build with :func:`cycle`."""

    def __init__(self, *kernels):
        self.kernels = kernels

    def init(self, trace, n_warmup=0, observed=None, *, shared=False):
        states = [k.init(trace, n_warmup, observed, shared=True) for k in self.kernels]
        return MCMCState(trace, one(), tuple(s.aux for s in states))

    def step(self, key, state):
        keys = jax.random.split(key, len(self.kernels))
        auxs, probs = list(state.aux), []
        for i, (k, kernel) in enumerate(zip(keys, self.kernels)):
            state = kernel.step(k, _sub(state, auxs[i]))
            auxs[i] = state.aux
            probs.append(state.accept_prob)
        return MCMCState(state.trace, sum(probs) / len(probs), tuple(auxs))


class Mixture(Kernel):
    """Apply one kernel chosen at random with probabilities ``weights``. Build with :func:`mixture`."""

    def __init__(self, kernels, weights=None):
        self.kernels = tuple(kernels)
        n = len(self.kernels)
        self.logits = jnp.log(jnp.asarray([1.0 / n] * n if weights is None else weights))

    def init(self, trace, n_warmup=0, observed=None, *, shared=False):
        return Cycle(*self.kernels).init(trace, n_warmup, observed)

    def step(self, key, state):
        k1, k2 = jax.random.split(key)

        def branch(i):
            def run(state):
                sub = self.kernels[i].step(k2, _sub(state, state.aux[i]))
                auxs = tuple(sub.aux if j == i else a for j, a in enumerate(state.aux))
                return MCMCState(sub.trace, sub.accept_prob, auxs)

            return run

        i = jax.random.categorical(k1, self.logits)
        return jax.lax.switch(i, [branch(i) for i in range(len(self.kernels))], state)


class Repeat(Kernel):
    """Apply ``kernel`` ``n`` times; the acceptance probability is the mean. Build with :func:`repeat`."""

    def __init__(self, kernel, n):
        self.kernel, self.n = kernel, n

    def current_choices(self, state):
        return self.kernel.current_choices(state)

    def materialize(self, state):
        return self.kernel.materialize(state)

    def init(self, trace, n_warmup=0, observed=None, *, shared=False):
        return self.kernel.init(trace, n_warmup, observed, shared=shared)

    def step(self, key, state):
        def body(state, k):
            state = self.kernel.step(k, state)
            return state, state.accept_prob

        state, probs = jax.lax.scan(body, state, jax.random.split(key, self.n))
        return MCMCState(state.trace, jnp.mean(probs), state.aux)


def cycle(*kernels) -> Cycle:
    """Apply ``kernels`` one after the other in every step.

    Args:
        *kernels: kernels moving the same trace (e.g. different selections).

    Returns:
        A :class:`Cycle`; its acceptance probability is the kernels' mean.

    Example:
        >>> kernel = cycle(hmc(ppl.select("mu")), mh(ppl.select("k")))
    """
    return Cycle(*kernels)


def mixture(kernels, weights=None) -> Mixture:
    """Apply one of ``kernels`` per step, chosen with probabilities ``weights``.

    Args:
        kernels: a sequence of kernels.
        weights: their probabilities (default: uniform).

    Returns:
        A :class:`Mixture`.

    Example:
        >>> kernel = mixture([mh(ppl.select("mu")), mala(ppl.select("mu"))], [0.3, 0.7])
    """
    return Mixture(kernels, weights)


def repeat(kernel, n: int) -> Repeat:
    """Apply ``kernel`` ``n`` times per step (inside one ``lax.scan``).

    Args:
        kernel: any kernel.
        n: the number of repetitions.

    Returns:
        A :class:`Repeat`; its acceptance probability is the mean over the repetitions.

    Example:
        >>> kernel = repeat(mh(proposal=walk), 3)
    """
    return Repeat(kernel, n)


__all__ = [
    "HMC", "MALA", "MH", "Cycle", "GradientAux", "Kernel", "MCMCState", "MHAux", "Mixture", "Repeat",
    "StepSize", "cycle", "hmc", "mala", "mh", "mixture", "repeat",
]
