"""Tracking with a state-space model: SMC with the prior proposal versus a
proposal trained by variational inference.

An object moves along a line with a random-walk velocity; we see its position
through precise noisy measurements:

    v_t ~ normal(v_{t-1}, 0.5),   p_t ~ normal(p_{t-1} + v_t, 0.3),   y_t ~ normal(p_t, 0.1)

With sharp observations, proposing (p_t, v_t) from the dynamics (the prior)
wastes most particles. The proposal family

    v_t ~ normal(v + g_v (y_t - p - v), exp(s_v)),
    p_t ~ normal(p + v_t + g_p (y_t - p - v_t), exp(s_p))

has learned gains and scales. We fit it by maximising the ELBO of the
trajectory guide ``ppl.scan`` of the proposal step (``ppl.inference.vi``),
then use the same step as the SMC proposal, and compare effective sample sizes
and log marginal-likelihood estimates over several runs. A plot goes to
``--out`` (default ``out/``).

    python examples/hmm_smc.py [--quick] [--out out/]
"""

from __future__ import annotations

import argparse
import os
import time
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

import ppl
from ppl.inference import smc, vi

SV, SP, SY = 0.5, 0.3, 0.1


@ppl.gen
def step(carry, _):
    p, v = carry
    v = ppl.normal(v, SV) @ "v"
    p = ppl.normal(p + v, SP) @ "p"
    ppl.normal(p, SY) @ "y"
    return (p, v), None


def _propose(pv, theta, y):
    # Shared by the SMC proposal and the VI guide, so they are the same family.
    p, v = pv
    v1 = ppl.normal(v + theta[0] * (y - p - v), jnp.exp(theta[2])) @ "v"
    p1 = ppl.normal(p + v1 + theta[1] * (y - p - v1), jnp.exp(theta[3])) @ "p"
    return p1, v1


@ppl.gen
def proposal(pv, theta, y):
    return _propose(pv, theta, y)


@ppl.gen
def guide_step(carry, y):
    pv, theta = carry
    return (_propose(pv, theta, y), theta), None


INIT = (jnp.float32(0.0), jnp.float32(0.0))


def train_proposal(model, guide, ys, steps, key):
    # VI objectives take @gen functions: wrap both scans at one address.
    @ppl.gen
    def joint():
        return model(INIT, None) @ "track"

    @ppl.gen
    def trajectory_guide(theta, ys):
        return guide((INIT, theta), ys) @ "track"

    obs = ppl.ChoiceMap.d({("track", "y"): ys})
    theta0 = jnp.array(
        [0.5, 0.5, jnp.log(SV), jnp.log(SP)], jnp.float32
    )  # prior scales, middling gains
    objective = vi.elbo(joint, trajectory_guide, obs)
    result = vi.fit(
        objective,
        key,
        (),
        (theta0, ys),
        optimizer=optax.adam(5e-2),
        steps=steps,
        num_samples=8,
        progress=False,
        trainable=(
            False,
            (True, False),
        ),  # the gains and scales (theta0) only, not the observations ys
    )
    return result.guide_args[0], result.history


def run_smc(key, model, ys, n, theta=None):
    obs = ppl.ChoiceMap.d({"y": ys})
    kw: dict[str, Any] = (
        {}
        if theta is None
        else dict(proposal=proposal, proposal_args=lambda carry, x, o: (carry, theta, o["y"]))
    )
    particles, info = smc.particle_filter(key, model, (INIT, None), obs, n, **kw)
    return particles, info


def main(argv=None):
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument(
        "--quick", action="store_true", help="short series, short training (a smoke test)"
    )
    p.add_argument("--out", default="out", help="directory for the plot")
    p.add_argument("--particles", type=int, default=100)
    args = p.parse_args(argv)
    T, steps, runs = (25, 120, 5) if args.quick else (60, 1500, 20)

    model = ppl.scan(step, length=T)
    guide = ppl.scan(guide_step, length=T)
    truth = model.simulate(jax.random.key(42), (INIT, None))
    ys = truth.choices["y"]

    t = time.perf_counter()
    theta, history = train_proposal(model, guide, ys, steps, jax.random.key(1))
    print(
        f"trained proposal in {time.perf_counter() - t:.1f}s: "
        f"gains (v, p) = {np.round(theta[:2], 3).tolist()}, "
        f"scales (v, p) = {np.round(np.exp(theta[2:]), 3).tolist()}; "
        f"ELBO {history[0]:.1f} -> {np.mean(history[-20:]):.1f}"
    )

    results = {}
    for name, th in (("prior proposal", None), ("VI-trained proposal", theta)):

        def lml_and_ess(k):
            p, i = run_smc(k, model, ys, args.particles, th)
            return p.log_marginal_likelihood, i.ess

        go = jax.jit(jax.vmap(lml_and_ess))
        lml, ess = go(jax.random.split(jax.random.key(7), runs))
        particles, _ = jax.jit(lambda k: run_smc(k, model, ys, args.particles, th))(
            jax.random.key(8)
        )
        results[name] = (np.asarray(lml), np.asarray(ess), particles)
        print(
            f"{name:22s} log p(y) = {np.mean(lml):9.3f} +/- {np.std(lml):6.3f} "
            f"(sd over {runs} runs); "
            f"mean ESS per step {np.mean(ess):6.1f} of {args.particles}"
        )
    gain = np.mean(results["VI-trained proposal"][1]) / np.mean(results["prior proposal"][1])
    print(f"the trained proposal keeps {gain:.1f}x more effective particles per step")
    plot(args.out, truth, ys, history, results, args.particles)
    return results


def plot(out, truth, ys, history, results, n):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    os.makedirs(out, exist_ok=True)
    fig, axes = plt.subplots(1, 3, figsize=(15, 4))
    ax = axes[0]
    t = np.arange(len(ys))
    ax.plot(t, truth.choices["p"], "k-", label="true position")
    ax.plot(t, ys, "k.", label="observations")
    for (name, (_, _, particles)), c in zip(results.items(), ("tab:orange", "tab:blue")):
        w = np.asarray(particles.normalized_weights)
        ax.plot(
            t,
            w @ np.asarray(particles.traces.choices["p"]),
            color=c,
            label=f"smoothed mean, {name}",
        )
    ax.set(title="tracking", xlabel="t", ylabel="position")
    ax.legend(fontsize=8)
    ax = axes[1]
    for (name, (_, ess, _)), c in zip(results.items(), ("tab:orange", "tab:blue")):
        ax.plot(t, ess.mean(axis=0), color=c, label=name)
    ax.axhline(n, color="gray", lw=0.5)
    ax.set(title="ESS after each step (mean over runs)", xlabel="t", ylabel="ESS")
    ax.legend(fontsize=8)
    ax = axes[2]
    ax.plot(history, lw=0.5)
    ax.set(title="ELBO while training the proposal", xlabel="step")
    fig.tight_layout()
    path = os.path.join(out, "hmm_smc.png")
    fig.savefig(path, dpi=120)
    print(f"plot saved to {path}")


if __name__ == "__main__":
    main()
