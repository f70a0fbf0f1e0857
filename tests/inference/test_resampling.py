"""Every resampling scheme keeps expected copy counts at n * w, and keeps SMC's
marginal-likelihood estimate unbiased."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import ppl
from ppl.inference import resampling, smc

from _models import kalman_log_marginal, lgssm, lgssm_data

SCHEMES = sorted(resampling.SCHEMES)
LOG_W = jnp.log(jnp.array([0.02, 0.3, 0.05, 0.13, 0.25, 0.01, 0.2, 0.04]))


@pytest.mark.parametrize("scheme", SCHEMES)
def test_expected_counts_match_weights(scheme):
    n, reps = LOG_W.shape[0], 4000
    fn = resampling.get_scheme(scheme)
    idx = jax.jit(jax.vmap(lambda k: fn(k, LOG_W, n)))(jax.random.split(jax.random.key(0), reps))
    assert idx.shape == (reps, n) and jnp.issubdtype(idx.dtype, jnp.integer)
    counts = np.stack([np.bincount(row, minlength=n) for row in np.asarray(idx)])
    expected = n * np.asarray(jax.nn.softmax(LOG_W))
    se = counts.std(axis=0, ddof=1) / np.sqrt(reps) + 1e-3
    np.testing.assert_array_less(np.abs(counts.mean(axis=0) - expected), 5 * se)


def test_residual_keeps_the_deterministic_copies():
    n = LOG_W.shape[0]
    floor = np.floor(n * np.asarray(jax.nn.softmax(LOG_W))).astype(int)
    for seed in range(20):
        counts = np.bincount(
            np.asarray(resampling.residual(jax.random.key(seed), LOG_W)), minlength=n
        )
        assert np.all(counts >= floor)


def test_unknown_scheme_is_an_error():
    with pytest.raises(ppl.PPLError, match="unknown resampling scheme 'sytematic'"):
        resampling.get_scheme("sytematic")


@pytest.mark.parametrize("scheme", SCHEMES)
def test_smc_estimate_unbiased_with_every_scheme(scheme):
    T = 8
    ys = lgssm_data(T)
    exact = kalman_log_marginal(ys)
    obs = ppl.ChoiceMap.d({"y": ys})

    def one(k):
        p, _ = smc.particle_filter(
            k,
            lgssm(T),
            (0.0, None),
            obs,
            20,
            ess_threshold=1.0,
            scheme=scheme,
            return_traces=False,
            check=False,
        )
        return p.log_marginal_likelihood

    est = np.asarray(jax.jit(jax.vmap(one))(jax.random.split(jax.random.key(1), 300)), np.float64)
    r = np.exp(est - exact)
    assert abs(r.mean() - 1) < 5 * r.std(ddof=1) / np.sqrt(len(r))


from hypothesis import given, settings, strategies as st  # noqa: E402


@settings(max_examples=60)
@given(
    st.lists(st.floats(-30.0, 5.0), min_size=8, max_size=8),
    st.lists(st.booleans(), min_size=8, max_size=8),
    st.sampled_from(SCHEMES),
    st.integers(0, 2**31 - 1),
)
def test_indices_are_valid_and_skip_zero_weights(log_w, dead, scheme, seed):
    dead[0] = False  # at least one particle with positive weight
    lw = jnp.where(jnp.asarray(dead), -jnp.inf, jnp.asarray(log_w, jnp.float32))
    idx = np.asarray(_JITTED[scheme](jax.random.key(seed), lw))
    assert idx.shape == (8,)
    assert np.all((idx >= 0) & (idx < 8))
    assert not np.any(np.asarray(dead)[idx])  # a particle of weight zero is never an ancestor


_JITTED = {name: jax.jit(fn) for name, fn in resampling.SCHEMES.items()}
