"""Data subsampling: ``ppl.vmap(..., subsample_of=N)`` and ``vi.fit(..., subsample=True)``.

The subsampled ELBO must be unbiased for the full-data ELBO, in value and in
gradient, with global and local latents, reparameterized and score-function
choices; every algorithm a scaled minibatch would bias must refuse it.
"""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from scipy.special import betaln, digamma, expit
from scipy.stats import norm

import ppl
from ppl import PPLError
from ppl.inference import vi

N, B, DRAWS = 200, 20, 8000


def _mean_and_se(x):
    x = np.asarray(x, np.float64)
    return x.mean(axis=0), x.std(axis=0) / np.sqrt(len(x))


def _check_unbiased(draws, exact, z=4.0):
    mean, se = _mean_and_se(draws)
    assert np.all(np.abs(mean - exact) <= z * se + 1e-6), (mean, se, exact)


def _fd_gradient(f, p0, eps=1e-5):
    eye = np.eye(len(p0))
    return np.array([(f(p0 + eps * e) - f(p0 - eps * e)) / (2 * eps) for e in eye])


def _estimates(objective, xs, params, n_rows, key):
    def one(p, k):
        k_batch, k_est = jax.random.split(k)
        batch = xs[jax.random.choice(k_batch, n_rows, (B,), replace=False)]
        return objective.estimate(k_est, (batch,), (p, batch))

    draws = jax.jit(jax.vmap(jax.value_and_grad(one), in_axes=(None, 0)))
    value, grads = draws(params, jax.random.split(key, DRAWS))
    return value, np.stack([np.asarray(g) for g in grads], axis=1)


# Gaussian local latents: theta ~ N(0, 1), z_i ~ N(theta, 1), x_i ~ N(z_i, 1).
XS = jax.random.normal(jax.random.key(0), (N,)) + 1.0


@ppl.gen
def gaussian_local(x_unused, theta):
    z = ppl.normal(theta, 1.0) @ "z"
    return ppl.normal(z, 1.0) @ "x"


@ppl.gen
def gaussian_model(batch):
    theta = ppl.normal(0.0, 1.0) @ "theta"
    ppl.vmap(gaussian_local, in_axes=(0, None), subsample_of=N)(batch, theta) @ "points"


@ppl.gen
def gaussian_local_guide(x, a, t):
    return ppl.normal(a * x, t) @ "z"


@ppl.gen
def gaussian_guide(params, batch):
    m, s, a, t = params
    ppl.normal(m, s) @ "theta"
    ppl.vmap(gaussian_local_guide, in_axes=(0, None, None), subsample_of=N)(batch, a, t) @ "points"


def _observe_x(batch):
    return {"points": {"x": batch}}


def gaussian_elbo(p):
    m, s, a, t = p
    x, c = np.asarray(XS, np.float64), -0.5 * np.log(2 * np.pi)
    mz = a * x
    value = c - 0.5 * (m**2 + s**2) + 0.5 * np.log(2 * np.pi * np.e * s**2)
    value += np.sum(c - 0.5 * ((mz - m) ** 2 + t**2 + s**2))
    value += np.sum(c - 0.5 * ((x - mz) ** 2 + t**2))
    return value + N * 0.5 * np.log(2 * np.pi * np.e * t**2)


@pytest.mark.parametrize(
    "strategies",
    [None, {"theta": ppl.reinforce, ("points", "z"): ppl.reinforce}],
    ids=["reparam", "reinforce"],
)
def test_subsampled_elbo_and_gradient_are_unbiased_with_local_latents(strategies):
    params = (jnp.array(0.3), jnp.array(0.5), jnp.array(0.6), jnp.array(0.8))
    objective = vi.elbo(gaussian_model, gaussian_guide, _observe_x, strategies=strategies)
    value, grads = _estimates(objective, XS, params, N, jax.random.key(3))
    p0 = np.array([float(p) for p in params])
    _check_unbiased(value, gaussian_elbo(p0))
    _check_unbiased(grads, _fd_gradient(gaussian_elbo, p0))


# Discrete local latents: p ~ Beta(2, 2), z_i ~ flip(p), x_i ~ N(+-1, 1).
N_FLIP = 50
XF = jax.random.normal(jax.random.key(1), (N_FLIP,)) + 0.5


@ppl.gen
def flip_local(x_unused, p):
    z = ppl.flip(p) @ "z"
    return ppl.normal(jnp.where(z, 1.0, -1.0), 1.0) @ "x"


