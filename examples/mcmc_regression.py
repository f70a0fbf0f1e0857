"""Bayesian linear regression with NUTS and Metropolis-Hastings, diagnostics printed.

    y_i ~ normal(x_i . w + b, sigma),
    w ~ normal(0, 1)^D,  b ~ normal(0, 1),  sigma ~ exponential(1)

Two samplers on the same model and data: numpyro's NUTS on all latent choices
(in unconstrained space), and a cycle of Metropolis-Hastings moves with custom
proposal generative functions: a random walk on the coefficients and a
multiplicative (log-scale) random walk on sigma, whose asymmetry the MH ratio
accounts for. Each prints means, standard deviations, Monte Carlo standard
errors, effective sample sizes and split R-hat, and the effective samples per
second of its worst-mixing parameter.

Then a posterior predictive check: replicated data sets drawn from the NUTS
posterior (``ppl.inference.predictive``) are compared with the data through
test statistics (posterior predictive p-values), and a plot of the replicated
statistics and of the data against their predictive intervals is saved to
``<out>/mcmc_regression_ppc.png``.

    python examples/mcmc_regression.py [--quick] [--out out/]
"""

from __future__ import annotations

import argparse
import os
import time

import jax
import jax.numpy as jnp
import numpy as np

import ppl
from ppl.inference import chains, mcmc, nuts, predictive

TRUE_W, TRUE_B, TRUE_SIGMA = np.array([1.5, -0.7, 0.3]), 0.5, 0.4


@ppl.gen
def regression(X):
    w = ppl.normal(jnp.zeros(X.shape[1]), 1.0) @ "w"
    b = ppl.normal(0.0, 1.0) @ "b"
    sigma = ppl.exponential(1.0) @ "sigma"
    return ppl.normal(X @ w + b, sigma) @ "y"


@ppl.gen
def coefficient_walk(trace, scale):
    ppl.normal(trace["w"], scale) @ "w"
    ppl.normal(trace["b"], scale) @ "b"


@ppl.gen
def sigma_walk(trace, scale):
    # log sigma' ~ normal(log sigma, scale): not symmetric in sigma, and MH's
    # reverse-proposal term corrects for that.
    ppl.lognormal(jnp.log(trace["sigma"]), scale) @ "sigma"


def make_data(n, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, len(TRUE_W))).astype(np.float32)
    y = X @ TRUE_W + TRUE_B + TRUE_SIGMA * rng.normal(size=n)
    return jnp.asarray(X), jnp.asarray(y, jnp.float32)


def report(name, result, seconds):
    print(f"\n== {name}: {seconds:.1f}s (compile included)")
    result.print_summary()
    worst = min(float(np.min(v)) for v in result.ess().values())
    print(f"worst-mixing ESS {worst:.0f}, {worst / seconds:.0f} effective samples per second")
    rhat = max(float(np.max(v)) for v in result.rhat().values())
    if rhat > 1.05:
        print(f"warning: max R-hat {rhat:.3f} > 1.05; run longer")
    return worst


STATISTICS = {
    "mean": lambda y: y.mean(-1),
    "sd": lambda y: y.std(-1),
    "max": lambda y: y.max(-1),
}


def posterior_predictive_check(result, X, y, out):
    """Replicated data from the posterior; p-values of test statistics; a plot."""
    draws = predictive(jax.random.key(2), regression, (X,), posterior=result, addresses="y")
    y_rep = np.asarray(draws["y"])  # (chains * draws, n_data)
    y_obs = np.asarray(y)
    print(f"\n== posterior predictive check ({y_rep.shape[0]} replicated data sets)")
    p_values = {}
    for name, stat in STATISTICS.items():
        rep, obs = stat(y_rep), float(stat(y_obs))
        p_values[name] = float(np.mean(rep >= obs))
        print(
            f"  {name:>4}: observed {obs:7.3f}, replicated {rep.mean():7.3f} +- {rep.std():.3f}, "
            f"p = {p_values[name]:.2f}"
        )
    path = plot_ppc(out, y_obs, y_rep)
    print(f"  plot: {path}")
    return p_values


def plot_ppc(out, y_obs, y_rep):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    os.makedirs(out, exist_ok=True)
    fig, axes = plt.subplots(1, 3, figsize=(14, 3.8))
    for ax, (name, stat) in zip(axes[:2], [("sd", STATISTICS["sd"]), ("max", STATISTICS["max"])]):
        ax.hist(stat(y_rep), bins=40, color="tab:blue", alpha=0.7, label="replicated")
        ax.axvline(float(stat(y_obs)), color="k", lw=2, label="observed")
        ax.set_title(f"test statistic: {name}(y)")
        ax.legend()
    order = np.argsort(y_rep.mean(0))
    lo, hi = np.percentile(y_rep, [5, 95], axis=0)
    ax = axes[2]
    idx = np.arange(len(y_obs))
    ax.vlines(idx, lo[order], hi[order], color="tab:blue", alpha=0.5, label="90% predictive")
    ax.plot(idx, y_obs[order], "k.", label="observed")
    inside = np.mean((y_obs >= lo) & (y_obs <= hi))
    ax.set_title(f"data vs predictive intervals ({inside:.0%} inside)")
    ax.set_xlabel("data point (by predictive mean)")
    ax.legend()
    fig.tight_layout()
    path = os.path.join(out, "mcmc_regression_ppc.png")
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def main(argv=None):
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--quick", action="store_true", help="fewer data and draws (a smoke test)")
    p.add_argument("--chains", type=int, default=4)
    p.add_argument("--out", default="out", help="directory for the predictive-check plot")
    args = p.parse_args(argv)
    n_data, n_warmup, n_samples = (50, 200, 300) if args.quick else (200, 1000, 2000)
    X, y = make_data(n_data)
    obs = {"y": y}
    print(f"true values: w={TRUE_W.tolist()}, b={TRUE_B}, sigma={TRUE_SIGMA}; {n_data} data points")

    t = time.perf_counter()
    result_nuts = chains.run(
        jax.random.key(0),
        nuts(),
        regression,
        (X,),
        obs,
        n_samples=n_samples,
        n_warmup=n_warmup,
        n_chains=args.chains,
    )
    report("NUTS (numpyro's, on a potential from assess)", result_nuts, time.perf_counter() - t)
    posterior_predictive_check(result_nuts, X, y, args.out)

    kernel = mcmc.repeat_kernel(
        mcmc.cycle(
            mcmc.mh(proposal=coefficient_walk, proposal_args=(0.05,)),
            mcmc.mh(proposal=sigma_walk, proposal_args=(0.1,)),
        ),
        5,
    )
    t = time.perf_counter()
    result_mh = chains.run(
        jax.random.key(1),
        kernel,
        regression,
        (X,),
        obs,
        n_samples=n_samples,
        n_warmup=n_warmup,
        n_chains=args.chains,
    )
    report(
        "MH: random-walk proposals, cycled, 5 moves per draw", result_mh, time.perf_counter() - t
    )

    gap = abs(float(result_nuts.samples["b"].mean()) - float(result_mh.samples["b"].mean()))
    print(
        f"\nposterior mean of b: NUTS {float(result_nuts.samples['b'].mean()):.3f}, "
        f"MH {float(result_mh.samples['b'].mean()):.3f} (difference {gap:.3f})"
    )
    return result_nuts, result_mh


if __name__ == "__main__":
    main()
