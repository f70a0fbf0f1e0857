"""marginal: density estimators against exact marginals, and valid HVI bounds.

Family: u ~ N(0, 1), x ~ N(a u, s): its marginal q(x) = N(0, a^2 + s^2) is
known exactly, so every estimator can be checked against it.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import ppl
from ppl import density, expectation, gen, normal, sim
from ppl.inference import vi

A, S = 1.5, 0.7
X = ppl.ChoiceMap.d({"x": 0.8})
N = 4000


@gen
def hier(a, s):
    u = normal(0.0, 1.0) @ "u"
    return normal(a * u, s) @ "x"


@gen
def posterior_u(x_choices, a, s):
    """The exact posterior of u given x: a proposal that makes weights constant."""
    x = x_choices["x"]
    prec = 1.0 + a**2 / s**2
    return normal(a * x / s**2 / prec, 1.0 / jnp.sqrt(prec)) @ "u"


def exact_log_q(x, a=A, s=S):
    v = a**2 + s**2
    return -0.5 * np.log(2 * np.pi * v) - 0.5 * x**2 / v


def draws(fn, n=N, seed=0):
    return jax.jit(jax.vmap(fn))(jax.random.split(jax.random.key(seed), n))


def se(s):
    return float(np.std(s) / np.sqrt(len(s)))


@pytest.mark.parametrize("particles", [1, 4])
@pytest.mark.parametrize("use_proposal", [False, True])
def test_model_side_density_is_unbiased_in_exp_space(particles, use_proposal):
    m = ppl.marginal(
        hier, keep=ppl.select("x"), n=particles, proposal=posterior_u if use_proposal else None
    )

    @expectation
    def log_density(a, s):
        return density(m)(X, a, s)

    est = draws(lambda k: log_density.estimate(k, (A, S)))
    w = np.exp(np.asarray(est) - exact_log_q(0.8))
    assert abs(w.mean() - 1.0) < 5 * w.std() / np.sqrt(N) + 1e-6
    assert est.mean() <= exact_log_q(0.8) + 5 * se(est)  # its log is a lower bound in expectation
    if use_proposal:
        np.testing.assert_allclose(
            est, exact_log_q(0.8), atol=1e-4
        )  # exact proposal: zero variance


@pytest.mark.parametrize("particles", [1, 5])
def test_family_side_reciprocal_is_unbiased(particles):
    """E_{x, u0 ~ q, u1.. ~ r}[g(x) / q_hat(x)] = integral of g = 1 for a density g."""
    m = ppl.marginal(hier, keep=ppl.select("x"), n=particles)

    @expectation
    def ratio(a, s):
        x, log_q_hat = sim(m)(a, s) @ "q"
        log_g = jax.scipy.stats.norm.logpdf(x["x"], 0.3, 1.2)
        return jnp.exp(log_g - log_q_hat)

    est = np.asarray(draws(lambda k: ratio.estimate(k, (A, S)), n=20000))
    assert abs(est.mean() - 1.0) < 5 * est.std() / np.sqrt(len(est))


def test_generate_weight_estimates_the_marginal_and_simulate_scores_it():
    m = ppl.marginal(hier, keep=ppl.select("x"), n=8)
    w = np.exp(np.asarray(draws(lambda k: m.generate(k, X, (A, S))[1])) - exact_log_q(0.8))
    assert abs(w.mean() - 1.0) < 5 * w.std() / np.sqrt(N)
    tr = m.simulate(jax.random.key(0), (A, S))
    assert list(tr.choices.keys()) == ["x"]
    assert np.isfinite(tr.score)


def _exact_elbo_with_true_marginal():
    """ELBO of model x ~ N(0, 1), y ~ N(x, 1), y = 1 with family q(x) = N(0, A^2 + S^2)."""
    v = A**2 + S**2
    return (-np.log(2 * np.pi) - 0.5 * v - 0.5 * (1.0 + v)) + 0.5 * np.log(2 * np.pi * np.e * v)


@gen
def toy():
    x = normal(0.0, 1.0) @ "x"
    return normal(x, 1.0) @ "y"


def test_hierarchical_bounds_are_ordered_and_valid():
    """HVI <= IWHVI <= ELBO with the exact marginal <= DIWHVI-style bounds <= log p(y)."""
    obs = ppl.ChoiceMap.d({"y": 1.0})
    exact = _exact_elbo_with_true_marginal()
    log_evidence = -0.5 * np.log(2 * np.pi * 2.0) - 0.25
    hvi = draws(
        lambda k: vi.elbo(toy, ppl.marginal(hier, ppl.select("x"), n=1), obs).estimate(
            k, (), (A, S)
        )
    )
    iwhvi = draws(
        lambda k: vi.elbo(toy, ppl.marginal(hier, ppl.select("x"), n=8), obs).estimate(
            k, (), (A, S)
        )
    )
    diwhvi = draws(
        lambda k: vi.iwelbo(toy, ppl.marginal(hier, ppl.select("x"), n=8), obs, n=4).estimate(
            k, (), (A, S)
        )
    )
    assert hvi.mean() + 3 * se(hvi) < iwhvi.mean()
    assert iwhvi.mean() < exact + 5 * se(iwhvi)
    assert (
        exact - iwhvi.mean() < 0.1
    )  # more particles: the bound approaches the exact-marginal ELBO
    assert diwhvi.mean() < log_evidence + 5 * se(diwhvi)
    assert diwhvi.mean() > exact  # importance weighting over x tightens it further


def test_hvi_gradient_matches_finite_differences_of_its_mean():
    obs = ppl.ChoiceMap.d({"y": 1.0})
    obj = vi.elbo(toy, ppl.marginal(hier, ppl.select("x"), n=1), obs)
    g = draws(lambda k: obj.grad_estimate(k, (), (A, S))[1][1], n=20000)
    eps = 0.05
    up = draws(lambda k: obj.estimate(k, (), (A, S + eps)), n=20000, seed=1)
    down = draws(
        lambda k: obj.estimate(k, (), (A, S - eps)), n=20000, seed=1
    )  # common random numbers
    diff = (np.asarray(up) - np.asarray(down)) / (2 * eps)
    tol = 5 * np.sqrt(np.var(g) / len(g) + np.var(diff) / len(diff)) + 0.02  # + O(eps^2) curvature
    assert abs(float(g.mean()) - diff.mean()) < tol


def test_marginal_errors_are_clear():
    m = ppl.marginal(hier, keep=ppl.select("x"))
    with pytest.raises(ppl.PPLError, match="generate"):
        m.assess(X, (A, S))
    with pytest.raises(ppl.PPLError, match="keeps none"):
        ppl.marginal(hier, keep=ppl.select("nothing")).simulate(jax.random.key(0), (A, S))
    with pytest.raises(ppl.PPLError, match="n >= 1"):
        ppl.marginal(hier, keep=ppl.select("x"), n=0)


def test_strategies_by_the_familys_own_addresses_reach_every_particle():
    @gen
    def shifted(a, s):  # u's distribution has a parameter, so its strategy matters
        u = normal(a, 1.0) @ "u"
        return normal(u, s) @ "x"

    obs = ppl.ChoiceMap.d({"y": 1.0})
    family = ppl.marginal(shifted, ppl.select("x"), n=3)
    internal = {(p, "u"): ppl.reinforce for p in ("joint", "aux1", "aux2")}

    def grads(strategies):
        obj = vi.elbo(toy, family, obs, strategies=strategies)
        return np.asarray(draws(lambda k: obj.grad_estimate(k, (), (A, S))[1][0], n=64))

    by_own = grads({"u": ppl.reinforce})
    np.testing.assert_allclose(by_own, grads(internal), rtol=1e-6)
    assert not np.allclose(by_own, grads(None))  # the default, reparam, is another estimator
    obj = vi.elbo(toy, family, obs, strategies={"w": ppl.reinforce})
    with pytest.raises(ppl.PPLError, match=r"strategies were given for \('guide', 'joint', 'w'\)"):
        obj.estimate(jax.random.key(0), (), (A, S))


@pytest.mark.parametrize("objective", [vi.vimco, vi.rws_wake_q])
def test_objectives_needing_the_exact_guide_density_refuse_a_marginal_family(objective):
    family = ppl.marginal(hier, ppl.select("x"), n=2)
    with pytest.raises(ppl.PPLError, match=r"needs the exact log density.*vi.elbo, vi.iwelbo"):
        objective(toy, family, ppl.ChoiceMap.d({"y": 1.0}))
