"""NUTS on the continuous choices of a selection, by wrapping numpyro's sampler.

The potential is the model's log density in unconstrained coordinates built
in program order (``ppl.inference.unconstrained``: a support that depends
on other choices follows their values at the point evaluated), and numpyro's
functional ``hmc`` interface runs the trajectories, step-size and mass-matrix
adaptation. The potential is generated from the current trace
(``potential_fn_gen``), so NUTS composes with kernels that move other choices.

numpyro's functional sampler keeps its settings (warm-up length, tree depth,
adaptation schedule) in the closure that its ``init_kernel`` fills in, so every
step builds that closure afresh from the settings carried in the state: the
kernel object itself holds nothing but its options.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
from numpyro.infer.hmc import hmc as _numpyro_hmc
from numpyro.infer.util import ParamInfo

from ppl._gfi import as_selection
from ppl.choices import Selection
from ppl.inference.kernel import Kernel, MCMCState, one, resolve_selection
from ppl.inference.unconstrained import constrain, unconstrain


class NUTSAux(eqx.Module):
    """The part of a NUTS state that is its own.

    Attributes:
        hmc_state: numpyro's ``HMCState`` (position, gradient, adaptation).
        selection: the choices moved, resolved at ``init`` (static).
        n_warmup: the number of adaptation steps (static).
        shared: whether other kernels move the trace too (static); if not,
            the position lives in ``hmc_state`` and the trace is brought up to
            date only by ``NUTS.materialize``.
    """

    hmc_state: Any
    selection: Selection = eqx.field(static=True)
    n_warmup: int = eqx.field(static=True)
    shared: bool = eqx.field(static=True)


def _potential_gen(selection):
    def gen(trace):
        def potential(z):
            out = constrain(trace, selection, z, "nuts")
            return -(out.log_density + out.log_det)

        return potential

    return gen


def _raw_key(key):
    return jax.random.key_data(key) if jnp.issubdtype(key.dtype, jax.dtypes.prng_key) else key


class NUTS(Kernel):
    """The No-U-Turn sampler (numpyro's) on the continuous choices of ``selection``;
    ``nuts`` builds one and says what a step does, costs and refuses.

    Warm-up adapts the step size (to ``target_accept``) and a diagonal (or
    ``dense_mass``) mass matrix during the ``n_warmup`` steps given to
    ``init``. The kernel holds only its options (a read-only mapping,
    ``kernel.options``, in numpyro's names): one NUTS object serves any number
    of models and chains at once.

    Args:
        selection: the choices to move, or ``None`` (every unobserved choice).
        target_accept: the acceptance probability step-size adaptation aims at.
        max_tree_depth: the largest trajectory doubling depth (at most
            ``2**max_tree_depth - 1`` leapfrog steps per step).
        dense_mass: adapt a dense mass matrix instead of a diagonal one.
        step_size: the initial step size.
        adapt_step_size: adapt the step size during warm-up.
        adapt_mass_matrix: adapt the mass matrix during warm-up.
        find_heuristic_step_size: search for a starting step size at ``init``.

    Examples:
        >>> kernel = ppl.inference.NUTS(ppl.select("mu"), target_accept=0.9)
        >>> kernel == ppl.inference.nuts(ppl.select("mu"), target_accept=0.9)
        True
        >>> kernel.options["target_accept_prob"], kernel.options["max_tree_depth"]
        (0.9, 10)
    """

    selection: Selection | None
    options: Mapping[str, Any]

    def __init__(
        self,
        selection=None,
        target_accept=0.8,
        max_tree_depth=10,
        dense_mass=False,
        step_size=1.0,
        adapt_step_size=True,
        adapt_mass_matrix=True,
        find_heuristic_step_size=False,
    ):
        options = dict(
            step_size=step_size,
            adapt_step_size=adapt_step_size,
            adapt_mass_matrix=adapt_mass_matrix,
            dense_mass=dense_mass,
            target_accept_prob=target_accept,
            max_tree_depth=max_tree_depth,
            find_heuristic_step_size=find_heuristic_step_size,
        )
        super().__init__(
            selection=None if selection is None else as_selection(selection),
            options=MappingProxyType(options),  # read-only: the kernel is a value
        )

    def _sampler(self, selection, n_warmup, trace, init_params, rng_key):
        """``(hmc_state from init_kernel, sample_kernel)`` of a fresh numpyro closure."""
        init_kernel, sample_kernel = _numpyro_hmc(
            potential_fn_gen=_potential_gen(selection), algo="NUTS"
        )
        hs = init_kernel(
            init_params, n_warmup, model_args=(trace,), rng_key=rng_key, **self.options
        )
        return hs, sample_kernel

    def init(self, trace, n_warmup=0, observed=None, *, shared=False, key=None):
        """The initial state at ``trace`` (see ``Kernel.init``).

        Args:
            trace: the starting trace.
            n_warmup: adaptation steps to come (step size and mass matrix).
            observed: the observed addresses, for a kernel built without a selection.
            shared: whether other kernels move the same trace (compositions pass ``True``).
            key: the key of numpyro's initial state (default ``jax.random.key(0)``).

        Returns:
            An ``ppl.inference.kernel.MCMCState`` whose ``aux`` is a ``NUTSAux``.

        Raises:
            PPLError: when the selection is empty, observed, holds a discrete
                choice, or a support cannot be followed in program order.
        """
        selection = resolve_selection("nuts", self.selection, trace, observed)
        key = jax.random.key(0) if key is None else key
        z = unconstrain(trace, selection, "nuts")
        hs, _ = self._sampler(selection, n_warmup, trace, z, _raw_key(key))
        return MCMCState(trace, one(), NUTSAux(hs, selection, n_warmup, shared))

    def step(self, key, state):
        aux, trace = state.aux, state.trace
        hs = aux.hmc_state
        if aux.shared:
            # Other kernels move this trace: recompute the position, potential
            # and gradient cached in numpyro's state before moving.
            z = unconstrain(trace, aux.selection, "nuts")
            pe, grad = jax.value_and_grad(_potential_gen(aux.selection)(trace))(z)
            hs = hs._replace(z=z, potential_energy=pe, z_grad=grad)
        # The init call only fills in the closure's settings; its state is not used.
        _, sample_kernel = self._sampler(
            aux.selection,
            aux.n_warmup,
            trace,
            ParamInfo(hs.z, hs.potential_energy, hs.z_grad),
            hs.rng_key,
        )
        hs = sample_kernel(hs._replace(rng_key=_raw_key(key)), model_args=(trace,))
        state = MCMCState(
            trace, hs.accept_prob, NUTSAux(hs, aux.selection, aux.n_warmup, aux.shared)
        )
        # Alone, NUTS keeps its position in numpyro's state and leaves the trace
        # stale (the non-selected choices, which the potential reads, are
        # unchanged); materialize() brings it up to date when it is needed.
        return self.materialize(state) if aux.shared else state

    def stats(self, state):
        """``diverging``, ``tree_depth``, ``num_steps`` (leapfrog steps), ``step_size``
        and ``energy`` (the Hamiltonian) of the last step (see ``Kernel.stats``)."""
        hs = state.aux.hmc_state
        n = jnp.asarray(hs.num_steps)
        # A trajectory of depth d has at most 2**d - 1 leapfrog steps, and more than
        # 2**(d - 1) - 1 of them (the last doubling stops early on a U-turn).
        depth = jnp.ceil(jnp.log2(n.astype(jnp.result_type(float)) + 1.0)).astype(jnp.int32)
        return dict(
            diverging=jnp.asarray(hs.diverging),
            tree_depth=depth,
            num_steps=n,
            step_size=jnp.asarray(hs.adapt_state.step_size),
            energy=jnp.asarray(hs.energy),
        )

    def current_choices(self, state):
        x = constrain(state.trace, state.aux.selection, state.aux.hmc_state.z, "nuts").choices
        return state.trace.choices | x

    def materialize(self, state):
        x = constrain(state.trace, state.aux.selection, state.aux.hmc_state.z, "nuts").choices
        new, _, _ = state.trace.gen_fn.update(jax.random.key(0), state.trace, x)
        return MCMCState(new, state.accept_prob, state.aux)


def nuts(selection=None, **options) -> NUTS:
    """The No-U-Turn sampler on the continuous choices of ``selection``.

    Hamiltonian Monte Carlo that chooses its trajectory length: each step
    doubles a leapfrog trajectory forwards or backwards in time until it makes
    a U-turn (or reaches ``max_tree_depth``) and draws the next point from it,
    with numpyro's implementation, leaving the posterior of the selected
    choices given the others invariant. It moves in unconstrained coordinates
    built in program order (``ppl.inference.unconstrained``). During the
    ``n_warmup`` steps given to ``init`` it adapts the step size (dual
    averaging, to ``target_accept``) and a diagonal or dense mass matrix
    (windowed, as Stan). A step costs up to ``2**max_tree_depth - 1``
    gradients of the model's log density. Alone, the kernel keeps the
    position in numpyro's state and writes the trace only when it is read
    (``ppl.inference.Kernel.materialize``); in a composition it re-reads
    the trace every step. The choices must be continuous: sum discrete ones
    out with ``ppl.sum_out`` or move them with ``ppl.inference.mh`` in a
    ``ppl.inference.cycle``. Its statistics (``result.stats``) are
    ``diverging``, ``tree_depth``, ``num_steps``, ``step_size`` and ``energy``.

    Args:
        selection: the choices to move; ``None`` moves every unobserved choice
            (``init`` then needs ``observed=``, which
            ``ppl.inference.chains.run`` passes).
        **options: ``target_accept`` (0.8), ``max_tree_depth`` (10),
            ``dense_mass`` (False), ``step_size`` (1.0), ``adapt_step_size``,
            ``adapt_mass_matrix`` (True), ``find_heuristic_step_size`` (False),
            as in numpyro (see ``NUTS``).

    Returns:
        A ``NUTS`` kernel.

    Raises:
        TypeError: for an option not listed above.
        PPLError: at ``init``, when the selection matches no choice, includes an
            observed or discrete choice, the model has a subsampled
            ``ppl.vmap(..., subsample_of=N)``, or a support cannot be followed in
            program order (see ``ppl.inference.unconstrained.constrain``).

    Examples:
        >>> @ppl.gen
        ... def model():
        ...     mu = ppl.normal(0.0, 1.0) @ "mu"
        ...     return ppl.normal(mu, 1.0) @ "y"
        >>> result = ppl.inference.run_mcmc(jax.random.key(0), ppl.inference.nuts(), model, (),
        ...                                 {"y": 1.0}, n_samples=200, n_warmup=200,
        ...                                 n_chains=1, progress=False)
        >>> int(result.divergences.sum()), bool(abs(result.summary()["mu"]["mean"] - 0.5) < 0.2)
        (0, True)
    """
    return NUTS(selection, **options)
