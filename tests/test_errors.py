"""Bad input gets a clear error that names the address and the fix."""

from __future__ import annotations

import re

import jax
import jax.numpy as jnp
import pytest

import ppl
from ppl import categorical, flip, gamma, gen, normal

KEY = jax.random.key(0)


def raises(exc, *fragments):
    """pytest.raises whose message must contain every fragment (literally)."""
    return pytest.raises(exc, match="(?s)" + "".join(f"(?=.*{re.escape(f)})" for f in fragments))


@gen
def inner(m):
    a = normal(m, 1.0) @ "x"
    return normal(a, 1.0) @ "w"


@gen
def outer(m):
    a = inner(m) @ "m"
    return normal(a, 1.0) @ "y"


@gen
def vec():
    return normal(jnp.zeros(3), 1.0) @ "v"


FULL = {("m", "x"): 0.1, ("m", "w"): 0.2, "y": 0.3}


def test_full_choice_map_is_fine():
    logp, _ = outer.assess(FULL, (0.0,))
    assert jnp.isfinite(logp)


def test_address_used_twice():
    @gen
    def twice():
        normal(0.0, 1.0) @ "x"
        return normal(0.0, 1.0) @ "x"

    with raises(ppl.PPLError, "'x'", "used twice", "ppl.vmap"):
        twice.simulate(KEY, ())
    with raises(ppl.PPLError, "'x'", "used twice"):
        twice.assess({"x": 0.0}, ())


def test_address_used_twice_by_a_call_and_a_choice():
    @gen
    def clash():
        inner(0.0) @ "m"
        return normal(0.0, 1.0) @ "m"

    with raises(ppl.PPLError, "'m'", "used twice"):
        clash.simulate(KEY, ())


def test_assess_missing_choice_names_the_address():
    with raises(ppl.AddressError, "'y'", "needs a value", "generate"):
        outer.assess({("m", "x"): 0.1, ("m", "w"): 0.2}, (0.0,))
    with raises(ppl.AddressError, "'m'", "needs a value"):
        outer.assess({"y": 0.3}, (0.0,))


def test_assess_missing_nested_choice_names_the_full_path():
    with raises(ppl.AddressError, "('m', 'x')", "needs a value") as info:
        outer.assess({("m", "w"): 0.2, "y": 0.3}, (0.0,))
    assert info.value.path == ("m", "x")
    with raises(ppl.AddressError, "('m', 'w')"):
        outer.assess({("m", "x"): 0.2, "y": 0.3}, (0.0,))


def test_assess_extra_choice():
    with raises(ppl.AddressError, "'z'", "no random choice", "'m', 'y'"):
        outer.assess({**FULL, "z": 1.0}, (0.0,))
    with raises(ppl.AddressError, "('m', 'q')", "no random choice"):
        outer.assess({**FULL, ("m", "q"): 1.0}, (0.0,))


def test_errors_are_raised_under_jit_too():
    with raises(ppl.AddressError, "('m', 'x')", "needs a value"):
        jax.jit(lambda c: outer.assess(c, (0.0,))[0])(ppl.ChoiceMap.d({("m", "w"): 0.2, "y": 0.3}))
    with raises(ppl.AddressError, "'z'"):
        jax.jit(lambda c: outer.generate(KEY, c, (0.0,))[1])(ppl.ChoiceMap.d({"z": 0.2}))
    with raises(ppl.AddressError, "'v'", "shape (2,)", "(3,)"):
        jax.jit(lambda v: vec.assess({"v": v}, ())[0])(jnp.zeros(2))


def test_generate_constraint_at_an_unvisited_address():
    with raises(ppl.AddressError, "'q'", "no random choice", "generate"):
        outer.generate(KEY, {"q": 0.0}, (0.0,))
    with raises(ppl.AddressError, "('m', 'q')", "no random choice"):
        outer.generate(KEY, {("m", "q"): 0.0}, (0.0,))


