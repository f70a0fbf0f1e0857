"""fit and gradient_variance."""

import re

import equinox as eqx
import jax
import jax.numpy as jnp
import optax
import pytest

import ppl
from ppl import gen, normal
from ppl.inference import vi


@gen
def model():
    z = normal(0.0, 1.0) @ "z"
    return normal(z, 1.0) @ "x"


@gen
def guide(mu, log_s):
    return normal(mu, jnp.exp(log_s)) @ "z"


OBS = ppl.ChoiceMap.d({"x": 1.0})


def test_fit_reaches_the_exact_posterior():
    res = vi.fit(
        vi.elbo(model, guide, OBS),
        jax.random.key(0),
        (),
        (jnp.array(-1.0), jnp.array(0.5)),
        optimizer=optax.adam(0.05),
        steps=600,
        num_samples=16,
        progress=False,
    )
    mu, log_s = res.guide_args
    assert abs(float(mu) - 0.5) < 0.05
    assert abs(float(jnp.exp(2 * log_s)) - 0.5) < 0.05
    assert res.history.shape == (600,)
    assert res.history[-50:].mean() > res.history[:50].mean()


class Guide(eqx.Module):
    mu: jax.Array
    log_s: jax.Array
    label: str = eqx.field(static=True, default="guide")


@gen
def module_guide(params, setting):  # setting: a string, held static
    return normal(params.mu, jnp.exp(params.log_s)) @ "z"


def test_fit_takes_equinox_modules_and_leaves_non_float_leaves_alone():
    start = Guide(jnp.array(0.0), jnp.array(0.0), label="q")
    res = vi.fit(
        vi.elbo(model, module_guide, OBS),
        jax.random.key(1),
        (),
        (start, "a setting"),
        optimizer=optax.adam(0.05),
        steps=300,
        num_samples=8,
        progress=False,
    )
    assert isinstance(res.guide_args[0], Guide) and res.guide_args[0].label == "q"
    assert res.guide_args[1] == "a setting"
    assert abs(float(res.guide_args[0].mu) - 0.5) < 0.1


def test_fit_stops_on_a_non_finite_loss_and_keeps_the_last_good_parameters():
    def pushes_up(key, model_args, guide_args):
        (a,) = guide_args
        return 3.0 * a + jnp.log(2.0 - a)  # the first step (lr 1) jumps past 2: log of a negative

    with pytest.raises(vi.NonFiniteLoss, match="step 1") as err:
        vi.fit(
            pushes_up,
            jax.random.key(0),
            (),
            (jnp.array(0.0),),
            optimizer=optax.sgd(1.0),
            steps=20,
            progress=False,
        )
    assert float(err.value.guide_args[0]) < 2.0
    assert len(err.value.history) == 1


def test_fit_errors_without_trainable_parameters():
    with pytest.raises(ppl.PPLError, match="nothing to train"):
        vi.fit(vi.elbo(model, guide, OBS), jax.random.key(0), (), (0, 1), steps=2, progress=False)


def test_gradient_variance_ranks_estimators():
    args = ((), (jnp.array(0.3), jnp.array(-0.2)))
    stats = {
        name: vi.gradient_variance(
            vi.elbo(model, guide, OBS, strategies=s), jax.random.key(0), *args, n=4000
        )
        for name, s in [
            ("reparam", None),
            ("reinforce", {"z": ppl.reinforce}),
            ("mvd", {"z": ppl.mvd}),
        ]
    }
    var = {k: float(v.variance[1][0]) for k, v in stats.items()}
    assert var["reparam"] < var["reinforce"]
    assert var["mvd"] < var["reinforce"]
    for v in stats.values():  # all unbiased for d/dmu = 0.4
        assert abs(float(v.mean[1][0]) - 0.4) < 5 * float(v.standard_error()[1][0])


# ---------------------------------------------------------------------------
# Minibatches of data: amortised inference
# ---------------------------------------------------------------------------


@gen
def local_model(x):  # z ~ N(0, 1), x | z ~ N(z, 1); x is the example, observed below
    z = normal(0.0, 1.0) @ "z"
    return normal(z, 1.0) @ "x"


@gen
def encoder(params, x):  # q(z | x) = N(a x + b, exp(log_s))
    a, b, log_s = params
    return normal(a * x + b, jnp.exp(log_s)) @ "z"


