"""Caches are weak and clearable: models that are dropped take their cache
entries with them, and ``ppl.clear_caches()`` empties the rest."""

from __future__ import annotations

import copy
import gc
import os

import jax
import jax.numpy as jnp

import ppl
from ppl import _caches
from ppl.inference import chains


def _make_model(i: int):
    @ppl.gen
    def inner(mu):
        return ppl.normal(mu, 1.0) @ "z"

    @ppl.gen
    def model(x):
        z = inner(x + i) @ "inner"
        return ppl.normal(z, 0.5) @ "y"

    return model


def _use(i: int) -> None:
    model = _make_model(i)
    tr = model.simulate(jax.random.key(i), (jnp.float32(0.0),))
    model.trace_shape((jnp.float32(0.0),))  # a trace shape names its model: cached on the model
    assert jnp.isfinite(tr.score)


def _live_owners() -> int:
    gc.collect()
    return len(_caches._stores)


def _rss() -> int | None:
    """The process's resident memory in bytes (Linux), or None."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return None


def test_a_thousand_dropped_models_leave_no_cache_entries_and_no_memory():
    for i in range(200):  # warm up: JAX's own caches for these shapes, allocator pools
        _use(i)
    owners = _live_owners()  # collects garbage first
    entries, before = _caches.live_entries(), _rss()
    for i in range(1000):
        _use(i)
    owners_after, after = _live_owners(), _rss()
    assert _caches.live_entries() == entries
    # Every model, its inner model and their stores are gone (a model kept alive by
    # any cache, ppl's or JAX's, would keep its store too).
    assert owners_after == owners
    if before is not None:
        assert after is not None  # measured before, so measurable after
        # Kept alive, the 1000 models would take about 18 MB; JAX's own bounded
        # caches (debug information of traced functions) grow by about 2 MB.
        assert after - before < 8 * 2**20, f"memory grew by {(after - before) / 2**20:.1f} MB"


def test_entries_go_with_their_model():
    model = _make_model(0)
    model.simulate(jax.random.key(0), (jnp.float32(0.0),))
    model.trace_shape((jnp.float32(0.0),))
    gc.collect()
    with_model = _caches.live_entries()
    del model
    gc.collect()
    assert _caches.live_entries() < with_model


def test_clear_caches_empties_every_store_and_runs_registered_clears():
    model = _make_model(0)
    args = (jnp.float32(0.0),)
    tr = model.simulate(jax.random.key(0), args)
    model.trace_shape(args)
    assert len(_caches.store_of(model)) > 0
    assert _caches.live_entries() > 0
    cleared = []
    _caches.register(lambda: cleared.append(True))
    try:
        ppl.clear_caches()
    finally:
        _caches._clears.pop()
    assert _caches.live_entries() == 0
    assert cleared == [True]
    # Everything works again afterwards: programs are staged anew.
    again = model.simulate(jax.random.key(0), args)
    assert jnp.allclose(again.score, tr.score)


def test_mcmc_chains_are_cached_on_their_model_not_in_module_dicts():
    assert not any(isinstance(v, dict) and k.isupper() for k, v in vars(chains).items())
    model = _make_model(0)
    kernel = ppl.inference.mh(ppl.select("inner"))
    obs = {"y": 0.3}
    run = lambda: ppl.inference.run_mcmc(  # noqa: E731
        jax.random.key(0),
        kernel,
        model,
        (jnp.float32(0.0),),
        obs,
        n_samples=5,
        n_warmup=0,
        n_chains=2,
    )
    run()
    n = len(_caches.store_of(model))
    run()  # the same compiled chain: nothing new
    assert len(_caches.store_of(model)) == n
    assert any(isinstance(k, tuple) and k and k[0] == "chains.run" for k in _caches.store_of(model))


def test_nothing_is_written_onto_a_model_after_it_is_made():
    model = _make_model(0)
    attrs = set(vars(model))
    model.simulate(jax.random.key(0), (jnp.float32(0.0),))
    model.trace_shape((jnp.float32(0.0),))
    assert set(vars(model)) == attrs
    normal_attrs = dict(vars(ppl.normal))
    ppl.normal.simulate(jax.random.key(0), (0.0, 1.0))
    assert dict(vars(ppl.normal)) == normal_attrs


def test_a_copy_has_its_own_store():
    model = _make_model(0)
    model.trace_shape((jnp.float32(0.0),))
    other = copy.copy(model)
    assert _caches.store_of(other) is not _caches.store_of(model)
    assert len(_caches.store_of(other)) == 0
