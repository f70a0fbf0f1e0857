"""Kernels built from kernels: apply several in turn (:func:`cycle`), one chosen
at random (:func:`mixture_kernel`), or one several times (:func:`repeat_kernel`).

A composition holds only its parts (and the mixture its weights); the state of
each part travels in the composed state's ``aux`` (a tuple, one entry per
part, for :class:`Cycle` and :class:`MixtureKernel`), so compositions are
values like any kernel. The names say what they act on: ``ppl.repeat`` and
``ppl.mix`` build generative functions, ``repeat_kernel`` and
``mixture_kernel`` build kernels.
"""

from __future__ import annotations

import functools
import operator

import jax
import jax.numpy as jnp

from ppl.inference.kernel import Kernel, MCMCState, one


def _sub(state, aux):
    return MCMCState(state.trace, state.accept_prob, aux)


def _init_parts(kernels, trace, n_warmup, observed):
    """The composed initial state: every part initialised as sharing the trace."""
    states = [k.init(trace, n_warmup, observed, shared=True) for k in kernels]
    return MCMCState(trace, one(), tuple(s.aux for s in states))


class Cycle(Kernel):
    """Apply each kernel in turn; the acceptance probability is their mean.

    Build with :func:`cycle`.

    Attributes:
        kernels: the parts, in the order they are applied (a tuple).
    """

    kernels: tuple[Kernel, ...]

    def __init__(self, *kernels):
        super().__init__(kernels=tuple(kernels))

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


class MixtureKernel(Kernel):
    """Apply one kernel chosen at random with probabilities ``weights``.

    Build with :func:`mixture_kernel`.

    Attributes:
        kernels: the parts (a tuple).
        logits: the log of their probabilities.
    """

    kernels: tuple[Kernel, ...]
    logits: jax.Array

    def __init__(self, kernels, weights=None):
        kernels = tuple(kernels)
        n = len(kernels)
        logits = jnp.log(jnp.asarray([1.0 / n] * n if weights is None else weights))
        super().__init__(kernels=kernels, logits=logits)

    def init(self, trace, n_warmup=0, observed=None, *, shared=False):
        return _init_parts(self.kernels, trace, n_warmup, observed)

    def step(self, key, state):
        k1, k2 = jax.random.split(key)

        def branch(i):
            def run(state):
                sub = self.kernels[i].step(k2, _sub(state, state.aux[i]))
                auxs = tuple(sub.aux if j == i else a for j, a in enumerate(state.aux))
                return MCMCState(sub.trace, sub.accept_prob, auxs)

            return run

        i = jax.random.categorical(k1, self.logits)
        return jax.lax.switch(i, [branch(i) for i in range(len(self.kernels))], state)


class RepeatKernel(Kernel):
    """Apply ``kernel`` ``n`` times; the acceptance probability is the mean.

    Build with :func:`repeat_kernel`. Its state is the repeated kernel's own.

    Attributes:
        kernel: the kernel repeated.
        n: the number of repetitions per step.
    """

    kernel: Kernel
    n: int

    def __init__(self, kernel, n):
        super().__init__(kernel=kernel, n=n)

    def current_choices(self, state):
        return self.kernel.current_choices(state)

    def materialize(self, state):
        return self.kernel.materialize(state)

    def init(self, trace, n_warmup=0, observed=None, *, shared=False):
        return self.kernel.init(trace, n_warmup, observed, shared=shared)

    def step(self, key, state):
        def body(state, k):
            state = self.kernel.step(k, state)
            return state, state.accept_prob

        state, probs = jax.lax.scan(body, state, jax.random.split(key, self.n))
        return MCMCState(state.trace, jnp.mean(probs), state.aux)


def cycle(*kernels) -> Cycle:
    """Apply ``kernels`` one after the other in every step.

    Args:
        *kernels: kernels moving the same trace (e.g. different selections).

    Returns:
        A :class:`Cycle`; its acceptance probability is the kernels' mean.

    Raises:
        PPLError: at ``init``, as each part's ``init`` does.

    Example:
        >>> kernel = cycle(hmc(ppl.select("mu")), mh(ppl.select("k")))
    """
    return Cycle(*kernels)


def mixture_kernel(kernels, weights=None) -> MixtureKernel:
    """Apply one of ``kernels`` per step, chosen with probabilities ``weights``.

    (``ppl.mix`` is the combinator of generative functions; this mixes kernels.)

    Args:
        kernels: a sequence of kernels.
        weights: their probabilities (default: uniform).

    Returns:
        A :class:`MixtureKernel`.

    Raises:
        PPLError: at ``init``, as each part's ``init`` does.

    Example:
        >>> kernel = mixture_kernel([mh(ppl.select("mu")), mala(ppl.select("mu"))], [0.3, 0.7])
    """
    return MixtureKernel(kernels, weights)


def repeat_kernel(kernel, n: int) -> RepeatKernel:
    """Apply ``kernel`` ``n`` times per step (inside one ``lax.scan``).

    (``ppl.repeat`` is the combinator of generative functions; this repeats a kernel.)

    Args:
        kernel: any kernel.
        n: the number of repetitions.

    Returns:
        A :class:`RepeatKernel`; its acceptance probability is the mean over
        the repetitions.

    Raises:
        PPLError: at ``init``, as ``kernel.init`` does.

    Example:
        >>> kernel = repeat_kernel(mh(proposal=walk), 3)
    """
    return RepeatKernel(kernel, n)


__all__ = ["Cycle", "MixtureKernel", "RepeatKernel", "cycle", "mixture_kernel", "repeat_kernel"]
