"""ADEV through switch / cond / mix against exact derivatives.

Branches return values that depend on the arguments directly and add costs;
the branch index and the choices inside branches have their own strategies.
Exact answers come from closed forms (``_branch_programs.exact``) and
tolerances are 5 Monte Carlo standard errors.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import ppl
from _adev_util import assert_close_mc, grad_samples, value_samples
from _branch_programs import Branch, Spec, build, exact, specs_and_policies


@ppl.gen
def noisy(t):
    return ppl.normal(0.0, 1.0) @ "x" + t


@ppl.gen
def costly(t):
    ppl.add_cost(3.0 * t)
    return 2.0 * t


def _cond_program(strategy=None):
    @ppl.expectation
    def f(t):
        c = ppl.flip(0.3) @ "c"
        return ppl.cond(costly, noisy)(c, t) @ "s"

    return f if strategy is None else ppl.adev(f, {"c": strategy})


# E = 0.3 (2t + 3t) + 0.7 t: value 2.2 and derivative 2.2 at t = 1.
@pytest.mark.parametrize("strategy", [None, ppl.enum, ppl.enum_sequential, ppl.mvd])
def test_branch_value_and_cost_count(strategy):
    f = _cond_program(strategy)
    assert_close_mc(value_samples(f, (1.0,), n=4000), 2.2, what="value")
    assert_close_mc(grad_samples(f, (1.0,), n=4000), 2.2, what="d/dt")


def test_whole_call_reinforce_keeps_direct_dependence():
    # Before: the whole-call rule gave d/dt = 0 for a branch returning normal + t.
    @ppl.expectation
    def f(t):
        return ppl.cond(noisy, noisy)(True, t) @ "s"

    g = grad_samples(ppl.adev(f, {"s": ppl.reinforce}), (0.5,), n=2000)
    assert_close_mc(g, 1.0, what="whole-call reinforce")

    @ppl.expectation
    def h(t):
        return noisy(t) @ "call"

    assert_close_mc(grad_samples(ppl.adev(h, {"call": ppl.reinforce}), (0.5,), n=2000), 1.0)


def test_whole_call_reinforce_counts_costs():
    @ppl.expectation
    def f(t):
        return costly(t) @ "call"

    f = ppl.adev(f, {"call": ppl.reinforce})
    assert_close_mc(value_samples(f, (1.0,), n=500), 5.0)
    assert_close_mc(grad_samples(f, (1.0,), n=500), 5.0)


@pytest.mark.parametrize("strategy", [ppl.enum, ppl.enum_sequential])
def test_enum_on_mix_component_reverse_mode(strategy):
    # Before: reverse mode failed with "Transpose rule ... stop_gradient".
    @ppl.expectation
    def f(t):
        return ppl.mix(noisy, costly)(jnp.stack([t, 0.0]), t) @ "m"

    f = ppl.adev(f, {("m", "component"): strategy})

    def p(t):
        return jax.nn.sigmoid(t)  # probability of component 0

    def exact_fn(t):
        return p(t) * t + (1 - p(t)) * 5.0 * t

    g = grad_samples(f, (0.4,), n=2000)
    assert_close_mc(g, float(jax.grad(exact_fn)(0.4)), what="d/dt of a mixture")


def test_choice_inside_traced_branch_keeps_reparam():
    # Per-choice reparam inside a cond has the variance of the same program with jnp.where.
    @ppl.gen
    def sq(t):
        x = ppl.normal(t, 1.0) @ "x"
        return x**2

    @ppl.expectation
    def f(t):
        c = ppl.flip(0.5) @ "c"
        return ppl.cond(sq, sq)(c, t) @ "s"

    @ppl.expectation
    def plain(t):
        ppl.flip(0.5) @ "c"
        x = ppl.normal(t, 1.0) @ "x"
        return x**2

    g, ref = grad_samples(f, (0.7,), n=4000), grad_samples(plain, (0.7,), n=4000)
    assert_close_mc(g, 1.4)
    assert g.var() <= 1.2 * ref.var()


def test_continuation_strategy_inside_traced_branch_is_refused():
    @ppl.gen
    def b(t):
        return ppl.enum(ppl.flip)(0.5) @ "y" * t

    @ppl.expectation
    def f(t):
        c = ppl.flip(0.5) @ "c"
        return ppl.cond(b, b)(c, t) @ "s"

    with pytest.raises(ppl.PPLError, match=r"'y'.*index known only at run time"):
        f.grad_estimate(jax.random.key(0), (1.0,))


def test_known_index_runs_branch_inline_with_any_strategy():
    @ppl.gen
    def b(t):
        return jnp.where(ppl.enum(ppl.flip)(jax.nn.sigmoid(t)) @ "y", 1.0, 0.0)

    @ppl.expectation
    def f(t):
        return ppl.switch(b, noisy)(0, t) @ "s"

    g = f.grad_estimate(jax.random.key(0), (0.2,))[0]
    assert np.isclose(float(g), float(jax.grad(jax.nn.sigmoid)(0.2)), rtol=1e-5)


@settings(max_examples=12, deadline=None)
@given(specs_and_policies(), st.sampled_from([-0.6, 0.3, 0.9]))
def test_random_branch_programs_match_exact_derivative(spec_policy, theta):
    spec, policy = spec_policy
    f = ppl.adev(build(spec), policy)
    g = grad_samples(f, (theta,), n=4000, seed=3)
    assert_close_mc(
        g, float(jax.grad(lambda t: exact(spec, t))(theta)), what=f"{spec} with {policy}"
    )


def test_branch_generator_exact_value():
    # The closed form itself, checked once by brute force (the estimate of the value).
    spec = Spec(
        "switch",
        0.5,
        (
            Branch((1.0, -0.5, 1.0, 0.5), (1.0, 2.0), 1.0, 1.5),
            Branch(None, None, -2.0, 0.0),
            Branch((-1.0, 1.0, -0.5, 0.0), None, 0.0, 1.5),
        ),
        -0.5,
    )
    v = value_samples(ppl.adev(build(spec), {"i": ppl.enum}), (0.3,), n=4000)
    assert_close_mc(v, float(exact(spec, 0.3)), what="value")
