"""Bad input to kernel compositions, MH proposals and the particle filter is
refused up front, with an error that says what is wrong and what to do."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import ppl
from ppl import inference

MH_A = inference.mh(ppl.select("a"))
MH_B = inference.mh(ppl.select("b"))


# --- mixture_kernel, repeat_kernel, cycle -----------------------------------------


@pytest.mark.parametrize(
    "weights, phrase",
    [
        ([1.0], r"2 kernels, so it takes 2 weights .* shape \(1,\)"),
        ([1.0, 2.0, 3.0], r"takes 2 weights .* shape \(3,\)"),
        (1.0, r"takes 2 weights .* shape \(\)"),
        ([1.0, -0.5], "must be finite and non-negative; weight 1 is -0.5"),
        ([float("nan"), 1.0], "must be finite and non-negative; weight 0 is nan"),
        (np.array([1.0, np.inf]), "must be finite and non-negative; weight 1 is inf"),
        (jnp.zeros(2), "every weight is zero"),
    ],
)
def test_mixture_kernel_refuses_bad_weights(weights, phrase):
    with pytest.raises(ppl.PPLError, match=phrase):
        inference.mixture_kernel([MH_A, MH_B], weights)


def test_mixture_kernel_refuses_no_kernels():
    for weights in (None, []):
        with pytest.raises(ppl.PPLError, match="needs at least one kernel; got none"):
            inference.mixture_kernel([], weights)


def test_mixture_kernel_accepts_relative_weights():
    kernel = inference.mixture_kernel([MH_A, MH_B], [1, 3])
    assert np.allclose(jax.nn.softmax(kernel.logits), [0.25, 0.75])
    assert np.allclose(inference.mixture_kernel([MH_A, MH_B], [0.0, 1.0]).logits[1], 0.0)


def test_mixture_kernel_checks_only_the_shape_of_traced_weights():
    @jax.jit
    def logits(a, b):
        return inference.mixture_kernel([MH_A, MH_B], [a, b]).logits

    assert np.allclose(logits(1.0, 1.0), 0.0)
    with pytest.raises(ppl.PPLError, match="takes 2 weights"):
        jax.jit(lambda w: inference.mixture_kernel([MH_A, MH_B], w).logits)(jnp.ones(3))


@pytest.mark.parametrize(
    "n, phrase",
    [
        (0, "n, is 0; it must be at least 1"),
        (-2, "n, is -2; it must be at least 1"),
        (2.0, "must be a positive int .* got 2.0"),
        (True, "must be a positive int .* got True"),
        ("3", "must be a positive int"),
    ],
)
def test_repeat_kernel_refuses_a_bad_count(n, phrase):
    with pytest.raises(ppl.PPLError, match=phrase):
        inference.repeat_kernel(MH_A, n)


def test_repeat_kernel_accepts_integers():
    three: int = np.int64(3)  # pyright: ignore[reportAssignmentType]
    assert inference.repeat_kernel(MH_A, three) == inference.repeat_kernel(MH_A, 3)
    assert type(inference.repeat_kernel(MH_A, three).n) is int


def test_cycle_refuses_no_kernels_when_built():
    with pytest.raises(ppl.PPLError, match="cycle needs at least one kernel; got none"):
        inference.cycle()
    assert len(inference.cycle(MH_A, MH_B).kernels) == 2


# --- mh(proposal=...) on a subsampled model -----------------------------------------

N_DATA = 100
BATCH = jnp.array([0.5, -0.2, 1.1])


@ppl.gen
def _point(x, mu):
    return ppl.normal(mu + x, 1.0) @ "y"


def _regression(subsample_of):
    @ppl.gen
    def model(xs):
        mu = ppl.normal(0.0, 1.0) @ "mu"
        ppl.vmap(_point, in_axes=(0, None), subsample_of=subsample_of)(xs, mu) @ "points"
        return mu

    return model


@ppl.gen
def _walk(trace):
    return ppl.normal(trace["mu"], 0.5) @ "mu"


def _start(model):
    observations = ppl.ChoiceMap.d({"points": {"y": BATCH}})
    trace, _ = model.generate(jax.random.key(0), observations, (BATCH,))
    return trace, ppl.select(("points", "y"))


def test_mh_with_a_proposal_refuses_a_subsampled_model_as_with_a_selection():
    trace, observed = _start(_regression(subsample_of=N_DATA))
    for kernel in (inference.mh(proposal=_walk), inference.mh(ppl.select("mu"))):
        with pytest.raises(ppl.PPLError, match=r"MCMC \(mh\) on .*subsample_of=N.*full data"):
            kernel.init(trace, 0, observed)


def test_mh_with_a_proposal_runs_on_the_full_data():
    trace, observed = _start(_regression(subsample_of=None))
    state = inference.mh(proposal=_walk).init(trace, 0, observed)
    assert state.trace is trace


# --- particle_filter with a proposal ------------------------------------------------

YS = jnp.array([0.5, 1.0, 0.2])


@ppl.gen
def _flat_scale_step(z, _):
    s = ppl.improper_uniform("positive") @ "scale"
    z = ppl.normal(z, s) @ "z"
    return z, ppl.normal(z, 1.0) @ "y"


@ppl.gen
def _subsampled_step(z, _):
    z = ppl.normal(z, 1.0) @ "z"
    ppl.vmap(_point, in_axes=(0, None), subsample_of=N_DATA)(BATCH, z) @ "points"
    return z, None


@ppl.gen
def _propose_z(carry, x, obs):
    return ppl.normal(carry, 1.0) @ "z"


@ppl.gen
def _propose_scale_and_z(carry, x, obs):
    ppl.gamma(2.0, 2.0) @ "scale"
    return ppl.normal(0.5 * (carry + obs["y"]), 1.0) @ "z"


def _filter(step, observations, proposal):
    model = ppl.scan(step, length=3)
    return inference.particle_filter(
        jax.random.key(0), model, (0.0, None), observations, 8, proposal=proposal
    )


@pytest.mark.parametrize("proposal", [None, _propose_z], ids=["prior", "proposal"])
def test_particle_filter_refuses_an_improper_choice_that_is_not_proposed(proposal):
    with pytest.raises(ppl.PPLError, match="'scale' has an improper flat prior"):
        _filter(_flat_scale_step, {"y": YS}, proposal)


@pytest.mark.parametrize("proposal", [None, _propose_z], ids=["prior", "proposal"])
def test_particle_filter_refuses_a_subsampled_step(proposal):
    observations = {"points": {"y": jnp.zeros((3, 3))}}
    with pytest.raises(ppl.PPLError, match=r"\('points', 'y'\) is made in a ppl.vmap\(.*full data"):
        _filter(_subsampled_step, observations, proposal)


def test_particle_filter_runs_when_the_proposal_proposes_the_improper_choice():
    particles, _ = _filter(_flat_scale_step, {"y": YS}, _propose_scale_and_z)
    assert np.isfinite(particles.log_marginal_likelihood)
    assert particles.traces.choices["scale"].shape == (8, 3)
