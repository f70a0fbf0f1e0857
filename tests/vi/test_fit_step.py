"""vi.fitter: the pure (init, step) pair that vi.fit drives."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import ppl
from ppl import gen, normal
from ppl.inference import vi


@gen
def model(x):
    z = normal(0.0, 1.0) @ "z"
    return normal(z * x, 1.0) @ "y"


@gen
def encoder(params, x):
    return normal(params[0] * x + params[1], jnp.exp(params[2])) @ "z"


OBJECTIVE = vi.elbo(model, encoder, observations=lambda x: {"y": 2.0 * x})
DATA = jnp.linspace(-1.0, 1.0, 20)


def test_stepping_by_hand_gives_fits_history_and_parameters():
    optimizer, steps = optax.adam(0.05), 30
    result = vi.fit(
        OBJECTIVE,
        jax.random.key(3),
        (),
        (jnp.zeros(3),),
        data=DATA,
        batch_size=5,
        optimizer=optimizer,
        steps=steps,
        chunk=steps,
        num_samples=2,
        progress=False,
    )
    init, step = vi.fitter(OBJECTIVE, optimizer, num_samples=2, batch_size=5)
    state = init((), (jnp.zeros(3),), DATA)
    assert isinstance(state, vi.FitState) and state.n_data == 20 and state.batch_size == 5
    step = jax.jit(step)
    values = []
    # fit's keys: one chunk of `steps` keys split from fold_in(key, 0)
    for k in jax.random.split(jax.random.fold_in(jax.random.key(3), 0), steps):
        state, value = step(k, state)
        values.append(float(value))
    np.testing.assert_allclose(values, result.history, rtol=1e-6)
    model_args, (params,) = state.arguments()
    assert model_args == ()
    np.testing.assert_allclose(params, result.guide_args[0], rtol=1e-6)


def test_the_guard_keeps_the_last_finite_parameters():
    def objective(key, model_args, guide_args):  # a step of 1 jumps past a = 2
        return 3.0 * guide_args[0] + jnp.log(2.0 - guide_args[0])

    init, step = vi.fitter(objective, optax.sgd(1.0))
    state = init((), (jnp.array(0.0),))
    failed = []
    for k in jax.random.split(jax.random.key(0), 4):
        state, _ = step(k, state)
        failed.append(bool(state.failed))
    assert failed == [False, True, True, True]
    assert float(state.arguments(last_good=True)[1][0]) == 0.0
    # Step 0 (finite, at a = 0, gradient 2.5) moved a to 2.5, where the estimate is NaN: a stays.
    assert float(state.arguments()[1][0]) == pytest.approx(2.5)


def test_fitter_errors_name_the_fitter():
    with pytest.raises(ppl.PPLError, match="fitter needs num_samples >= 1"):
        vi.fitter(OBJECTIVE, num_samples=0)
    with pytest.raises(ppl.PPLError, match="fitter needs an objective"):
        vi.fitter(42)
    init, _ = vi.fitter(OBJECTIVE)
    with pytest.raises(ppl.PPLError, match="fitter found nothing to train"):
        init((), (0.0,))
