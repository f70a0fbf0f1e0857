"""ppl.sum_out: exact log marginals against brute-force enumeration (top level,
inside ppl.vmap, a mixture's assignments) and against the forward algorithm
written out in numpy for an HMM; the most probable assignment against brute
force; the interface laws; and the errors for what it refuses."""

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.scipy.special import logsumexp

import ppl
from ppl import ChoiceMap

# -- models --------------------------------------------------------------------


@ppl.gen
def top(s):
    z = ppl.flip(0.3) @ "z"
    w = ppl.categorical(jnp.array([0.2, 0.5, 0.3])) @ "w"
    b = ppl.binomial(2, 0.6) @ "b"
    y = ppl.normal(jnp.where(z, 1.0, -1.0) + w - b, s) @ "y"
    return y, w


@ppl.gen
def point(mu):
    c = ppl.flip(0.4) @ "c"
    return ppl.normal(jnp.where(c, mu[1], mu[0]), 1.0) @ "x"


@ppl.gen
def mixture(sigma):
    mu = ppl.normal(jnp.zeros(2), sigma) @ "mu"
    return ppl.repeat(point, 4)(mu) @ "points"


K, T = 3, 5
TRANS = jnp.array([[0.8, 0.1, 0.1], [0.2, 0.7, 0.1], [0.25, 0.25, 0.5]])
MEANS = jnp.array([-2.0, 0.0, 2.0])


@ppl.gen
def step(z_prev, _):
    z = ppl.categorical(TRANS[z_prev]) @ "z"
    x = ppl.normal(MEANS[z], 1.0) @ "x"
    return z, x


@ppl.gen
def hmm(z0):
    _, xs = ppl.scan(step, length=T)(z0, None) @ "chain"
    return xs


XS = jnp.array([-1.5, 0.3, 2.2, 1.0, -0.4])
OBS = ChoiceMap.d({("chain", "x"): XS})


def brute(model, kept, args, assignments):
    """The log joint of every assignment (stacked choice maps), and their log sum;
    jitted, as everything here: eager runs dispatch op by op."""

    @jax.jit
    def joint(kept, args, a):
        return jax.vmap(lambda one: model.assess(kept | one, args)[0])(a)

    lps = joint(kept, args, assignments)
    return logsumexp(lps), lps


def stacked(values: dict) -> ChoiceMap:
    return ChoiceMap.d({a: jnp.asarray(v) for a, v in values.items()})


TOP_ALL = list(itertools.product((0, 1), range(3), range(3)))
TOP_ASSIGN = stacked(
    {
        "z": np.array([z for z, _, _ in TOP_ALL], bool),
        "w": np.array([w for _, w, _ in TOP_ALL]),
        "b": np.array([b for _, _, b in TOP_ALL]),
    }
)


def jit_assess(gen_fn):
    return jax.jit(lambda c, a: gen_fn.assess(c, a))


# -- top level -----------------------------------------------------------------


def test_top_level_joint_sum_matches_brute_force():
    marg = ppl.sum_out(top, ppl.select("z", "w", "b"))
    kept = ChoiceMap.d({"y": 0.7})
    want, lps = brute(top, kept, (1.3,), TOP_ASSIGN)
    lp, (y, w) = jit_assess(marg)(kept, (1.3,))
    np.testing.assert_allclose(lp, want, rtol=1e-6)
    assert y == 0.7 and w == -1  # w depends on the summed choices: no one value
    # The most probable assignment is brute force's argmax.
    best = TOP_ALL[int(jnp.argmax(lps))]
    mode = jax.jit(lambda c: marg.most_probable(c, (1.3,)))(kept)
    assert (bool(mode["z"]), int(mode["w"]), int(mode["b"])) == (bool(best[0]), *best[1:])


def test_gradient_of_the_marginal_matches_brute_force():
    marg = ppl.sum_out(top, ppl.select("z", "w", "b"))

    def exact(y, s):
        return marg.assess(ChoiceMap.d({"y": y}), (s,))[0]

    def by_hand(y, s):
        lps = jax.vmap(lambda a: top.assess(a | ChoiceMap.d({"y": y}), (s,))[0])(TOP_ASSIGN)
        return logsumexp(lps)

    got = jax.jit(jax.grad(exact, (0, 1)))(0.7, 1.3)
    np.testing.assert_allclose(got, jax.jit(jax.grad(by_hand, (0, 1)))(0.7, 1.3), rtol=1e-5)


