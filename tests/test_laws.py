"""The laws of the generative-function interface (DESIGN.md section 2), checked on
random programs from ``_strategies.specs`` against an independent numpyro reference."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import ppl
from _strategies import (
    Call,
    addresses,
    args,
    assert_choices_equal,
    assert_close,
    build,
    choice_map_of,
    reference,
    seeds,
    specs,
    subset,
)

N = 25  # examples per law


def _keys(seed, n=3):
    return jax.random.split(jax.random.key(seed), n)


def _ref(spec, choices, a):
    logps, ret = reference(spec, choices.to_dict(), a)
    return logps, ret


def _total(logps, paths=None):
    paths = logps.keys() if paths is None else paths
    return float(sum(np.asarray(logps[p], dtype=np.float64) for p in paths))


def _selected(path, chosen) -> bool:
    return any(path[: len(c)] == c for c in chosen)


def _call_paths(spec, prefix=()):
    out = []
    for node in spec.nodes:
        if isinstance(node, Call):
            out.append((*prefix, node.addr))
            out.extend(_call_paths(node.sub, (*prefix, node.addr)))
    return out


@settings(max_examples=N)
@given(spec=specs(), seed=seeds, a=args)
def test_simulate_score_equals_assess_and_numpyro_reference(spec, seed, a):
    g = build(spec)
    tr = g.simulate(_keys(seed)[0], (a,))
    assert sorted(tr.choices.addresses()) == sorted(addresses(spec))
    assert tr.args == (a,)
    logp, retval = g.assess(tr.choices, (a,))
    ref_logps, ref_ret = _ref(spec, tr.choices, a)
    assert np.isfinite(float(tr.score))
    assert_close(tr.score, logp)
    assert_close(logp, _total(ref_logps))
    assert_close(retval, tr.retval)
    assert_close(retval, ref_ret)


@settings(max_examples=N)
@given(spec=specs(), seed=seeds, a=args)
def test_generate_full_constraints_weight_is_score(spec, seed, a):
    g = build(spec)
    k1, k2, _ = _keys(seed)
    choices = g.simulate(k1, (a,)).choices
    tr, w = g.generate(k2, choices, (a,))
    assert_choices_equal(tr.choices, choices)
    assert_close(w, tr.score)
    assert_close(tr.score, _total(_ref(spec, choices, a)[0]))


@settings(max_examples=N)
@given(spec=specs(), seed=seeds, a=args, data=st.data())
def test_generate_partial_constraints_weight(spec, seed, a, data):
    """With the prior as proposal, log p(all) - log q(unconstrained) is the sum of
    the constrained choices' conditional log densities."""
    g = build(spec)
    k1, k2, _ = _keys(seed)
    source = g.simulate(k1, (a,)).choices
    paths = subset(data.draw, addresses(spec))
    tr, w = g.generate(k2, choice_map_of(source, paths), (a,))
    for p in paths:
        np.testing.assert_array_equal(np.asarray(tr.choices[p]), np.asarray(source[p]))
    logps, _ = _ref(spec, tr.choices, a)
    assert_close(w, _total(logps, paths))
    assert_close(tr.score, _total(logps))


@settings(max_examples=N)
@given(spec=specs(), seed=seeds, a=args, a2=args, data=st.data())
def test_update_weight_discard_and_round_trip(spec, seed, a, a2, data):
    g = build(spec)
    k1, k2, k3 = _keys(seed)
    tr = g.simulate(k1, (a,))
    other = g.simulate(k2, (a2,)).choices
    paths = subset(data.draw, addresses(spec))
    constraints = choice_map_of(other, paths)
    new, w, discard = g.update(k3, tr, constraints, (a2,))
    # constrained addresses take the new values, the rest keep the old ones
    for p in addresses(spec):
        want = other[p] if p in paths else tr.choices[p]
        np.testing.assert_array_equal(np.asarray(new.choices[p]), np.asarray(want), err_msg=str(p))
    assert new.args == (a2,)
    # no new choice is sampled, so the weight is the ratio of joint densities
    assert_close(new.score, _total(_ref(spec, new.choices, a2)[0]))
    assert_close(w, float(new.score) - float(tr.score))
    # the discard holds exactly the replaced values
    assert sorted(discard.addresses()) == sorted(paths)
    for p in paths:
        np.testing.assert_array_equal(np.asarray(discard[p]), np.asarray(tr.choices[p]))
    # updating back with the discard restores the trace; the weights are negatives
    back, w_back, discard_back = g.update(k3, new, discard, (a,))
    assert_choices_equal(back.choices, tr.choices)
    assert_close(back.score, tr.score)
    assert_close(back.retval, tr.retval)
    assert_close(w_back, -w)
    assert_choices_equal(discard_back, constraints)


