"""Mistakes in writing a model get ppl's explanation instead of JAX's or Python's:
a choice without an address, a generative function called instead of run, Python
control flow on traced values, and a random choice inside a JAX callback."""

from __future__ import annotations

import functools
import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import ppl
from ppl import gen, normal

KEY = jax.random.key(0)


def raises(exc, *fragments):
    return pytest.raises(exc, match="(?s)" + "".join(f"(?=.*{re.escape(f)})" for f in fragments))


MISUSES = {
    "add": lambda z: z + 1.0,
    "radd": lambda z: 1.0 + z,
    "mul": lambda z: 2.0 * z,
    "neg": lambda z: -z,
    "pow": lambda z: z**2,
    "compare": lambda z: z < 0.0,
    "equal": lambda z: z == 0.0,
    "jnp": lambda z: jnp.exp(z),
    "asarray": lambda z: jnp.asarray(z),
    "numpy": lambda z: np.asarray(z),
    "index": lambda z: z[0],
    "bool": lambda z: bool(z),
    "float": lambda z: float(z),
    "as argument": lambda z: normal(z, 1.0) @ "y",
}


@pytest.mark.parametrize("use", list(MISUSES.values()), ids=list(MISUSES))
def test_a_choice_without_an_address_inside_a_model(use):
    @gen
    def model(mu):
        z = normal(mu, 1.0)  # the address is missing
        return use(z)

    with raises(
        ppl.PPLError,
        "in test_a_choice_without_an_address_inside_a_model.<locals>.model",
        "without an address",
        '@ "addr"',
    ):
        model.simulate(KEY, (0.0,))


@gen
def model(mu):
    return normal(mu, 1.0) @ "y"


def test_a_generative_function_called_instead_of_run():
    with raises(
        ppl.PPLError, "model(1.0)", "does not run it", "model.simulate(key, (1.0,))", "assess"
    ):
        model(1.0).score
    with raises(ppl.PPLError, "model(1.0)", "model.simulate(key, (1.0,))"):
        # wrong on purpose: checks the error
        model(1.0) + 1.0  # pyright: ignore[reportOperatorIssue]
    with raises(ppl.PPLError, "normal(0.0, 2.0)", "normal.simulate(key, (0.0, 2.0))"):
        # wrong on purpose: checks the error
        jnp.exp(normal(0.0, 2.0))  # pyright: ignore[reportArgumentType]
    with pytest.raises(AttributeError):  # hasattr and getattr with a default keep working
        model(1.0).retval
    assert not hasattr(model(1.0), "retval") and getattr(model(1.0), "choices", None) is None


def test_an_invocation_is_still_an_ordinary_object():
    inv = model(1.0)
    assert inv in {inv} and "awaiting an address" in repr(inv)


@gen
def branchy(x):
    z = normal(x, 1.0) @ "z"
    if z > 0:
        return normal(1.0, 1.0) @ "y"
    return normal(-1.0, 1.0) @ "y"


@gen
def loopy():
    n = ppl.poisson(3.0) @ "n"
    for i in range(n):
        normal(0.0, 1.0) @ f"x{i}"


@gen
def whiley():
    x = normal(0.0, 1.0) @ "x"
    while x < 1.0:
        x = x + 1.0
    return x


def test_python_if_on_a_random_choice():
    with raises(
        ppl.PPLError, "branchy", "if or while", "ppl.cond", "ppl.switch", "jnp.where"
    ) as info:
        branchy.simulate(KEY, (0.0,))
    assert isinstance(info.value.__cause__, jax.errors.ConcretizationTypeError)

    @gen
    def outer():
        return branchy(0.0) @ "b"

    with raises(ppl.PPLError, "branchy", "ppl.cond"):
        outer.assess({("b", "z"): 0.0, ("b", "y"): 0.0}, ())


def test_python_loops_on_a_random_choice():
    with raises(ppl.PPLError, "loopy", "Python int", "ppl.scan"):
        loopy.simulate(KEY, ())
    with raises(ppl.PPLError, "whiley", "ppl.scan"):
        whiley.simulate(KEY, ())


def test_an_argument_used_as_a_shape():
    @gen
    def sized(n):
        mu = normal(0.0, 1.0) @ "mu"
        return normal(jnp.full(n, mu), 1.0) @ "y"

    with raises(ppl.PPLError, "sized", "as a shape", "xs.shape[0]", "functools.partial"):
        sized.simulate(KEY, (3,))
    # the fix the message names: the size as a setting
    sized3 = gen(functools.partial(sized.fn, 3))
    assert sized3.simulate(KEY, ()).retval.shape == (3,)


def test_numpy_on_a_random_choice():
    @gen
    def npy():
        return np.sin(normal(0.0, 1.0) @ "z")

    with raises(ppl.PPLError, "npy", "NumPy", "jax.numpy"):
        npy.simulate(KEY, ())


def test_a_random_choice_inside_a_callback():
    def host(x):
        return np.float32(x + (normal(0.0, 1.0) @ "z"))

    @gen
    def m():
        x = normal(0.0, 1.0) @ "x"
        return jax.pure_callback(host, jax.ShapeDtypeStruct((), jnp.float32), x)

    with raises(Exception, "'z'", "callback", "outside the staged program", "cannot be made"):
        m.simulate(KEY, ())
    with raises(Exception, "'z'", "callback", "outside the staged program"):
        jax.jit(lambda k: m.simulate(k, ()).retval)(KEY)
    with raises(
        ppl.PPLError, "'z'", "outside a generative function"
    ):  # not in a callback: as before
        normal(0.0, 1.0) @ "z"


def test_an_expectation_called_instead_of_estimated():
    @ppl.expectation
    def e(mu):
        return normal(mu, 1.0) @ "z"

    with raises(ppl.PPLError, "e(0.5)", "e.estimate(key, (0.5,))", "grad_estimate"):
        e(0.5) * 2.0  # pyright: ignore[reportOperatorIssue]  # wrong on purpose: checks the error


def test_decorating_or_wrapping_something_that_is_not_a_function_says_what_to_pass():
    with pytest.raises(ppl.PPLError, match="ppl.gen decorates a Python function, got 3"):
        ppl.gen(3)  # type: ignore[arg-type]
    with pytest.raises(ppl.PPLError, match="needs a numpyro distribution class"):
        ppl.distribution(3)  # type: ignore[arg-type]


def test_a_dict_merges_with_a_choice_map_from_either_side():
    cm = ppl.ChoiceMap.d({"x": 1.0, "y": 2.0})
    assert (cm | {"y": 0.5}).to_dict() == {"x": 1.0, "y": 0.5}
    assert ({"y": 0.5, "z": 3.0} | cm).to_dict() == {"x": 1.0, "y": 2.0, "z": 3.0}
