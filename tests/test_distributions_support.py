"""Values stay inside their support: draws never land on the boundary of an open
support, and values given outside a discrete support score -inf under jit."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import numpyro.distributions as nd
import pytest

import ppl

# With this key, float32 numpyro draws gamma(0.05, 1) as exactly 0 (the true value
# is below the smallest normal float32).
ZERO_KEY = jax.random.key(7)


def test_the_seed_gives_an_exact_zero_in_numpyro():
    assert nd.Gamma(0.05, 1.0).sample(ZERO_KEY) == 0.0
    assert nd.Gamma(0.05, 1.0).rsample(ZERO_KEY) == 0.0


@pytest.mark.parametrize("reparam", [False, True])
def test_gamma_draw_is_positive_and_its_density_finite(reparam):
    d = ppl.gamma.dist(0.05, 1.0)
    x = ppl.gamma.draw(ZERO_KEY, d, reparam=reparam)
    assert x > 0 and jnp.isfinite(x)
    assert jnp.isfinite(ppl.gamma.log_density(x, (0.05, 1.0)))


def test_simulate_of_gamma_with_a_small_concentration_has_a_finite_score():
    tr = ppl.gamma.simulate(ZERO_KEY, (0.05, 1.0))
    assert tr.retval > 0 and jnp.isfinite(tr.score)

    @ppl.gen
    def m(a):
        return ppl.gamma(a, 1.0) @ "g"

    tr = m.simulate(ZERO_KEY, (jnp.full(2000, 0.05),))
    assert bool(jnp.all(tr.retval > 0)) and jnp.isfinite(tr.score)


def test_pathwise_derivative_of_a_draw_is_kept_where_not_clamped_and_finite_where_clamped():
    def x_of(a, key):
        return ppl.gamma.draw(key, ppl.gamma.dist(a, 1.0), reparam=True)

    key = jax.random.key(1)
    expected = jax.grad(lambda a: nd.Gamma(a, 1.0).rsample(key))(2.0)
    assert jax.grad(x_of)(2.0, key) == expected
    g = jax.grad(lambda a: ppl.gamma.log_density(x_of(a, ZERO_KEY), (a, 1.0)))(0.05)
    assert jnp.isfinite(g)


def test_unit_interval_and_simplex_draws_stay_inside():
    b = ppl.beta.draw(ZERO_KEY, ppl.beta.dist(jnp.full(500, 0.01), 0.01))
    assert bool(jnp.all((b > 0) & (b < 1)))
    alpha = jnp.full((500, 2), 0.01)  # the shapes of the beta draw: one compiled sampler
    v = ppl.dirichlet.draw(ZERO_KEY, ppl.dirichlet.dist(alpha))
    assert bool(jnp.all(v > 0))
    np.testing.assert_allclose(v.sum(-1), 1.0, atol=1e-6)
    assert jnp.isfinite(ppl.dirichlet.log_density(v, (alpha,)))


def test_draw_of_a_discrete_distribution_has_its_value_dtype():
    assert ppl.flip.draw(ZERO_KEY, ppl.flip.dist(0.5)).dtype == jnp.bool_
    assert jnp.issubdtype(
        ppl.categorical.draw(ZERO_KEY, ppl.categorical.dist(jnp.ones(3) / 3)).dtype, jnp.integer
    )
