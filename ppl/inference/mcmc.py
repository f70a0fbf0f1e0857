"""MCMC kernels over traces: Metropolis-Hastings, MALA, HMC, and composition.

A kernel has ``init(trace, n_warmup=0) -> MCMCState`` and a pure
``step(key, state) -> state`` (also available as ``kernel(key, state)``), so
kernels compose and run under ``jit``, ``vmap`` and ``lax.scan``. Kernels that
adapt a step size do it during the first ``n_warmup`` steps, with numpyro's
dual averaging. NUTS lives in :mod:`ppl.inference.nuts`; the multi-chain driver
in :mod:`ppl.inference.chains`.
"""

from __future__ import annotations

import abc
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
from numpyro.infer.hmc_util import dual_averaging

from ppl._errors import PPLError, fmt_addr
from ppl._gfi import Trace, as_selection
from ppl.inference._sites import Unconstrain, check_selection
from ppl.inference._util import selection_of


class MCMCState(eqx.Module):
    """The chain's current ``trace``, the acceptance probability of the last
    step, and kernel-specific state (``aux``: step-size adaptation and so on)."""

    trace: Trace
    accept_prob: jax.Array
    aux: Any = None


def _select(pred, new, old):
    return jax.tree.map(lambda a, b: jnp.where(pred, a, b), new, old)


def _accept(key, log_alpha):
    # A NaN ratio compares false and the move is rejected, as it should be.
    accepted = jnp.log(jax.random.uniform(key)) < log_alpha
    prob = jnp.where(jnp.isnan(log_alpha), 0.0, jnp.exp(jnp.minimum(log_alpha, 0.0)))
    return accepted, prob


class Kernel(abc.ABC):
    """Base class: subclasses implement ``init`` and ``step``."""

    def init(self, trace: Trace, n_warmup: int = 0, observed=None) -> MCMCState:
        """``observed``: the selection of observed addresses, which a kernel built
        without a selection leaves alone (the driver passes it)."""
        return MCMCState(trace, jnp.ones((), jnp.result_type(float)), None)

    def _resolve(self, trace, observed):
        # Kernels built without a selection act on every choice that is not observed.
        if not hasattr(self, "_given"):
            self._given = self.selection
        if self._given is None:
            if observed is None:
                raise PPLError(
                    f"{type(self).__name__.lower()} was built without a selection, so it would move every "
                    "choice, observations included. Build it with a selection, e.g. "
                    f"{type(self).__name__.lower()}(ppl.select('z')), or pass observed= (the driver "
                    "ppl.inference.chains.run does this for you)."
                )
            self.selection = ~as_selection(observed)
        elif observed is not None:
            clash = trace.choices.filter(self.selection).filter(observed)
            if not clash.is_empty():
                shown = ", ".join(fmt_addr(a) for a in clash.addresses())
                raise PPLError(
                    f"{type(self).__name__.lower()}: the selection {self.selection!r} includes the observed "
                    f"choice {shown}; a kernel must not move observations. Select only latent addresses."
                )

    @abc.abstractmethod
    def step(self, key, state: MCMCState) -> MCMCState:
        """One transition: a pure function of the key and the state."""

    def __call__(self, key, state: MCMCState) -> MCMCState:
        return self.step(key, state)

    # A kernel may keep its position outside the trace between steps (NUTS
    # does, to avoid re-running the model after every step); these give the
    # current choices, and a state whose trace is up to date.
    def current_choices(self, state: MCMCState):
        return state.trace.choices

    def materialize(self, state: MCMCState) -> MCMCState:
        return state

    def _mark_shared(self) -> None:
        """Called by compositions: other kernels will move the same trace."""
        self._shared = True


# ---------------------------------------------------------------------------
# Metropolis-Hastings
# ---------------------------------------------------------------------------


