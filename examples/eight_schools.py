"""Eight schools: a funnel, the diagnostics that find it, and the reparameterization that fixes it.

Rubin's eight schools (1981) are eight estimates ``y_j`` of the effect of a
coaching programme on test scores, each with a known standard error
``sigma_j``. The hierarchical model pools them towards a common mean ``mu``
by an amount set by the spread ``tau`` between schools:

    mu ~ normal(0, 5),   tau ~ half_cauchy(5),
    theta_j ~ normal(mu, tau)              (j = 1..8)
    y_j ~ normal(theta_j, sigma_j).

**Centred parameterization.** Written as above, the sampler moves ``theta``
directly. When ``tau`` is small the ``theta_j`` must all sit within ``tau``
of ``mu``, so the posterior is a *funnel*: wide at large ``tau``, a narrow
neck near ``tau = 0``. No single step size of Hamiltonian Monte Carlo fits
both ends. In the neck the leapfrog integrator's energy error blows up,
and NUTS reports those transitions as *divergent*. The chains stop at the
mouth of the neck, stick there for a while and then fall back, so the
draws under-represent small ``tau`` and mix slowly.
``ppl.inference.run_mcmc`` notices this in several ways at once:

* ``result.divergences`` counts divergent transitions per chain, and
  ``result.stats["diverging"]`` flags each draw (the funnel plot shows where
  they sit: at the neck);
* a :class:`ppl.inference.SamplerWarning` for the divergences, another for
  R-hat above 1.01 (the chains disagree about ``tau``) and one for E-BFMI
  below 0.3 (the momentum resampling cannot move through the energy levels
  of the funnel);
* ``result.print_summary()``: a small bulk and tail ESS for ``tau`` and a
  large MCSE.

**Non-centred parameterization.** Sample standardized effects instead and
compute ``theta`` from them:

    eta_j ~ normal(0, 1),   theta_j = mu + tau * eta_j.

This is the same model (the same joint law of ``mu``, ``tau``, ``theta``,
``y``), but a priori the sampler's coordinates are independent. With only
eight noisy schools the data say little about each ``theta_j``, so the
posterior of ``(mu, tau, eta)`` is close to that prior geometry and NUTS
explores it with no divergences, or a handful at the very tip of the neck
among thousands of draws. ``ppl.deterministic(...) @ "theta"``
records ``theta`` with every draw, so both runs report it.

**How we know which one is right.** Here ``theta`` integrates out exactly:
``y_j | mu, tau ~ normal(mu, sqrt(sigma_j^2 + tau^2))``. So the posterior
``p(mu, tau | y)`` is known up to a constant on the plane, and we compute
``E[mu | y]``, ``E[tau | y]`` and the quantiles of ``tau`` by quadrature on a
grid. The non-centred means agree with it within a few Monte Carlo standard
errors. The centred run puts too little mass at small ``tau``: with long
chains, almost none below ``tau = 0.5``, where a tenth of the posterior lies.

**Variational inference.** ``vi.auto_normal`` builds a mean-field normal
guide in unconstrained coordinates (``log tau`` for the positive scale) from
the model, and ``vi.auto_multivariate_normal`` a full-rank one; ``vi.fit``
maximises the ELBO (Adam with a cosine-decayed step size, so that the
final parameters are not left jittering). Both guides get ``mu`` about
right, and both make ``tau`` too small and too narrow. The full-rank guide
gains little, because in the non-centred coordinates the posterior has
little linear correlation. What neither can represent is the shape of the
marginal of ``log tau``, which is skewed, with a long tail towards the neck.
A normal in ``log tau`` cannot have that shape, whatever its covariance.

**Posterior predictive checks.** ``ppl.inference.predictive`` draws
replicated data ``y_rep`` for the same eight schools from the NUTS
posterior (and from the guide). Each observed ``y_j`` is shown against its
90% predictive interval, and a posterior predictive p-value is computed for
the largest effect, ``max_j y_j``. The model has no trouble reproducing
school A's 28 points.

    python examples/eight_schools.py [--quick] [--out out/]

Plots: ``<out>/eight_schools_funnel.png`` (log tau against theta_0, divergent
draws in red), ``<out>/eight_schools_tau.png`` (the posterior of log tau:
centred, non-centred, the guides and the quadrature reference) and
``<out>/eight_schools_ppc.png`` (observed effects against predictive
intervals).
"""

