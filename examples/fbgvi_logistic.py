"""FB-GVI against ADVI: Bayesian logistic regression, a Gaussian target and a
non-log-concave one.

Three ways to fit a full-rank Gaussian to the same posterior, all on the
unconstrained coordinates of ``vi.auto_multivariate_normal``:

* FB-GVI, deterministic: expectations over fixed base points;
* FB-GVI, stochastic: 8 fresh draws a step (Hessians by autodiff), a
  decreasing step size;
* ADVI: ``vi.elbo`` with the full-rank automatic guide, Adam on its parameters
  (one draw a step, a cosine-decayed learning rate, four times the steps);
* (not with ``--quick``) FB-GVI stochastic with Stein's estimator of the
  Hessian, from the gradients only, at half the step (at ``1/L`` its noise
  from 8 draws in 6 dimensions makes the iterates diverge).

Every iterate is scored by one ELBO, over the same 4096 base points for all
methods (a Gauss-Hermite product rule, exact for the Gaussian target), and
the KL to the posterior is ``log p(obs) - ELBO`` with ``log p(obs)`` exact
(Gaussian target), by quadrature (2-d target) or by importance sampling
from the best Gaussian found (logistic regression). For the Gaussian target
the table's final KL is the closed form, in float64 (the ELBOs are float32
sums near -200, which floor the curves' KL near 1e-4).

``--quick`` runs the Gaussian target only, at a small size.

    python examples/fbgvi_logistic.py [--quick] [--out /tmp/fbgvi_logistic.png]
"""

from __future__ import annotations

import argparse
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax

import ppl
from ppl._numerics import log_mean_exp
from ppl.inference import vi
from ppl.inference.vi.autoguide_mvn import tril_of

EVAL_POINTS = 4096


@ppl.gen
def logistic(x):
    w = ppl.normal(jnp.zeros(x.shape[1]), 1.0) @ "w"
    return ppl.flip(logits=x @ w) @ "y"


@ppl.gen
def linear(x):
    w = ppl.normal(jnp.zeros(x.shape[1]), 1.0) @ "w"
    return ppl.normal(x @ w, 0.5) @ "y"


@ppl.gen
def banana():
    w = ppl.normal(jnp.zeros(2), 1.0) @ "w"
    return ppl.normal(w[1] - w[0] ** 2, 0.5) @ "y"


def smoothness(potential, point):
    """The largest eigenvalue of the Hessian at ``point``: the step size is 1/L."""
    return float(jnp.linalg.eigvalsh(jax.jit(jax.hessian(potential))(point)).max())


def scored(potential, eps, weights):
    """The ELBO of iterates over the same base points (one iterate at a time:
    all of them at once would hold iterates x points x data in memory)."""

    def one(state):
        return vi.gaussian_elbo(potential, vi.GaussianState(*state), eps, weights)

    return jax.jit(lambda means, covs: jax.lax.map(one, (means, covs)))


def checkpoints(steps, n=60):
    """Iterations to score, log-spaced (0-based), the last one included."""
    return np.unique(np.geomspace(1, steps, n).astype(int)) - 1


def run_fbgvi(potential, start, steps, h, variant, key, hessian="autodiff"):
    """The trajectory (means and covariances) and seconds per step of one FB-GVI variant."""
    if variant == "stochastic":
        solver = vi.fbgvi(potential, h, variant="stochastic", num_points=8, hessian=hessian)

        def schedule(i):
            return h / (1.0 + i / 100.0)
    else:
        solver = vi.fbgvi(potential, h, num_points=256)

        def schedule(i):
            return h

    @jax.jit
    def run(state, keys):
        def body(s, inputs):
            i, k = inputs
            new, _ = solver.step(k, s, schedule(i))
            return new, (new.mean, new.cov)

        return jax.lax.scan(body, state, (jnp.arange(steps), keys))

    keys = jax.random.split(key, steps)
    state = solver.init(start.mean, start.cov)
    jax.block_until_ready(run(state, keys))
    t0 = time.perf_counter()
    _, (means, covs) = jax.block_until_ready(run(state, keys))
    return means, covs, (time.perf_counter() - t0) / steps


