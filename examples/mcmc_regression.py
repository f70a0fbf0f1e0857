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

    python examples/mcmc_regression.py [--quick]
"""

from __future__ import annotations

import argparse
import time

import jax
import jax.numpy as jnp
import numpy as np

import ppl
from ppl.inference import chains, mcmc, nuts

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


def main(argv=None):
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--quick", action="store_true", help="fewer data and draws (a smoke test)")
    p.add_argument("--chains", type=int, default=4)
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
