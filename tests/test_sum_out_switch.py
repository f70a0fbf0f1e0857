"""``sum_out`` of choices inside ``ppl.switch`` / ``ppl.cond`` branches, with the
branch index an argument (known, or known only at run time) or itself a summed
choice: densities against brute-force sums, and the summed choices afterwards;
and (hypothesis) random switches of small branches against brute force."""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
from hypothesis import assume, example, given, settings
from hypothesis import strategies as st

import ppl

MU = jnp.array([-2.0, 0.5, 3.0])


@ppl.gen
def three_levels(scale):
    z = ppl.categorical(jnp.array([0.2, 0.5, 0.3])) @ "z"
    return ppl.normal(MU[z], scale) @ "x"


@ppl.gen
def two_levels(scale):
    w = ppl.flip(0.6) @ "w"
    return ppl.normal(jnp.where(w, 1.0, -1.0), 2.0 * scale) @ "x"


@ppl.gen
def mixture(scale):
    c = ppl.flip(0.3) @ "c"
    return ppl.cond(two_levels, three_levels)(c, scale) @ "s"


SUMMED = ppl.select("c", ("s", "z"), ("s", "w"))
X = 0.7


def _joint(c, v):
    inner = {("s", "z"): v} if not c else {("s", "w"): bool(v)}
    cm = ppl.ChoiceMap.d({"c": bool(c), ("s", "x"): X, **inner})
    return float(mixture.assess(cm, (1.0,))[0])


ASSIGNMENTS = [(0, v) for v in range(3)] + [(1, v) for v in range(2)]


def test_a_switch_whose_index_and_branch_choices_are_summed():
    marginal = ppl.sum_out(mixture, SUMMED)
    logp, retval = marginal.assess(ppl.ChoiceMap.d({("s", "x"): X}), (1.0,))
    exact = np.logaddexp.reduce([_joint(c, v) for c, v in ASSIGNMENTS])
    np.testing.assert_allclose(float(logp), exact, rtol=1e-5)
    # the switch's return value is chosen by the summed index, so it has no one value
    # (decided by batching: each branch returns x, but which one is taken depends on c)
    assert np.isnan(float(retval))


def test_a_switch_with_its_index_as_an_argument_known_or_traced():
    @ppl.gen
    def given_branch(c, scale):
        return ppl.cond(two_levels, three_levels)(c, scale) @ "s"

    marginal = ppl.sum_out(given_branch, ppl.select(("s", "z"), ("s", "w")))
    kept = ppl.ChoiceMap.d({("s", "x"): X})
    for c in (0, 1):
        exact = np.logaddexp.reduce(
            [_joint(cc, v) - _joint_c(cc) for cc, v in ASSIGNMENTS if cc == c]
        )
        known = marginal.assess(kept, (c, 1.0))[0]
        traced = jax.jit(lambda c: marginal.assess(kept, (c, 1.0))[0])(jnp.int32(c))
        np.testing.assert_allclose([float(known), float(traced)], [exact, exact], rtol=1e-5)


def _joint_c(c):
    return float(np.log(0.3 if c else 0.7))


def test_the_summed_choices_afterwards_follow_the_exact_posterior():
    marginal = ppl.sum_out(mixture, SUMMED)
    kept = ppl.ChoiceMap.d({("s", "x"): X})
    logps = np.array([_joint(c, v) for c, v in ASSIGNMENTS])
    post = np.exp(logps - np.logaddexp.reduce(logps))
    mode = marginal.most_probable(kept, (1.0,))
    c_mode, v_mode = ASSIGNMENTS[int(np.argmax(post))]
    assert bool(mode["c"]) == bool(c_mode)
    inner = ("s", "w") if c_mode else ("s", "z")
    assert int(mode[inner]) == v_mode
    keys = jax.random.split(jax.random.key(0), 4000)
    draws = jax.jit(jax.vmap(lambda k: marginal.posterior_sample(k, kept, (1.0,))))(keys)
    c = np.asarray(draws["c"])
    z, w = np.asarray(draws["s", "z"]), np.asarray(draws["s", "w"])
    freq = [np.mean(~c & (z == v)) for v in range(3)] + [
        np.mean(c & (w == bool(v))) for v in range(2)
    ]
    se = np.sqrt(post * (1 - post) / len(keys))
    assert np.all(np.abs(np.array(freq) - post) < 5 * se + 1e-3), (freq, post)