def test_interface_laws():
    marg = ppl.sum_out(top, ppl.select("z", "w", "b"))

    @jax.jit
    def laws(key):
        k1, k2, k3, k4 = jax.random.split(key, 4)
        tr = marg.simulate(k1, (1.3,))
        new, w_gen = marg.generate(k2, tr.choices, (1.3,))
        upd, w_upd, discard = marg.update(k3, tr, ChoiceMap.d({"y": 0.1}), (0.9,))
        _, w_empty = marg.generate(k4, ChoiceMap.empty(), (1.3,))
        return tr, marg.assess(tr.choices, (1.3,))[0], new.score, w_gen, w_upd, discard, w_empty

    tr, lp, new_score, w_gen, w_upd, discard, w_empty = laws(jax.random.key(0))
    assert set(tr.choices.addresses()) == {("y",)}
    np.testing.assert_allclose(tr.score, lp, rtol=1e-6)
    np.testing.assert_allclose(w_gen, new_score, rtol=1e-6)
    want = jit_assess(marg)(ChoiceMap.d({"y": 0.1}), (0.9,))[0] - tr.score
    np.testing.assert_allclose(w_upd, want, rtol=1e-5)
    np.testing.assert_allclose(discard["y"], tr.choices["y"])
    assert w_empty == 0.0


# -- vmap and a mixture ------------------------------------------------------------


def test_mixture_assignments_sum_per_point():
    marg = ppl.sum_out(mixture, ppl.select(("points", "c")))
    xs = jnp.array([0.1, 2.0, -1.0, 1.4])
    kept = ChoiceMap.d({"mu": jnp.array([-1.0, 1.5]), ("points", "x"): xs})
    values = np.array(list(itertools.product((0, 1), repeat=4)), bool)
    want, lps = brute(mixture, kept, (3.0,), stacked({("points", "c"): values}))
    lp, ret = jit_assess(marg)(kept, (3.0,))
    np.testing.assert_allclose(lp, want, rtol=1e-6)
    np.testing.assert_allclose(ret, xs)  # the points' values do not depend on c
    mode = jax.jit(lambda c: marg.most_probable(c, (3.0,)))(kept)
    np.testing.assert_array_equal(mode["points", "c"], values[int(jnp.argmax(lps))])


def test_vmap_directly():
    marg = ppl.sum_out(ppl.repeat(point, 3), ppl.select("c"))
    mu, xs = jnp.array([0.0, 2.0]), jnp.array([0.5, 1.9, -0.2])
    lp, _ = jit_assess(marg)(ChoiceMap.d({"x": xs}), (mu,))
    cs = stacked({"c": np.array([False, True])})
    one = [brute(point, ChoiceMap.d({"x": x}), (mu,), cs)[0] for x in xs]
    np.testing.assert_allclose(lp, sum(one), rtol=1e-6)
    # every choice of the element summed: the sum is 1 per element
    flips = ppl.sum_out(ppl.repeat(ppl.flip, 3), ppl.select_all())
    np.testing.assert_allclose(jit_assess(flips)(ChoiceMap.empty(), (0.3,))[0], 0.0, atol=1e-6)


# -- scan: an HMM ---------------------------------------------------------------


def numpy_forward(xs, z0):
    trans, means = np.asarray(TRANS, np.float64), np.asarray(MEANS, np.float64)

    def emit(x):
        return np.exp(-0.5 * (x - means) ** 2) / np.sqrt(2 * np.pi)

    alpha = trans[z0] * emit(xs[0])
    for x in xs[1:]:
        alpha = (alpha @ trans) * emit(x)
    return np.log(alpha.sum())


def test_hmm_matches_the_forward_algorithm_and_viterbi_brute_force():
    marg = ppl.sum_out(hmm, ppl.select(("chain", "z")))
    scanned = ppl.sum_out(ppl.scan(step, length=T), ppl.select("z"))
    paths = np.array(list(itertools.product(range(K), repeat=T)))

    @jax.jit
    def run(obs):
        lps = jax.vmap(lambda z: hmm.assess(obs | ChoiceMap.d({("chain", "z"): z}), (1,))[0])(
            jnp.asarray(paths)
        )
        direct = scanned.assess(ChoiceMap.d({"x": obs["chain", "x"]}), (1, None))
        return marg.assess(obs, (1,)), direct, lps, marg.most_probable(obs, (1,))

    (lp, xs), (lp2, (carry, ys)), lps, best = run(OBS)
    np.testing.assert_allclose(lp, numpy_forward(np.asarray(XS, np.float64), 1), rtol=1e-5)
    np.testing.assert_allclose(lp, logsumexp(lps), rtol=1e-5)
    np.testing.assert_allclose(xs, XS)
    np.testing.assert_allclose(lp2, lp, rtol=1e-6)
    assert carry == -1  # the last state: summed out
    np.testing.assert_allclose(ys, XS)
    np.testing.assert_array_equal(best["chain", "z"], paths[int(jnp.argmax(lps))])


