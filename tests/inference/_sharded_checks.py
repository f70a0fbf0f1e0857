"""The multi-device checks of test_sharded.py (importance sampling, SMC, MCMC and
VI's fit), run as a script in a subprocess with
XLA_FLAGS=--xla_force_host_platform_device_count=8 (the test process has one
device, and the device count is fixed when JAX starts). Each algorithm runs once
with ``mesh=None`` (one device) and once on an 8-device mesh from the same keys;
the script prints one JSON object of differences, layouts, compile counts and
error messages, which the tests compare."""

from __future__ import annotations

import json
import logging
import re
import sys
import time
from collections import Counter
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import numpyro.distributions as nd
import optax

import ppl
from ppl.inference import importance, mcmc, run_mcmc, sir, smc, vi
from ppl.inference._sharding import particle_mesh, replicate
from ppl.inference.vi._trainable import split
from ppl.inference.vi.fit_step import advance, make_spec, start

from _models import NN_DATA, normal_normal

N_DEVICES = 8


class _Compiles(logging.Handler):
    """Counts jax's "Compiling jit(name)" log lines (with ``jax_log_compiles``)."""

    def __init__(self):
        super().__init__()
        self.counts = Counter()

    def emit(self, record):
        m = re.match(r"Compiling jit\((\w+)\)", record.getMessage())
        if m:
            self.counts[m.group(1)] += 1

    def during(self, fn):
        before = Counter(self.counts)
        out = fn()
        return out, dict(self.counts - before)


def _diff(a, b) -> float:
    leaves = zip(jax.tree.leaves(a), jax.tree.leaves(b))
    return max(float(np.max(np.abs(np.asarray(x) - np.asarray(y)), initial=0.0)) for x, y in leaves)


def _spread(tree) -> list[int]:
    """The number of devices holding each array with a leading axis."""
    return sorted({len(x.sharding.device_set) for x in jax.tree.leaves(tree) if x.ndim})


masked_normal = ppl.distribution(
    lambda loc, scale, mask: nd.Normal(loc, scale).mask(mask), "masked_normal"
)


@ppl.gen
def annealed(mask):
    mu = ppl.normal(0.0, 1.0) @ "mu"
    return masked_normal(mu + jnp.zeros(mask.shape), 0.5, mask) @ "y"


def importance_checks(mesh, compiles):
    model, obs, args = normal_normal, {"y": NN_DATA}, (jnp.zeros(5),)
    one, many = (
        importance(jax.random.key(0), model, obs, args, n=64, mesh=m) for m in (None, mesh)
    )
    out = {
        "lml": [float(one.log_marginal_likelihood), float(many.log_marginal_likelihood)],
        "ess": [float(one.ess), float(many.ess)],
        "log_weights_diff": _diff(one.log_weights, many.log_weights),
        "traces_diff": _diff(one.traces.choices, many.traces.choices),
        "spread": _spread((many.traces, many.log_weights)),
        "one_spread": _spread((one.traces, one.log_weights)),
    }
    for scheme in ("multinomial", "systematic"):
        # Compiled, as a user would (eagerly, every operation compiles on its own).
        draw = jax.jit(lambda key, r: r.resample(key, 32, scheme).choices)
        a, b = (draw(jax.random.key(1), r) for r in (one, many))
        out[f"resample_{scheme}_diff"], out[f"resample_{scheme}_spread"] = _diff(a, b), _spread(b)
    a, b = (
        jax.jit(lambda key, m=m: sir(key, model, obs, args, n=64, m=16, mesh=m).choices)(
            jax.random.key(2)
        )
        for m in (None, mesh)
    )
    out["sir_diff"], out["sir_spread"] = _diff(a, b), _spread(b)

    # Under the user's jit, the placement is a constraint for the partitioner.
    def lml_under_jit(key):
        return importance(key, model, obs, args, n=64, mesh=mesh, check=False).log_weights

    traced = jax.jit(lml_under_jit)(jax.random.key(0))
    out["jit_log_weights_diff"], out["jit_spread"] = _diff(one.log_weights, traced), _spread(traced)
    return out


