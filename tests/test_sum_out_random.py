"""hypothesis: ``ppl.sum_out`` on random programs mixing flips, categoricals and
binomials (top level, nested calls, ppl.repeat / ppl.vmap / ppl.scan bodies) with
continuous choices, against brute-force enumeration of the reference density
(``_reference``, no ppl interpreter): the log marginal (``assess``, full and
partial ``generate``), the most probable assignment, refusal of a free choice
whose prior depends on a summed one, and ``posterior_sample`` against the exact
conditional (a chi-square test with fixed seeds)."""

import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import example, given, settings
from scipy import stats

import ppl

from _strategies import XS, Call, Leaf, Repeat, Scan, Spec, build
from adev._discrete_programs import (
    ChainCase,
    SumOutCase,
    assignment_index,
    brute_force,
    chain_cases,
    chain_scan,
    free_logp,
    n_assignments,
    random_values,
    sum_out_cases,
    to_choice_map,
)

cases = sum_out_cases().filter(lambda c: n_assignments(c.spec, c.summed) <= 1500)


def _close(a, b, what):
    np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=2e-4, atol=2e-4, err_msg=what)


def check_laws(
    marg, args, kept, key, spec, summed, ppl_paths, values, arg, n_posterior=0, mode=True
):
    """assess, generate (all given) and (with ``mode``) most_probable against brute force; with
    ``n_posterior``, a chi-square test of that many posterior_sample draws.
    ``summed``: the summed paths in ``spec`` (for the reference), ``ppl_paths``
    the same in ``marg``. Returns the reference log joints and log marginal."""

    @jax.jit
    def laws(kept, k):
        lp, _ = marg.assess(kept, args)
        new, w = marg.generate(k, kept, args)
        return lp, new.score, w, marg.most_probable(kept, args) if mode else None

    lp, score, w, best = laws(kept, key)
    lps, want = brute_force(spec, values, summed, arg)
    what = f"{spec!r} summing {summed} at {arg}"
    _close(lp, want, f"assess of {what}")
    _close(score, want, f"generate score of {what}")
    _close(w, want, f"generate weight (all given) of {what}")
    got = int(np.argmax(lps))
    if mode:
        got = assignment_index(
            spec, summed, {p: np.asarray(best[q])[None] for p, q in zip(summed, ppl_paths)}
        )[0]
    # ties (or float32 near-ties) may pick another assignment of the same density
    assert lps[got] >= lps.max() - 1e-4 * (1 + abs(float(lps.max()))), (
        f"most_probable of {what}: {got} (logp {lps[got]}) vs {int(np.argmax(lps))}"
        f" (logp {lps.max()})"
    )
    if n_posterior:
        keys = jax.random.split(jax.random.fold_in(key, 2), n_posterior)
        draws = jax.jit(jax.vmap(lambda k: marg.posterior_sample(k, kept, args)))(keys)
        idx = assignment_index(spec, summed, {p: draws[q] for p, q in zip(summed, ppl_paths)})
        probs = np.exp(np.asarray(lps, np.float64) - float(want))
        probs = probs / probs.sum()
        counts = np.bincount(idx, minlength=len(probs))
        # pool the cells expected to hold fewer than 5 draws
        small = probs * n_posterior < 5
        exp_counts = np.append(probs[~small], probs[small].sum()) * n_posterior
        obs_counts = np.append(counts[~small], counts[small].sum())
        keep = exp_counts > 0
        assert obs_counts[~keep].sum() == 0, f"draws of zero probability in {what}"
        if keep.sum() >= 2:
            p_value = stats.chisquare(obs_counts[keep], exp_counts[keep]).pvalue
            assert p_value > 1e-4, (
                f"posterior_sample of {what}: counts {counts} vs expected {probs * n_posterior}"
                f" (p = {p_value})"
            )
    return lps, want


