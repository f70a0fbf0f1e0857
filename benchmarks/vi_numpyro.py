"""Automatic mean-field VI through ppl and through NumPyro, on the same models.

ppl: ``vi.auto_normal`` and ``vi.fit`` on ``vi.elbo``; NumPyro: ``SVI`` with
``AutoNormal`` and ``Trace_ELBO``. Both use the same model, the same number of
steps, one sample per step and optax's Adam with the same step size (NumPyro
through ``numpyro.optim.optax_to_numpyro``); both guides start at the median
of 15 prior draws with scale 0.1. For each model, repetitions alternate between
the two systems; each repetition times

- *end to end*: building the guide and the first fit, compile included
  (fresh objects each time, so nothing is reused from the repetition before);
- *steady state*: a second fit with the same objects, over the step count
  (``vi.fit`` reuses its compiled chunks; ``SVI.run`` compiles again on every
  call, so NumPyro's steady state is also timed as ``svi.update`` in a jitted
  ``lax.scan`` compiled once, the fastest way to run it).

ppl runs its defaults: ``vi.elbo(...)`` (the guides' choices are all
reparameterized, so the Rao-Blackwellized default computes the plain bound,
the estimator of NumPyro's ``Trace_ELBO``) and ``vi.fit(...)`` with its
default chunks (calls of the compiled loop sized to about a quarter of a
second each, so the host wakes a few times a second; ``SVI.run`` runs without
a progress bar, ppl's is off too).

The ratios are ppl's time over NumPyro's (below 1: ppl is faster); the final
ELBOs (mean of the last tenth of the steps) are printed as a check that both
fit the same thing.

    python benchmarks/vi_numpyro.py [--quick] [--json PATH] [--repeats 5]
"""

from __future__ import annotations

import argparse
import statistics
import time

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
import optax
from numpyro.infer import SVI, Trace_ELBO
from numpyro.infer.autoguide import AutoNormal
from numpyro.optim import optax_to_numpyro

import ppl
from _report import print_table, write_rows
from ppl.inference import vi

half_cauchy = ppl.distribution(dist.HalfCauchy, "half_cauchy")

# ---------------------------------------------------------------------------
# Models, each written for both systems
# ---------------------------------------------------------------------------

SCHOOLS_Y = jnp.array([28.0, 8.0, -3.0, 7.0, -1.0, 1.0, 18.0, 12.0])
SCHOOLS_SIGMA = jnp.array([15.0, 10.0, 16.0, 11.0, 9.0, 11.0, 10.0, 18.0])


@ppl.gen
def schools(sigma):
    mu = ppl.normal(0.0, 5.0) @ "mu"
    tau = half_cauchy(5.0) @ "tau"
    theta = ppl.normal(jnp.zeros(8), 1.0) @ "theta"
    return ppl.normal(mu + tau * theta, sigma) @ "y"


def np_schools(sigma, y=None):
    mu = numpyro.sample("mu", dist.Normal(0.0, 5.0))
    tau = numpyro.sample("tau", dist.HalfCauchy(5.0))
    theta = numpyro.sample("theta", dist.Normal(jnp.zeros(8), 1.0).to_event(1))
    numpyro.sample("y", dist.Normal(mu + tau * theta, sigma).to_event(1), obs=y)


@ppl.gen
def regression(X):
    w = ppl.normal(jnp.zeros(X.shape[1]), 1.0) @ "w"
    b = ppl.normal(0.0, 1.0) @ "b"
    sigma = ppl.exponential(1.0) @ "sigma"
    return ppl.normal(X @ w + b, sigma) @ "y"


def np_regression(X, y=None):
    w = numpyro.sample("w", dist.Normal(jnp.zeros(X.shape[1]), 1.0).to_event(1))
    b = numpyro.sample("b", dist.Normal(0.0, 1.0))
    sigma = numpyro.sample("sigma", dist.Exponential(1.0))
    numpyro.sample("y", dist.Normal(X @ w + b, sigma).to_event(1), obs=y)


def _gp_factor(x, lengthscale, amplitude):
    k = amplitude**2 * jnp.exp(-0.5 * ((x[:, None] - x[None, :]) / lengthscale) ** 2)
    return jnp.linalg.cholesky(k + 1e-4 * jnp.eye(x.shape[0]))


@ppl.gen
def gp(x):
    lengthscale = ppl.lognormal(0.0, 1.0) @ "lengthscale"
    amplitude = ppl.lognormal(0.0, 1.0) @ "amplitude"
    z = ppl.normal(jnp.zeros(x.shape[0]), 1.0) @ "z"
    return ppl.normal(_gp_factor(x, lengthscale, amplitude) @ z, 0.3) @ "y"


def np_gp(x, y=None):
    lengthscale = numpyro.sample("lengthscale", dist.LogNormal(0.0, 1.0))
    amplitude = numpyro.sample("amplitude", dist.LogNormal(0.0, 1.0))
    z = numpyro.sample("z", dist.Normal(jnp.zeros(x.shape[0]), 1.0).to_event(1))
    f = _gp_factor(x, lengthscale, amplitude) @ z
    numpyro.sample("y", dist.Normal(f, 0.3).to_event(1), obs=y)


def problems(quick: bool):
    rng = np.random.default_rng(0)
    n, d = (100, 3) if quick else (300, 5)
    X = rng.normal(size=(n, d)).astype(np.float32)
    y = X @ rng.normal(size=d).astype(np.float32) + 0.3 + 0.5 * rng.normal(size=n)
    m = 50 if quick else 300
    x = np.linspace(0.0, 10.0, m).astype(np.float32)
    f = np.sin(x) + 0.3 * rng.normal(size=m)
    return [
        ("eight_schools", schools, np_schools, (SCHOOLS_SIGMA,), SCHOOLS_Y),
        (
            f"regression_n{n}",
            regression,
            np_regression,
            (jnp.asarray(X),),
            jnp.asarray(y, jnp.float32),
        ),
        (f"gp_latent{m}", gp, np_gp, (jnp.asarray(x),), jnp.asarray(f, jnp.float32)),
    ]


