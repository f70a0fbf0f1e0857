"""switch/cond and mix, checked by hand against numpyro densities, under
jit/vmap/grad, and for their error messages (weights with addresses only some
branches make: ``test_switch_masks.py`` and ``test_switch_laws.py``)."""

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
        # wrong on purpose: checks the error
        ppl.switch(lambda: 0)  # pyright: ignore[reportArgumentType]


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
    for pred, addrs in (
        (-1, [("u",)]),
        (2, [("u",)]),
        (0, [("v",), ("w",)]),
        (True, [("u",)]),
        (0.5, [("u",)]),
        (-0.0, [("v",), ("w",)]),
        (jnp.int8(-3), [("u",)]),
    ):
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
        expected += lp(nd.Normal(0.5, 3.0), v) + lp(
            nd.Normal(v, 1.0), tr.choices["x", "value", "w"]
        )
    assert_close(tr.score, expected)
    cm = ppl.ChoiceMap.d({("x", "component"): 0, ("x", "value", "u"): 0.1})
    assert_close(
        mixture_model.assess(cm, (logits,))[0],
        lp(nd.Categorical(logits=logits), 0) + lp(nd.Normal(0.5, 1.0), 0.1),
    )


def test_mix_component_frequencies():
    logits = jnp.array([0.8, -0.4])
    n = 4000
    comps = jax.jit(
        jax.vmap(lambda k: mixture_model.simulate(k, (logits,)).choices["x", "component"])
    )(jax.random.split(jax.random.key(4), n))
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
        comps, values = jax.jit(jax.vmap(lambda k: chain(k, move)))(
            jax.random.split(jax.random.key(6), n)
        )
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
