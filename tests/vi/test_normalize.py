"""normalize: SIR posterior families, against exact answers."""

import jax
import numpy as np
import pytest

import ppl
from ppl import gen, normal
from ppl.inference import vi


@gen
def model():
    z = normal(0.0, 1.0) @ "z"
    return normal(z, 1.0) @ "x"


@gen
def prior_guide():
    return normal(0.0, 1.0) @ "z"


OBS = ppl.ChoiceMap.d({"x": 1.0})
LOG_EVIDENCE = -0.5 * np.log(2 * np.pi * 2.0) - 0.25
N = 4000


def draws(fn, n=N, seed=0):
    return np.asarray(jax.jit(jax.vmap(fn))(jax.random.split(jax.random.key(seed), n)))


def test_elbo_with_the_sir_family_is_the_prior_iwelbo():
    sir = draws(lambda k: vi.elbo(model, ppl.normalize(model, OBS, n=5), OBS).estimate(k, (), ()))
    iw = draws(lambda k: vi.iwelbo(model, prior_guide, OBS, n=5).estimate(k, (), ()), seed=1)
    se = np.sqrt(sir.var() / N + iw.var() / N)
    assert abs(sir.mean() - iw.mean()) < 5 * se
    assert sir.mean() < LOG_EVIDENCE + 5 * np.sqrt(sir.var() / N)


def test_sir_samples_approach_the_posterior():
    fam = ppl.normalize(model, OBS, n=64)
    z = draws(lambda k: fam.simulate(k, ()).choices["z"])
    # exact posterior N(0.5, 0.5); SIR with 64 particles is biased by O(1/64)
    assert abs(z.mean() - 0.5) < 5 * z.std() / np.sqrt(N) + 0.02
    assert abs(z.var() - 0.5) < 0.05


def test_normalize_density_is_refused_with_a_reason():
    fam = ppl.normalize(model, OBS, n=4)
    with pytest.raises(ppl.PPLError, match="1 / p"):
        vi.elbo(fam, prior_guide).estimate(jax.random.key(0), (), ())
    with pytest.raises(ppl.PPLError, match="needs observations"):
        ppl.normalize(model, {}, n=4)
