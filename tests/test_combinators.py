"""Combinators: vmap/repeat, scan, switch/cond, mix, checked by hand against
numpyro densities, under jit/vmap/grad, and for their error messages."""

from __future__ import annotations

import re

import jax
import jax.numpy as jnp
import numpy as np
import numpyro.distributions as nd
import pytest

import ppl
from ppl import gen, normal
from _strategies import assert_choices_equal, assert_close

KEY = jax.random.key(0)


def raises(exc, *fragments):
    return pytest.raises(exc, match="(?s)" + "".join(f"(?=.*{re.escape(f)})" for f in fragments))


def lp(d, v):
    return jnp.sum(d.log_prob(v))


# ---------------------------------------------------------------------------
# vmap / repeat
# ---------------------------------------------------------------------------


@gen
def point(x, slope):
    y = normal(slope * x, 0.5) @ "y"
    o = ppl.flip(jax.nn.sigmoid(y)) @ "o"
    return y


@gen
def regression(xs):
    slope = normal(0.0, 1.0) @ "slope"
    ys = ppl.vmap(point, in_axes=(0, None))(xs, slope) @ "pts"
    noise = ppl.repeat(ppl.gamma, 3)(2.0, 1.0) @ "noise"
    return ys.sum() + noise.sum()


XS = jnp.array([-1.0, 0.0, 0.5, 2.0])


def _regression_logp(c):
    s, ys, os, noise = c["slope"], c["pts", "y"], c["pts", "o"], c["noise"]
    return (
        lp(nd.Normal(0.0, 1.0), s)
        + lp(nd.Normal(s * XS, 0.5), ys)
        + lp(nd.Bernoulli(probs=jax.nn.sigmoid(ys)), os.astype(jnp.float32))
        + lp(nd.Gamma(2.0, 1.0), noise)
    )


def test_vmap_and_repeat_stack_choices_and_sum_scores():
    tr = regression.simulate(KEY, (XS,))
    c = tr.choices
    assert c["pts", "y"].shape == (4,) and c["pts", "o"].shape == (4,) and c["noise"].shape == (3,)
    assert c["pts", "o"].dtype == jnp.bool_
    assert len(set(np.asarray(c["noise"]).tolist())) == 3  # independent repeats
    assert_close(tr.score, _regression_logp(c))
    assert_close(regression.assess(c, (XS,))[0], tr.score)
    assert_close(tr.retval, c["pts", "y"].sum() + c["noise"].sum())


def test_vmap_generate_update_regenerate():
    obs = ppl.ChoiceMap.d({("pts", "o"): jnp.array([True, False, True, True])})
    tr, w = regression.generate(KEY, obs, (XS,))
    c = tr.choices
    np.testing.assert_array_equal(c["pts", "o"], obs["pts", "o"])
    assert_close(w, lp(nd.Bernoulli(probs=jax.nn.sigmoid(c["pts", "y"])), obs["pts", "o"].astype(jnp.float32)))
    new_y = jnp.array([0.1, 0.2, 0.3, 0.4])
    new, uw, discard = regression.update(KEY, tr, {("pts", "y"): new_y})
    np.testing.assert_array_equal(discard["pts", "y"], c["pts", "y"])
    assert_close(uw, new.score - tr.score)
    assert_close(new.score, _regression_logp(new.choices))
    back, bw, _ = regression.update(KEY, new, discard)
    assert_choices_equal(back.choices, c)
    assert_close(bw, -uw)
    reg, rw = regression.regenerate(jax.random.key(9), tr, ppl.select(("pts", "y")))
    assert np.all(np.asarray(reg.choices["pts", "y"]) != np.asarray(c["pts", "y"]))
    np.testing.assert_array_equal(reg.choices["pts", "o"], c["pts", "o"])
    # only the flips' densities change (the ys are resampled from their prior)
    expected = lp(nd.Bernoulli(probs=jax.nn.sigmoid(reg.choices["pts", "y"])), c["pts", "o"].astype(jnp.float32)) - lp(
        nd.Bernoulli(probs=jax.nn.sigmoid(c["pts", "y"])), c["pts", "o"].astype(jnp.float32)
    )
    assert_close(rw, expected)
    same, zw = regression.regenerate(jax.random.key(9), tr, ppl.select())
    assert float(zw) == 0.0
    assert_choices_equal(same.choices, c)


