"""Rao-Blackwellized REINFORCE: each score multiplies only the terms downstream of it.

REINFORCE differentiates ``E[f]`` as ``E[df + f * score]``; a term of ``f`` that
does not depend, by data flow, on a choice ``z`` has ``E[term * score_z] = 0``
(``z`` is independent of everything it does not feed, given its own parents),
so dropping that product keeps the gradient unbiased and lowers its variance.

The walk of an expectation program finds the dependence as it goes:

* every value is a ``ppl.transforms.adev.dual.Dual`` that carries the ids
  of the score-function choices it depends on; a sample-free equation's
  outputs depend on the union of its inputs', constants on none;
* each call site is dispatched with an empty score (``attributed``); the
  score its rule adds (a reinforce choice, a whole call, a loop or a traced
  branch with score-function choices inside) gets a new id in ``State.table``,
  and the site's outputs depend on its inputs' ids and on that id;
* the value of the program and every ``add_cost`` term multiply the sum of
  the scores of their own ids (``ppl.transforms.adev.dual.score_of``);
  costs made inside a loop or traced branch multiply the scores their call's
  inputs depend on (and, inside, the scores of the loop as before).

Soundness by default: a value built afresh by a rule (a plain pair) depends on
every choice so far, the old behaviour; a score that a rule adds before calling
the rest of the program makes that site's outputs depend on everything.
Reparam, enum and mvd choices have no score: their values depend on the ids
of their parameters, and nothing else changes for them.
"""

from __future__ import annotations

from typing import Any

import jax.numpy as jnp

from ppl.core import Continue
from ppl.transforms.adev import dual as _dual
from ppl.transforms.adev.dual import Recorded, State


class Tagged(Recorded):
    """A recorded entry with what its site's outputs depend on (``deps``, ``None``
    for everything) and whether its log density's tangent is exactly the score of
    a score-function choice (``scored``: the value carries no tangent)."""

    deps: frozenset | None = None
    scored: bool = False
    # A vectorised call's entry: its per-element log densities, and the ids whose
    # scores it depends on element by element (its own).
    per_element: Any = None
    aligned: frozenset = frozenset()


def tag(entry, deps, scored: bool, aligned: frozenset = frozenset()) -> Tagged:
    """``entry`` tagged with ``deps`` and ``scored`` (see ``Tagged``)."""
    out = Tagged(*entry)
    out.deps, out.scored = deps, scored
    out.per_element = getattr(entry, "per_element", None)
    out.aligned = aligned if out.per_element is not None else frozenset()
    return out


def entry_deps(entry):
    """What a recorded entry depends on; ``None`` (everything) if it is untagged."""
    return entry.deps if isinstance(entry, Tagged) else None


def known(duals) -> list:
    """Arguments of an expectation: they depend on no random choice."""
    return [_dual.Dual(p, t, frozenset()) for p, t in duals]


def add_term(state: State, term, deps) -> State:
    """Add ``term`` (a dual) to the value of the expectation: its tangent plus its
    value times the scores of ``deps`` (of every choice so far for ``None``)."""
    c, dc = term
    cost_t = _dual.add(dc, _dual.mul(c, _dual.score_of(state, deps)))
    state = state._replace(
        cost_p=_dual.add(state.cost_p, c), cost_t=_dual.add(state.cost_t, cost_t)
    )
    if state.rb:
        state = state._replace(priced=_dual.add(state.priced, c))
    return state


