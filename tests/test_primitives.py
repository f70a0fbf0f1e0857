"""ppl.factor, ppl.deterministic, ppl.improper_uniform, half-normal/half-Cauchy,
ordered vectors, and distribution parameters held static."""

from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
import numpyro.distributions as nd
import pytest

import ppl
from ppl.inference import vi

KEY = jax.random.key(0)
Y = 0.5  # the observation; prior mu ~ N(0, 2), likelihood N(y; mu, 1)
POST_MEAN, POST_VAR = Y * 4.0 / 5.0, 4.0 / 5.0
LOG_EVIDENCE = float(nd.Normal(0.0, math.sqrt(5.0)).log_prob(Y))


@ppl.gen
def with_dist(y):
    mu = ppl.normal(0.0, 2.0) @ "mu"
    ppl.normal(mu, 1.0) @ "y"
    return mu


@ppl.gen
def with_factor(y):
    mu = ppl.normal(0.0, 2.0) @ "mu"
    ppl.factor(ppl.normal.log_density(y, (mu, 1.0))) @ "y"
    return mu


# -- factor -----------------------------------------------------------------------


def test_factor_scores_like_the_distribution_it_replaces():
    cm = ppl.ChoiceMap.d({"mu": 0.3})
    want, _ = with_dist.assess(cm | ppl.ChoiceMap.d({"y": Y}), (Y,))
    got, retval = with_factor.assess(cm, (Y,))
    np.testing.assert_allclose(got, want, rtol=1e-6)
    assert float(retval) == pytest.approx(0.3)
    tr = with_factor.simulate(KEY, (Y,))
    assert tr.choices.addresses() == [("mu",)]  # the factor records no choice
    np.testing.assert_allclose(tr.score, with_factor.assess(tr.choices, (Y,))[0], rtol=1e-6)
    tr2, w = with_factor.generate(KEY, cm, (Y,))
    np.testing.assert_allclose(w, want, rtol=1e-6)  # fully constrained: weight = score
    new, w, discard = with_factor.update(KEY, tr2, {}, (Y + 1.0,))
    np.testing.assert_allclose(w, new.score - tr2.score, rtol=1e-6)
    assert discard.is_empty()


def test_factor_under_jit_vmap_and_grad():
    cm = ppl.ChoiceMap.d({"mu": 0.3})

    def score(y):
        return with_factor.assess(cm, (y,))[0]

    np.testing.assert_allclose(jax.grad(score)(Y), 0.3 - Y, rtol=1e-5)
    np.testing.assert_allclose(jax.jit(score)(Y), score(Y), rtol=1e-6)
    ys = jnp.array([0.0, 1.0])
    np.testing.assert_allclose(jax.vmap(score)(ys), [score(0.0), score(1.0)], rtol=1e-6)


def test_factor_inside_scan_and_vmap():
    @ppl.gen
    def step(carry, y):
        z = ppl.normal(carry, 1.0) @ "z"
        ppl.factor(-0.5 * (y - z) ** 2) @ "lik"
        return z, z

    ys = jnp.array([0.1, -0.2, 0.3])
    model = ppl.scan(step, length=3)
    tr = model.simulate(KEY, (0.0, ys))
    z = tr.choices["z"]
    lik = -0.5 * jnp.sum((ys - z) ** 2)
    prior = ppl.normal.log_density(z, (jnp.concatenate([jnp.zeros(1), z[:-1]]), 1.0))
    np.testing.assert_allclose(tr.score, prior + lik, rtol=1e-5)
    np.testing.assert_allclose(model.assess(tr.choices, (0.0, ys))[0], tr.score, rtol=1e-6)

    mapped = ppl.vmap(with_factor, in_axes=0)
    tv = mapped.simulate(KEY, (ys,))
    np.testing.assert_allclose(mapped.assess(tv.choices, (ys,))[0], tv.score, rtol=1e-6)


def test_factor_importance_evidence_equals_the_distributions():
    obs = {"y": Y}
    a = ppl.inference.importance(KEY, with_dist, obs, (Y,), n=2000)
    b = ppl.inference.importance(KEY, with_factor, {}, (Y,), n=2000)
    # the same key draws the same mu: the weights agree exactly
    np.testing.assert_allclose(a.log_weights, b.log_weights, rtol=1e-5)
    w = np.exp(np.asarray(b.log_weights, np.float64))
    se = w.std() / math.sqrt(w.size) / w.mean()  # of the log estimate, by the delta method
    assert abs(float(b.log_marginal_likelihood) - LOG_EVIDENCE) < 4 * se


