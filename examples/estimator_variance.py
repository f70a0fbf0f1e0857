"""Which gradient estimator? The same objective, four estimators, one table.

The ELBO of the cone model (examples/cone.py) with its mean-field family,
differentiated with reparameterization, REINFORCE, REINFORCE with a baseline,
and measure-valued derivatives: the strategy is a policy passed to the
objective, so the model and family are not edited. All four are unbiased (the
means agree); they differ in variance.

Then ``ppl.choose_strategies`` picks a strategy per guide choice by a short
pilot (gradient variance x compiled time per estimate), prints its table, and
the chosen policy, frozen, is the last row of the table.

``--plot PATH`` also draws how the variance behaves, on two small
problems at theta = 0 (20000 estimates per point):

* (a) ``x ~ normal(theta, 1)``, value ``(x - 1)^2 + c``: reparam, REINFORCE
  (no baseline, a fixed baseline 10, and the baseline ``E[value]`` that a
  learned baseline converges to) and MVD, against the offset ``c``;
* (b) ``b ~ flip(sigmoid(theta))``, then ``y ~ normal(2 b + theta, 1)``
  (reparam), value ``y^2 + c``: the same REINFORCE variants, enum and MVD
  at ``b``, against ``c``;
* (c) problem (b) at ``c = 10``, the average of ``n`` estimates
  (``ppl.E(f, n)``): REINFORCE, REINFORCE with leave-one-out baselines
  (``loo=True``) and enum, against ``n`` (4000 estimates per point).

The offset changes no gradient, so every estimator's mean stays put; the
script prints each one's mean and variance at ``c = 0`` and ``c = 20``.

    python examples/estimator_variance.py [--n 5000] [--pilot 256] [--plot PATH]
"""

from __future__ import annotations

import argparse
import os

import jax
import jax.numpy as jnp
import numpy as np

import ppl
from ppl.inference import vi

from cone import OBS, cone, mean_field


def main(argv=None):
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--n", type=int, default=5000, help="gradient estimates per estimator")
    parser.add_argument("--pilot", type=int, default=256, help="pilot estimates per strategy")
    parser.add_argument("--plot", metavar="PATH", help="also draw the variance figure to PATH")
    args = parser.parse_args(argv)

    guide_args = tuple(jnp.array(v) for v in (2.0, 0.5, -1.0, -1.0))
    # A baseline near the objective's typical value: the mean of a few estimates.
    plain = vi.elbo(cone, mean_field, OBS)
    keys = jax.random.split(jax.random.key(1), 256)
    baseline = float(jnp.mean(jax.vmap(lambda k: plain.estimate(k, (), guide_args))(keys)))
    estimators = {
        "reparam": None,
        "reinforce": {"x": ppl.reinforce, "y": ppl.reinforce},
        f"reinforce + baseline ({baseline:.1f})": {
            "x": ppl.reinforce(baseline=baseline),
            "y": ppl.reinforce(baseline=baseline),
        },
        "mvd": {"x": ppl.mvd, "y": ppl.mvd},
    }
    # The automatic choice: a pilot per guide choice (at ("guide", "x"), ("guide", "y")
    # in the objective's expectation), then the chosen policy frozen by guide address.
    pilot = ppl.choose_strategies(
        plain.expectation, jax.random.key(2), ((), guide_args), n=args.pilot
    )
    frozen = {_guide_address(a): s for a, s in pilot.policy.items()}
    chosen = ", ".join(f"{a}: {s!r}" for a, s in frozen.items()) or "as written"
    estimators[f"auto ({chosen})"] = frozen
    names = ["d/d mu1", "d/d mu2", "d/d s1", "d/d s2"]
    print(
        f"ELBO gradient at guide args {[float(v) for v in guide_args]}, {args.n} estimates each\n"
    )
    print(f"{'estimator':32s}" + "".join(f"{n:>22s}" for n in names))
    rows = {}
    for name, strategies in estimators.items():
        objective = vi.elbo(cone, mean_field, OBS, strategies=strategies)
        stats = vi.gradient_variance(objective, jax.random.key(0), (), guide_args, n=args.n)
        means, variances = np.asarray(stats.mean[1]), np.asarray(stats.variance[1])
        rows[name] = (means, variances)
        print(
            f"{name:32s}" + "".join(f"{m:10.3f} (var {v:8.2g})" for m, v in zip(means, variances))
        )
    print(f"\nppl.choose_strategies on the same ELBO ({args.pilot} pilot estimates each):\n")
    print(pilot)
    if args.plot:
        plot(sweep(), args.plot)
    return rows


