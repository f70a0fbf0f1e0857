"""ppl.choose_strategies: a pilot picks each choice's strategy by variance x time.

Programs whose answer is known: a normal choice where reparam has zero
variance (reinforce does not), a flip where enum has zero variance, a vmap of
flips where only reinforce is valid (reparam refused by the distribution,
enum and mvd by the context); the chosen policy gives an unbiased gradient.
Small pilots (n=64, one timed run) keep the file fast.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import ppl
from ppl.transforms.adev.auto import choice_addresses

KEY = jax.random.key(0)
PILOT: dict = dict(n=64, repeats=1)  # small pilots, so the file runs fast


@ppl.expectation
def linear_normal(mu):
    return ppl.normal(mu, 1.0) @ "x"


@ppl.expectation
def one_flip(theta):
    b = ppl.flip(jax.nn.sigmoid(theta)) @ "b"
    return jnp.where(b, 3.0, -1.0)


@ppl.expectation
def flips_in_vmap(theta):
    bs = ppl.vmap(ppl.flip)(jax.nn.sigmoid(theta) * jnp.ones(3)) @ "bs"
    return jnp.sum(bs.astype(jnp.float32))


@ppl.expectation
def sqrt_normal(mu):
    return jnp.sqrt(ppl.normal(mu, 0.1) @ "x")


@ppl.expectation
def two_choices(mu, theta):
    x = ppl.normal(mu, 1.0) @ "x"
    b = ppl.flip(jax.nn.sigmoid(theta)) @ "b"
    return 0.1 * x**2 + jnp.where(b, 10.0, -10.0)


def _row(result, address, label):
    (row,) = [r for r in result.rows if r.address == (address,) and r.label.split(" (")[0] == label]
    return row


def _variance(result, address, label) -> float:
    v = _row(result, address, label).variance
    assert v is not None, (address, label)
    return v


@pytest.fixture(scope="module")
def normal_result():
    return ppl.choose_strategies(
        linear_normal,
        KEY,
        (0.5,),
        candidates=(ppl.reparam, ppl.reinforce, ppl.enum),
        argnums=0,
        **PILOT,
    )


def test_reparam_wins_on_a_normal_choice(normal_result):
    r = normal_result
    assert r.policy == {"x": ppl.reparam} and r.chosen("x") == "reparam"
    assert _variance(r, "x", "reparam") < 1e-10  # d/dmu of mu + noise is exactly 1
    assert _variance(r, "x", "reinforce") > 0.1
    assert _row(r, "x", "reparam").chosen and not _row(r, "x", "reinforce").chosen
    written = _row(r, "x", "as written")
    assert written.same_as == "reparam" and not written.chosen  # the default is reparam


def test_refused_strategies_are_listed_with_the_reason(normal_result):
    row = _row(normal_result, "x", "enum")
    assert row.skipped is not None and "continuous" in row.skipped
    assert row.variance is None and not row.chosen
    text = normal_result.table()
    assert "skipped: it is continuous" in text and "variance" in text
    assert repr(normal_result) == text and "policy: {'x': reparam}" in text


def test_enum_has_zero_variance_on_a_flip():
    candidates = (ppl.reparam, ppl.reinforce, ppl.enum)
    r = ppl.choose_strategies(one_flip, KEY, (0.3,), addresses="b", candidates=candidates, **PILOT)
    assert r.policy == {"b": ppl.enum}
    assert _variance(r, "b", "enum") < 1e-10
    assert _variance(r, "b", "reinforce") > 0.1
    assert "discrete" in (_row(r, "b", "reparam").skipped or "")
    assert r.distributions == {("b",): "flip"}


def test_only_reinforce_is_valid_inside_vmap():
    r = ppl.choose_strategies(flips_in_vmap, KEY, (0.3,), **PILOT)
    assert r.chosen("bs") == "reinforce"
    valid = [row.label for row in r.rows if row.skipped is None and row.strategy is not None]
    assert valid == ["reinforce"]
    for name in ("enum", "enum_sequential", "mvd"):
        assert "ppl.vmap" in (_row(r, "bs", name).skipped or ""), name  # refused by the context
    assert "discrete" in (_row(r, "bs", "reparam").skipped or "")
    # As written it is reinforce already (the default for flip): the same estimator.
    assert _row(r, "bs", "as written").same_as == "reinforce"


def _dsig(t):
    p = 1 / (1 + np.exp(-t))
    return p * (1 - p)


def _check_unbiased(f, policy, args, exact, n=2000):
    g = ppl.adev(f, strategies=policy)
    keys = jax.random.split(jax.random.key(7), n)
    grads = jax.vmap(lambda k: g.grad_estimate(k, args))(keys)
    for est, want in zip(grads, exact(*args)):
        est = np.asarray(est, np.float64)
        mcse = est.std(ddof=1) / np.sqrt(n)
        assert abs(est.mean() - want) <= 5 * mcse + 1e-5 * (1 + abs(want)), (est.mean(), want)


def test_two_choices_with_refinement_give_an_unbiased_gradient():
    mu, theta = 0.5, 0.2
    r = ppl.choose_strategies(
        two_choices,
        KEY,
        (mu, theta),
        candidates=(ppl.reparam, ppl.enum),
        refine=True,
        **PILOT,
    )
    assert r.addresses == [("x",), ("b",)]
    # enum removes b's score-function noise (variance about 25 -> 0): far more than
    # any timing noise can undo
    assert r.policy == {"x": ppl.reparam, "b": ppl.enum}
    assert {row.round for row in r.rows} == {1, 2}
    assert "[round 2]" in r.table()
    assert r.tuned[0] <= r.as_written[0]

    def exact(mu, theta):
        # E = 0.1 (mu^2 + 1) + 10 (2 p - 1), p = sigmoid(theta)
        return 0.2 * mu, 20 * _dsig(theta)

    _check_unbiased(two_choices, r.policy, (mu, theta), exact)


def test_choice_addresses_in_program_order():
    assert choice_addresses(two_choices, (0.5, 0.2)) == {("x",): "normal", ("b",): "flip"}
    # A choice whose strategy a policy of the expectation fixes is found too.
    fixed = ppl.adev(two_choices, strategies={"b": ppl.enum})
    assert choice_addresses(fixed, (0.5, 0.2)) == {("x",): "normal", ("b",): "?"}


def test_bad_input_is_a_clear_error():
    with pytest.raises(ppl.PPLError, match="takes an expectation"):
        ppl.choose_strategies(lambda mu: mu, KEY, (0.5,))  # type: ignore[arg-type]
    with pytest.raises(ppl.PPLError, match="must be a tuple"):
        ppl.choose_strategies(linear_normal, KEY, 0.5)  # type: ignore[arg-type]
    with pytest.raises(ppl.PPLError, match="n >= 2"):
        ppl.choose_strategies(linear_normal, KEY, (0.5,), n=1)
    with pytest.raises(ppl.PPLError, match="repeats >= 1"):
        ppl.choose_strategies(linear_normal, KEY, (0.5,), repeats=0)
    with pytest.raises(ppl.PPLError, match="candidates must be"):
        ppl.choose_strategies(linear_normal, KEY, (0.5,), candidates=("reparam",))  # type: ignore[list-item]
    with pytest.raises(ppl.PPLError, match="no random choice there.*'x'"):
        ppl.choose_strategies(linear_normal, KEY, (0.5,), addresses=["y"])
    with pytest.raises(ppl.PPLError, match="argnums must be positions"):
        ppl.choose_strategies(linear_normal, KEY, (0.5,), argnums=1)
    with pytest.raises(ppl.PPLError, match="non-finite gradient estimates"):
        ppl.choose_strategies(sqrt_normal, KEY, (-1.0,), **PILOT)  # sqrt of negative draws
    with pytest.raises(ppl.PPLError, match="expected a PRNG key"):
        ppl.choose_strategies(linear_normal, "key", (0.5,))
    with pytest.raises(ppl.PPLError, match="choose_strategies"):
        ppl.adev(linear_normal, strategies="auto")
    with pytest.raises(ppl.PPLError, match="choose_strategies"):
        ppl.expectation(strategies="auto")


def test_chosen_names_a_pilot_address(normal_result):
    with pytest.raises(ppl.PPLError, match="not an address of the pilot"):
        normal_result.chosen("nope")