def test_vmap_of_a_distribution_and_direct_interface():
    v = ppl.vmap(ppl.normal, in_axes=(0, None))
    tr = v.simulate(KEY, (jnp.arange(3.0), 2.0))
    assert tr.retval.shape == (3,)
    assert_close(tr.score, lp(nd.Normal(jnp.arange(3.0), 2.0), tr.retval))
    logp, _ = v.assess(ppl.ChoiceMap.value(jnp.zeros(3)), (jnp.arange(3.0), 2.0))
    assert_close(logp, lp(nd.Normal(jnp.arange(3.0), 2.0), jnp.zeros(3)))


def test_nested_vmaps():
    @gen
    def cell(m):
        return normal(m, 1.0) @ "c"

    @gen
    def grid(ms):
        return ppl.vmap(ppl.vmap(cell))(ms) @ "g"

    ms = jnp.arange(6.0).reshape(2, 3)
    tr = grid.simulate(KEY, (ms,))
    assert tr.choices["g", "c"].shape == (2, 3)
    assert_close(tr.score, lp(nd.Normal(ms, 1.0), tr.choices["g", "c"]))


def test_vmap_errors():
    with raises(ppl.AddressError, "('pts', 'y')", "leading axis of length 4", "shape (2,)"):
        regression.generate(KEY, {("pts", "y"): jnp.zeros(2)}, (XS,))
    with raises(ppl.AddressError, "('pts', 'y')", "shape ()"):
        regression.generate(KEY, {("pts", "y"): 1.0}, (XS,))
    with raises(ppl.PPLError, "same length", "[2, 3]"):
        ppl.vmap(ppl.normal).simulate(KEY, (jnp.zeros(3), jnp.ones(2)))
    with raises(ppl.PPLError, "generative function"):
        ppl.vmap(lambda x: x)
    with raises(ppl.PPLError, "positive int"):
        ppl.repeat(ppl.normal, 0)
    with raises(ppl.AddressError, "('pts', 'q')", "no random choice"):
        regression.generate(KEY, {("pts", "q"): jnp.zeros(4)}, (XS,))


def test_vmap_scalar_argument_under_in_axes_0_is_explained():
    with raises(ppl.PPLError, "in_axes"):
        ppl.vmap(ppl.normal).simulate(KEY, (jnp.zeros(3), 1.0))


# ---------------------------------------------------------------------------
# scan
# ---------------------------------------------------------------------------


@gen
def rw_step(z, x):
    z = normal(0.9 * z + x, 1.0) @ "z"
    y = normal(z, 0.5) @ "y"
    return z, y


T = 6
DRIFT = jnp.linspace(-0.5, 0.5, T)


@gen
def walk(z0):
    carry, ys = ppl.scan(rw_step, length=T)(z0, DRIFT) @ "steps"
    return carry, ys


def _walk_logp(c, z0):
    zs, ys = c["steps", "z"], c["steps", "y"]
    prev = jnp.concatenate([jnp.array([z0]), zs[:-1]])
    return lp(nd.Normal(0.9 * prev + DRIFT, 1.0), zs) + lp(nd.Normal(zs, 0.5), ys)


def test_scan_stacks_choices_along_time_and_scores():
    tr = walk.simulate(KEY, (0.3,))
    c = tr.choices
    assert c["steps", "z"].shape == (T,) and c["steps", "y"].shape == (T,)
    carry, ys = tr.retval
    assert_close(carry, c["steps", "z"][-1])
    assert_close(ys, c["steps", "y"])
    assert_close(tr.score, _walk_logp(c, 0.3))
    logp, (carry2, ys2) = walk.assess(c, (0.3,))
    assert_close(logp, tr.score)
    assert_close(carry2, carry)