@settings(max_examples=N)
@given(spec=specs(), seed=seeds, a=args)
def test_regenerate_empty_selection_is_identity(spec, seed, a):
    g = build(spec)
    k1, k2, _ = _keys(seed)
    tr = g.simulate(k1, (a,))
    new, w = g.regenerate(k2, tr, ppl.select())
    assert float(w) == 0.0
    assert_choices_equal(new.choices, tr.choices)
    assert_close(new.score, tr.score)
    new, w = g.regenerate(k2, tr, ppl.select_none())
    assert float(w) == 0.0
    assert_choices_equal(new.choices, tr.choices)


@settings(max_examples=N)
@given(spec=specs(), seed=seeds, a=args, data=st.data())
def test_regenerate_weight_is_mh_ratio_for_prior_proposal(spec, seed, a, data):
    """Resampling a selection from the prior: the selected densities cancel
    against the proposal, leaving the change in the unselected choices' densities."""
    g = build(spec)
    k1, k2, _ = _keys(seed)
    tr = g.simulate(k1, (a,))
    chosen = subset(data.draw, addresses(spec) + _call_paths(spec))
    new, w = g.regenerate(k2, tr, ppl.select(*chosen))
    unselected = [p for p in addresses(spec) if not _selected(p, chosen)]
    for p in unselected:
        np.testing.assert_array_equal(np.asarray(new.choices[p]), np.asarray(tr.choices[p]), err_msg=str(p))
    old_lp, new_lp = _ref(spec, tr.choices, a)[0], _ref(spec, new.choices, a)[0]
    assert_close(new.score, _total(new_lp))
    assert_close(w, _total(new_lp, unselected) - _total(old_lp, unselected))


@settings(max_examples=5)
@given(spec=specs(max_nodes=3), seed=seeds, a=args, data=st.data())
def test_interface_under_jit_and_vmap_matches_eager(spec, seed, a, data):
    g = build(spec)
    k1, k2, k3 = _keys(seed)
    tr = g.simulate(k1, (a,))
    tr_jit = jax.jit(lambda k, a: g.simulate(k, (a,)))(k1, a)
    for p in addresses(spec):
        assert_close(tr_jit.choices[p], tr.choices[p])
    assert_close(tr_jit.score, tr.score)
    logp = jax.jit(lambda c, a: g.assess(c, (a,))[0])(tr.choices, a)
    assert_close(logp, tr.score)
    paths = subset(data.draw, addresses(spec))
    cons = choice_map_of(g.simulate(k2, (a,)).choices, paths)
    _, w = g.generate(k3, cons, (a,))
    _, w_jit = jax.jit(lambda k, c: g.generate(k, c, (a,)))(k3, cons)
    assert_close(w_jit, w)
    _, uw, _ = g.update(k3, tr, cons, (a,))
    _, uw_jit, _ = jax.jit(lambda t, c: g.update(k3, t, c, (a,)))(tr, cons)
    assert_close(uw_jit, uw)
    keys = jax.random.split(k2, 3)
    scores = jax.vmap(lambda k: g.simulate(k, (a,)).score)(keys)
    for i in range(3):
        assert_close(scores[i], g.simulate(keys[i], (a,)).score)


# ---------------------------------------------------------------------------
# regenerate as an MH kernel: the chain's stationary law is the exact posterior
# ---------------------------------------------------------------------------


