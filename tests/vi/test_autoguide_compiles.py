"""Every automatic guide compiles fit's chunk once, and a second fit with the same
objects compiles nothing; run_mcmc compiles its two functions once per setting."""

import importlib
import warnings

import jax
import jax.numpy as jnp
import optax
import pytest

import ppl
from ppl.inference import chains, mcmc, vi
from ppl.inference.vi import autoguide_flow

from test_fit_compile import compiles

_CHUNK = f"jit({importlib.import_module('ppl.inference.vi.fit_loop')._run_chunk.__name__})"

SIGMA = jnp.array([15.0, 10.0, 16.0, 11.0])
OBS = {"y": jnp.array([28.0, 8.0, -3.0, 7.0])}


@ppl.gen
def schools(sigma):
    mu = ppl.normal(0.0, 5.0) @ "mu"
    tau = ppl.half_normal(5.0) @ "tau"
    eta = ppl.normal(jnp.zeros(sigma.shape), 1.0) @ "eta"
    return ppl.normal(mu + tau * eta, sigma) @ "y"


GUIDES = {
    "auto_normal": lambda: vi.auto_normal(schools, OBS, (SIGMA,)),
    "auto_multivariate_normal": lambda: vi.auto_multivariate_normal(schools, OBS, (SIGMA,)),
    "auto_low_rank_normal": lambda: vi.auto_low_rank_normal(schools, OBS, (SIGMA,), rank=2),
    "auto_delta": lambda: vi.auto_delta(schools, OBS, (SIGMA,)),
    "auto_flow": lambda: autoguide_flow.auto_flow(schools, OBS, (SIGMA,), key=jax.random.key(3)),
}


@pytest.mark.parametrize("name", sorted(GUIDES))
def test_fit_with_each_guide_compiles_its_chunk_once(name):
    guide, guide_args = GUIDES[name]()
    objective = vi.elbo(schools, guide, OBS)
    optimizer = optax.adam(0.01)  # fit's compiled chunk is keyed by the optimizer object

    def run():  # 30 steps in chunks of 10
        return vi.fit(
            objective,
            jax.random.key(0),
            (SIGMA,),
            guide_args,
            optimizer=optimizer,
            steps=30,
            chunk=10,
            progress=False,
        )

    with compiles() as first:
        a = run()
    assert first[_CHUNK] == 1, dict(first)
    with compiles() as second:
        b = run()
    assert sum(second.values()) == 0, dict(second)
    assert bool(jnp.all(a.history == b.history))


def test_run_mcmc_compiles_once_per_setting():
    def run(seed):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # short chains: R-hat warnings are expected
            return chains.run(
                jax.random.key(seed),
                mcmc.hmc(n_steps=3),  # a fresh kernel each run, equal to the last
                schools,
                (SIGMA,),
                OBS,
                n_samples=30,
                n_warmup=30,
                n_chains=2,
                progress=True,
            )

    with compiles() as first:
        run(0)
    # the chains' start and their chunk of steps, once each (besides key splitting)
    assert first["jit(start_chains)"] == 1 and first["jit(advance_chains)"] == 1, dict(first)
    with compiles() as second:
        run(1)  # a new key and a new kernel with the same settings: nothing to compile
    assert sum(second.values()) == 0, dict(second)
