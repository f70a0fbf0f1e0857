"""A switch whose branches make different addresses, with the index a random
choice of the model: weights against brute-force enumeration over the index,
eagerly, under jit and under vmap (where the index is traced or batched and
choice maps hold masked entries)."""

from __future__ import annotations

import re

import jax
import jax.numpy as jnp
import numpy as np
import numpyro.distributions as nd
import pytest

import ppl
from ppl import ChoiceMap, gen, normal
from _strategies import assert_close

KEY = jax.random.key(0)
PROBS = jnp.array([0.2, 0.3, 0.5])


def raises(exc, *fragments):
    return pytest.raises(exc, match="(?s)" + "".join(f"(?=.*{re.escape(f)})" for f in fragments))


@gen
def g0():
    u = normal(0.0, 1.0) @ "u"
    return normal(u, 1.0) @ "sh"


@gen
def g1():
    ppl.flip(0.3) @ "b"
    return normal(1.0, 1.0) @ "sh"


@gen
def g2():
    return normal(2.0, 1.0) @ "x"


@gen
def model():
    c = ppl.categorical(PROBS) @ "c"
    return ppl.switch(g0, g1, g2)(c) @ "s"


def lp(d, v):
    return float(jnp.sum(d.log_prob(v)))


def brute_force(c, obs, sampled):
    """log p(c) + log p(obs | c), from the model written out by hand; -inf when
    branch c does not make an observed address. ``sampled``: the run's values."""
    made = [{"u", "sh"}, {"b", "sh"}, {"x"}][c]
    if not set(obs) <= made:
        return -np.inf
    w = np.log(float(PROBS[c]))
    if "sh" in obs:
        w += lp(nd.Normal(sampled["u"] if c == 0 else 1.0, 1.0), obs["sh"])
    if "x" in obs:
        w += lp(nd.Normal(2.0, 1.0), obs["x"])
    if "b" in obs:
        w += np.log(0.3 if obs["b"] else 0.7)
    return w


OBSERVATIONS = [{"x": 0.7}, {"sh": -0.4}, {"sh": 0.1, "b": True}]
RUNS = {"eager": model.generate, "jit": jax.jit(model.generate)}


@pytest.mark.parametrize("run", list(RUNS))
@pytest.mark.parametrize("obs", OBSERVATIONS, ids=str)
def test_generate_weight_is_brute_force_over_the_index(run, obs):
    """Before: an observation at an address the run's branch does not make was
    ignored under jit (weight 0) and an error eagerly. Now -inf in both."""
    generate = RUNS[run]
    cm = ChoiceMap.d({("s", a): v for a, v in obs.items()})
    for c in range(3):
        tr, w = generate(KEY, cm | ChoiceMap.d({"c": c}), ())
        sampled = {"u": tr.choices["s", "u"]} if c == 0 else {}
        assert_close(w, brute_force(c, obs, sampled))
    # index sampled: each particle's weight is p(obs | its c)
    for seed in range(6):
        tr, w = generate(jax.random.key(seed), cm, ())
        c = int(tr.choices["c"])
        sampled = {"u": tr.choices["s", "u"]} if c == 0 else {}
        assert_close(w, brute_force(c, obs, sampled) - np.log(float(PROBS[c])))


def test_importance_estimate_of_the_evidence_matches_enumeration():
    """Under vmap (a batched index) the mean importance weight is p(obs) =
    sum_c p(c) p(obs | c); only branch 2 makes "x", so p(obs) = p(c=2) N(0.7; 2, 1)."""
    n = 4000
    cm = ChoiceMap.d({("s", "x"): 0.7})
    _, w = jax.jit(jax.vmap(lambda k: model.generate(k, cm, ())))(
        jax.random.split(jax.random.key(1), n)
    )
    ratios = np.exp(np.asarray(w, dtype=np.float64))
    exact = float(PROBS[2]) * np.exp(lp(nd.Normal(2.0, 1.0), 0.7))
    assert abs(ratios.mean() - exact) < 5 * ratios.std() / np.sqrt(n)
    assert np.all(np.isneginf(np.asarray(w)[ratios == 0]))