def test_fit_on_minibatches_reaches_the_exact_amortised_posterior():
    # The exact posterior for every x is N(x / 2, 1/2): a = 0.5, b = 0, variance 0.5.
    xs = jax.random.normal(jax.random.key(0), (512,)) * jnp.sqrt(2.0)
    objective = vi.elbo(local_model, encoder, observations=lambda x: {"x": x})
    # A decaying step size, so the answer is the optimum rather than Adam's jitter around it
    # (over three seeds the errors were below 0.006).
    res = vi.fit(
        objective,
        jax.random.key(1),
        (),
        (jnp.array([0.0, 1.0, 0.0]),),
        data=xs,
        batch_size=32,
        optimizer=optax.adam(optax.cosine_decay_schedule(0.05, 1500)),
        steps=1500,
        num_samples=4,
        progress=False,
    )
    a, b, log_s = res.guide_args[0]
    assert abs(float(a) - 0.5) < 0.03 and abs(float(b)) < 0.03
    assert abs(float(jnp.exp(2 * log_s)) - 0.5) < 0.03
    # The objective is the mean per-example ELBO; at the optimum that is the mean log evidence.
    log_evidence = jnp.mean(-0.5 * xs**2 / 2.0 - 0.5 * jnp.log(2 * jnp.pi * 2.0))
    assert abs(res.history[-200:].mean() - float(log_evidence)) < 0.1


def test_fit_on_minibatches_of_a_pytree_of_arrays_and_with_iwelbo():
    data = {"x": jnp.linspace(-2.0, 2.0, 64), "w": jnp.ones(64)}

    @gen
    def weighted_encoder(params, example):
        return encoder(params, example["x"] * example["w"]) @ "q"

    @gen
    def weighted_model(example):
        return local_model(example["x"]) @ "q"

    objective = vi.iwelbo(weighted_model, weighted_encoder, lambda ex: {"q": {"x": ex["x"]}}, n=3)
    # The exact posterior is in the family, so it is the IWELBO's optimum too (a = 0.5);
    # a decaying step size ends at the optimum rather than at Adam's jitter around it.
    res = vi.fit(
        objective,
        jax.random.key(2),
        (),
        (jnp.array([0.0, 0.0, 0.0]),),
        data=data,
        batch_size=16,
        optimizer=optax.adam(optax.cosine_decay_schedule(0.05, 600)),
        steps=600,
        progress=False,
    )
    assert abs(float(res.guide_args[0][0]) - 0.5) < 0.1
    assert res.history[-50:].mean() > res.history[:50].mean()


@pytest.mark.parametrize(
    "kwargs, fragments",
    [
        ({"batch_size": 8}, ["batch_size but no data"]),
        ({"data": jnp.ones((10,)), "batch_size": 11}, ["between 1 and the 10 examples", "11"]),
        ({"data": {"a": jnp.ones((10,)), "b": jnp.ones((9,))}}, ["disagree", "[9, 10]"]),
        ({"data": jnp.array(1.0)}, ["leading axis of examples"]),
    ],
)
def test_fit_data_errors(kwargs, fragments):
    objective = vi.elbo(local_model, encoder, observations=lambda x: {"x": x})
    with pytest.raises(
        ppl.PPLError, match="(?s)" + "".join(f"(?=.*{re.escape(f)})" for f in fragments)
    ):
        vi.fit(objective, jax.random.key(0), (), (jnp.zeros(3),), steps=2, progress=False, **kwargs)


def test_the_progress_bar_names_its_objective():
    from ppl.inference.vi.fit_loop import _label

    @ppl.gen
    def one_model():
        z = ppl.normal(0.0, 1.0) @ "z"
        return ppl.normal(z, 1.0) @ "y"

    @ppl.gen
    def one_guide(mu):
        return ppl.normal(mu, 1.0) @ "z"

    assert _label(True, vi.elbo(one_model, one_guide, {"y": 1.0})) == "fit elbo"
    assert _label(True, vi.iwelbo(one_model, one_guide, {"y": 1.0}, n=3)) == "fit iwelbo(n=3)"
    assert _label("HVI", vi.elbo(one_model, one_guide, {"y": 1.0})) == "HVI"
    assert _label(True, lambda key, m, g: 0.0) == "fit"