def test_scan_generate_with_observations_and_update():
    ys = jnp.linspace(-1.0, 1.0, T)
    tr, w = walk.generate(KEY, {("steps", "y"): ys}, (0.3,))
    zs = tr.choices["steps", "z"]
    assert_close(w, lp(nd.Normal(zs, 0.5), ys))
    assert_close(tr.score, _walk_logp(tr.choices, 0.3))
    new_zs = jnp.zeros(T)
    new, uw, discard = walk.update(KEY, tr, {("steps", "z"): new_zs}, (1.0,))
    assert_close(new.score, _walk_logp(new.choices, 1.0))
    assert_close(uw, new.score - tr.score)
    np.testing.assert_array_equal(discard["steps", "z"], zs)
    back, bw, _ = walk.update(KEY, new, discard, (0.3,))
    assert_choices_equal(back.choices, tr.choices)
    assert_close(bw, -uw)
    reg, rw = walk.regenerate(jax.random.key(3), tr, ppl.select(("steps", "z")))
    np.testing.assert_array_equal(reg.choices["steps", "y"], ys)
    assert np.all(np.asarray(reg.choices["steps", "z"]) != np.asarray(zs))
    assert_close(rw, lp(nd.Normal(reg.choices["steps", "z"], 0.5), ys) - lp(nd.Normal(zs, 0.5), ys))


def test_scan_with_xs_none_and_grad():
    @gen
    def step(c, _):
        z = normal(c, 1.0) @ "z"
        return z, None

    chain = ppl.scan(step, length=4)
    tr = chain.simulate(KEY, (0.0, None))
    assert tr.choices["z"].shape == (4,)
    zs = tr.choices["z"]
    # d/dz0 log p = (z_1 - z0)
    g = jax.grad(lambda z0: chain.assess(tr.choices, (z0, None))[0])(0.5)
    assert_close(g, zs[0] - 0.5)


def test_scan_errors():
    @gen
    def not_a_pair(c, x):
        return normal(c, 1.0) @ "z"

    with raises(ppl.PPLError, "pair (carry, y)"):
        ppl.scan(not_a_pair, length=3).simulate(KEY, (0.0, None))
    with raises(ppl.PPLError, "(init, xs)"):
        ppl.scan(rw_step, length=3).simulate(KEY, (0.0,))
    with raises(ppl.PPLError, "disagree", "[4, 6]"):
        ppl.scan(rw_step, length=4).simulate(KEY, (0.0, DRIFT))
    with raises(ppl.AddressError, "('steps', 'y')", "time axis of length 6", "shape (2,)"):
        walk.generate(KEY, {("steps", "y"): jnp.zeros(2)}, (0.3,))
    with raises(ppl.PPLError, "generative function"):
        ppl.scan(lambda c, x: (c, x), length=3)


# ---------------------------------------------------------------------------
# switch / cond
# ---------------------------------------------------------------------------


@gen
def small(m):
    return normal(m, 1.0) @ "u"


@gen
def big(m):
    a = normal(m, 3.0) @ "v"
    return normal(a, 1.0) @ "w"


@gen
def branching(i):
    return ppl.switch(small, big)(i, 0.5) @ "s"


def test_switch_only_the_taken_branch_counts():
    tr0 = branching.simulate(KEY, (0,))
    assert sorted(tr0.choices.addresses()) == [("s", "u")]
    assert_close(tr0.score, lp(nd.Normal(0.5, 1.0), tr0.choices["s", "u"]))
    tr1 = branching.simulate(KEY, (1,))
    assert sorted(tr1.choices.addresses()) == [("s", "v"), ("s", "w")]
    v, w = tr1.choices["s", "v"], tr1.choices["s", "w"]
    assert_close(tr1.score, lp(nd.Normal(0.5, 3.0), v) + lp(nd.Normal(v, 1.0), w))
    assert_close(tr1.retval, w)
    assert_close(branching.assess(tr1.choices, (1,))[0], tr1.score)
    # bool index and cond: cond(t, f) runs t when the predicate holds
    c = ppl.cond(small, big)
    assert sorted(c.simulate(KEY, (True, 0.5)).choices.addresses()) == [("u",)]
    assert sorted(c.simulate(KEY, (False, 0.5)).choices.addresses()) == [("v",), ("w",)]