@ppl.gen
def _discrete_model():
    z = ppl.categorical(jnp.array([0.5, 0.3, 0.2])) @ "z"
    b = ppl.flip(jnp.array([0.2, 0.6, 0.9])[z]) @ "b"
    loc = jnp.array([-1.0, 0.5, 2.0])[z] + jnp.where(b, 1.0, 0.0)
    ppl.normal(loc, 1.0) @ "y"
    return z


def _exact_discrete_posterior(y):
    pz = np.array([0.5, 0.3, 0.2])
    pb = np.array([0.2, 0.6, 0.9])
    post = np.zeros((3, 2))
    for z in range(3):
        for b in range(2):
            loc = [-1.0, 0.5, 2.0][z] + b
            post[z, b] = pz[z] * (pb[z] if b else 1 - pb[z]) * np.exp(-0.5 * (y - loc) ** 2)
    return post / post.sum()


def _mh_final_states(model, obs, selections, n_chains, n_steps, seed):
    def chain(key):
        k0, key = jax.random.split(key)
        tr, _ = model.generate(k0, obs, ())

        def step(tr, key):
            for sel in selections:
                key, k1, k2 = jax.random.split(key, 3)
                new, w = model.regenerate(k1, tr, sel)
                accept = jnp.log(jax.random.uniform(k2)) < w
                tr = jax.tree.map(lambda n, o: jnp.where(accept, n, o), new, tr)
            return tr, None

        tr, _ = jax.lax.scan(step, tr, jax.random.split(key, n_steps))
        return tr.choices

    return jax.jit(jax.vmap(chain))(jax.random.split(jax.random.key(seed), n_chains))


def test_regenerate_mh_chain_targets_exact_discrete_posterior():
    y = 1.2
    obs = ppl.ChoiceMap.d({"y": y})
    exact = _exact_discrete_posterior(y)
    n = 4000
    final = _mh_final_states(_discrete_model, obs, [ppl.select("z"), ppl.select("b")], n, 30, seed=1)
    z, b = np.asarray(final["z"]), np.asarray(final["b"]).astype(int)
    counts = np.zeros((3, 2))
    np.add.at(counts, (z, b), 1)
    freq = counts / n
    se = np.sqrt(exact * (1 - exact) / n)
    assert np.all(np.abs(freq - exact) < 5 * se + 1e-12), (freq, exact)


@ppl.gen
def _conjugate_model():
    mu = ppl.normal(1.0, 2.0) @ "mu"
    ppl.normal(mu, 1.0) @ "y1"
    ppl.normal(mu, 1.0) @ "y2"
    return mu


def test_regenerate_mh_chain_targets_exact_conjugate_posterior():
    ys = (0.3, 2.1)
    obs = ppl.ChoiceMap.d({"y1": ys[0], "y2": ys[1]})
    prec = 1 / 2.0**2 + 2.0
    post_mean, post_var = (1.0 / 2.0**2 + sum(ys)) / prec, 1 / prec
    n = 4000
    final = _mh_final_states(_conjugate_model, obs, [ppl.select("mu")], n, 60, seed=2)
    mu = np.asarray(final["mu"], dtype=np.float64)
    assert abs(mu.mean() - post_mean) < 5 * np.sqrt(post_var / n)
    # variance of the sample variance of a normal: 2 sigma^4 / (n - 1)
    assert abs(mu.var(ddof=1) - post_var) < 5 * np.sqrt(2 * post_var**2 / (n - 1))


def test_mh_check_is_not_vacuous_wrong_weight_is_detected():
    """Ignoring the weight (always accepting) samples the prior, which the
    exact-posterior check above must reject."""
    y = 1.2
    exact = _exact_discrete_posterior(y)
    obs = ppl.ChoiceMap.d({"y": y})
    n = 4000
    keys = jax.random.split(jax.random.key(3), n)
    trs = jax.jit(jax.vmap(lambda k: _discrete_model.generate(k, obs, ())[0].choices["z"]))(keys)
    freq = np.bincount(np.asarray(trs), minlength=3) / n
    se = np.sqrt(exact.sum(1) * (1 - exact.sum(1)) / n)
    assert np.any(np.abs(freq - exact.sum(1)) > 5 * se)