def run_advi(model, auto, obs, args, steps, lr, key):
    """ADVI's trajectory (means and covariances of the guide) and seconds per step."""
    objective = vi.elbo(model, auto.guide, obs)
    # cosine decay: Adam's noise floor shrinks as the step does
    init, step = vi.fitter(objective, optax.adam(optax.cosine_decay_schedule(lr, steps)))

    @jax.jit
    def run(state, keys):
        def body(s, k):
            new, _ = step(k, s)
            (params,) = new.arguments()[1]
            chol = tril_of(params["raw_tril"])
            return new, (params["loc"], chol @ chol.T)

        return jax.lax.scan(body, state, keys)

    keys = jax.random.split(key, steps)
    state = init(args, auto.guide_args)
    jax.block_until_ready(run(state, keys))
    t0 = time.perf_counter()
    _, (means, covs) = jax.block_until_ready(run(state, keys))
    return means, covs, (time.perf_counter() - t0) / steps


def compare(
    name, model, obs, args, steps, log_evidence, key, init="median", exact=None, stein=False
):
    """Fit the three methods; rows of (target, method, steps, ELBO, KL, ms/step)
    and the KL trajectories for the plot. With ``exact`` (the posterior's mean
    and covariance) the final KL is the closed form, in float64."""
    advi_lr = 0.02
    auto = vi.auto_multivariate_normal(model, obs, args, init=init, key=key)
    potential = auto.layout.potential
    start = vi.GaussianState(auto.guide_args[0]["loc"], auto.covariance())
    h = 1.0 / smoothness(potential, start.mean)
    # a product Gauss-Hermite rule where it fits: exact for the quadratic target
    score = scored(potential, *vi.base_points(start.mean.shape[0], EVAL_POINTS, jax.random.key(7)))
    runs = {
        "FB-GVI deterministic": run_fbgvi(potential, start, steps, h, "deterministic", key),
        "FB-GVI stochastic": run_fbgvi(potential, start, steps, h, "stochastic", key),
        "ADVI (full rank, Adam)": run_advi(model, auto, obs, args, 4 * steps, advi_lr, key),
    }
    if stein:  # Hessians from gradients by Stein's identity: noisier, so half the step
        runs["FB-GVI stochastic, Stein"] = run_fbgvi(
            potential, start, steps, h / 2, "stochastic", key, hessian="stein"
        )
    at = {m: checkpoints(len(means)) for m, (means, _, _) in runs.items()}
    elbos = {m: np.asarray(score(ms[at[m]], cs[at[m]])) for m, (ms, cs, _) in runs.items()}
    if log_evidence is None:  # importance sampling from the best Gaussian found
        best = max(elbos, key=lambda m: elbos[m][-1])
        means, covs, _ = runs[best]
        log_evidence = importance_log_evidence(potential, means[-1], covs[-1], key)
    rows, curves = [], {}
    floor = min(float(log_evidence - e[-1]) for e in elbos.values())
    for m, (means, covs, per_step) in runs.items():
        kl = log_evidence - elbos[m]
        final = float(kl[-1]) if exact is None else gaussian_kl(means[-1], covs[-1], *exact)
        near = np.nonzero(kl <= floor + 0.01)[0]  # within 0.01 nats of the best Gaussian found
        reach = int(at[m][near[0]]) + 1 if near.size else -1
        rows.append((name, m, len(means), float(elbos[m][-1]), final, 1e3 * per_step, reach))
        curves[m] = (at[m] + 1, kl, per_step)
    return rows, curves, log_evidence


def importance_log_evidence(potential, mean, cov, key, n=200_000):
    """``log p(obs)`` by importance sampling from a widened Gaussian fit."""

    @jax.jit
    def estimate(mean, cov):
        q = jax.random.multivariate_normal(key, mean, 1.5 * cov, (n,))
        log_q = jax.scipy.stats.multivariate_normal.logpdf(q, mean, 1.5 * cov)
        return log_mean_exp(-jax.vmap(potential)(q) - log_q)

    return float(estimate(mean, cov))