def test_switch_update_that_changes_branch():
    tr0 = branching.simulate(KEY, (0,))
    u = tr0.choices["s", "u"]
    new, w, discard = branching.update(jax.random.key(1), tr0, {("s", "v"): 1.0}, (1,))
    assert sorted(new.choices.addresses()) == [("s", "v"), ("s", "w")]
    assert_close(new.choices["s", "v"], 1.0)
    # w is sampled fresh from its prior: weight = p(v) / p_old(u)
    assert_close(w, lp(nd.Normal(0.5, 3.0), 1.0) - lp(nd.Normal(0.5, 1.0), u))
    assert_close(discard["s", "u"], u)
    back, bw, back_discard = branching.update(jax.random.key(2), new, discard, (0,))
    assert_choices_equal(back.choices, tr0.choices)
    assert_close(back.score, tr0.score)
    assert_close(bw, tr0.score - new.score)  # nothing fresh on the way back
    assert_close(back_discard["s", "v"], 1.0)
    # staying in the branch: an ordinary update
    same, sw_, _ = branching.update(jax.random.key(3), new, {("s", "w"): 0.0}, (1,))
    assert_close(same.choices["s", "v"], 1.0)
    assert_close(sw_, same.score - new.score)


def test_switch_under_jit_vmap_and_grad():
    trj = jax.jit(lambda k, i: branching.simulate(k, (i,)))(KEY, 1)
    assert_close(trj.score, branching.simulate(KEY, (1,)).score)
    scores = jax.vmap(lambda i: branching.simulate(KEY, (i,)).score)(jnp.array([0, 1, 0]))
    assert_close(scores[0], branching.simulate(KEY, (0,)).score)
    assert_close(scores[1], branching.simulate(KEY, (1,)).score)
    # the density of each branch, with a traced index, from one choice map per branch
    f = jax.jit(lambda i, c: branching.assess(c, (i,))[0])
    assert_close(f(0, ppl.ChoiceMap.d({("s", "u"): 0.2})), lp(nd.Normal(0.5, 1.0), 0.2))
    # update across branches under jit matches eager
    tr0 = branching.simulate(KEY, (0,))
    _, w_eager, _ = branching.update(KEY, tr0, {("s", "v"): 1.0}, (1,))
    _, w_jit, _ = jax.jit(lambda t, i: branching.update(KEY, t, {("s", "v"): 1.0}, (i,)))(tr0, 1)
    assert_close(w_jit, w_eager)

    @gen
    def model(m):
        return ppl.switch(small, big)(1, m) @ "s"

    cm = ppl.ChoiceMap.d({("s", "v"): 0.4, ("s", "w"): -0.2})
    g = jax.grad(lambda m: model.assess(cm, (m,))[0])(0.1)
    assert_close(g, (0.4 - 0.1) / 9.0)


def test_switch_errors():
    with raises(ppl.PPLError, "integer or bool", "float32"):
        branching.simulate(KEY, (0.5,))
    with raises(ppl.AddressError, "('s', 'w')", "branch 1", "needs a value"):
        branching.assess({("s", "v"): 1.0}, (1,))
    with raises(ppl.AddressError, "('s', 'q')", "no branch"):
        branching.generate(KEY, {("s", "q"): 1.0}, (0,))
    with raises(ppl.PPLError, "generative functions"):
        ppl.switch(lambda: 0)


