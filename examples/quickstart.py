"""The home page's example: a Bayesian linear regression fitted by the ELBO.

The code between the markers is the home page's (``docs/index.md``), word for
word (a test checks it). Running the file also draws the figure the home page
shows: the data with lines drawn from the fitted guide, and the fitted
marginals of the slope and intercept against the exact posterior (the model is
conjugate, so the posterior is a Gaussian in closed form).

Usage::

    python examples/quickstart.py [--out docs/figures]
"""

from __future__ import annotations

import argparse
import os

# --- the home page's code ---
import jax
import jax.numpy as jnp
import optax

import ppl
from ppl import gen, normal
from ppl.inference import vi


@gen
def point(x, slope, intercept):
    return normal(slope * x + intercept, 0.5) @ "y"


@gen
def model(xs):
    slope = normal(0.0, 1.0) @ "slope"
    intercept = normal(0.0, 1.0) @ "intercept"
    points = ppl.vmap(point, in_axes=(0, None, None))
    return points(xs, slope, intercept) @ "points"


@gen
def guide(loc, log_scale):  # mean-field: its parameters are its arguments
    normal(loc[0], jnp.exp(log_scale[0])) @ "slope"
    normal(loc[1], jnp.exp(log_scale[1])) @ "intercept"


xs = jnp.linspace(-2.0, 2.0, 20)
ys = 1.5 * xs - 0.5 + 0.5 * jax.random.normal(jax.random.key(0), (20,))
observed = ppl.ChoiceMap.d({"points": {"y": ys}})

objective = vi.elbo(model, guide, observed)  # or vi.iwelbo, or your own
start = (jnp.zeros(2), jnp.zeros(2))  # the guide's arguments: fit trains them
adam = optax.adam(0.05)
result = vi.fit(objective, jax.random.key(1), (xs,), start, optimizer=adam, num_samples=8)
loc, scale = result.guide_args[0], jnp.exp(result.guide_args[1])
print(f"slope {loc[0]:.2f} ± {scale[0]:.2f}, intercept {loc[1]:.2f} ± {scale[1]:.2f}")
# --- end of the home page's code ---


def exact_posterior(xs, ys, noise=0.5, prior_scale=1.0):
    """The conjugate posterior of (slope, intercept): its mean and covariance."""
    design = jnp.stack([xs, jnp.ones_like(xs)], axis=1)
    precision = design.T @ design / noise**2 + jnp.eye(2) / prior_scale**2
    covariance = jnp.linalg.inv(precision)
    return covariance @ design.T @ ys / noise**2, covariance


def plot(path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    mean, covariance = exact_posterior(xs, ys)
    draws = loc + scale * jax.random.normal(jax.random.key(2), (30, 2))
    fig, axes = plt.subplots(1, 3, figsize=(11, 3.2))
    grid = jnp.linspace(-2.2, 2.2, 2)
    for slope, intercept in draws:
        axes[0].plot(grid, slope * grid + intercept, color="tab:blue", alpha=0.15)
    axes[0].scatter(xs, ys, color="black", s=12, zorder=3)
    axes[0].set(title="data and 30 lines from the fitted guide", xlabel="x", ylabel="y")
    for i, name in enumerate(["slope", "intercept"]):
        sd = jnp.sqrt(covariance[i, i])
        z = jnp.linspace(mean[i] - 4 * sd, mean[i] + 4 * sd, 200)
        exact = jax.scipy.stats.norm.pdf(z, mean[i], sd)
        fitted = jax.scipy.stats.norm.pdf(z, loc[i], scale[i])
        axes[i + 1].plot(z, exact, color="black", label="exact posterior")
        axes[i + 1].plot(z, fitted, color="tab:blue", linestyle="--", label="fitted guide")
        axes[i + 1].set(title=name, yticks=[])
    axes[1].legend(frameon=False, fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    print(f"wrote {path}")


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--out", default="out", help="directory for the figure")
    args = parser.parse_args()
    mean, covariance = exact_posterior(xs, ys)
    sd = jnp.sqrt(jnp.diag(covariance))
    print(f"exact: slope {mean[0]:.2f} ± {sd[0]:.2f}, intercept {mean[1]:.2f} ± {sd[1]:.2f}")
    os.makedirs(args.out, exist_ok=True)
    plot(os.path.join(args.out, "quickstart.png"))


if __name__ == "__main__":
    main()
