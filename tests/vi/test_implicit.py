"""The implicit family: its linearized density is exact for an affine sampler,
equals the closed form for any sampler, and its ELBO lies below the exact log
evidence of a conjugate model."""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import numpyro.distributions as nd
import optax
import pytest

import ppl
from ppl.inference import vi

Y = jnp.array([0.8, -0.3, 1.1])


@ppl.gen
def normal_normal():
    z = ppl.normal(jnp.zeros(3), 1.0) @ "z"
    return ppl.normal(z, 0.7) @ "y"


def log_evidence():
    return float(jnp.sum(nd.Normal(0.0, jnp.sqrt(1.0 + 0.49)).log_prob(Y)))


def test_affine_sampler_density_is_exact():
    linear = eqx.nn.Linear(2, 3, key=jax.random.key(4))  # k = 2 < d = 3: a singular J J^T
    family = vi.implicit_family(normal_normal, {"y": Y}, sampler=linear, noise_scale=0.3)
    exact = nd.MultivariateNormal(linear.bias, linear.weight @ linear.weight.T + 0.09 * jnp.eye(3))
    simulate = jax.jit(jax.vmap(lambda k: family.guide.simulate(k, family.guide_args)))
    traces = simulate(jax.random.split(jax.random.key(0), 20))
    np.testing.assert_allclose(traces.score, exact.log_prob(traces.choices["z"]), rtol=1e-5)


def test_marginal_weight_equals_the_linearized_density():
    family = vi.implicit_family(normal_normal, {"y": Y}, width=8, depth=2, noise_scale=0.2)
    key = jax.random.key(1)

    @jax.jit
    def both(args):
        trace = family.guide.simulate(key, args)
        # the same noise as the trace: the joint's own draw of eps and z
        joint = family._joint.simulate(jax.random.split(key)[0], args)
        direct = vi.linearized_log_density(
            family.sampler(args), family.noise_scale(args), joint.choices["z"], joint.choices["eps"]
        )
        return trace, joint, direct

    trace, joint, direct = both(family.guide_args)
    np.testing.assert_allclose(trace.choices["z"], joint.choices["z"])
    np.testing.assert_allclose(trace.score, direct, rtol=1e-5)


def test_elbo_lies_below_the_log_evidence():
    # a nonlinear sampler: the approximate bound (an affine one is exact, above)
    family = vi.implicit_family(normal_normal, {"y": Y}, width=8, depth=1, noise_scale=0.1)
    objective = vi.elbo(normal_normal, family.guide, {"y": Y})
    fitted = vi.fit(
        objective,
        jax.random.key(2),
        (),
        family.guide_args,
        optimizer=optax.adam(0.02),
        steps=150,
        num_samples=8,
        progress=False,
    )
    estimates = jax.jit(jax.vmap(lambda k: objective.estimate(k, (), fitted.guide_args)))(
        jax.random.split(jax.random.key(3), 1000)
    )
    mean, se = float(jnp.mean(estimates)), float(jnp.std(estimates) / np.sqrt(1000))
    assert mean - 5 * se < log_evidence()  # below, up to Monte Carlo error
    assert mean > log_evidence() - 0.5  # and the fit got close


def test_errors_name_the_latent_and_the_fix():
    @ppl.gen
    def positive():
        s = ppl.lognormal(0.0, 1.0) @ "s"
        return ppl.normal(0.0, s) @ "y"

    with pytest.raises(ppl.PPLError, match="'s' has support"):
        vi.implicit_family(positive, {"y": 1.0})
    with pytest.raises(ppl.PPLError, match="must return shape"):  # the layout is cached
        vi.implicit_family(
            normal_normal, {"y": Y}, sampler=eqx.nn.Linear(2, 4, key=jax.random.key(0))
        )
