"""Choice maps and selections."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import ppl
from ppl import ChoiceMap, select

# ---------------------------------------------------------------------------
# construction and reading
# ---------------------------------------------------------------------------


def test_from_dict_with_string_tuple_and_nested_addresses():
    cm = ChoiceMap.d({"x": 1.0, ("enc", "z"): 2.0, "dec": {"h": 3.0, "o": {"p": 4.0}}})
    assert cm["x"] == 1.0
    assert cm["enc", "z"] == 2.0
    assert cm[("enc", "z")] == 2.0
    assert cm["dec", "h"] == 3.0
    assert cm["dec", "o", "p"] == 4.0
    assert sorted(cm.addresses()) == sorted([("x",), ("enc", "z"), ("dec", "h"), ("dec", "o", "p")])
    sub = cm["dec"]
    assert isinstance(sub, ChoiceMap) and sub["o", "p"] == 4.0
    assert cm.get_submap(("dec", "o"))["p"] == 4.0
    assert cm.get_submap("nothing").is_empty()


def test_tuple_keys_and_nested_dicts_merge_into_one_tree():
    a = ChoiceMap.d({("a", "b"): 1.0, "a": {"c": 2.0}})
    assert sorted(a.addresses()) == [("a", "b"), ("a", "c")]
    b = ChoiceMap.d({"a": ChoiceMap.d({"b": 1.0})})
    assert b["a", "b"] == 1.0


def test_value_and_empty():
    v = ChoiceMap.value(jnp.ones(2))
    assert v.has_value() and not v.is_empty()
    np.testing.assert_array_equal(v.get_value(), jnp.ones(2))
    assert v.addresses() == [()]
    e = ChoiceMap.empty()
    assert e.is_empty() and not e.has_value() and e.addresses() == [] and len(e) == 0
    with pytest.raises(ppl.AddressError, match="no value"):
        ChoiceMap.d({"a": 1.0}).get_value()


def test_contains_keys_len_iter():
    cm = ChoiceMap.d({"x": 1.0, ("enc", "z"): 2.0})
    assert "x" in cm and "enc" in cm and ("enc", "z") in cm
    assert "z" not in cm and ("enc", "w") not in cm and ("x", "y") not in cm
    assert set(cm.keys()) == {"x", "enc"} and set(cm) == {"x", "enc"} and len(cm) == 2
    assert dict(cm.items())["x"].get_value() == 1.0


def test_missing_address_error_lists_known_addresses():
    cm = ChoiceMap.d({"x": 1.0, ("enc", "z"): 2.0})
    with pytest.raises(ppl.AddressError, match=r"'q'.*'x'.*\('enc', 'z'\)"):
        cm["q"]
    with pytest.raises(ppl.AddressError, match=r"\('enc', 'w'\)"):
        cm["enc", "w"]


def test_non_string_address_parts_are_rejected():
    with pytest.raises(ppl.PPLError, match="not a string"):
        ChoiceMap.d({1: 2.0})
    with pytest.raises(ppl.PPLError, match="not a string"):
        ChoiceMap.d({("a", 3): 2.0})
    with pytest.raises(ppl.PPLError, match="not a string"):
        select(("a", 1))


def test_to_dict_round_trip():
    d = {"x": 1.0, "enc": {"z": 2.0, "w": 3.0}}
    assert ChoiceMap.d(d).to_dict() == d


# ---------------------------------------------------------------------------
# merge and filter
# ---------------------------------------------------------------------------


def test_merge_right_wins_and_keeps_both_sides():
    a = ChoiceMap.d({"x": 1.0, ("enc", "z"): 2.0, ("enc", "w"): 3.0})
    b = ChoiceMap.d({"x": 10.0, ("enc", "z"): 20.0, "y": 5.0})
    m = a | b
    assert m["x"] == 10.0 and m["enc", "z"] == 20.0 and m["enc", "w"] == 3.0 and m["y"] == 5.0
    m2 = b | a
    assert m2["x"] == 1.0 and m2["enc", "z"] == 2.0
    assert a.merge(b) == m
    assert (a | ChoiceMap.empty()) == a and (ChoiceMap.empty() | a) == a
    # the operands are unchanged
    assert a["x"] == 1.0 and "y" not in a


def test_merge_value_with_map_right_wins():
    assert (ChoiceMap.d({"a": 1.0}) | ChoiceMap.d({"a": {"b": 2.0}}))["a", "b"] == 2.0
    assert (ChoiceMap.d({"a": {"b": 2.0}}) | ChoiceMap.d({"a": 1.0}))["a"] == 1.0


CM = ChoiceMap.d({"x": 1.0, ("enc", "z"): 2.0, ("enc", "w"): 3.0, ("dec", "o", "p"): 4.0})


def test_filter_by_selection_and_complement():
    s = select("x", ("enc", "z"))
    kept = CM.filter(s)
    assert sorted(kept.addresses()) == [("enc", "z"), ("x",)]
    rest = CM.filter(~s)
    assert sorted(rest.addresses()) == [("dec", "o", "p"), ("enc", "w")]
    assert CM.without(s) == rest
    assert (kept | rest) == CM
    # selecting a prefix selects everything below it
    assert sorted(CM.filter(select("enc")).addresses()) == [("enc", "w"), ("enc", "z")]
    assert CM.filter(ppl.select_all()) == CM
    assert CM.filter(ppl.select_none()).is_empty()
    assert CM.filter(select("nothing")).is_empty()


def test_selection_membership_union_and_complement():
    s = select("x", ("enc", "z"))
    assert "x" in s and ("enc", "z") in s and ("x", "deeper") in s
    assert "enc" not in s and ("enc", "w") not in s and "y" not in s
    c = ~s
    assert "x" not in c and ("enc", "w") in c and "y" in c
    assert ~c is s or ("x" in ~c and "y" not in ~c)
    u = s | select("y")
    assert "y" in u and "x" in u and "q" not in u
    assert select("enc", ("enc", "z")).child("enc").is_all()
    assert ppl.select_all().is_all() and ppl.select_none().is_none()
    assert (~ppl.select_all()).is_none() and (~ppl.select_none()).is_all()


def test_reprs_are_readable():
    r = repr(ChoiceMap.d({"x": 1.0, ("enc", "z"): 2.0}))
    assert r == "ChoiceMap({'x': 1.0, ('enc', 'z'): 2.0})"
    assert "float32[100]" in repr(ChoiceMap.d({"big": jnp.zeros(100)}))
    assert repr(ChoiceMap.d({"v": jnp.array([1, 2])})) == "ChoiceMap({'v': [1, 2]})"
    assert repr(select("x", ("enc", "z"))) == "select('x', ('enc', 'z'))"
    assert repr(~select("x")) == "~select('x')"
    assert repr(ChoiceMap.empty()) == "ChoiceMap({})"


def test_repr_of_traced_values():
    seen = []

    @jax.jit
    def f(x):
        seen.append(repr(ChoiceMap.d({"x": x})))
        return x

    f(1.0)
    assert seen[0] == "ChoiceMap({'x': <traced float32[]>})"


# ---------------------------------------------------------------------------
# pytree behaviour
# ---------------------------------------------------------------------------


def test_pytree_round_trip_and_tree_map():
    leaves, tree = jax.tree.flatten(CM)
    assert len(leaves) == 4
    assert jax.tree.unflatten(tree, leaves) == CM
    doubled = jax.tree.map(lambda v: 2 * v, CM)
    assert isinstance(doubled, ChoiceMap)
    for a in CM.addresses():
        assert doubled[a] == 2 * CM[a]
    # structure does not depend on insertion order
    a = ChoiceMap.d({"x": 1.0, "y": 2.0})
    b = ChoiceMap.d({"y": 2.0, "x": 1.0})
    assert jax.tree.structure(a) == jax.tree.structure(b) and a == b


def test_choice_maps_pass_through_jit_vmap_and_grad():
    out = jax.jit(lambda c: jax.tree.map(lambda v: v + 1, c))(CM)
    assert out["dec", "o", "p"] == 5.0
    batched = ChoiceMap.d({"x": jnp.arange(3.0), ("e", "z"): jnp.ones((3, 2))})
    sums = jax.vmap(lambda c: c["x"] + c["e", "z"].sum())(batched)
    np.testing.assert_allclose(sums, jnp.arange(3.0) + 2)
    g = jax.grad(lambda c: c["x"] ** 2 + 3 * c["e", "z"])(ChoiceMap.d({"x": 2.0, ("e", "z"): 1.0}))
    assert g["x"] == 4.0 and g["e", "z"] == 3.0


def test_equality():
    assert ChoiceMap.d({"x": 1.0}) == ChoiceMap.d({"x": 1.0})
    assert ChoiceMap.d({"x": 1.0}) != ChoiceMap.d({"x": 2.0})
    assert ChoiceMap.d({"x": 1.0}) != ChoiceMap.d({"y": 1.0})
    assert ChoiceMap.d({"x": 1.0}) != {"x": 1.0}


# ---------------------------------------------------------------------------
# properties
# ---------------------------------------------------------------------------

names = st.sampled_from(["a", "b", "c"])
paths = st.lists(names, min_size=1, max_size=3).map(tuple)


def _prefix_free(ps):
    """Drop paths that are a prefix of (or extend) an earlier one."""
    out = []
    for p in ps:
        if not any(p[: len(q)] == q or q[: len(p)] == p for q in out):
            out.append(p)
    return out


path_sets = st.lists(paths, max_size=6).map(_prefix_free)


@settings(max_examples=60)
@given(ps=path_sets, qs=path_sets, sel=st.lists(paths, max_size=3))
def test_merge_and_filter_properties(ps, qs, sel):
    a = ChoiceMap.d({p: float(i) for i, p in enumerate(ps)})
    b = ChoiceMap.d({q: 100.0 + i for i, q in enumerate(qs)})
    assert sorted(a.addresses()) == sorted(ps)
    m = a | b
    for q in qs:
        assert m[q] == b[q]  # right wins
    for p in ps:
        if not any(p[: len(q)] == q or q[: len(p)] == p for q in qs):
            assert m[p] == a[p]  # untouched by b
    # a selection strictly below a stored value selects nothing there (tested below)
    sel = [q for q in sel if not any(len(q) > len(p) and q[: len(p)] == p for p in ps)]
    s = select(*sel)
    kept, rest = a.filter(s), a.filter(~s)
    in_sel = [p for p in ps if any(p[: len(q)] == q for q in sel)]
    assert sorted(kept.addresses()) == sorted(in_sel)
    assert sorted(rest.addresses()) == sorted(set(ps) - set(in_sel))
    assert (kept | rest) == a
    for p in ps:
        assert (p in s) == (p in in_sel)
        assert (p in ~s) == (p not in in_sel)
    leaves, tree = jax.tree.flatten(a)
    assert jax.tree.unflatten(tree, leaves) == a


def test_complement_keeps_a_value_under_a_deeper_selection():
    cm = ChoiceMap.d({"a": 1.0, "b": 2.0})
    s = select(("a", "b"))
    assert "a" not in s
    assert "a" in ~s
    assert (cm.filter(s) | cm.filter(~s)) == cm


# ---------------------------------------------------------------------------
# masked entries (choices made only on some executions) and select's arguments
# ---------------------------------------------------------------------------


def test_masked_entries_read_as_values_with_nan_where_not_made():
    made = jnp.array([True, False, True])
    cm = ChoiceMap.d(
        {
            "x": ChoiceMap.masked(jnp.array([1.0, 2.0, 3.0]), made),
            "k": ChoiceMap.masked(jnp.array([4, 5, 6]), made),
            "y": 1.0,
        }
    )
    np.testing.assert_array_equal(np.asarray(cm["x"]), [1.0, np.nan, 3.0])
    np.testing.assert_array_equal(np.asarray(cm["k"]), [4, 5, 6])  # integers: the stored value
    np.testing.assert_array_equal(np.asarray(cm.is_made("x")), made)
    assert cm.is_made("y") is True and cm.is_made("nope") is False
    assert cm.get_submap("x").is_masked() and not cm.get_submap("y").is_masked()
    assert "masked" in repr(cm) and "nan" in repr(cm)
    with pytest.raises(ppl.AddressError, match="only on some executions"):
        cm.get_submap("x").get_value()
    # a pytree whose flags are leaves: through jit, vmap and tree_map
    out = jax.jit(lambda c: c)(cm)
    assert out == cm
    rows = jax.vmap(lambda c: c)(cm.filter(select("x", "k")))
    assert rows == cm.filter(select("x", "k"))
    assert jax.tree.map(lambda v: v[0], cm.filter(select("x"))).is_made("x")
    with pytest.raises(ppl.PPLError, match="leading part"):
        ChoiceMap.masked(jnp.zeros(2), jnp.array([True, False, True]))


def test_merging_over_a_masked_entry():
    made = jnp.array([True, False])
    top = ChoiceMap.d({"x": ChoiceMap.masked(jnp.array([1.0, 2.0]), made)})
    base = ChoiceMap.d({"x": jnp.array([7.0, 8.0]), "y": 0.0})
    merged = base | top
    np.testing.assert_array_equal(np.asarray(merged["x"]), [1.0, 8.0])
    assert not merged.get_submap("x").is_masked()
    assert (top | base) == base  # a plain right side wins everywhere
    both = ChoiceMap.d({"x": ChoiceMap.masked(jnp.array([5.0, 6.0]), ~made)}) | top
    np.testing.assert_array_equal(np.asarray(both["x"]), [1.0, 6.0])
    np.testing.assert_array_equal(np.asarray(both.is_made("x")), [True, True])
    with pytest.raises(ppl.AddressError, match="cannot merge"):
        ChoiceMap.d({"x": jnp.zeros(3)}) | top


def test_select_with_a_list_teaches_the_call():
    """select(["a", "b"]) used to fail with 'has a part ... that is not a string'."""
    with pytest.raises(
        ppl.PPLError, match=r"separate arguments.*ppl\.select\('a', 'b'\).*\*addresses.*tuple"
    ):
        select(["a", "b"])
    with pytest.raises(ppl.PPLError, match="separate arguments"):
        select({"a"})
    with pytest.raises(ppl.PPLError, match="not a string"):
        select(("a", 1))
    assert "a" in select(*["a", "b"]) and ("enc", "z") in select(("enc", "z"))