def smc_checks(mesh, compiles):
    n = 23  # 23 annealing steps: the progress bar runs them as 12 compiled chunks
    data = jnp.linspace(-1.0, 1.0, n)
    masks = jnp.arange(n)[None, :] < jnp.arange(1, n + 1)[:, None]
    obs = {"y": data}
    kernel = mcmc.mh(ppl.select("mu"))
    out = {}
    runs = {}
    # Compiled, as a user would (eagerly, every operation compiles on its own).
    inits = {
        name: jax.jit(lambda key, mask, m=m: smc.init(key, annealed, obs, (mask,), 64, mesh=m))
        for name, m in (("one", None), ("many", mesh))
    }
    for name, m in (("one", None), ("many", mesh)):
        start = inits[name](jax.random.key(1), jnp.zeros(n, bool))
        runs[name], counts = compiles.during(
            lambda: smc.run(
                jax.random.key(2), start, (masks,), ess_threshold=0.7, rejuvenation=kernel
            )
        )
        out[f"run_compiles_{name}"] = counts.get("run", 0)
    (p1, i1), (p8, i8) = runs["one"], runs["many"]
    out["lml"] = [
        np.asarray(i1.log_marginal_likelihood).tolist(),
        np.asarray(i8.log_marginal_likelihood).tolist(),
    ]
    out["ess_diff"] = _diff(i1.ess, i8.ess)
    out["resampled"] = [int(np.sum(i1.resampled)), int(np.sum(i8.resampled))]
    out["final_diff"] = _diff(p1.traces["mu"], p8.traces["mu"])
    out["final_spread"] = _spread((p8.traces, p8.log_weights))
    out["log_z_replicated"] = bool(p8.log_z.sharding.is_fully_replicated)

    # Each scheme on the same unequal weights, sharded and not.
    moved = {}
    for name in ("one", "many"):
        p = inits[name](jax.random.key(3), masks[4])
        moved[name] = jax.jit(lambda p: smc.reweight(p, -(p.traces["mu"] ** 2)))(p)
    for scheme in ("multinomial", "stratified", "systematic", "residual"):
        draw = jax.jit(lambda key, p: smc.resample(key, p, scheme))
        a, b = (draw(jax.random.key(4), moved[k]) for k in ("one", "many"))
        out[f"resample_{scheme}_diff"] = _diff(a.traces["mu"], b.traces["mu"])
        out[f"resample_{scheme}_spread"] = _spread(b.traces)
        out[f"resample_{scheme}_lml_diff"] = _diff(
            a.log_marginal_likelihood, b.log_marginal_likelihood
        )

    # A compiled step, called again on its own output, is not compiled again.
    def smc_step(key, particles, mask):
        return smc.step(key, particles, (mask,), ess_threshold=1.0)

    step = jax.jit(smc_step)
    p = moved["many"]

    def loop(p):
        for i in range(4):
            p, _ = step(jax.random.key(10 + i), p, masks[5 + i])
        return p

    p, counts = compiles.during(lambda: loop(p))
    out["step_compiles"], out["step_cache_size"] = (
        counts.get("smc_step", 0),
        getattr(step, "_cache_size")(),
    )
    out["step_spread"] = _spread((p.traces, p.log_weights))
    hlo = step.lower(jax.random.key(0), p, masks[0]).compile().as_text() or ""
    out["step_collectives"] = {c: hlo.count(c) for c in ("all-reduce", "all-gather")}
    hlo = jax.jit(lambda q: q.log_marginal_likelihood).lower(p).compile().as_text() or ""
    out["lml_all_reduce"] = hlo.count("all-reduce")
    return out


@ppl.gen
def walk_step(z, x):
    z = ppl.normal(0.9 * z, 1.0) @ "z"
    ppl.normal(z, 0.5) @ "y"
    return z, z


