"""Gradient kernels: MALA and HMC on the continuous choices of a selection.

They move in unconstrained coordinates built in program order
(``ppl.inference.unconstrained``), so a support that depends on other
choices follows their current values. The step size is adapted by numpyro's
dual averaging during the ``n_warmup`` steps given to ``init``. Both are also
importable from ``ppl.inference.mcmc``.
"""

from __future__ import annotations

from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
from numpyro.infer.hmc_util import dual_averaging

from ppl._gfi import as_selection
from ppl.choices import Selection
from ppl.inference.kernel import Kernel, MCMCState, accept, one, resolve_selection, select_where
from ppl.inference.unconstrained import constrain, unconstrain


class StepSize(eqx.Module):
    """A step size, adapted by dual averaging during the first ``n_warmup`` steps.

    Attributes:
        step_size: the current step size.
        da: numpyro's dual-averaging state.
        i: the number of steps taken.
        n_warmup: the number of adaptation steps (static).
    """

    step_size: jax.Array
    da: Any
    i: jax.Array
    n_warmup: int = eqx.field(static=True)


class GradientAux(eqx.Module):
    """The part of a MALA/HMC state that is theirs.

    Attributes:
        step: the step size and its adaptation.
        z: the current position in unconstrained coordinates.
        log_density: the log density of ``z`` (with the Jacobian term).
        grad: its gradient.
        diverging: whether the last proposal's log acceptance ratio was below
            ``-1000`` or NaN (its energy error blew up, as numpyro counts divergences).
        selection: the choices moved, resolved at ``init`` (static).
        shared: whether other kernels move the trace too (static); if so,
            ``z``, ``log_density`` and ``grad`` are recomputed from the trace
            at the start of every step.
    """

    step: StepSize
    z: Any
    log_density: jax.Array
    grad: Any
    diverging: jax.Array
    selection: Selection = eqx.field(static=True)
    shared: bool = eqx.field(static=True)


# numpyro's threshold: an energy error above this makes a transition divergent
_DIVERGENCE = 1000.0


def _init_step_size(step_size, n_warmup):
    da_init, _ = dual_averaging()
    eps = jnp.asarray(step_size, jnp.result_type(float))
    # numpyro leaves prox_center unannotated, so its default 0.0 makes the checker expect a
    # float; numpyro only stores it and does arithmetic with it, so an array is what it wants.
    da = da_init(jnp.log(10.0 * eps))  # pyright: ignore[reportArgumentType]
    return StepSize(eps, da, jnp.zeros((), jnp.int32), n_warmup)


def _adapt(ss: StepSize, accept_prob, target):
    if ss.n_warmup == 0:
        return ss
    _, da_update = dual_averaging()
    warming = ss.i < ss.n_warmup
    da = da_update(target - accept_prob, ss.da)
    da = select_where(warming, da, ss.da)
    last = ss.i == ss.n_warmup - 1
    eps = jnp.where(warming, jnp.exp(jnp.where(last, da[1], da[0])), ss.step_size)
    return StepSize(eps, da, ss.i + 1, ss.n_warmup)


def _tmap(f, *trees):
    return jax.tree.map(f, *trees)


def _sq(tree):
    return sum(jnp.sum(x * x) for x in jax.tree.leaves(tree))


def _random_like(key, tree):
    leaves, treedef = jax.tree.flatten(tree)
    keys = jax.random.split(key, len(leaves))
    noise = [jax.random.normal(k, jnp.shape(x), jnp.result_type(x)) for k, x in zip(keys, leaves)]
    return jax.tree.unflatten(treedef, noise)


