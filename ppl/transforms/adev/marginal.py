"""ADEV rules for estimated densities: ``sim`` and ``density`` of ``marginal``.

Both estimators are ordinary expectation programs built from one extra kind
of random choice, ``SimSplit``: run a generative function under ADEV
(with its strategies), optionally with some choices held at given values,
and return its choices, its log density, and the log density of the
selected ("kept") choices alone. With the kept choices held fixed, that last
number is the importance weight of the other choices drawn from ``q``'s own
prior given the kept ones.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from ppl._args import call
from ppl._errors import PPLError, fmt_addr
from ppl._numerics import log_mean_exp
from ppl.choices import ChoiceMap
from ppl.core import program_cache
from ppl.distributions import categorical
from ppl.marginals import Marginal
from ppl.normalize import Normalized
from ppl.transforms.adev import dual as _dual
from ppl.transforms.adev import interpreter as _adev
from ppl.transforms.adev.expectation import _AdevOnly, density_of, sim_of
from ppl.transforms.adev.strategies import Strategy

sim, density = sim_of, density_of


class _Held(Strategy):
    """Not a gradient estimator: the choice takes a given (dual) value."""

    name = "held"

    def __init__(self, value):
        self.value = value

    def check(self, dist, d, addr):
        if jnp.shape(self.value[0]) != d.shape():
            raise PPLError(
                f"the value held at {fmt_addr(addr)} has shape {jnp.shape(self.value[0])}, but "
                f"{dist.name} there makes values of shape {d.shape()}."
            )

    def sample(self, call, state):
        return self.value, state


class SimSplit(_AdevOnly):
    """``choices, log_q, log_q_kept = SimSplit(q, keep, held)(*args) @ addr``;
    with ``held=True`` the first argument is the choice map of kept values."""

    def __init__(self, q, keep, held: bool):
        self.q, self.keep, self.held = q, keep, held

    @property
    def name(self) -> str:
        return f"sim({self.q.name}{', kept choices held' if self.held else ''})"

    def _shape_fn(self, args):
        q_args = args[1:] if self.held else args
        tr = self.q.simulate(jax.random.key(0), q_args)
        return tr.choices, tr.score, tr.score


@_adev.rule.register(SimSplit)
def _sim_split(split, ctx, site, key, ins, state, k, addr):
    args_p = jax.tree.unflatten(site.in_tree, _dual.primals(ins))
    policy = dict(ctx.policy)
    q_ins, q_args = ins, args_p
    if split.held:
        x = args_p[0]
        n_x = len(jax.tree.leaves(x))
        ids = jax.tree.unflatten(jax.tree.structure(x), range(n_x))
        for a in ids.addresses():
            policy[addr + a] = _Held(ins[ids[a]])
        q_ins, q_args = ins[n_x:], args_p[1:]
    held_paths = [p for p, s in policy.items() if isinstance(s, _Held) and p[: len(addr)] == addr]
    sub_ctx = ctx.with_policy(policy)
    outer = state.rec

    def done(_outs, st):
        for p in held_paths:
            if p not in ctx.used:
                raise PPLError(
                    f"the kept choice {fmt_addr(p[len(addr) :])} of {split.q.name} could not be "
                    "held "
                    "at its value: it is inside a combinator or is not a single random choice. "
                    "Keep only choices made directly by @gen functions, or give the marginal a "
                    "proposal."
                )
        cm, tangents, logq = _adev.recorded_choices(st.rec, addr)
        kept = _kept_log_density(st.rec, addr, split.keep)
        outs = list(zip(jax.tree.leaves(cm), tangents, strict=True)) + [logq, kept]
        return k(outs, st._replace(rec=outer))

    program = split.q.program(q_args)
    return _adev.run(sub_ctx, program, key, q_ins, state._replace(rec=()), addr, done)


def _kept_log_density(entries, root, keep):
    total = (jnp.zeros((), jnp.result_type(float)), None)
    for addr, sub, _, (lp, lt) in entries:
        rel = addr[len(root) :]
        if rel in keep:
            total = (total[0] + lp, _dual.add(total[1], lt))
        elif not sub.has_value() and not sub.filter(_below(keep, rel)).is_empty():
            raise PPLError(
                f"the call at {fmt_addr(rel)} was estimated as a whole (reinforce on the call), so "
                "the "
                "density of only some of its choices is not available. Keep all of its choices or "
                "none."
            )
    return total


def _below(keep, rel):
    s = keep
    for part in rel:
        s = s.child(part)
    return s


class _Subprogram(_AdevOnly):
    """A helper expectation-level program whose outputs (not one real number)
    flow to the caller; its random choices live under the call's address."""

    addressless = True

    def __init__(self, fn, name, parts=()):
        # The names of the calls inside under which the family's own choices sit
        # (one per particle): a strategy given by the family's own address applies
        # under each of them.
        self.fn, self._name, self.parts = fn, name, tuple(parts)
        self._programs = program_cache()

    @property
    def name(self) -> str:
        return self._name

    def _shape_fn(self, args):
        return call(self.fn, args, self.name)  # traced abstractly: only output shapes are read


