"""NUTS on Bayesian linear regression through ppl and through plain numpyro.

Both run numpyro's NUTS (ppl builds the potential from ``assess``), with the
same data, chains, warm-up and draws. The numpyro side is numpyro's own NUTS
on the potential numpyro derives from its model (``initialize_model``), run
the way ``numpyro.infer.MCMC`` runs it (vectorized chains, one scan), but
jitted once: ``MCMC.run`` recompiles its sampling loop on every call, which
would swamp the comparison. Timed runs alternate between the two after a
compile-only first run; the report compares medians of effective samples per
second (minimum ESS over all parameters, per second of wall time including
warm-up). End-to-end ``MCMC.run`` time (compile included) is reported too.

    python benchmarks/mcmc_numpyro.py [--quick] [--json PATH] [--repeats 7]

On a machine shared with other work, single runs can take twice as long at
random; the medians of interleaved runs, and the best runs, are the numbers to
read. Both sides run the same NUTS, so undisturbed wall times match closely.
"""

from __future__ import annotations

import argparse
import statistics
import time
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
from numpyro.diagnostics import effective_sample_size
from numpyro.infer import MCMC, NUTS
from numpyro.infer.hmc import hmc
from numpyro.infer.util import initialize_model

import ppl
from _report import write_rows
from ppl.inference import chains, nuts


def make_data(n, d, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, d)).astype(np.float32)
    w = rng.normal(size=d).astype(np.float32)
    y = X @ w + 0.3 + 0.5 * rng.normal(size=n).astype(np.float32)
    return jnp.asarray(X), jnp.asarray(y)


@ppl.gen
def regression(X):
    w = ppl.normal(jnp.zeros(X.shape[1]), 1.0) @ "w"
    b = ppl.normal(0.0, 1.0) @ "b"
    sigma = ppl.exponential(1.0) @ "sigma"
    return ppl.normal(X @ w + b, sigma) @ "y"


def numpyro_regression(X, y):
    w = numpyro.sample("w", dist.Normal(jnp.zeros(X.shape[1]), 1.0).to_event(1))
    b = numpyro.sample("b", dist.Normal(0.0, 1.0))
    sigma = numpyro.sample("sigma", dist.Exponential(1.0))
    numpyro.sample("y", dist.Normal(X @ w + b, sigma), obs=y)


def ess_all(samples: dict) -> np.ndarray:
    """ESS of every scalar component; samples: name -> array (chains, draws, ...)."""
    return np.concatenate(
        [np.ravel(effective_sample_size(np.asarray(v, np.float64))) for v in samples.values()]
    )


def min_ess(samples: dict) -> float:
    # The worst-mixing scalar component counts.
    return float(np.min(ess_all(samples)))


def run_ppl(kernel, key, X, y, cfg):
    t = time.perf_counter()
    result = chains.run(key, kernel, regression, (X,), {"y": y}, **cfg)
    jax.block_until_ready(result.samples)
    elapsed = time.perf_counter() - t
    samples = {str(a): result.samples[a] for a in result.samples.addresses()}
    return min_ess(samples), elapsed, samples


def numpyro_sampler(X, y, n_warmup, n_samples, n_chains):
    """numpyro's NUTS on numpyro's potential, compiled once: ``key -> samples``."""
    _, potential_gen, postprocess_gen, _ = initialize_model(
        jax.random.PRNGKey(0), numpyro_regression, model_args=(X, y), dynamic_args=True
    )
    init_kernel, sample_kernel = hmc(potential_fn_gen=potential_gen, algo="NUTS")

    def chain(key, X, y):
        k_init, k_run = jax.random.split(key)
        params, _, _, _ = initialize_model(
            k_init, numpyro_regression, model_args=(X, y), dynamic_args=True
        )
        state = init_kernel(params.z, n_warmup, model_args=(X, y), rng_key=k_run)

        def step(s, _):
            return sample_kernel(s, model_args=(X, y)), None

        state, _ = jax.lax.scan(step, state, length=n_warmup)

        def keep(s, _):
            s = sample_kernel(s, model_args=(X, y))
            return s, s.z

        _, zs = jax.lax.scan(keep, state, length=n_samples)
        return jax.vmap(postprocess_gen(X, y))(zs)

    run = jax.jit(jax.vmap(chain, in_axes=(0, None, None)))
    return lambda key: run(jax.random.split(key, n_chains), X, y)


def run_numpyro(sampler, key):
    t = time.perf_counter()
    samples = sampler(key)
    jax.block_until_ready(samples)
    elapsed = time.perf_counter() - t
    return min_ess(samples), elapsed, samples


def numpyro_mcmc_end_to_end(key, X, y, n_warmup, n_samples, n_chains):
    mcmc = MCMC(
        NUTS(numpyro_regression),
        num_warmup=n_warmup,
        num_samples=n_samples,
        num_chains=n_chains,
        chain_method="vectorized",
        progress_bar=False,
    )
    t = time.perf_counter()
    mcmc.run(key, X, y)
    jax.block_until_ready(mcmc.get_samples())
    return time.perf_counter() - t


