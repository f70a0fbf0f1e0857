"""Bayesian linear regression, end to end: a model, observations, inference.

Self-normalised importance sampling with the prior as proposal, written with
the generative-function interface (``generate`` under ``jax.vmap``), checked
against the exact conjugate posterior.

    python examples/regression_is.py [--particles 200000] [--out out/]

The plot goes to ``<out>/regression_is.png``.
"""

from __future__ import annotations

import argparse
import os

import jax
import jax.numpy as jnp
import numpy as np

import ppl
from ppl import gen, normal

PRIOR_SD, NOISE_SD = 2.0, 0.5


@gen
def point(x, slope, intercept):
    return normal(slope * x + intercept, NOISE_SD) @ "y"


@gen
def regression(xs):
    slope = normal(0.0, PRIOR_SD) @ "slope"
    intercept = normal(0.0, PRIOR_SD) @ "intercept"
    return ppl.vmap(point, in_axes=(0, None, None))(xs, slope, intercept) @ "points"


def exact_posterior(xs, ys):
    """Conjugate Gaussian posterior over (slope, intercept)."""
    X = np.stack([xs, np.ones_like(xs)], axis=1)
    precision = X.T @ X / NOISE_SD**2 + np.eye(2) / PRIOR_SD**2
    cov = np.linalg.inv(precision)
    return cov @ X.T @ ys / NOISE_SD**2, cov


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--particles", type=int, default=200000)
    parser.add_argument("--out", default="out")
    parser.add_argument("--no-plot", action="store_true")
    args = parser.parse_args(argv)

    key = jax.random.key(0)
    xs = jnp.linspace(-2.0, 2.0, 12)
    truth = regression.simulate(key, (xs,))
    ys = truth.choices["points", "y"]
    obs = ppl.ChoiceMap.d({("points", "y"): ys})
    print(f"true slope {truth.choices['slope']:.3f}, intercept {truth.choices['intercept']:.3f}")

    @jax.jit
    def importance(key):
        keys = jax.random.split(key, args.particles)
        traces, log_w = jax.vmap(lambda k: regression.generate(k, obs, (xs,)))(keys)
        return traces.choices, log_w

    choices, log_w = importance(jax.random.key(1))
    w = jax.nn.softmax(log_w)
    ess = 1.0 / jnp.sum(w**2)
    log_ml = jax.nn.logsumexp(log_w) - jnp.log(args.particles)
    latents = jnp.stack([choices["slope"], choices["intercept"]], axis=1)
    mean = w @ latents
    sd = jnp.sqrt(w @ (latents - mean) ** 2)
    exact_mean, exact_cov = exact_posterior(np.asarray(xs), np.asarray(ys))

    print(f"{args.particles} particles, ESS {ess:.0f}, log marginal likelihood {log_ml:.3f}")
    print(f"{'':10s}{'IS mean':>10s}{'exact':>10s}{'IS sd':>10s}{'exact':>10s}")
    for i, name in enumerate(["slope", "intercept"]):
        print(
            f"{name:10s}{mean[i]:10.3f}{exact_mean[i]:10.3f}{sd[i]:10.3f}"
            f"{np.sqrt(exact_cov[i, i]):10.3f}"
        )

    if not args.no_plot:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        os.makedirs(args.out, exist_ok=True)
        fig, ax = plt.subplots(figsize=(6, 4))
        ax.scatter(xs, ys, color="k", zorder=3, label="observations")
        grid = np.linspace(-2.2, 2.2, 50)
        idx = jax.random.choice(jax.random.key(2), args.particles, (60,), p=w)
        for s, c in np.asarray(latents[idx]):
            ax.plot(grid, s * grid + c, color="C0", alpha=0.08)
        ax.plot(
            grid, exact_mean[0] * grid + exact_mean[1], color="C3", label="exact posterior mean"
        )
        ax.legend()
        ax.set_title("Bayesian linear regression: importance-sampled posterior")
        path = os.path.join(args.out, "regression_is.png")
        fig.savefig(path, dpi=120, bbox_inches="tight")
        print(f"saved {path}")
    return mean, exact_mean


if __name__ == "__main__":
    main()
