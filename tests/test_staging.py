"""Staging: random choices inside call-like JAX transformations are inlined and
work under every interface method; inside raw control flow they are rejected."""

from __future__ import annotations

import functools
import re

import jax
import jax.numpy as jnp
import numpyro.distributions as nd
import pytest

import ppl
from ppl import gen, normal
from _strategies import assert_close

KEY = jax.random.key(0)


def raises(exc, *fragments):
    return pytest.raises(exc, match="(?s)" + "".join(f"(?=.*{re.escape(f)})" for f in fragments))


@jax.jit
def jitted_helper(m):
    return normal(m, 1.0) @ "h"


@jax.checkpoint
def remat_helper(m):
    return normal(2.0 * m, 0.5) @ "r"


@jax.custom_jvp
def custom_helper(m):
    return normal(m, 2.0) @ "c"


@custom_helper.defjvp
def _custom_helper_jvp(primals, tangents):
    return custom_helper(*primals), tangents[0]


@functools.partial(jax.jit, static_argnums=1)
def nested_jit(m, k):
    a = normal(m, 1.0) @ f"n{k}"
    return jax.jit(lambda b: normal(b, 1.0) @ "deep")(a)


@gen
def staged(m):
    h = jitted_helper(m)
    r = remat_helper(jax.nn.relu(h))
    c = custom_helper(r)
    d = nested_jit(c, 1)
    return normal(jax.nn.relu(d) + jax.nn.softplus(c), 1.0) @ "out"


def _staged_logp(m, v):
    return (
        nd.Normal(m, 1.0).log_prob(v["h"])
        + nd.Normal(2.0 * jnp.maximum(v["h"], 0.0), 0.5).log_prob(v["r"])
        + nd.Normal(v["r"], 2.0).log_prob(v["c"])
        + nd.Normal(v["c"], 1.0).log_prob(v["n1"])
        + nd.Normal(v["n1"], 1.0).log_prob(v["deep"])
        + nd.Normal(jnp.maximum(v["deep"], 0.0) + jax.nn.softplus(v["c"]), 1.0).log_prob(v["out"])
    )


ADDRS = ["h", "r", "c", "n1", "deep", "out"]


def test_choices_inside_jit_checkpoint_and_custom_jvp_are_recorded_and_scored():
    tr = staged.simulate(KEY, (0.4,))
    assert sorted(a[0] for a in tr.choices.addresses()) == sorted(ADDRS)
    values = {a: tr.choices[a] for a in ADDRS}
    assert_close(tr.score, _staged_logp(0.4, values))
    assert_close(staged.assess(tr.choices, (0.4,))[0], tr.score)
    # every choice is distinct (none frozen to the same key)
    assert len({float(v) for v in values.values()}) == len(ADDRS)


def test_choices_inside_helpers_can_be_constrained_and_updated():
    cons = {"h": 1.5, "c": -0.3, "deep": 0.7}
    tr, w = staged.generate(KEY, cons, (0.4,))
    for a, v in cons.items():
        assert_close(tr.choices[a], v)
    values = {a: tr.choices[a] for a in ADDRS}
    expected_w = (
        nd.Normal(0.4, 1.0).log_prob(1.5)
        + nd.Normal(values["r"], 2.0).log_prob(-0.3)
        + nd.Normal(values["n1"], 1.0).log_prob(0.7)
    )
    assert_close(w, expected_w)
    new, uw, discard = staged.update(KEY, tr, {"r": 0.1}, (0.4,))
    assert_close(discard["r"], values["r"])
    assert_close(uw, new.score - tr.score)
    assert_close(new.score, _staged_logp(0.4, {a: new.choices[a] for a in ADDRS}))
    reg, rw = staged.regenerate(jax.random.key(1), tr, ppl.select("r"))
    assert float(reg.choices["r"]) != float(values["r"])
    assert float(reg.choices["c"]) == float(values["c"])


def test_staged_helpers_under_jit_vmap_and_grad():
    tr = staged.simulate(KEY, (0.4,))
    tr_jit = jax.jit(lambda k: staged.simulate(k, (0.4,)))(KEY)
    for a in ADDRS:
        assert_close(tr_jit.choices[a], tr.choices[a])
    scores = jax.vmap(lambda k: staged.simulate(k, (0.4,)).score)(jax.random.split(KEY, 3))
    assert scores.shape == (3,)
    g = jax.grad(lambda m: staged.assess(tr.choices, (m,))[0])(0.4)
    assert_close(g, tr.choices["h"] - 0.4)  # only the first choice depends on m