def check_case(case: SumOutCase, n_posterior: int = 0):
    g = build(case.spec)
    args = (case.arg,)
    marg = ppl.sum_out(g, ppl.select(*case.summed))
    key = jax.random.key(case.seed)
    values = random_values(case.spec, case.seed)
    kept = to_choice_map(values, skip=case.summed)
    # most_probable only with the posterior draws (staging it costs as much as assess)
    check_laws(
        marg,
        args,
        kept,
        key,
        case.spec,
        case.summed,
        case.summed,
        values,
        case.arg,
        n_posterior,
        mode=bool(n_posterior),
    )
    if case.free:
        # the free top-level choices drawn from their prior (which no summed choice reaches)
        obs = ppl.ChoiceMap.d({p: kept[p] for p in kept.addresses() if p not in set(case.free)})
        ptr, pw = jax.jit(lambda k: marg.generate(k, obs, args))(jax.random.fold_in(key, 1))
        vals = dict(values)
        for p in case.free:
            vals[p[0]] = np.asarray(ptr.choices[p])
        _, want_p = brute_force(case.spec, vals, case.summed, case.arg)
        _close(ptr.score, want_p, f"partial generate score of {case}")
        _close(pw, want_p - free_logp(case.spec, vals, case.free, case.arg), f"partial w {case}")
    for p in case.refused_free:
        obs = ppl.ChoiceMap.d({q: kept[q] for q in kept.addresses() if q != p})
        if not obs.addresses():
            continue  # nothing given: generate is simulate, and the weight is 0
        with pytest.raises(ppl.PPLError, match=re.escape(repr(p[0]))):
            jax.eval_shape(lambda k: marg.generate(k, obs, args), key)


def check_chain(case: ChainCase, n_posterior: int = 0):
    marg = ppl.sum_out(chain_scan(case), ppl.select(*case.summed))
    args = (jnp.float32(case.arg), XS[: case.n])
    values = random_values(case.spec, case.seed)
    kept = to_choice_map(values["s"], skip=case.summed)
    key = jax.random.key(case.seed)
    check_laws(
        marg,
        args,
        kept,
        key,
        case.spec,
        case.spec_summed,
        case.summed,
        values,
        case.arg,
        n_posterior,
    )


# every kind at once: joint sums (top level and in a call), per-element sums in a
# vmap, the forward recursion in a scan, a free choice, and one refused as free
RICH = SumOutCase(
    Spec(
        (
            Call(
                "a0",
                Spec(
                    (
                        Leaf("a0", "categorical", -1, 0.3),
                        Leaf("a1", "laplace", 0, 0.0),
                        Leaf("a2", "binomial", 0, 0.3),
                    )
                ),
                -1,
                1.0,
            ),
            Repeat(
                "a1",
                Spec((Leaf("a0", "flip", -1, 0.3), Leaf("a1", "normal", 0, 0.0))),
                -1,
                0.0,
                2,
                True,
            ),
            Scan(
                "a2",
                Spec((Leaf("a0", "categorical", -1, 0.3), Leaf("a1", "normal", 0, 0.0))),
                1,
                0.0,
                2,
            ),
            Leaf("a3", "normal", 2, -0.5),
            Leaf("a4", "flip_logits", -1, 0.3),
            Leaf("a5", "normal_vec", 0, 0.0),
        )
    ),
    summed=(("a0", "a0"), ("a0", "a2"), ("a1", "a0"), ("a2", "body", "a0"), ("a4",)),
    free=(("a3",),),
    refused_free=(("a5",),),
    arg=0.4,
    seed=3,
)


@settings(max_examples=1)
@given(cases)
@example(RICH)
def test_sum_out_matches_brute_force(case):
    check_case(case)


@settings(max_examples=1)
@given(cases.filter(lambda c: n_assignments(c.spec, c.summed) <= 24))
def test_posterior_sample_matches_the_exact_conditional(case):
    check_case(case, n_posterior=3000)


@settings(max_examples=2)
@given(chain_cases())
def test_sum_out_of_a_chain_matches_brute_force(case):
    check_chain(case, n_posterior=3000 if n_assignments(case.spec, case.spec_summed) <= 36 else 0)