class MH(Kernel):
    """Metropolis-Hastings: resample ``selection`` (default: every unobserved
    choice) from the prior (``regenerate``),
    or move with a custom ``proposal`` generative function, called with
    ``(trace, *proposal_args)``, whose addresses are choices of the model."""

    def __init__(self, selection=None, proposal=None, proposal_args=()):
        if selection is not None and proposal is not None:
            raise PPLError(
                "mh takes a selection (resample those choices from the prior) or a proposal generative "
                "function (which chooses its own addresses), not both."
            )
        self.selection = None if selection is None else as_selection(selection)
        self.proposal, self.proposal_args = proposal, tuple(proposal_args)

    def init(self, trace, n_warmup=0, observed=None):
        if self.proposal is None:
            self._resolve(trace, observed)
            check_selection(trace, self.selection, "mh")
        else:
            self._check_proposal(trace, observed)
        return super().init(trace, n_warmup)

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
            new, log_alpha = tr.gen_fn.regenerate(k1, tr, self.selection)
        else:
            fwd = self.proposal.simulate(k1, (tr, *self.proposal_args))
            new, w, discard = tr.gen_fn.update(k2, tr, fwd.choices)
            bwd, _ = self.proposal.assess(discard, (new, *self.proposal_args))
            log_alpha = w - fwd.score + bwd
        accepted, prob = _accept(k3, log_alpha)
        return MCMCState(_select(accepted, new, tr), prob, state.aux)


def mh(selection=None, proposal=None, proposal_args=()) -> MH:
    return MH(selection, proposal, proposal_args)


# ---------------------------------------------------------------------------
# Gradient-based kernels on unconstrained coordinates
# ---------------------------------------------------------------------------


class StepSize(eqx.Module):
    """A step size, adapted by dual averaging during the first ``n_warmup`` steps."""

    step_size: jax.Array
    da: Any
    i: jax.Array
    n_warmup: int = eqx.field(static=True)


def _init_step_size(step_size, n_warmup):
    da_init, _ = dual_averaging()
    eps = jnp.asarray(step_size, jnp.result_type(float))
    return StepSize(eps, da_init(jnp.log(10.0 * eps)), jnp.zeros((), jnp.int32), n_warmup)


def _adapt(ss: StepSize, accept_prob, target):
    if ss.n_warmup == 0:
        return ss
    _, da_update = dual_averaging()
    warming = ss.i < ss.n_warmup
    da = da_update(target - accept_prob, ss.da)
    da = _select(warming, da, ss.da)
    last = ss.i == ss.n_warmup - 1
    eps = jnp.where(warming, jnp.exp(jnp.where(last, da[1], da[0])), ss.step_size)
    return StepSize(eps, da, ss.i + 1, ss.n_warmup)


def _log_density(trace, unc: Unconstrain):
    """``z -> (log density in unconstrained coordinates, trace at z)``."""

    def f(z):
        x, logdet = unc.to_constrained(z)
        new, _, _ = trace.gen_fn.update(jax.random.key(0), trace, x)
        return new.score + logdet, new

    return jax.value_and_grad(f, has_aux=True)


def _tmap(f, *trees):
    return jax.tree.map(f, *trees)


def _sq(tree):
    return sum(jnp.sum(x * x) for x in jax.tree.leaves(tree))


class _Gradient(Kernel):
    name = "gradient kernel"
    target_accept = 0.8

    def __init__(self, selection=None, step_size=0.1, target_accept=None):
        self.selection = None if selection is None else as_selection(selection)
        self.step_size = step_size
        if target_accept is not None:
            self.target_accept = target_accept

    def init(self, trace, n_warmup=0, observed=None):
        self._resolve(trace, observed)
        Unconstrain(trace, self.selection, self.name)  # fail early on a bad selection
        return MCMCState(trace, jnp.ones((), jnp.result_type(float)), _init_step_size(self.step_size, n_warmup))

    def step(self, key, state):
        unc = Unconstrain(state.trace, self.selection, self.name)
        grad_fn = _log_density(state.trace, unc)
        k1, k2 = jax.random.split(key)
        z = unc.to_unconstrained(state.trace.choices)
        (logp, tr0), g = grad_fn(z)
        new_trace, log_alpha = self._propose(k1, grad_fn, z, logp, g, tr0, state.aux.step_size)
        accepted, prob = _accept(k2, log_alpha)
        aux = _adapt(state.aux, prob, self.target_accept)
        return MCMCState(_select(accepted, new_trace, state.trace), prob, aux)


class MALA(_Gradient):
    """Metropolis-adjusted Langevin on the continuous choices of ``selection``."""

    name = "mala"
    target_accept = 0.574

    def _propose(self, key, grad_fn, z, logp, g, tr0, eps):
        noise = _random_like(key, z)
        z1 = _tmap(lambda a, b, n: a + eps * b + jnp.sqrt(2 * eps) * n, z, g, noise)
        (logp1, tr1), g1 = grad_fn(z1)

        def log_q(to, frm, g_frm):  # log q(to | frm), up to a constant that cancels
            return -_sq(_tmap(lambda t, f, gf: t - f - eps * gf, to, frm, g_frm)) / (4 * eps)

        return tr1, logp1 - logp + log_q(z, z1, g1) - log_q(z1, z, g)


