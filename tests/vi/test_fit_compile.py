"""fit compiles its chunk once per shape and dtype: a second identical fit compiles nothing."""

import collections
import contextlib
import importlib

import jax
import jax.numpy as jnp
import optax

import ppl
from ppl import gen, normal
from ppl.inference import vi

_BACKEND_COMPILE = "/jax/core/compile/backend_compile_duration"
# The compiled chunk's name (the vi package exports the function fit, which hides the module).
_CHUNK = f"jit({importlib.import_module('ppl.inference.vi.fit_loop')._run_chunk.__name__})"


@contextlib.contextmanager
def compiles():
    """Count XLA compilations by function name while the block runs."""
    counts = collections.Counter()

    def listener(event: str, duration_secs: float, **kwargs: str | int) -> None:
        if event == _BACKEND_COMPILE:
            counts[kwargs.get("fun_name", "?")] += 1

    jax.monitoring.register_event_duration_secs_listener(listener)
    try:
        yield counts
    finally:
        jax.monitoring.unregister_event_duration_listener(listener)


@gen
def model():
    z = normal(0.0, 1.0) @ "z"
    return normal(z, 1.0) @ "x"


@gen
def guide(mu, log_s):
    return normal(mu, jnp.exp(log_s)) @ "z"


def test_weak_typed_start_compiles_the_chunk_once_and_a_second_fit_compiles_nothing():
    objective = vi.elbo(
        model, guide, ppl.ChoiceMap.d({"x": 1.0})
    )  # a fresh objective: nothing cached
    optimizer = optax.adam(0.05)

    def run():  # jnp.array(0.0) is weakly typed; 25 steps in chunks of 10: the last chunk is padded
        return vi.fit(
            objective,
            jax.random.key(0),
            (),
            (jnp.array(0.0), jnp.array(0.0)),
            optimizer=optimizer,
            steps=25,
            chunk=10,
            num_samples=4,
            progress=False,
        )

    with compiles() as first:
        a = run()
    assert first[_CHUNK] == 1, dict(first)
    with compiles() as second:
        b = run()
    assert sum(second.values()) == 0, dict(second)
    assert (a.history == b.history).all() and a.history.shape == (25,)


def test_new_data_of_the_same_shape_reuses_the_compiled_chunk():
    @gen
    def local_model(x):
        z = normal(0.0, 1.0) @ "z"
        return normal(z, 1.0) @ "x"

    @gen
    def encoder(params, x):
        return normal(params[0] * x + params[1], jnp.exp(params[2])) @ "z"

    objective = vi.elbo(local_model, encoder, observations=lambda x: {"x": x})
    optimizer = optax.adam(0.05)

    def run(data):
        return vi.fit(
            objective,
            jax.random.key(1),
            (),
            (jnp.zeros(3),),
            data=data,
            batch_size=4,
            optimizer=optimizer,
            steps=10,
            progress=False,
        )

    with compiles() as first:
        run(jnp.linspace(-1.0, 1.0, 16))
    assert first[_CHUNK] == 1, dict(first)
    with compiles() as second:
        run(jnp.linspace(-2.0, 2.0, 16))
    assert sum(second.values()) == 0, dict(second)