def test_switch_constraint_in_the_untaken_branch_weighs_minus_inf():
    """It used to be an error eagerly and ignored (weight 0) under jit: a run of
    branch 0 cannot have made ("s", "v"), whichever way the index is known."""
    for generate in (branching.generate, jax.jit(branching.generate)):
        tr, w = generate(KEY, {("s", "v"): 1.0}, (0,))
        assert float(w) == -np.inf
        assert sorted(tr.choices.addresses()) == [("s", "u")]
        _, w1 = generate(KEY, {("s", "v"): 1.0}, (1,))
        assert_close(w1, lp(nd.Normal(0.5, 3.0), 1.0))
    assert float(branching.assess({("s", "u"): 0.1, ("s", "v"): 1.0}, (0,))[0]) == -np.inf
    tr0 = branching.simulate(KEY, (0,))
    assert float(branching.update(KEY, tr0, {("s", "w"): 1.0}, (0,))[1]) == -np.inf


def test_switch_out_of_range_index():
    """A known index out of range is an error naming the valid range (it used to
    run the last branch); a traced one gives NaN scores and weights (lax.switch
    runs a clamped branch, whose density would otherwise pass for the answer)."""
    for bad in (2, -1):
        with raises(ppl.PPLError, "switch(small, big)", f"index {bad}", "0 to 1"):
            branching.simulate(KEY, (bad,))
        with raises(ppl.PPLError, "out of range"):
            branching.generate(KEY, {}, (bad,))
    tr = jax.jit(lambda i: branching.simulate(KEY, (i,)))(5)
    assert np.isnan(float(tr.score))
    assert np.isnan(float(jax.jit(lambda i: branching.assess(tr.choices, (i,))[0])(5)))
    _, w = jax.jit(lambda i: branching.generate(KEY, {("s", "v"): 1.0}, (i,)))(-3)
    assert np.isnan(float(w))
    # in range, under jit, nothing changes
    tr1 = jax.jit(lambda i: branching.simulate(KEY, (i,)))(1)
    assert_close(tr1.score, branching.simulate(KEY, (1,)).score)


def test_cond_takes_any_nonzero_predicate_as_true():
    """cond(t, f)(-1) used to run f: ints, bools and floats, nonzero is true, as
    for lax.cond and Python, eagerly and under jit."""
    c = ppl.cond(small, big)
    for pred, addrs in ((-1, [("u",)]), (2, [("u",)]), (0, [("v",), ("w",)]), (True, [("u",)]),
                        (0.5, [("u",)]), (-0.0, [("v",), ("w",)]), (jnp.int8(-3), [("u",)])):
        assert sorted(c.simulate(KEY, (pred, 0.5)).choices.addresses()) == addrs, pred
        score = jax.jit(lambda p: c.simulate(KEY, (p, 0.5)).score)(pred)
        assert_close(score, c.simulate(KEY, (pred, 0.5)).score)
    with raises(ppl.PPLError, "predicate", "bool or a real number"):
        c.simulate(KEY, (jnp.array(1 + 2j), 0.5))


def test_mix_logits_must_match_the_components():
    """More logits than components used to run the last component for the extra
    categories; fewer silently left components out."""
    for logits in (jnp.zeros(3), jnp.zeros(1), jnp.zeros((2, 2))):
        with raises(ppl.PPLError, "2 components", "2 logits", str(tuple(logits.shape))):
            mixture_model.simulate(KEY, (logits,))


@gen
def _inner_branch(m):
    return ppl.switch(small, big)(jnp.asarray(m > 0, jnp.int32), m) @ "in"


@gen
def _nested_switch(i, m):
    return ppl.switch(_inner_branch, small)(i, m) @ "s"


def test_switch_nested_in_a_branch_simulates():
    """Used to fail with a TypeError (int() of a ShapeDtypeStruct) when an outer
    switch listed the addresses of a branch holding a switch."""
    tr = _nested_switch.simulate(KEY, (0, 0.5))
    assert sorted(tr.choices.addresses()) == [("s", "in", "v"), ("s", "in", "w")]
    tr = _nested_switch.simulate(KEY, (0, -0.5))
    assert sorted(tr.choices.addresses()) == [("s", "in", "u")]
    assert_close(tr.score, lp(nd.Normal(-0.5, 1.0), tr.choices["s", "in", "u"]))


