"""ppl.sum_out inside inference: posterior samples of the summed choices against
the exact posterior (tolerances from the Monte Carlo standard error, fixed
seeds), NUTS on a Gaussian mixture with its assignments summed out against
quadrature, ELBO gradients with a continuous guide against quadrature, and
importance sampling and SMC through generate."""

import itertools

import jax
import jax.numpy as jnp
from jax.extend.core import jaxprs_in_params
import numpy as np
from jax.scipy.special import logsumexp

import ppl
from ppl import ChoiceMap
from ppl.inference import vi

# -- posterior samples of the summed choices ---------------------------------------

K, T = 3, 4
TRANS = jnp.array([[0.8, 0.1, 0.1], [0.2, 0.7, 0.1], [0.25, 0.25, 0.5]])
MEANS = jnp.array([-2.0, 0.0, 2.0])
XS = jnp.array([-1.5, 0.3, 2.2, -0.4])
N_DRAWS = 4000


@ppl.gen
def step(z_prev, _):
    z = ppl.categorical(TRANS[z_prev]) @ "z"
    x = ppl.normal(MEANS[z], 1.0) @ "x"
    return z, x


@ppl.gen
def hmm(z0):
    _, xs = ppl.scan(step, length=T)(z0, None) @ "chain"
    return xs


def within_mcse(freq, p, n, z=5.0):
    """Each frequency within ``z`` Monte Carlo standard errors of its probability
    (a floor of one count's worth keeps near-zero probabilities testable)."""
    se = np.sqrt(np.maximum(p * (1 - p), 1.0 / n) / n)
    assert np.all(np.abs(freq - p) <= z * se), (freq, p, se)


def test_ffbs_draws_paths_from_the_exact_posterior():
    marg = ppl.sum_out(hmm, ppl.select(("chain", "z")))
    obs = ChoiceMap.d({("chain", "x"): XS})
    paths = np.array(list(itertools.product(range(K), repeat=T)))

    @jax.jit
    def exact_and_draws(key):
        lps = jax.vmap(lambda z: hmm.assess(obs | ChoiceMap.d({("chain", "z"): z}), (0,))[0])(
            jnp.asarray(paths)
        )
        keys = jax.random.split(key, N_DRAWS)
        draws = jax.vmap(lambda k: marg.posterior_sample(k, obs, (0,))["chain", "z"])(keys)
        return jnp.exp(lps - logsumexp(lps)), draws

    post, draws = exact_and_draws(jax.random.key(0))
    post, draws = np.asarray(post, np.float64), np.asarray(draws)
    # every step's marginal, and the frequency of each whole path
    for t in range(T):
        p = np.array([post[paths[:, t] == k].sum() for k in range(K)])
        within_mcse(np.bincount(draws[:, t], minlength=K) / N_DRAWS, p, N_DRAWS)
    index = (draws * K ** np.arange(T)[::-1]).sum(axis=1)
    within_mcse(np.bincount(index, minlength=len(paths)) / N_DRAWS, post, N_DRAWS)


@ppl.gen
def point(mu):
    c = ppl.flip(0.3) @ "c"
    return ppl.normal(jnp.where(c, mu, -mu), 1.0) @ "x"


@ppl.gen
def mixture(prior_sd):
    mu = ppl.normal(1.0, prior_sd) @ "mu"
    return ppl.repeat(point, 6)(mu) @ "points"


X6 = jnp.array([1.2, -0.7, 0.4, 2.1, -1.5, 0.1])


def test_mixture_assignments_from_the_exact_posterior():
    marg = ppl.sum_out(mixture, ppl.select(("points", "c")))
    kept = ChoiceMap.d({"mu": 0.8, ("points", "x"): X6})

    @jax.jit
    def draws(key):
        keys = jax.random.split(key, N_DRAWS)
        return jax.vmap(lambda k: marg.posterior_sample(k, kept, (2.0,))["points", "c"])(keys)

    got = np.asarray(draws(jax.random.key(1))).mean(axis=0)
    # each point on its own: p(c = 1 | x, mu) by Bayes' rule
    like1 = 0.3 * np.exp(-0.5 * (np.asarray(X6) - 0.8) ** 2)
    like0 = 0.7 * np.exp(-0.5 * (np.asarray(X6) + 0.8) ** 2)
    within_mcse(got, like1 / (like0 + like1), N_DRAWS)


# -- the exact marginal on a grid, for quadrature ------------------------------------


