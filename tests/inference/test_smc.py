"""SMC against exact marginal likelihoods: Kalman filter, forward algorithm,
conjugate data annealing; and its errors."""

import functools
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import numpyro.distributions as nd
import pytest

import ppl
from ppl.inference import mcmc, smc

from _models import (
    A,
    MU0,
    NN_DATA,
    Q,
    R,
    S0,
    SY,
    forward_log_marginal,
    hmm,
    hmm_args,
    hmm_data,
    kalman_log_marginal,
    lgssm,
    lgssm_data,
    normal_normal_log_marginal,
)


def _unbiased(est, exact, k=5.0):
    r = np.exp(np.asarray(est, np.float64) - exact)
    assert abs(r.mean() - 1) < k * r.std(ddof=1) / np.sqrt(len(r)) + 1e-3, (r.mean(), r.std())


@functools.lru_cache(maxsize=None)
def _compiled_filter(model, n, proposal):
    # One compiled filter per (model, n, proposal), shared by the tests below.
    def one(k, args, obs):
        p, _ = smc.particle_filter(
            k, model, args, obs, n, proposal=proposal, return_traces=False, check=False
        )
        return p.log_marginal_likelihood

    return jax.jit(jax.vmap(one, in_axes=(0, None, None)))


def _filter_estimates(model, args, obs, n, reps, seed, proposal=None):
    keys = jax.random.split(jax.random.key(seed), reps)
    return np.asarray(_compiled_filter(model, n, proposal)(keys, args, obs), np.float64)


T = 15
LGSSM = lgssm(T)
YS = lgssm_data(T)
OBS = ppl.ChoiceMap.d({"y": YS})
EXACT = kalman_log_marginal(YS)


def test_particle_filter_unbiased_and_consistent_against_kalman():
    small = _filter_estimates(LGSSM, (0.0, None), OBS, 30, 200, 0)
    large = _filter_estimates(LGSSM, (0.0, None), OBS, 1000, 30, 1)
    _unbiased(small, EXACT)
    _unbiased(large, EXACT)
    assert np.mean((large - EXACT) ** 2) < 0.25 * np.mean((small - EXACT) ** 2)


@ppl.gen
def optimal_proposal(z_prev, _x, obs):
    # The locally optimal proposal p(z_t | z_{t-1}, y_t) of the linear-Gaussian model.
    var = 1 / (1 / Q**2 + 1 / R**2)
    return ppl.normal(var * (A * z_prev / Q**2 + obs["y"] / R**2), jnp.sqrt(var)) @ "z"


def test_custom_proposal_is_unbiased_and_better():
    est = _filter_estimates(LGSSM, (0.0, None), OBS, 30, 200, 2, proposal=optimal_proposal)
    prior = _filter_estimates(LGSSM, (0.0, None), OBS, 30, 200, 2)
    _unbiased(est, EXACT)
    assert est.var() < 0.5 * prior.var()


def test_particle_filter_traces_follow_ancestry():
    p, info = smc.particle_filter(jax.random.key(3), lgssm(T), (0.0, None), OBS, 64)
    assert p.traces.choices["z"].shape == (64, T)
    np.testing.assert_allclose(p.traces.choices["y"], np.broadcast_to(YS, (64, T)))
    assert info.ess.shape == (T,) and info.resampled.dtype == bool and bool(info.resampled.any())
    # Full-trace scores equal the model's density of each lineage's choices.
    logp = jax.vmap(lambda c: lgssm(T).assess(c, (0.0, None))[0])(p.traces.choices)
    np.testing.assert_allclose(p.traces.score, logp, rtol=1e-5)
    assert abs(float(info.log_marginal_likelihood[-1]) - float(p.log_marginal_likelihood)) < 1e-4


def test_particle_filter_with_a_progress_bar_gives_the_same_run():
    args = (jax.random.key(3), lgssm(T), (0.0, None), OBS, 64)
    (quiet, quiet_info), (shown, shown_info) = (
        smc.particle_filter(*args, progress=p) for p in (False, True)
    )
    np.testing.assert_allclose(quiet.log_weights, shown.log_weights, rtol=1e-6)
    np.testing.assert_allclose(quiet.traces.choices["z"], shown.traces.choices["z"], rtol=1e-6)
    np.testing.assert_allclose(
        quiet_info.log_marginal_likelihood, shown_info.log_marginal_likelihood, rtol=1e-6
    )


def test_discrete_hmm_against_forward_algorithm():
    TH = 12
    ys = hmm_data(TH)
    exact = forward_log_marginal(ys)
    est = _filter_estimates(hmm(TH), hmm_args(TH), ppl.ChoiceMap.d({"y": ys}), 100, 100, 4)
    _unbiased(est, exact)
    assert abs(np.mean(est) - exact) < 0.5