sig = jax.nn.sigmoid
THETA = 0.0  # where every gradient of the figure is taken
OFFSETS = np.linspace(0.0, 20.0, 21)  # c, added to the value; no gradient depends on it
FIXED_BASELINE = 10.0
SAMPLE_COUNTS = (2, 4, 8, 16, 32, 64)  # n of ppl.E(f, n) in panel (c)


@ppl.expectation
def normal_value(theta, c, b):
    """(a): ``E[(x - 1)^2 + c]``, ``x ~ normal(theta, 1)``. ``b`` is unused: every
    program of the figure takes ``(theta, c, baseline)``."""
    x = ppl.normal(theta, 1.0) @ "x"
    return (x - 1.0) ** 2 + c


@ppl.expectation
def normal_value_oracle(theta, c, b):
    """(a) with REINFORCE at ``"x"`` and the traced baseline ``b``."""
    x = ppl.reinforce(ppl.normal, baseline=b)(theta, 1.0) @ "x"
    return (x - 1.0) ** 2 + c


@ppl.expectation
def flip_value(theta, c, b):
    """(b): ``E[y^2 + c]``, ``b ~ flip(sigmoid(theta))``, ``y ~ normal(2 b + theta, 1)``."""
    z = ppl.flip(sig(theta)) @ "b"
    y = ppl.normal(jnp.where(z, 2.0, 0.0) + theta, 1.0) @ "y"
    return y**2 + c


@ppl.expectation
def flip_value_oracle(theta, c, b):
    """(b) with REINFORCE at ``"b"`` and the traced baseline ``b``."""
    z = ppl.reinforce(ppl.flip, baseline=b)(sig(theta)) @ "b"
    y = ppl.normal(jnp.where(z, 2.0, 0.0) + theta, 1.0) @ "y"
    return y**2 + c


def _mean_value(problem: str, theta: float) -> float:
    """``E[value]`` at ``c = 0``, in closed form."""
    if problem == "normal":
        return (theta - 1.0) ** 2 + 1.0
    p = float(sig(theta))
    return p * ((2.0 + theta) ** 2 + 1.0) + (1.0 - p) * (theta**2 + 1.0)


def _gradients(f, offsets, baselines, n, seed=0):
    """``n`` estimates of ``d/dtheta`` at each offset (one compilation): shape ``(offsets, n)``."""
    keys = jax.random.split(jax.random.key(seed), n)

    def at(c, b):
        return jax.vmap(lambda k: f.grad_estimate(k, (THETA, c, b))[0])(keys)

    g = jax.jit(jax.vmap(at))(jnp.asarray(offsets), jnp.asarray(baselines))
    return np.asarray(g, np.float64)


