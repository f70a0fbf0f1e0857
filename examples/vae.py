"""Variational autoencoders on MNIST: the VAE and the IWAE, with a choice of estimator.

Model (per digit): z ~ normal(0, I_10); x ~ flip(logits = decoder(z)), with a
10-200-784 decoder. Guide: z ~ normal(mu, exp(log_s)) with (mu, log_s) from a
784-200-20 encoder. The objective is a ten-line expectation program: the ELBO,
or with ``--objective iwelbo --k K`` the importance-weighted bound (IWAE).
The estimator for z is a policy, not a code change: ``reparam`` (pathwise),
``reinforce`` (score function), or ``reinforce_baseline`` (score function with
a baseline predicted by a small network of x: a traced baseline learns itself,
its gradient from the same estimate is the regression signal that moves it
towards the bound, so there is no separate regression loss).

Minibatches are handled outside the expectation: the per-digit estimate is a
plain JAX function, so ``jax.vmap`` over the batch gives every digit its own
sample and its own score-function term.

    python examples/vae.py [--objective elbo|iwelbo] [--k 5]
                           [--estimator reparam|reinforce|reinforce_baseline]
                           [--epochs 60] [--out out/] [--quick]
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import ppl  # noqa: E402
from _dgm import binarize, evaluate, load_mnist, train  # noqa: E402

LATENT, HIDDEN, PIXELS = 10, 200, 784
ESTIMATORS = ("reparam", "reinforce", "reinforce_baseline")


class MLP(eqx.Module):
    """One hidden ReLU layer. Written out (rather than eqx.nn.MLP) so that the
    module holds arrays only and passes through jit/vmap/grad as plain pytrees."""

    hidden: eqx.nn.Linear
    out: eqx.nn.Linear

    def __init__(self, n_in, n_hidden, n_out, key):
        k1, k2 = jax.random.split(key)
        self.hidden = eqx.nn.Linear(n_in, n_hidden, key=k1)
        self.out = eqx.nn.Linear(n_hidden, n_out, key=k2)

    def __call__(self, x):
        return self.out(jax.nn.relu(self.hidden(x)))


class VAE(eqx.Module):
    decoder: MLP  # z (10) -> Bernoulli logits (784)
    encoder: MLP  # x (784) -> mean and log-scale of z (20)
    baseline: MLP | None  # x (784) -> predicted bound; only reinforce_baseline has one

    def __init__(self, key, baseline: bool = False):
        kd, ke, kb = jax.random.split(key, 3)
        self.decoder = MLP(LATENT, HIDDEN, PIXELS, kd)
        self.encoder = MLP(PIXELS, HIDDEN, 2 * LATENT, ke)
        # Without one, no optimizer state is spent on parameters no gradient reaches.
        self.baseline = MLP(PIXELS, 50, 1, kb) if baseline else None


@ppl.gen
def model(decoder):
    z = ppl.normal(jnp.zeros(LATENT), 1.0) @ "z"
    return ppl.flip(logits=decoder(z)) @ "x"


def _posterior(encoder, x):
    out = encoder(x)
    return out[:LATENT], jnp.exp(out[LATENT:])


@ppl.gen
def guide(encoder, x):
    mu, scale = _posterior(encoder, x)
    return ppl.normal(mu, scale) @ "z"


@ppl.gen
def guide_with_baseline(encoder, baseline, x):
    mu, scale = _posterior(encoder, x)
    # A traced baseline goes at the call site. The bound does not depend on it; its
    # gradient slot gets (bound - baseline) * d baseline, so the same ascent step
    # that improves the bound trains the baseline network to predict it.
    return ppl.reinforce(ppl.normal, baseline=baseline(x)[0])(mu, scale) @ "z"


def bound(objective: str = "elbo", k: int = 1, estimator: str = "reparam") -> ppl.Expectation:
    """The per-digit ELBO (k=1) or IWELBO over k particles, as an expectation of (vae, x)."""
    if estimator not in ESTIMATORS:
        raise ValueError(f"--estimator must be one of {ESTIMATORS}, got {estimator!r}.")
    if objective not in ("elbo", "iwelbo"):
        raise ValueError(f"--objective must be elbo or iwelbo, got {objective!r}.")
    k = 1 if objective == "elbo" else k
    particles = [f"particle{i}" for i in range(k)]
    baselined = estimator == "reinforce_baseline"

    @ppl.expectation
    def iwelbo(vae, x):
        obs = ppl.ChoiceMap.d({"x": x})
        log_w = []
        for p in particles:
            q_args = (vae.encoder, vae.baseline, x) if baselined else (vae.encoder, x)
            z, log_q = ppl.sim(guide_with_baseline if baselined else guide)(*q_args) @ p
            log_w.append(ppl.density(model)(z | obs, vae.decoder) - log_q)
        if k == 1:
            return log_w[0]
        return jax.nn.logsumexp(jnp.stack(log_w)) - jnp.log(float(k))

    if baselined:  # the strategy is fixed at the call site
        return iwelbo
    strategy = ppl.reparam if estimator == "reparam" else ppl.reinforce
    return ppl.adev(iwelbo, {(p, "z"): strategy for p in particles})


def batch_values(objective: ppl.Expectation):
    """``(vae, key, batch) -> per-digit estimates``: one key, and one sample, per digit."""

    def values(vae, key, batch):
        keys = jax.random.split(key, batch.shape[0])
        return jax.vmap(lambda k, x: objective.estimate(k, (vae, x)))(keys, batch)

    return values


def loss_function(objective: ppl.Expectation):
    """``(vae, key, batch) -> (loss, mean bound)``: the loss is minus the mean bound.
    A baseline network, if the guide has one, learns from the same gradient."""
    values_of = batch_values(objective)

    def loss(vae, key, batch):
        values = values_of(vae, key, batch)
        return -jnp.mean(values), jnp.mean(values)

    return loss


def fit(args, key, train_x):
    objective = bound(args.objective, args.k, args.estimator)
    baselined = args.estimator == "reinforce_baseline"
    vae = VAE(jax.random.fold_in(key, 0), baseline=baselined)
    loss = loss_function(objective)
    vae, history = train(
        loss,
        vae,
        train_x,
        jax.random.fold_in(key, 1),
        epochs=args.epochs,
        batch_size=args.batch_size,
        optimizer=optax.adam(args.lr),
        progress=not args.no_progress,
        desc=f"{args.objective}/{args.estimator}",
    )
    return vae, history, objective


def plots(vae, history, test_x, held_out, args, key):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    os.makedirs(args.out, exist_ok=True)
    tag = f"{args.objective}{args.k if args.objective == 'iwelbo' else ''}_{args.estimator}"
    x = test_x[:10]
    recon = jax.nn.sigmoid(jax.vmap(lambda v: vae.decoder(_posterior(vae.encoder, v)[0]))(x))
    prior = jax.nn.sigmoid(jax.vmap(vae.decoder)(jax.random.normal(key, (20, LATENT))))

    def grid(imgs, cols):
        return np.concatenate(
            [
                np.concatenate(list(np.asarray(r).reshape(-1, 28, 28)), axis=1)
                for r in np.split(imgs, len(imgs) // cols)
            ],
            0,
        )

    for name, img in (("reconstructions", np.concatenate([x, recon])), ("prior_samples", prior)):
        plt.figure(figsize=(10, 0.5 + len(img) // 10))
        plt.imshow(grid(np.asarray(img), 10), cmap="gray")
        plt.axis("off")
        plt.title(
            "held-out digits (top) and reconstructions"
            if name == "reconstructions"
            else "samples from the prior"
        )
        plt.savefig(os.path.join(args.out, f"vae_{tag}_{name}.png"), dpi=100, bbox_inches="tight")
        plt.close()
    w = max(1, len(history) // 50)
    smooth = np.convolve(history, np.ones(w) / w, mode="valid")
    plt.figure(figsize=(6, 4))
    plt.plot(history, alpha=0.3, label="minibatch estimate")
    plt.plot(np.arange(w - 1, len(history)), smooth, label="moving average")
    plt.axhline(held_out, color="k", ls="--", label=f"held-out {held_out:.1f}")
    plt.ylim(max(float(np.min(smooth)), -550), np.max(history) + 10)
    plt.xlabel("step")
    plt.ylabel(f"{args.objective} (nats per digit)")
    plt.legend()
    plt.savefig(os.path.join(args.out, f"vae_{tag}_objective.png"), dpi=100, bbox_inches="tight")
    plt.close()


def main(argv=None):
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--objective", choices=("elbo", "iwelbo"), default="elbo")
    ap.add_argument("--k", type=int, default=5, help="particles of the IWELBO")
    ap.add_argument("--estimator", choices=ESTIMATORS, default="reparam")
    ap.add_argument("--epochs", type=int, default=60)
    ap.add_argument("--batch-size", type=int, default=100)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--n-train", type=int, default=None, help="use only this many training digits")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default="out")
    ap.add_argument("--no-progress", action="store_true")
    ap.add_argument("--no-plots", action="store_true")
    ap.add_argument("--quick", action="store_true", help="a few epochs, for a smoke test")
    args = ap.parse_args(argv)
    if args.quick:
        args.epochs = min(args.epochs, 3)

    (train_x, _), (test_x, _) = load_mnist()
    train_x, test_x = binarize(train_x)[: args.n_train], binarize(test_x)
    key = jax.random.key(args.seed)
    start = time.perf_counter()
    vae, history, objective = fit(args, key, jnp.asarray(train_x))
    seconds = time.perf_counter() - start
    values = batch_values(objective)
    name = args.objective if args.objective == "elbo" else f"iwelbo(k={args.k})"
    train_value = evaluate(values, vae, jnp.asarray(train_x), jax.random.key(100))
    test_value = evaluate(values, vae, jnp.asarray(test_x), jax.random.key(101))
    print(f"{name} with {args.estimator}: {len(history)} steps in {seconds:.1f} s")
    print(f"  train {name}:    {train_value:9.2f} nats per digit ({len(train_x)} digits)")
    print(f"  held-out {name}: {test_value:9.2f} nats per digit ({len(test_x)} digits)")
    if not args.no_plots:
        plots(vae, history, test_x, test_value, args, jax.random.key(102))
        print(f"  pictures in {args.out}/vae_*.png")
    return {
        "history": history,
        "train": train_value,
        "test": test_value,
        "vae": vae,
        "seconds": seconds,
    }


if __name__ == "__main__":
    main()