@ppl.gen
def flip_model(batch):
    p = ppl.beta(2.0, 2.0) @ "p"
    ppl.vmap(flip_local, in_axes=(0, None), subsample_of=N_FLIP)(batch, p) @ "points"


@ppl.gen
def flip_local_guide(x, c):
    return ppl.flip(jax.nn.sigmoid(c * x)) @ "z"


@ppl.gen
def flip_guide(params, batch):
    a, b, c = params
    ppl.beta(jnp.exp(a), jnp.exp(b)) @ "p"
    ppl.vmap(flip_local_guide, in_axes=(0, None), subsample_of=N_FLIP)(batch, c) @ "points"


def flip_elbo(p):
    a, b, c = np.exp(p[0]), np.exp(p[1]), p[2]
    x = np.asarray(XF, np.float64)
    e_log_p, e_log_1mp = digamma(a) - digamma(a + b), digamma(b) - digamma(a + b)
    value = -betaln(2, 2) + e_log_p + e_log_1mp
    value -= -betaln(a, b) + (a - 1) * e_log_p + (b - 1) * e_log_1mp
    q = expit(c * x)
    value += np.sum(q * e_log_p + (1 - q) * e_log_1mp)
    value += np.sum(q * norm.logpdf(x, 1, 1) + (1 - q) * norm.logpdf(x, -1, 1))
    return value - np.sum(q * np.log(q) + (1 - q) * np.log(1 - q))


@pytest.mark.parametrize("rao_blackwell", [True, False])
def test_subsampled_elbo_is_unbiased_with_discrete_local_latents(rao_blackwell):
    params = (jnp.array(0.5), jnp.array(0.7), jnp.array(1.5))
    objective = vi.elbo(flip_model, flip_guide, _observe_x, rao_blackwell=rao_blackwell)
    value, grads = _estimates(objective, XF, params, N_FLIP, jax.random.key(4))
    p0 = np.array([float(p) for p in params])
    _check_unbiased(value, flip_elbo(p0))
    _check_unbiased(grads, _fd_gradient(flip_elbo, p0))


# A Bayesian linear regression: w ~ N(0, I), y_n ~ N(x_n . w, 1); conjugate.
N_REG, D = 4000, 3
X_REG = jax.random.normal(jax.random.key(5), (N_REG, D))
Y_REG = X_REG @ jnp.array([1.0, -2.0, 0.5]) + jax.random.normal(jax.random.key(6), (N_REG,))
DATA = {"x": X_REG, "y": Y_REG}


@ppl.gen
def row(x, w):
    return ppl.normal(x @ w, 1.0) @ "y"


def regression(subsample_of=N_REG):
    @ppl.gen
    def model(batch):
        w = ppl.normal(jnp.zeros(D), 1.0) @ "w"
        ppl.vmap(row, in_axes=(0, None), subsample_of=subsample_of)(batch["x"], w) @ "rows"

    return model


def _observe_y(batch):
    return {"rows": {"y": batch["y"]}}


def _first(batch_size):
    return jax.tree.map(lambda a: a[:batch_size], DATA)


def test_fit_with_subsampled_data_finds_the_conjugate_posterior():
    model = regression()
    guide, guide_args = vi.auto_normal(model, _observe_y(_first(100)), (_first(100),))
    schedule = optax.exponential_decay(0.05, 3000, 0.02)
    result = vi.fit(
        vi.elbo(model, guide, _observe_y),
        jax.random.key(7),
        (),
        guide_args,
        data=DATA,
        batch_size=100,
        subsample=True,
        steps=3000,
        optimizer=optax.adam(schedule),
        progress=False,
    )
    x, y = np.asarray(X_REG, np.float64), np.asarray(Y_REG, np.float64)
    cov = np.linalg.inv(np.eye(D) + x.T @ x)
    mean, sd = cov @ (x.T @ y), np.sqrt(np.diag(cov))
    params = result.guide_args[0]
    # The steps' noise leaves the mean within a few posterior sds; unscaled it would be off by
    # far more (the minibatch alone has 40 times less data).
    assert np.all(np.abs(np.asarray(params["loc"]) - mean) < 3 * sd), (params["loc"], mean, sd)
    scale = np.asarray(jax.nn.softplus(params["raw_scale"]))
    assert np.all(np.abs(np.log(scale / sd)) < np.log(1.6)), (scale, sd)


