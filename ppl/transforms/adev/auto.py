"""Automatic strategy choice: a short pilot picks a strategy for each random choice.

``choose_strategies`` finds the addresses of the random choices of an
expectation (by walking it once with a probe strategy that only records
them), then, one address at a time, stages the gradient estimator with each
candidate strategy at that address. A candidate that a strategy's ``check``
or the context (enum inside a loop, mvd on a vector choice, ...) refuses
raises ``ppl.PPLError`` while the estimator is staged; it is listed as
skipped with the error's message. The others are compiled and run on a batch
of pilot gradient estimates, and scored by their variance per unit of
compute: the variance of the gradient (the sum of the per-coordinate
variances, i.e. the trace of its covariance) times the measured run time of
one estimate (the median of a few timed runs of the compiled batch, divided
by the batch size). The lowest score wins.

Addresses interact (the variance of REINFORCE at one choice includes the
noise of every other choice), so the choice is greedy: each address is
chosen with the others as written (their call-site strategy or default);
``refine=True`` then chooses each address again with the others at their
choices (one pass of coordinate descent). Every candidate sees the same
keys (common random numbers), so rows differ by their estimators more than
by their draws.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterable, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from ppl._errors import PPLError, fmt_addr
from ppl._gfi import as_args, as_key
from ppl.expectations import Expectation
from ppl.transforms.adev.interpreter import as_path
from ppl.transforms.adev.mvd import mvd
from ppl.transforms.adev.enum_strategy import enum, enum_sequential
from ppl.transforms.adev.strategies import Strategy, reinforce, reparam

from ppl.transforms.adev.choice_addresses import _check_expectation, choice_addresses
from ppl.transforms.adev.strategy_choice import (
    PilotRow,
    StrategyChoice,
    _Measured,
    _user_addr,
)

DEFAULT_CANDIDATES = (reparam, reinforce, enum, enum_sequential, mvd)
MIN_SECONDS = 0.02  # the shortest timed measurement
MAX_LOOPS = 200


def _flat_floats(tree) -> list:
    return [x for x in jax.tree.leaves(tree) if jnp.issubdtype(jnp.result_type(x), jnp.inexact)]


class _Pilot:
    """Stages, compiles and runs the batched gradient of each policy; times groups."""

    def __init__(self, f: Expectation, args, key, n: int, repeats: int, argnums: tuple):
        self.f, self.n, self.repeats = f, n, repeats
        held = as_args(args, f.name)
        self.argnums = argnums
        # The differentiated arguments, and the others (inputs of the compiled
        # pilot too, not constants folded into it).
        self.held = (
            tuple(held[i] for i in argnums),
            tuple(a for i, a in enumerate(held) if i not in argnums),
        )
        # The same keys for every candidate (common random numbers).
        self.keys = jax.random.split(key, n)
        self._cache: dict = {}

    def prepare(self, policy: dict) -> _Measured:
        """The compiled pilot of ``f`` with ``policy`` added and its variance (each
        policy once; a failure is kept too, so a refused policy is staged once)."""
        token = tuple(sorted((repr(as_path(p)), id(s)) for p, s in policy.items()))
        if token not in self._cache:
            try:
                self._cache[token] = (self._prepare(policy), list(policy.values()))
            except Exception as e:
                self._cache[token] = (e, list(policy.values()))
        found, _ = self._cache[token]
        if isinstance(found, Exception):
            raise found
        return found

    def _prepare(self, policy: dict) -> _Measured:
        g = self.f.with_strategies(policy) if policy else self.f

        argnums = self.argnums

        def one(diff, rest, k):
            parts = iter(diff), iter(rest)
            total = len(diff) + len(rest)
            args = tuple(next(parts[0] if i in argnums else parts[1]) for i in range(total))
            return g.estimate(k, args)

        grads = jax.vmap(jax.grad(one, allow_int=True), in_axes=(None, None, 0))
        compiled = jax.jit(grads).lower(*self.held, self.keys).compile()  # compile first
        out = jax.block_until_ready(compiled(*self.held, self.keys))
        samples = [np.asarray(leaf, np.float64) for leaf in _flat_floats(out)]
        if not all(bool(np.all(np.isfinite(x))) for x in samples):
            bad = sum(int(np.sum(~np.isfinite(x))) for x in samples)
            raise _NonFinite(f"{bad} non-finite gradient coordinates in the pilot estimates")
        variance = float(sum(np.sum(np.var(x, axis=0, ddof=1)) for x in samples))
        return _Measured(compiled, variance, samples)

    def time(self, group: list[_Measured]) -> None:
        """Set ``seconds`` (per estimate) of each compiled pilot in ``group``: the
        median of ``repeats`` timed measurements, taken in turns (each round runs
        every member once), so that a change in the machine's load affects all
        alike; each measurement runs the batch often enough to take MIN_SECONDS,
        so that dispatch overhead and clock resolution do not decide."""
        group = list({id(m): m for m in group}.values())
        loops = []
        for m in group:
            start = time.perf_counter()
            jax.block_until_ready(m.compiled(*self.held, self.keys))
            once = time.perf_counter() - start
            loops.append(max(1, min(MAX_LOOPS, math.ceil(MIN_SECONDS / max(once, 1e-9)))))
        times: list[list[float]] = [[] for _ in group]
        for _ in range(self.repeats):
            for m, count, ts in zip(group, loops, times):
                start = time.perf_counter()
                res = None
                for _ in range(count):
                    res = m.compiled(*self.held, self.keys)
                jax.block_until_ready(res)
                ts.append((time.perf_counter() - start) / count)
        for m, ts in zip(group, times):
            m.times = ts
            m.seconds = float(np.median(ts)) / self.n


class _NonFinite(Exception):
    pass


def _same(a: _Measured, b: _Measured) -> bool:
    return all(np.array_equal(x, y) for x, y in zip(a.samples, b.samples))


def _reason(e: BaseException) -> str:
    text = str(e).strip().replace("\n", " ")
    return text if isinstance(e, (PPLError, _NonFinite)) else f"{type(e).__name__}: {text}"


def choose_strategies(
    f: Expectation,
    key,
    args: tuple,
    *,
    addresses: Iterable | None = None,
    candidates: Sequence[Strategy] | None = None,
    n: int = 256,
    repeats: int = 5,
    refine: bool = False,
    argnums: int | Sequence[int] | None = None,
) -> StrategyChoice:
    """Choose a gradient-estimation strategy for each random choice of ``f`` by a
    short pilot: the one with the lowest gradient variance per unit of compute.

    For each address (in program order), every candidate strategy is tried at
    that address with the other choices as written (their call-site strategy or
    default). A candidate that cannot serve the choice (its ``check`` refuses the
    distribution, or the context refuses it, e.g. ``enum`` inside ``ppl.scan``
    or ``ppl.vmap``) raises ``PPLError`` when the estimator is staged and
    is listed as skipped with the reason; so is one whose pilot estimates are
    not finite, or whose staging fails otherwise. Each other candidate's
    batched gradient (``jax.vmap`` over ``n`` keys) is compiled first, run once
    for ``n`` gradient estimates, and timed; its score is

        variance x seconds,

    where ``variance`` is the sum over gradient coordinates of the variance of
    the ``n`` estimates (the trace of their covariance) and ``seconds`` the
    run time of one estimate: the median of ``repeats`` timed runs of the
    compiled batch, divided by ``n``. The candidates of one address are timed
    in turns (round-robin), so a change in the machine's load affects all
    alike. The lowest score wins. The program as written is a contender too,
    unless its estimates are exactly those of a candidate (then it is that
    candidate, and the two share their timings): so a strategy no policy can
    express (a learned baseline at the call site) is kept where it is best.
    With ``refine=True`` each address is chosen again with the others at
    their choices. All candidates use the same keys (common random numbers).

    The gradient is with respect to all of ``args`` (as ``f.grad_estimate``),
    or those at ``argnums``.
    The choice holds near ``args``: run the pilot again where training has
    moved the parameters far. Each candidate is one compilation, so the pilot
    costs about ``len(addresses) x len(candidates)`` compilations (refused
    candidates cost only their staging); restrict ``addresses`` and
    ``candidates`` for large programs. Timings on a loaded machine are noisy:
    rows whose variances are close are decided by timing noise.

    Args:
        f: an expectation (``@ppl.expectation``, ``ppl.adev(...)``, ``ppl.E(...)``).
        key: a PRNG key for the pilot.
        args: the arguments of ``f`` (a tuple) at which to measure.
        addresses: the addresses to choose for (names or paths); by default
            every random choice of ``f``. The others stay as written.
        candidates: the strategies to try; by default ``reparam``, ``reinforce``,
            ``enum``, ``enum_sequential`` and ``mvd``. Give
            ``ppl.reinforce(baseline=b)`` to try a baseline.
        n: pilot gradient estimates per candidate (at least 2), also the batch
            size of the timed runs.
        repeats: timed runs per candidate (at least 1); the median is kept.
        refine: choose each address a second time, with the others at their
            first choices.
        argnums: the positions in ``args`` of the arguments whose gradient
            counts (an int or a sequence); by default all. The others are
            inputs, not differentiated (cheaper to compile for a large model).

    Returns:
        A ``StrategyChoice``: ``.policy`` (pass it as ``strategies=`` to
        freeze the choice), ``.rows`` and ``print(result)`` for the table.

    Raises:
        PPLError: if ``f`` is not an expectation, ``args`` not a tuple, ``n``,
            ``repeats``, ``candidates`` or ``argnums`` invalid, an address in ``addresses``
            is not a random choice of ``f``, or ``f`` as written cannot be
            estimated or gives non-finite gradient estimates at ``args``.

    Examples:
        >>> @ppl.expectation
        ... def f(theta):
        ...     b = ppl.flip(jax.nn.sigmoid(theta)) @ "b"
        ...     return jnp.where(b, 3.0, -1.0)
        >>> result = ppl.choose_strategies(
        ...     f, jax.random.key(0), (0.0,), candidates=[ppl.reinforce, ppl.enum], n=16, repeats=1
        ... )
        >>> result.policy  # enum has zero variance here
        {'b': enum}
        >>> print(result.table().splitlines()[0])  # print(result) shows the whole table
        strategy pilot: 16 gradient estimates per candidate; variance = ...
        >>> g = ppl.adev(f, strategies=result.policy)  # frozen
    """
    _check_expectation(f)
    key = as_key(key)
    if not isinstance(n, int) or isinstance(n, bool) or n < 2:
        raise PPLError(f"choose_strategies needs an integer n >= 2 (estimates per run); got {n!r}.")
    if not isinstance(repeats, int) or isinstance(repeats, bool) or repeats < 1:
        raise PPLError(f"choose_strategies needs an integer repeats >= 1; got {repeats!r}.")
    cands = tuple(DEFAULT_CANDIDATES if candidates is None else candidates)
    if not cands or not all(isinstance(s, Strategy) for s in cands):
        raise PPLError(
            "candidates must be a non-empty sequence of strategies, e.g. "
            f"(ppl.reparam, ppl.reinforce, ppl.enum); got {candidates!r}."
        )
    nums = _argnums(argnums, as_args(args, f.name))
    found = choice_addresses(f, args)
    if addresses is None:
        paths = list(found)
    else:
        if isinstance(addresses, (str, tuple)):
            addresses = [addresses]
        paths = [as_path(a) for a in addresses]
        missing = [p for p in paths if p not in found]
        if missing:
            raise PPLError(
                "choose_strategies was asked about "
                + ", ".join(fmt_addr(p) for p in missing)
                + ", but the expectation makes no random choice there; its choices are "
                + (", ".join(fmt_addr(p) for p in found) or "none")
                + ". Choices inside a called generative function are addressed by path, "
                "e.g. ('model', 'z')."
            )
        paths = list(dict.fromkeys(paths))
    pilot = _Pilot(f, args, key, n, repeats, nums)
    try:
        written = pilot.prepare({})
    except _NonFinite as e:
        raise PPLError(
            f"{f.name} as written gives non-finite gradient estimates at these arguments ({e}); "
            "the pilot compares strategies against it, so fix the program or the arguments first."
        ) from None
    chosen: dict[tuple, Strategy | None] = {}
    rows: list[PilotRow] = []
    for round_ in (1, 2) if refine else (1,):
        for path in paths:
            # Round 1: the others as written; round 2: the others at their choices.
            others = chosen if round_ > 1 else {}
            base = {p: s for p, s in others.items() if p != path and s is not None}
            reference = written if not base else pilot.prepare(base)
            rows += _choose_one(pilot, path, base, reference, cands, round_, chosen)
    policy = {_user_addr(p): s for p, s in chosen.items() if s is not None}
    tuned = pilot.prepare(dict(policy)) if policy else written
    pilot.time([written, tuned])
    return StrategyChoice(
        policy,
        rows,
        paths,
        {p: found[p] for p in paths},
        (written.variance, written.seconds),
        (tuned.variance, tuned.seconds),
        n,
    )


def _argnums(argnums, args: tuple) -> tuple:
    """The positions of the differentiated arguments, checked."""
    if argnums is None:
        return tuple(range(len(args)))
    nums = (argnums,) if isinstance(argnums, int) else tuple(argnums)
    ok = all(isinstance(i, int) and not isinstance(i, bool) for i in nums)
    if not nums or not ok or any(not 0 <= i < len(args) for i in nums):
        raise PPLError(
            f"argnums must be positions of the arguments (0 to {len(args) - 1}), an int or a "
            f"sequence of ints; got {argnums!r}."
        )
    return tuple(sorted(set(nums)))


def _choose_one(pilot, path, base, reference, cands, round_, chosen) -> list[PilotRow]:
    """Try every candidate at ``path`` (others at ``base``); record the winner in
    ``chosen`` and return the rows (the reference first)."""
    tried: list[tuple[Strategy, _Measured | None, str | None]] = []
    for s in cands:
        try:
            tried.append((s, pilot.prepare({**base, path: s}), None))
        except Exception as e:  # refused at staging (PPLError), non-finite, or failed: say why
            tried.append((s, None, _reason(e)))
    pilot.time([reference] + [m for _, m, _ in tried if m is not None])
    same, twin = next(
        ((s, m) for s, m, _ in tried if m is not None and _same(m, reference)), (None, None)
    )
    if twin is not None and twin is not reference:  # one estimator: pool its timings
        pooled = float(np.median(reference.times + twin.times)) / pilot.n
        reference.seconds = twin.seconds = pooled
    contenders: list[tuple[Strategy | None, _Measured]] = [
        (s, m) for s, m, _ in tried if m is not None
    ]
    if same is None:
        contenders.append((None, reference))
    best = min(contenders, key=lambda sm: (sm[1].cost, sm[1].seconds))[0] if contenders else None
    chosen[path] = best if contenders else None
    rows = [_row(path, None, reference, None, same is None and best is None, round_, same)]
    rows += [_row(path, s, m, why, s is best and m is not None, round_) for s, m, why in tried]
    return rows


def _row(path, s, m, why, is_best, round_, same=None) -> PilotRow:
    if m is None:
        return PilotRow(path, s, None, None, None, False, why, round_)
    cost = m.cost if math.isfinite(m.cost) else float("inf")
    return PilotRow(
        path,
        s,
        m.variance,
        m.seconds,
        cost,
        is_best,
        None,
        round_,
        None if same is None else repr(same),
    )