def gaussian_posterior(x, y):
    """The linear model's exact posterior (mean, covariance) and log evidence, in float64."""
    x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
    cov = np.linalg.inv(np.eye(x.shape[1]) + x.T @ x / 0.25)
    marginal = x @ x.T + 0.25 * np.eye(x.shape[0])
    _, log_det = np.linalg.slogdet(2 * np.pi * marginal)
    log_z = -0.5 * (log_det + y @ np.linalg.solve(marginal, y))
    return (cov @ x.T @ y / 0.25, cov), float(log_z)


def gaussian_kl(m, s, m2, s2):
    """KL(N(m, s) || N(m2, s2)), in float64."""
    m, s = np.asarray(m, np.float64), np.asarray(s, np.float64)
    p2 = np.linalg.inv(s2)
    d = m - m2
    logdets = np.linalg.slogdet(s2)[1] - np.linalg.slogdet(s)[1]
    return float(0.5 * (np.trace(p2 @ s) + d @ p2 @ d - len(m) + logdets))


def banana_log_evidence(y):
    grid = jnp.linspace(-6, 6, 801)
    w0, w1 = jnp.meshgrid(grid, grid, indexing="ij")
    log_p = (
        -0.5 * (w0**2 + w1**2)
        - jnp.log(2 * jnp.pi)
        + jax.scipy.stats.norm.logpdf(y, w1 - w0**2, 0.5)
    )
    return float(jax.scipy.special.logsumexp(log_p) + 2 * jnp.log(grid[1] - grid[0]))


def plot(curves_by_target, out):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = len(curves_by_target)
    fig, axes = plt.subplots(2, n, figsize=(5 * n, 7), squeeze=False)
    for j, (target, curves) in enumerate(curves_by_target.items()):
        for m, (it, kl, per_step) in curves.items():
            kl = np.maximum(kl, 1e-6)
            axes[0, j].loglog(it, kl, label=m)
            axes[1, j].loglog(it * per_step, kl, label=m)
        axes[0, j].set(title=target, xlabel="iteration", ylabel="KL(q || posterior)")
        axes[1, j].set(xlabel="wall time (s)", ylabel="KL(q || posterior)")
        axes[0, j].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)


def main(argv=None):
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small data, few steps")
    parser.add_argument("--out", default="/tmp/fbgvi_logistic.png", help="where the plot goes")
    opts = parser.parse_args(argv)
    n, d, steps = (60, 3, 100) if opts.quick else (300, 6, 1000)
    key = jax.random.key(0)
    kx, kw, ky, kl = jax.random.split(key, 4)
    x = jax.random.normal(kx, (n, d))
    w_true = jax.random.normal(kw, (d,))
    labels = jax.random.bernoulli(ky, jax.nn.sigmoid(x @ w_true))
    y_lin = x @ w_true + 0.5 * jax.random.normal(kl, (n,))

    rows, curves = [], {}
    exact, log_z = gaussian_posterior(x, y_lin)
    gaussian = ("Gaussian (linear regression)", linear, {"y": y_lin}, (x,), log_z, "median", exact)
    targets = [
        ("logistic regression", logistic, {"y": labels}, (x,), None, "median", None),
        gaussian,
        (
            "banana (not log-concave)",
            banana,
            {"y": 2.0},
            (),
            banana_log_evidence(2.0),
            "sample",
            None,
        ),
    ]
    for name, model, obs, args, log_z, init, exact in [gaussian] if opts.quick else targets:
        r, c, _ = compare(
            name, model, obs, args, steps, log_z, key, init=init, exact=exact, stein=not opts.quick
        )
        rows += r
        curves[name] = c

    print(
        f"\n{'target':30s} {'method':26s} {'iters':>6s} {'ELBO':>11s} {'KL':>10s} "
        f"{'ms/step':>8s} {'iters to best+0.01':>19s}"
    )
    for target, method, iters, elbo, kl, ms, reach in rows:
        to = str(reach) if reach > 0 else "not reached"
        print(f"{target:30s} {method:26s} {iters:6d} {elbo:11.4f} {kl:10.2e} {ms:8.3f} {to:>19s}")
    plot(curves, opts.out)
    print(f"\nplot: {opts.out}")
    return rows


if __name__ == "__main__":
    main()
