"""The MCMC kernel interface: states, the base class, and what kernels share.

A kernel is a value: ``init(trace, n_warmup=0, observed=None) -> MCMCState``
and a pure ``step(key, state) -> state``. Nothing is written onto the kernel
after it is built; everything a step needs (the selection it resolved, its
adaptation state, ...) travels in the state, so one kernel object serves any
number of models and chains at once, under ``jit``, ``vmap`` and ``lax.scan``.
"""

from __future__ import annotations

import abc
from collections.abc import Mapping
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from ppl._errors import PPLError, fmt_addr
from ppl._gfi import Trace, as_selection
from ppl.core import is_tracer
from ppl.inference._subsampling import refuse_in_trace


class MCMCState(eqx.Module):
    """The state of a chain: what a kernel's ``init`` returns and ``step`` maps to
    the next state (a pytree, so it runs through ``jit``, ``vmap`` and ``lax.scan``).

    Everything a run learns travels here, not on the kernel: the selection
    the kernel resolved, its step-size and mass-matrix adaptation, numpyro's
    sampler state. Build one with ``kernel.init(trace, n_warmup, observed)``.

    Attributes:
        trace: the chain's current trace (kernels that keep their position
            elsewhere, like NUTS alone, bring it up to date in
            ``Kernel.materialize``).
        accept_prob: the acceptance probability of the last step (1.0 at ``init``).
        aux: kernel-specific state: the resolved selection, step-size
            adaptation, numpyro's sampler state, or a tuple of these for
            compositions.

    Examples:
        >>> @ppl.gen
        ... def model():
        ...     mu = ppl.normal(0.0, 1.0) @ "mu"
        ...     return ppl.normal(mu, 1.0) @ "y"
        >>> trace, _ = model.generate(jax.random.key(0), ppl.ChoiceMap.d({"y": 1.0}), ())
        >>> state = ppl.inference.mh().init(trace, observed=ppl.select("y"))
        >>> float(state.accept_prob), state.aux.selection
        (1.0, ~select('y'))
        >>> state = ppl.inference.mh().step(jax.random.key(1), state)
        >>> float(state.trace.choices["y"])
        1.0
    """

    trace: Trace
    accept_prob: jax.Array
    aux: Any = None


def one():
    """A scalar 1.0 in the default float dtype: the acceptance probability of an initial state.

    Returns:
        ``jnp.ones(())`` in ``float32`` (``float64`` under ``jax_enable_x64``).

    Examples:
        >>> MCMCState(trace, one(), None)
    """
    return jnp.ones((), jnp.result_type(float))


def select_where(pred, new, old):
    """``new`` where ``pred`` holds, else ``old``, leaf by leaf.

    Args:
        pred: a boolean scalar array (e.g. "the move was accepted").
        new, old: pytrees of the same structure (traces, positions, ...).

    Returns:
        A pytree of that structure.

    Examples:
        >>> trace = select_where(accepted, proposed, trace)
    """
    return jax.tree.map(lambda a, b: jnp.where(pred, a, b), new, old)


def accept(key, log_alpha):
    """Decide a Metropolis-Hastings move.

    Args:
        key: a ``jax.random`` key.
        log_alpha: the log acceptance ratio.

    Returns:
        ``(accepted, probability)``: a boolean, and ``min(1, exp(log_alpha))``.
        A NaN ratio compares false, so the move is rejected, and its
        probability is reported as 0.

    Examples:
        >>> accepted, prob = accept(key, new.score - old.score)
    """
    accepted = jnp.log(jax.random.uniform(key)) < log_alpha
    prob = jnp.where(jnp.isnan(log_alpha), 0.0, jnp.exp(jnp.minimum(log_alpha, 0.0)))
    return accepted, prob


def _frozen(kernel, name: str) -> str:
    kind = type(kernel).__name__
    return (
        f"{kind} is an immutable value: its settings are fixed when it is built, and "
        f"everything a run needs lives in its MCMCState, so one kernel serves many models and "
        f"chains at once. Build a new kernel with the setting you want instead of assigning "
        f"{kind}.{name}."
    )


def resolve_selection(name: str, given, trace, observed):
    """The choices a kernel moves: ``given``, or every unobserved choice.

    Args:
        name: the kernel's name, for messages.
        given: the selection the kernel was built with, or ``None``.
        trace: the trace the chain starts from.
        observed: the selection of observed addresses, or ``None``.

    Returns:
        A ``ppl.Selection``.

    Raises:
        PPLError: if there is no selection and no ``observed`` (the kernel would
            move observations), or if ``given`` includes an observed choice.

    Examples:
        >>> resolve_selection("hmc", None, trace, ppl.select("y"))   # ~select("y")
    """
    refuse_in_trace(trace, f"MCMC ({name})")
    if given is None:
        if observed is None:
            raise PPLError(
                f"{name} was built without a selection, so it would move every choice, "
                f"observations included. Build it with a selection, e.g. {name}(ppl.select('z')), "
                f"or pass observed= (the driver ppl.inference.chains.run does this for you)."
            )
        return ~as_selection(observed)
    if observed is not None:
        clash = trace.choices.filter(given).filter(observed)
        if not clash.is_empty():
            shown = ", ".join(fmt_addr(a) for a in clash.addresses())
            raise PPLError(
                f"{name}: the selection {given!r} includes the observed choice {shown}; a kernel "
                f"must not move observations. Select only latent addresses."
            )
    return given


def _hashable(value):
    """A hashable stand-in for a kernel setting, equal for equal settings."""
    if isinstance(value, Mapping):
        return tuple(sorted((k, _hashable(v)) for k, v in value.items()))
    if isinstance(value, (tuple, list)):
        return (type(value).__name__, *(_hashable(v) for v in value))
    if isinstance(value, (np.ndarray, jax.Array)) and not is_tracer(value):
        array = np.asarray(value)
        return ("array", array.dtype.str, array.shape, array.tobytes())
    try:
        hash(value)
    except TypeError:
        return ("object", id(value))
    return value


