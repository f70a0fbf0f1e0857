"""The compiled importance sampler and particle filter live in the cache store of
the model they ran, not in a module-level jit; ``ppl.clear_caches()`` (with
``jax.clear_caches()``, whose caches hold the structure of traces, which names
their model) lets the models go."""

import gc
import weakref

import jax
import jax.numpy as jnp

import ppl
from ppl import _caches, inference
from ppl.inference import smc

from _models import lgssm, lgssm_data


def _run_importance() -> weakref.ref:
    @ppl.gen
    def model():
        z = ppl.normal(0.0, 1.0) @ "z"
        return ppl.normal(z, 1.0) @ "y"

    result = inference.importance(jax.random.key(0), model, {"y": 0.5}, (), n=8)
    assert jnp.isfinite(result.log_marginal_likelihood)
    assert len(_caches.store_of(model)) > 0  # the compiled sampler is the model's
    return weakref.ref(model)


def _run_filter() -> weakref.ref:
    model = lgssm(4)
    _, info = smc.particle_filter(jax.random.key(1), model, (0.0, None), {"y": lgssm_data(4)}, 8)
    assert jnp.all(jnp.isfinite(info.log_marginal_likelihood))
    assert any(k[0] == "particle_filter" for k in _caches.store_of(model))
    return weakref.ref(model)


def test_clear_caches_frees_the_models_of_compiled_inference():
    refs = [_run_importance(), _run_filter()]
    ppl.clear_caches()
    jax.clear_caches()
    gc.collect()
    assert [r() for r in refs] == [None, None]