masked_normal = ppl.distribution(
    lambda loc, scale, mask: nd.Normal(loc, scale).mask(mask), "masked_normal"
)


@ppl.gen
def annealed(mask):
    mu = ppl.normal(MU0, S0) @ "mu"
    return masked_normal(mu + jnp.zeros(mask.shape), SY, mask) @ "y"


def test_driver_data_annealing_with_rejuvenation():
    kernel = mcmc.cycle(mcmc.mh(ppl.select("mu")), mcmc.mala(ppl.select("mu"), step_size=0.3))
    n_data = NN_DATA.shape[0]
    masks = (
        jnp.arange(n_data)[None, :] < jnp.arange(1, n_data + 1)[:, None]
    )  # step s sees s data points
    obs = ppl.ChoiceMap.d({"y": NN_DATA})

    def one(k):
        k1, k2 = jax.random.split(k)
        p = smc.init(k1, annealed, obs, (jnp.zeros(n_data, bool),), 40)
        p, info = smc.run(k2, p, (masks,), rejuvenation=kernel, rejuvenation_steps=2, check=False)
        return info.log_marginal_likelihood, info.ess

    lml, ess = jax.jit(jax.vmap(one))(jax.random.split(jax.random.key(5), 100))
    assert lml.shape == (100, n_data)
    for s in (1, n_data):
        _unbiased(lml[:, s - 1], normal_normal_log_marginal(NN_DATA[:s]))


def test_run_is_a_scan_of_the_pure_step():
    kernel = mcmc.mh(ppl.select("mu"))
    n_data = NN_DATA.shape[0]
    masks = jnp.arange(n_data)[None, :] < jnp.arange(1, n_data + 1)[:, None]
    obs = ppl.ChoiceMap.d({"y": NN_DATA})
    start = smc.init(jax.random.key(1), annealed, obs, (jnp.zeros(n_data, bool),), 30)
    opts: dict[str, Any] = dict(ess_threshold=0.7, rejuvenation=kernel)
    ran, info = smc.run(jax.random.key(2), start, (masks,), **opts)
    step = jax.jit(lambda k, p, m: smc.step(k, p, (m,), **opts))
    p, lml = start, []
    for k, m in zip(jax.random.split(jax.random.key(2), n_data), masks):
        p, i = step(k, p, m)
        lml.append(float(i.log_marginal_likelihood))
    np.testing.assert_allclose(lml, info.log_marginal_likelihood, rtol=1e-5)
    np.testing.assert_allclose(p.traces["mu"], ran.traces["mu"], rtol=1e-5)


def test_the_progress_bar_leaves_the_run_unchanged():
    # 23 steps run as chunks of 2 with one padding step, which must change nothing.
    n = 23
    data = jnp.linspace(-1.0, 1.0, n)
    masks = jnp.arange(n)[None, :] < jnp.arange(1, n + 1)[:, None]
    obs = ppl.ChoiceMap.d({"y": data})
    start = smc.init(jax.random.key(1), annealed, obs, (jnp.zeros(n, bool),), 20)
    runs = [smc.run(jax.random.key(2), start, (masks,), progress=p) for p in (False, True)]
    (quiet, quiet_info), (shown, shown_info) = runs
    assert shown_info.ess.shape == (n,)
    np.testing.assert_allclose(
        quiet_info.log_marginal_likelihood, shown_info.log_marginal_likelihood, rtol=1e-6
    )
    np.testing.assert_allclose(quiet.traces["mu"], shown.traces["mu"], rtol=1e-6)


def _unrolled(t):
    @ppl.gen
    def model():
        z = 0.0
        for i in range(t):
            z = ppl.normal(A * z, Q) @ f"z{i}"
            ppl.normal(z, R) @ f"y{i}"
        return z

    return model


def _optimal_step(t):
    # Proposes z_t from the locally optimal kernel, reading z_{t-1} from the old trace.
    @ppl.gen
    def q(trace, y):
        var = 1 / (1 / Q**2 + 1 / R**2)
        return ppl.normal(var * (A * trace[f"z{t - 1}"] / Q**2 + y / R**2), jnp.sqrt(var)) @ f"z{t}"

    return q