def _laws(key):
    tr = model.simulate(key, ())
    choices = tr.choices
    logp, _ = model.assess(choices, ())
    again, w = model.generate(key, choices, ())
    return tr.score, logp, w, again.score, choices


def test_laws_hold_with_a_traced_and_a_batched_index():
    """assess(tr.choices) == score and generate(full choices) has weight score,
    with the choice map built inside jit (masked entries) and under vmap."""
    keys = jax.random.split(KEY, 12)
    score, logp, w, score2, choices = jax.vmap(_laws)(keys)
    assert set(np.asarray(choices["c"]).tolist()) == {0, 1, 2}
    for x in (logp, w, score2):
        assert_close(x, score)
    for k in keys[:3]:
        s, lp, w1, _, c = jax.jit(_laws)(k)
        assert_close(lp, s)
        assert_close(w1, s)
        assert sorted(c.addresses()) == [("c",), ("s", "b"), ("s", "sh"), ("s", "u"), ("s", "x")]
    # the made flags follow the branch taken, and reading gives NaN where not made
    ci = np.asarray(choices["c"])
    np.testing.assert_array_equal(np.asarray(choices.is_made(("s", "sh"))), ci < 2)
    np.testing.assert_array_equal(np.asarray(choices.is_made(("s", "x"))), ci == 2)
    assert np.all(np.isnan(np.asarray(choices["s", "x"])[ci != 2]))
    assert choices.is_made("c") is True


def test_update_with_a_constraint_the_new_branch_does_not_make():
    tr, _ = model.generate(KEY, {"c": 0}, ())
    update = jax.jit(model.update)
    for upd in (model.update, update):
        _, w, _ = upd(KEY, tr, ChoiceMap.d({("s", "x"): 0.3}), ())
        assert float(w) == -np.inf
        # moving to branch 2 makes it: p(c=2) N(0.3; 2, 1) / p(old)
        new, w, discard = upd(KEY, tr, ChoiceMap.d({"c": 2, ("s", "x"): 0.3}), ())
        assert_close(w, np.log(0.5) + lp(nd.Normal(2.0, 1.0), 0.3) - float(tr.score))
        back, wb, _ = upd(KEY, new, discard, ())
        assert_close(back.score, tr.score)
        assert_close(back.choices["s", "u"], tr.choices["s", "u"])
        assert_close(wb, -w)


def test_update_round_trip_with_a_masked_discard_under_vmap():
    keys = jax.random.split(KEY, 8)

    def move(k):
        k1, k2 = jax.random.split(k)
        tr = model.simulate(k1, ())
        new, w, discard = model.update(k2, tr, model.simulate(k2, ()).choices, ())
        back, wb, _ = model.update(k2, new, discard, ())
        return tr.score, new.score, w, back.score, wb, discard

    s, s_new, w, s_back, wb, discard = jax.jit(jax.vmap(move))(keys)
    assert any(
        d.is_masked()
        for d in jax.tree.leaves(
            discard, is_leaf=lambda x: isinstance(x, ChoiceMap) and x.has_value()
        )
    )
    assert_close(w, s_new - s)
    assert_close(s_back, s)
    assert_close(wb, -w)


def test_assess_reads_the_masks():
    masked = ChoiceMap.masked
    f = jax.jit(lambda cm: model.assess(cm, ())[0])
    base = {"c": 2, ("s", "x"): 0.3}
    good = lp(nd.Categorical(probs=PROBS), 2) + lp(nd.Normal(2.0, 1.0), 0.3)
    # a masked-out entry at another branch's address is absent
    assert_close(f(ChoiceMap.d({**base, ("s", "u"): masked(1.0, False)})), good)
    # made at another branch's address: this run cannot have made it
    assert float(f(ChoiceMap.d({**base, ("s", "u"): masked(1.0, True)}))) == -np.inf
    assert float(f(ChoiceMap.d({**base, ("s", "u"): 1.0}))) == -np.inf
    # not made at the taken branch's own address: a missing choice has no density
    assert np.isnan(float(f(ChoiceMap.d({"c": 2, ("s", "x"): masked(0.3, False)}))))
    assert_close(f(ChoiceMap.d({"c": 2, ("s", "x"): masked(0.3, True)})), good)


