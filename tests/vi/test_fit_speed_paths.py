"""fit's fast paths: the unguarded steps of its compiled loop recover the
contract of the guarded step, and the chunking does not change the result."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import ppl
from ppl import gen, normal
from ppl.inference import vi


def climbs_until(k):
    """With sgd(1.0) the parameter is t at step t; the estimate is NaN from step ``k`` on."""

    def objective(key, model_args, guide_args):
        a = guide_args[0]
        return a + jnp.where(a > k - 0.5, jnp.nan, 0.0)

    return objective


# chunks of 10: failing inside a chunk, at its second step, at its first (the
# last finite step is in the chunk before), and at the very first step
@pytest.mark.parametrize("k", [0, 1, 5, 10, 11, 20])
def test_a_non_finite_step_reports_the_last_finite_parameters(k):
    with pytest.raises(vi.NonFiniteLoss, match=f"step {k}:") as err:
        vi.fit(
            climbs_until(k),
            jax.random.key(0),
            (),
            (jnp.array(0.0),),
            optimizer=optax.sgd(1.0),
            steps=40,
            progress=False,
            chunk=10,
        )
    assert len(err.value.history) == k
    np.testing.assert_allclose(err.value.history, np.arange(k))
    assert float(err.value.guide_args[0]) == max(k - 1, 0)


@gen
def model():
    z = normal(0.0, 1.0) @ "z"
    return normal(z, 1.0) @ "x"


@gen
def guide(mu, log_s):
    return normal(mu, jnp.exp(log_s)) @ "z"


def test_the_default_chunks_give_the_result_of_fixed_ones():
    objective = vi.elbo(model, guide, ppl.ChoiceMap.d({"x": 1.0}))
    optimizer = optax.adam(0.05)
    start = (jnp.array(0.0), jnp.array(0.0))

    def run(chunk):
        return vi.fit(
            objective,
            jax.random.key(0),
            (),
            start,
            optimizer=optimizer,
            steps=1234,
            progress=False,
            chunk=chunk,
        )

    default, fixed = run(None), run(12)  # the default splits keys 1234 // 100 steps at a time
    np.testing.assert_allclose(default.history, fixed.history, rtol=1e-6)
    for a, b in zip(default.guide_args, fixed.guide_args):
        np.testing.assert_allclose(a, b, rtol=1e-6)


@gen
def two_latents():
    z = normal(0.0, 1.0) @ "z"
    c = ppl.flip(jax.nn.sigmoid(z)) @ "c"
    return normal(z + c, 1.0) @ "x"


@gen
def two_guide(mu, logit):
    normal(mu, 0.5) @ "z"
    return ppl.flip(jax.nn.sigmoid(logit)) @ "c"


def _grads(objective, guide_args, n=64):
    keys = jax.random.split(jax.random.key(3), n)
    grad = jax.jit(jax.vmap(lambda k: objective.grad_estimate(k, (), guide_args)[1]))
    return grad(keys)


def test_elbo_of_a_reparameterized_guide_is_the_plain_bound_by_default():
    obs = ppl.ChoiceMap.d({"x": 1.0})
    args = (jnp.array(0.3), jnp.array(-0.2))
    default = _grads(vi.elbo(model, guide, obs), args)
    plain = _grads(vi.elbo(model, guide, obs, rao_blackwell=False), args)
    for a, b in zip(default, plain):
        np.testing.assert_array_equal(a, b)


def test_elbo_is_rao_blackwellized_when_a_guide_choice_is_scored():
    obs = ppl.ChoiceMap.d({"x": 1.0})
    args = (jnp.array(0.3), jnp.array(-0.2))
    default = _grads(vi.elbo(two_latents, two_guide, obs), args, n=2000)
    plain = _grads(vi.elbo(two_latents, two_guide, obs, rao_blackwell=False), args, n=2000)
    # the same expectation (both unbiased), different per-sample estimates
    assert not np.allclose(default[1], plain[1])
    np.testing.assert_allclose(jnp.mean(default[1]), jnp.mean(plain[1]), atol=0.1)
    # ...and a reparameterized guide's choice, asked to use REINFORCE, is scored too
    scored = vi.elbo(model, guide, obs, strategies={"z": ppl.reinforce})
    plain_scored = vi.elbo(model, guide, obs, strategies={"z": ppl.reinforce}, rao_blackwell=False)
    a, b = _grads(scored, args), _grads(plain_scored, args)
    assert not np.allclose(a[0], b[0])
