"""Kernels built from kernels: apply several in turn (``cycle``), one chosen
at random (``mixture_kernel``), or one several times (``repeat_kernel``).

A composition holds only its parts (and the mixture its weights); the state of
each part travels in the composed state's ``aux`` (a tuple, one entry per part,
for ``Cycle``; a ``MixtureAux`` or ``RepeatAux`` that also
says which part moved or whether a repetition diverged), so compositions are
values like any kernel. The names say what they act on: ``ppl.repeat`` and
``ppl.mix`` build generative functions, ``repeat_kernel`` and
``mixture_kernel`` build kernels.
"""

from __future__ import annotations

import collections
import functools
import operator
from typing import Any

import equinox as eqx

import jax
import jax.numpy as jnp
import numpy as np

from ppl._errors import PPLError
from ppl.core import is_concrete
from ppl.inference.kernel import Kernel, MCMCState, one


def _sub(state, aux):
    return MCMCState(state.trace, state.accept_prob, aux)


def _init_parts(kernels, trace, n_warmup, observed):
    """The composed initial state: every part initialised as sharing the trace."""
    states = [k.init(trace, n_warmup, observed, shared=True) for k in kernels]
    return MCMCState(trace, one(), tuple(s.aux for s in states))


def _check_parts(kernels, builder: str, example: str) -> tuple:
    """``kernels`` as a tuple, or an error if there are none (a composition of
    nothing has no step to take)."""
    kernels = tuple(kernels)
    if not kernels:
        raise PPLError(
            f"{builder} needs at least one kernel; got none. Pass the kernels to compose, "
            f"e.g. {example}."
        )
    return kernels


def _mixture_logits(weights, n: int):
    """The logs of ``weights`` (default: equal), after checking there is one per
    kernel and, when they are concrete, that they are finite, non-negative and
    not all zero."""
    if weights is None:
        return jnp.log(jnp.asarray([1.0 / n] * n))
    array = jnp.asarray(weights)  # not jnp.shape(weights): a list may hold traced values
    shape = array.shape
    if shape != (n,):
        raise PPLError(
            f"mixture_kernel has {n} kernel{'s' if n != 1 else ''}, so it takes {n} weight"
            f"{'s' if n != 1 else ''} (one per kernel, shape ({n},)); got weights of shape "
            f"{shape}: {weights!r:.60}. Give one weight per kernel, or omit weights for equal "
            "ones."
        )
    if is_concrete(array):
        w = np.asarray(array, dtype=float)
        bad = np.flatnonzero(~np.isfinite(w) | (w < 0))
        if bad.size:
            i = int(bad[0])
            raise PPLError(
                "mixture_kernel: the weights are relative probabilities, so each must be finite "
                f"and non-negative; weight {i} is {float(w[i])!r} (weights: "
                f"{w.tolist()!r:.60}). Pass e.g. weights={[round(1.0 / n, 3)] * n!r:.60}."
            )
        if not np.any(w > 0):
            raise PPLError(
                f"mixture_kernel: every weight is zero (weights: {w.tolist()!r:.60}), so no "
                "kernel could be chosen. Give at least one kernel a positive weight."
            )
    return jnp.log(array)


def _check_repetitions(n) -> int:
    """``n`` as a positive Python int, or an error saying why it must be one."""
    try:
        count = None if isinstance(n, bool) else operator.index(n)  # NumPy/JAX integers too
    except TypeError:  # a float, a string, a traced value (the scan needs a static length)
        count = None
    if count is None:
        raise PPLError(
            f"repeat_kernel: the number of repetitions, n, must be a positive int (e.g. n=5); "
            f"got {n!r:.60}."
        )
    if count < 1:
        raise PPLError(
            f"repeat_kernel: the number of repetitions, n, is {count}; it must be at least 1 "
            "(with no repetitions a step would not move and its acceptance probability, the "
            "mean over no repetitions, would be NaN). Pass e.g. n=5."
        )
    return count


def _merged_stats(kernels, state, auxs, took_step):
    """The parts' statistics in one dict. A name reported by several parts is
    suffixed with the part's index (``diverging[0]``, ``diverging[1]``). A part that
    did not step reports a divergence as ``False`` (its state is from an older step)."""
    per_part = [k.stats(_sub(state, a)) for k, a in zip(kernels, auxs)]
    counts = collections.Counter(name for stats in per_part for name in stats)
    out = {}
    for i, stats in enumerate(per_part):
        for name, value in stats.items():
            if name == "diverging":
                value = value & took_step[i]
            out[name if counts[name] == 1 else f"{name}[{i}]"] = value
    return out