class HMC(_Gradient):
    """Hamiltonian Monte Carlo (identity mass, ``n_steps`` leapfrog steps) on the
    continuous choices of ``selection``."""

    name = "hmc"
    target_accept = 0.8

    def __init__(self, selection=None, step_size=0.1, n_steps=10, target_accept=None):
        super().__init__(selection, step_size, target_accept)
        self.n_steps = n_steps

    def _propose(self, key, grad_fn, z, logp, g, tr0, eps):
        p0 = _random_like(key, z)

        def leapfrog(carry, _):
            z, p, g, _, _ = carry
            p = _tmap(lambda p, g: p + 0.5 * eps * g, p, g)
            z = _tmap(lambda z, p: z + eps * p, z, p)
            (lp, tr), g = grad_fn(z)
            p = _tmap(lambda p, g: p + 0.5 * eps * g, p, g)
            return (z, p, g, lp, tr), None

        (z1, p1, _, logp1, tr1), _ = jax.lax.scan(leapfrog, (z, p0, g, logp, tr0), length=self.n_steps)
        return tr1, (logp1 - 0.5 * _sq(p1)) - (logp - 0.5 * _sq(p0))


def _random_like(key, tree):
    leaves, treedef = jax.tree.flatten(tree)
    keys = jax.random.split(key, len(leaves))
    return jax.tree.unflatten(treedef, [jax.random.normal(k, jnp.shape(x), jnp.result_type(x)) for k, x in zip(keys, leaves)])


def mala(selection=None, step_size=0.1, target_accept=None) -> MALA:
    return MALA(selection, step_size, target_accept)


def hmc(selection=None, step_size=0.1, n_steps=10, target_accept=None) -> HMC:
    return HMC(selection, step_size, n_steps, target_accept)


# ---------------------------------------------------------------------------
# Composition
# ---------------------------------------------------------------------------


def _sub(state, aux):
    return MCMCState(state.trace, state.accept_prob, aux)


class Cycle(Kernel):
    """Apply each kernel in turn; the acceptance probability is their mean."""

    def __init__(self, *kernels):
        self.kernels = kernels
        for k in kernels:
            k._mark_shared()

    def _mark_shared(self):
        for k in self.kernels:
            k._mark_shared()

    def init(self, trace, n_warmup=0, observed=None):
        states = [k.init(trace, n_warmup, observed) for k in self.kernels]
        return MCMCState(trace, jnp.ones((), jnp.result_type(float)), tuple(s.aux for s in states))

    def step(self, key, state):
        keys = jax.random.split(key, len(self.kernels))
        auxs, probs = list(state.aux), []
        for i, (k, kernel) in enumerate(zip(keys, self.kernels)):
            state = kernel.step(k, _sub(state, auxs[i]))
            auxs[i] = state.aux
            probs.append(state.accept_prob)
        return MCMCState(state.trace, sum(probs) / len(probs), tuple(auxs))


class Mixture(Kernel):
    """Apply one kernel chosen at random with probabilities ``weights``."""

    def __init__(self, kernels, weights=None):
        self.kernels = tuple(kernels)
        for k in self.kernels:
            k._mark_shared()
        n = len(self.kernels)
        self.logits = jnp.log(jnp.asarray([1.0 / n] * n if weights is None else weights))

    def init(self, trace, n_warmup=0, observed=None):
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
    """Apply ``kernel`` ``n`` times; the acceptance probability is the mean."""

    def __init__(self, kernel, n):
        self.kernel, self.n = kernel, n

    def _mark_shared(self):
        self.kernel._mark_shared()

    def current_choices(self, state):
        return self.kernel.current_choices(state)

    def materialize(self, state):
        return self.kernel.materialize(state)

    def init(self, trace, n_warmup=0, observed=None):
        return self.kernel.init(trace, n_warmup, observed)

    def step(self, key, state):
        def body(state, k):
            state = self.kernel.step(k, state)
            return state, state.accept_prob

        state, probs = jax.lax.scan(body, state, jax.random.split(key, self.n))
        return MCMCState(state.trace, jnp.mean(probs), state.aux)


def cycle(*kernels) -> Cycle:
    return Cycle(*kernels)


def mixture(kernels, weights=None) -> Mixture:
    return Mixture(kernels, weights)


def repeat(kernel, n: int) -> Repeat:
    return Repeat(kernel, n)