def test_update_constraint_at_an_unvisited_address():
    tr = outer.simulate(KEY, (0.0,))
    with raises(ppl.AddressError, "'q'", "update"):
        outer.update(KEY, tr, {"q": 0.0})


def test_value_of_the_wrong_shape():
    with raises(ppl.AddressError, "'v'", "shape (2,)", "shape (3,)"):
        vec.assess({"v": jnp.zeros(2)}, ())
    with raises(ppl.AddressError, "'v'", "shape ()"):
        vec.generate(KEY, {"v": 1.0}, ())
    tr = vec.simulate(KEY, ())
    with raises(ppl.AddressError, "'v'", "shape (4,)"):
        vec.update(KEY, tr, {"v": jnp.zeros(4)})


def test_a_value_where_a_map_is_expected_and_vice_versa():
    with raises(ppl.AddressError, "'m'", "single value", "'x'", "'w'"):
        outer.assess({"m": 1.0, "y": 0.0}, (0.0,))
    with raises(ppl.AddressError, "'y'", "one random choice"):
        outer.assess({("m", "x"): 0.1, ("m", "w"): 0.2, ("y", "q"): 0.3}, (0.0,))


@pytest.mark.parametrize(
    "dist_call, value, support",
    [
        (lambda: categorical(jnp.ones(3) / 3), 5, "IntegerInterval"),
        (lambda: categorical(jnp.ones(3) / 3), -1, "IntegerInterval"),
        (lambda: gamma(2.0, 1.0), -1.0, "Positive"),
        (lambda: ppl.beta(2.0, 2.0), 1.5, "Interval"),
        (lambda: ppl.poisson(2.0), 1.5, "IntegerNonnegative"),
        (lambda: ppl.dirichlet(jnp.ones(3)), jnp.array([0.5, 0.6, 0.1]), "Simplex"),
        (lambda: flip(0.3), 2, "Boolean"),
        (lambda: flip(0.3), 0.5, "Boolean"),
    ],
    ids=[
        "categorical5",
        "categorical-1",
        "gamma-neg",
        "beta>1",
        "poisson-frac",
        "dirichlet-sum",
        "flip2",
        "flip0.5",
    ],
)
def test_value_outside_the_support(dist_call, value, support):
    @gen
    def m():
        return dist_call() @ "c"

    with raises(ppl.AddressError, "'c'", "outside the support", support):
        m.assess({"c": value}, ())
    with raises(ppl.AddressError, "'c'", "outside the support"):
        m.generate(KEY, {"c": value}, ())


def test_value_outside_the_support_under_jit_gives_minus_inf_not_a_wrong_number():
    """Under jit the value is unknown at trace time; the density must then be -inf."""

    @gen
    def m():
        return categorical(jnp.ones(3) / 3) @ "c"

    assert jax.jit(lambda c: m.assess({"c": c}, ())[0])(5) == -jnp.inf
    assert jax.jit(lambda c: m.assess({"c": c}, ())[0])(1) == jnp.log(1 / 3).astype(jnp.float32)


def test_an_argument_that_is_neither_an_array_nor_hashable():
    with raises(ppl.PPLError, "[0]", "set", "neither an array", "hashable", "functools.partial"):
        outer.simulate(KEY, ({1, 2},))
    with raises(ppl.PPLError, "set"):
        outer.assess(FULL, ({1, 2},))

    @ppl.expectation
    def e(s):
        return 0.0

    with raises(ppl.PPLError, "set", "hashable"):
        e.estimate(KEY, ({1, 2},))