def log_marginal_1d(mu, xs, prior_sd):
    """log p(mu, xs) of ``mixture`` with the assignments summed by hand (numpy)."""
    mu = np.asarray(mu, np.float64)[..., None]
    xs = np.asarray(xs, np.float64)
    norm = -0.5 * np.log(2 * np.pi)
    per = np.logaddexp(
        np.log(0.3) + norm - 0.5 * (xs - mu) ** 2, np.log(0.7) + norm - 0.5 * (xs + mu) ** 2
    ).sum(-1)
    prior = -0.5 * ((mu[..., 0] - 1.0) / prior_sd) ** 2 - np.log(prior_sd * np.sqrt(2 * np.pi))
    return prior + per


def mixture_of(n):
    @ppl.gen
    def first_points(prior_sd):
        mu = ppl.normal(1.0, prior_sd) @ "mu"
        return ppl.repeat(point, n)(mu) @ "points"

    return ppl.sum_out(first_points, ppl.select(("points", "c")))


def test_smc_through_generate():
    # importance sampling from the prior on two points (generate with "mu" free),
    # resampling, then the six-point target (generate with everything given)
    m2, m6 = mixture_of(2), mixture_of(6)
    smc = ppl.inference.smc

    @jax.jit
    def run(key):
        k1, k2, k3 = jax.random.split(key, 3)
        obs2 = ChoiceMap.d({("points", "x"): X6[:2]})
        particles = smc.init(k1, m2, obs2, (2.0,), n=2000)
        particles = smc.resample(k2, particles)
        obs6 = ChoiceMap.d({("points", "x"): X6})
        particles = smc.extend(k3, particles, (2.0,), obs6, model=m6)
        return particles.log_marginal_likelihood, particles.log_weights

    log_ml, w = run(jax.random.key(2))
    grid = np.linspace(-8, 8, 4001)
    lp = log_marginal_1d(grid, X6, 2.0)
    exact = np.log(np.trapezoid(np.exp(lp - lp.max()), grid)) + lp.max()
    # the last stage's standard error by the delta method, doubled for the first stage
    rel = np.exp(np.asarray(w, np.float64) - np.max(w))
    se = 2 * np.std(rel) / np.sqrt(len(rel)) / np.mean(rel)
    assert abs(float(log_ml) - exact) < 5 * se + 1e-3, (float(log_ml), exact, se)


def test_elbo_gradient_with_a_continuous_guide():
    marg = ppl.sum_out(mixture, ppl.select(("points", "c")))

    @ppl.gen
    def guide(m, log_s):
        ppl.normal(m, jnp.exp(log_s)) @ "mu"

    obs = ChoiceMap.d({("points", "x"): X6})
    objective = vi.elbo(marg, guide, obs)
    params = (0.6, jnp.log(0.5))

    @jax.jit
    def grads(key):
        keys = jax.random.split(key, 2000)
        g = jax.vmap(lambda k: objective.grad_estimate(k, (2.0,), params)[1])(keys)
        return jnp.stack([g[0], g[1]], axis=1)

    g = np.asarray(grads(jax.random.key(3)), np.float64)
    # ELBO(m, log_s) by Gauss-Hermite quadrature over mu, differentiated in JAX
    nodes, weights = np.polynomial.hermite_e.hermegauss(80)

    def elbo_quad(m, log_s):
        s = jnp.exp(log_s)
        mu = m + s * nodes
        joint = jax.vmap(lambda u: marg.assess(obs | ChoiceMap.d({"mu": u}), (2.0,))[0])(mu)
        log_q = -0.5 * nodes**2 - jnp.log(s * jnp.sqrt(2 * jnp.pi))
        return jnp.sum(weights * (joint - log_q)) / jnp.sqrt(2 * jnp.pi)

    exact = np.asarray(jax.jit(jax.grad(elbo_quad, (0, 1)))(*params))
    se = g.std(axis=0) / np.sqrt(len(g))
    assert np.all(np.abs(g.mean(axis=0) - exact) < 5 * se), (g.mean(axis=0), exact, se)


def test_density_inside_an_expectation_is_exact_and_differentiable():
    marg = ppl.sum_out(mixture, ppl.select(("points", "c")))
    obs = ChoiceMap.d({("points", "x"): X6})

    @ppl.expectation
    def log_p(mu):
        return ppl.density(marg)(obs | ChoiceMap.d({"mu": mu}), 2.0)

    got = log_p.grad_estimate(jax.random.key(0), (0.7,))[0]
    want = jax.jit(jax.grad(lambda mu: marg.assess(obs | ChoiceMap.d({"mu": mu}), (2.0,))[0]))(0.7)
    np.testing.assert_allclose(got, want, rtol=1e-5)
    # and against the hand-summed density, by finite differences
    fd = (log_marginal_1d(0.7 + 1e-4, X6, 2.0) - log_marginal_1d(0.7 - 1e-4, X6, 2.0)) / 2e-4
    np.testing.assert_allclose(got, fd, rtol=1e-3)