# hypothesis: random switches of small branches (a categorical or flip latent, or
# none, and an observed normal), their index an argument or a summed choice


@dataclasses.dataclass(frozen=True)
class BranchSpec:
    latent: str  # "cat" | "flip" | "none"
    weight: float  # the latent's pull on the observation's mean
    shift: float


@dataclasses.dataclass(frozen=True)
class SwitchCase:
    branches: tuple
    summed_index: bool  # the index is a categorical choice that is summed too
    index: int  # otherwise, the index given (as a traced argument when traced=True)
    traced: bool


branch_specs = st.builds(
    BranchSpec,
    latent=st.sampled_from(["cat", "flip", "none"]),
    weight=st.sampled_from([-1.0, 0.5, 2.0]),
    shift=st.sampled_from([-0.5, 0.0, 1.0]),
)


@st.composite
def switch_cases(draw):
    branches = tuple(draw(st.lists(branch_specs, min_size=2, max_size=3)))
    assume(any(b.latent != "none" for b in branches))
    return SwitchCase(
        branches,
        draw(st.booleans()),
        draw(st.integers(0, len(branches) - 1)),
        draw(st.booleans()),
    )


def _branch(spec: BranchSpec, j: int):
    @ppl.gen
    def branch(y_scale):
        v = 0.0
        if spec.latent == "cat":
            v = ppl.categorical(jnp.array([0.2, 0.3, 0.5])) @ f"c{j}"
        elif spec.latent == "flip":
            v = jnp.where(ppl.flip(0.35) @ f"f{j}", 1.0, 0.0)
        return ppl.normal(spec.shift + spec.weight * v, y_scale) @ "y"

    return branch


def _latent_values(spec: BranchSpec, j: int):
    if spec.latent == "cat":
        return [{("s", f"c{j}"): v} for v in range(3)]
    if spec.latent == "flip":
        return [{("s", f"f{j}"): b} for b in (False, True)]
    return [{}]


def _build(case: SwitchCase):
    branches = [_branch(b, j) for j, b in enumerate(case.branches)]
    k = len(branches)

    @ppl.gen
    def model(i, y_scale):
        if case.summed_index:
            i = ppl.categorical(jnp.full(k, 1.0 / k)) @ "i"
        return ppl.switch(*branches)(i, y_scale) @ "s"

    latents = [("s", f"c{j}") for j, b in enumerate(case.branches) if b.latent == "cat"]
    latents += [("s", f"f{j}") for j, b in enumerate(case.branches) if b.latent == "flip"]
    summed = ppl.select(*latents, *(["i"] if case.summed_index else []))
    return model, summed


@settings(max_examples=3)
@given(switch_cases())
@example(
    SwitchCase(
        (BranchSpec("cat", 2.0, 0.0), BranchSpec("none", 1.0, -0.5), BranchSpec("flip", -1.0, 1.0)),
        True,
        0,
        True,
    )
)
def test_random_switches_sum_out_to_the_brute_force_marginal(case):
    model, summed = _build(case)
    kept = ppl.ChoiceMap.d({("s", "y"): 0.4})
    indices = range(len(case.branches)) if case.summed_index else [case.index]
    terms = []
    for j in indices:
        for values in _latent_values(case.branches[j], j):
            extra = {"i": j} if case.summed_index else {}
            cm = kept | ppl.ChoiceMap.d({**values, **extra})
            terms.append(float(model.assess(cm, (case.index, 0.8))[0]))
    exact = np.logaddexp.reduce(terms)
    marginal = ppl.sum_out(model, summed)
    if case.traced:
        logp = jax.jit(lambda i: marginal.assess(kept, (i, 0.8))[0])(jnp.int32(case.index))
    else:
        logp = marginal.assess(kept, (case.index, 0.8))[0]
    np.testing.assert_allclose(float(logp), exact, rtol=1e-5, err_msg=str(case))
