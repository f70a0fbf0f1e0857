"""Automatic guides in every objective, inside ppl.marginal, with nested calls
and combinators, and their errors."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import ppl
from ppl import gen, normal
from ppl.inference import vi


@gen
def scale():
    return ppl.lognormal(0.0, 1.0) @ "s"


@gen
def nested(xs):
    s = scale() @ "prior"  # a nested @gen call: the guide's choice is ("prior", "s")
    w = normal(0.0, s) @ "w"
    c = ppl.vmap(element, in_axes=(0, None))(xs, w) @ "points"  # pyright: ignore[reportArgumentType]
    a = ppl.gamma(2.0, 1.0) @ "a"
    b = ppl.uniform(0.0, a) @ "b"
    return c, b


@gen
def element(x, w):
    z = normal(0.0, 1.0) @ "z"  # a latent per element, inside ppl.vmap
    return normal(w * x + z, 0.5) @ "y"


XS = jnp.linspace(-1.0, 1.0, 4)
OBS = ppl.ChoiceMap.d({("points", "y"): 2.0 * XS})


def test_guide_follows_nested_calls_vmap_and_dependent_supports():
    auto = vi.auto_normal(nested, OBS, (XS,))
    guide, guide_args = auto
    assert [lat.path for lat in auto.layout.latents] == [
        ("prior", "s"),
        ("w",),
        ("points", "z"),
        ("a",),
        ("b",),
    ]
    tr = guide.simulate(jax.random.key(0), guide_args)
    assert tr.choices["points", "z"].shape == (4,)
    assert float(tr.choices["b"]) < float(tr.choices["a"])
    assert jnp.allclose(guide.assess(tr.choices, guide_args)[0], tr.score)
    logp, _ = nested.assess(tr.choices | OBS, (XS,))
    assert np.isfinite(float(logp))


@gen
def small():
    a = ppl.lognormal(0.0, 1.0) @ "a"
    b = ppl.uniform(0.0, a) @ "b"
    return normal(b, 0.5) @ "y"


def test_guide_works_in_every_objective():
    guide, guide_args = vi.auto_low_rank_normal(small, {"y": 0.3}, rank=1)
    key = jax.random.key(1)
    objectives = [
        vi.elbo(small, guide, {"y": 0.3}),
        vi.iwelbo(small, guide, {"y": 0.3}, n=3),
        vi.renyi(small, guide, {"y": 0.3}, alpha=0.5, n=3),
        vi.rws_wake_q(small, guide, {"y": 0.3}, n=3),
        vi.rws_wake_p(small, guide, {"y": 0.3}, n=3),
    ]
    for objective in objectives:
        value, grads = jax.jit(jax.value_and_grad(lambda p: objective.estimate(key, (), (p,))))(
            guide_args[0]
        )
        assert np.isfinite(float(value)), objective
        assert all(bool(jnp.all(jnp.isfinite(g))) for g in jax.tree.leaves(grads)), objective


def test_guide_inside_marginal_is_a_hierarchical_family():
    @gen
    def model():
        z = normal(0.0, 1.0) @ "z"
        return normal(z, 1.0) @ "x"

    @gen
    def family():  # an auxiliary u, integrated out of the guide by ppl.marginal
        u = normal(0.0, 1.0) @ "u"
        return normal(u, 1.0) @ "z"

    guide, guide_args = vi.auto_multivariate_normal(family, None)
    hvi = vi.elbo(model, ppl.marginal(guide, keep=ppl.select("z"), n=3), {"x": 1.0})
    assert np.isfinite(float(hvi.estimate(jax.random.key(0), (), guide_args)))


def test_discrete_latent_is_named_with_the_fix():
    @gen
    def model():
        b = ppl.flip(0.3) @ "b"
        return normal(jnp.where(b, 1.0, -1.0), 1.0) @ "y"

    with pytest.raises(ppl.PPLError, match=r"'b' is drawn from flip.*ppl.sum_out"):
        vi.auto_normal(model, {"y": 0.5})


def test_initialisation_strategies_and_their_errors():
    point = vi.initial_values(jax.random.key(0), nested, OBS, (XS,), init="mean")
    assert float(point["b"]) < float(point["a"])
    given = vi.auto_delta(nested, OBS, (XS,), init={"a": 3.0, "b": 1.0})
    assert jnp.allclose(given.median()["a"], 3.0) and jnp.allclose(given.median()["b"], 1.0)
    with pytest.raises(ppl.PPLError, match="'b' is outside the support"):
        vi.auto_normal(nested, OBS, (XS,), init={"a": 1.0, "b": 2.0})  # b outside (0, a)
    with pytest.raises(ppl.PPLError, match="not an initialisation strategy"):
        vi.auto_normal(nested, OBS, (XS,), init="mode")
    with pytest.raises(ppl.PPLError, match="nothing for a guide"):
        vi.auto_normal(scale, {"s": 1.0})


def test_support_with_parameters_inside_a_combinator_is_refused_by_name():
    @gen
    def element(a):
        return ppl.uniform(0.0, a) @ "b"

    @gen
    def model():
        a = ppl.gamma(2.0, 1.0) @ "a"
        return ppl.vmap(element, in_axes=0)(a * jnp.ones(3)) @ "many"

    with pytest.raises(ppl.PPLError, match=r"\('many', 'b'\).*has parameters"):
        vi.auto_normal(model, None)
