"""The recursions of a chain of summed choices (an HMM), on log-probability tables.

``lp[t, j, k]`` is the log density of step ``t``'s choices with its summed
choices in state ``k``, given state ``j`` at step ``t - 1``; the first step
reads row 0 (its carry is the scan's initial one). Every recursion starts
from ``[0, -inf, ...]`` so that row is the only one counted at ``t = 0``.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax.scipy.special import logsumexp

from ppl._errors import PPLError, fmt_addrs
from ppl.combinators._sum_base import SumOut
from ppl.combinators.scan import Scan
from ppl.combinators._sum_support import assignments, pick, plan, varies, zeros_of


def _start(lp):
    return jnp.full(lp.shape[-1], -jnp.inf, lp.dtype).at[0].set(0.0)


def forward(lp: jax.Array) -> jax.Array:
    """The forward (sum-product) messages, O(T S^2).

    Args:
        lp: the log-probability tables, shape ``(T, S, S)``.

    Returns:
        ``alpha`` of shape ``(T, S)``: ``alpha[t, k]`` is the log density of
        steps ``0..t`` with step ``t`` in state ``k``; ``logsumexp(alpha[-1])``
        is the log marginal.

    Examples:
        >>> log_z = logsumexp(forward(lp)[-1])
    """

    def body(alpha, table):
        new = logsumexp(alpha[:, None] + table, axis=0)
        return new, new

    return jax.lax.scan(body, _start(lp), lp)[1]


def backward_sample(key, lp: jax.Array, alpha: jax.Array) -> jax.Array:
    """Backward sampling after forward filtering: a path from the exact posterior.

    Args:
        key: a ``jax.random`` key.
        lp: the tables, shape ``(T, S, S)``.
        alpha: ``forward(lp)``.

    Returns:
        The states, shape ``(T,)``: the last from ``alpha[-1]``, each earlier
        one from ``alpha[t] + lp[t + 1, :, z[t + 1]]``.

    Examples:
        >>> z = backward_sample(key, lp, forward(lp))
    """
    keys = jax.random.split(key, alpha.shape[0])
    last = jax.random.categorical(keys[-1], alpha[-1])

    def body(z_next, inputs):
        k, a, table = inputs
        z = jax.random.categorical(k, a + table[:, z_next])
        return z, z

    _, zs = jax.lax.scan(body, last, (keys[:-1], alpha[:-1], lp[1:]), reverse=True)
    return jnp.concatenate([zs, last[None]])


def viterbi(lp: jax.Array) -> jax.Array:
    """The most probable path (max-product with back-pointers).

    Args:
        lp: the tables, shape ``(T, S, S)``.

    Returns:
        The states of the jointly most probable path, shape ``(T,)``.

    Examples:
        >>> z = viterbi(lp)
    """

    def body(delta, table):
        scores = delta[:, None] + table
        return jnp.max(scores, axis=0), jnp.argmax(scores, axis=0)

    delta, back = jax.lax.scan(body, _start(lp), lp)
    last = jnp.argmax(delta)

    def trace_back(z, pointers):
        return pointers[z], z

    first, zs = jax.lax.scan(trace_back, last, back[1:], reverse=True)
    return jnp.concatenate([first[None], zs])


class SumOutScan(SumOut):
    """A ``ppl.scan`` whose steps' summed choices form a chain: the forward recursion.

    The states of a step are the joint assignments of its summed choices. The
    carry a step passes on must be a function of its summed choices, its other
    choices and its ``x`` only, so the next step depends on this one through
    the state alone; then the step's log density for every (previous state,
    state) pair is one table, and the sum over paths is the forward recursion.

    Examples:
        >>> ppl.sum_out(ppl.scan(step, length=T), ppl.select("z"))
    """

    def _tables(self, kept, args):
        scan = self.gen_fn
        assert isinstance(scan, Scan)  # sum_out makes this kind for a scan only
        step, name = scan.step, self.name
        init, xs = scan._split_args(args)
        T = scan._length(xs)
        kept = scan._check_stacked(kept, T)

        def at0(tree):
            return jax.tree.map(lambda v: v[0], tree)

        joint, calls = plan(step, self.selection, (init, at0(xs)), name)
        if calls:
            raise PPLError(
                f"{name}: the selected choices under {fmt_addrs(calls)} are inside a ppl.vmap / "
                "ppl.scan within the scan's step; a chain can only sum choices the step makes "
                "itself (or through @gen calls). Make them choices of the step."
            )
        limit, deps = self.max_assignments, []

        def states(k_t, carry, x):
            return assignments(step, joint, k_t, (carry, x), limit, name)

        shapes = jax.eval_shape(states, at0(kept), init, at0(xs))
        S = jax.tree.leaves(shapes)[0].shape[0]

        def body(C, inputs):
            k_t, x = inputs
            A = states(k_t, at0(C), x)

            def cell(c, a):
                logp, ret = step.assess(k_t | a, (c, x))
                if not (isinstance(ret, tuple) and len(ret) == 2):
                    raise PPLError(f"{name}: the step must return a pair (carry, y).")
                return logp, ret

            def row(c):
                return jax.vmap(lambda a: cell(c, a))(A)

            lp, (carry, ys) = jax.vmap(row)(C)
            if not deps:  # decided once, when the body is traced
                n = len(jax.tree.leaves(carry))
                on_prev = varies(lambda c: row(c)[1], C)
                on_state = varies(lambda a: cell(at0(C), a)[1], A)
                if any(on_prev[:n]):
                    raise PPLError(
                        f"{name}: the carry that {step.name} passes on depends on the carry it "
                        "received, so the summed choices of one step reach beyond the next and "
                        "the forward recursion would be wrong. Make the carry a function of the "
                        "step's summed choices (e.g. return (z, y)); pass a time index or other "
                        "inputs in xs instead of the carry."
                    )
                deps.append((on_state[:n], [a or b for a, b in zip(on_prev[n:], on_state[n:])]))
            return at0(carry), (lp, A, ys)

        C0 = jax.tree.map(lambda v: jnp.broadcast_to(v, (S, *jnp.shape(v))), init)
        carry, (lp, A, ys) = jax.lax.scan(body, C0, (kept, xs), length=T)
        return lp, A, carry, ys, deps[0]

    def _marginal(self, kept, args):
        lp, _, carry, ys, (dep_carry, dep_ys) = self._tables(kept, args)
        log_z = logsumexp(forward(lp)[-1])
        # ys is stacked (T, S, S, ...): one value per step where independent of the states.
        pairs = jax.tree.map(
            lambda v: jnp.moveaxis(v.reshape(v.shape[0], -1, *v.shape[3:]), 1, 0), ys
        )
        return log_z, (pick(carry, dep_carry), pick(pairs, dep_ys))

    def _summed(self, key, kept, args, mode):
        lp, A, _, _, _ = self._tables(kept, args)
        z = viterbi(lp) if mode else backward_sample(key, lp, forward(lp))
        return jax.tree.map(lambda v: v[jnp.arange(v.shape[0]), z], A)

    def dependent(self, args):
        out = []

        def probe(args):
            _, _, _, _, (dep_carry, dep_ys) = self._tables(zeros_of(self.kept_shape(args)), args)
            out.append(dep_carry + dep_ys)
            return 0.0

        jax.eval_shape(probe, args)
        return out[0]
