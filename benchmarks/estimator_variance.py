"""Gradient variance of score-function ELBO estimators: ppl against Pyro.

Two models with discrete latents, each with a guide of the same dependency
structure: (a) three dependent flips, (b) a chain of ten flips. For each, the
variance of one-sample ELBO gradient estimates (summed over the guide's
parameters) at the same parameters, for

* ppl, plain REINFORCE: ``vi.elbo(..., rao_blackwell=False)`` (the behaviour
  before Rao-Blackwellization: every score times the whole bound, and the
  zero-mean ``d/dtheta log q`` kept);
* ppl, Rao-Blackwellized REINFORCE: ``vi.elbo(...)`` (the default);
* Pyro's ``TraceGraph_ELBO`` and ``Trace_ELBO`` on the same model and guide
  (when pyro is installed: ``pip install -e ".[bench]"``).

Every estimator's mean is also checked against the exact gradient (by
enumeration) within 5 standard errors. ``ratio`` is ppl's Rao-Blackwellized
variance over the row's: below 1, ppl's estimator has the lower variance.

    python benchmarks/estimator_variance.py [--quick] [--json PATH]
"""

from __future__ import annotations

import argparse
import itertools
import time

import jax
import jax.numpy as jnp
import numpy as np

import ppl
from _report import print_table, write_rows
from ppl.inference import vi

sig = jax.nn.sigmoid
Y = 0.4


def three_flips():
    """a -> b -> c -> y (observed); the guide is a chain a -> b -> c."""

    @ppl.gen
    def model():
        a = ppl.flip(0.3) @ "z0"
        b = ppl.flip(jnp.where(a, 0.8, 0.2)) @ "z1"
        c = ppl.flip(jnp.where(b, 0.7, 0.4)) @ "z2"
        ppl.normal(jnp.where(c, 1.0, -1.0), 1.0) @ "y"

    @ppl.gen
    def guide(th):
        a = ppl.flip(sig(th[0])) @ "z0"
        b = ppl.flip(sig(th[1] + jnp.where(a, 1.0, -1.0))) @ "z1"
        ppl.flip(sig(th[2] + jnp.where(b, 0.5, -0.5))) @ "z2"

    def p_prob(i, prev, where=jnp.where):
        return [where(prev, 0.3, 0.3), where(prev, 0.8, 0.2), where(prev, 0.7, 0.4)][i]

    def q_logit(i, prev, th, where=jnp.where):
        return th[i] + [where(prev, 0.0, 0.0), where(prev, 1.0, -1.0), where(prev, 0.5, -0.5)][i]

    return model, guide, p_prob, q_logit, jnp.array([0.2, -0.3, 0.4])


def chain(length=10):
    """z_0 -> z_1 -> ... -> z_{L-1} -> y (observed); the guide is the same chain."""

    @ppl.gen
    def model():
        z = False
        for i in range(length):
            z = ppl.flip(jnp.where(z, 0.7, 0.3)) @ f"z{i}"
        ppl.normal(jnp.where(z, 1.0, -1.0), 1.0) @ "y"

    @ppl.gen
    def guide(th):
        z = False
        for i in range(length):
            z = ppl.flip(sig(th[i] + jnp.where(z, 0.5, -0.5))) @ f"z{i}"

    def p_prob(i, prev, where=jnp.where):
        return where(prev, 0.7, 0.3)

    def q_logit(i, prev, th, where=jnp.where):
        return th[i] + where(prev, 0.5, -0.5)

    return model, guide, p_prob, q_logit, jnp.linspace(-0.5, 0.5, length)


def exact_grad(p_prob, q_logit, th):
    """The exact ELBO gradient by enumeration over every path of the chain."""
    n = th.shape[0]

    def elbo(th):
        total = 0.0
        for zs in itertools.product([False, True], repeat=n):
            logp, logq, prev = 0.0, 0.0, False
            for i, z in enumerate(zs):
                p, q = p_prob(i, prev), sig(q_logit(i, prev, th))
                logp = logp + jnp.log(p if z else 1 - p)
                logq = logq + jnp.log(q if z else 1 - q)
                prev = z
            logp = logp + jax.scipy.stats.norm.logpdf(Y, 1.0 if prev else -1.0, 1.0)
            total = total + jnp.exp(logq) * (logp - logq)
        return total

    return np.asarray(jax.grad(elbo)(th), np.float64)


def ppl_grads(model, guide, th, n, rao_blackwell):
    obj = vi.elbo(model, guide, {"y": Y}, rao_blackwell=rao_blackwell)
    run = jax.jit(jax.vmap(lambda k: obj.grad_estimate(k, (), (th,))[1][0]))
    keys = jax.random.split(jax.random.key(0), n)
    jax.block_until_ready(run(keys))
    start = time.perf_counter()
    g = jax.block_until_ready(run(keys))
    return np.asarray(g, np.float64), (time.perf_counter() - start) / n


