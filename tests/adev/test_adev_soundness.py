"""Estimator soundness at the edges: strategies on vmaps of distributions,
probabilities of exactly 0 and 1, samplers that reach the boundary of their
support, and programs too large to enumerate. Each case had a wrong answer or
an unhelpful failure before."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import ppl
from _adev_util import assert_close_mc, grad_samples

MUS = jnp.array([0.5, -1.0, 2.0])


def test_vmap_of_strategy_wrapped_distribution_runs_everywhere():
    @ppl.gen
    def model(mus):
        return ppl.vmap(ppl.reparam(ppl.normal), in_axes=(0, None))(mus, 1.0) @ "xs"

    tr = model.simulate(jax.random.key(0), (MUS,))
    assert tr["xs"].shape == (3,)
    assert np.isclose(model.assess(tr.choices, (MUS,))[0], tr.score)

    @ppl.expectation
    def f(mus):
        return jnp.sum((model(mus) @ "m") ** 2)

    assert_close_mc(grad_samples(f, (MUS,), n=2000), 2 * MUS, what="d/dmu E[sum x^2]")


@pytest.mark.parametrize("strategy", [ppl.reinforce, ppl.reparam])
def test_policy_on_a_vmap_of_a_distribution_applies_to_each_element(strategy):
    @ppl.expectation
    def f(mus):
        return jnp.sum((ppl.vmap(ppl.normal, in_axes=(0, None))(mus, 1.0) @ "xs") ** 2)

    g = grad_samples(ppl.adev(f, {"xs": strategy}), (MUS,), n=4000)
    assert_close_mc(g, 2 * MUS, what=strategy.name)


def test_policy_on_a_vmap_of_a_distribution_is_checked_per_element():
    # Before: {"xs": enum} on a vmap of normals was refused as a policy on a call,
    # and {"xs": reinforce} silently became whole-call REINFORCE.
    @ppl.expectation
    def f(mus):
        return jnp.sum(ppl.vmap(ppl.normal, in_axes=(0, None))(mus, 1.0) @ "xs")

    with pytest.raises(
        ppl.PPLError, match=r"enum cannot be used for the random choice 'xs' \(normal\)"
    ):
        ppl.adev(f, {"xs": ppl.enum}).grad_estimate(jax.random.key(0), (MUS,))


@pytest.mark.parametrize("p", [0.0, 1.0, 0.25])
@pytest.mark.parametrize("strategy", [ppl.enum, ppl.enum_sequential])
def test_enum_at_probability_zero_and_one(p, strategy):
    # d/dp E[f(b)] = f(1) - f(0) = 2 for every p; clamped probabilities gave 0 at p in {0, 1}.
    @ppl.expectation
    def f(p):
        return jnp.where(strategy(ppl.flip)(p) @ "b", 3.0, 1.0)

    assert np.isclose(float(f.grad_estimate(jax.random.key(0), (p,))[0]), 2.0, atol=1e-5)


@pytest.mark.parametrize("p", [0.0, 1.0])
def test_enum_binomial_and_categorical_at_the_boundary(p):
    @ppl.expectation
    def f(p):
        return (ppl.enum(ppl.binomial)(3, p) @ "k") ** 2 * 1.0

    # E[k^2] = 3p(1-p) + 9p^2
    assert np.isclose(float(f.grad_estimate(jax.random.key(0), (p,))[0]), 3 + 12 * p, atol=1e-4)

    @ppl.expectation
    def g(q):
        return (ppl.enum(ppl.categorical)(jnp.stack([q, 1 - q, 0.0])) @ "c") * 1.0

    assert np.isclose(float(g.grad_estimate(jax.random.key(0), (p,))[0]), -1.0, atol=1e-5)


def _zero_gamma_key():
    """A key for which float32 gamma(0.05) draws an exact 0 from numpyro's sampler."""
    import numpyro.distributions as nd

    keys = jax.random.split(jax.random.key(0), 20000)
    raw = jax.vmap(lambda k: nd.Gamma(0.05, 1.0).sample(k))(keys)
    hits = np.flatnonzero(np.asarray(raw) == 0.0)
    assert hits.size, "no exact zero in 20000 draws: the sampler changed"
    return keys[int(hits[0])]


