"""A ``ppl.cond`` with an index known only at run time inside ``ppl.sim``: the
choices inside the branches keep their own strategies (reparam here), checked
against closed forms, with lower variance than estimating the call whole."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

import ppl
from ppl import flip, normal
from ppl.inference import vi

from _adev_util import assert_close_mc, grad_samples

sig = jax.nn.sigmoid
A = 0.3
THETA = jnp.array([0.4, 1.0, -0.5])
SCALES = (1.0, 2.0)


@ppl.gen
def near(theta):
    return normal(theta[1], SCALES[0]) @ "m"


@ppl.gen
def far(theta):
    m = normal(theta[2], SCALES[1]) @ "m"
    normal(m, 1.0) @ "extra"  # made by one branch only: a masked entry
    return m


@ppl.gen
def guide(theta):
    b = flip(sig(theta[0])) @ "b"
    return ppl.cond(near, far)(b, theta) @ "s"


def _exact(theta):
    """E[-(m - a)^2 - log q(b, m, extra)]: minus the squared distance, plus the entropy."""
    p = sig(theta[0])
    means = (theta[1], theta[2])
    weights = (p, 1 - p)
    sq = sum(w * ((mu - A) ** 2 + s**2) for w, mu, s in zip(weights, means, SCALES))
    h_flip = -(p * jnp.log(p) + (1 - p) * jnp.log(1 - p))
    h_normal = 0.5 * jnp.log(2 * jnp.pi * jnp.e)
    h_m = sum(w * (h_normal + jnp.log(s)) for w, s in zip(weights, SCALES))
    return -sq + h_flip + h_m + (1 - p) * h_normal  # extra ~ N(m, 1) in the far branch


@ppl.expectation
def objective(theta):
    choices, logq = ppl.sim(guide)(theta) @ "q"
    return -((choices["s", "m"] - A) ** 2) - logq


def test_choices_in_a_run_time_branch_under_sim_keep_their_strategies():
    g = grad_samples(objective, (THETA,), n=6000)
    assert_close_mc(g, jax.grad(_exact)(THETA), what="d/dtheta with reparam inside")
    whole = grad_samples(ppl.adev(objective, {("q", "s"): ppl.reinforce}), (THETA,), n=6000)
    assert_close_mc(whole, jax.grad(_exact)(THETA), what="d/dtheta, the call estimated whole")
    # reparam on the branch means: below the score function's variance (measured: 0.6x, 0.5x)
    assert np.all(g.var(axis=0)[1:] < 0.7 * whole.var(axis=0)[1:]), (g.var(0), whole.var(0))


def test_an_elbo_whose_guide_has_a_run_time_branch():
    @ppl.gen
    def model():
        b = flip(0.3) @ "b"
        m = ppl.cond(near, far)(b, jnp.array([0.0, 1.0, -1.0])) @ "s"
        return normal(m, 1.0) @ "y"

    obs = ppl.ChoiceMap.d({"y": 0.5})
    objective = vi.elbo(model, guide, obs)
    keys = jax.random.split(jax.random.key(0), 4000)
    per_choice = jax.jit(jax.vmap(lambda k: objective.estimate(k, (), (THETA,))))(keys)
    whole = vi.elbo(model, guide, obs, strategies={"s": ppl.reinforce})
    by_call = jax.jit(jax.vmap(lambda k: whole.estimate(k, (), (THETA,))))(
        jax.random.split(jax.random.key(1), 4000)
    )
    # the same ELBO, by two estimators
    assert_close_mc(np.asarray(per_choice), float(np.mean(by_call)), k=6.0, what="ELBO")
    g = jax.jit(jax.vmap(lambda k: objective.grad_estimate(k, (), (THETA,))[1][0]))(keys[:500])
    assert np.all(np.isfinite(np.asarray(g)))