def pyro_grads(p_prob, q_logit, th, n, elbo_name):
    """``n`` one-particle gradients of Pyro's ``elbo_name`` on the same model and guide.

    ``p_prob``/``q_logit`` are the functions ppl's programs use, written with
    ``where``; here they run on torch tensors, so Pyro's provenance tracking
    (``TraceGraph_ELBO`` reads dependence from the tensors' data flow) sees
    the same dependence."""
    import pyro  # pyright: ignore[reportMissingImports]
    import pyro.distributions as pdist  # pyright: ignore[reportMissingImports]
    import pyro.infer  # pyright: ignore[reportMissingImports]
    import torch  # pyright: ignore[reportMissingImports]

    length = th.shape[0]

    def model():
        prev = torch.tensor(0.0)
        for i in range(length):
            prev = pyro.sample(f"z{i}", pdist.Bernoulli(p_prob(i, prev > 0.5, torch.where)))
        loc = torch.where(prev > 0.5, 1.0, -1.0)
        pyro.sample("y", pdist.Normal(loc, 1.0), obs=torch.tensor(Y))

    def guide():
        theta = pyro.param("th", torch.tensor(np.array(th, np.float32)))
        prev = torch.tensor(0.0)
        for i in range(length):
            logit = q_logit(i, prev > 0.5, theta, torch.where)
            prev = pyro.sample(f"z{i}", pdist.Bernoulli(logits=logit))

    pyro.set_rng_seed(0)
    pyro.clear_param_store()
    elbo = getattr(pyro.infer, elbo_name)()
    elbo.loss_and_grads(model, guide)  # creates the parameter
    param = pyro.param("th")
    out = np.zeros((n, length))
    start = time.perf_counter()
    for i in range(n):
        param.grad = None
        elbo.loss_and_grads(model, guide)
        assert param.grad is not None
        out[i] = -param.grad.detach().numpy()  # the loss is -ELBO
    return out, (time.perf_counter() - start) / n


def check_unbiased(g, exact, what):
    se = g.std(axis=0, ddof=1) / np.sqrt(g.shape[0])
    err = np.abs(g.mean(axis=0) - exact)
    if np.any(err > 5 * se + 1e-4):
        raise AssertionError(f"{what}: mean {g.mean(axis=0)} vs exact {exact} (se {se})")


def main():
    assert __doc__ is not None
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer samples")
    parser.add_argument("--json", metavar="PATH", help="also write the results as JSON")
    opts = parser.parse_args()
    n_ppl, n_pyro = (20000, 1000) if opts.quick else (100000, 5000)
    try:
        import pyro  # noqa: F401  # pyright: ignore[reportMissingImports]

        have_pyro = True
    except ImportError:
        have_pyro = False
        print("pyro is not installed (pip install -e '.[bench]'): ppl rows only")
    rows = []
    for config, make in [("three dependent flips", three_flips), ("chain of 10 flips", chain)]:
        model, guide, p_prob, q_logit, th = make()
        exact = exact_grad(p_prob, q_logit, th)
        results = {}
        for system, rb in [("ppl reinforce (rao_blackwell=False)", False), ("ppl reinforce", True)]:
            results[system] = ppl_grads(model, guide, th, n_ppl, rb) + (n_ppl,)
        if have_pyro:
            for name in ("TraceGraph_ELBO", "Trace_ELBO"):
                results[f"pyro {name}"] = pyro_grads(p_prob, q_logit, th, n_pyro, name) + (n_pyro,)
        ours = float(results["ppl reinforce"][0].var(axis=0).sum())
        for system, (g, seconds, n) in results.items():
            check_unbiased(g, exact, f"{config}, {system}")
            variance = float(g.var(axis=0).sum())
            rows.append(
                {
                    "benchmark": "estimator_variance",
                    "system": system,
                    "config": config,
                    "median_s": seconds,
                    "ratio": ours / variance,
                    "variance": variance,
                    "samples": n,
                }
            )
    print_table(
        f"{'model':<22} {'estimator':<36} {'grad variance':>14} {'ppl RB / this':>14} "
        f"{'samples':>8}",
        (
            f"{r['config']:<22} {r['system']:<36} {r['variance']:>14.4f} {r['ratio']:>14.3f} "
            f"{r['samples']:>8}"
            for r in rows
        ),
    )
    write_rows(opts.json, rows)


if __name__ == "__main__":
    main()
