"""The pure fitting step: an objective and an optimizer as a pair of functions.

``fitter`` returns a ``Fitter``, a named tuple of two pure functions
in the manner of an optax transformation:

- ``init(model_args, guide_args, data=None) -> FitState`` splits the
  arguments into what is trained and the rest (``trainable=``, resolved by
  ``ppl.inference.vi._trainable``) and initialises the optimizer;
- ``step(key, state) -> (state, value)`` takes one gradient step on the
  objective estimated with ``key`` and returns the estimate.

Everything a step needs is in the ``FitState``: the trained leaves, the
optimizer state, the frozen arrays and the data, the layout that rebuilds the
arguments, and the non-finite guard (the parameters at the last step whose
objective and gradient were finite, and whether a step since was not). The
driver ``ppl.inference.vi.fit`` runs these steps in compiled chunks.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax

from jax.sharding import Mesh

from ppl._errors import PPLError
from ppl.inference._sharding import check_divisible, particle_mesh, replicate
from ppl.inference.vi._data import check_data, check_subsampling
from ppl.inference.vi._loss import estimator, loss
from ppl.inference.vi._static import Static
from ppl.inference.vi._trainable import Layout, split

# One object, so that fits with the default optimizer share their compiled chunks.
DEFAULT_OPTIMIZER = optax.adam(1e-3)


class FitState(eqx.Module):
    """The state of a fit: a pytree, so it goes through ``jax.jit`` and ``lax.scan``.

    Attributes:
        params: ``(model_args, guide_args)`` with the trained leaves, ``None``
            everywhere else.
        opt_state: the optimizer's state.
        last_good: ``params`` at the last step whose objective estimate and
            gradient were finite (the start, before any step).
        failed: a boolean scalar: some step's estimate or gradient was not
            finite. From then on ``step`` leaves the state as it is.
        frozen: the frozen arrays of the arguments (data, integer arrays,
            unmarked floats), as passed in.
        data: the examples of ``data=`` (or ``None``).
        layout: where every leaf of the arguments goes (static).
        n_data: the number of examples, or ``None`` (static).
        batch_size: examples drawn per step, or ``None`` (static).

    Examples:
        >>> import jax, jax.numpy as jnp, optax
        >>> from ppl.inference import vi
        >>> objective = lambda key, model_args, guide_args: -((guide_args[0] - 1.0) ** 2)
        >>> state = vi.fitter(objective, optax.adam(0.05)).init((), (jnp.array(0.0),))
        >>> state.arguments(), bool(state.failed)
        (((), (Array(0., dtype=float32),)), False)
    """

    params: Any
    opt_state: Any
    last_good: Any
    failed: jax.Array
    frozen: tuple
    data: Any
    layout: Layout = eqx.field(static=True)
    n_data: int | None = eqx.field(static=True)
    batch_size: int | None = eqx.field(static=True)

    def arguments(self, *, last_good: bool = False) -> tuple:
        """``(model_args, guide_args)``: the trained leaves put back among the others.

        Args:
            last_good: rebuild from ``last_good`` (the parameters at the
                last finite step) instead of the current ones.

        Returns:
            The pair of argument tuples; every leaf that is not trained is the
            very object passed to ``init``.

        Examples:
            >>> import jax.numpy as jnp, optax
            >>> from ppl.inference import vi
            >>> init, _ = vi.fitter(lambda key, m, g: -(g[0] ** 2), optax.sgd(0.1))
            >>> data = jnp.ones(3)
            >>> model_args, guide_args = init((data,), (jnp.array(0.0),)).arguments()
            >>> model_args[0] is data
            True
        """
        return self.layout.rebuild(self.last_good if last_good else self.params, self.frozen)


class Fitter(NamedTuple):
    """A fitting algorithm as two pure functions (build with ``fitter``).

    Attributes:
        init: ``init(model_args, guide_args, data=None) -> FitState``.
        step: ``step(key, state) -> (state, value)``: one optimizer step on
            the objective estimated with ``key``; ``value`` is the estimate
            (a scalar, higher is better). A step whose estimate or gradient is
            not finite leaves the parameters where they were and sets
            ``state.failed``; later steps change nothing.

    Examples:
        >>> import jax, jax.numpy as jnp, optax
        >>> from ppl.inference import vi
        >>> objective = lambda key, model_args, guide_args: -((guide_args[0] - 1.0) ** 2)
        >>> init, step = vi.fitter(objective, optax.sgd(0.1))
        >>> state, value = jax.jit(step)(jax.random.key(0), init((), (jnp.array(0.0),)))
        >>> float(value), round(float(state.arguments()[1][0]), 6)
        (-1.0, 0.2)
    """

    init: Callable[..., FitState]
    step: Callable[[Any, FitState], tuple]


class Spec(NamedTuple):
    """What a step needs besides its state; hashable, a static argument of ``jax.jit``.

    Attributes:
        objective: the objective, wrapped.
        optimizer: the optax transformation, wrapped.
        num_samples: estimates averaged per step (per example with data).
        mesh: ``None``, or the one-axis mesh over which a minibatch's examples
            (with data), else the ``num_samples`` estimates, are split.
        subsample: with data, whether the minibatch is passed whole to a model
            that subsamples it (``ppl.vmap(..., subsample_of=N)``) rather than
            example by example.
    """

    objective: Static
    optimizer: Static
    num_samples: int
    mesh: Mesh | None = None
    subsample: bool = False


def fitter(
    objective,
    optimizer: optax.GradientTransformation | None = None,
    *,
    trainable: Any = (False, True),
    num_samples: int = 1,
    batch_size: int | None = None,
    subsample: bool = False,
    mesh: Mesh | None = None,
) -> Fitter:
    """The pure ``init``/``step`` pair that ``ppl.inference.vi.fit`` drives.

    Args:
        objective: a variational objective (``vi.elbo(...)``, ...) or any
            function ``(key, model_args, guide_args) -> scalar`` to maximise.
        optimizer: an optax ``GradientTransformation`` (default Adam, step 1e-3).
        trainable: which leaves of ``(model_args, guide_args)`` are trained,
            as for ``ppl.inference.vi.fit`` (default: the guide's arguments).
        num_samples: independent objective estimates averaged per step (per
            example with data).
        batch_size: examples per step when ``init`` is given ``data`` (default
            ``min(64, number of examples)``).
        subsample: pass each minibatch whole to a model that subsamples it
            (``ppl.vmap(..., subsample_of=N)``), as ``vi.fit`` describes.
        mesh: ``None``, or a one-axis ``jax.sharding.Mesh`` over which each
            step's work is split as ``vi.fit(..., mesh=)`` splits it; ``init``
            places the state replicated on it.

    Returns:
        A ``Fitter`` ``(init, step)``. ``init`` raises as ``fit`` does
        for ``trainable`` and ``data`` (and warns about untrainable leaves).

    Raises:
        PPLError: if ``objective`` is neither an objective nor a function, or
            ``num_samples`` is not a positive int; with ``subsample``, if the
            objective is not ``vi.elbo``; if ``mesh`` is not a one-axis mesh
            (and, from ``init``, if the minibatch or the estimates cannot be
            split equally over it).

    Examples:
        >>> import jax, jax.numpy as jnp, optax
        >>> from ppl.inference import vi
        >>> init, step = vi.fitter(lambda key, m, g: -(g[0] - 1.0) ** 2, optax.sgd(0.1))
        >>> state = init((), (jnp.array(0.0),))
        >>> step = jax.jit(step)
        >>> for key in jax.random.split(jax.random.key(0), 100):
        ...     state, value = step(key, state)
        >>> (), (mu,) = state.arguments()
        >>> round(float(mu), 3)
        1.0
    """
    mesh = particle_mesh(mesh, "fitter")
    spec = make_spec(objective, optimizer, num_samples, "fitter", mesh, subsample)

    def init(model_args, guide_args, data=None) -> FitState:
        n_data, size = check_data(data, batch_size, "fitter", spec.subsample)
        check_split(spec, n_data, size, "fitter")
        params, frozen, layout = split(model_args, guide_args, trainable, caller="fitter")
        return replicate(start(spec, params, frozen, layout, data, n_data, size), mesh)

    def fit_step(key, state: FitState) -> tuple:
        return step(spec, key, state)

    return Fitter(init, fit_step)


def make_spec(
    objective, optimizer, num_samples: int, caller: str, mesh=None, subsample: bool = False
) -> Spec:
    """A ``Spec``, checked.

    Args:
        objective: the objective or function to maximise.
        optimizer: an optax transformation, or ``None`` for the default.
        num_samples: a positive int.
        caller: the public function's name, for messages.
        mesh: ``None`` or a mesh already checked by ``particle_mesh``.
        subsample: whether the data are subsampled by the model (see ``Spec``).

    Returns:
        The ``Spec``.

    Raises:
        PPLError: if ``objective`` is not callable or ``num_samples`` is not a
            positive int; with ``subsample``, if the objective is not one that
            stays unbiased under it (see ``ppl.inference.vi._data.check_subsampling``).

    Examples:
        >>> make_spec(lambda key, m, g: g[0], None, 4, "fit").num_samples
        4
    """
    is_int = isinstance(num_samples, (int, np.integer)) and not isinstance(num_samples, bool)
    if not is_int or num_samples < 1:
        raise PPLError(f"{caller} needs num_samples >= 1, got num_samples={num_samples!r}.")
    estimator(objective, caller)
    if subsample:
        check_subsampling(objective, caller)
    optimizer = DEFAULT_OPTIMIZER if optimizer is None else optimizer
    return Spec(Static(objective), Static(optimizer), int(num_samples), mesh, bool(subsample))


def check_split(spec: Spec, n_data: int | None, batch_size: int | None, caller: str) -> None:
    """Refuse work that the mesh's devices cannot share equally: the minibatch's
    examples with data, the ``num_samples`` estimates without.

    Args:
        spec: the fit's ``Spec`` (its mesh and ``num_samples``).
        n_data, batch_size: as ``ppl.inference.vi._data.check_data`` returns them.
        caller: the public function's name, for messages.

    Raises:
        PPLError: naming the count, the mesh's size and the nearest counts that fit.

    Examples:
        >>> check_split(make_spec(lambda key, m, g: g[0], None, 4, "fit"), None, None, "fit")
    """
    if n_data is None:
        check_divisible(spec.num_samples, spec.mesh, "num_samples", caller)
    else:
        check_divisible(batch_size or 0, spec.mesh, "batch_size", caller)


def start(spec: Spec, params, frozen, layout: Layout, data, n_data, batch_size) -> FitState:
    """The initial ``FitState`` from split arguments.

    Args:
        spec: the fit's ``Spec`` (its optimizer initialises the state).
        params, frozen, layout: as ``ppl.inference.vi._trainable.split`` returns them.
        data: the examples, or ``None``.
        n_data, batch_size: as ``ppl.inference.vi._data.check_data`` returns them.

    Returns:
        A ``FitState`` with ``failed`` false and ``last_good`` the start.

    Examples:
        >>> import jax.numpy as jnp
        >>> spec = make_spec(lambda key, m, g: g[0], None, 1, "fit")
        >>> params, frozen, layout = split((), (jnp.array(0.0),), (False, True), caller="fit")
        >>> state = start(spec, params, frozen, layout, None, None, None)
        >>> state.params
        ((), (Array(0., dtype=float32),))
    """
    # Strongly typed from the start (weak-typed initial values such as jnp.array(0.0)
    # would otherwise come back strong from the first chunk and compile it again).
    params = jax.tree.map(_strong, params)
    opt_state = spec.optimizer.value.init(params)
    opt_state = jax.tree.map(lambda x: _strong(x) if eqx.is_array(x) else x, opt_state)
    return FitState(
        params, opt_state, params, jnp.array(False), frozen, data, layout, n_data, batch_size
    )


def step(spec: Spec, key, state: FitState) -> tuple:
    """One optimizer step on the objective estimated with ``key``.

    Args:
        spec: the fit's ``Spec``.
        key: a ``jax.random`` key.
        state: the ``FitState``.

    Returns:
        ``(state, value)``: the next state and the objective estimate at the
        parameters the step started from. After the first step whose estimate
        or gradient is not finite, the parameters and the optimizer state stay
        as they were, ``last_good`` keeps the parameters of the last finite
        step and ``failed`` is set.

    Examples:
        >>> import jax, jax.numpy as jnp, optax
        >>> spec = make_spec(lambda key, m, g: -((g[0] - 1.0) ** 2), optax.sgd(0.1), 1, "fit")
        >>> params, frozen, layout = split((), (jnp.array(0.0),), (False, True), caller="fit")
        >>> state = start(spec, params, frozen, layout, None, None, None)
        >>> state, value = step(spec, jax.random.key(0), state)
        >>> float(value), round(float(state.params[1][0]), 6)
        (-1.0, 0.2)
    """
    p, opt_state = state.params, state.opt_state
    new_p, new_opt_state, value, finite = advance(spec, key, state)
    go = finite & ~state.failed

    def keep(new, old):
        return jnp.where(go, new, old)

    new = dataclasses.replace(
        state,
        params=jax.tree.map(keep, new_p, p),
        opt_state=jax.tree.map(keep, new_opt_state, opt_state),
        last_good=jax.tree.map(keep, p, state.last_good),
        failed=state.failed | ~finite,
    )
    return new, value


def advance(spec: Spec, key, state: FitState) -> tuple:
    """One optimizer step on the objective estimated with ``key``, unguarded.

    ``step`` guards it; ``fit`` runs it as is (its loop stops at the first
    step that is not finite and recomputes the last finite parameters).

    Args:
        spec: the fit's ``Spec``.
        key: a ``jax.random`` key.
        state: the ``FitState`` (its ``params`` and ``opt_state`` are used).

    Returns:
        ``(params, opt_state, value, finite)``: the updated parameters and
        optimizer state, the objective estimate at ``state.params``, and
        whether the estimate and the gradient were finite (when not, the
        updates are not meaningful).

    Examples:
        >>> import jax, jax.numpy as jnp, optax
        >>> spec = make_spec(lambda key, m, g: -((g[0] - 1.0) ** 2), optax.sgd(0.1), 1, "fit")
        >>> params, frozen, layout = split((), (jnp.array(0.0),), (False, True), caller="fit")
        >>> state = start(spec, params, frozen, layout, None, None, None)
        >>> new_params, _, value, finite = advance(spec, jax.random.key(0), state)
        >>> float(value), round(float(new_params[1][0]), 6), bool(finite)
        (-1.0, 0.2, True)
    """
    p = state.params
    value, grads = jax.value_and_grad(lambda q, k: loss(spec, state, q, k))(p, key)
    finite = jnp.isfinite(value) & _all_finite(grads)
    updates, opt_state = spec.optimizer.value.update(grads, state.opt_state, p)
    return optax.apply_updates(p, updates), opt_state, -value, finite


def _all_finite(tree) -> jax.Array:
    leaves = [jnp.all(jnp.isfinite(x)) for x in jax.tree.leaves(tree)]
    return jnp.all(jnp.stack(leaves)) if leaves else jnp.array(True)


def _strong(x) -> jax.Array:
    x = jnp.asarray(x)
    return jnp.asarray(x, dtype=x.dtype)  # an explicit dtype drops the weak type


__all__ = ["FitState", "Fitter", "fitter"]
