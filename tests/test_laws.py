"""The laws of the generative-function interface (DESIGN.md section 2), checked on
random programs from ``_strategies.specs`` against an independent numpyro
reference (``_reference``). Programs whose branches run under a traced index,
with constraints at addresses only some branches make: ``test_switch_laws.py``."""

from __future__ import annotations

import inspect

import jax
import jax.numpy as jnp
import numpy as np
from hypothesis import Phase, given, settings
from hypothesis import strategies as st

import ppl
from _strategies import (
    args,
    assert_choices_equal,
    assert_close,
    build,
    choice_map_of,
    seeds,
    CHEAP,
    combinator_specs,
    specs,
    static_specs,
    subset,
)
from _reference import reference

N_STATIC = 25  # examples per law on programs of distributions and nested @gen calls (run eagerly)
NO_SHRINK = [Phase.explicit, Phase.reuse, Phase.generate, Phase.target, Phase.explain]
N_COMB = (
    3  # examples per law on programs with combinators (run under jit; each new program compiles)
)


class Eager:
    """The interface of ``g``, called as is."""

    jitted = False

    def __init__(self, g):
        self.g = g

    def simulate(self, k, args):
        return self.g.simulate(k, args)

    def assess(self, c, args):
        return self.g.assess(c, args)

    def generate(self, k, c, args):
        return self.g.generate(k, c, args)

    def update(self, k, tr, c, args):
        return self.g.update(k, tr, c, args)

    def regenerate(self, k, tr, sel):
        return self.g.regenerate(k, tr, sel)


class Jitted(Eager):
    """The interface of ``g``, each call compiled with ``jax.jit`` (arguments,
    keys, traces and choice maps all traced)."""

    jitted = True

    def simulate(self, k, args):
        return jax.jit(self.g.simulate)(k, args)

    def assess(self, c, args):
        return jax.jit(self.g.assess)(c, args)

    def generate(self, k, c, args):
        return jax.jit(self.g.generate)(k, c, args)

    def update(self, k, tr, c, args):
        return jax.jit(self.g.update)(k, tr, c, args)

    def regenerate(self, k, tr, sel):
        return jax.jit(lambda k, tr: self.g.regenerate(k, tr, sel))(k, tr)


def law(n_static=N_STATIC, n_comb=N_COMB, **strategies):
    """Check a law on random programs without combinators (eagerly) and with
    combinators (under jit); the check gets ``(spec, G, ...)`` with ``G`` the
    interface of ``build(spec)``."""

    def deco(check):
        sig = inspect.signature(check)
        sig = sig.replace(parameters=[p for name, p in sig.parameters.items() if name != "G"])

        def wrap(interface, suffix):
            def run(*args, **kw):
                kw = sig.bind(*args, **kw).arguments
                check(G=interface(build(kw["spec"])), **kw)

            run.__signature__ = sig
            run.__name__ = run.__qualname__ = f"test{check.__name__}_{suffix}"
            return run

        eager, jitted = wrap(Eager, "static"), wrap(Jitted, "combinators")
        static = settings(max_examples=n_static)(given(spec=static_specs, **strategies)(eager))
        # no shrinking: each candidate program compiles anew, so shrinking a failure would
        # take minutes
        comb = settings(max_examples=n_comb, phases=NO_SHRINK)(
            given(spec=combinator_specs, **strategies)(jitted)
        )
        return static, comb

    return deco


def _keys(seed, n=3):
    return jax.random.split(jax.random.key(seed), n)


def _ref(spec, choices, a):
    """Reference log densities by visited address, and the return value."""
    return reference(spec, choices.to_dict(), a)


def _total(logps, paths=None):
    paths = logps.keys() if paths is None else paths
    return float(sum(np.asarray(logps[p], dtype=np.float64) for p in paths))


def _selected(path, chosen) -> bool:
    return any(path[: len(c)] == c for c in chosen)


def _components(paths):
    """The component choices of mixtures, innermost first."""
    return sorted((p for p in paths if p[-1] == "component"), key=len, reverse=True)


def _with_components(chosen, visited):
    """Constraining a choice inside a mixture's value also constrains the
    mixture's component, so the constrained address is in the branch taken."""
    out = set(chosen)
    for c in _components(visited):
        under = (*c[:-1], "value")
        if any(p[: len(under)] == under for p in out):
            out.add(c)
    return [p for p in visited if p in out]