def test_scores_obey_the_interface_laws_with_the_scale():
    model, batch = regression(), _first(10)
    trace = model.simulate(jax.random.key(0), (batch,))
    logp, _ = model.assess(trace.choices, (batch,))
    np.testing.assert_allclose(trace.score, logp, rtol=1e-6)
    w = trace.choices["w"]
    rows = norm.logpdf(np.asarray(trace.choices["rows", "y"]), np.asarray(batch["x"] @ w), 1.0)
    prior = norm.logpdf(np.asarray(w)).sum()
    np.testing.assert_allclose(logp, prior + rows.sum() * N_REG / 10, rtol=1e-5)
    _, weight = model.generate(jax.random.key(1), trace.choices, (batch,))
    np.testing.assert_allclose(weight, logp, rtol=1e-5)


def _refused(fn, *words):
    with pytest.raises(PPLError) as info:
        fn()
    for word in words:
        assert word in str(info.value), str(info.value)


def test_algorithms_that_a_scaled_minibatch_would_bias_refuse_it():
    model, batch = regression(), _first(10)
    obs = _observe_y(batch)
    guide, guide_args = vi.auto_normal(model, obs, (batch,))
    key = jax.random.key(0)
    _refused(
        lambda: ppl.inference.importance(key, model, obs, (batch,), 10),
        "importance sampling",
        "subsample_of",
        "'rows', 'y'",
    )
    _refused(lambda: ppl.inference.smc.init(key, model, obs, (batch,), 10), "SMC")
    _refused(
        lambda: ppl.inference.run_mcmc(
            key, ppl.inference.mcmc.nuts(), model, (batch,), obs, 5, 5, 1, progress=False
        ),
        "MCMC",
    )
    iwelbo = vi.iwelbo(model, guide, obs, n=3)
    _refused(lambda: iwelbo.estimate(key, (batch,), guide_args), "vi.iwelbo")
    cubo = vi.cubo(model, guide, obs)
    _refused(lambda: cubo.estimate(key, (batch,), guide_args), "vi.cubo")
    # Laplace (and Bures-Wasserstein VI) read the potential of the one batch the guide saw
    delta = vi.auto_delta(model, obs, (batch,))
    _refused(lambda: vi.auto_laplace(delta, delta.guide_args), "potential", "vi.auto_laplace")


def test_fit_checks_what_it_subsamples():
    model = regression()
    guide, guide_args = vi.auto_normal(model, _observe_y(_first(10)), (_first(10),))
    objective = vi.elbo(model, guide, _observe_y)
    fit = lambda objective, **kw: vi.fit(  # noqa: E731
        objective, jax.random.key(0), (), guide_args, steps=2, progress=False, **kw
    )
    _refused(lambda: fit(objective, data=DATA, batch_size=10), "subsample=True")
    _refused(lambda: fit(objective, subsample=True), "no data")
    iwelbo = vi.iwelbo(model, guide, _observe_y, n=2)
    _refused(lambda: fit(iwelbo, data=DATA, batch_size=10, subsample=True), "vi.elbo")
    wrong = regression(subsample_of=1000)
    guide_w, _ = vi.auto_normal(wrong, _observe_y(_first(10)), (_first(10),))
    _refused(
        lambda: fit(vi.elbo(wrong, guide_w, _observe_y), data=DATA, batch_size=10, subsample=True),
        "subsample_of=[1000]",
        "4000",
    )

    @ppl.gen
    def unscaled(batch):
        w = ppl.normal(jnp.zeros(D), 1.0) @ "w"
        ppl.vmap(row, in_axes=(0, None))(batch["x"], w) @ "rows"

    guide_u, _ = vi.auto_normal(unscaled, _observe_y(_first(10)), (_first(10),))
    _refused(
        lambda: fit(
            vi.elbo(unscaled, guide_u, _observe_y), data=DATA, batch_size=10, subsample=True
        ),
        "no ppl.vmap(..., subsample_of=N)",
    )


def test_misuses_of_subsample_of_are_errors():
    _refused(lambda: ppl.vmap(row, subsample_of=0), "positive int")
    _refused(lambda: ppl.vmap(row, subsample_of=2.5), "positive int")  # pyright: ignore[reportArgumentType]
    small = regression(subsample_of=5)
    _refused(lambda: small.simulate(jax.random.key(0), (_first(10),)), "10 elements", "at most")
    vm = ppl.vmap(flip_local, in_axes=(0, None), subsample_of=N_FLIP)
    _refused(lambda: ppl.sum_out(vm, ppl.select("z")), "inside each element")
    _refused(
        lambda: vi.auto_normal(gaussian_model, _observe_x(XS[:B]), (XS[:B],)),
        "('points', 'z')",
        "amortised",
    )
    _refused(
        lambda: ppl.inference.enumerate_posterior(flip_model, _observe_x(XF[:B]), (XF[:B],)),
        "enumeration",
    )