def filter_checks(mesh):
    model, ys = ppl.scan(walk_step, length=12), jnp.sin(jnp.arange(12.0))
    runs = {
        name: smc.particle_filter(
            jax.random.key(8), model, (0.0, None), {"y": ys}, 64, ess_threshold=0.7, mesh=m
        )
        for name, m in (("one", None), ("many", mesh))
    }
    (p1, i1), (p8, i8) = runs["one"], runs["many"]
    return {
        "lml_diff": _diff(i1.log_marginal_likelihood, i8.log_marginal_likelihood),
        "resampled": int(np.sum(i1.resampled)),
        "traces_diff": _diff(p1.traces.choices["z"], p8.traces.choices["z"]),
        "spread": _spread((p8.traces, p8.log_weights)),
        "mesh_kept": p8.mesh is not None,
    }


def mcmc_checks(mesh, compiles):
    args, obs = (jnp.zeros(5),), {"y": NN_DATA}
    out = {}

    def both(kernel, n_warmup, **opts):
        return [
            compiles.during(
                lambda: run_mcmc(
                    jax.random.key(3),
                    kernel,
                    normal_normal,
                    args,
                    obs,
                    n_samples=50,
                    n_warmup=n_warmup,
                    n_chains=8,
                    warn=False,
                    mesh=m,
                    **opts,
                )
            )
            for m in (None, mesh)
        ]

    # With a progress bar, the 50 steps run as 10 compiled chunks.
    (r1, _), (r8, counts) = both(mcmc.hmc(step_size=0.2, n_steps=4), 0, progress=True)
    out["hmc_compiles"] = {k: counts.get(k, 0) for k in ("start_chains", "advance_chains")}
    out["hmc_diff"], out["hmc_spread"] = _diff(r1.samples, r8.samples), _spread(r8.samples)
    out["hmc_accept_diff"] = _diff(r1.accept_prob, r8.accept_prob)
    out["hmc_final_spread"] = _spread(r8.final)
    # Step-size adaptation feeds each step's rounding back into the next step size,
    # so in float32 the chains drift apart (by 0.07 after 20 warm-up steps, as
    # measured); in float64 they agree.
    with jax.enable_x64(True):
        args, obs = (jnp.zeros(5),), {"y": jnp.asarray(NN_DATA, jnp.float64)}
        (r1, _), (r8, _) = both(mcmc.hmc(step_size=0.2, n_steps=4), 20, progress=False)
    out["hmc_adapted_diff_f64"] = _diff(r1.samples, r8.samples)
    return out


@ppl.gen
def regression(xs):
    w = ppl.normal(0.0, 1.0) @ "w"
    return ppl.normal(w * xs, 0.5) @ "y"


@ppl.gen
def regression_guide(mu, log_s):
    return ppl.normal(mu, jnp.exp(log_s)) @ "w"


@ppl.gen
def local_model(x):  # z ~ N(0, 1), x | z ~ N(z, 1); x is the example
    z = ppl.normal(0.0, 1.0) @ "z"
    return ppl.normal(z, 1.0) @ "x"


@ppl.gen
def encoder(params, x):
    a, b, log_s = params
    return ppl.normal(a * x + b, jnp.exp(log_s)) @ "z"


@ppl.gen
def row(x, w):
    return ppl.normal(x @ w, 0.5) @ "y"


@ppl.gen
def subsampled_regression(batch):  # the rows of a minibatch stand for all 256
    w = ppl.normal(jnp.zeros(FEATURES), 1.0) @ "w"
    ppl.vmap(row, in_axes=(0, None), subsample_of=256)(batch["x"], w) @ "rows"


@ppl.gen
def subsampled_guide(mu, log_s, batch):
    return ppl.normal(mu, jnp.exp(log_s)) @ "w"


