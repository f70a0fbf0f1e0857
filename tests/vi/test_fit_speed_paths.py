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