def test_switch_nested_in_a_branch_assess():
    tr = _nested_switch.simulate(KEY, (0, -0.5))
    logp, _ = _nested_switch.assess(tr.choices, (0, -0.5))
    assert_close(logp, tr.score)


# ---------------------------------------------------------------------------
# mix
# ---------------------------------------------------------------------------


@gen
def mixture_model(logits):
    return ppl.mix(small, big)(logits, 0.5) @ "x"


def test_mix_score_is_component_plus_value():
    logits = jnp.array([0.3, -0.2])
    tr = mixture_model.simulate(KEY, (logits,))
    comp = int(tr.choices["x", "component"])
    expected = lp(nd.Categorical(logits=logits), comp)
    if comp == 0:
        expected += lp(nd.Normal(0.5, 1.0), tr.choices["x", "value", "u"])
    else:
        v = tr.choices["x", "value", "v"]
        expected += lp(nd.Normal(0.5, 3.0), v) + lp(nd.Normal(v, 1.0), tr.choices["x", "value", "w"])
    assert_close(tr.score, expected)
    cm = ppl.ChoiceMap.d({("x", "component"): 0, ("x", "value", "u"): 0.1})
    assert_close(
        mixture_model.assess(cm, (logits,))[0], lp(nd.Categorical(logits=logits), 0) + lp(nd.Normal(0.5, 1.0), 0.1)
    )


def test_mix_component_frequencies():
    logits = jnp.array([0.8, -0.4])
    n = 4000
    comps = jax.jit(jax.vmap(lambda k: mixture_model.simulate(k, (logits,)).choices["x", "component"]))(
        jax.random.split(jax.random.key(4), n)
    )
    p = np.asarray(jax.nn.softmax(logits))[1]
    assert abs(np.mean(np.asarray(comps) == 1) - p) < 5 * np.sqrt(p * (1 - p) / n)


def test_mix_mh_over_the_component_targets_the_exact_posterior():
    """Observing the value of a two-component mixture of normals; MH on the
    component (with the value fixed) must target p(c | x) ∝ p(c) N(x; mu_c, s_c)."""

    @gen
    def comp_a(m):
        return normal(m, 1.0) @ "u"

    @gen
    def comp_b(m):
        return normal(m + 2.0, 0.5) @ "u"

    @gen
    def model():
        return ppl.mix(comp_a, comp_b)(jnp.array([0.0, 0.5]), 0.0) @ "x"

    x = 1.4
    prior = np.asarray(jax.nn.softmax(jnp.array([0.0, 0.5])))
    like = np.array([nd.Normal(0.0, 1.0).log_prob(x), nd.Normal(2.0, 0.5).log_prob(x)])
    post = prior * np.exp(like)
    post /= post.sum()
    obs = ppl.ChoiceMap.d({("x", "value", "u"): x})
    sel = ppl.select(("x", "component"))

    def chain(key, move):
        k0, key = jax.random.split(key)
        tr, _ = model.generate(k0, obs, ())

        def step(tr, k):
            k1, k2 = jax.random.split(k)
            if move == "update":  # propose the other component, keeping the value
                flipped = 1 - tr.choices["x", "component"]
                new, w, _ = model.update(k1, tr, {("x", "component"): flipped})
            else:  # resample the component from its prior
                new, w = model.regenerate(k1, tr, sel)
            accept = jnp.log(jax.random.uniform(k2)) < w
            return jax.tree.map(lambda a, b: jnp.where(accept, a, b), new, tr), None

        tr, _ = jax.lax.scan(step, tr, jax.random.split(key, 20))
        return tr.choices["x", "component"], tr.choices["x", "value", "u"]

    n = 4000
    for move in ("update", "regenerate"):
        comps, values = jax.jit(jax.vmap(lambda k: chain(k, move)))(jax.random.split(jax.random.key(6), n))
        np.testing.assert_allclose(values, x)  # the observation stays put
        freq = np.mean(np.asarray(comps) == 1)
        assert abs(freq - post[1]) < 5 * np.sqrt(post[1] * (1 - post[1]) / n), (move, freq, post)