def test_a_global_choice_and_per_element_choices_together():
    @ppl.gen
    def regime_point(mu, shift):
        c = ppl.flip(0.4) @ "c"
        return ppl.normal(jnp.where(c, mu[1], mu[0]) + shift, 1.0) @ "x"

    @ppl.gen
    def regimes(mu):
        g = ppl.flip(0.2) @ "g"  # shifts every point: the points are not independent
        return ppl.repeat(regime_point, 3)(mu, jnp.where(g, 2.0, 0.0)) @ "points"

    marg = ppl.sum_out(regimes, ppl.select("g", ("points", "c")))
    mu, xs = jnp.array([-1.0, 1.0]), jnp.array([0.3, 2.5, -0.8])
    kept = ChoiceMap.d({("points", "x"): xs})
    combos = list(itertools.product((0, 1), repeat=4))
    assign = stacked(
        {
            "g": np.array([c[0] for c in combos], bool),
            ("points", "c"): np.array([c[1:] for c in combos], bool),
        }
    )
    want, lps = brute(regimes, kept, (mu,), assign)
    np.testing.assert_allclose(jit_assess(marg)(kept, (mu,))[0], want, rtol=1e-6)
    mode = jax.jit(lambda c: marg.most_probable(c, (mu,)))(kept)
    best = combos[int(jnp.argmax(lps))]
    assert bool(mode["g"]) == bool(best[0])
    np.testing.assert_array_equal(mode["points", "c"], np.array(best[1:], bool))


def test_hmm_sequences_under_vmap_and_gradients():
    @ppl.gen
    def sequences(z0s):
        return ppl.vmap(hmm)(z0s) @ "seqs"

    marg = ppl.sum_out(sequences, ppl.select(("seqs", "chain", "z")))
    xs = jnp.stack([XS, XS[::-1] * 0.5])
    z0s = jnp.array([0, 2])

    def log_p(xs):
        return marg.assess(ChoiceMap.d({("seqs", "chain", "x"): xs}), (z0s,))[0]

    lp, g = jax.jit(jax.value_and_grad(log_p))(xs)
    x64 = np.asarray(xs, np.float64)
    want = numpy_forward(x64[0], 0) + numpy_forward(x64[1], 2)
    np.testing.assert_allclose(lp, want, rtol=1e-5)
    # the gradient in the observations, against the forward algorithm's by finite differences
    eps = 1e-5
    fd = [
        [
            (numpy_forward(x64[i] + eps * e, z0) - numpy_forward(x64[i] - eps * e, z0)) / (2 * eps)
            for e in np.eye(T)
        ]
        for i, z0 in enumerate((0, 2))
    ]
    np.testing.assert_allclose(g, fd, rtol=1e-3, atol=1e-4)


# -- errors (raised while staging: traced only, nothing runs) ------------------------


def staged(fn, *args):
    return jax.eval_shape(fn, *args)


def test_continuous_choice_is_refused():
    with pytest.raises(ppl.PPLError, match="'y'.*cannot be enumerated"):
        staged(lambda: ppl.sum_out(top, ppl.select("y")).assess(ChoiceMap.d({}), (1.0,)))


def test_too_many_assignments_names_the_choices():
    marg = ppl.sum_out(top, ppl.select("z", "w", "b"), max_assignments=10)
    with pytest.raises(ppl.PPLError, match=r"'b' \(3\^1\).*'z' \(2\^1\).*max_assignments=10"):
        staged(lambda: marg.assess(ChoiceMap.d({"y": 0.0}), (1.0,)))


def test_selection_naming_nothing():
    with pytest.raises(ppl.PPLError, match="names none of the choices"):
        staged(lambda: ppl.sum_out(top, ppl.select("nope")).assess(ChoiceMap.d({"y": 0.0}), (1.0,)))


def test_summed_choice_given_is_refused():
    marg = ppl.sum_out(top, ppl.select("z", "w", "b"))
    with pytest.raises(ppl.PPLError, match="'z'.*sums out"):
        staged(lambda: marg.assess(ChoiceMap.d({"y": 0.0, "z": True}), (1.0,)))


def test_carry_depending_on_the_received_carry_is_refused():
    @ppl.gen
    def counting(carry, _):
        z_prev, t = carry
        z = ppl.categorical(TRANS[z_prev]) @ "z"
        ppl.normal(MEANS[z], 1.0) @ "x"
        return (z, t + 1), None

    marg = ppl.sum_out(ppl.scan(counting, length=3), ppl.select("z"))
    with pytest.raises(ppl.PPLError, match="depends on the carry it received.*xs"):
        staged(lambda: marg.assess(ChoiceMap.d({"x": jnp.zeros(3)}), ((0, 0), None)))