from __future__ import annotations

import argparse
import os
import time
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import optax

import ppl
from ppl.inference import SamplerWarning, nuts, predictive, run_mcmc, vi

SCHOOLS = "ABCDEFGH"
Y = np.array([28.0, 8.0, -3.0, 7.0, -1.0, 1.0, 18.0, 12.0])
SIGMA = np.array([15.0, 10.0, 16.0, 11.0, 9.0, 11.0, 10.0, 18.0])
MU_SCALE, TAU_SCALE = 5.0, 5.0


# ---------------------------------------------------------------------------
# The two parameterizations
# ---------------------------------------------------------------------------


@ppl.gen
def centred(sigma):
    mu = ppl.normal(0.0, MU_SCALE) @ "mu"
    tau = ppl.half_cauchy(TAU_SCALE) @ "tau"
    theta = ppl.normal(jnp.full(sigma.shape, mu), tau) @ "theta"
    return ppl.normal(theta, sigma) @ "y"


@ppl.gen
def non_centred(sigma):
    mu = ppl.normal(0.0, MU_SCALE) @ "mu"
    tau = ppl.half_cauchy(TAU_SCALE) @ "tau"
    eta = ppl.normal(jnp.zeros(sigma.shape), 1.0) @ "eta"
    theta = ppl.deterministic(mu + tau * eta) @ "theta"
    return ppl.normal(theta, sigma) @ "y"


# ---------------------------------------------------------------------------
# The reference: theta integrated out, (mu, tau) on a grid
# ---------------------------------------------------------------------------


def quadrature_reference(tau_max=60.0, n_tau=3000, mu_range=(-30.0, 40.0), n_mu=1401):
    """``E[mu | y]``, ``E[tau | y]`` and the marginal density and CDF of tau on a grid.

    Given ``(mu, tau)``, each ``y_j`` is ``normal(mu, sqrt(sigma_j^2 + tau^2))``,
    so ``log p(mu, tau, y)`` has a closed form. It is evaluated on a grid of
    ``tau`` in ``[0, tau_max]`` (the density is finite at ``tau = 0``) and
    ``mu`` in ``mu_range`` and integrated with the trapezoidal rule in float64.
    The mass beyond the grid is negligible: the posterior of ``tau`` falls off
    like ``tau^-10`` and that of ``mu`` like a normal of sd about 3.
    """
    tau = np.linspace(0.0, tau_max, n_tau + 1)
    mu = np.linspace(mu_range[0], mu_range[1], n_mu)
    t, m = tau[:, None], mu[None, :]
    log_p = -0.5 * (m / MU_SCALE) ** 2 - np.log1p((t / TAU_SCALE) ** 2)
    for y, s in zip(Y, SIGMA):
        var = s**2 + t**2
        log_p = log_p - 0.5 * np.log(var) - 0.5 * (y - m) ** 2 / var
    p = np.exp(log_p - log_p.max())
    z = np.trapezoid(np.trapezoid(p, mu, axis=1), tau)
    p_tau = np.trapezoid(p, mu, axis=1) / z  # the marginal density of tau
    p_mu = np.trapezoid(p, tau, axis=0) / z  # and of mu
    cdf = np.concatenate([[0.0], np.cumsum(0.5 * (p_tau[1:] + p_tau[:-1]) * np.diff(tau))])
    return dict(
        mu_mean=float(np.trapezoid(p_mu * mu, mu)),
        tau_mean=float(np.trapezoid(p_tau * tau, tau)),
        tau_grid=tau,
        tau_density=p_tau,
        tau_cdf=cdf,
    )