def test_raw_control_flow_without_random_choices_is_fine():
    @gen
    def m(x):
        s = jax.lax.fori_loop(0, 3, lambda i, c: c + x, 0.0)
        t = jax.lax.cond(x > 0, lambda: 1.0, lambda: -1.0)
        u = jax.lax.scan(lambda c, _: (c * 2, c), 1.0, None, length=3)[0]
        return normal(s + t + u, 1.0) @ "y"

    tr = m.simulate(KEY, (1.0,))
    assert_close(tr.score, nd.Normal(3.0 + 1.0 + 8.0, 1.0).log_prob(tr.choices["y"]))


@gen
def in_scan():
    def body(c, _):
        x = normal(c, 1.0) @ "s"
        return x, x

    return jax.lax.scan(body, 0.0, None, length=3)


@gen
def in_fori():
    return jax.lax.fori_loop(0, 3, lambda i, c: normal(c, 1.0) @ "f", 0.0)


@gen
def in_cond(b):
    return jax.lax.cond(b, lambda: normal(0.0, 1.0) @ "c", lambda: 0.0)


@gen
def in_switch(i):
    return jax.lax.switch(i, [lambda: normal(0.0, 1.0) @ "sw", lambda: 1.0])


@gen
def in_while():
    return jax.lax.while_loop(lambda c: c < 0, lambda c: normal(c, 1.0) @ "w", 0.0)


@gen
def in_scan_via_jit():
    def body(c, _):
        x = jitted_helper(c)
        return x, x

    return jax.lax.scan(body, 0.0, None, length=2)


@pytest.mark.parametrize(
    "model, args, addr, where, fix",
    [
        (in_scan, (), "'s'", "jax.lax.scan", "ppl.scan"),
        (in_fori, (), "'f'", "jax.lax.scan", "ppl.scan"),
        (in_cond, (True,), "'c'", "jax.lax.cond", "ppl.switch"),
        (in_switch, (0,), "'sw'", "jax.lax.cond", "ppl.switch"),
        (in_while, (), "'w'", "jax.lax.while", "ppl.scan"),
        (in_scan_via_jit, (), "'h'", "jax.lax.scan", "ppl.scan"),
    ],
    ids=["scan", "fori_loop", "cond", "switch", "while_loop", "scan-of-jit"],
)
def test_random_choice_in_raw_control_flow_is_rejected(model, args, addr, where, fix):
    for call in (
        lambda: model.simulate(KEY, args),
        lambda: model.generate(KEY, {}, args),
        lambda: jax.jit(lambda k: model.simulate(k, args).score)(KEY),
    ):
        with raises(ppl.PPLError, addr, where, fix):
            call()


def test_jax_vmap_over_a_random_choice_is_rejected():
    @gen
    def m():
        return jax.vmap(lambda mu: normal(mu, 1.0) @ "v")(jnp.zeros(3)) @ jnp.ones(3)

    with raises(ppl.PPLError, "'v'", "jax.vmap", "ppl.vmap"):
        m.simulate(KEY, ())


def test_jax_grad_over_a_random_choice_is_rejected():
    @gen
    def m():
        return jax.grad(lambda mu: normal(mu, 1.0) @ "g")(0.0)

    with raises(ppl.PPLError, "'g'", "jax.grad"):
        m.simulate(KEY, ())


def test_program_is_staged_with_flat_sites():
    prog = staged.program((0.4,))
    assert sorted(prog.addresses) == sorted(ADDRS)


def test_closure_over_arrays_and_python_constants():
    table = jnp.array([0.5, -1.0, 2.0])

    @gen
    def m(i):
        return normal(table[i], 1.0) @ "x"

    tr = m.simulate(KEY, (2,))
    assert_close(tr.score, nd.Normal(2.0, 1.0).log_prob(tr.choices["x"]))
    logps = jax.vmap(lambda i: m.assess({"x": 0.0}, (i,))[0])(jnp.arange(3))
    assert_close(logps, nd.Normal(table, 1.0).log_prob(0.0))