def test_arguments_must_be_a_tuple():
    with raises(ppl.PPLError, "must be a tuple", "(0.0,)"):
        # wrong on purpose: checks the error
        outer.simulate(KEY, 0.0)  # pyright: ignore[reportArgumentType]
    with raises(ppl.PPLError, "must be a tuple", "list"):
        # wrong on purpose: checks the error
        outer.assess(FULL, [0.0])  # pyright: ignore[reportArgumentType]
    with raises(ppl.PPLError, "must be a tuple"):
        # wrong on purpose: checks the error
        outer.generate(KEY, {}, 0.0)  # pyright: ignore[reportArgumentType]
    tr = outer.simulate(KEY, (0.0,))
    with raises(ppl.PPLError, "must be a tuple"):
        # wrong on purpose: checks the error
        outer.update(KEY, tr, {}, 1.0)  # pyright: ignore[reportArgumentType]


@pytest.mark.parametrize("bad", [0, 1.5, "key", jnp.zeros(3), jnp.zeros(2, jnp.float32)], ids=repr)
def test_bad_key(bad):
    with raises(ppl.PPLError, "PRNG key", "jax.random.key"):
        outer.simulate(bad, (0.0,))


def test_bad_key_in_other_methods():
    tr = outer.simulate(KEY, (0.0,))
    with raises(ppl.PPLError, "PRNG key"):
        outer.generate(3, {}, (0.0,))
    with raises(ppl.PPLError, "PRNG key"):
        outer.update(3, tr, {})
    with raises(ppl.PPLError, "PRNG key"):
        outer.regenerate(3, tr, ppl.select("y"))


def test_random_choice_outside_a_generative_function():
    with raises(ppl.PPLError, "'x'", "outside a generative function", "@ppl.gen"):
        normal(0.0, 1.0) @ "x"
    with raises(ppl.PPLError, "'sub'", "outside a generative function"):
        inner(0.0) @ "sub"


def test_address_must_be_a_string():
    @gen
    def m():
        return normal(0.0, 1.0) @ 3

    with raises(ppl.PPLError, "address 3", "must be a string"):
        m.simulate(KEY, ())


def test_choice_map_and_selection_arguments_are_checked():
    with raises(ppl.PPLError, "ChoiceMap", "float"):
        outer.assess(3.0, (0.0,))
    tr = outer.simulate(KEY, (0.0,))
    with raises(ppl.PPLError, "ppl.select", "str"):
        outer.regenerate(KEY, tr, "y")


def test_wrong_number_of_arguments_is_reported():
    with pytest.raises(TypeError):
        outer.simulate(KEY, (0.0, 1.0))


def test_distribution_keyword_errors():
    with raises(ppl.PPLError, "no parameter", "'rate'"):
        flip(rate=0.3)
    with raises(ppl.PPLError, "twice"):
        flip(0.3, probs=0.3)


def test_errors_are_value_errors_and_key_errors_where_apt():
    assert issubclass(ppl.PPLError, ValueError)
    assert issubclass(ppl.AddressError, KeyError)
    with pytest.raises(KeyError):
        outer.simulate(KEY, (0.0,)).choices["nope"]


def test_regenerate_called_directly_checks_the_selection():
    """GenerativeFunction.regenerate refuses a selection naming no address of any
    run, for every kind of generative function (not only @gen programs)."""
    tr = normal.simulate(KEY, (0.0, 1.0))
    with raises(ppl.PPLError, "select('typo')", "names no random choice", "normal"):
        normal.regenerate(KEY, tr, ppl.select("typo"))
    for sel in (None, ppl.select_all(), ppl.select(), ppl.select_none()):
        normal.regenerate(KEY, tr, sel)

    @gen
    def b0():
        return normal(0.0, 1.0) @ "u"

    @gen
    def b1():
        return normal(0.0, 1.0) @ "v"

    sw = ppl.switch(b0, b1)
    tr = sw.simulate(KEY, (0,))
    with raises(ppl.PPLError, "select('w')", "names no random choice", "'u'", "'v'"):
        sw.regenerate(KEY, tr, ppl.select("w"))
    sw.regenerate(KEY, tr, ppl.select("v"))  # another branch's address: fine
