"""Combinators: vmap/repeat and scan, checked by hand against numpyro densities,
under jit/vmap/grad, and for their error messages (switch/cond and mix:
``test_switch_and_mix.py``)."""

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
    ppl.flip(jax.nn.sigmoid(y)) @ "o"
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
    assert_close(
        w,
        lp(nd.Bernoulli(probs=jax.nn.sigmoid(c["pts", "y"])), obs["pts", "o"].astype(jnp.float32)),
    )
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
    expected = lp(
        nd.Bernoulli(probs=jax.nn.sigmoid(reg.choices["pts", "y"])),
        c["pts", "o"].astype(jnp.float32),
    ) - lp(nd.Bernoulli(probs=jax.nn.sigmoid(c["pts", "y"])), c["pts", "o"].astype(jnp.float32))
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
        # wrong on purpose: checks the error
        ppl.vmap(lambda x: x)  # pyright: ignore[reportArgumentType]
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
        # wrong on purpose: checks the error
        ppl.scan(lambda c, x: (c, x), length=3)  # pyright: ignore[reportArgumentType]


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
    # _cache_size is private to jax.jit's wrapper, not in its type stubs
    assert f._cache_size() == 1  # pyright: ignore[reportAttributeAccessIssue]
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
    g = jax.grad(
        lambda s: regression.generate(KEY, cons | ppl.ChoiceMap.d({"slope": s}), (XS,))[1]
    )(0.7)
    ys = cons["pts", "y"]
    assert_close(g, -0.7 + jnp.sum((ys - 0.7 * XS) * XS) / 0.25)