def tau_quantile(ref, q):
    return float(np.interp(q, ref["tau_cdf"], ref["tau_grid"]))


# ---------------------------------------------------------------------------
# NUTS, with its warnings caught and shown
# ---------------------------------------------------------------------------


def run_nuts(name, model, key, kernel, n_warmup, n_samples, n_chains):
    """Run NUTS and print everything that says whether to trust the draws."""
    print(f"\n== NUTS on the {name} model")
    t = time.perf_counter()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", SamplerWarning)
        result = run_mcmc(
            key,
            kernel,
            model,
            (jnp.asarray(SIGMA),),
            {"y": jnp.asarray(Y)},
            n_samples=n_samples,
            n_warmup=n_warmup,
            n_chains=n_chains,
            progress=False,
        )
    print(
        f"{n_chains} chains x {n_samples} draws ({time.perf_counter() - t:.1f}s, compile included)"
    )
    result.print_summary()
    sampler_warnings = [w for w in caught if issubclass(w.category, SamplerWarning)]
    for w in caught:  # anything else is shown as it would have been
        if not issubclass(w.category, SamplerWarning):
            warnings.showwarning(w.message, w.category, w.filename, w.lineno)
    print(f"divergent transitions per chain: {result.divergences.tolist()}")
    stats = result.stats
    print(
        "per-draw statistics (chains, draws): "
        + ", ".join(f"{k} {tuple(np.shape(v))}" for k, v in sorted(stats.items()))
    )
    steps = ", ".join(f"{x:.3f}" for x in np.mean(stats["step_size"], axis=1))
    leapfrogs, depth = float(np.mean(stats["num_steps"])), int(np.max(stats["tree_depth"]))
    print(
        f"  step size per chain [{steps}], mean leapfrog steps per draw {leapfrogs:.1f}, "
        f"max tree depth {depth}"
    )
    if sampler_warnings:
        print(f"SamplerWarnings ({len(sampler_warnings)}):")
        for w in sampler_warnings:
            print(f"  - {w.message}")
    else:
        print("SamplerWarnings: none")
    return result, sampler_warnings


TAU_QUANTILES = (0.01, 0.05, 0.25, 0.5)


def _tau_row(label, q_log_tau, below):
    cells = " ".join(f"{q:6.2f}" for q in q_log_tau)
    return f"  {label:<26} {cells}   {below:7.3f}"


def compare_tau(centred_result, non_centred_result, ref):
    """Quantiles of log tau and the mass below tau = 0.5, against the quadrature."""
    print("\n== The posterior of tau: does each run reach the neck of the funnel?")
    heads = " ".join(f"{f'{q:.0%}':>6}" for q in TAU_QUANTILES)
    print(f"  {'':<26} {'quantiles of log tau':^27}   P(tau < 0.5)")
    print(f"  {'':<26} {heads}")
    exact = [np.log(tau_quantile(ref, q)) for q in TAU_QUANTILES]
    rows = {"quadrature (exact)": float(np.interp(0.5, ref["tau_grid"], ref["tau_cdf"]))}
    print(_tau_row("quadrature (exact)", exact, rows["quadrature (exact)"]))
    for label, result in (
        ("NUTS, centred", centred_result),
        ("NUTS, non-centred", non_centred_result),
    ):
        tau = np.asarray(result.samples["tau"]).ravel()
        rows[label] = float(np.mean(tau < 0.5))
        print(_tau_row(label, np.quantile(np.log(tau), TAU_QUANTILES), rows[label]))
    print(
        f"  the centred chains put {rows['NUTS, centred']:.1%} of their draws below tau = 0.5, "
        f"the non-centred {rows['NUTS, non-centred']:.1%}, "
        f"the posterior {rows['quadrature (exact)']:.1%}"
    )
    return rows


