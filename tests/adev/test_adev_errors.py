"""Every invalid strategy pairing, and every misuse, is a trace-time error that
names the address and says what to do."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import ppl
from ppl import (
    PPLError,
    categorical,
    enum,
    flip,
    gamma,
    geometric,
    mv_normal_diag,
    mvd,
    normal,
    poisson,
    reinforce,
    reparam,
    uniform,
)

KEY = jax.random.key(0)


def _one_choice(choice):
    @ppl.expectation
    def f(theta):
        return jnp.sum(jnp.asarray(choice(theta) @ "x", jnp.float32))

    return f


INVALID = [
    ("reparam", lambda t: flip(jax.nn.sigmoid(t)), reparam, "discrete"),
    ("reparam", lambda t: categorical(jax.nn.softmax(jnp.stack([t, 0.0]))), reparam, "discrete"),
    ("reparam", lambda t: poisson(jnp.exp(t)), reparam, "discrete"),
    ("reparam", lambda t: geometric(jax.nn.sigmoid(t)), reparam, "discrete"),
    ("enum", lambda t: normal(t, 1.0), enum, "continuous"),
    ("enum", lambda t: gamma(jnp.exp(t), 1.0), enum, "continuous"),
    ("enum", lambda t: poisson(jnp.exp(t)), enum, "infinite"),
    ("enum", lambda t: geometric(jax.nn.sigmoid(t)), enum, "infinite"),
    # a batched flip is enumerated over its joint support, up to 1024 values
    ("enum", lambda t: flip(jax.nn.sigmoid(t) * jnp.ones(11)), enum, "2048 values"),
    ("mvd", lambda t: gamma(jnp.exp(t), 1.0), mvd, "flip, categorical, poisson"),
    ("mvd", lambda t: uniform(t, t + 1.0), mvd, "flip, categorical, poisson"),
    ("mvd", lambda t: normal(t * jnp.ones(2), 1.0), mvd, "scalar"),
    ("mvd", lambda t: mv_normal_diag(t * jnp.ones(2), jnp.ones(2)), mvd, "flip, categorical"),
    ("reinforce", lambda t: uniform(t, t + 1.0), reinforce, "support moves"),
]


@pytest.mark.parametrize("how", ["policy", "call site"])
@pytest.mark.parametrize(
    "name,choice,strategy,why", INVALID, ids=[f"{i}-{c[0]}" for i, c in enumerate(INVALID)]
)
def test_invalid_pairing_is_a_trace_time_error(name, choice, strategy, why, how):
    if how == "policy":
        f = ppl.adev(_one_choice(choice), {"x": strategy})
    else:

        def wrapped(t):
            inv = choice(t)
            return strategy(inv.gen_fn)(*inv.args)

        f = _one_choice(wrapped)
    with pytest.raises(
        PPLError, match=f"strategy {name} cannot be used for the random choice 'x'"
    ) as e:
        f.grad_estimate(KEY, (jnp.float32(0.3),))
    assert why in str(e.value) and "instead" in str(e.value)


def test_error_names_the_nested_address():
    @ppl.gen
    def model(t):
        return flip(jax.nn.sigmoid(t)) @ "b"

    @ppl.expectation
    def f(t):
        return jnp.where(model(t) @ "m", 1.0, 0.0)

    with pytest.raises(PPLError, match=r"\('m', 'b'\)"):
        ppl.adev(f, {("m", "b"): reparam}).estimate(KEY, (0.3,))


def test_unknown_policy_address():
    f = _one_choice(lambda t: normal(t, 1.0))
    with pytest.raises(PPLError, match="'y'.*makes no random choice there"):
        ppl.adev(f, {"y": reinforce}).estimate(KEY, (0.3,))


def test_policy_value_must_be_a_strategy():
    with pytest.raises(PPLError, match="not a strategy"):
        ppl.adev(_one_choice(lambda t: normal(t, 1.0)), {"x": "reparam"})


def test_strategy_on_a_whole_call():
    @ppl.gen
    def model(t):
        return normal(t, 1.0) @ "z"

    @ppl.expectation
    def f(t):
        return model(t) @ "m"

    with pytest.raises(PPLError, match=r"call of .*Give strategies for the choices inside it"):
        ppl.adev(f, {"m": enum}).estimate(KEY, (0.3,))


def test_wrapping_a_generative_function_is_refused():
    @ppl.gen
    def model(t):
        return normal(t, 1.0) @ "z"

    with pytest.raises(PPLError, match="wraps a distribution"):
        reinforce(model)


def test_expectation_must_return_a_scalar():
    @ppl.expectation
    def f(t):
        return normal(t * jnp.ones(3), 1.0) @ "x"

    with pytest.raises(PPLError, match="must return one real number"):
        f.estimate(KEY, (0.3,))


def test_expectation_parts_outside_an_expectation():
    @ppl.gen
    def model(t):
        ppl.add_cost(t)
        return normal(t, 1.0) @ "x"

    model.simulate(KEY, (0.3,))  # a cost is no part of the model: ignored
    with pytest.raises(PPLError, match="add_cost"):
        model.assess({"x": 0.1}, (0.3,))

    @ppl.expectation
    def inner(t):
        return normal(t, 1.0) @ "x"

    @ppl.gen
    def model2(t):
        return inner(t) @ "e"

    with pytest.raises(PPLError, match="only has meaning inside an @ppl.expectation"):
        model2.simulate(KEY, (0.3,))


def test_bad_average():
    f = _one_choice(lambda t: normal(t, 1.0))
    with pytest.raises(PPLError, match="n >= 2 with loo=True"):
        ppl.E(f, 1, loo=True)


def test_sim_needs_a_gen_function():
    with pytest.raises(PPLError, match="ppl.sim takes an @ppl.gen function"):
        ppl.sim(normal)


def test_enum_and_mvd_inside_scan_are_refused():
    @ppl.gen
    def step(c, _):
        b = flip(jax.nn.sigmoid(c)) @ "b"
        return c, jnp.where(b, 1.0, 0.0)

    @ppl.expectation
    def f(t):
        _, ys = ppl.scan(step, length=3)(t, None) @ "loop"
        return jnp.sum(ys)

    for s in (enum, mvd):
        with pytest.raises(
            PPLError, match=rf"{s.name} at \('loop', 'b'\).*inside 'loop' \(ppl.scan\).*reinforce"
        ):
            ppl.adev(f, {("loop", "b"): s}).grad_estimate(KEY, (0.3,))


def test_differentiating_a_closed_over_value():
    def loss(w):
        f = ppl.expectation(lambda: (normal(w, 1.0) @ "x") ** 2)
        return f.estimate(KEY, ())

    assert np.isfinite(jax.jit(loss)(0.3))  # closing over a value is fine...
    with pytest.raises(PPLError, match="closes over a value that an enclosing jax.grad"):
        jax.grad(loss)(0.3)  # ...differentiating through the closure is not
