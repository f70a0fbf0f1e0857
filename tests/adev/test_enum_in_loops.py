"""``enum`` and ``mvd`` for choices inside ``ppl.vmap``/``ppl.repeat``, ``ppl.scan``
and traced branches: each run's choice is summed against the rest of its own
body, checked against closed-form gradients; a choice whose value leaves the
body is refused, naming the address and the fix."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import ppl
from ppl import add_cost, flip, normal, reinforce

from _adev_util import assert_close_mc, grad_samples

sig = jax.nn.sigmoid
XS = jnp.array([0.5, -1.0, 2.0])


@ppl.gen
def point(t, x):
    z = flip(sig(t + x)) @ "z"
    add_cost(jnp.where(z, x + 1.0, -1.0) * t)
    return x  # the body's output does not depend on z


def _point_exact(t):
    p = sig(t + XS)
    return jnp.sum(p * (XS + 1.0) * t - (1 - p) * t)


@pytest.mark.parametrize("strategy", [ppl.enum, ppl.enum_sequential, ppl.mvd], ids=str)
def test_a_choice_per_element_of_a_vmap_is_summed_against_its_own_terms(strategy):
    @ppl.expectation
    def f(t):
        ppl.vmap(point, in_axes=(None, 0))(t, XS) @ "pts"
        return 0.0

    g = grad_samples(ppl.adev(f, {("pts", "z"): strategy}), (0.3,), n=2000)
    exact = jax.grad(_point_exact)(0.3)
    if strategy is ppl.mvd:
        assert_close_mc(g, exact, what="mvd in vmap")
    else:  # exact: every sample is the derivative itself
        np.testing.assert_allclose(g, exact, rtol=1e-5, atol=1e-5)


@ppl.gen
def step(c, x):
    z = flip(sig(c + x)) @ "z"
    # a later choice inside the body whose distribution depends on z, scored
    w = reinforce(flip)(sig(jnp.where(z, 1.0, -1.0) * c)) @ "w"
    add_cost(jnp.where(z, x, 1.0 - x) * c + jnp.where(w, x, 0.0))
    # a choice that does not depend on z may feed the carry: its score reaches later steps
    u = reinforce(flip, baseline=0.5)(sig(c)) @ "u"
    return 0.9 * c + x + jnp.where(u, 0.5, 0.0), c


def _scan_exact(t):
    def one(c, xs):  # the expected costs from carry c on, summed over the paths of u
        if not xs:
            return 0.0
        x, p, q = xs[0], sig(c + xs[0]), sig(c)
        here = p * (x * c + sig(c) * x) + (1 - p) * ((1 - x) * c + sig(-c) * x)
        later = q * one(0.9 * c + x + 0.5, xs[1:]) + (1 - q) * one(0.9 * c + x, xs[1:])
        return here + later

    # a reinforce choice before the loop moves the loop's input
    q = sig(t)
    xs = [float(x) for x in XS]
    return q * one(t + 1.0, xs) + (1 - q) * one(t, xs)


@pytest.mark.parametrize("strategy", [ppl.enum, ppl.mvd], ids=str)
def test_a_choice_per_step_of_a_scan_with_scores_before_and_after_it(strategy):
    @ppl.expectation
    def f(t):
        b = reinforce(flip)(sig(t)) @ "b"
        ppl.scan(step)(t + jnp.where(b, 1.0, 0.0), XS) @ "loop"
        return 0.0

    g = grad_samples(ppl.adev(f, {("loop", "z"): strategy}), (0.3,), n=6000)
    assert_close_mc(g, jax.grad(_scan_exact)(0.3), what=f"{strategy} in scan")


def test_mvd_of_a_normal_per_element_of_a_repeat():
    @ppl.gen
    def sq(t):
        z = ppl.mvd(normal)(t, 1.0) @ "z"
        add_cost(z**2)
        return t

    @ppl.expectation
    def f(t):
        ppl.repeat(sq, 4)(t) @ "pts"
        return 0.0

    g = grad_samples(f, (0.3,), n=6000)
    assert_close_mc(g, 4 * 2 * 0.3, what="mvd normal in repeat")  # E = 4 (t^2 + 1)


def test_enum_inside_a_branch_of_a_traced_switch():
    @ppl.gen
    def summed(t):
        z = ppl.enum(flip)(sig(t)) @ "z"
        add_cost(jnp.where(z, 2.0, -1.0))
        return t

    @ppl.gen
    def plain(t):
        add_cost(t)
        return t

    @ppl.expectation
    def f(t):
        i = reinforce(flip)(0.4) @ "i"  # the index is known only at run time
        ppl.cond(summed, plain)(i, t) @ "s"
        return 0.0

    def exact(t):
        return 0.4 * (sig(t) * 2.0 - (1 - sig(t))) + 0.6 * t

    g = grad_samples(f, (0.3,), n=6000)
    assert_close_mc(g, jax.grad(exact)(0.3), what="enum in a traced branch")


def test_a_value_that_leaves_the_body_is_refused_with_the_fix():
    @ppl.gen
    def leaks(t, x):
        z = flip(sig(t + x)) @ "z"
        return jnp.where(z, x, 0.0)

    @ppl.expectation
    def f(t):
        ys = ppl.vmap(leaks, in_axes=(None, 0))(t, XS) @ "pts"
        return jnp.sum(ys)

    with pytest.raises(
        ppl.PPLError,
        match=r"enum at \('pts', 'z'\) is inside 'pts' \(ppl.vmap\).*return value or carry "
        r"depends on its value.*reinforce.*ppl.sum_out",
    ):
        ppl.adev(f, {("pts", "z"): ppl.enum}).grad_estimate(jax.random.key(0), (0.3,))


def test_a_recorded_choice_inside_a_guide_loop_is_refused_pointing_to_sum_out():
    guide = ppl.gen(lambda t: ppl.vmap(point, in_axes=(None, 0))(t, XS) @ "pts")

    @ppl.expectation
    def f(t):
        choices, logq = ppl.sim(guide)(t) @ "q"
        return logq

    with pytest.raises(ppl.PPLError, match=r"records for an enclosing ppl.sim.*sum_out\(guide"):
        ppl.adev(f, {("q", "pts", "z"): ppl.enum}).grad_estimate(jax.random.key(0), (0.3,))