class Cycle(Kernel):
    """Apply each kernel in turn; the acceptance probability is their mean.
    ``cycle`` builds one and says what a step does.

    Args:
        *kernels: the parts, in the order they are applied, at least one;
            stored as the tuple ``kernels``.

    Raises:
        PPLError: if no kernel is given.

    Examples:
        >>> kernel = ppl.inference.Cycle(ppl.inference.mh(ppl.select("a")),
        ...                              ppl.inference.mh(ppl.select("b")))
        >>> len(kernel.kernels), kernel == ppl.inference.cycle(*kernel.kernels)
        (2, True)
    """

    kernels: tuple[Kernel, ...]

    def __init__(self, *kernels):
        example = "cycle(mh(ppl.select('a')), hmc(ppl.select('b')))"
        super().__init__(kernels=_check_parts(kernels, "cycle", example))

    def init(self, trace, n_warmup=0, observed=None, *, shared=False):
        return _init_parts(self.kernels, trace, n_warmup, observed)

    def step(self, key, state):
        keys = jax.random.split(key, len(self.kernels))
        auxs, probs = list(state.aux), []
        for i, (k, kernel) in enumerate(zip(keys, self.kernels)):
            state = kernel.step(k, _sub(state, auxs[i]))
            auxs[i] = state.aux
            probs.append(state.accept_prob)
        # p0 + p1 + ... (not sum(), whose start value 0 would make the mean a float to the checker)
        total = functools.reduce(operator.add, probs)
        return MCMCState(state.trace, total / len(probs), tuple(auxs))

    def stats(self, state):
        """The parts' statistics (see ``_merged_stats``): every part steps each time."""
        everyone = [jnp.ones((), bool)] * len(self.kernels)
        return _merged_stats(self.kernels, state, state.aux, everyone)


class MixtureAux(eqx.Module):
    """The state of a ``MixtureKernel`` beyond the trace.

    Attributes:
        parts: each part's own ``aux`` (a tuple, in the order of the kernels).
        last: the index of the part applied in the last step.
    """

    parts: tuple
    last: jax.Array


class MixtureKernel(Kernel):
    """Apply one kernel chosen at random with probabilities ``weights``.
    ``mixture_kernel`` builds one and says what a step does.

    Args:
        kernels: the parts (a sequence of kernels, at least one); stored as the
            tuple ``kernels``.
        weights: their relative probabilities, one per kernel (default:
            equal); stored as ``logits``, their logs.

    Raises:
        PPLError: as ``mixture_kernel`` does when it is built.

    Examples:
        >>> kernel = ppl.inference.MixtureKernel(
        ...     [ppl.inference.mh(ppl.select("a")), ppl.inference.mh(ppl.select("b"))],
        ...     [0.25, 0.75])
        >>> [round(float(p), 2) for p in jnp.exp(kernel.logits)]
        [0.25, 0.75]
    """

    kernels: tuple[Kernel, ...]
    logits: jax.Array

    def __init__(self, kernels, weights=None):
        example = "mixture_kernel([mh(ppl.select('a')), mh(ppl.select('b'))], [0.5, 0.5])"
        kernels = _check_parts(kernels, "mixture_kernel", example)
        logits = _mixture_logits(weights, len(kernels))
        super().__init__(kernels=kernels, logits=logits)

    def init(self, trace, n_warmup=0, observed=None, *, shared=False):
        parts = _init_parts(self.kernels, trace, n_warmup, observed)
        return _sub(parts, MixtureAux(parts.aux, jnp.zeros((), jnp.int32)))

    def step(self, key, state):
        k1, k2 = jax.random.split(key)

        def branch(i):
            def run(state):
                sub = self.kernels[i].step(k2, _sub(state, state.aux.parts[i]))
                auxs = tuple(sub.aux if j == i else a for j, a in enumerate(state.aux.parts))
                return MCMCState(sub.trace, sub.accept_prob, MixtureAux(auxs, jnp.int32(i)))

            return run

        i = jax.random.categorical(k1, self.logits)
        return jax.lax.switch(i, [branch(i) for i in range(len(self.kernels))], state)

    def stats(self, state):
        """The parts' statistics (see ``_merged_stats``); only the part chosen in
        the last step can report a divergence."""
        aux = state.aux
        chosen = [aux.last == i for i in range(len(self.kernels))]
        return _merged_stats(self.kernels, state, aux.parts, chosen)