def add_term_per_element(state: State, term, deps, aligned: frozenset) -> State:
    """Add ``term`` (a dual of per-element values along axis 0) to the value: each
    element times the element-wise scores of ``aligned``, all of it times the
    scores of the other ``deps``. Falls back to ``add_term`` of the sum when
    an id in ``aligned`` has no element-wise scores of that length."""
    c, dc = term
    n = jnp.shape(c)[0]
    own = _dual.per_element_scores(state, aligned, n)
    whole = (jnp.sum(c), None if dc is None else jnp.sum(dc))
    if own is None or deps is None:
        return add_term(state, whole, deps)
    cost_t = _dual.add(whole[1], jnp.sum(c * own))
    cost_t = _dual.add(cost_t, _dual.mul(whole[0], _dual.score_of(state, deps - aligned)))
    state = state._replace(
        cost_p=_dual.add(state.cost_p, whole[0]), cost_t=_dual.add(state.cost_t, cost_t)
    )
    return state._replace(priced=_dual.add(state.priced, whole[0]))


def _attribute(state: State, own):
    """Give the score ``own`` an id; ``(state, frozenset of that id)``."""
    if own is None:
        return state, frozenset()
    return state._replace(table=state.table + (own,)), frozenset((len(state.table),))


def _tag_new(state: State, n_rec, deps, scored, aligned=frozenset()) -> State:
    """Tag the entries recorded since ``n_rec`` that no inner site tagged."""
    if state.rec is None or n_rec is None:
        return state
    rec = list(state.rec)
    for i in range(n_rec, len(rec)):
        if not isinstance(rec[i], Tagged):
            no_tangent = all(t is None for t in rec[i].tangents)
            rec[i] = tag(rec[i], deps, scored and no_tangent, aligned)
    return state._replace(rec=tuple(rec))


def attributed(dispatch, site, ins, state: State, k):
    """Dispatch one call site with its own score kept apart (see the module docstring).

    ``dispatch(state, k)`` runs the site's rule; the result is that rule's,
    with the outputs tainted and the state merged back."""
    before = state
    n_table = len(state.table)
    n_rec = None if state.rec is None else len(state.rec)
    ins_deps = _dual.union(_dual.deps_of(d) for d in ins)
    fresh = state._replace(s=None, cost_p=None, cost_t=None, priced=None)

    def merged(st: State) -> State:
        return st._replace(
            s=before.s,
            cost_p=_dual.add(before.cost_p, st.cost_p),
            cost_t=_dual.add(before.cost_t, st.cost_t),
            priced=_dual.add(before.priced, st.priced),
        )

    def rest(outs, st):
        # The rule walked its callee in place (its sites are attributed there) or
        # made a choice without a score (enum, mvd): outputs keep what they carry.
        own = st.s
        st, own_id = _attribute(merged(st), own)
        new = frozenset(range(n_table, len(st.table)))
        fallback = None if own is not None else _dual.union([ins_deps, new])
        outs = [
            o if own is None and isinstance(o, _dual.Dual) else _dual.tainted(o, fallback)
            for o in outs
        ]
        return k(outs, _tag_new(st, n_rec, fallback, False))

    res = dispatch(fresh, rest)
    if not isinstance(res, Continue):
        return res
    st = res.state
    own = st.s
    cost_p, priced = st.cost_p, st.priced
    st, own_id = _attribute(merged(st), own)
    new = frozenset(range(n_table, len(st.table)))
    deps = _dual.union([ins_deps, new])
    # Costs made inside without their earlier scores (a loop body, a traced
    # branch) meet the scores the call's inputs depend on.
    unpriced = cost_p if priced is None else cost_p - priced
    if unpriced is not None:
        extra = _dual.mul(unpriced, _dual.score_of(before, ins_deps))
        st = st._replace(cost_t=_dual.add(st.cost_t, extra), priced=_dual.add(st.priced, unpriced))
    # A vectorised call with one score per element: its outputs' element j depends
    # on its element j's score alone.
    aligned = own_id if own is not None and jnp.ndim(own) == 1 else frozenset()
    # A value the rule passed through (held at a policy) keeps what it carries.
    outs = [
        _dual.tainted(o, _dual.union([deps, _dual.deps_of(o) or frozenset()]), aligned)
        for o in res.outs
    ]
    return Continue(outs, _tag_new(st, n_rec, deps, own is not None, aligned))