def check_against_quadrature(result, ref):
    """The non-centred NUTS means of mu and tau against the quadrature, in MCSEs."""
    print("\n== Check: non-centred NUTS against the quadrature reference")
    summary = result.summary()
    z_scores = {}
    for addr, exact in (("mu", ref["mu_mean"]), ("tau", ref["tau_mean"])):
        mean, mcse = float(summary[addr]["mean"]), float(summary[addr]["mcse"])
        z_scores[addr] = (mean - exact) / mcse
        verdict = "ok" if abs(z_scores[addr]) < 5 else "FAIL"
        print(
            f"  E[{addr} | y]: NUTS {mean:.3f} +- {mcse:.3f} (MCSE), quadrature {exact:.3f}; "
            f"{z_scores[addr]:+.2f} MCSE  [{verdict}]"
        )
    return z_scores


# ---------------------------------------------------------------------------
# Automatic guides
# ---------------------------------------------------------------------------


def fit_guides(key, steps, nuts_result, n_draws, families):
    """Fit each automatic guide with the ELBO; draw from it, with replicated data."""
    print(f"\n== Variational inference on the non-centred model ({steps} steps of Adam)")
    args, obs = (jnp.asarray(SIGMA),), {"y": jnp.asarray(Y)}
    summary = nuts_result.summary()
    head = f"  {'':<26} {'mean mu':>8} {'sd mu':>7} {'mean tau':>9} {'sd tau':>7} {'ELBO':>8}"
    print(head)
    row = "  {:<26} {:8.2f} {:7.2f} {:9.2f} {:7.2f} {}"
    mu_s, tau_s = summary["mu"], summary["tau"]
    print(
        row.format(
            "NUTS", *(float(x) for x in (mu_s["mean"], mu_s["sd"], tau_s["mean"], tau_s["sd"])), ""
        )
    )
    fitted = {}
    for i, name in enumerate(families):
        k_fit, k_draw = jax.random.split(jax.random.fold_in(key, i))
        auto = getattr(vi, name)(non_centred, obs, args)
        result = vi.fit(
            vi.elbo(non_centred, auto.guide, obs),
            k_fit,
            args,
            auto.guide_args,
            optimizer=optax.adam(optax.cosine_decay_schedule(0.05, steps)),
            steps=steps,
            progress=False,
        )
        # Draws of the guide's latents (mu, tau, eta), pushed through the model
        # for the deterministic theta and a replicated y.
        posterior = (auto.guide, result.guide_args)
        draws = predictive(k_draw, non_centred, args, posterior=posterior, n=n_draws)
        mu, tau = np.asarray(draws["mu"]), np.asarray(draws["tau"])
        # one-sample ELBO estimates are noisy: average the last tenth of the run
        elbo = float(np.mean(np.asarray(result.history)[-max(steps // 10, 1) :]))
        print(row.format(name, mu.mean(), mu.std(), tau.mean(), tau.std(), f"{elbo:8.2f}"))
        fitted[name] = dict(mu=mu, tau=tau, y=np.asarray(draws["y"]), elbo=elbo)
    print(
        "  the guides find mu but make tau too small and too narrow: a normal in log tau cannot "
        "take the skewed shape of its posterior"
    )
    return fitted


# ---------------------------------------------------------------------------
# Posterior predictive checks
# ---------------------------------------------------------------------------


def posterior_predictive(key, nuts_result, y_guide):
    """Replicated y from the NUTS draws (and the guide's): intervals and p-values."""
    print("\n== Posterior predictive check: replicated effects for the same eight schools")
    args = (jnp.asarray(SIGMA),)
    draws = predictive(key, non_centred, args, posterior=nuts_result, addresses="y")
    y_nuts = np.asarray(draws["y"])  # (chains * draws, 8)
    print(
        f"  {y_nuts.shape[0]} replicated data sets from NUTS, {y_guide.shape[0]} from auto_normal"
    )
    heads = f"{'NUTS 90% interval':>17}   {'guide 90% interval':>18}"
    print(f"  {'school':<7} {'y':>4} {'sigma':>6}   {heads}")
    for j in range(len(Y)):
        lo, hi = np.quantile(y_nuts[:, j], [0.05, 0.95])
        glo, ghi = np.quantile(y_guide[:, j], [0.05, 0.95])
        print(
            f"  {SCHOOLS[j]:<7} {Y[j]:4.0f} {SIGMA[j]:6.0f}   [{lo:6.1f}, {hi:6.1f}]"
            f"{'':5}[{glo:6.1f}, {ghi:6.1f}]"
        )
    p_values = {}
    for label, y_rep in (("NUTS", y_nuts), ("auto_normal", y_guide)):
        for stat_name, stat in (("max", np.max), ("sd", np.std)):
            p_values[(label, stat_name)] = float(np.mean(stat(y_rep, axis=-1) >= stat(Y)))
        print(
            f"  {label}: posterior predictive p-value of max_j y_j (observed {Y.max():.0f}) "
            f"{p_values[(label, 'max')]:.2f}, of sd_j y_j (observed {Y.std():.1f}) "
            f"{p_values[(label, 'sd')]:.2f}"
        )
    print("  neither is extreme: the model reproduces a school like A by chance")
    return y_nuts, p_values


# ---------------------------------------------------------------------------
# Plots
# ---------------------------------------------------------------------------


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_funnel(out, centred_result, non_centred_result):
    plt = _pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2), sharey=True)
    for ax, (label, result) in zip(
        axes, [("centred", centred_result), ("non-centred", non_centred_result)]
    ):
        theta0 = np.asarray(result.samples["theta"])[..., 0].ravel()
        log_tau = np.log(np.asarray(result.samples["tau"])).ravel()
        div = np.asarray(result.stats["diverging"]).ravel().astype(bool)
        ax.scatter(theta0[~div], log_tau[~div], s=4, alpha=0.3, color="tab:blue", label="draws")
        ax.scatter(
            theta0[div], log_tau[div], s=14, color="tab:red", label=f"divergent ({div.sum()})"
        )
        ax.set_title(f"{label}: {div.sum()} divergent transitions")
        ax.set_xlabel("theta[0] (school A)")
        ax.legend(loc="lower right")
    axes[0].set_ylabel("log tau")
    fig.tight_layout()
    return _save(fig, out, "eight_schools_funnel.png")


GUIDE_COLORS = ("tab:green", "tab:olive")


def plot_tau(out, centred_result, non_centred_result, fitted, ref):
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 4.2))
    bins = np.linspace(-6, 4, 61).tolist()
    for label, tau, color in [
        ("NUTS, centred", centred_result.samples["tau"], "tab:red"),
        ("NUTS, non-centred", non_centred_result.samples["tau"], "tab:blue"),
        *[(name, fit["tau"], color) for (name, fit), color in zip(fitted.items(), GUIDE_COLORS)],
    ]:
        ax.hist(
            np.log(np.asarray(tau).ravel()),
            bins=bins,
            density=True,
            histtype="step",
            lw=1.5,
            color=color,
            label=label,
        )
    # density of log tau = tau * p(tau)
    grid = ref["tau_grid"][1:]  # from the first point above tau = 0
    ax.plot(np.log(grid), grid * ref["tau_density"][1:], "k--", lw=1.5, label="quadrature (exact)")
    ax.set_xlim(bins[0], bins[-1])
    ax.set_xlabel("log tau")
    ax.set_ylabel("posterior density")
    ax.set_title("the centred chains miss the neck of the funnel (small tau)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return _save(fig, out, "eight_schools_tau.png")


def plot_ppc(out, y_nuts, y_vi):
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 4.2))
    idx = np.arange(len(Y))
    for shift, (label, y_rep, color) in zip(
        (-0.12, 0.12), [("NUTS", y_nuts, "tab:blue"), ("auto_normal", y_vi, "tab:green")]
    ):
        lo, med, hi = np.quantile(y_rep, [0.05, 0.5, 0.95], axis=0)
        ax.vlines(
            idx + shift, lo, hi, color=color, lw=3, alpha=0.6, label=f"90% predictive, {label}"
        )
        ax.plot(idx + shift, med, "_", color=color, ms=12)
    ax.plot(idx, Y, "ko", label="observed y")
    ax.set_xticks(idx, list(SCHOOLS))
    ax.set_xlabel("school")
    ax.set_ylabel("estimated effect")
    ax.set_title("observed effects against posterior predictive intervals")
    ax.set_ylim(-40, 55)
    ax.legend(loc="upper left", ncol=3, fontsize=8)
    fig.tight_layout()
    return _save(fig, out, "eight_schools_ppc.png")


