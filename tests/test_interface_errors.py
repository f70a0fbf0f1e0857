"""Interface calls that used to do nothing, or fail with JAX's message, and
now stop with an error naming the problem and the fix."""

from __future__ import annotations

import re

import jax
import jax.numpy as jnp
import pytest

import ppl
from ppl import gen, normal

KEY = jax.random.key(0)


def raises(exc, *fragments):
    return pytest.raises(exc, match="(?s)" + "".join(f"(?=.*{re.escape(f)})" for f in fragments))


@gen
def inner(m):
    return normal(m, 1.0) @ "z"


@gen
def model(m):
    a = normal(m, 1.0) @ "a"
    return inner(a) @ "sub"


def test_regenerate_with_a_selection_that_names_no_address():
    """Used to return the trace unchanged with weight 0."""
    tr = model.simulate(KEY, (0.0,))
    with raises(ppl.PPLError, "select('typo')", "names no random choice", "'a'", "('sub', 'z')"):
        model.regenerate(KEY, tr, ppl.select("typo"))
    with raises(ppl.PPLError, "select(('a', 'deeper'))", "names no random choice"):
        model.regenerate(KEY, tr, ppl.select(("a", "deeper")))
    # a typo inside a nested call is found there
    with raises(ppl.PPLError, "select('q')", "inner"):
        model.regenerate(KEY, tr, ppl.select("a", ("sub", "q")))
    with raises(ppl.PPLError, "names no random choice"):
        jax.jit(lambda t: model.regenerate(KEY, t, ppl.select("typo")))(tr)
    # selections that name nothing on purpose, or that match, are fine
    for sel in (
        ppl.select(),
        ppl.select_none(),
        ~ppl.select("a", "sub"),
        ppl.select("a"),
        ppl.select("sub"),
    ):
        model.regenerate(KEY, tr, sel)


def test_regenerate_of_a_switch_selects_per_branch():
    """A selection naming addresses of one branch only is not an error for a
    trace in another branch: a kernel serves every state of the chain."""

    @gen
    def b0():
        return normal(0.0, 1.0) @ "u"

    @gen
    def b1():
        return normal(0.0, 1.0) @ "v"

    @gen
    def m():
        c = ppl.flip(0.5) @ "c"
        return ppl.switch(b0, b1)(c) @ "s"

    tr, _ = m.generate(KEY, {"c": False}, ())
    new, w = m.regenerate(KEY, tr, ppl.select(("s", "v")))
    assert float(w) == 0.0 and float(new.choices["s", "u"]) == float(tr.choices["s", "u"])
    jax.jit(lambda t: m.regenerate(KEY, t, ppl.select(("s", "v"))))(tr)
    with raises(ppl.PPLError, "names no random choice", "('s', 'u')", "('s', 'v')"):
        m.regenerate(KEY, tr, ppl.select(("s", "w")))


@gen
def points(xs):
    return ppl.vmap(normal, in_axes=(0, None))(xs, 1.0) @ "ys"


def test_update_that_changes_a_vmap_length():
    """Used to fail inside jax.vmap (mismatched axis sizes) or with a generic
    shape message."""
    tr = points.simulate(KEY, (jnp.zeros(3),))
    with raises(
        ppl.AddressError,
        "'ys'",
        "length 5",
        "3 elements",
        "fixed in a trace",
        "simulate or generate",
    ):
        points.update(KEY, tr, {}, (jnp.zeros(5),))
    with raises(
        ppl.AddressError,
        "'ys'",
        "shape (2,)",
        "3 elements",
        "fixed in a trace",
        "simulate or generate",
    ):
        points.update(KEY, tr, {"ys": jnp.zeros(2)})
    rep = ppl.repeat(normal, 3)
    tr = rep.simulate(KEY, (0.0, 1.0))
    with raises(ppl.AddressError, "shape (4,)", "fixed in a trace"):
        rep.update(KEY, tr, ppl.ChoiceMap.value(jnp.zeros(4)))
    # the same length is fine
    new, w, _ = points.update(KEY, points.simulate(KEY, (jnp.zeros(3),)), {"ys": jnp.ones(3)})
    assert new.choices["ys"].shape == (3,)