# ---------------------------------------------------------------------------
# One fit through each system
# ---------------------------------------------------------------------------


def ppl_run(model, args, y, steps, lr, seed, chunk=None):
    """End to end (guide and first fit), then a second fit: (seconds, seconds, final ELBO)."""
    start = time.perf_counter()
    obs = {"y": y}
    guide, guide_args = vi.auto_normal(model, obs, args, key=jax.random.key(seed))
    objective = vi.elbo(model, guide, obs)
    optimizer = optax.adam(lr)

    def fit():
        return vi.fit(
            objective,
            jax.random.key(seed),
            args,
            guide_args,
            optimizer=optimizer,
            steps=steps,
            progress=False,
            chunk=chunk,
        )

    result = fit()
    first = time.perf_counter() - start
    start = time.perf_counter()
    result = fit()
    second = time.perf_counter() - start
    return first, second, float(np.mean(result.history[-max(1, steps // 10) :])), second


def numpyro_run(model, args, y, steps, lr, seed):
    start = time.perf_counter()
    guide = AutoNormal(model)
    svi = SVI(model, guide, optax_to_numpyro(optax.adam(lr)), Trace_ELBO())
    result = svi.run(jax.random.PRNGKey(seed), steps, *args, y=y, progress_bar=False)
    jax.block_until_ready(result.losses)
    first = time.perf_counter() - start
    start = time.perf_counter()
    result = svi.run(jax.random.PRNGKey(seed), steps, *args, y=y, progress_bar=False)
    jax.block_until_ready(result.losses)
    second = time.perf_counter() - start
    # SVI.run compiles again on every call; its update in a jitted scan, compiled once,
    # is numpyro's best steady state
    state = svi.init(jax.random.PRNGKey(seed), *args, y=y)

    @jax.jit
    def scan(state):
        return jax.lax.scan(lambda s, _: svi.update(s, *args, y=y), state, None, length=steps)

    jax.block_until_ready(scan(state))
    start = time.perf_counter()
    jax.block_until_ready(scan(state))
    scanned = time.perf_counter() - start
    elbo = -float(np.mean(np.asarray(result.losses)[-max(1, steps // 10) :]))
    return first, second, elbo, scanned


def main(argv=None):
    assert __doc__ is not None
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument(
        "--quick", action="store_true", help="small problems, few repeats (a smoke test)"
    )
    p.add_argument("--json", metavar="PATH", help="write the results as JSON here")
    p.add_argument("--repeats", type=int, default=5, help="timed repetitions of each (default 5)")
    p.add_argument("--steps", type=int, default=2000, help="optimisation steps (default 2000)")
    p.add_argument(
        "--chunk",
        type=int,
        help="steps per call of vi.fit's compiled loop (default: fit's own choice)",
    )
    args = p.parse_args(argv)
    steps = 200 if args.quick else args.steps
    repeats = 2 if args.quick else args.repeats
    lr = 0.01
    rows, lines = [], []
    for name, model, np_model, model_args, y in problems(args.quick):
        times = {"ppl": [], "numpyro": []}
        elbos = {}
        for r in range(repeats):  # interleaved
            times["ppl"].append(ppl_run(model, model_args, y, steps, lr, r, args.chunk))
            times["numpyro"].append(numpyro_run(np_model, model_args, y, steps, lr, r))
        med = {s: [statistics.median(t[i] for t in times[s]) for i in (0, 1, 3)] for s in times}
        elbos = {s: statistics.median(t[2] for t in times[s]) for s in times}
        ratio_first = med["ppl"][0] / med["numpyro"][0]
        ratio_step = med["ppl"][1] / med["numpyro"][1]
        ratio_scan = med["ppl"][1] / med["numpyro"][2]
        config = dict(model=name, steps=steps, lr=lr, repeats=repeats, chunk=args.chunk)
        rows.append(
            {
                "benchmark": "vi_numpyro",
                "system": "numpyro",
                "config": config,
                "median_s": med["ppl"][0],
                "ratio": ratio_first,
                "numpyro_median_s": med["numpyro"][0],
                "steady_ppl_s": med["ppl"][1],
                "steady_numpyro_s": med["numpyro"][1],
                "steady_ratio": ratio_step,
                "steady_numpyro_scan_s": med["numpyro"][2],
                "steady_ratio_to_scan": ratio_scan,
                "per_step_us": {s: 1e6 * med[s][1] / steps for s in med},
                "numpyro_scan_per_step_us": 1e6 * med["numpyro"][2] / steps,
                "final_elbo": elbos,
            }
        )
        lines.append(
            f"{name:16s} end to end {med['ppl'][0]:7.2f}s vs {med['numpyro'][0]:7.2f}s "
            f"(ratio {ratio_first:5.2f})   per step {1e6 * med['ppl'][1] / steps:7.1f}us vs "
            f"{1e6 * med['numpyro'][1] / steps:7.1f}us (ratio {ratio_step:5.2f}; "
            f"jitted scan {1e6 * med['numpyro'][2] / steps:7.1f}us, ratio {ratio_scan:5.2f})   "
            f"final ELBO {elbos['ppl']:9.2f} vs {elbos['numpyro']:9.2f}"
        )
        print(lines[-1], flush=True)
    print()
    print_table(
        f"vi.auto_normal + vi.fit against NumPyro SVI + AutoNormal ({steps} steps, ppl/numpyro)",
        lines,
    )
    write_rows(args.json, rows)


if __name__ == "__main__":
    main()
