"""Interface laws on random programs whose switch/cond/mix branches make
different addresses (``"sh"`` shared by some branches only), with branch
indices that are random choices of the program, inside vmap/repeat/scan and
inside other branches. Everything runs under ``jit``, so indices are traced
and choice maps hold masked entries. Constraint sets mix addresses the run
makes with addresses only other branches (or other elements) make.

The expected weights come from ``_reference.reference_slots`` (numpyro
densities summed by walking the spec in Python, not through ppl's
interpreters): ``-inf`` when a constrained address is not made at every slot,
the constrained densities otherwise; and, for an index that is a random
choice, by brute force over every value of that choice.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from hypothesis import Phase, given, settings
from hypothesis import strategies as st

import ppl
from _reference import layout, reference_slots, some_value
from _strategies import Mix, Switch, args, assert_close, build, seeds, specs, subset

NO_SHRINK = [Phase.explicit, Phase.reuse, Phase.generate, Phase.target, Phase.explain]
FAMILIES = ["normal", "normal_vec", "exponential", "flip", "flip_logits", "categorical"]


def _has_branch(spec) -> bool:
    def walk(s):
        for n in s.nodes:
            if isinstance(n, (Switch, Mix)):
                return True
            if hasattr(n, "sub") and walk(n.sub):
                return True
        return False

    return walk(spec)


branchy_specs = specs(max_nodes=2, families=FAMILIES, random_index=True).filter(_has_branch)


def _made_slots(choices: ppl.ChoiceMap, lay) -> set:
    """``{(path, slot)}`` where ``choices`` (masked) holds a choice."""
    out = set()
    for p in choices.addresses():
        stack = lay[p][1]
        flag = np.asarray(choices.is_made(p))
        flag = np.broadcast_to(flag.reshape(flag.shape + (1,) * (len(stack) - flag.ndim)), stack)
        out.update((p, idx) for idx in np.ndindex(*stack) if flag[idx])
    return out


def _constraints(source: ppl.ChoiceMap, paths, lay) -> ppl.ChoiceMap:
    """Plain values at ``paths``: ``source``'s where it made them, any value in
    the support elsewhere (addresses only other branches or elements make)."""
    out = {}
    for p in paths:
        fam, stack = lay[p]
        v = source[p]
        made = jnp.asarray(source.is_made(p))
        made = jnp.reshape(made, made.shape + (1,) * (jnp.ndim(v) - made.ndim))
        out[p] = jnp.where(made, v, some_value(fam, stack, v.dtype))
    return ppl.ChoiceMap.d(out)


def _slots_of(path, lay):
    return [(path, idx) for idx in np.ndindex(*lay[path][1])]


def _expected_generate(ref, paths, lay) -> float:
    wanted = [k for p in paths for k in _slots_of(p, lay)]
    if any(k not in ref for k in wanted):
        return -np.inf
    return float(sum(np.float64(ref[k]) for k in wanted))


def _check_weight(w, expected, msg: object = ""):
    if expected == -np.inf:
        assert float(w) == -np.inf, (float(w), msg)
    else:
        assert_close(w, expected, msg=str(msg))


def _total(ref) -> float:
    return float(sum(np.float64(v) for v in ref.values()))


def _values_agree(c1, c2, slots):
    for p, idx in slots:
        a, b = np.asarray(c1[p]), np.asarray(c2[p])
        np.testing.assert_array_equal(a[idx], b[idx], err_msg=str((p, idx)))


def _support(family):
    return [False, True] if family != "categorical" else [0, 1, 2]


def _generate_law(g, spec, lay, paths, extra):
    """Everything the generate law needs from ppl, in one compiled function."""
    indices = [spec.nodes[n.on] for n in spec.nodes if isinstance(n, Switch) and n.on >= 0]

    @jax.jit
    def run(k1, k2, k3, a, a2):
        tr = g.simulate(k1, (a,))
        choices = tr.choices
        source = g.simulate(k2, (a2,)).choices
        cons = _constraints(source, paths, lay)
        new, w = g.generate(k3, cons, (a,))
        again, w_full = g.generate(k3, choices, (a,))
        out: dict[str, Any] = dict(
            score=tr.score,
            choices=choices,
            logp=g.assess(choices, (a,))[0],
            cons=cons,
            w=w,
            new_score=new.score,
            new_choices=new.choices,
            w_full=w_full,
            again_score=again.score,
            extra=g.assess(choices | _constraints(source, [extra], lay), (a,))[0],
            enum=[],
        )
        for on in indices:  # brute force over the values of a choice that picks a branch
            for v in _support(on.family):
                cv = cons | ppl.ChoiceMap.d({on.addr: jnp.asarray(v, source[on.addr].dtype)})
                tr_v, w_v = g.generate(k3, cv, (a,))
                out["enum"].append((tr_v.choices, w_v))
        return out

    return run, [sorted({*paths, (on.addr,)}) for on in indices for _ in _support(on.family)]


@settings(max_examples=4, phases=NO_SHRINK)
@given(spec=branchy_specs, seed=seeds, a=args, a2=args, data=st.data())
def test_simulate_assess_generate_against_the_reference(spec, seed, a, a2, data):
    lay = layout(spec)
    paths = subset(data.draw, sorted(lay))
    extra = data.draw(st.sampled_from(sorted(lay)))
    run, enum_constrained = _generate_law(build(spec), spec, lay, paths, extra)
    r = run(*jax.random.split(jax.random.key(seed), 3), a, a2)
    ref = reference_slots(spec, r["choices"].to_dict(), a)[0]
    assert _made_slots(r["choices"], lay) == set(ref)
    assert_close(r["score"], _total(ref))
    assert_close(r["logp"], r["score"])
    # full constraints reproduce the trace: weight = score
    assert_close(r["w_full"], r["score"])
    assert_close(r["again_score"], r["score"])
    # a plain value at an address some slot of this run does not make: density 0
    if any(k not in ref for k in _slots_of(extra, lay)):
        assert float(r["extra"]) == -np.inf, extra
    # constraints at addresses only some branches (or elements) make
    new_ref = reference_slots(spec, r["new_choices"].to_dict(), a)[0]
    expected = _expected_generate(new_ref, paths, lay)
    _check_weight(r["w"], expected, paths)
    assert_close(r["new_score"], _total(new_ref))
    if expected > -np.inf:
        _values_agree(r["new_choices"], r["cons"], [k for p in paths for k in _slots_of(p, lay)])
    for constrained, (choices_v, w_v) in zip(enum_constrained, r["enum"]):
        ref_v = reference_slots(spec, choices_v.to_dict(), a)[0]
        _check_weight(w_v, _expected_generate(ref_v, constrained, lay), constrained)


def _update_law(g, lay, paths):
    @jax.jit
    def run(k1, k2, k3, a, a2):
        tr = g.simulate(k1, (a,))
        cons = _constraints(g.simulate(k2, (a2,)).choices, paths, lay)
        new, w, discard = g.update(k3, tr, cons, (a2,))
        back, w_back, _ = g.update(k3, new, discard, (a,))
        return dict(
            score=tr.score,
            choices=tr.choices,
            cons=cons,
            new_score=new.score,
            new_choices=new.choices,
            w=w,
            back_score=back.score,
            back_choices=back.choices,
            w_back=w_back,
        )

    return run


@settings(max_examples=4, phases=NO_SHRINK)
@given(spec=branchy_specs, seed=seeds, a=args, a2=args, data=st.data())
def test_update_against_the_reference_and_round_trip(spec, seed, a, a2, data):
    lay = layout(spec)
    paths = subset(data.draw, sorted(lay))
    r = _update_law(build(spec), lay, paths)(*jax.random.split(jax.random.key(seed), 3), a, a2)
    old_ref = reference_slots(spec, r["choices"].to_dict(), a)[0]
    new_ref = reference_slots(spec, r["new_choices"].to_dict(), a2)[0]
    assert _made_slots(r["choices"], lay) == set(old_ref)
    assert _made_slots(r["new_choices"], lay) == set(new_ref)
    assert_close(r["new_score"], _total(new_ref))
    constrained = {k for p in paths for k in _slots_of(p, lay)}
    if not constrained <= set(new_ref):
        assert float(r["w"]) == -np.inf, paths
        return
    fresh = {k for k in new_ref if k not in old_ref and k not in constrained}
    expected = sum(np.float64(v) for k, v in new_ref.items() if k not in fresh) - _total(old_ref)
    assert_close(r["w"], expected)
    _values_agree(r["new_choices"], r["cons"], constrained)
    _values_agree(
        r["new_choices"],
        r["choices"],
        [k for k in new_ref if k in old_ref and k not in constrained],
    )
    # updating back with the discard restores the trace
    assert _made_slots(r["back_choices"], lay) == set(old_ref)
    _values_agree(r["back_choices"], r["choices"], old_ref)
    assert_close(r["back_score"], r["score"])
    assert_close(r["w_back"], float(r["score"]) - float(r["new_score"]))


def test_generators_reach_what_they_promise():
    """The strategy draws switch and cond on random choices, shared addresses
    made by only some branches, and branches inside loops (a traced index)."""
    seen = set()

    @settings(max_examples=60, phases=[Phase.generate])
    @given(spec=branchy_specs)
    def collect(spec):
        def walk(s, in_loop):
            for n in s.nodes:
                if isinstance(n, Switch):
                    seen.add("cond" if n.cond else "switch")
                    seen.update({"on_choice"} if n.on >= 0 else set())
                    seen.update({"in_loop"} if in_loop else set())
                    made = [any(m.addr == "sh" for m in b.nodes) for b in n.branches]
                    seen.update({"shared_by_some"} if any(made) and not all(made) else set())
                elif hasattr(n, "sub"):  # a switch has no sub-spec
                    walk(n.sub, in_loop or type(n).__name__ in ("Repeat", "Scan"))
                for b in getattr(n, "branches", ()):
                    walk(b, in_loop)

        walk(spec, False)

    collect()
    assert {"switch", "cond", "on_choice", "in_loop", "shared_by_some"} <= seen, seen