@gen
def _comp_a(m):
    return normal(m, 1.0) @ "u"


@gen
def _comp_b(m):
    return normal(m + 2.0, 0.5) @ "u"


@gen
def _mixture_obs():
    return ppl.mix(_comp_a, _comp_b)(jnp.array([0.0, 0.5]), 0.0) @ "x"


def test_mix_regenerate_component_keeps_the_unselected_value():
    tr, _ = _mixture_obs.generate(KEY, {("x", "value", "u"): 1.4, ("x", "component"): 0}, ())
    for seed in range(8):
        new, w = _mixture_obs.regenerate(jax.random.key(seed), tr, ppl.select(("x", "component")))
        assert_close(new.choices["x", "value", "u"], 1.4)
        c = int(new.choices["x", "component"])
        lik = [nd.Normal(0.0, 1.0).log_prob(1.4), nd.Normal(2.0, 0.5).log_prob(1.4)]
        assert_close(w, lik[c] - lik[0])


def test_mix_regenerate_whole_mixture():
    tr = _mixture_obs.simulate(KEY, ())
    for seed in range(8):
        new, w = _mixture_obs.regenerate(jax.random.key(seed), tr, ppl.select("x"))
        assert_close(w, 0.0)


def test_mix_needs_two_components():
    with raises(ppl.PPLError, "at least two"):
        ppl.mix(small)


# ---------------------------------------------------------------------------
# compile once
# ---------------------------------------------------------------------------


def test_combinators_do_not_restage_for_same_shapes():
    count = [0]

    @gen
    def body(c, x):
        count[0] += 1
        z = normal(c + x, 1.0) @ "z"
        return z, z

    @gen
    def model(z0, xs):
        return ppl.scan(body, length=5)(z0, xs) @ "s"

    f = jax.jit(lambda k, z0, xs: model.simulate(k, (z0, xs)).score)
    f(KEY, 0.0, jnp.zeros(5))
    n_after_first = count[0]
    f(jax.random.key(1), 1.0, jnp.ones(5))
    assert f._cache_size() == 1
    model.simulate(KEY, (0.0, jnp.zeros(5)))
    model.simulate(KEY, (2.0, jnp.ones(5)))
    assert count[0] <= n_after_first + 1, count


def test_combinators_under_vmap_over_keys_and_grad_through_generate():
    keys = jax.random.split(KEY, 3)
    trs = jax.vmap(lambda k: walk.simulate(k, (0.3,)))(keys)
    assert trs.choices["steps", "z"].shape == (3, T)
    for i in range(3):
        one = walk.simulate(keys[i], (0.3,))
        assert_close(trs.score[i], one.score)
        assert_close(trs.choices["steps", "y"][i], one.choices["steps", "y"])
    # fully constrained: the weight is the score; only the first step depends on z0
    tr = walk.simulate(KEY, (0.3,))
    g = jax.grad(lambda z0: walk.generate(KEY, tr.choices, (z0,))[1])(0.3)
    z1 = tr.choices["steps", "z"][0]
    assert_close(g, 0.9 * (z1 - 0.9 * 0.3 - DRIFT[0]))
    # vmap combinator: d/dslope of the weight with the slope and the ys constrained
    cons = ppl.ChoiceMap.d({("pts", "y"): jnp.array([0.1, -0.2, 0.3, 0.9])})
    g = jax.grad(lambda s: regression.generate(KEY, cons | ppl.ChoiceMap.d({"slope": s}), (XS,))[1])(0.7)
    ys = cons["pts", "y"]
    assert_close(g, -0.7 + jnp.sum((ys - 0.7 * XS) * XS) / 0.25)
