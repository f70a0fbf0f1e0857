"""gradient_variance differentiates what trainable= marks (the guide's arguments by default),
never data."""

import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import ppl
from ppl import gen, normal
from ppl.inference import vi


@gen
def model(m, x):  # w ~ N(m, 1), y ~ N(x w, 1): m is a prior mean, x a covariate (data)
    w = normal(m, 1.0) @ "w"
    return normal(w * x, 1.0) @ "y"


@gen
def guide(mu, log_s):
    return normal(mu, jnp.exp(log_s)) @ "w"


Y, M, X, MU, S = 1.0, 0.3, 2.0, 0.5, 0.5
ARGS = ((jnp.array(M), jnp.array(X)), (jnp.array(MU), jnp.array(np.log(S))))
N = 4000
# The ELBO's exact gradients, from w ~ N(MU, S^2) (reparameterised, so the entropy term does not
# move with mu):
#   d/dm  = E[w - m]                          = MU - M
#   d/dx  = E[(y - x w) w] = y MU - x (MU^2 + S^2)
#   d/dmu = E[-(w - m) + (y - x w) x]         = -(MU - M) + X Y - X^2 MU
D_M, D_X, D_MU = MU - M, Y * MU - X * (MU**2 + S**2), -(MU - M) + X * Y - X**2 * MU


def _objective():
    return vi.elbo(model, guide, ppl.ChoiceMap.d({"y": Y}))


def _close(stats, path, exact):
    mean, se = stats.mean, stats.standard_error()
    for i in path:
        mean, se = mean[i], se[i]
    assert abs(float(mean) - exact) < 5 * float(se), (path, float(mean), exact, float(se))


def test_by_default_the_model_arguments_are_data_and_get_no_entry():
    stats = vi.gradient_variance(_objective(), jax.random.key(0), *ARGS, n=N)
    assert stats.mean[0] == (None, None) and stats.variance[0] == (None, None)
    assert jax.tree.leaves(stats.standard_error()[0]) == []
    _close(stats, (1, 0), D_MU)
    assert stats.n == N


def test_true_true_reports_the_model_parameter_and_finer_masks_pick_it_alone():
    default = vi.gradient_variance(_objective(), jax.random.key(0), *ARGS, n=N)
    both = vi.gradient_variance(_objective(), jax.random.key(0), *ARGS, n=N, trainable=(True, True))
    _close(both, (0, 0), D_M)
    _close(both, (0, 1), D_X)
    _close(both, (1, 0), D_MU)
    # The estimate of d/dm is w - m with w ~ N(MU, S^2): variance S^2 (standard error of a
    # normal sample variance: S^2 sqrt(2 / (n - 1))).
    assert abs(float(both.variance[0][0]) - S**2) < 5 * S**2 * np.sqrt(2 / (N - 1))
    # The same key gives the same guide gradients, whatever else is differentiated.
    np.testing.assert_allclose(
        np.asarray(both.mean[1]), np.asarray(default.mean[1]), rtol=1e-5, atol=1e-6
    )
    # The prior mean alone, the covariate left as data.
    m_only = vi.gradient_variance(
        _objective(), jax.random.key(0), *ARGS, n=N, trainable=((True, False), True)
    )
    assert m_only.mean[0][1] is None and m_only.variance[0][1] is None
    np.testing.assert_allclose(
        float(m_only.mean[0][0]), float(both.mean[0][0]), rtol=1e-5, atol=1e-6
    )


def _matches_all(*fragments):
    return "(?s)" + "".join(f"(?=.*{re.escape(f)})" for f in fragments)


def test_errors_and_warnings_name_gradient_variance():
    with pytest.raises(
        ppl.PPLError,
        match=_matches_all(
            "gradient_variance found nothing to train", "model_args[0]", "trainable=(True, True)"
        ),
    ):
        vi.gradient_variance(_objective(), jax.random.key(0), ARGS[0], (), n=10)
    with pytest.raises(
        ppl.PPLError, match=_matches_all("gradient_variance's trainable=", "does not match")
    ):
        vi.gradient_variance(_objective(), jax.random.key(0), *ARGS, n=10, trainable=(True,))
    for n in (1, 0, 2.5, True):
        with pytest.raises(
            ppl.PPLError, match=_matches_all("gradient_variance needs n", "at least 2", f"n={n!r}")
        ):
            # 2.5 and True are the wrong types this checks for
            vi.gradient_variance(_objective(), jax.random.key(0), *ARGS, n=n)  # pyright: ignore[reportArgumentType]

    def quadratic(key, model_args, guide_args):
        return -jnp.sum((guide_args[0] - 1.0) ** 2)

    with pytest.warns(
        UserWarning,
        match=re.escape("gradient_variance does not train guide_args[1] (a Python int)"),
    ):
        stats = vi.gradient_variance(quadratic, jax.random.key(0), (), (jnp.zeros(2), 3), n=2)
    assert stats.mean[1][1] is None
    np.testing.assert_allclose(np.asarray(stats.mean[1][0]), 2.0)
