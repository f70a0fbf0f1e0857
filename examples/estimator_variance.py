"""Which gradient estimator? The same objective, four estimators, one table.

The ELBO of the cone model (examples/cone.py) with its mean-field family,
differentiated with reparameterization, REINFORCE, REINFORCE with a baseline,
and measure-valued derivatives: the strategy is a policy passed to the
objective, so the model and family are not edited. All four are unbiased (the
means agree); they differ in variance.

Then ``ppl.choose_strategies`` picks a strategy per guide choice by a short
pilot (gradient variance x compiled time per estimate), prints its table, and
the chosen policy, frozen, is the last row of the table.

    python examples/estimator_variance.py [--n 5000] [--pilot 256]
"""

from __future__ import annotations

import argparse

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
    return rows


def _guide_address(path: tuple):
    """The guide's own address of a choice at ``("guide", ...)`` in the objective."""
    return path[1] if len(path) == 2 else path[1:]


if __name__ == "__main__":
    main()