@_adev.rule.register(_Subprogram)
def _subprogram(sub, ctx, site, key, ins, state, k, addr):
    args_p = jax.tree.unflatten(site.in_tree, _dual.primals(ins))
    program = sub._programs(sub.fn, args_p, sub.name)
    return _adev.run(_by_own_addresses(ctx, sub.parts, addr), program, key, ins, state, addr, k)


def _by_own_addresses(ctx, parts, addr):
    """The policy with each strategy given at ``addr + a`` (``a`` an address of the
    family's own choices) also given at ``addr + (part,) + a`` for every particle's
    call; a choice the family does not make is reported under the first part."""
    if not parts:
        return ctx
    n = len(addr)
    own = {
        a: s for a, s in ctx.policy.items() if a[:n] == addr and len(a) > n and a[n] not in parts
    }
    if not own:
        return ctx
    policy = dict(ctx.policy)
    for a, s in own.items():
        for part in parts:
            policy.setdefault(addr + (part,) + a[n:], s)
        ctx.used.add(a)
        ctx.wanted.add(addr + (parts[0],) + a[n:])
    return ctx.with_policy(policy)


@sim_of.register(Marginal)
def marginal_sim(m):
    """``sim(marginal)``: the family-side estimator, with the retained sample."""
    q, keep, proposal, n = m.q, m.keep, m.proposal, m.n

    def family(*args):
        choices, logq, kept = SimSplit(q, keep, held=False)(*args) @ "joint"
        x = choices.filter(keep)
        if proposal is None:
            ws = [kept]
            for i in range(1, n):
                ws.append((SimSplit(q, keep, held=True)(x, *args) @ f"aux{i}")[2])
        else:
            ws = [logq - density(proposal)(choices.without(keep), x, *args)]
            for i in range(1, n):
                u, logr = sim(proposal)(x, *args) @ f"aux{i}"
                ws.append(density(q)(x | u, *args) - logr)
        return x, log_mean_exp(ws)

    return _Subprogram(family, f"sim({m.name})", ("joint", *(f"aux{i}" for i in range(1, n))))


@density_of.register(Marginal)
def marginal_density(m):
    """``density(marginal)``: the model-side estimator, ``n`` fresh samples."""
    q, keep, proposal, n = m.q, m.keep, m.proposal, m.n

    def model_density(x, *args):
        ws = []
        for i in range(n):
            if proposal is None:
                ws.append((SimSplit(q, keep, held=True)(x, *args) @ f"aux{i}")[2])
            else:
                u, logr = sim(proposal)(x, *args) @ f"aux{i}"
                ws.append(density(q)(x | u, *args) - logr)
        return log_mean_exp(ws)

    sub = _Subprogram(model_density, f"density({m.name})", tuple(f"aux{i}" for i in range(n)))

    def log_density(choices, *args):
        return (
            sub(ChoiceMap.d(choices) if isinstance(choices, dict) else choices, *args) @ "density"
        )

    return log_density


@sim_of.register(Normalized)
def normalize_sim(norm):
    """``sim(normalize(p, obs, n))``: n particles from p's prior given obs (with
    their strategies), one resampled by weight (a categorical choice, REINFORCE
    by default), with the SIR log-density estimate."""
    p, obs, observed, n = norm.p, norm.observations, norm.observed, norm.n

    def family(*args):
        particles = [
            SimSplit(p, observed, held=True)(obs, *args) @ f"particle{i}" for i in range(n)
        ]
        log_w = jnp.stack([w for _, _, w in particles])
        k = categorical(logits=log_w) @ "index"
        chosen = jax.tree.map(lambda *xs: jnp.stack(xs)[k], *[c for c, _, _ in particles])
        log_joint = jnp.stack([lq for _, lq, _ in particles])[k]
        return chosen.without(observed), log_joint - log_mean_exp([w for _, _, w in particles])

    return _Subprogram(family, f"sim({norm.name})")


@density_of.register(Normalized)
def _normalize_density(norm):
    def refused(*_):
        raise norm._refusal()

    return refused