def test_factor_mcmc_posterior():
    r = ppl.inference.run_mcmc(
        KEY, ppl.inference.hmc(step_size=0.5), with_factor, (Y,), {}, n_samples=500, n_warmup=200
    )
    mu = np.asarray(r.samples["mu"]).ravel()
    se = math.sqrt(POST_VAR / float(r.ess()["mu"]))
    assert abs(mu.mean() - POST_MEAN) < 4 * se
    assert mu.var() == pytest.approx(POST_VAR, rel=0.15)


def test_factor_enters_the_density_inside_objectives():
    @ppl.gen
    def guide(m):
        return ppl.normal(m, 1.0) @ "mu"

    a = vi.elbo(with_dist, guide, {"y": Y}).estimate(KEY, (Y,), (0.2,))
    b = vi.elbo(with_factor, guide, {}).estimate(KEY, (Y,), (0.2,))
    np.testing.assert_allclose(a, b, rtol=1e-5)

    @ppl.expectation
    def handwritten(m):
        mu, log_q = ppl.sim(guide)(m) @ "q"
        return ppl.density(with_factor)(mu, Y) - log_q

    g = jax.jit(lambda k: handwritten.grad_estimate(k, (0.2,)))(KEY)
    assert bool(jnp.all(jnp.isfinite(jnp.asarray(g))))
    # a deterministic site needs no value in the density either
    c = vi.elbo(scaled, guide_s, {"y": Y}).estimate(KEY, (Y,), (0.0,))
    assert bool(jnp.isfinite(c))


def test_factor_cannot_be_constrained():
    with pytest.raises(ppl.AddressError, match="'y'.*records no random choice"):
        with_factor.generate(KEY, {"mu": 0.0, "y": 1.0}, (Y,))
    tr = with_factor.simulate(KEY, (Y,))
    with pytest.raises(ppl.AddressError, match="'y'"):
        with_factor.update(KEY, tr, {"y": 1.0})
    with pytest.raises(ppl.AddressError, match="'y'"):
        with_factor.assess({"mu": 0.0, "y": 1.0}, (Y,))


# -- deterministic ----------------------------------------------------------------


@ppl.gen
def scaled(y):
    log_s = ppl.normal(0.0, 1.0) @ "log_s"
    s = ppl.deterministic(jnp.exp(log_s)) @ "s"
    ppl.normal(0.0, s) @ "y"
    return s


@ppl.gen
def guide_s(m):
    return ppl.normal(m, 1.0) @ "log_s"


def test_deterministic_is_recorded_not_chosen():
    tr = scaled.simulate(KEY, (Y,))
    assert sorted(tr.choices.addresses()) == [("log_s",), ("y",)]
    rec = ppl.recorded(tr)
    np.testing.assert_allclose(rec["s"], jnp.exp(tr.choices["log_s"]), rtol=1e-6)
    np.testing.assert_allclose(tr.retval, rec["s"])
    # assess needs no value there, and ignores one (it is recomputed)
    logp, _ = scaled.assess(tr.choices, (Y,))
    np.testing.assert_allclose(logp, tr.score, rtol=1e-6)
    wrong = rec | ppl.ChoiceMap.d({"s": 123.0})
    np.testing.assert_allclose(scaled.assess(wrong, (Y,))[0], tr.score, rtol=1e-6)
    with pytest.raises(ppl.AddressError, match="'s'.*cannot be conditioned on"):
        scaled.generate(KEY, {"s": 1.0}, (Y,))
    with pytest.raises(ppl.AddressError, match="'s'"):
        scaled.update(KEY, tr, {"s": 1.0})
    # update and regenerate recompute it
    new, _, _ = scaled.update(KEY, tr, {"log_s": 0.0})
    assert float(ppl.recorded(new)["s"]) == pytest.approx(1.0)


def test_deterministic_inside_combinators_and_jit():
    mapped = ppl.vmap(scaled, in_axes=0)
    tr = jax.jit(lambda k: mapped.simulate(k, (jnp.zeros(3),)))(KEY)
    rec = ppl.recorded(tr)
    np.testing.assert_allclose(rec["s"], jnp.exp(rec["log_s"]), rtol=1e-6)


def test_deterministic_returned_with_samples():
    obs = {"y": 1.5}
    r = ppl.inference.run_mcmc(
        KEY, ppl.inference.nuts(), scaled, (Y,), obs, n_samples=50, n_warmup=50, n_chains=2
    )
    np.testing.assert_allclose(r.samples["s"], jnp.exp(r.samples["log_s"]), rtol=1e-5)
    assert "s" in r.summary()
    imp = ppl.inference.importance(KEY, scaled, obs, (Y,), n=100)
    rec = ppl.recorded(imp.traces)
    np.testing.assert_allclose(rec["s"], jnp.exp(rec["log_s"]), rtol=1e-5)