def test_generate_reads_the_masks():
    masked = ChoiceMap.masked
    gen_ = jax.jit(model.generate)
    tr, w = gen_(KEY, ChoiceMap.d({"c": 2, ("s", "x"): masked(0.3, False)}), ())
    assert_close(w, np.log(0.5))  # x is sampled, as if absent
    assert float(tr.choices["s", "x"]) != 0.3
    _, w = gen_(KEY, ChoiceMap.d({"c": 2, ("s", "x"): masked(0.3, True)}), ())
    assert_close(w, np.log(0.5) + lp(nd.Normal(2.0, 1.0), 0.3))


def test_a_masked_value_given_to_a_distribution_directly_is_refused():
    with raises(ppl.AddressError, "made only on some executions", "is_made"):
        ppl.normal.generate(KEY, ChoiceMap.masked(0.3, True), (0.0, 1.0))


@gen
def _vec2():
    return normal(jnp.zeros(2), 1.0) @ "x"


@gen
def _vec3():
    return normal(jnp.zeros(3), 1.0) @ "x"


@gen
def _deep():
    return _vec2() @ "x"


def test_branches_whose_choices_one_map_cannot_hold_are_refused():
    """An address made with two shapes, or a value above another branch's
    sub-addresses: under a traced index the old union silently kept one."""
    with raises(ppl.AddressError, "'x'", "branches 0 and 1", "(2,)", "(3,)", "different addresses"):
        ppl.switch(_vec2, _vec3).simulate(KEY, (0,))
    with raises(ppl.AddressError, "'x'", "('x', 'x')", "different addresses"):
        jax.jit(lambda i: ppl.switch(_vec2, _deep).simulate(KEY, (i,)))(0)


def test_switch_in_a_vmap_and_in_a_switch():
    """Masks with one flag per element (switch inside ppl.vmap) and masks of
    masks (a switch in a branch of a switch with a traced index)."""

    @gen
    def element(i):
        return ppl.switch(g0, g1, g2)(i) @ "e"

    @gen
    def many(idx):
        return ppl.vmap(element)(idx) @ "v"

    idx = jnp.array([0, 2, 1, 2])
    tr = many.simulate(KEY, (idx,))
    assert_close(many.assess(tr.choices, (idx,))[0], tr.score)
    np.testing.assert_array_equal(
        np.asarray(tr.choices.is_made(("v", "e", "x"))), np.asarray(idx) == 2
    )
    obs = ChoiceMap.d({("v", "e", "x"): jnp.array([0.0, 0.3, 0.0, -0.2])})
    _, w = many.generate(KEY, obs, (idx,))
    assert float(w) == -np.inf  # elements 0 and 2 do not make x
    obs = ChoiceMap.d(
        {("v", "e", "x"): ChoiceMap.masked(jnp.array([0.0, 0.3, 0.0, -0.2]), idx == 2)}
    )
    _, w = many.generate(KEY, obs, (idx,))
    assert_close(w, lp(nd.Normal(2.0, 1.0), jnp.array([0.3, -0.2])))

    @gen
    def just_x(j):
        return normal(2.0, 1.0) @ "x"

    @gen
    def nested(i, j):
        return ppl.switch(just_x, element)(i, j) @ "n"

    run = jax.jit(lambda i, j: _laws_of(nested, (i, j)))
    for i, j in ((0, 1), (1, 0), (1, 2)):
        s, logp, w, c = run(i, j)
        assert_close(logp, s) and assert_close(w, s)
        assert bool(c.is_made(("n", "x"))) == (i == 0)
        assert bool(c.is_made(("n", "e", "x"))) == (i == 1 and j == 2)


def _laws_of(g, args):
    tr = g.simulate(KEY, args)
    return tr.score, g.assess(tr.choices, args)[0], g.generate(KEY, tr.choices, args)[1], tr.choices
