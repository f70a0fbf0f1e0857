"""Objectives against exact answers on a conjugate Gaussian model.

Model: z ~ N(theta, 1), x ~ N(z, 1), x observed. Guide: z ~ N(mu, exp(log_s)).
Everything below is known in closed form; tolerances are 5 Monte Carlo
standard errors computed from the samples.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import ppl
from ppl import gen, normal
from ppl.inference import vi

X_OBS, THETA, MU, LOG_S = 1.0, 0.0, 0.3, -0.2
OBS = ppl.ChoiceMap.d({"x": X_OBS})
N = 4000


@gen
def model(theta):
    z = normal(theta, 1.0) @ "z"
    return normal(z, 1.0) @ "x"


@gen
def guide(mu, log_s):
    return normal(mu, jnp.exp(log_s)) @ "z"


def exact_elbo(mu, log_s, theta=THETA, x=X_OBS):
    s2 = np.exp(2 * log_s)
    return (
        -np.log(2 * np.pi)
        - 0.5 * ((mu - theta) ** 2 + s2)
        - 0.5 * ((x - mu) ** 2 + s2)
        + 0.5 * np.log(2 * np.pi * np.e * s2)
    )


def exact_elbo_grad(mu, log_s, theta=THETA, x=X_OBS):
    s2 = np.exp(2 * log_s)
    return (theta - mu) + (x - mu), -2 * s2 + 1.0


LOG_EVIDENCE = -0.5 * np.log(2 * np.pi * 2.0) - (X_OBS - THETA) ** 2 / 4.0


def draws(fn, n=N, seed=0):
    keys = jax.random.split(jax.random.key(seed), n)
    return jax.jit(jax.vmap(fn))(keys)


def assert_close(samples, exact, k=5.0):
    samples = np.asarray(samples)
    se = samples.std() / np.sqrt(len(samples))
    assert abs(samples.mean() - exact) < k * se + 1e-6, (samples.mean(), exact, se)


def test_elbo_estimate_matches_closed_form():
    obj = vi.elbo(model, guide, OBS)
    assert_close(draws(lambda k: obj.estimate(k, (THETA,), (MU, LOG_S))), exact_elbo(MU, LOG_S))


@pytest.mark.parametrize("strategy", [None, ppl.reinforce, ppl.mvd])
def test_elbo_gradient_matches_analytic(strategy):
    obj = vi.elbo(model, guide, OBS, strategies=None if strategy is None else {"z": strategy})
    g_model, g_guide = draws(lambda k: obj.grad_estimate(k, (THETA,), (MU, LOG_S)))
    d_mu, d_log_s = exact_elbo_grad(MU, LOG_S)
    assert_close(g_guide[0], d_mu)
    assert_close(g_guide[1], d_log_s)
    # d/dtheta ELBO = E_q[z] - theta = mu - theta
    assert_close(g_model[0], MU - THETA)


def test_iwelbo_sits_between_elbo_and_evidence():
    elbo = draws(lambda k: vi.elbo(model, guide, OBS).estimate(k, (THETA,), (MU, LOG_S)))
    iw5 = draws(lambda k: vi.iwelbo(model, guide, OBS, n=5).estimate(k, (THETA,), (MU, LOG_S)))
    iw20 = draws(lambda k: vi.iwelbo(model, guide, OBS, n=20).estimate(k, (THETA,), (MU, LOG_S)))

    def se(s):
        return float(np.std(s) / np.sqrt(len(s)))

    assert float(elbo.mean()) + 3 * se(elbo) < float(iw5.mean())
    assert float(iw5.mean()) < float(iw20.mean()) + 3 * se(iw20)
    assert float(iw20.mean()) < LOG_EVIDENCE + 5 * se(iw20)
    assert LOG_EVIDENCE - float(iw20.mean()) < 0.01  # the gap closes as n grows


def _iwelbo_by_hand(key, mu, log_s, n):
    z = mu + jnp.exp(log_s) * jax.random.normal(key, (n,))
    log_p = jax.scipy.stats.norm.logpdf(z, THETA, 1.0) + jax.scipy.stats.norm.logpdf(X_OBS, z, 1.0)
    log_q = jax.scipy.stats.norm.logpdf(z, mu, jnp.exp(log_s))
    return jax.nn.logsumexp(log_p - log_q) - jnp.log(n)


def test_iwelbo_and_vimco_gradients_are_unbiased():
    reference = draws(
        lambda k: jax.grad(_iwelbo_by_hand, argnums=(1, 2))(k, MU, LOG_S, 5), n=20000, seed=1
    )
    for obj in [
        vi.iwelbo(model, guide, OBS, n=5),
        vi.vimco(model, guide, OBS, n=5, strategies={"z": ppl.reinforce}),
    ]:
        _, g = draws(lambda k: obj.grad_estimate(k, (THETA,), (MU, LOG_S)))
        for ours, ref in zip(g, reference):
            se = np.sqrt(np.var(ours) / len(ours) + np.var(ref) / len(ref))
            assert abs(float(ours.mean()) - float(ref.mean())) < 5 * se, (
                obj,
                ours.mean(),
                ref.mean(),
            )


def test_vimco_baselines_reduce_variance_of_reinforce_iwelbo():
    plain = vi.iwelbo(model, guide, OBS, n=5, strategies={"z": ppl.reinforce})
    loo = vi.vimco(model, guide, OBS, n=5, strategies={"z": ppl.reinforce})
    v_plain = np.var(draws(lambda k: plain.grad_estimate(k, (THETA,), (MU, LOG_S))[1][0]))
    v_loo = np.var(draws(lambda k: loo.grad_estimate(k, (THETA,), (MU, LOG_S))[1][0]))
    assert v_loo < 0.5 * v_plain, (v_loo, v_plain)


def test_renyi_at_alpha_zero_is_iwelbo_on_the_same_samples():
    key = jax.random.key(3)
    a = vi.renyi(model, guide, OBS, alpha=0.0, n=4).estimate(key, (THETA,), (MU, LOG_S))
    b = vi.iwelbo(model, guide, OBS, n=4).estimate(key, (THETA,), (MU, LOG_S))
    np.testing.assert_allclose(a, b, rtol=1e-6)


def test_wake_p_gradient_is_the_evidence_gradient_with_the_exact_posterior():
    post_mu, post_log_s = (X_OBS + THETA) / 2.0, 0.5 * np.log(0.5)
    obj = vi.rws_wake_p(model, guide, OBS, n=5)
    g_model, g_guide = draws(lambda k: obj.grad_estimate(k, (THETA,), (post_mu, post_log_s)))
    assert_close(g_model[0], (X_OBS - THETA) / 2.0)
    assert np.all(np.asarray(g_guide[0]) == 0.0)  # the guide is held fixed in the wake-p phase


def test_wake_q_gradient_vanishes_at_the_posterior_and_points_towards_it():
    post_mu, post_log_s = (X_OBS + THETA) / 2.0, 0.5 * np.log(0.5)
    obj = vi.rws_wake_q(model, guide, OBS, n=10)
    _, g = draws(lambda k: obj.grad_estimate(k, (THETA,), (post_mu, post_log_s)))
    assert_close(g[0], 0.0)
    assert_close(g[1], 0.0)
    _, g = draws(lambda k: obj.grad_estimate(k, (THETA,), (post_mu - 1.0, post_log_s)))
    assert float(g[0].mean()) > 10 * float(
        g[0].std() / np.sqrt(N)
    )  # ascent moves mu up, towards 0.5


def test_cubo_estimate_matches_quadrature():
    power = 2.0
    z = np.linspace(-12, 12, 200001)
    s = np.exp(LOG_S)
    log_p = (
        -0.5 * np.log(2 * np.pi)
        - 0.5 * (z - THETA) ** 2
        - 0.5 * np.log(2 * np.pi)
        - 0.5 * (X_OBS - z) ** 2
    )
    log_q = -0.5 * np.log(2 * np.pi * s**2) - 0.5 * (z - MU) ** 2 / s**2
    exact = -np.trapezoid(np.exp(power * log_p - (power - 1) * log_q), z)
    obj = vi.cubo(model, guide, OBS, power=power)
    assert_close(draws(lambda k: obj.estimate(k, (THETA,), (MU, LOG_S)), n=20000), exact)


def test_objectives_compose_with_jit_vmap_grad():
    obj = vi.iwelbo(model, guide, OBS, n=3)
    keys = jax.random.split(jax.random.key(0), 8)
    g = jax.jit(jax.vmap(lambda k: jax.grad(lambda m: obj.estimate(k, (THETA,), (m, LOG_S)))(MU)))(
        keys
    )
    g2 = jax.vmap(lambda k: obj.grad_estimate(k, (THETA,), (MU, LOG_S))[1][0])(keys)
    np.testing.assert_allclose(g, g2, rtol=1e-5)


def test_strategies_for_an_address_the_guide_never_visits_are_an_error():
    obj = vi.elbo(model, guide, OBS, strategies={"w": ppl.reinforce})
    with pytest.raises(ppl.PPLError, match="'w'"):
        obj.estimate(jax.random.key(0), (THETA,), (MU, LOG_S))


@gen
def _mu_flip_y():
    mu = normal(0.0, 1.0) @ "mu"
    ppl.flip(0.5) @ "b"
    normal(mu, 1.0) @ "y"


@gen
def _guide_with_y(m):
    normal(m, 1.0) @ "mu"
    ppl.flip(0.5) @ "b"
    normal(m, 1.0) @ "y"


@gen
def _guide_without_b(m):
    normal(m, 1.0) @ "mu"


@pytest.mark.parametrize(
    "make",
    [
        vi.elbo,
        lambda *a: vi.elbo(*a, rao_blackwell=False),
        lambda *a: vi.iwelbo(*a, n=3),
        lambda *a: vi.vimco(*a, n=3),
    ],
)
def test_guide_and_observations_must_split_the_models_choices(make):
    # a guide that samples an observed address: the observation wins in log p but
    # log q counts the guide's draw, a biased objective; a choice in neither: the
    # message names both fixes (and no internal particle address)
    with pytest.raises(ppl.PPLError, match="guide '_guide_with_y' samples 'y', which is observed"):
        make(_mu_flip_y, _guide_with_y, {"y": 1.0}).estimate(jax.random.key(0), (), (0.0,))
    with pytest.raises(ppl.PPLError, match="choice 'b' is neither sampled by the guide"):
        make(_mu_flip_y, _guide_without_b, {"y": 1.0}).estimate(jax.random.key(0), (), (0.0,))