class RepeatAux(eqx.Module):
    """The state of a ``RepeatKernel`` beyond the trace.

    Attributes:
        inner: the repeated kernel's own ``aux``.
        diverging: whether any repetition of the last step diverged.
    """

    inner: Any
    diverging: jax.Array


class RepeatKernel(Kernel):
    """Apply ``kernel`` ``n`` times; the acceptance probability is the mean.
    ``repeat_kernel`` builds one and says what a step does.

    Args:
        kernel: the kernel repeated; stored as ``kernel``.
        n: the number of repetitions per step, a positive int; stored as ``n``.

    Raises:
        PPLError: if ``n`` is not a positive int.

    Examples:
        >>> kernel = ppl.inference.RepeatKernel(ppl.inference.mh(ppl.select("a")), 3)
        >>> kernel.n, kernel == ppl.inference.repeat_kernel(kernel.kernel, 3)
        (3, True)
    """

    kernel: Kernel
    n: int

    def __init__(self, kernel, n):
        super().__init__(kernel=kernel, n=_check_repetitions(n))

    def current_choices(self, state):
        return self.kernel.current_choices(_sub(state, state.aux.inner))

    def materialize(self, state):
        inner = self.kernel.materialize(_sub(state, state.aux.inner))
        return _sub(inner, RepeatAux(inner.aux, state.aux.diverging))

    def init(self, trace, n_warmup=0, observed=None, *, shared=False):
        inner = self.kernel.init(trace, n_warmup, observed, shared=shared)
        return _sub(inner, RepeatAux(inner.aux, jnp.zeros((), bool)))

    def step(self, key, state):
        def body(state, k):
            state = self.kernel.step(k, state)
            diverging = self.kernel.stats(state).get("diverging", jnp.zeros((), bool))
            return state, (state.accept_prob, diverging)

        keys = jax.random.split(key, self.n)
        inner, (probs, diverging) = jax.lax.scan(body, _sub(state, state.aux.inner), keys)
        return MCMCState(inner.trace, jnp.mean(probs), RepeatAux(inner.aux, jnp.any(diverging)))

    def stats(self, state):
        """The repeated kernel's statistics of its last repetition, except
        ``diverging``, which says whether any repetition diverged (see
        ``Kernel.stats``)."""
        stats = self.kernel.stats(_sub(state, state.aux.inner))
        if "diverging" in stats:
            stats["diverging"] = state.aux.diverging
        return stats


def cycle(*kernels) -> Cycle:
    """Apply ``kernels`` one after the other in every step.

    Each part leaves the posterior invariant, so their composition does too:
    the usual way to move different choices with different kernels (a
    gradient kernel for the continuous ones, ``ppl.inference.mh`` for
    discrete ones), or to alternate moves of the same choices. Every part is
    initialised on the same trace with the same ``n_warmup`` and
    ``observed``, and told that others move the trace too, so a gradient
    kernel re-reads its position each step. A step costs the sum of the
    parts' steps. Statistics reported by several parts are suffixed with the
    part's index (``diverging[0]``).

    Args:
        *kernels: kernels moving the same trace (e.g. different selections),
            at least one.

    Returns:
        A ``Cycle``; its acceptance probability is the kernels' mean.

    Raises:
        PPLError: if no kernel is given; at ``init``, as each part's ``init`` does.

    Examples:
        >>> @ppl.gen
        ... def model():
        ...     k = ppl.flip(0.5) @ "k"
        ...     mu = ppl.normal(jnp.where(k, 2.0, -2.0), 1.0) @ "mu"
        ...     return ppl.normal(mu, 1.0) @ "y"
        >>> kernel = ppl.inference.cycle(ppl.inference.hmc(ppl.select("mu")),
        ...                              ppl.inference.mh(ppl.select("k")))
        >>> result = ppl.inference.run_mcmc(jax.random.key(0), kernel, model, (), {"y": 1.5},
        ...                                 n_samples=200, n_warmup=100, n_chains=1,
        ...                                 progress=False)
        >>> result.samples["k"].dtype, sorted(result.stats)
        (dtype('bool'), ['diverging', 'step_size'])
    """
    return Cycle(*kernels)


