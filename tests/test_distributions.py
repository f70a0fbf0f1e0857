"""Distributions: shapes with batched parameters, scores against numpyro, dtypes,
moments, keyword parameters and lifting other numpyro distributions."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import numpyro.distributions as nd
import pytest

import ppl
from _strategies import assert_close

KEY = jax.random.key(0)
P23 = jnp.array([[0.1, 0.5, 0.9], [0.3, 0.6, 0.2]])
LOC3 = jnp.array([-1.0, 0.0, 2.0])
COV = jnp.array([[2.0, 0.5, 0.0], [0.5, 1.0, 0.3], [0.0, 0.3, 1.5]])

# name: (ppl distribution, params, equivalent numpyro distribution, value shape)
CASES = {
    "normal": (
        ppl.normal,
        (jnp.zeros((2, 3)), jnp.array([1.0, 2.0, 0.5])),
        lambda: nd.Normal(jnp.zeros((2, 3)), jnp.array([1.0, 2.0, 0.5])),
        (2, 3),
    ),
    "normal_scalar": (ppl.normal, (0.5, 2.0), lambda: nd.Normal(0.5, 2.0), ()),
    "mv_normal": (ppl.mv_normal, (LOC3, COV), lambda: nd.MultivariateNormal(LOC3, COV), (3,)),
    "mv_normal_batched": (
        ppl.mv_normal,
        (jnp.zeros((4, 3)), COV),
        lambda: nd.MultivariateNormal(jnp.zeros((4, 3)), COV),
        (4, 3),
    ),
    "mv_normal_diag": (
        ppl.mv_normal_diag,
        (LOC3, jnp.array([1.0, 0.5, 2.0])),
        lambda: nd.Normal(LOC3, jnp.array([1.0, 0.5, 2.0])).to_event(1),
        (3,),
    ),
    "uniform": (
        ppl.uniform,
        (jnp.zeros(3), jnp.array([1.0, 2.0, 5.0])),
        lambda: nd.Uniform(jnp.zeros(3), jnp.array([1.0, 2.0, 5.0])),
        (3,),
    ),
    "beta": (
        ppl.beta,
        (jnp.array([0.5, 2.0]), 3.0),
        lambda: nd.Beta(jnp.array([0.5, 2.0]), 3.0),
        (2,),
    ),
    "gamma": (
        ppl.gamma,
        (jnp.array([1.0, 3.0, 0.7]), 2.0),
        lambda: nd.Gamma(jnp.array([1.0, 3.0, 0.7]), 2.0),
        (3,),
    ),
    "exponential": (
        ppl.exponential,
        (jnp.array([0.5, 3.0]),),
        lambda: nd.Exponential(jnp.array([0.5, 3.0])),
        (2,),
    ),
    "laplace": (ppl.laplace, (LOC3, 0.5), lambda: nd.Laplace(LOC3, 0.5), (3,)),
    "logistic": (ppl.logistic, (LOC3, 0.5), lambda: nd.Logistic(LOC3, 0.5), (3,)),
    "cauchy": (ppl.cauchy, (LOC3, 1.5), lambda: nd.Cauchy(LOC3, 1.5), (3,)),
    "student_t": (
        ppl.student_t,
        (jnp.array([3.0, 5.0, 10.0]), LOC3, 1.0),
        lambda: nd.StudentT(jnp.array([3.0, 5.0, 10.0]), LOC3, 1.0),
        (3,),
    ),
    "lognormal": (ppl.lognormal, (LOC3, 0.3), lambda: nd.LogNormal(LOC3, 0.3), (3,)),
    "dirichlet": (
        ppl.dirichlet,
        (jnp.array([1.0, 2.0, 3.0]),),
        lambda: nd.Dirichlet(jnp.array([1.0, 2.0, 3.0])),
        (3,),
    ),
    "dirichlet_batched": (
        ppl.dirichlet,
        (jnp.ones((2, 4)),),
        lambda: nd.Dirichlet(jnp.ones((2, 4))),
        (2, 4),
    ),
    "flip": (ppl.flip, (P23,), lambda: nd.Bernoulli(probs=P23), (2, 3)),
    "categorical": (
        ppl.categorical,
        (jnp.array([[0.2, 0.3, 0.5], [0.6, 0.2, 0.2]]),),
        lambda: nd.Categorical(probs=jnp.array([[0.2, 0.3, 0.5], [0.6, 0.2, 0.2]])),
        (2,),
    ),
    "geometric": (
        ppl.geometric,
        (jnp.array([0.2, 0.7]),),
        lambda: nd.Geometric(probs=jnp.array([0.2, 0.7])),
        (2,),
    ),
    "poisson": (
        ppl.poisson,
        (jnp.array([0.5, 4.0, 10.0]),),
        lambda: nd.Poisson(jnp.array([0.5, 4.0, 10.0])),
        (3,),
    ),
    "binomial": (
        ppl.binomial,
        (jnp.array([3, 10]), 0.4),
        lambda: nd.Binomial(jnp.array([3, 10]), probs=0.4),
        (2,),
    ),
}


def _as_numpyro_value(v):
    v = jnp.asarray(v)
    return v.astype(jnp.float32) if v.dtype == jnp.bool_ else v


@pytest.mark.parametrize("name", list(CASES))
def test_shape_and_score_match_numpyro(name):
    dist, params, ref, shape = CASES[name]
    tr = dist.simulate(KEY, params)
    assert tr.retval.shape == shape
    assert tr.choices.get_value().shape == shape
    expected = jnp.sum(ref().log_prob(_as_numpyro_value(tr.retval)))
    assert tr.score.shape == ()
    assert_close(tr.score, expected)
    logp, _ = dist.assess(ppl.ChoiceMap.value(tr.retval), params)
    assert_close(logp, expected)

    # the same inside a @gen function, at an address
    @ppl.gen
    def m():
        return dist(*params) @ "v"

    tr2 = m.simulate(jax.random.key(1), ())
    assert tr2.choices["v"].shape == shape
    assert_close(tr2.score, jnp.sum(ref().log_prob(_as_numpyro_value(tr2.choices["v"]))))
    # generate/update against another value
    _, w = m.generate(KEY, {"v": tr.retval}, ())
    assert_close(w, expected)
    _, uw, discard = m.update(KEY, tr2, {"v": tr.retval})
    assert_close(uw, expected - tr2.score)
    np.testing.assert_array_equal(np.asarray(discard["v"]), np.asarray(tr2.choices["v"]))


@pytest.mark.parametrize(
    "name, dtype",
    [
        ("flip", jnp.bool_),
        ("categorical", jnp.int32),
        ("poisson", jnp.int32),
        ("normal", jnp.float32),
    ],
)
def test_value_dtypes(name, dtype):
    dist, params, _, _ = CASES[name]
    v = dist.simulate(KEY, params).retval
    assert v.dtype == dtype


# Sampling is numpyro's own; these check that keys and value conversions (bool,
# int) preserve it. Samplers with rejection loops (gamma, beta, ...) are slow to compile.
MOMENT_CASES = [
    "normal",
    "mv_normal",
    "exponential",
    "flip",
    "categorical",
    "geometric",
    "binomial",
]


def _moments(name):
    d = CASES[name][2]()
    if name == "categorical":  # numpyro gives nan for the mean of a categorical
        k = jnp.arange(d.probs.shape[-1])
        mean = jnp.sum(d.probs * k, -1)
        return mean, jnp.sum(d.probs * k**2, -1) - mean**2
    return d.mean, d.variance


@pytest.fixture(scope="module")
def sample_means():
    n = 4000

    @jax.jit
    def draw(keys):
        return {
            name: jax.vmap(lambda k: CASES[name][0].simulate(k, CASES[name][1]).retval)(keys)
            .astype(jnp.float32)
            .mean(0)
            for name in MOMENT_CASES
        }

    return n, draw(jax.random.split(jax.random.key(11), n))


@pytest.mark.parametrize("name", MOMENT_CASES)
def test_sample_means_within_five_standard_errors(name, sample_means):
    n, means = sample_means
    mean, var = (np.asarray(x, dtype=np.float64) for x in _moments(name))
    se = np.sqrt(var / n)
    got = np.asarray(means[name], dtype=np.float64)
    assert np.all(np.abs(got - mean) < 5 * se + 1e-6), (got, mean, se)


def test_keys_give_independent_samples_per_element():
    v = ppl.normal(jnp.zeros(1000), 1.0).gen_fn.simulate(KEY, (jnp.zeros(1000), 1.0)).retval
    assert len(np.unique(np.asarray(v))) == 1000


def test_flip_with_probs_and_logits():
    @ppl.gen
    def m(logit):
        a = ppl.flip(logits=logit) @ "a"
        b = ppl.flip(jax.nn.sigmoid(logit)) @ "b"
        return a, b

    for value in (True, False):
        lp, _ = m.assess({"a": value, "b": value}, (0.7,))
        ref = nd.Bernoulli(logits=0.7).log_prob(float(value))
        assert_close(lp, 2 * ref)
    assert ppl.bernoulli is ppl.flip
    # logits batched and the rate right
    n = 4000
    vals = jax.jit(jax.vmap(lambda k: m.simulate(k, (jnp.array(-1.0),)).retval[0]))(
        jax.random.split(KEY, n)
    )
    p = float(jax.nn.sigmoid(-1.0))
    assert abs(np.mean(vals) - p) < 5 * np.sqrt(p * (1 - p) / n)


def test_grad_of_log_density_wrt_parameters_and_value():
    g_loc, g_scale = jax.grad(
        lambda m, s: ppl.normal.assess(ppl.ChoiceMap.value(1.0), (m, s))[0], argnums=(0, 1)
    )(0.5, 2.0)
    assert_close(g_loc, (1.0 - 0.5) / 4.0)
    assert_close(g_scale, -1 / 2.0 + 0.25 / 8.0)
    g_v = jax.grad(lambda v: ppl.gamma.assess(ppl.ChoiceMap.value(v), (3.0, 2.0))[0])(1.5)
    assert_close(g_v, (3.0 - 1) / 1.5 - 2.0)


def test_lift_any_numpyro_distribution():
    vonmises = ppl.distribution(nd.VonMises)
    assert isinstance(vonmises, ppl.Distribution) and isinstance(vonmises, ppl.GenerativeFunction)

    @ppl.gen
    def m(c):
        return vonmises(0.3, c) @ "angle"

    tr = m.simulate(KEY, (2.0,))
    assert_close(tr.score, nd.VonMises(0.3, 2.0).log_prob(tr.choices["angle"]))
    # a factory function, with a name
    skew = ppl.distribution(lambda loc: nd.Normal(loc, 1.0).expand([2]).to_event(1), name="pair")
    tr = skew.simulate(KEY, (1.0,))
    assert tr.retval.shape == (2,) and skew.name == "pair"
    assert_close(tr.score, nd.Normal(1.0, 1.0).log_prob(tr.retval).sum())


def test_bad_parameters_are_reported():
    with pytest.raises(ppl.PPLError, match="could not build normal"):
        ppl.normal.simulate(KEY, (jnp.zeros(2), jnp.ones(3)))


def test_each_built_in_distribution_documents_its_parameters_and_runs_its_example():
    import inspect

    from ppl._distribution_checks import parameter_names
    from ppl._distribution_docs import EXAMPLE_ARGS

    for name in EXAMPLE_ARGS:
        dist = getattr(ppl, name)
        names = parameter_names(dist.factory)
        assert names is not None, name
        shown = inspect.signature(dist).parameters.values()
        assert [p.name for p in shown if p.kind is p.POSITIONAL_OR_KEYWORD] == names, name
        doc = dist.__doc__ or ""
        assert doc.startswith(f"{name}(") and "Args:" in doc and "Examples:" in doc, name
        for param in names:
            assert f"    {param}: " in doc, (name, param)
        example = [line.strip()[4:] for line in doc.splitlines() if line.strip().startswith(">>>")]
        scope = {"ppl": ppl, "jax": jax, "jnp": jnp}
        exec(example[0], scope)
        assert bool(eval(example[1], scope)), name


def test_documented_default_strategy_is_the_one_adev_uses():
    """The docstrings and the reference table say which strategy a choice gets by
    default; that must be the strategy ADEV picks for an instance."""
    from ppl._distribution_docs import EXAMPLE_ARGS, facts
    from ppl.transforms.adev.strategies import default_strategy, reparam

    for name, args in EXAMPLE_ARGS.items():
        dist = getattr(ppl, name)
        instance = dist.factory(*eval(f"({args},)", {"jnp": jnp}))
        uses_reparam = default_strategy(instance) is reparam
        assert facts(dist.factory, name).pathwise == uses_reparam, name
        expected = "reparameterization" if uses_reparam else "REINFORCE"
        assert f"Gradient strategy by default: {expected}" in (dist.__doc__ or ""), name