def test_extend_to_a_growing_model_against_kalman():
    TT = 4
    models = [_unrolled(t + 1) for t in range(TT)]

    def one(k):
        keys = jax.random.split(k, 2 * TT)
        p = smc.init(keys[0], models[0], {"y0": YS[0]}, (), 30)
        for t in range(1, TT):
            p = smc.resample(keys[2 * t], p, "multinomial")
            # The last step proposes from the prior, the others from the optimal kernel.
            q = dict(proposal=_optimal_step(t), proposal_args=(YS[t],)) if t < TT - 1 else {}
            p = smc.extend(keys[2 * t + 1], p, (), {f"y{t}": YS[t]}, model=models[t], **q)
        return p.log_marginal_likelihood, p.ess

    est, ess = jax.jit(jax.vmap(one))(jax.random.split(jax.random.key(6), 200))
    _unbiased(est, kalman_log_marginal(YS[:TT]))
    assert ess.shape == (200,)


def test_errors_name_the_problem():
    with pytest.raises(ppl.PPLError, match="ppl.scan"):
        smc.particle_filter(jax.random.key(0), annealed, (jnp.zeros(5, bool),), {}, 10)
    with pytest.raises(ppl.PPLError, match="leading axis of length 15"):
        smc.particle_filter(jax.random.key(0), lgssm(T), (0.0, None), {"y": YS[:5]}, 10)
    with pytest.raises(ppl.PPLError, match="no random choice at 'w'"):
        smc.particle_filter(jax.random.key(0), lgssm(T), (0.0, None), {"w": YS}, 10)
    p = smc.init(jax.random.key(0), annealed, {"y": NN_DATA}, (jnp.zeros(5, bool),), 10)
    with pytest.raises(ppl.PPLError, match="no random choice at 'z'"):
        smc.extend(jax.random.key(1), p, (jnp.ones(5, bool),), {"z": 1.0})
    bad = smc.reweight(p, jnp.full((10,), jnp.nan))
    with pytest.raises(ppl.PPLError, match="NaN"):
        bad.check()

    @ppl.gen
    def flat_scale_step(z, _):
        s = ppl.improper_uniform("positive") @ "scale"
        z = ppl.normal(z, s) @ "z"
        return z, ppl.normal(z, 1.0) @ "y"

    with pytest.raises(ppl.PPLError, match="'scale' has an improper flat prior"):
        flat = ppl.scan(flat_scale_step, length=T)
        smc.particle_filter(jax.random.key(0), flat, (0.0, None), {"y": YS}, 10)


@ppl.gen
def _positive_step(z_prev, _):
    z = ppl.normal(0.9 * z_prev, 0.5) @ "z"
    y = ppl.exponential(jnp.exp(z)) @ "y"
    return z, y


def test_a_time_step_where_every_weight_is_zero_is_named():
    model = ppl.scan(_positive_step, length=6)
    ys = jnp.array(
        [1.0, 0.5, 2.0, -1.0, 0.3, 0.2]
    )  # y < 0 at step 3: impossible for every particle
    with pytest.raises(
        ppl.PPLError,
        match=r"at time step 3 .*every particle has weight zero.*'y'.*"
        r"observations\['y'\]\[3\] = -1.0",
    ):
        smc.particle_filter(jax.random.key(0), model, (0.0, None), {"y": ys}, 20)
    with pytest.raises(ppl.PPLError, match=r"at time step 2 "):  # a NaN observation
        smc.particle_filter(jax.random.key(0), model, (0.0, None), {"y": ys.at[2].set(jnp.nan)}, 20)
    with pytest.raises(ppl.PPLError, match="number of particles, n, is 0"):
        smc.particle_filter(jax.random.key(0), model, (0.0, None), {"y": ys}, 0)
    # Under jit nothing can be raised: as documented, the estimate is -inf from that step on.
    _, info = jax.jit(lambda k: smc.particle_filter(k, model, (0.0, None), {"y": ys}, 20))(
        jax.random.key(0)
    )
    lml = np.asarray(info.log_marginal_likelihood)
    assert (
        np.all(np.isfinite(lml[:3]))
        and np.all(lml[3:] == -np.inf)
        and np.all(np.isnan(info.ess[3:]))
    )


def test_extend_refuses_an_observation_on_a_value_the_particles_made():
    # update would weigh the observed y2 against the prior draw it replaces and
    # give a wrong evidence (-0.5 against -2.6 here), so extend refuses it
    @ppl.gen
    def two_points():
        mu = ppl.normal(0.0, 1.0) @ "mu"
        ppl.normal(mu, 1.0) @ "y1"
        ppl.normal(mu, 1.0) @ "y2"

    p = smc.init(jax.random.key(0), two_points, {"y1": 0.5}, (), 10)
    with pytest.raises(ppl.AddressError, match="'y2' replaces a value the particles already"):
        smc.extend(jax.random.key(1), p, (), {"y2": 2.0})