class _Gradient(Kernel):
    name = "gradient kernel"
    selection: Selection | None
    step_size: float
    target_accept: float = 0.8

    def __init__(self, selection=None, step_size=0.1, target_accept=None, **settings):
        super().__init__(
            selection=None if selection is None else as_selection(selection),
            step_size=step_size,
            target_accept=type(self).target_accept if target_accept is None else target_accept,
            **settings,
        )

    def init(self, trace, n_warmup=0, observed=None, *, shared=False):
        selection = resolve_selection(self.name, self.selection, trace, observed)
        z = unconstrain(trace, selection, self.name)
        (logp, _), g = self._grad_fn(trace, selection)(z)
        step = _init_step_size(self.step_size, n_warmup)
        no = jnp.zeros((), bool)
        return MCMCState(trace, one(), GradientAux(step, z, logp, g, no, selection, shared))

    def _grad_fn(self, trace, selection):
        """``z -> ((log density of z, constrained choices), gradient)``."""

        def log_density(z):
            out = constrain(trace, selection, z, self.name)
            return out.log_density + out.log_det, out.choices

        return jax.value_and_grad(log_density, has_aux=True)

    def _propose(self, key, grad_fn, z, logp, g, eps) -> tuple:
        """``(z1, logp1, g1, x1, log_alpha)``: a move from ``z`` and its log acceptance ratio."""
        raise NotImplementedError

    def step(self, key, state):
        trace, aux = state.trace, state.aux
        grad_fn = self._grad_fn(trace, aux.selection)
        z, logp, g = aux.z, aux.log_density, aux.grad
        if aux.shared:  # another kernel may have moved the trace since this kernel's last step
            z = unconstrain(trace, aux.selection, self.name)
            (logp, _), g = grad_fn(z)
        k1, k2 = jax.random.split(key)
        z1, logp1, g1, x1, log_alpha = self._propose(k1, grad_fn, z, logp, g, aux.step.step_size)
        accepted, prob = accept(k2, log_alpha)
        proposed, _, _ = trace.gen_fn.update(jax.random.key(0), trace, x1)
        z, logp, g = select_where(accepted, (z1, logp1, g1), (z, logp, g))
        diverging = jnp.isnan(log_alpha) | (log_alpha < -_DIVERGENCE)
        step = _adapt(aux.step, prob, self.target_accept)
        new_aux = GradientAux(step, z, logp, g, diverging, aux.selection, aux.shared)
        return MCMCState(select_where(accepted, proposed, trace), prob, new_aux)

    def stats(self, state):
        """``diverging`` and ``step_size`` of the last step (see ``Kernel.stats``)."""
        return dict(diverging=state.aux.diverging, step_size=state.aux.step.step_size)


class MALA(_Gradient):
    """Metropolis-adjusted Langevin on the continuous choices of ``selection``;
    ``mala`` builds one and says what a step does, costs and refuses.

    Args:
        selection: the choices to move, or ``None`` (every unobserved choice).
        step_size: the initial step size ``eps``, adapted during warm-up.
        target_accept: the acceptance probability warm-up aims at (``None``:
            0.574).
        **settings: further settings of a subclass (``HMC``'s
            ``n_steps``); none for MALA.

    The settings are stored as attributes of the same names.

    Examples:
        >>> kernel = ppl.inference.MALA(ppl.select("mu"), step_size=0.2)
        >>> kernel == ppl.inference.mala(ppl.select("mu"), 0.2), kernel.target_accept
        (True, 0.574)
    """

    name = "mala"
    target_accept = 0.574

    def _propose(self, key, grad_fn, z, logp, g, eps):
        noise = _random_like(key, z)
        z1 = _tmap(lambda a, b, n: a + eps * b + jnp.sqrt(2 * eps) * n, z, g, noise)
        (logp1, x1), g1 = grad_fn(z1)

        def log_q(to, frm, g_frm):  # log q(to | frm), up to a constant that cancels
            return -_sq(_tmap(lambda t, f, gf: t - f - eps * gf, to, frm, g_frm)) / (4 * eps)

        return z1, logp1, g1, x1, logp1 - logp + log_q(z, z1, g1) - log_q(z1, z, g)


class HMC(_Gradient):
    """Hamiltonian Monte Carlo (identity mass, ``n_steps`` leapfrog steps) on the
    continuous choices of ``selection``; ``hmc`` builds one and says what a
    step does, costs and refuses.

    Args:
        selection: the choices to move, or ``None`` (every unobserved choice).
        step_size: the initial leapfrog step size, adapted during warm-up.
        n_steps: leapfrog steps per proposal.
        target_accept: the acceptance probability warm-up aims at (``None``: 0.8).

    The settings are stored as attributes of the same names.

    Examples:
        >>> kernel = ppl.inference.HMC(ppl.select("mu"), step_size=0.2, n_steps=8)
        >>> kernel == ppl.inference.hmc(ppl.select("mu"), 0.2, 8), kernel.target_accept
        (True, 0.8)
    """

    name = "hmc"
    target_accept = 0.8
    n_steps: int

    def __init__(self, selection=None, step_size=0.1, n_steps=10, target_accept=None):
        super().__init__(selection, step_size, target_accept, n_steps=n_steps)

    def _propose(self, key, grad_fn, z, logp, g, eps):
        p0 = _random_like(key, z)

        def leapfrog(carry, _):
            z, p, g, _, _ = carry
            p = _tmap(lambda p, g: p + 0.5 * eps * g, p, g)
            z = _tmap(lambda z, p: z + eps * p, z, p)
            (lp, x), g = grad_fn(z)
            p = _tmap(lambda p, g: p + 0.5 * eps * g, p, g)
            return (z, p, g, lp, x), None

        # The constrained values ride along (their initial value is a placeholder of the
        # right shape).
        x0 = jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), jax.eval_shape(grad_fn, z)[0][1])
        (z1, p1, g1, logp1, x1), _ = jax.lax.scan(
            leapfrog, (z, p0, g, logp, x0), length=self.n_steps
        )
        return z1, logp1, g1, x1, (logp1 - 0.5 * _sq(p1)) - (logp - 0.5 * _sq(p0))


