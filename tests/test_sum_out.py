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


def brute(model, kept, args, addr, values):
    """log sum over every assignment of the choice at ``addr`` (given values)."""
    lps = [model.assess(kept | ChoiceMap.d({addr: v}), args)[0] for v in values]
    return logsumexp(jnp.stack(lps)), jnp.stack(lps)


# -- top level -----------------------------------------------------------------


def test_top_level_joint_sum_matches_brute_force():
    marg = ppl.sum_out(top, ppl.select("z", "w", "b"))
    kept = ChoiceMap.d({"y": 0.7})
    lps = [
        top.assess(kept | ChoiceMap.d({"z": bool(z), "w": w, "b": b}), (1.3,))[0]
        for z, w, b in itertools.product((0, 1), range(3), range(3))
    ]
    lp, (y, w) = marg.assess(kept, (1.3,))
    np.testing.assert_allclose(lp, logsumexp(jnp.stack(lps)), rtol=1e-6)
    assert y == 0.7 and w == -1  # w depends on the summed choices: no one value
    jitted = jax.jit(lambda c, s: marg.assess(c, (s,))[0])(kept, 1.3)
    np.testing.assert_allclose(jitted, lp, rtol=1e-6)
    # The most probable assignment is brute force's argmax.
    best = list(itertools.product((0, 1), range(3), range(3)))[int(jnp.argmax(jnp.stack(lps)))]
    mode = marg.most_probable(kept, (1.3,))
    assert (bool(mode["z"]), int(mode["w"]), int(mode["b"])) == (bool(best[0]), *best[1:])


def test_gradient_of_the_marginal_matches_brute_force():
    marg = ppl.sum_out(top, ppl.select("z", "w", "b"))

    def exact(y, s):
        return marg.assess(ChoiceMap.d({"y": y}), (s,))[0]

    def by_hand(y, s):
        return logsumexp(
            jnp.stack(
                [
                    top.assess(ChoiceMap.d({"y": y, "z": bool(z), "w": w, "b": b}), (s,))[0]
                    for z, w, b in itertools.product((0, 1), range(3), range(3))
                ]
            )
        )

    np.testing.assert_allclose(
        jax.grad(exact, (0, 1))(0.7, 1.3), jax.grad(by_hand, (0, 1))(0.7, 1.3), rtol=1e-5
    )


def test_interface_laws():
    marg = ppl.sum_out(top, ppl.select("z", "w", "b"))
    tr = marg.simulate(jax.random.key(0), (1.3,))
    assert set(tr.choices.addresses()) == {("y",)}
    np.testing.assert_allclose(tr.score, marg.assess(tr.choices, (1.3,))[0], rtol=1e-6)
    new, w = marg.generate(jax.random.key(1), tr.choices, (1.3,))
    np.testing.assert_allclose(w, new.score, rtol=1e-6)
    upd, w, discard = marg.update(jax.random.key(2), tr, ChoiceMap.d({"y": 0.1}), (0.9,))
    want = marg.assess(ChoiceMap.d({"y": 0.1}), (0.9,))[0] - tr.score
    np.testing.assert_allclose(w, want, rtol=1e-5)
    np.testing.assert_allclose(discard["y"], tr.choices["y"])
    tr0, w0 = marg.generate(jax.random.key(3), None, (1.3,))
    assert w0 == 0.0


# -- vmap and a mixture ------------------------------------------------------------


def test_mixture_assignments_sum_per_point():
    marg = ppl.sum_out(mixture, ppl.select(("points", "c")))
    xs = jnp.array([0.1, 2.0, -1.0, 1.4])
    kept = ChoiceMap.d({"mu": jnp.array([-1.0, 1.5]), ("points", "x"): xs})
    values = [jnp.array(c, bool) for c in itertools.product((0, 1), repeat=4)]
    want, lps = brute(mixture, kept, (3.0,), ("points", "c"), values)
    lp, ret = marg.assess(kept, (3.0,))
    np.testing.assert_allclose(lp, want, rtol=1e-6)
    np.testing.assert_allclose(ret, xs)  # the points' values do not depend on c
    mode = marg.most_probable(kept, (3.0,))
    np.testing.assert_array_equal(mode["points", "c"], values[int(jnp.argmax(lps))])


def test_vmap_directly():
    marg = ppl.sum_out(ppl.vmap(point, in_axes=None), ppl.select("c"))
    # a vmap with no mapped argument has no length; use repeat
    marg = ppl.sum_out(ppl.repeat(point, 3), ppl.select("c"))
    mu, xs = jnp.array([0.0, 2.0]), jnp.array([0.5, 1.9, -0.2])
    lp, _ = marg.assess(ChoiceMap.d({"x": xs}), (mu,))
    one = [
        logsumexp(
            jnp.stack([point.assess(ChoiceMap.d({"x": x, "c": bool(c)}), (mu,))[0] for c in (0, 1)])
        )
        for x in xs
    ]
    np.testing.assert_allclose(lp, sum(one), rtol=1e-6)


