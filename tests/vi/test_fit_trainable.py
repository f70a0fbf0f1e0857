"""fit trains what trainable= marks (the guide's arguments by default); data stays data."""

import re
import warnings
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import ppl
from ppl import gen, normal
from ppl.inference import vi

# ---------------------------------------------------------------------------
# Bayesian linear regression: covariates and a known noise scale are data
# ---------------------------------------------------------------------------


@gen
def regression(x, noise):  # y_i ~ N(w0 + w1 x_i, noise), w ~ N(0, I)
    w0 = normal(0.0, 1.0) @ "w0"
    w1 = normal(0.0, 1.0) @ "w1"
    return normal(w0 + w1 * x, noise) @ "y"


@gen
def mean_field(mu, log_s):
    normal(mu[0], jnp.exp(log_s[0])) @ "w0"
    normal(mu[1], jnp.exp(log_s[1])) @ "w1"


def test_regression_fits_the_exact_posterior_and_leaves_covariates_and_noise_alone():
    kx, ky = jax.random.split(jax.random.key(0))
    x = jax.random.normal(kx, (20,))
    x = x - jnp.mean(x)  # centred, so the exact posterior factorises and mean field is exact
    noise = jnp.array(1.0)  # weakly typed, float: trained by the old default
    y = 0.3 + 0.8 * x + noise * jax.random.normal(ky, (20,))
    x_before, noise_before = np.array(x), np.array(noise)

    # Exact posterior: precision I + X^T X / noise^2, mean = covariance X^T y / noise^2.
    X = np.stack([np.ones(20), np.asarray(x, np.float64)], 1)
    cov = np.linalg.inv(np.eye(2) + X.T @ X / 1.0)
    mean = cov @ X.T @ np.asarray(y, np.float64)

    # Tolerance from the optimisation noise. With plain SGD at step eta, the objective
    # averaged over N samples, a gaussian target and the guide at it, the reparameterised
    # gradient of each guide parameter (a mean, or a log sd) has variance v = h / N
    # where h is the curvature (h = precision for a mean, v = 2/N, h = 2 for a log sd),
    # so the stationary variance of the iterate, eta v / (h (2 - eta h)), is at most
    # eta / N when eta h <= 1. Steps: 300 at 0.02 to get there, then 1000 at eta = 0.002
    # (four relaxation times of the slowest parameter, 1 / (2 eta) steps).
    eta, n = 0.002, 32
    schedule = optax.piecewise_constant_schedule(0.02, {300: eta / 0.02})
    objective = vi.elbo(regression, mean_field, ppl.ChoiceMap.d({"y": y}))
    res = vi.fit(
        objective,
        jax.random.key(1),
        (x, noise),
        (jnp.zeros(2), jnp.zeros(2)),
        optimizer=optax.sgd(schedule),
        steps=1300,
        num_samples=n,
        progress=False,
    )
    tol = 5 * np.sqrt(eta / n)
    mu, log_s = res.guide_args
    np.testing.assert_array_less(np.abs(np.asarray(mu) - mean), tol)
    np.testing.assert_array_less(np.abs(np.asarray(log_s) - 0.5 * np.log(np.diag(cov))), tol)
    # The data come back as they went in: the same objects, bitwise unchanged.
    assert res.model_args[0] is x and res.model_args[1] is noise
    assert np.array_equal(np.asarray(res.model_args[0]), x_before)
    assert np.array_equal(np.asarray(res.model_args[1]), noise_before)


# ---------------------------------------------------------------------------
# Training model parameters when asked
# ---------------------------------------------------------------------------


@gen
def prior_mean_model(m):  # z ~ N(m, 1), x ~ N(z, 1): the marginal of x is N(m, 2)
    z = normal(m, 1.0) @ "z"
    return normal(z, 1.0) @ "x"


@gen
def gaussian_guide(mu, log_s):
    return normal(mu, jnp.exp(log_s)) @ "z"


def test_trainable_true_true_trains_a_model_parameter():
    # With x = 1 observed, the ELBO's optimum over m is the maximum-likelihood m = 1
    # (the guide becomes the exact posterior and the ELBO the log evidence log N(1; m, 2)).
    objective = vi.elbo(prior_mean_model, gaussian_guide, ppl.ChoiceMap.d({"x": 1.0}))
    start = ((jnp.array(0.0),), (jnp.array(0.0), jnp.array(0.0)))
    kw: dict[str, Any] = dict(
        optimizer=optax.adam(optax.cosine_decay_schedule(0.1, 600)),
        steps=600,
        num_samples=8,
        progress=False,
    )
    both = vi.fit(objective, jax.random.key(2), *start, trainable=(True, True), **kw)
    assert abs(float(both.model_args[0]) - 1.0) < 0.1
    # A finer mask naming the one model argument trains the same leaves: the same result.
    finer = vi.fit(objective, jax.random.key(2), *start, trainable=((True,), True), **kw)
    assert float(finer.model_args[0]) == float(both.model_args[0])
    # By default the model's argument is data.
    default = vi.fit(objective, jax.random.key(2), *start, **kw)
    assert default.model_args[0] is start[0][0]