XS = jnp.linspace(-1.0, 1.0, 10)
EXAMPLES = jax.random.normal(jax.random.key(5), (256,)) * 1.4
FEATURES = 128  # enough work per row that the rows' share dominates a device's FLOPs
_X = jax.random.normal(jax.random.key(6), (256, FEATURES))
ROWS = {
    "x": _X,
    "y": _X @ jnp.linspace(-1.0, 1.0, FEATURES) + jax.random.normal(jax.random.key(7), (256,)),
}


def vi_problems():
    """(objective, model_args, guide_args, options) of a fit without and with data."""
    shared = vi.elbo(regression, regression_guide, {"y": 2.0 * XS})
    amortised = vi.elbo(local_model, encoder, observations=lambda x: {"x": x})
    return {
        "samples": (shared, (XS,), (jnp.array(0.0), jnp.array(0.0)), {"num_samples": 64}),
        "data": (
            amortised,
            (),
            (jnp.array([0.0, 1.0, 0.0]),),
            {"data": EXAMPLES, "batch_size": 32, "num_samples": 2},
        ),
        "subsampled": (
            vi.elbo(subsampled_regression, subsampled_guide, lambda b: {"rows": {"y": b["y"]}}),
            (),
            (jnp.zeros(FEATURES), jnp.zeros(FEATURES)),
            {"data": ROWS, "batch_size": 32, "num_samples": 2, "subsample": True},
        ),
    }


def vi_checks(mesh, compiles):
    out = {}
    optimizer = optax.adam(0.05)
    for name, (objective, m_args, g_args, opts) in vi_problems().items():
        # 40 steps in 8 compiled chunks of 5 (chunk= fixes the split of keys too)
        runs = {}
        for which, m in (("one", None), ("many", mesh)):
            runs[which], counts = compiles.during(
                lambda m=m: vi.fit(
                    objective,
                    jax.random.key(7),
                    m_args,
                    g_args,
                    optimizer=optimizer,
                    steps=40,
                    chunk=5,
                    progress=False,
                    mesh=m,
                    **opts,
                )
            )
            out[f"{name}_compiles_{which}"] = counts.get("_run_chunk", 0)
        one, many = runs["one"], runs["many"]
        out[f"{name}_params_diff"] = _diff(one.guide_args, many.guide_args)
        out[f"{name}_history_diff"] = float(np.max(np.abs(one.history - many.history)))
        out[f"{name}_history_size"] = float(np.max(np.abs(one.history)))
        out[f"{name}_moved"] = _diff(one.guide_args, g_args)  # the fit did something
        leaves = jax.tree.leaves(many.guide_args)
        out[f"{name}_params_replicated"] = all(
            x.sharding.is_fully_replicated and len(x.sharding.device_set) == N_DEVICES
            for x in leaves
        )
        out[f"{name}_data_as_given"] = many.model_args is m_args or all(
            a is b for a, b in zip(many.model_args, m_args)
        )

        # One step compiled on its own: the reduction of the gradient is an all-reduce,
        # and each device does an eighth of the per-example (per-estimate) work.
        def step_flops(m, batch_size):
            spec = make_spec(
                objective, optimizer, opts["num_samples"], "fit", m, opts.get("subsample", False)
            )
            params, frozen, layout = split(m_args, g_args, (False, True), caller="fit")
            n_data = None if "data" not in opts else len(jax.tree.leaves(opts["data"])[0])
            state = start(spec, params, frozen, layout, opts.get("data"), n_data, batch_size)
            state = replicate(state, m)
            compiled = (
                jax.jit(advance, static_argnums=0).lower(spec, jax.random.key(0), state).compile()
            )
            cost = compiled.cost_analysis()
            assert cost is not None
            hlo = compiled.as_text() or ""
            return float((cost[0] if isinstance(cost, list) else cost)["flops"]), hlo

        flops = {}
        for which, m in (("one", None), ("many", particle_mesh(mesh, "fit"))):
            flops[which], hlo = step_flops(m, opts.get("batch_size"))
            out[f"{name}_all_reduce_{which}"] = hlo.count("all-reduce")
            if name == "subsampled":  # the FLOPs a minibatch's 32 more rows add
                flops[which] = step_flops(m, 64)[0] - flops[which]
        out[f"{name}_flops_ratio"] = flops["many"] / flops["one"]
    # The pure init/step pair on the mesh: the same steps, the state replicated.
    objective, m_args, g_args, opts = vi_problems()["samples"]
    states = {}
    for which, m in (("one", None), ("many", mesh)):
        init, step = vi.fitter(objective, optimizer, num_samples=opts["num_samples"], mesh=m)
        state, step = init(m_args, g_args), jax.jit(step)
        for key in jax.random.split(jax.random.key(9), 3):
            state, _ = step(key, state)
        states[which] = state
    out["fitter_params_diff"] = _diff(states["one"].params, states["many"].params)
    out["fitter_replicated"] = all(
        x.sharding.is_fully_replicated and len(x.sharding.device_set) == N_DEVICES
        for x in jax.tree.leaves(states["many"].params)
    )
    return out