@pytest.mark.parametrize("strategy", [ppl.reparam, ppl.reinforce])
def test_gamma_draw_at_zero_gives_finite_gradients(strategy):
    @ppl.expectation
    def f(a):
        x = strategy(ppl.gamma)(a, 1.0) @ "x"
        return x + ppl.gamma.log_density(x, (a, 1.0))

    key = _zero_gamma_key()
    # The site key of the first choice is fold_in(key, 0): search with that key.
    value, grad = f.estimate(key, (0.05,)), f.grad_estimate(key, (0.05,))[0]
    assert np.isfinite(float(value)) and np.isfinite(float(grad))


def test_gamma_reparam_stays_unbiased_at_small_concentration():
    @ppl.expectation
    def f(a):
        return ppl.gamma(a, 1.0) @ "x"

    assert_close_mc(grad_samples(f, (0.05,), n=20000), 1.0, what="d/da E[x] = 1")


def test_too_many_enumerated_choices_is_an_error_naming_them():
    # Before: 48 enumerated flips aborted the Python process inside XLA.
    @ppl.expectation
    def f(p):
        return sum(ppl.enum(ppl.flip)(p) @ f"b{i}" * 1.0 for i in range(48))

    with pytest.raises(ppl.PPLError, match=r"'b0' \(2\), 'b1' \(2\).*more than 65536"):
        f.grad_estimate(jax.random.key(0), (0.3,))


def test_enumerating_a_mixture_assignment_per_point_is_counted():
    comps = (
        ppl.gen(lambda: ppl.normal(-1.0, 1.0) @ "x"),
        ppl.gen(lambda: ppl.normal(1.0, 1.0) @ "x"),
        ppl.gen(lambda: ppl.normal(3.0, 1.0) @ "x"),
    )

    @ppl.expectation
    def f(logits):
        return sum(ppl.mix(*comps)(logits) @ f"p{i}" for i in range(30))

    policy = {(f"p{i}", "component"): ppl.enum for i in range(30)}
    with pytest.raises(ppl.PPLError, match=r"\('p0', 'component'\) \(3\)"):
        ppl.adev(f, policy).grad_estimate(jax.random.key(0), (jnp.zeros(3),))


def test_enum_on_binomial_with_traced_count_is_refused():
    @ppl.expectation
    def f(p, n):
        return (ppl.enum(ppl.binomial)(n, p) @ "k") * 1.0

    with pytest.raises(
        ppl.PPLError, match=r"'k' \(binomial\): its number of trials is a traced value"
    ):
        f.grad_estimate(jax.random.key(0), (0.3, 4))

    # A Python int count is static, so it enumerates: E[k] = 4p.
    @ppl.expectation
    def g(p):
        return (ppl.enum(ppl.binomial)(4, p) @ "k") * 1.0

    assert np.isclose(float(g.grad_estimate(jax.random.key(0), (0.3,))[0]), 4.0, atol=1e-4)


def test_callee_without_a_rule_is_an_error_naming_it():
    class Opaque(ppl.GenerativeFunction):
        """A user-defined generative function: a normal, with no ADEV rule."""

        def _simulate(self, key, args):
            return ppl.normal.simulate(key, args)

        def _assess(self, choices, args):
            return ppl.normal.assess(choices, args)

        def _generate(self, key, constraints, args):
            return ppl.normal.generate(key, constraints, args)

        def _update(self, key, trace, constraints, args):
            return ppl.normal.update(key, trace, constraints, args)

        def _regenerate(self, key, trace, selection, args):
            return ppl.normal.regenerate(key, trace, selection, args)

    opaque = Opaque()

    @ppl.expectation
    def f(m):
        return opaque(m, 1.0) @ "o"

    with pytest.raises(
        ppl.PPLError, match=r"Opaque at 'o' has no gradient-estimation rule.*ppl.reinforce"
    ):
        f.grad_estimate(jax.random.key(0), (0.5,))
    # With whole-call REINFORCE by policy it is estimated, unbiasedly: d/dm E[x] = 1.
    assert_close_mc(grad_samples(ppl.adev(f, {"o": ppl.reinforce}), (0.5,), n=4000), 1.0)