class Kernel(abc.ABC):
    """Base class of MCMC kernels: subclasses implement ``init`` and ``step``.

    A kernel is a transition ``step(key, state) -> state`` that leaves the
    posterior of the chain's model invariant, with ``init(trace, n_warmup,
    observed)`` giving the first ``MCMCState``. The kernels of the
    library are built by ``ppl.inference.mh``, ``ppl.inference.mala``,
    ``ppl.inference.hmc``, ``ppl.inference.nuts`` and the
    compositions ``ppl.inference.cycle``,
    ``ppl.inference.mixture_kernel`` and ``ppl.inference.repeat_kernel``;
    ``ppl.inference.run_mcmc`` runs one over several chains.

    A kernel is an immutable value. Its settings are given once, to
    ``Kernel.__init__``; afterwards setting or deleting an attribute is an
    error, so nothing a run learns (a selection, transforms, adaptation) can
    be written onto the kernel: it travels in the ``MCMCState``. One
    kernel object therefore serves any number of models and chains at once.
    Kernels compare and hash by value: two kernels of the same type and
    settings are equal, so ``run_mcmc(key, nuts(), ...)`` written twice reuses
    the first call's compiled chains (settings that are functions or
    generative functions, like a proposal, compare by identity).

    Args:
        **settings: the kernel's settings (its selection, step size, ...),
            each stored as an attribute of that name.

    Raises:
        AttributeError: on any later attempt to set or delete an attribute.

    Examples:
        >>> @ppl.gen
        ... def model():
        ...     mu = ppl.normal(0.0, 1.0) @ "mu"
        ...     return ppl.normal(mu, 1.0) @ "y"
        >>> trace, _ = model.generate(jax.random.key(0), ppl.ChoiceMap.d({"y": 1.0}), ())
        >>> kernel = ppl.inference.mh(ppl.select("mu"))
        >>> kernel == ppl.inference.mh(ppl.select("mu"))   # equal settings: equal kernels
        True
        >>> state = kernel.init(trace)
        >>> state = jax.jit(kernel.step)(jax.random.key(1), state)
        >>> float(state.trace.choices["y"]), kernel.stats(state)   # MH reports no statistics
        (1.0, {})
        >>> kernel.selection = ppl.select("y")
        Traceback (most recent call last):
        AttributeError: MH is an immutable value: ...
    """

    def __init__(self, **settings):
        for name, value in settings.items():
            object.__setattr__(self, name, value)

    def __setattr__(self, name, value):
        raise AttributeError(_frozen(self, name))

    def _identity(self):
        return (type(self), _hashable(vars(self)))

    def __eq__(self, other):
        return isinstance(other, Kernel) and self._identity() == other._identity()

    def __hash__(self):
        return hash(self._identity())

    def __delattr__(self, name):
        raise AttributeError(_frozen(self, name))

    def init(
        self, trace: Trace, n_warmup: int = 0, observed=None, *, shared: bool = False
    ) -> MCMCState:
        """The initial state of a chain at ``trace``.

        Args:
            trace: the starting trace (observations included as constrained choices).
            n_warmup: the number of adaptation steps that will follow (kernels
                that adapt a step size or a mass matrix do it during them).
            observed: the selection of observed addresses; a kernel built
                without a selection moves every other choice (the driver
                ``ppl.inference.chains.run`` passes it).
            shared: whether other kernels move the same trace between this
                kernel's steps (compositions pass ``True``); a kernel that keeps
                its position outside the trace then re-reads it every step.

        Returns:
            An ``MCMCState``.

        Raises:
            PPLError: when the selection is empty or includes observations, or
                the kernel cannot move the selected choices.
        """
        return MCMCState(trace, one(), None)

    @abc.abstractmethod
    def step(self, key, state: MCMCState) -> MCMCState:
        """One transition: a pure function of the key and the state.

        Args:
            key: a ``jax.random`` key.
            state: the state from ``init`` or a previous step.

        Returns:
            The next ``MCMCState``.
        """

    def __call__(self, key, state: MCMCState) -> MCMCState:
        return self.step(key, state)

    def current_choices(self, state: MCMCState):
        """The chain's current choices.

        A kernel may keep its position outside the trace between steps (NUTS
        alone does, to avoid re-running the model after every step); this reads
        the position wherever it is.

        Args:
            state: a state of this kernel.

        Returns:
            A ``ppl.ChoiceMap`` of every choice of the trace.
        """
        return state.trace.choices

    def stats(self, state: MCMCState) -> dict:
        """Statistics of the step that produced ``state``, recorded by the driver.

        ``ppl.inference.chains.run`` records them at every kept step in
        ``ppl.inference.chains.MCMCResult.stats``. NUTS reports
        ``diverging``, ``tree_depth``, ``num_steps``, ``step_size`` and
        ``energy``; HMC and MALA report ``diverging`` and ``step_size``;
        Metropolis-Hastings reports nothing beyond the acceptance probability.

        Args:
            state: a state of this kernel (after at least ``init``).

        Returns:
            A dict from a statistic's name to a scalar array (empty by default).

        Examples:
            >>> state = kernel.step(key, kernel.init(trace, observed=ppl.select("y")))
            >>> kernel.stats(state)["diverging"]
        """
        return {}

    def materialize(self, state: MCMCState) -> MCMCState:
        """``state`` with its trace brought up to date with the chain's position.

        Args:
            state: a state of this kernel.

        Returns:
            An ``MCMCState`` whose ``trace`` holds the current choices.
        """
        return state