def mala(selection=None, step_size=0.1, target_accept=None) -> MALA:
    """Metropolis-adjusted Langevin dynamics on the continuous choices of ``selection``.

    Each step proposes ``z' = z + eps * grad + sqrt(2 eps) * noise`` in
    unconstrained coordinates (each choice mapped to the reals by numpyro's
    ``biject_to`` of its support, built in program order, with the log-Jacobian
    in the density: ``ppl.inference.unconstrained``) and accepts with the
    Metropolis-Hastings ratio, so it samples the exact posterior of the
    selected choices given the others. During the ``n_warmup`` steps given
    to ``init``, dual averaging adapts ``eps`` to ``target_accept``. A step
    costs one gradient of the model's log density and one ``update`` of the
    trace. The choices must be continuous (a ``ppl.improper_uniform`` one is
    fine); move discrete ones with ``ppl.inference.mh`` in a
    ``ppl.inference.cycle``. A proposal whose log acceptance ratio is
    below ``-1000`` or NaN counts as divergent (``stats(state)["diverging"]``).

    Args:
        selection: the choices to move (a ``ppl.Selection``); ``None``
            moves every unobserved choice (``init`` then needs ``observed=``,
            which ``ppl.inference.chains.run`` passes).
        step_size: the initial step size ``eps``; adapted during warm-up.
        target_accept: the acceptance probability warm-up aims at (default 0.574).

    Returns:
        A ``MALA`` kernel.

    Raises:
        PPLError: at ``init``, if the selection matches no choice, includes an
            observation or a discrete choice, the model has a subsampled
            ``ppl.vmap(..., subsample_of=N)``, a selected choice is made in a
            ``ppl.switch``/``ppl.cond``/``ppl.mix`` branch picked at run time,
            or a support cannot be followed (see
            ``ppl.inference.unconstrained.constrain``).

    Examples:
        >>> @ppl.gen
        ... def model():
        ...     mu = ppl.normal(0.0, 1.0) @ "mu"
        ...     return ppl.normal(mu, 1.0) @ "y"
        >>> kernel = ppl.inference.mala(ppl.select("mu"), step_size=0.5)
        >>> result = ppl.inference.run_mcmc(jax.random.key(0), kernel, model, (), {"y": 1.0},
        ...                                 n_samples=500, n_warmup=200, n_chains=1,
        ...                                 progress=False)
        >>> sorted(result.stats), bool(abs(result.summary()["mu"]["mean"] - 0.5) < 0.2)
        (['diverging', 'step_size'], True)
    """
    return MALA(selection, step_size, target_accept)


def hmc(selection=None, step_size=0.1, n_steps=10, target_accept=None) -> HMC:
    """Hamiltonian Monte Carlo on the continuous choices of ``selection``.

    Each step draws a standard-normal momentum, runs ``n_steps`` leapfrog
    steps (identity mass matrix) in unconstrained coordinates, as for
    ``mala``, and accepts the end point with the Metropolis-Hastings
    ratio of the Hamiltonians, so it samples the exact posterior of the
    selected choices given the others. During the ``n_warmup`` steps given to
    ``init``, dual averaging adapts the step size to ``target_accept``; the
    trajectory length ``n_steps * step_size`` is not adapted (``nuts``
    chooses it, and adapts a mass matrix too). A step costs ``n_steps``
    gradients of the model's log density and one ``update`` of the trace.
    The choices must be continuous; a proposal whose log acceptance ratio is
    below ``-1000`` or NaN counts as divergent.

    Args:
        selection: the choices to move; ``None`` moves every unobserved choice
            (``init`` then needs ``observed=``).
        step_size: the initial leapfrog step size.
        n_steps: leapfrog steps per proposal.
        target_accept: the acceptance probability warm-up aims at (default 0.8).

    Returns:
        An ``HMC`` kernel.

    Raises:
        PPLError: at ``init``, as for ``mala``.

    Examples:
        >>> @ppl.gen
        ... def model():
        ...     a = ppl.normal(0.0, 1.0) @ "a"
        ...     b = ppl.lognormal(0.0, 0.5) @ "b"
        ...     return ppl.normal(a, b) @ "y"
        >>> kernel = ppl.inference.hmc(ppl.select("a", "b"), step_size=0.2, n_steps=8)
        >>> result = ppl.inference.run_mcmc(jax.random.key(0), kernel, model, (), {"y": 1.0},
        ...                                 n_samples=200, n_warmup=100, n_chains=1,
        ...                                 progress=False)
        >>> result.samples["b"].shape, bool((result.samples["b"] > 0).all())  # b stays positive
        ((1, 200), True)
    """
    return HMC(selection, step_size, n_steps, target_accept)