def _same(a, b, msg=""):
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b), err_msg=str(msg))


def _simulate_score_equals_assess_and_numpyro_reference(spec, G, seed, a):
    tr = G.simulate(_keys(seed)[0], (a,))
    ref_logps, ref_ret = _ref(spec, tr.choices, a)
    assert sorted(tr.choices.addresses()) == sorted(ref_logps)
    assert len(tr.args) == 1
    assert_close(tr.args[0], a)
    logp, retval = G.assess(tr.choices, (a,))
    assert np.isfinite(float(tr.score))
    assert_close(tr.score, logp)
    assert_close(logp, _total(ref_logps))
    assert_close(retval, tr.retval)
    assert_close(retval, ref_ret)


(
    test_simulate_score_equals_assess_and_numpyro_reference_static,
    test_simulate_score_equals_assess_and_numpyro_reference_combinators,
) = law(seed=seeds, a=args)(_simulate_score_equals_assess_and_numpyro_reference)


def _generate_full_constraints_weight_is_score(spec, G, seed, a):
    k1, k2, _ = _keys(seed)
    choices = G.simulate(k1, (a,)).choices
    tr, w = G.generate(k2, choices, (a,))
    assert_choices_equal(tr.choices, choices)
    assert_close(w, tr.score)
    assert_close(tr.score, _total(_ref(spec, choices, a)[0]))


(
    test_generate_full_constraints_weight_is_score_static,
    test_generate_full_constraints_weight_is_score_combinators,
) = law(n_comb=2, seed=seeds, a=args)(_generate_full_constraints_weight_is_score)


def _generate_partial_constraints_weight(spec, G, seed, a, data):
    """With the prior as proposal, log p(all) - log q(unconstrained) is the sum of
    the constrained choices' conditional log densities."""
    k1, k2, _ = _keys(seed)
    source = G.simulate(k1, (a,)).choices
    visited = list(_ref(spec, source, a)[0])
    paths = _with_components(subset(data.draw, visited), visited)
    tr, w = G.generate(k2, choice_map_of(source, paths), (a,))
    for p in paths:
        _same(tr.choices[p], source[p], p)
    logps, _ = _ref(spec, tr.choices, a)
    assert sorted(tr.choices.addresses()) == sorted(logps)
    assert_close(w, _total(logps, paths))
    assert_close(tr.score, _total(logps))


(
    test_generate_partial_constraints_weight_static,
    test_generate_partial_constraints_weight_combinators,
) = law(seed=seeds, a=args, data=st.data())(_generate_partial_constraints_weight)


def _update_weight_discard_and_round_trip(spec, G, seed, a, a2, data):
    k1, k2, k3 = _keys(seed)
    tr = G.simulate(k1, (a,))
    other = G.simulate(k2, (a2,)).choices
    old_lp = _ref(spec, tr.choices, a)[0]
    other_visited = list(_ref(spec, other, a2)[0])
    paths = _with_components(subset(data.draw, other_visited), other_visited)
    constraints = choice_map_of(other, paths)
    new, w, discard = G.update(k3, tr, constraints, (a2,))
    assert_close(new.args[0], a2)
    new_lp = _ref(spec, new.choices, a2)[0]
    assert sorted(new.choices.addresses()) == sorted(new_lp)
    # constrained addresses take the new values; the others that remain keep theirs
    for p in new_lp:
        if p in paths:
            _same(new.choices[p], other[p], p)
        elif p in old_lp:
            _same(new.choices[p], tr.choices[p], p)
    # choices at new addresses (a branch newly taken) are sampled from the prior
    fresh = [p for p in new_lp if p not in old_lp and p not in paths]
    assert_close(new.score, _total(new_lp))
    assert_close(w, _total(new_lp, [p for p in new_lp if p not in fresh]) - _total(old_lp))
    # the discard holds old values: every replaced one and every one no longer made
    # (under jit, a switch with a traced index also lists its untaken branches'
    # addresses, holding placeholders: they are not choices of the old trace)
    for p in discard.addresses():
        if p in old_lp or not G.jitted:
            _same(discard[p], tr.choices[p], p)
    for p in old_lp:
        if p in paths or p not in new_lp:
            assert p in discard, p
    # updating back with the discard restores the trace
    back, w_back, discard_back = G.update(k3, new, discard, (a,))
    assert_choices_equal(back.choices, tr.choices)
    assert_close(back.score, tr.score)
    assert_close(back.retval, tr.retval)
    assert_close(w_back, float(tr.score) - float(new.score))
    if not fresh:  # nothing was sampled: the two weights are negatives
        assert_close(w_back, -w)
    for p in discard_back.addresses():
        if p in new_lp or not G.jitted:
            _same(discard_back[p], new.choices[p], p)