def main(argv=None):
    assert __doc__ is not None
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="small problem, few repeats (a smoke test)")
    p.add_argument("--json", metavar="PATH", help="write the results as JSON here")
    p.add_argument("--repeats", type=int, default=7, help="timed runs of each (default 7)")
    args = p.parse_args(argv)

    n, d = (100, 3) if args.quick else (500, 8)
    n_warmup, n_samples, n_chains = (200, 200, 2) if args.quick else (1000, 2000, 4)
    repeats = 2 if args.quick else args.repeats
    X, y = make_data(n, d)
    cfg = dict(n_samples=n_samples, n_warmup=n_warmup, n_chains=n_chains)

    kernel = nuts()
    sampler = numpyro_sampler(X, y, n_warmup, n_samples, n_chains)

    # Compile both once; these runs are not timed.
    _, t_ppl_first, _ = run_ppl(kernel, jax.random.key(100), X, y, cfg)
    _, t_np_first, _ = run_numpyro(sampler, jax.random.PRNGKey(100))
    # numpyro.infer.MCMC end to end (it compiles on every run); skipped by --quick.
    t_mcmc = (
        None
        if args.quick
        else numpyro_mcmc_end_to_end(jax.random.PRNGKey(101), X, y, n_warmup, n_samples, n_chains)
    )

    rows = []
    for r in range(repeats):
        e1, t1, s1 = run_ppl(kernel, jax.random.key(r), X, y, cfg)
        e2, t2, s2 = run_numpyro(sampler, jax.random.PRNGKey(r))
        rows.append(
            dict(
                ppl_ess=e1,
                ppl_seconds=t1,
                numpyro_ess=e2,
                numpyro_seconds=t2,
                ppl_mean_ess=float(np.mean(ess_all(s1))),
                numpyro_mean_ess=float(np.mean(ess_all(s2))),
            )
        )
        print(
            f"repeat {r}: ppl {e1:8.1f} ESS in {t1:6.3f}s ({e1 / t1:9.1f}/s)   "
            f"numpyro {e2:8.1f} ESS in {t2:6.3f}s ({e2 / t2:9.1f}/s)"
        )

    def med(k):
        return statistics.median(row[k] for row in rows)

    ppl_rate = statistics.median(row["ppl_ess"] / row["ppl_seconds"] for row in rows)
    np_rate = statistics.median(row["numpyro_ess"] / row["numpyro_seconds"] for row in rows)
    post_gap = max(
        abs(float(np.mean(s1[f"('{k}',)"])) - float(np.mean(s2[k]))) for k in ("b", "sigma")
    )

    def best(k):
        return max(row[f"{k}_ess"] / row[f"{k}_seconds"] for row in rows)

    summary: dict[str, Any] = dict(
        problem=dict(
            n=n, d=d, n_warmup=n_warmup, n_samples=n_samples, n_chains=n_chains, repeats=repeats
        ),
        ppl_ess_per_second=ppl_rate,
        numpyro_ess_per_second=np_rate,
        ratio=ppl_rate / np_rate,
        # The same ratio with the ESS averaged over parameters (less noisy than the minimum).
        ratio_mean_ess=statistics.median(r["ppl_mean_ess"] / r["ppl_seconds"] for r in rows)
        / statistics.median(r["numpyro_mean_ess"] / r["numpyro_seconds"] for r in rows),
        # Both run the same NUTS; the wall-time ratio isolates ppl's overhead.
        time_ratio=med("numpyro_seconds") / med("ppl_seconds"),
        # Best runs are less sensitive to other processes on a shared machine.
        ratio_of_best_runs=best("ppl") / best("numpyro"),
        median_seconds=dict(ppl=med("ppl_seconds"), numpyro=med("numpyro_seconds")),
        compile_and_first_run_seconds=dict(
            ppl=t_ppl_first, numpyro=t_np_first, numpyro_MCMC_run=t_mcmc
        ),
        posterior_mean_gap=post_gap,
        rows=rows,
    )
    print(
        f"first run, compile included: ppl {t_ppl_first:.2f}s, "
        f"numpyro (jitted once) {t_np_first:.2f}s; "
        + ("" if t_mcmc is None else f"numpyro MCMC.run {t_mcmc:.2f}s")
    )
    print(
        f"median ESS/s: ppl {ppl_rate:.1f}, numpyro {np_rate:.1f}; "
        f"ratio ppl/numpyro = {ppl_rate / np_rate:.3f} "
        f"(target >= 0.9); with mean ESS {summary['ratio_mean_ess']:.3f}; "
        f"best runs {best('ppl') / best('numpyro'):.3f}; "
        f"wall time numpyro/ppl {summary['time_ratio']:.3f}; "
        f"largest gap in posterior means of b, sigma: {post_gap:.4f}"
    )
    # One row in the shared shape: ppl's time per effective sample over numpyro's.
    write_rows(
        args.json,
        [
            {
                **summary,
                "ess_per_second_ratio": summary["ratio"],
                "benchmark": "mcmc_numpyro",
                "system": "numpyro",
                "config": summary["problem"],
                "median_s": summary["median_seconds"]["ppl"],
                "ratio": np_rate / ppl_rate,
            }
        ],
    )
    return summary


if __name__ == "__main__":
    main()
