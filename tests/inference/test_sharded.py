"""Importance sampling, SMC, MCMC and VI's fit on a mesh of 8 CPU devices give the one-device
results for the same keys, keep their particles (chains) split over the devices,
compile each step once, and refuse counts and meshes that do not fit.

The multi-device runs happen in one subprocess (``_sharded_checks.py``, started
with ``XLA_FLAGS=--xla_force_host_platform_device_count=8``: this process has one
device, fixed when JAX started); the tests below read its JSON report."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

HERE = Path(__file__).parent
# float32 sums over 64 particles in another order (per device, then across devices)
TOL = 1e-5


@pytest.fixture(scope="module")
def report():
    # The device count joins the suite's own XLA flags (make test turns off LLVM's
    # optimisations, which are most of the compile time) instead of replacing them.
    flags = f"{os.environ.get('XLA_FLAGS', '')} --xla_force_host_platform_device_count=8"
    env = dict(os.environ, XLA_FLAGS=flags.strip())
    env["JAX_PLATFORMS"] = "cpu"
    env["PYTHONPATH"] = os.pathsep.join([str(HERE), env.get("PYTHONPATH", "")])
    run = subprocess.run(
        [sys.executable, str(HERE / "_sharded_checks.py")],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert run.returncode == 0, run.stderr[-4000:]
    return json.loads(run.stdout)


def test_random_draws_do_not_depend_on_the_layout(report):
    # Per-particle keys are split before they are sharded; jax 0.10.2's
    # partitionable threefry keeps draws inside sharded computations equal too.
    assert report["threefry_partitionable"] is True


def test_importance_sampling_matches_one_device(report):
    r = report["importance"]
    lml_one, lml_many = r["lml"]
    assert abs(lml_one - lml_many) < TOL
    assert abs(r["ess"][0] - r["ess"][1]) < TOL * r["ess"][0]
    assert r["log_weights_diff"] < TOL and r["traces_diff"] < TOL
    assert r["jit_log_weights_diff"] < TOL
    for scheme in ("multinomial", "systematic"):
        assert r[f"resample_{scheme}_diff"] == 0.0  # the same ancestors
    assert r["sir_diff"] == 0.0


def test_importance_particles_are_sharded(report):
    r = report["importance"]
    assert r["one_spread"] == [1]
    for k in ("spread", "jit_spread", "sir_spread"):
        assert r[k] == [8], k
    for scheme in ("multinomial", "systematic"):
        assert r[f"resample_{scheme}_spread"] == [8]


def test_smc_matches_one_device(report):
    r = report["smc"]
    one, many = (np.asarray(x) for x in r["lml"])
    np.testing.assert_allclose(many, one, atol=TOL * len(one), rtol=TOL)
    assert r["resampled"][0] == r["resampled"][1] > 0
    assert r["final_diff"] < TOL
    for scheme in ("multinomial", "stratified", "systematic", "residual"):
        assert r[f"resample_{scheme}_diff"] == 0.0, scheme
        assert r[f"resample_{scheme}_lml_diff"] < TOL, scheme


def test_smc_particles_stay_sharded(report):
    r = report["smc"]
    assert r["final_spread"] == [8] and r["step_spread"] == [8]
    assert r["log_z_replicated"]
    for scheme in ("multinomial", "stratified", "systematic", "residual"):
        assert r[f"resample_{scheme}_spread"] == [8], scheme


def test_smc_reductions_are_collectives(report):
    r = report["smc"]
    assert r["lml_all_reduce"] > 0  # the log-sum-exp of the weights
    assert r["step_collectives"]["all-reduce"] > 0  # ESS, log-sum-exp, resampling's sums


def test_smc_steps_compile_once(report):
    r = report["smc"]
    # The progress bar's 12 compiled chunks, and a jitted step called on its own output.
    assert r["run_compiles_one"] == 1 and r["run_compiles_many"] == 1
    assert r["step_compiles"] == 1 and r["step_cache_size"] == 1


def test_particle_filter_matches_one_device_and_is_sharded(report):
    r = report["filter"]
    assert r["resampled"] > 0  # the resampling steps ran, on the mesh too
    assert r["lml_diff"] < TOL and r["traces_diff"] < TOL
    assert r["spread"] == [8] and r["mesh_kept"]


def test_mcmc_matches_one_device_and_is_sharded(report):
    r = report["mcmc"]
    assert r["hmc_diff"] < TOL and r["hmc_accept_diff"] < TOL
    assert r["hmc_spread"] == [8] and r["hmc_final_spread"] == [8]
    # Warm-up adaptation amplifies float32 rounding; in float64 the runs agree.
    assert r["hmc_adapted_diff_f64"] < 1e-9
    assert r["hmc_compiles"] == {"start_chains": 1, "advance_chains": 1}


def test_errors_say_what_is_wrong_and_the_fix(report):
    e = report["errors"]
    for case, count in (("importance_n", "n is 100"), ("smc_n", "n is 12"), ("sir_m", "m is 4")):
        assert count in e[case] and "multiple of 8" in e[case], e[case]
    assert "96 or 104" in e["importance_n"]
    assert "n_chains is 6" in e["mcmc_chains"] and "multiple of 8" in e["mcmc_chains"]
    assert "2 axes (a=2, b=4)" in e["two_axes"] and "one-axis mesh" in e["two_axes"]
    assert "must be a jax.sharding.Mesh" in e["not_a_mesh"] and "make_mesh" in e["not_a_mesh"]


@pytest.mark.parametrize("case", ["samples", "data", "subsampled"])
def test_fit_matches_one_device(report, case):
    # "samples": 64 estimates of a shared-latent ELBO per step; "data": minibatches
    # of 32 examples of an amortised ELBO, 2 estimates each; "subsampled": minibatches of 32
    # rows passed whole to a regression that scales them to all 256. 40 Adam steps.
    r = report["vi"]
    assert r[f"{case}_moved"] > 0.5
    assert r[f"{case}_params_diff"] < TOL
    # float32 rounding of the objective, relative to its size (a subsample's is scaled up)
    assert r[f"{case}_history_diff"] < 1e-4 * max(1.0, r[f"{case}_history_size"] / 100)


@pytest.mark.parametrize("case", ["samples", "data", "subsampled"])
def test_fit_is_sharded_and_reduced_by_collectives(report, case):
    r = report["vi"]
    assert r[f"{case}_params_replicated"] and r[f"{case}_data_as_given"]
    assert r[f"{case}_all_reduce_one"] == 0 and r[f"{case}_all_reduce_many"] > 0
    # Each device runs a fraction of the step's work: an eighth of the estimates (or
    # rows), and the minibatch's draw, the global latents and the optimizer's update whole.
    # For the subsampled fit, of the FLOPs that 32 more rows add: they are the rows' own.
    assert r[f"{case}_flops_ratio"] < {"samples": 0.25, "data": 0.5, "subsampled": 0.2}[case]


def test_fitter_steps_on_a_mesh_match_one_device(report):
    r = report["vi"]
    assert r["fitter_params_diff"] < TOL and r["fitter_replicated"]


@pytest.mark.parametrize("case", ["samples", "data", "subsampled"])
def test_fit_chunks_compile_once(report, case):
    r = report["vi"]
    assert r[f"{case}_compiles_one"] == 1 and r[f"{case}_compiles_many"] == 1


def test_fit_errors_name_the_fix(report):
    e = report["errors"]
    assert "batch_size is 60" in e["fit_batch_size"] and "56 or 64" in e["fit_batch_size"]
    assert "num_samples is 12" in e["fit_num_samples"] and "8 or 16" in e["fit_num_samples"]
    assert "num_samples is 1" in e["fit_one_sample"] and "multiple of 8" in e["fit_one_sample"]
    assert "2 axes (a=2, b=4)" in e["fit_two_axes"] and "one-axis mesh" in e["fit_two_axes"]