def sweep(n: int = 20000, n_average: int = 4000) -> tuple[dict, dict]:
    """``(panels, means)``: the variances the figure shows, ``{panel: {estimator: (x
    values, variances)}}``, and each estimator's gradient mean and standard error
    at every offset, ``{(panel, estimator): (means, standard errors)}``."""
    fixed = ppl.reinforce(baseline=FIXED_BASELINE)
    problems = {
        "normal": (
            normal_value,
            normal_value_oracle,
            "x",
            {"reparam": ppl.reparam, "mvd": ppl.mvd},
        ),
        "flip": (flip_value, flip_value_oracle, "b", {"enum": ppl.enum, "mvd": ppl.mvd}),
    }
    panels, means = {}, {}
    for problem, (f, oracle, addr, others) in problems.items():
        oracle_b = _mean_value(problem, THETA) + OFFSETS
        zeros = np.zeros_like(OFFSETS)
        runs = {
            "reinforce": (ppl.adev(f, {addr: ppl.reinforce}), zeros),
            f"reinforce, baseline {FIXED_BASELINE:g}": (ppl.adev(f, {addr: fixed}), zeros),
            "reinforce, baseline E[value]": (oracle, oracle_b),
        }
        runs.update({name: (ppl.adev(f, {addr: s}), zeros) for name, s in others.items()})
        panels[problem] = {}
        for name, (g, baselines) in runs.items():
            grads = _gradients(g, OFFSETS, baselines, n)
            panels[problem][name] = (OFFSETS, grads.var(axis=1, ddof=1))
            means[problem, name] = grads.mean(axis=1), grads.std(axis=1, ddof=1) / np.sqrt(n)
    c = 10.0
    panels["average"] = {}
    for name, strategy, loo in (
        ("reinforce", ppl.reinforce, False),
        ("reinforce, leave-one-out", ppl.reinforce, True),
        ("enum", ppl.enum, False),
    ):
        f = ppl.adev(flip_value, {"b": strategy})
        variances = [
            _gradients(ppl.E(f, k, loo=loo), [c], [0.0], n_average)[0].var(ddof=1)
            for k in SAMPLE_COUNTS
        ]
        panels["average"][name] = (np.array(SAMPLE_COUNTS), np.array(variances))
    return panels, means


def plot(swept: tuple[dict, dict], path: str):
    """Draw :func:`sweep`'s variances (three panels) to ``path`` and print them."""
    panels, means = swept
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    colours = {
        "reparam": "C0",
        "reinforce": "C3",
        f"reinforce, baseline {FIXED_BASELINE:g}": "C1",
        "reinforce, baseline E[value]": "C4",
        "reinforce, leave-one-out": "C4",
        "enum": "C2",
        "mvd": "C9",
    }
    titles = {
        "normal": "(a) x ~ normal(θ, 1), value (x − 1)² + c",
        "flip": "(b) b ~ flip(σ(θ)), y ~ normal(2b + θ, 1),\nvalue y² + c",
        "average": "(c) problem (b) at c = 10, mean of n estimates",
    }
    fig, axes = plt.subplots(1, 3, figsize=(13, 4.2))
    for ax, (panel, title) in zip(axes, titles.items()):
        for name, (x, v) in panels[panel].items():
            style = "--" if name == "mvd" else "-"
            ax.plot(x, v, style, color=colours[name], label=name, lw=1.8)
        ax.set_yscale("log")
        ax.set_title(title, fontsize=10)
        ax.set_ylabel("variance of d/dθ")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8)
    for ax in axes[:2]:
        ax.set_xlabel("offset c added to the value (the gradient does not change)")
    axes[2].set_xscale("log", base=2)
    axes[2].set_xlabel("n (samples averaged per estimate)")
    fig.tight_layout()
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    fig.savefig(path, dpi=100)
    print(f"\nvariance figure saved to {path}")
    print(f"\n{'problem':8s} {'estimator':30s} {'mean at c=0':>16s} {'mean at c=20':>16s}", end="")
    print(f" {'var at c=0':>11s} {'var at c=20':>11s}")
    for (problem, name), (m, se) in means.items():
        v = panels[problem][name][1]
        print(
            f"{problem:8s} {name:30s} {m[0]:8.3f} ± {se[0]:.3f} {m[-1]:8.3f} ± {se[-1]:.3f}"
            f" {v[0]:11.3g} {v[-1]:11.3g}"
        )
    fixed = f"reinforce, baseline {FIXED_BASELINE:g}"
    for problem in ("normal", "flip"):
        x, v = panels[problem][fixed]
        i = int(np.argmin(v))
        print(f"{problem}: {fixed} has its lowest variance, {v[i]:.3g}, at c = {x[i]:g}")
    print(f"\nproblem (b) at c = 10, variance of the mean of n estimates, n = {SAMPLE_COUNTS}:")
    for name, (_, v) in panels["average"].items():
        print(f"  {name:26s}" + "".join(f"{x:9.3g}" for x in v))


def _guide_address(path: tuple):
    """The guide's own address of a choice at ``("guide", ...)`` in the objective."""
    return path[1] if len(path) == 2 else path[1:]


if __name__ == "__main__":
    main()
