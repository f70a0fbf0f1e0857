"""NUTS on the continuous choices of a selection, by wrapping numpyro's sampler.

The potential is built from ``assess`` in unconstrained coordinates (numpyro's
``biject_to`` on each choice's support), and numpyro's functional ``hmc``
interface runs the trajectories, step-size and mass-matrix adaptation. The
potential is generated from the current trace (``potential_fn_gen``), so NUTS
composes with kernels that move other choices.
"""

from __future__ import annotations

from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
from numpyro.infer.hmc import hmc as _numpyro_hmc

from ppl._gfi import as_selection
from ppl.inference._sites import Unconstrain
from ppl.inference.mcmc import Kernel, MCMCState


class NUTSAux(eqx.Module):
    hmc_state: Any


def _potential_gen(unc: Unconstrain):
    def gen(trace):
        def potential(z):
            x, logdet = unc.to_constrained(z)
            logp, _ = trace.gen_fn.assess(trace.choices | x, trace.args)
            return -(logp + logdet)

        return potential

    return gen


def _raw_key(key):
    return jax.random.key_data(key) if jnp.issubdtype(key.dtype, jax.dtypes.prng_key) else key


class NUTS(Kernel):
    """The No-U-Turn sampler (numpyro's) on the continuous choices of ``selection``.

    Warm-up adapts the step size (to ``target_accept``) and a diagonal (or
    ``dense_mass``) mass matrix during the ``n_warmup`` steps given to ``init``.
    One NUTS kernel serves one model at a time.
    """

    def __init__(self, selection=None, target_accept=0.8, max_tree_depth=10, dense_mass=False, step_size=1.0,
                 adapt_step_size=True, adapt_mass_matrix=True, find_heuristic_step_size=False):
        self.selection = None if selection is None else as_selection(selection)
        self.options = dict(
            step_size=step_size,
            adapt_step_size=adapt_step_size,
            adapt_mass_matrix=adapt_mass_matrix,
            dense_mass=dense_mass,
            target_accept_prob=target_accept,
            max_tree_depth=max_tree_depth,
            find_heuristic_step_size=find_heuristic_step_size,
        )
        self._sample = None

    def _setup(self, trace):
        unc = Unconstrain(trace, self.selection, "nuts")
        init_kernel, sample_kernel = _numpyro_hmc(potential_fn_gen=_potential_gen(unc), algo="NUTS")
        return unc, init_kernel, sample_kernel

    def init(self, trace, n_warmup=0, observed=None, key=None):
        self._resolve(trace, observed)
        unc, init_kernel, sample_kernel = self._setup(trace)
        self._unc, self._sample = unc, sample_kernel
        key = jax.random.key(0) if key is None else key
        z = unc.to_unconstrained(trace.choices)
        hmc_state = init_kernel(z, n_warmup, model_args=(trace,), rng_key=_raw_key(key), **self.options)
        return MCMCState(trace, jnp.ones((), jnp.result_type(float)), NUTSAux(hmc_state))

    def step(self, key, state):
        if self._sample is None:
            raise RuntimeError("call kernel.init(trace, n_warmup) before kernel.step for NUTS.")
        unc, trace, hs = self._unc, state.trace, state.aux.hmc_state
        shared = getattr(self, "_shared", False)
        if shared:
            # Other kernels move this trace: recompute the position, potential
            # and gradient cached in numpyro's state before moving.
            z = unc.to_unconstrained(trace.choices)
            pe, grad = jax.value_and_grad(_potential_gen(unc)(trace))(z)
            hs = hs._replace(z=z, potential_energy=pe, z_grad=grad)
        hs = self._sample(hs._replace(rng_key=_raw_key(key)), model_args=(trace,))
        state = MCMCState(trace, hs.accept_prob, NUTSAux(hs))
        # Alone, NUTS keeps its position in numpyro's state and leaves the trace
        # stale (the non-selected choices, which the potential reads, are
        # unchanged); materialize() brings it up to date when it is needed.
        return self.materialize(state) if shared else state

    def current_choices(self, state):
        x, _ = self._unc.to_constrained(state.aux.hmc_state.z)
        return state.trace.choices | x

    def materialize(self, state):
        x, _ = self._unc.to_constrained(state.aux.hmc_state.z)
        new, _, _ = state.trace.gen_fn.update(jax.random.key(0), state.trace, x)
        return MCMCState(new, state.accept_prob, state.aux)


def nuts(selection=None, **options) -> NUTS:
    return NUTS(selection, **options)
