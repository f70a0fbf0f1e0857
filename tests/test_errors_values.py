"""Values and parameters: a value outside a discrete support scores -inf under jit
(and is refused eagerly), invalid parameters and NaN observations are named, and
integer parameters that numpyro needs as Python values are held static."""

from __future__ import annotations

import re

import jax
import jax.numpy as jnp
import numpy as np
import numpyro.distributions as nd
import pytest

import ppl
from ppl import categorical, flip, gen, normal

KEY = jax.random.key(0)


def raises(exc, *fragments):
    return pytest.raises(exc, match="(?s)" + "".join(f"(?=.*{re.escape(f)})" for f in fragments))


def one(make):
    @gen
    def m():
        return make() @ "c"

    return m


FLIP = one(lambda: flip(0.3))
CAT = one(lambda: categorical(jnp.ones(3) / 3))


@pytest.mark.parametrize("value", [0.5, 2, 2.0, -1])
def test_flip_off_its_support_scores_minus_inf_under_jit(value):
    assert jax.jit(lambda v: FLIP.assess({"c": v}, ())[0])(value) == -jnp.inf
    _, w = jax.jit(lambda v: FLIP.generate(KEY, {"c": v}, ()))(value)
    assert w == -jnp.inf


@pytest.mark.parametrize("value", [True, 1, 1.0])
def test_flip_on_its_support_under_jit(value):
    np.testing.assert_allclose(
        jax.jit(lambda v: FLIP.assess({"c": v}, ())[0])(value), np.log(0.3), rtol=1e-6
    )


def test_categorical_with_a_float_value_is_scored_not_a_jax_error():
    score = jax.jit(lambda v: CAT.assess({"c": v}, ()))
    lp, value = score(1.0)
    np.testing.assert_allclose(lp, np.log(1 / 3), rtol=1e-6)
    assert jnp.issubdtype(value.dtype, jnp.integer) and value == 1
    assert score(1.5)[0] == -jnp.inf
    lp, value = CAT.assess({"c": 2.0}, ())  # eagerly too
    np.testing.assert_allclose(lp, np.log(1 / 3), rtol=1e-6)
    with raises(ppl.AddressError, "'c'", "outside the support"):
        CAT.assess({"c": 1.5}, ())


def test_update_to_arguments_that_exclude_the_value_scores_minus_inf():
    @gen
    def m(n):
        return ppl.binomial(n, 0.5) @ "k"

    tr, _ = m.generate(KEY, {"k": 4}, (5,))
    new, w = jax.jit(lambda n: m.update(KEY, tr, {}, (n,))[:2])(3)
    assert new.score == -jnp.inf and w == -jnp.inf


def test_out_of_support_gradient_is_finite():
    g = jax.grad(lambda p: flip.log_density(2, (p,)))(0.3)
    assert g == 0.0


@pytest.mark.parametrize(
    "make, param, rule",
    [
        (lambda: normal(0.0, 0.0), "'scale'", "> 0"),
        (lambda: normal(0.0, -1.0), "'scale'", "> 0"),
        (lambda: normal(jnp.nan, 1.0), "'loc'", "finite"),
        (lambda: normal(0.0, jnp.array([1.0, -2.0, 1.0])), "'scale'", "index (1,)"),
        (lambda: flip(1.5), "'probs'", "[0, 1]"),
        (lambda: categorical(jnp.array([0.5, 0.6])), "'probs'", "sum to 1"),
        (
            lambda: ppl.mv_normal(jnp.zeros(2), jnp.array([[1.0, 2.0], [2.0, 1.0]])),
            "'covariance_matrix'",
            "positive-definite",
        ),
        (lambda: ppl.gamma(-1.0, 1.0), "'concentration'", "> 0"),
    ],
    ids=[
        "sd0",
        "sd-1",
        "loc-nan",
        "sd-vector",
        "probs1.5",
        "probs-sum",
        "cov-not-psd",
        "gamma-conc",
    ],
)
def test_invalid_parameters_name_the_address_and_the_parameter(make, param, rule):
    m = one(make)
    with raises(ppl.AddressError, "'c'", param, rule):
        m.simulate(KEY, ())
    with raises(ppl.AddressError, "'c'", param):
        jax.jit(lambda: m.simulate(KEY, ()).score)()  # constants under jit are checked too


def test_invalid_parameter_of_a_nested_call_names_the_full_path():
    @gen
    def outer():
        return one(lambda: normal(0.0, -1.0))() @ "sub"

    with raises(ppl.AddressError, "('sub', 'c')", "'scale'"):
        outer.simulate(KEY, ())
    with raises(ppl.AddressError, "(top level)", "'scale'"):
        normal.simulate(KEY, (0.0, -1.0))


def test_valid_boundary_parameters_pass():
    assert jnp.isfinite(one(lambda: flip(1.0)).simulate(KEY, ()).score)
    assert jnp.isfinite(one(lambda: categorical(jnp.ones(7) / 7)).simulate(KEY, ()).score)


@pytest.mark.parametrize("verb", ["assess", "generate", "update"])
def test_a_nan_observation_names_the_address(verb):
    @gen
    def m():
        normal(0.0, 1.0) @ "a"
        return normal(0.0, 1.0) @ "y"

    with raises(ppl.AddressError, "'y'", "NaN", "leave the address out"):
        if verb == "assess":
            m.assess({"a": 0.0, "y": jnp.nan}, ())
        elif verb == "generate":
            m.generate(KEY, {"y": jnp.nan}, ())
        else:
            m.update(KEY, m.simulate(KEY, ()), {"y": jnp.array(jnp.nan)})
    # under jit the value is unknown while tracing: the score is -inf, not a number that looks fine
    assert ~jnp.isfinite(jax.jit(lambda y: m.assess({"a": 0.0, "y": y}, ())[0])(jnp.nan))


def test_static_integer_parameters_just_work():
    lkj = ppl.distribution(nd.LKJCholesky)

    @gen
    def m(p):
        chol = lkj(3, 2.0) @ "L"
        k = ppl.binomial(5, p) @ "k"
        return chol, k

    choices = {"L": jnp.eye(3), "k": 2}
    lkj_lp = jax.jit(
        lambda: nd.LKJCholesky(3, 2.0).log_prob(jnp.eye(3))
    )()  # jitted: eager numpyro is slow
    expected = lkj_lp + nd.Binomial(5, 0.3).log_prob(2)
    np.testing.assert_allclose(
        jax.jit(lambda p: m.assess(choices, (p,))[0])(0.3), expected, rtol=1e-5
    )
    lp = jax.jit(
        lambda: lkj.assess(ppl.ChoiceMap.value(jnp.eye(3)), (3, 2.0))[0]
    )()  # at the top level too
    np.testing.assert_allclose(lp, lkj_lp, rtol=1e-5)


def test_a_traced_integer_where_numpyro_needs_a_python_int_is_named():
    lkj = ppl.distribution(nd.LKJCholesky)

    @gen
    def m(n):
        return lkj(n, 2.0) @ "L"

    with raises(ppl.AddressError, "'dimension'", "'L'", "Python int", "functools.partial"):
        m.simulate(KEY, (3,))


def test_parameters_keeps_python_ints_static_for_wrappers():
    params = ppl.binomial.parameters((5,), {"probs": 0.3})
    assert jax.tree.leaves(params) == [0.3]  # the count is in the tree structure, not a traced leaf
    d = ppl.binomial.dist(*params)
    assert isinstance(d, nd.BinomialProbs)  # dist() is typed nd.Distribution
    assert d.total_count == 5