(
    test_update_weight_discard_and_round_trip_static,
    test_update_weight_discard_and_round_trip_combinators,
) = law(seed=seeds, a=args, a2=args, data=st.data())(_update_weight_discard_and_round_trip)


def _regenerate_empty_selection_is_identity(spec, G, seed, a):
    k1, k2, _ = _keys(seed)
    tr = G.simulate(k1, (a,))
    for empty in (ppl.select(), ppl.select_none()):
        new, w = G.regenerate(k2, tr, empty)
        if G.jitted:
            assert_close(w, 0.0)
        else:
            assert float(w) == 0.0
        assert_choices_equal(new.choices, tr.choices)
        assert_close(new.score, tr.score)


(
    test_regenerate_empty_selection_is_identity_static,
    test_regenerate_empty_selection_is_identity_combinators,
) = law(n_comb=2, seed=seeds, a=args)(_regenerate_empty_selection_is_identity)


def _regenerate_weight_is_mh_ratio_for_prior_proposal(spec, G, seed, a, data):
    """Resampling a selection from the prior: the selected densities cancel
    against the proposal, and so do choices a resampled mixture component
    brings in (sampled from the prior) or drops (proposed from the prior by the
    reverse move), leaving the change in the kept choices' densities."""
    k1, k2, _ = _keys(seed)
    tr = G.simulate(k1, (a,))
    old_lp = _ref(spec, tr.choices, a)[0]
    visited = list(old_lp)
    prefixes = sorted({p[:i] for p in visited for i in range(1, len(p))})
    chosen = subset(data.draw, visited + prefixes)
    new, w = G.regenerate(k2, tr, ppl.select(*chosen))
    new_lp = _ref(spec, new.choices, a)[0]
    assert sorted(new.choices.addresses()) == sorted(new_lp)
    kept = [p for p in visited if p in new_lp and not _selected(p, chosen)]
    for p in kept:
        _same(new.choices[p], tr.choices[p], p)
    assert_close(new.score, _total(new_lp))
    assert_close(w, _total(new_lp, kept) - _total(old_lp, kept))


(
    test_regenerate_weight_is_mh_ratio_for_prior_proposal_static,
    test_regenerate_weight_is_mh_ratio_for_prior_proposal_combinators,
) = law(seed=seeds, a=args, data=st.data())(_regenerate_weight_is_mh_ratio_for_prior_proposal)


def _jit_and_vmap_match_eager(spec, G, seed, a, data):
    g = G.g
    k1, k2, k3 = _keys(seed)
    tr = g.simulate(k1, (a,))
    visited = list(_ref(spec, tr.choices, a)[0])
    tr_jit = jax.jit(g.simulate)(k1, (a,))
    assert sorted(tr_jit.choices.addresses()) == sorted(visited)
    for p in visited:
        assert_close(tr_jit.choices[p], tr.choices[p])
    assert_close(tr_jit.score, tr.score)
    source = g.simulate(k2, (a,)).choices
    source_visited = list(_ref(spec, source, a)[0])
    cons = choice_map_of(
        source, _with_components(subset(data.draw, source_visited), source_visited)
    )
    _, w = g.generate(k3, cons, (a,))
    _, w_jit = jax.jit(g.generate)(k3, cons, (a,))
    assert_close(w_jit, w)
    keys = jax.random.split(k2, 3)
    scores = jax.vmap(lambda k: g.simulate(k, (a,)).score)(keys)
    for i in range(3):
        assert_close(scores[i], g.simulate(keys[i], (a,)).score)


# Programs with combinators already run under jit above, and eagerly and under
# vmap in test_combinators.py; here, plain programs of quickly compiled families.
test_jit_and_vmap_match_eager = settings(max_examples=3)(
    given(spec=specs(combinators=False, families=CHEAP), seed=seeds, a=args, data=st.data())(
        lambda spec, seed, a, data: _jit_and_vmap_match_eager(
            spec, Eager(build(spec)), seed, a, data
        )
    )
)


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
    final = _mh_final_states(
        _discrete_model, obs, [ppl.select("z"), ppl.select("b")], n, 30, seed=1
    )
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
