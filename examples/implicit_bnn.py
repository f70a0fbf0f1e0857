"""A small Bayesian neural network: an implicit family against mean-field VI and NUTS.

    y_i ~ normal(f(x_i; w1, b1, w2, b2), 0.1),   f = tanh layer, then linear,
    every weight ~ normal(0, 1)

on a one-dimensional regression set generated here (a sine with a gap in the
inputs). Three posteriors over the same network:

* mean-field VI: ``vi.auto_normal`` + ``vi.elbo`` + ``vi.fit``;
* implicit VI: ``vi.implicit_family`` (an MLP sampler with the linearized
  density) + ``vi.elbo`` + ``vi.fit``;
* NUTS: ``ppl.inference.run_mcmc`` (the reference).

Printed: the held-out log likelihood (the log of the posterior predictive
density of each test point, averaged over points), and the posterior
correlations between the first layer's weights and the second's (the mean
absolute correlation, after flipping each unit's signs so that its output
weight is positive: the network is unchanged by such a flip, and NUTS moves
between those modes; mean-field VI has no correlation by construction;
NUTS's is per chain). The plot shows the predictive bands and the
correlation matrices.

``--quick`` fits a tiny network with the implicit family only.

    python examples/implicit_bnn.py [--quick] [--out /tmp/implicit_bnn.png]
"""

from __future__ import annotations

import argparse
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax

import ppl
from ppl.inference import nuts, run_mcmc, vi

NOISE = 0.1
LAYERS = ("w1", "b1", "w2", "b2")


def make_bnn(hidden: int):
    """The network with ``hidden`` tanh units (a shape, so closed over)."""

    @ppl.gen
    def bnn(x):
        w1 = ppl.normal(jnp.zeros((1, hidden)), 1.0) @ "w1"
        b1 = ppl.normal(jnp.zeros(hidden), 1.0) @ "b1"
        w2 = ppl.normal(jnp.zeros(hidden), 1.0) @ "w2"
        b2 = ppl.normal(0.0, 1.0) @ "b2"
        return ppl.normal(predict(x, w1, b1, w2, b2), NOISE) @ "y"

    return bnn


def predict(x, w1, b1, w2, b2):
    return jnp.tanh(x[:, None] @ w1 + b1) @ w2 + b2


def data(seed, n_train, n_test):
    """Training inputs on two intervals with a gap between, test inputs across."""
    rng = np.random.default_rng(seed)
    half = n_train // 2
    x = np.concatenate([rng.uniform(-2, -0.5, half), rng.uniform(0.5, 2, n_train - half)])
    x_test = rng.uniform(-2, 2, n_test)
    y, y_test = (np.sin(2 * v) + NOISE * rng.standard_normal(v.shape) for v in (x, x_test))
    return tuple(jnp.asarray(v, jnp.float32) for v in (x, y, x_test, y_test))


def flat(draws):
    """``(n, d)``: the draws of every weight side by side, in LAYERS order."""
    n = draws["w1"].shape[0]
    return jnp.concatenate([jnp.reshape(draws[a], (n, -1)) for a in LAYERS], axis=1)


@jax.jit
def held_out_log_likelihood(draws, x_test, y_test):
    mean = jax.vmap(predict, in_axes=(None, 0, 0, 0, 0))(x_test, *(draws[a] for a in LAYERS))
    log_p = jax.scipy.stats.norm.logpdf(y_test, mean, NOISE)  # (draws, points)
    return jnp.mean(jax.scipy.special.logsumexp(log_p, 0) - jnp.log(log_p.shape[0]))


def sign_canonical(draws):
    """Each draw with every hidden unit's signs flipped so that its output weight
    is positive. ``tanh`` is odd, so flipping a unit's w1, b1 and w2 leaves the
    network unchanged: the posterior has a mode per sign pattern, and a sampler
    that moves between them (NUTS does) averages every correlation to zero."""
    s = jnp.sign(draws["w2"])
    return {
        "w1": draws["w1"] * s[:, None, :],
        "b1": draws["b1"] * s,
        "w2": draws["w2"] * s,
        "b2": draws["b2"],
    }


def cross_layer_correlation(draws, hidden):
    """Mean |correlation| between the first layer's weights (w1, b1) and the
    second's (w2, b2), and the whole correlation matrix, of the sign-canonical
    draws (:func:`sign_canonical`)."""
    corr = np.corrcoef(np.asarray(flat(sign_canonical(draws))).T)
    first = 2 * hidden
    return float(np.mean(np.abs(corr[:first, first:]))), corr