# -- improper flat priors -----------------------------------------------------------


@ppl.gen
def flat_mean(y):
    mu = ppl.improper_uniform("real") @ "mu"
    ppl.normal(mu, 1.0) @ "y"
    return mu


def test_improper_uniform_draws_initialisation_points_inside_the_support():
    for support, shape in [
        ("real", ()),
        ("positive", (4,)),
        ("unit_interval", (2,)),
        ("simplex", (3,)),
        ("ordered_vector", (5,)),
        ("positive_ordered_vector", (2, 4)),
        (nd.constraints.interval(1.0, 3.0), (3,)),
    ]:
        tr = ppl.improper_uniform.simulate(KEY, (support, shape))
        x = tr.retval
        assert x.shape == shape and bool(jnp.all(jnp.isfinite(x)))
        d = ppl.improper_uniform.dist(support, shape)
        assert d.support is not None and bool(jnp.all(d.support(x))), support
        assert float(tr.score) == 0.0
    x = ppl.improper_uniform.simulate(KEY, ("positive_ordered_vector", (4,))).retval
    assert bool(jnp.all(x > 0)) and bool(jnp.all(jnp.diff(x) > 0))
    # log density 0 in the support, -inf outside
    assert (
        float(ppl.improper_uniform.log_density(jnp.array([1.0, 2.0]), ("ordered_vector", (2,))))
        == 0.0
    )
    bad = ppl.improper_uniform.log_density(jnp.array([2.0, 1.0]), ("ordered_vector", (2,)))
    assert float(bad) == -math.inf


def test_improper_uniform_posterior_by_mcmc():
    r = ppl.inference.run_mcmc(
        KEY,
        ppl.inference.hmc(step_size=0.5),
        flat_mean,
        (Y,),
        {"y": Y},
        n_samples=500,
        n_warmup=200,
    )
    mu = np.asarray(r.samples["mu"]).ravel()  # posterior N(y, 1)
    assert abs(mu.mean() - Y) < 4 * math.sqrt(1.0 / float(r.ess()["mu"]))


def test_improper_uniform_refuses_importance_sampling_and_prior_moves():
    with pytest.raises(ppl.PPLError, match="'mu' has an improper flat prior"):
        ppl.inference.importance(KEY, flat_mean, {"y": Y}, (Y,), n=10)

    @ppl.gen
    def proposal():
        return ppl.normal(Y, 1.0) @ "mu"

    r = ppl.inference.importance(KEY, flat_mean, {"y": Y}, (Y,), proposal=proposal, n=10)
    assert r.log_weights.shape == (10,)
    with pytest.raises(ppl.PPLError, match="'mu' has an improper flat prior"):
        ppl.inference.smc.init(KEY, flat_mean, {"y": Y}, (Y,), n=10)
    with pytest.raises(ppl.AddressError, match="'mu' cannot be resampled from its prior"):
        ppl.inference.run_mcmc(
            KEY, ppl.inference.mh(), flat_mean, (Y,), {"y": Y}, n_samples=5, n_warmup=0
        )
    with pytest.raises(ppl.AddressError, match="unknown support 'wobbly'"):
        ppl.improper_uniform.simulate(KEY, ("wobbly", ()))


def test_ordered_cutpoints_move_under_nuts():
    @ppl.gen
    def model():
        c = ppl.improper_uniform("ordered_vector", (3,)) @ "c"
        ppl.factor(jnp.sum(nd.Normal(0.0, 1.0).log_prob(c))) @ "prior"
        return c

    r = ppl.inference.run_mcmc(
        KEY,
        ppl.inference.hmc(step_size=0.3),
        model,
        (),
        {},
        n_samples=200,
        n_warmup=100,
        n_chains=2,
    )
    c = np.asarray(r.samples["c"])
    assert c.shape == (2, 200, 3)
    assert np.all(np.diff(c, axis=-1) > 0)
    # the order statistics of 3 standard normals: means -0.846, 0, 0.846
    np.testing.assert_allclose(c.reshape(-1, 3).mean(0), [-0.846, 0.0, 0.846], atol=0.35)


# -- half-normal and half-Cauchy --------------------------------------------------------