# -- scan: an HMM ---------------------------------------------------------------


def numpy_forward(xs, z0):
    trans, means = np.asarray(TRANS, np.float64), np.asarray(MEANS, np.float64)

    def emit(x):
        return np.exp(-0.5 * (x - means) ** 2) / np.sqrt(2 * np.pi)

    alpha = trans[z0] * emit(xs[0])
    for x in xs[1:]:
        alpha = (alpha @ trans) * emit(x)
    return np.log(alpha.sum())


def test_hmm_matches_the_forward_algorithm_by_hand():
    marg = ppl.sum_out(hmm, ppl.select(("chain", "z")))
    lp, xs = marg.assess(OBS, (1,))
    np.testing.assert_allclose(lp, numpy_forward(np.asarray(XS, np.float64), 1), rtol=1e-5)
    np.testing.assert_allclose(xs, XS)
    scanned = ppl.sum_out(ppl.scan(step, length=T), ppl.select("z"))
    lp2, (carry, ys) = scanned.assess(ChoiceMap.d({"x": XS}), (1, None))
    np.testing.assert_allclose(lp2, lp, rtol=1e-6)
    assert carry == -1  # the last state: summed out
    np.testing.assert_allclose(jax.jit(lambda c: marg.assess(c, (1,))[0])(OBS), lp, rtol=1e-6)


def test_viterbi_matches_brute_force():
    marg = ppl.sum_out(hmm, ppl.select(("chain", "z")))
    paths = [jnp.array(p) for p in itertools.product(range(K), repeat=T)]
    lps = jax.jit(
        jax.vmap(lambda z: hmm.assess(OBS | ChoiceMap.d({("chain", "z"): z}), (1,))[0])
    )(jnp.stack(paths))
    np.testing.assert_allclose(marg.assess(OBS, (1,))[0], logsumexp(lps), rtol=1e-5)
    best = marg.most_probable(OBS, (1,))["chain", "z"]
    np.testing.assert_array_equal(best, paths[int(jnp.argmax(lps))])


# -- errors ----------------------------------------------------------------------


def test_continuous_choice_is_refused():
    with pytest.raises(ppl.PPLError, match="'y'.*cannot be enumerated"):
        ppl.sum_out(top, ppl.select("y")).assess(ChoiceMap.d({}), (1.0,))


def test_too_many_assignments_names_the_choices():
    marg = ppl.sum_out(top, ppl.select("z", "w", "b"), max_assignments=10)
    with pytest.raises(ppl.PPLError, match=r"'z' \(2\^1\).*'w' \(3\^1\).*max_assignments=10"):
        marg.assess(ChoiceMap.d({"y": 0.0}), (1.0,))


def test_selection_naming_nothing():
    with pytest.raises(ppl.PPLError, match="names none of the choices"):
        ppl.sum_out(top, ppl.select("nope")).assess(ChoiceMap.d({"y": 0.0}), (1.0,))


def test_summed_choice_given_is_refused():
    marg = ppl.sum_out(top, ppl.select("z", "w", "b"))
    with pytest.raises(ppl.PPLError, match="'z'.*sums out"):
        marg.assess(ChoiceMap.d({"y": 0.0, "z": True}), (1.0,))


def test_carry_depending_on_the_received_carry_is_refused():
    @ppl.gen
    def counting(carry, _):
        z_prev, t = carry
        z = ppl.categorical(TRANS[z_prev]) @ "z"
        ppl.normal(MEANS[z], 1.0) @ "x"
        return (z, t + 1), None

    marg = ppl.sum_out(ppl.scan(counting, length=3), ppl.select("z"))
    with pytest.raises(ppl.PPLError, match="depends on the carry it received.*xs"):
        marg.assess(ChoiceMap.d({"x": jnp.zeros(3)}), ((0, 0), None))


def test_using_a_separately_summed_value_is_refused():
    @ppl.gen
    def leaky(mu):
        cs = ppl.repeat(ppl.flip, 3)(0.5) @ "cs"
        ppl.normal(jnp.sum(cs) * mu, 1.0) @ "y"

    marg = ppl.sum_out(leaky, ppl.select("cs"))
    with pytest.raises(ppl.PPLError, match="'cs'.*uses a part of its return value"):
        marg.assess(ChoiceMap.d({"y": 0.0}), (1.0,))


def test_partial_generate_and_regenerate_are_refused():
    marg = ppl.sum_out(mixture, ppl.select(("points", "c")))
    with pytest.raises(ppl.PPLError, match=r"\('points', 'x'\).*Constrain them too"):
        marg.generate(jax.random.key(0), ChoiceMap.d({"mu": jnp.zeros(2)}), (3.0,))
    tr = marg.simulate(jax.random.key(0), (3.0,))
    with pytest.raises(ppl.PPLError, match="cannot regenerate"):
        marg.regenerate(jax.random.key(0), tr, ppl.select("mu"))
