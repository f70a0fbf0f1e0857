"""Exact enumeration against brute-force sums and the forward algorithm."""

import itertools

import jax.numpy as jnp
import numpy as np
import pytest
from scipy.stats import norm

import ppl
from ppl.inference import enumerate_posterior

from _models import forward_log_marginal, hmm, hmm_args, hmm_data

PC = np.array([0.2, 0.5, 0.3])


@ppl.gen
def mixed():
    a = ppl.flip(0.3) @ "a"
    c = ppl.categorical(jnp.asarray(PC)) @ "c"
    b = ppl.flip(jnp.where(a, 0.9, 0.2) * jnp.ones(2)) @ "b"
    return ppl.normal(c + a * 1.0 + jnp.sum(b) * 0.5, 1.0) @ "y"


def _brute_force(y):
    joint = {}
    for a, c, b0, b1 in itertools.product([0, 1], range(3), [0, 1], [0, 1]):
        pb = 0.9 if a else 0.2
        p = (0.3 if a else 0.7) * PC[c] * (pb if b0 else 1 - pb) * (pb if b1 else 1 - pb)
        joint[(a, c, b0, b1)] = p * norm.pdf(y, c + a + 0.5 * (b0 + b1), 1.0)
    return joint


def test_marginal_likelihood_and_posterior_match_brute_force():
    y = 1.3
    e = enumerate_posterior(mixed, {"y": y}, ())
    joint = _brute_force(y)
    z = sum(joint.values())
    assert e.choices["b"].shape == (24, 2)
    np.testing.assert_allclose(float(e.log_marginal_likelihood), np.log(z), rtol=1e-5)
    np.testing.assert_allclose(float(jnp.sum(e.probs)), 1.0, rtol=1e-5)
    p_a = sum(p for k, p in joint.items() if k[0]) / z
    np.testing.assert_allclose(e.marginal("a", [False, True]), [1 - p_a, p_a], rtol=1e-4)
    p_c = np.array([sum(p for k, p in joint.items() if k[1] == c) for c in range(3)]) / z
    np.testing.assert_allclose(e.marginal("c", [0, 1, 2]), p_c, rtol=1e-4)
    e_b = np.array([sum(p * k[2 + i] for k, p in joint.items()) for i in range(2)]) / z
    np.testing.assert_allclose(e.expectation(lambda c: c["b"] * 1.0), e_b, rtol=1e-4)


def test_hmm_enumeration_matches_forward_algorithm():
    T = 5
    ys = hmm_data(T)
    e = enumerate_posterior(hmm(T), {"y": ys}, hmm_args(T))
    assert e.choices["s"].shape == (3**T, T)
    np.testing.assert_allclose(
        float(e.log_marginal_likelihood), forward_log_marginal(ys), rtol=1e-5
    )


def test_continuous_latent_is_an_error():
    @ppl.gen
    def model():
        mu = ppl.normal(0.0, 1.0) @ "mu"
        return ppl.normal(mu, 1.0) @ "y"

    with pytest.raises(
        ppl.PPLError, match="'mu' is drawn from normal, whose support cannot be enumerated"
    ):
        enumerate_posterior(model, {"y": 0.5}, ())


def test_too_many_combinations_is_an_error():
    @ppl.gen
    def model():
        return ppl.flip(0.5 * jnp.ones(30)) @ "bits"

    with pytest.raises(
        ppl.PPLError, match="more than 1048576 joint combinations.*'bits' \\(2\\^30\\)"
    ):
        enumerate_posterior(model, {}, ())