def fit_vi(bnn, guide, guide_args, args, obs, steps, lr, key):
    """Fitted arguments, the ELBO (the mean estimate over the last tenth of the
    steps, 4 draws each) and the seconds taken."""
    t0 = time.perf_counter()
    result = vi.fit(
        vi.elbo(bnn, guide, obs),
        key,
        args,
        guide_args,
        # clipped: the sampler's first steps see ELBO gradients in the thousands
        optimizer=optax.chain(optax.clip_by_global_norm(100.0), optax.adam(lr)),
        steps=steps,
        num_samples=4,
        progress=False,
    )
    elbo = float(jnp.mean(result.history[-max(steps // 10, 1) :]))
    return result.guide_args, elbo, time.perf_counter() - t0


def main(argv=None):
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a tiny network, few steps")
    parser.add_argument("--out", default="/tmp/implicit_bnn.png", help="where the plot goes")
    opts = parser.parse_args(argv)
    hidden, n_train, steps, n_mcmc, chains = (
        (3, 20, 200, 0, 1) if opts.quick else (8, 40, 8000, 1000, 2)
    )
    key = jax.random.key(0)
    k_mf, k_imp, k_nuts, k_draw = jax.random.split(key, 4)
    x, y, x_test, y_test = data(0, n_train, 200)
    bnn, args, obs = make_bnn(hidden), (x,), {"y": y}
    n_draws = 500 if opts.quick else 2000

    rows, draws_by = [], {}
    if not opts.quick:  # compiling each method is most of a quick run: the implicit one there
        auto = vi.auto_normal(bnn, obs, args)
        fitted, elbo, secs = fit_vi(bnn, auto.guide, auto.guide_args, args, obs, steps, 0.01, k_mf)
        samples = auto.sample(k_draw, fitted, n_draws)
        draws_by["mean-field VI"] = {a: samples[a] for a in LAYERS}
        rows.append(("mean-field VI", elbo, secs))

    family = vi.implicit_family(bnn, obs, args, width=64, depth=1, noise_scale=0.02, key=k_imp)
    fitted, elbo, secs = fit_vi(bnn, family.guide, family.guide_args, args, obs, steps, 3e-3, k_imp)
    draws_by["implicit VI"] = family.sample(k_draw, fitted, n_draws)
    rows.append(("implicit VI (linearized ELBO)", elbo, secs))

    per_chain = []
    if n_mcmc:
        t0 = time.perf_counter()
        mcmc = run_mcmc(
            k_nuts,
            nuts(),
            bnn,
            args,
            obs,
            n_samples=n_mcmc,
            n_warmup=n_mcmc,
            n_chains=chains,
            progress=False,
            warn=False,
        )
        rows.append(("NUTS", float("nan"), time.perf_counter() - t0))
        per_chain = [{a: jnp.asarray(mcmc.samples[a])[c] for a in LAYERS} for c in range(chains)]
        draws_by["NUTS"] = {a: jnp.concatenate([p[a] for p in per_chain]) for a in LAYERS}

    table = []
    for (name, elbo, secs), method in zip(rows, draws_by):
        draws = draws_by[method]
        ll = float(held_out_log_likelihood(draws, x_test, y_test))
        if method == "NUTS":
            cors = [cross_layer_correlation(p, hidden) for p in per_chain]
            cross, corr = float(np.mean([c for c, _ in cors])), cors[0][1]
        else:
            cross, corr = cross_layer_correlation(draws, hidden)
        table.append((name, elbo, ll, cross, secs, corr))

    print(f"\nBNN, {hidden} hidden units ({3 * hidden + 1} weights), {n_train} training points")
    print(f"{'method':32s} {'ELBO':>9s} {'held-out LL':>12s} {'|corr| L1-L2':>13s} {'time s':>7s}")
    for name, elbo, ll, cross, secs, _ in table:
        print(f"{name:32s} {elbo:9.2f} {ll:12.3f} {cross:13.3f} {secs:7.1f}")
    print(f"(|corr| of independent draws is about {np.sqrt(2 / (np.pi * n_draws)):.3f})")
    plot(draws_by, table, x, y, opts.out)
    print(f"plot: {opts.out}")
    return table


def plot(draws_by, table, x, y, out):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    grid = jnp.linspace(-3, 3, 200)
    n = len(draws_by)
    fig, axes = plt.subplots(2, n, figsize=(4.7 * n, 8), squeeze=False)
    for j, (method, draws) in enumerate(draws_by.items()):
        f = jax.vmap(predict, in_axes=(None, 0, 0, 0, 0))(grid, *(draws[a] for a in LAYERS))
        lo, mid, hi = np.percentile(np.asarray(f), [5, 50, 95], axis=0)
        ax = axes[0, j]
        ax.fill_between(grid, lo, hi, alpha=0.3)
        ax.plot(grid, mid)
        ax.scatter(x, y, s=8, c="k")
        ax.set(title=f"{method}: held-out LL {table[j][2]:.2f}", ylim=(-2.5, 2.5))
        image = axes[1, j].imshow(table[j][5], vmin=-1, vmax=1, cmap="RdBu_r")
        axes[1, j].set(title=f"{method}: correlations")
    fig.colorbar(image, ax=axes[1, :].tolist(), shrink=0.8)
    fig.savefig(out, dpi=100)
    plt.close(fig)


if __name__ == "__main__":
    main()
