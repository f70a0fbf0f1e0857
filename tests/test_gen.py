"""@gen functions written by hand: the quickstart, nesting, keys, jit/vmap/grad,
and compiling once per shape."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import numpyro.distributions as nd
import pytest

import ppl
from ppl import flip, gen, normal
from _strategies import assert_choices_equal, assert_close


@gen
def quick(mu):
    x = normal(mu, 1.0) @ "x"
    b = flip(0.3) @ "b"
    y = normal(jnp.where(b, x, -x), 0.5) @ "y"
    return y


def _quick_logp(mu, x, b, y):
    return (
        nd.Normal(mu, 1.0).log_prob(x)
        + nd.Bernoulli(0.3).log_prob(float(b))
        + nd.Normal(x if b else -x, 0.5).log_prob(y)
    )


def test_quickstart_runs_and_is_consistent():
    tr = quick.simulate(jax.random.key(0), (0.0,))
    x, b, y = tr.choices["x"], tr.choices["b"], tr.choices["y"]
    assert tr.args == (0.0,)
    assert jnp.asarray(b).dtype == jnp.bool_
    assert_close(tr.retval, y)
    assert_close(tr.score, _quick_logp(0.0, x, bool(b), y))
    logp, retval = quick.assess(ppl.ChoiceMap.d({"x": 0.1, "b": True, "y": 0.2}), (0.0,))
    assert_close(logp, _quick_logp(0.0, 0.1, True, 0.2))
    assert_close(retval, 0.2)
    tr, w = quick.generate(jax.random.key(1), ppl.ChoiceMap.d({"y": 0.2}), (0.0,))
    assert_close(tr.choices["y"], 0.2)
    b1 = bool(tr.choices["b"])
    x1 = tr.choices["x"]
    assert_close(w, nd.Normal(x1 if b1 else -x1, 0.5).log_prob(0.2))
    tr2, w2, discard = quick.update(jax.random.key(2), tr, ppl.ChoiceMap.d({"x": 1.0}), (0.0,))
    assert_close(tr2.choices["x"], 1.0)
    assert_close(discard["x"], x1)
    assert_close(w2, tr2.score - tr.score)
    tr3, w3 = quick.regenerate(jax.random.key(3), tr, ppl.select("x"))
    assert bool(tr3.choices["b"]) == b1 and float(tr3.choices["y"]) == float(tr.choices["y"])
    assert float(tr3.choices["x"]) != float(x1)
    expected = nd.Normal(jnp.where(b1, tr3.choices["x"], -tr3.choices["x"]), 0.5).log_prob(
        0.2
    ) - nd.Normal(x1 if b1 else -x1, 0.5).log_prob(0.2)
    assert_close(w3, expected)


def test_dict_is_accepted_where_a_choice_map_is_expected():
    logp_d, _ = quick.assess({"x": 0.1, "b": True, "y": 0.2}, (0.0,))
    logp_c, _ = quick.assess(ppl.ChoiceMap.d({"x": 0.1, "b": True, "y": 0.2}), (0.0,))
    assert_close(logp_d, logp_c)


@pytest.mark.parametrize("make_key", [jax.random.key, jax.random.PRNGKey], ids=["key", "PRNGKey"])
def test_both_key_kinds_are_accepted_and_agree(make_key):
    k = make_key(7)
    tr = quick.simulate(k, (0.5,))
    ref = quick.simulate(jax.random.key(7), (0.5,))
    assert_choices_equal(tr.choices, ref.choices)
    tr_g, _ = quick.generate(k, {"y": 1.0}, (0.5,))
    _, _, _ = quick.update(k, tr_g, {"x": 0.0})
    _, _ = quick.regenerate(k, tr_g, ppl.select("x"))
    keys = jax.random.split(k, 4)
    scores = jax.vmap(lambda kk: quick.simulate(kk, (0.5,)).score)(keys)
    assert scores.shape == (4,)
    assert len(set(np.asarray(scores).tolist())) == 4


def test_different_keys_give_different_choices_and_same_key_same_choices():
    a = quick.simulate(jax.random.key(1), (0.0,)).choices["x"]
    b = quick.simulate(jax.random.key(1), (0.0,)).choices["x"]
    c = quick.simulate(jax.random.key(2), (0.0,)).choices["x"]
    assert float(a) == float(b) and float(a) != float(c)


# ---------------------------------------------------------------------------
# nesting: hierarchical addresses
# ---------------------------------------------------------------------------


@gen
def encoder(m):
    z = normal(m, 1.0) @ "z"
    w = normal(z, 2.0) @ "w"
    return z + w


@gen
def two_level(m):
    h = encoder(m) @ "enc"
    g = encoder(h) @ "enc2"
    return normal(g, 0.5) @ "obs"


def test_nested_calls_have_hierarchical_addresses_and_scores():
    tr = two_level.simulate(jax.random.key(0), (0.3,))
    c = tr.choices
    assert sorted(c.addresses()) == sorted(
        [("enc", "z"), ("enc", "w"), ("enc2", "z"), ("enc2", "w"), ("obs",)]
    )
    assert_close(c["enc", "z"], c[("enc", "z")])
    assert isinstance(c["enc"], ppl.ChoiceMap)
    h = c["enc", "z"] + c["enc", "w"]
    g = c["enc2", "z"] + c["enc2", "w"]
    expected = (
        nd.Normal(0.3, 1.0).log_prob(c["enc", "z"])
        + nd.Normal(c["enc", "z"], 2.0).log_prob(c["enc", "w"])
        + nd.Normal(h, 1.0).log_prob(c["enc2", "z"])
        + nd.Normal(c["enc2", "z"], 2.0).log_prob(c["enc2", "w"])
        + nd.Normal(g, 0.5).log_prob(c["obs"])
    )
    assert_close(tr.score, expected)
    # generate with a nested constraint
    tr2, w = two_level.generate(jax.random.key(1), {("enc2", "z"): 0.25}, (0.3,))
    assert_close(tr2.choices["enc2", "z"], 0.25)
    h2 = tr2.choices["enc", "z"] + tr2.choices["enc", "w"]
    assert_close(w, nd.Normal(h2, 1.0).log_prob(0.25))
    # regenerate a whole sub-call
    tr3, w3 = two_level.regenerate(jax.random.key(2), tr, ppl.select("enc"))
    assert float(tr3.choices["enc2", "z"]) == float(c["enc2", "z"])
    assert float(tr3.choices["enc", "z"]) != float(c["enc", "z"])
    h3 = tr3.choices["enc", "z"] + tr3.choices["enc", "w"]
    assert_close(
        w3, nd.Normal(h3, 1.0).log_prob(c["enc2", "z"]) - nd.Normal(h, 1.0).log_prob(c["enc2", "z"])
    )


def test_trace_is_a_pytree_and_survives_jit_boundaries():
    tr = two_level.simulate(jax.random.key(0), (0.3,))
    leaves, tree = jax.tree.flatten(tr)
    tr2 = jax.tree.unflatten(tree, leaves)
    assert_choices_equal(tr2.choices, tr.choices)
    out = jax.jit(lambda t: t)(tr)
    assert_choices_equal(out.choices, tr.choices)
    assert_close(out.score, tr.score)
    # and the round-tripped trace can be updated
    new, w, _ = two_level.update(jax.random.key(1), out, {"obs": 0.0})
    assert_close(w, new.score - tr.score)


def test_trace_indexing_and_repr():
    tr = two_level.simulate(jax.random.key(0), (0.3,))
    assert_close(tr["obs"], tr.choices["obs"])
    text = repr(tr)
    assert "enc" in text and "score" in text


# ---------------------------------------------------------------------------
# jit, vmap, grad
# ---------------------------------------------------------------------------


@gen
def regression(slope, noise):
    x = normal(0.0, 1.0) @ "x"
    y = normal(slope * x, noise) @ "y"
    return y


def test_grad_through_assess_matches_analytic():
    cm = ppl.ChoiceMap.d({"x": 0.7, "y": -0.4})

    def logp(slope, noise):
        return regression.assess(cm, (slope, noise))[0]

    slope, noise = 1.3, 0.8
    g_slope, g_noise = jax.grad(logp, argnums=(0, 1))(slope, noise)
    r = -0.4 - slope * 0.7
    assert_close(g_slope, r * 0.7 / noise**2)
    assert_close(g_noise, -1 / noise + r**2 / noise**3)
    # and w.r.t. the values in the choice map
    g_cm = jax.grad(lambda c: regression.assess(c, (slope, noise))[0])(cm)
    assert_close(g_cm["x"], -0.7 + r * slope / noise**2)
    assert_close(g_cm["y"], -r / noise**2)


def test_grad_through_generate_matches_analytic():
    slope, noise = 1.3, 0.8
    key = jax.random.key(4)
    # full constraints: weight = score
    cm = ppl.ChoiceMap.d({"x": 0.7, "y": -0.4})
    g = jax.grad(lambda s: regression.generate(key, cm, (s, noise))[1])(slope)
    assert_close(g, (-0.4 - slope * 0.7) * 0.7 / noise**2)
    # partial constraints: weight = log N(y; slope x, noise) with x sampled
    # independently of slope, so d/dslope = (y - slope x) x / noise^2
    obs = ppl.ChoiceMap.d({"y": -0.4})
    x = regression.generate(key, obs, (slope, noise))[0].choices["x"]
    g = jax.grad(lambda s: regression.generate(key, obs, (s, noise))[1])(slope)
    assert_close(g, (-0.4 - slope * x) * x / noise**2)


@gen
def shifted(mu):
    x = normal(mu, 1.0) @ "x"
    return normal(x, 0.5) @ "y"


def test_grad_through_generate_flows_through_sampled_choices():
    """x = mu + eps under a fixed key, so the weight log N(y; x, 0.5) depends
    on mu through x: d/dmu = (y - x) / 0.25."""
    key = jax.random.key(5)
    obs = {"y": 1.0}
    x = shifted.generate(key, obs, (0.2,))[0].choices["x"]
    g = jax.grad(lambda m: shifted.generate(key, obs, (m,))[1])(0.2)
    assert_close(g, (1.0 - x) / 0.25)


def test_vmap_over_keys_and_arguments():
    keys = jax.random.split(jax.random.key(0), 5)
    trs = jax.vmap(lambda k: regression.simulate(k, (1.0, 0.5)))(keys)
    assert trs.choices["x"].shape == (5,)
    assert trs.score.shape == (5,)
    for i in range(5):
        one = regression.simulate(keys[i], (1.0, 0.5))
        assert_close(trs.choices["x"][i], one.choices["x"])
        assert_close(trs.score[i], one.score)
    slopes = jnp.linspace(-1, 1, 5)
    logps = jax.vmap(lambda s: regression.assess({"x": 0.7, "y": -0.4}, (s, 0.5))[0])(slopes)
    expected = [
        nd.Normal(0.0, 1.0).log_prob(0.7) + nd.Normal(s * 0.7, 0.5).log_prob(-0.4) for s in slopes
    ]
    assert_close(logps, jnp.stack(expected))
    # vmap over traces: update a batch
    new, w, _ = jax.vmap(lambda t: regression.update(jax.random.key(1), t, {"y": 0.0}))(trs)
    assert_close(w, new.score - trs.score)


def test_jit_vmap_grad_compose():
    cm = ppl.ChoiceMap.d({"x": 0.7, "y": -0.4})
    f = jax.jit(jax.vmap(jax.grad(lambda s: regression.assess(cm, (s, 0.8))[0])))
    slopes = jnp.array([0.0, 1.0, 2.0])
    assert_close(f(slopes), (-0.4 - slopes * 0.7) * 0.7 / 0.64)


def test_second_call_with_same_shapes_does_not_restage_or_recompile():
    count = [0]

    @gen
    def counted(mu):
        count[0] += 1
        x = normal(mu, 1.0) @ "x"
        return normal(x, 1.0) @ "y"

    counted.simulate(jax.random.key(0), (0.0,))
    assert count[0] == 1
    counted.simulate(jax.random.key(1), (2.0,))
    counted.assess({"x": 0.0, "y": 1.0}, (1.0,))
    counted.generate(jax.random.key(2), {"y": 1.0}, (3.0,))
    assert count[0] == 1, "the body was re-traced for arguments of the same shape"

    sim = jax.jit(lambda k, mu: counted.simulate(k, (mu,)).score)
    sim(jax.random.key(0), 0.0)
    sim(jax.random.key(1), 5.0)
    # _cache_size is private to jax.jit's wrapper, not in its type stubs
    assert sim._cache_size() == 1  # pyright: ignore[reportAttributeAccessIssue]
    assert count[0] == 1

    gen_w = jax.jit(lambda k, y, mu: counted.generate(k, {"y": y}, (mu,))[1])
    gen_w(jax.random.key(0), 1.0, 0.0)
    gen_w(jax.random.key(3), -1.0, 2.0)
    assert gen_w._cache_size() == 1  # pyright: ignore[reportAttributeAccessIssue]

    # a new shape stages again, exactly once
    counted.simulate(jax.random.key(0), (jnp.zeros(3),))
    counted.simulate(jax.random.key(1), (jnp.ones(3),))
    assert count[0] == 2


def test_generative_function_closing_over_a_tracer_is_not_cached_stale():
    key = jax.random.key(0)

    @jax.jit
    def score_at(mu):
        @gen
        def m():
            return normal(mu, 1.0) @ "x"

        return m.assess({"x": 0.0}, ())[0]

    assert_close(score_at(1.0), nd.Normal(1.0, 1.0).log_prob(0.0))
    assert_close(score_at(3.0), nd.Normal(3.0, 1.0).log_prob(0.0))

    def outer_mu(mu):
        @gen
        def m():
            return normal(mu, 1.0) @ "x"

        return m.simulate(key, ()).choices["x"]

    x1, x2 = jax.jit(outer_mu)(0.0), jax.jit(outer_mu)(10.0)
    assert_close(x2 - x1, 10.0)


def test_returns_pytrees_and_takes_pytree_arguments():
    @gen
    def m(params):
        x = normal(params["loc"], params["scale"]) @ "x"
        return {"x": x, "both": (x, 2 * x)}

    params = {"loc": jnp.zeros(2), "scale": jnp.ones(2)}
    tr = m.simulate(jax.random.key(0), (params,))
    assert tr.retval["both"][1].shape == (2,)
    assert_close(tr.retval["both"][1], 2 * tr.choices["x"])
    logp, ret = m.assess({"x": jnp.array([0.1, 0.2])}, (params,))
    assert_close(logp, nd.Normal(0.0, 1.0).log_prob(jnp.array([0.1, 0.2])).sum())

    @gen
    def caller():
        out = m(params) @ "m"
        return normal(out["x"].sum(), 1.0) @ "s"

    tr = caller.simulate(jax.random.key(1), ())
    assert tr.choices["m", "x"].shape == (2,)


def test_x64_scores_respect_the_flag():
    prev = jax.config.read("jax_enable_x64")
    try:
        jax.config.update("jax_enable_x64", True)

        @gen
        def m():
            return normal(0.0, 1.0) @ "x"

        tr = m.simulate(jax.random.key(0), ())
        assert tr.score.dtype == jnp.float64
    finally:
        jax.config.update("jax_enable_x64", prev)
    tr = quick.simulate(jax.random.key(0), (0.0,))
    assert tr.score.dtype == jnp.float32