# -- NUTS on a two-component Gaussian mixture, assignments summed out -----------------

N_POINTS = 12
X_GMM = jnp.array([-2.3, -1.6, -2.8, -1.9, -2.1, 1.7, 2.4, 2.0, 1.5, 2.6, 2.2, 1.9])  # two clusters


@ppl.gen
def gmm_point(mus):
    c = ppl.flip(0.6) @ "c"
    return ppl.normal(jnp.where(c, mus[1], mus[0]), 0.7) @ "x"


@ppl.gen
def gmm():
    # Priors centred apart: the label-swapped mode has negligible mass.
    mus = ppl.normal(jnp.array([-2.0, 2.0]), 1.0) @ "mus"
    return ppl.repeat(gmm_point, N_POINTS)(mus) @ "points"


def gmm_log_joint(m0, m1):
    xs = np.asarray(X_GMM, np.float64)[None, None, :]
    m0, m1 = m0[..., None], m1[..., None]
    norm = -np.log(0.7 * np.sqrt(2 * np.pi))
    per = np.logaddexp(
        np.log(0.4) + norm - 0.5 * ((xs - m0) / 0.7) ** 2,
        np.log(0.6) + norm - 0.5 * ((xs - m1) / 0.7) ** 2,
    ).sum(-1)
    return per[...] - 0.5 * (m0[..., 0] + 2) ** 2 - 0.5 * (m1[..., 0] - 2) ** 2


def test_nuts_on_a_gaussian_mixture_with_assignments_summed_out():
    marg = ppl.sum_out(gmm, ppl.select(("points", "c")))
    obs = ChoiceMap.d({("points", "x"): X_GMM})
    result = ppl.inference.run_mcmc(
        jax.random.key(4),
        ppl.inference.nuts(ppl.select("mus")),
        marg,
        (),
        obs,
        n_samples=400,
        n_warmup=300,
        n_chains=2,
    )
    s = result.summary()["mus"]
    grid = np.linspace(-5, 5, 401)
    m0, m1 = np.meshgrid(grid, grid, indexing="ij")
    lp = gmm_log_joint(m0, m1)
    w = np.exp(lp - lp.max())
    w /= w.sum()
    exact = np.array([(w * m0).sum(), (w * m1).sum()])
    assert np.all(np.abs(np.asarray(s["mean"]) - exact) < 5 * np.asarray(s["mcse"]) + 1e-3), (
        s["mean"],
        exact,
        s["mcse"],
    )


# -- the work posterior_sample and most_probable stage ----------------------------------


def _n_scans(jaxpr):
    n = 0
    for eqn in jaxpr.eqns:
        n += eqn.primitive.name == "scan"
        n += sum(_n_scans(sub) for sub in jaxprs_in_params(eqn.params))
    return n


def test_paths_of_a_wrapped_chain_build_no_unused_tables():
    # A @gen function whose only summed choices are in a scan: the draw is the
    # chain's own FFBS (or Viterbi) plus one forward pass for the call's return
    # value, not also a joint table over no top-level choices, thrown away.
    marg = ppl.sum_out(hmm, ppl.select(("chain", "z")))
    chain = ppl.sum_out(ppl.scan(step, length=T), ppl.select("z"))
    obs, direct = ChoiceMap.d({("chain", "x"): XS}), ChoiceMap.d({"x": XS})

    def n_scans(fn):
        return _n_scans(jax.make_jaxpr(fn)().jaxpr)

    key = jax.random.key(0)
    one_pass = n_scans(lambda: chain.assess(direct, (0, None)))
    draw = n_scans(lambda: chain.posterior_sample(key, direct, (0, None)))
    assert n_scans(lambda: marg.posterior_sample(key, obs, (0,))) <= draw + one_pass
    mode = n_scans(lambda: chain.most_probable(direct, (0, None)))
    assert n_scans(lambda: marg.most_probable(obs, (0,))) <= mode + one_pass
    np.testing.assert_array_equal(
        marg.most_probable(obs, (0,))["chain", "z"], chain.most_probable(direct, (0, None))["z"]
    )