def test_using_a_separately_summed_value_is_refused():
    @ppl.gen
    def leaky(mu):
        cs = ppl.repeat(ppl.flip, 3)(0.5) @ "cs"
        ppl.normal(jnp.sum(cs) * mu, 1.0) @ "y"

    marg = ppl.sum_out(leaky, ppl.select("cs"))
    with pytest.raises(ppl.PPLError, match="'cs'.*uses a part of its return value"):
        staged(lambda: marg.assess(ChoiceMap.d({"y": 0.0}), (1.0,)))


def test_partial_generate_and_regenerate_are_refused():
    marg = ppl.sum_out(mixture, ppl.select(("points", "c")))
    with pytest.raises(ppl.PPLError, match=r"\('points', 'x'\) \(inside a separately summed"):
        staged(lambda: marg.generate(jax.random.key(0), ChoiceMap.d({"mu": jnp.zeros(2)}), (3.0,)))

    @ppl.gen
    def chained():
        z = ppl.flip(0.5) @ "z"
        u = ppl.normal(jnp.where(z, 1.0, -1.0), 1.0) @ "u"
        ppl.normal(u, 1.0) @ "y"

    chain_marg = ppl.sum_out(chained, ppl.select("z"))
    with pytest.raises(ppl.PPLError, match="'u' \\(whose prior depends on the summed choices"):
        staged(lambda: chain_marg.generate(jax.random.key(0), ChoiceMap.d({"y": 0.0}), ()))
    with pytest.raises(ppl.PPLError, match="cannot regenerate"):
        staged(
            lambda k: marg.regenerate(k, marg.simulate(k, (3.0,)), ppl.select("mu")),
            jax.random.key(0),
        )


def test_partial_generate_weighs_the_prior_proposal():
    marg = ppl.sum_out(mixture, ppl.select(("points", "c")))
    obs = ChoiceMap.d({("points", "x"): jnp.array([0.1, 2.0, -1.0, 1.4])})

    @jax.jit
    def run(key):
        tr, w = marg.generate(key, obs, (3.0,))
        prior = ppl.normal.assess(ChoiceMap.value(tr.choices["mu"]), (jnp.zeros(2), 3.0))[0]
        return tr.score, w, prior, marg.assess(tr.choices, (3.0,))[0]

    score, w, prior, lp = run(jax.random.key(0))
    np.testing.assert_allclose(score, lp, rtol=1e-6)
    np.testing.assert_allclose(w, score - prior, rtol=1e-5)


def test_a_count_that_is_traced_is_refused():
    @ppl.gen
    def counts(n):
        k = ppl.binomial(n, 0.5) @ "k"
        ppl.normal(k, 1.0) @ "y"

    marg = ppl.sum_out(counts, ppl.select("k"))
    with pytest.raises(
        ppl.PPLError, match="support of .k. \\(binomial\\) is not known.*Python ints"
    ):
        staged(lambda n: marg.assess(ChoiceMap.d({"y": 1.0}), (n,)), 3)


def test_a_switch_of_distributions_is_summed_per_branch():
    @ppl.gen
    def branchy(i):
        ppl.switch(ppl.flip, ppl.flip)(i, 0.5) @ "s"
        ppl.normal(0.0, 1.0) @ "y"

    marg = ppl.sum_out(branchy, ppl.select("s"))
    exact = float(jax.scipy.stats.norm.logpdf(0.3))  # each branch's flip sums to one
    for i in (0, 1):
        logp = marg.assess(ChoiceMap.d({"y": 0.3}), (i,))[0]
        np.testing.assert_allclose(float(logp), exact, rtol=1e-6)


def test_a_move_elsewhere_in_an_enclosing_model():
    inner = ppl.sum_out(ppl.repeat(point, 4), ppl.select("c"))

    @ppl.gen
    def outer():
        mu = ppl.normal(jnp.zeros(2), 3.0) @ "mu"
        return inner(mu) @ "points"

    obs = ChoiceMap.d({("points", "x"): jnp.array([0.1, 2.0, -1.0, 1.4])})

    @jax.jit
    def move(key):
        k1, k2 = jax.random.split(key)
        tr, _ = outer.generate(k1, obs | ChoiceMap.d({"mu": jnp.array([0.0, 1.0])}), ())
        new, w = outer.regenerate(k2, tr, ppl.select("mu"))
        lik = [inner.assess(obs.get_submap("points"), (t["mu"],))[0] for t in (tr, new)]
        return w, lik[1] - lik[0]

    w, want = move(jax.random.key(0))
    np.testing.assert_allclose(w, want, rtol=1e-5)