def error_checks(mesh, compiles):
    model, obs = normal_normal, {"y": NN_DATA}
    cases = {
        "importance_n": lambda: importance(
            jax.random.key(0), model, obs, (jnp.zeros(5),), n=100, mesh=mesh
        ),
        "smc_n": lambda: smc.init(jax.random.key(0), model, obs, (jnp.zeros(5),), 12, mesh=mesh),
        "sir_m": lambda: sir(jax.random.key(0), model, obs, (jnp.zeros(5),), n=64, m=4, mesh=mesh),
        "mcmc_chains": lambda: run_mcmc(
            jax.random.key(0), mcmc.mh(), model, (jnp.zeros(5),), obs, n_chains=6, mesh=mesh
        ),
        "two_axes": lambda: importance(
            jax.random.key(0),
            model,
            obs,
            (jnp.zeros(5),),
            n=64,
            mesh=jax.make_mesh((2, 4), ("a", "b")),
        ),
        "not_a_mesh": lambda: smc.init(
            jax.random.key(0), model, obs, (jnp.zeros(5),), 64, mesh=jax.devices()
        ),
    }
    problems = vi_problems()

    def fit(name, mesh=mesh, **opts):
        objective, m_args, g_args, defaults = problems[name]
        return lambda: vi.fit(
            objective,
            jax.random.key(0),
            m_args,
            g_args,
            steps=2,
            progress=False,
            mesh=mesh,
            **{**defaults, **opts},
        )

    cases["fit_batch_size"] = fit("data", batch_size=60)
    cases["fit_num_samples"] = fit("samples", num_samples=12)
    cases["fit_one_sample"] = fit("samples", num_samples=1)
    cases["fit_two_axes"] = fit("samples", mesh=jax.make_mesh((2, 4), ("a", "b")))
    out = {}
    for name, fn in cases.items():
        try:
            fn()
            out[name] = None
        except ppl.PPLError as e:
            out[name] = str(e)
    return out


def main():
    assert jax.device_count() == N_DEVICES, jax.devices()
    compiles = _Compiles()
    logging.getLogger("jax").addHandler(compiles)
    logging.getLogger("jax").setLevel(logging.WARNING)
    jax.config.update("jax_log_compiles", True)
    mesh = jax.make_mesh((N_DEVICES,), ("particles",))
    out: dict[str, Any] = {
        "threefry_partitionable": bool(getattr(jax.config, "jax_threefry_partitionable"))
    }
    for name, checks in (
        ("importance", importance_checks),
        ("smc", smc_checks),
        ("filter", lambda mesh, compiles: filter_checks(mesh)),
        ("mcmc", mcmc_checks),
        ("vi", vi_checks),
        ("errors", error_checks),
    ):
        t = time.process_time()
        out[name], counts = compiles.during(lambda: checks(mesh, compiles))
        out[f"{name}_cpu_seconds"] = round(time.process_time() - t, 2)
        out[f"{name}_compiles"] = sum(counts.values())
    json.dump(out, sys.stdout)


if __name__ == "__main__":
    main()