def _save(fig, out, name):
    os.makedirs(out, exist_ok=True)
    path = os.path.join(out, name)
    fig.savefig(path, dpi=100)
    fig.clf()
    return path


def arviz_summary(result):
    """``arviz.summary`` of the non-centred run, if arviz (an optional extra) is installed."""
    try:
        import arviz
    except ImportError:
        print("\n(arviz is not installed: pip install 'ppl[arviz]' for result.to_arviz())")
        return None
    print("\n== arviz.summary(result.to_arviz()) for the non-centred run")
    table = arviz.summary(result.to_arviz(), var_names=["mu", "tau"])
    print(table.to_string())
    return table


# ---------------------------------------------------------------------------


def main(argv=None):
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--quick", action="store_true", help="fewer draws and steps (a smoke test)")
    p.add_argument("--chains", type=int, default=4)
    p.add_argument("--out", default="out", help="directory for the plots")
    args = p.parse_args(argv)
    if args.quick:
        n_warmup, n_samples, vi_steps, n_vi_draws = 500, 500, 1000, 2000
    else:
        n_warmup, n_samples, vi_steps, n_vi_draws = 1000, 2000, 4000, 8000
    print("eight schools: y =", Y.astype(int).tolist(), " sigma =", SIGMA.astype(int).tolist())

    # One kernel object for both runs: a kernel holds only its settings.
    kernel = nuts()
    res_c, warn_c = run_nuts(
        "centred", centred, jax.random.key(0), kernel, n_warmup, n_samples, args.chains
    )
    res_n, warn_n = run_nuts(
        "non-centred", non_centred, jax.random.key(1), kernel, n_warmup, n_samples, args.chains
    )

    ref = quadrature_reference()
    tau_cmp = compare_tau(res_c, res_n, ref)
    z_scores = check_against_quadrature(res_n, ref)

    # --quick fits only the mean-field guide: each guide compiles its own program
    families = ("auto_normal",) if args.quick else ("auto_normal", "auto_multivariate_normal")
    fitted = fit_guides(jax.random.key(2), vi_steps, res_n, n_vi_draws, families)
    y_nuts, p_values = posterior_predictive(jax.random.key(3), res_n, fitted["auto_normal"]["y"])

    plots = [
        plot_funnel(args.out, res_c, res_n),
        plot_tau(args.out, res_c, res_n, fitted, ref),
        plot_ppc(args.out, y_nuts, fitted["auto_normal"]["y"]),
    ]
    print("\nplots: " + ", ".join(plots))
    arviz_summary(res_n)
    return dict(
        centred=res_c,
        non_centred=res_n,
        centred_warnings=warn_c,
        non_centred_warnings=warn_n,
        reference=ref,
        z_scores=z_scores,
        tau=tau_cmp,
        guides=fitted,
        p_values=p_values,
        plots=plots,
    )


if __name__ == "__main__":
    main()