def mixture_kernel(kernels, weights=None) -> MixtureKernel:
    """Apply one of ``kernels`` per step, chosen with probabilities ``weights``.

    (``ppl.mix`` is the combinator of generative functions; this mixes kernels.)

    If every part leaves the posterior invariant, so does the mixture. The
    acceptance probability is that of the part applied. Each part is
    initialised with the driver's ``n_warmup`` and counts only its own steps,
    so a part chosen with probability ``w`` is still adapting until about
    ``n_warmup / w`` of the driver's steps. Under ``vmap`` (``run_mcmc`` runs
    its chains so) the choice of part differs per chain and JAX evaluates
    every part and keeps the chosen one's result, so a step costs all the
    parts' steps.

    Args:
        kernels: a sequence of kernels, at least one.
        weights: their probabilities, one per kernel (default: uniform); they
            are normalised, so relative weights do. They must be finite,
            non-negative and not all zero.

    Returns:
        A ``MixtureKernel``.

    Raises:
        PPLError: if ``kernels`` is empty; if ``weights`` does not have one
            entry per kernel; if (when they are concrete values, not traced
            inside ``jit``) a weight is negative, NaN or infinite, or every
            weight is zero; at ``init``, as each part's ``init`` does.

    Examples:
        >>> @ppl.gen
        ... def model():
        ...     mu = ppl.normal(0.0, 1.0) @ "mu"
        ...     return ppl.normal(mu, 1.0) @ "y"
        >>> @ppl.gen
        ... def walk(trace):
        ...     return ppl.normal(trace["mu"], 0.3) @ "mu"
        >>> kernel = ppl.inference.mixture_kernel(
        ...     [ppl.inference.mh(ppl.select("mu")), ppl.inference.mh(proposal=walk)], [0.3, 0.7])
        >>> result = ppl.inference.run_mcmc(jax.random.key(0), kernel, model, (), {"y": 1.0},
        ...                                 n_samples=300, n_warmup=0, n_chains=1,
        ...                                 progress=False)
        >>> bool(abs(result.summary()["mu"]["mean"] - 0.5) < 0.25)
        True
    """
    return MixtureKernel(kernels, weights)


def repeat_kernel(kernel, n: int) -> RepeatKernel:
    """Apply ``kernel`` ``n`` times per step (inside one ``lax.scan``).

    (``ppl.repeat`` is the combinator of generative functions; this repeats a kernel.)

    The repeated kernel leaves the same posterior invariant; with
    ``ppl.inference.run_mcmc`` it is a way to keep only every ``n``-th
    state of a kernel without storing the others (like ``thin=``), or to give
    one part of a ``ppl.inference.cycle`` more moves. A step costs ``n``
    steps of ``kernel``. The inner kernel is initialised with the driver's
    ``n_warmup`` and counts its own steps, so its adaptation ends after
    ``n_warmup / n`` of the driver's steps. ``stats`` are those of the last
    repetition, but ``diverging`` says whether any repetition diverged.

    Args:
        kernel: any kernel.
        n: the number of repetitions, a positive int.

    Returns:
        A ``RepeatKernel``; its acceptance probability is the mean over
        the repetitions.

    Raises:
        PPLError: if ``n`` is not a positive int; at ``init``, as ``kernel.init`` does.

    Examples:
        >>> @ppl.gen
        ... def model():
        ...     mu = ppl.normal(0.0, 1.0) @ "mu"
        ...     return ppl.normal(mu, 1.0) @ "y"
        >>> kernel = ppl.inference.repeat_kernel(ppl.inference.mh(ppl.select("mu")), 3)
        >>> result = ppl.inference.run_mcmc(jax.random.key(0), kernel, model, (), {"y": 1.0},
        ...                                 n_samples=200, n_warmup=0, n_chains=1,
        ...                                 progress=False)
        >>> result.samples["mu"].shape, bool(abs(result.summary()["mu"]["mean"] - 0.5) < 0.25)
        ((1, 200), True)
    """
    return RepeatKernel(kernel, n)


__all__ = [
    "Cycle",
    "MixtureAux",
    "MixtureKernel",
    "RepeatAux",
    "RepeatKernel",
    "cycle",
    "mixture_kernel",
    "repeat_kernel",
]