def _quadratic(key, model_args, guide_args):  # a cheap objective: maximised at guide_args[0] = 1
    return -jnp.sum((guide_args[0] - 1.0) ** 2)


def test_masks_pick_leaves_inside_the_arguments():
    res = vi.fit(
        _quadratic,
        jax.random.key(0),
        (),
        (jnp.zeros(2), jnp.array(5.0)),
        trainable=(False, (True, False)),
        optimizer=optax.sgd(0.5),
        steps=5,
        progress=False,
    )
    assert np.allclose(res.guide_args[0], 1.0) and float(res.guide_args[1]) == 5.0
    # A function leaf -> bool is a filter too; it is applied to every leaf under it.
    res = vi.fit(
        _quadratic,
        jax.random.key(0),
        (jnp.ones(2),),
        (jnp.zeros(2),),
        trainable=eqx.is_inexact_array,
        optimizer=optax.sgd(0.5),
        steps=5,
        progress=False,
    )
    assert res.model_args[0] is not None and np.allclose(res.guide_args[0], 1.0)


# ---------------------------------------------------------------------------
# Warnings for leaves that are marked but cannot be trained
# ---------------------------------------------------------------------------


def test_an_integer_array_in_guide_args_is_named_in_a_warning():
    counts = jnp.array([1, 2, 3])
    with pytest.warns(UserWarning, match=r"guide_args\[1\] \(an int32 array of shape \(3,\)\)"):
        res = vi.fit(
            _quadratic, jax.random.key(0), (), (jnp.zeros(2), counts), steps=2, progress=False
        )
    assert res.guide_args[1] is counts


class Net(eqx.Module):
    w: jax.Array
    n: jax.Array


def test_warnings_name_paths_inside_modules_and_python_numbers():
    net = Net(jnp.ones(2), jnp.array(3))
    with pytest.warns(UserWarning) as record:
        res = vi.fit(
            _quadratic,
            jax.random.key(0),
            (net, 0.5),
            (jnp.zeros(2),),
            trainable=(True, True),
            steps=2,
            progress=False,
        )
    (message,) = [str(w.message) for w in record]
    assert (
        "model_args[0].n (an int32 array" in message and "model_args[1] (a Python float)" in message
    )
    assert "model_args[0].w" not in message  # a float array: trained, not warned about
    assert res.model_args[1] == 0.5 and res.model_args[0].n is net.n


def test_no_warning_for_booleans_or_for_leaves_marked_false():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        vi.fit(
            _quadratic,
            jax.random.key(0),
            (jnp.array(2), 3.0),
            (jnp.zeros(2), jnp.array(True), False),
            steps=2,
            progress=False,
        )


# ---------------------------------------------------------------------------
# Errors
# ---------------------------------------------------------------------------


def _matches_all(*fragments):
    return "(?s)" + "".join(f"(?=.*{re.escape(f)})" for f in fragments)


def test_nothing_to_train_names_the_leaves_looked_at_and_the_fix():
    with pytest.raises(
        ppl.PPLError,
        match=_matches_all(
            "nothing to train",
            "guide_args[0] (a Python int)",
            "guide_args[1] (a Python float)",
            "jnp.array(0.0)",
            "trainable=(True, True)",
        ),
    ):
        vi.fit(_quadratic, jax.random.key(0), (), (0, 1.0), steps=2, progress=False)
    # Float model arguments are data by default; the error says how to train them.
    with pytest.raises(
        ppl.PPLError,
        match=_matches_all(
            "nothing to train",
            "marks no leaf",
            "model_args[0]",
            "are data unless marked",
            "trainable=(True, True)",
        ),
    ):
        vi.fit(_quadratic, jax.random.key(0), (jnp.zeros(2),), (), steps=2, progress=False)


@pytest.mark.parametrize(
    "trainable, fragments",
    [
        ((True,), ["does not match (model_args, guide_args)", "one entry per argument"]),
        ((False, (True, True, True)), ["does not match", "((False, True), True)"]),
        ((False, 1), ["holds 1", "True, False or a function"]),
        (lambda leaf: 1, ["returned 1", "must return True or False"]),
    ],
)
def test_malformed_trainable_errors(trainable, fragments):
    with pytest.raises(ppl.PPLError, match=_matches_all(*fragments)):
        vi.fit(
            _quadratic,
            jax.random.key(0),
            (),
            (jnp.zeros(2), jnp.zeros(1)),
            trainable=trainable,
            steps=2,
            progress=False,
        )


@pytest.mark.parametrize(
    "data, fragments",
    [
        (jnp.zeros((0, 3)), ["0 examples", "(0, 3)", "at least one example", "data=None"]),
        ({"x": jnp.zeros((0,)), "y": jnp.zeros((0, 2))}, ["0 examples", "shapes (0,), (0, 2)"]),
        ({}, ["holds no arrays", "data=None"]),
        ((), ["holds no arrays", "leading axis"]),
    ],
)
def test_empty_data_is_an_error_that_says_what_to_do(data, fragments):
    with pytest.raises(ppl.PPLError, match=_matches_all(*fragments)):
        vi.fit(
            _quadratic, jax.random.key(0), (), (jnp.zeros(2),), data=data, steps=2, progress=False
        )
