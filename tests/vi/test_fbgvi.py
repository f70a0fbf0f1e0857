"""FB-GVI: the exact Gaussian target is reached, iterates stay symmetric positive
definite, the deterministic variant's objective decreases on a log-concave
target, and the result is a full-rank automatic guide."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.linalg
import scipy.optimize

import ppl
from ppl.inference import vi

X = jnp.array([[1.0, 0.5], [0.3, -1.0], [-0.7, 0.2], [1.2, 1.1], [0.1, -0.4]])
Y = jnp.array([1.0, -0.5, 0.3, 2.0, 0.1])


@ppl.gen
def regression():
    w = ppl.normal(jnp.zeros(2), 1.0) @ "w"
    return ppl.normal(X @ w, 0.5) @ "y"


def exact_posterior():
    prec = np.eye(2) + np.asarray(X).T @ np.asarray(X) / 0.25
    cov = np.linalg.inv(prec)
    return cov @ np.asarray(X).T @ np.asarray(Y) / 0.25, cov


@pytest.fixture(scope="module")
def auto():
    return vi.auto_multivariate_normal(regression, {"y": Y})


def test_deterministic_reaches_the_exact_gaussian_posterior(auto):
    mean, cov = exact_posterior()
    h = 0.5 / float(np.linalg.eigvalsh(np.linalg.inv(cov)).max())
    result = vi.fit_fbgvi(auto, jax.random.key(0), steps=400, step_size=h, num_points=25)
    np.testing.assert_allclose(result.state.mean, mean, atol=1e-4)
    np.testing.assert_allclose(result.state.cov, cov, atol=1e-4)
    # the fitted guide is the full-rank family with that covariance
    guide = result.auto_guide()
    np.testing.assert_allclose(guide.covariance(), cov, atol=1e-4)
    assert set(result.guide_args()[0]) == {"loc", "raw_tril"}


def test_stochastic_mean_is_within_its_stationary_spread(auto):
    # With a quadratic potential the Hessian is exact, so the covariance
    # recursion is deterministic; the mean is a linear recursion driven by the
    # mean of n draws, whose stationary covariance S solves
    # S = A S A^T + h^2 P C P / n with A = I - h P.
    mean, cov = exact_posterior()
    prec = np.linalg.inv(cov)
    h, n = 0.5 / float(np.linalg.eigvalsh(prec).max()), 4
    result = vi.fit_fbgvi(
        auto, jax.random.key(1), steps=400, step_size=h, variant="stochastic", num_points=n
    )
    np.testing.assert_allclose(result.state.cov, cov, atol=1e-4)
    a = np.eye(2) - h * prec
    spread = scipy.linalg.solve_discrete_lyapunov(a, h**2 * prec @ cov @ prec / n)
    assert np.all(np.abs(np.asarray(result.state.mean) - mean) < 5 * np.sqrt(np.diag(spread)))


def _logistic_potential():
    xs = jax.random.normal(jax.random.key(3), (40, 2))
    labels = (xs @ jnp.array([1.5, -1.0]) > 0).astype(float)

    def potential(w):
        logits = xs @ w
        return 0.5 * w @ w - jnp.sum(labels * logits - jax.nn.softplus(logits))

    smooth = 1.0 + 0.25 * float(jnp.linalg.eigvalsh(xs.T @ xs).max())
    return potential, smooth


def test_iterates_stay_symmetric_positive_definite():
    potential, smooth = _logistic_potential()
    h = 1.0 / smooth  # with Stein's noisy Hessians, I - hH is indefinite in some steps
    solver = vi.fbgvi(potential, h, variant="stochastic", num_points=4, hessian="stein")

    def body(state, k):
        new, _ = solver.step(k, state)
        return new, new.cov

    keys = jax.random.split(jax.random.key(0), 200)
    _, covs = jax.lax.scan(body, solver.init(jnp.zeros(2)), keys)
    covs = np.asarray(covs)
    assert np.all(np.isfinite(covs))
    np.testing.assert_allclose(covs, np.swapaxes(covs, 1, 2), atol=1e-6)
    assert np.linalg.eigvalsh(covs).min() >= h * (1 - 1e-4)


def test_deterministic_objective_decreases_on_a_log_concave_target():
    potential, smooth = _logistic_potential()
    start = vi.GaussianState(jnp.zeros(2), 4.0 * jnp.eye(2))
    result = vi.fit_fbgvi(
        potential, jax.random.key(0), steps=60, step_size=1.0 / smooth, num_points=400, init=start
    )
    neg_elbo = -np.asarray(result.history, np.float64)  # KL up to the log evidence
    assert np.all(np.diff(neg_elbo) <= 1e-5 * np.abs(neg_elbo[1:]))
    assert neg_elbo[-1] < neg_elbo[0] - 1.0


def test_entropy_prox_is_the_jko_step_of_the_negative_entropy():
    # For 1-d Gaussians with one mean, W2 is the difference of the scales s:
    # the step minimizes -log s' + (s' - s)^2 / (2h).
    s, h = 0.7, 0.3
    found = scipy.optimize.minimize_scalar(
        lambda t: -np.log(t) + (t - s) ** 2 / (2 * h), bounds=(1e-3, 10), method="bounded"
    )
    best = float(found["x"])  # pyright: ignore[reportIndexIssue]
    got = float(vi.entropy_prox(jnp.array([[s**2]]), h)[0, 0])
    assert abs(np.sqrt(got) - best) < 1e-4
    # from a singular covariance (a forward step through M = 0): h I
    np.testing.assert_allclose(vi.entropy_prox(jnp.zeros((2, 2)), h), h * np.eye(2), rtol=1e-6)


def test_errors_say_what_to_pass():
    with pytest.raises(ppl.PPLError, match="init=GaussianState"):
        vi.fit_fbgvi(lambda x: x @ x, jax.random.key(0))
    with pytest.raises(ppl.PPLError, match="variant"):
        vi.fbgvi(lambda x: x @ x, 0.1, variant="exact")
    with pytest.raises(ppl.PPLError, match="positive number"):
        vi.fbgvi(lambda x: x @ x, -1.0)
    result = vi.FBGVIResult(vi.GaussianState(jnp.zeros(1), jnp.eye(1)), jnp.zeros(1), None)
    with pytest.raises(ppl.PPLError, match="bare potential"):
        result.auto_guide()