def test_half_normal_and_half_cauchy():
    x, s = 0.7, 2.0
    want_hn = math.log(2.0) + float(nd.Normal(0.0, s).log_prob(x))
    want_hc = math.log(2.0) + float(nd.Cauchy(0.0, s).log_prob(x))
    assert float(ppl.half_normal.log_density(x, (s,))) == pytest.approx(want_hn, rel=1e-5)
    assert float(ppl.half_cauchy.log_density(x, (s,))) == pytest.approx(want_hc, rel=1e-5)
    assert float(ppl.half_normal.log_density(-x, (s,))) == -math.inf
    keys = jax.random.split(KEY, 4000)
    draws = jax.jit(jax.vmap(lambda k: ppl.half_normal.simulate(k, (s,)).retval))(keys)
    assert bool(jnp.all(draws > 0))
    # E|N(0, s)| = s sqrt(2/pi); sd of the mean below 0.02
    assert float(draws.mean()) == pytest.approx(s * math.sqrt(2 / math.pi), abs=0.06)
    with pytest.raises(ppl.AddressError, match="'scale' of half_cauchy"):
        ppl.half_cauchy.simulate(KEY, (-1.0,))


# -- static Python parameters ---------------------------------------------------------


def _expanded(loc, shape):
    return nd.Normal(loc, 1.0).expand(shape)


expanded = ppl.distribution(_expanded, "expanded")
lkj = ppl.distribution(nd.LKJCholesky)


def test_static_parameters_written_in_the_call():
    @ppl.gen
    def model():
        k = ppl.binomial(10, 0.3) @ "k"
        x = expanded(0.0, (2, 3)) @ "x"
        u = ppl.improper_uniform("positive", (2,)) @ "u"
        return k, x, u

    k, x, u = jax.jit(lambda key: model.simulate(key, ()).retval)(KEY)
    assert 0 <= int(k) <= 10 and x.shape == (2, 3) and u.shape == (2,)

    @ppl.gen
    def small():
        return expanded(0.0, (2, 3)) @ "x"

    r = ppl.inference.importance(KEY, small, {}, (), n=5)
    assert r.traces.choices["x"].shape == (5, 2, 3)
    tr = model.simulate(KEY, ())
    np.testing.assert_allclose(model.assess(tr.choices, ())[0], tr.score, rtol=1e-5)


def test_static_parameters_closed_over_and_string_flags():
    def make(shape, kind):
        family = {"normal": nd.Normal, "laplace": nd.Laplace}[kind]
        dist = ppl.distribution(lambda loc: family(loc, 1.0).expand(shape), kind)

        @ppl.gen
        def model(loc):
            return dist(loc) @ "x"

        return model

    model = make((4,), "laplace")
    tr = jax.jit(lambda key: model.simulate(key, (0.0,)))(KEY)
    assert tr.retval.shape == (4,)
    want = jnp.sum(nd.Laplace(0.0, 1.0).log_prob(tr.retval))
    np.testing.assert_allclose(tr.score, want, rtol=1e-6)

    pick = ppl.distribution(
        lambda loc, kind: nd.Normal(loc, 1.0) if kind == "n" else nd.Laplace(loc, 1.0)
    )

    @ppl.gen
    def flagged(kind):  # a string argument is held static
        return pick(0.0, kind) @ "x"

    tr = jax.jit(lambda key: flagged.simulate(key, ("l",)))(KEY)
    np.testing.assert_allclose(tr.score, nd.Laplace(0.0, 1.0).log_prob(tr.retval), rtol=1e-6)


def test_traced_counts_and_shapes_are_named():
    @ppl.gen
    def by_shape(shape):  # number arguments of an @gen function are traced
        return expanded(0.0, shape) @ "x"

    with pytest.raises(ppl.AddressError, match="parameter 'shape' of expanded at 'x'.*close over"):
        by_shape.simulate(KEY, ((2, 3),))

    @ppl.gen
    def by_dim(d):
        return lkj(d, 2.0) @ "L"

    with pytest.raises(ppl.AddressError, match="'dimension' of LKJCholesky at 'L'"):
        by_dim.simulate(KEY, (3,))

    @ppl.gen
    def by_count(n):  # a traced count is fine where numpyro does not need its value
        return ppl.binomial(n, 0.3) @ "k"

    k = jax.jit(lambda key: by_count.simulate(key, (10,)).retval)(KEY)
    assert 0 <= int(k) <= 10


def test_partial_fixes_a_static_parameter():
    dim3 = ppl.distribution(functools.partial(nd.LKJCholesky, 3), "lkj3")

    @ppl.gen
    def model(eta):
        return dim3(eta) @ "L"

    assert model.simulate(KEY, (2.0,)).retval.shape == (3, 3)

    @ppl.gen
    def literal():  # a dimension written in the call is held static
        return lkj(3, 2.0) @ "L"

    assert literal.simulate(KEY, ()).retval.shape == (3, 3)
