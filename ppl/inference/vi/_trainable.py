"""What is trained: ``trainable=`` resolved over ``(model_args, guide_args)``.

``trainable`` is a prefix of the pair ``(model_args, guide_args)`` (an
equinox filter spec): ``True``/``False`` marks a whole part, a nested tuple
(or dict, or module) marks its pieces, a function ``leaf -> bool`` decides
leaf by leaf. Within a marked part only floating-point arrays are trained.
Every leaf then travels one of three ways (its *kind*):

- ``TRAIN``: a marked floating-point array, a parameter;
- ``FROZEN``: any other array (data, integer arrays, unmarked floats), passed
  into compiled programs as an ordinary argument;
- ``STATIC``: anything else (functions, strings, Python numbers), a constant.

A marked Python int or float, or a marked integer array, cannot be trained and
gets a warning naming its path; booleans are flags and masks and pass
silently. Nothing to train at all is an error listing the leaves looked at.
``split`` does all this once; ``Layout.rebuild`` puts the pieces back.
"""

from __future__ import annotations

import warnings
from typing import Any, NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from ppl._errors import PPLError
from ppl.inference.vi._static import Static

TRAIN, FROZEN, STATIC = 0, 1, 2  # how each leaf of (model_args, guide_args) travels
_PARTS = ("model_args", "guide_args")


class Layout(NamedTuple):
    """Where every leaf of ``(model_args, guide_args)`` goes; hashable, so it
    can be (part of) a static argument of ``jax.jit``.

    Attributes:
        treedef: the tree definition of ``(model_args, guide_args)``, wrapped.
        kinds: ``TRAIN``, ``FROZEN`` or ``STATIC`` for each leaf, in order.
        static: the ``STATIC`` leaves, in order, each wrapped (so that ``1``
            and ``1.0`` give different layouts).

    Examples:
        >>> params, frozen, layout = split(
        ...     (jnp.ones(3), "a"), (jnp.array(0.0),), (False, True), caller="fit"
        ... )
        >>> layout.kinds
        (1, 2, 0)
        >>> model_args, guide_args = layout.rebuild(params, frozen)
    """

    treedef: Static
    kinds: tuple
    static: tuple

    def rebuild(self, params, frozen) -> tuple:
        """``(model_args, guide_args)`` from the trained and frozen leaves.

        Args:
            params: a pytree shaped like ``split``'s ``params`` (the
                trained leaves, ``None`` elsewhere), for instance updated by
                an optimizer or traced under ``jax.grad``.
            frozen: the frozen arrays, as ``split`` returned them (or
                arrays of the same shapes standing in for them).

        Returns:
            The pair ``(model_args, guide_args)``: the leaves of ``params``
            where trained, ``frozen`` where frozen, and the very static
            objects that were split.

        Raises:
            StopIteration: if ``params`` or ``frozen`` hold fewer leaves than
                the layout expects (they did not come from this layout).

        Examples:
            >>> params, frozen, layout = split((), (jnp.array(0.0),), (False, True), caller="fit")
            >>> float(layout.rebuild(jax.tree.map(lambda x: x + 1, params), frozen)[1][0])
            1.0
        """
        it = (iter(jax.tree.leaves(params)), iter(frozen), iter(s.value for s in self.static))
        return jax.tree.unflatten(self.treedef.value, [next(it[kind]) for kind in self.kinds])


def split(model_args, guide_args, trainable, *, caller: str) -> tuple[Any, tuple, Layout]:
    """Split ``(model_args, guide_args)`` into what ``trainable`` trains and the rest.

    Call it directly from the public function (``fit``, ``gradient_variance``):
    its warning points at that function's caller.

    Args:
        model_args: the model's arguments (a tuple of pytrees).
        guide_args: the guide's arguments (a tuple of pytrees).
        trainable: a prefix of ``(model_args, guide_args)`` as in the module
            docstring: ``(False, True)`` the guide's arguments, ``(True, True)``
            both, finer tuples for pieces, a function ``leaf -> bool`` anywhere.
        caller: the public function's name, used in messages (``"fit"``).

    Returns:
        ``(params, frozen, layout)``: ``params`` is ``(model_args, guide_args)``
        with the trained leaves kept and ``None`` everywhere else (so optimizers
        and gradients see the arguments' structure); ``frozen`` is the tuple of
        frozen arrays; ``layout`` is the ``Layout`` that rebuilds the
        arguments from them.

    Raises:
        PPLError: if ``trainable`` does not match the arguments, holds an
            entry that is neither a bool nor a function, has a function that
            returns a non-bool, or marks no floating-point array (the message
            lists the leaves looked at and the fix).

    Warns:
        UserWarning: naming each marked leaf that cannot be trained (a Python
            int or float, an integer array).

    Examples:
        >>> params, frozen, layout = split(
        ...     (jnp.ones(3), 0.5), (jnp.array(0.0), "q"), (False, True), caller="fit"
        ... )
        >>> params
        ((None, None), (Array(0., dtype=float32, weak_type=True), None))
        >>> len(frozen), layout.kinds
        (1, (1, 2, 0, 2))
    """
    args = (model_args, guide_args)
    with_paths, treedef = jax.tree_util.tree_flatten_with_path(args)
    paths = [_path_name(p) for p, _ in with_paths]
    leaves = [leaf for _, leaf in with_paths]
    marked = _marks(args, trainable, len(leaves), caller)
    kinds, untrainable = [], []
    for path, leaf, mark in zip(paths, leaves, marked):
        if mark and eqx.is_inexact_array(leaf):
            kinds.append(TRAIN)
            continue
        kinds.append(FROZEN if eqx.is_array(leaf) else STATIC)
        if mark and _looks_like_a_parameter(leaf):
            untrainable.append(f"{path} ({_describe(leaf)})")
    if TRAIN not in kinds:
        raise PPLError(_nothing_to_train(caller, trainable, paths, leaves, marked))
    if untrainable:
        warnings.warn(_untrainable(caller, untrainable), UserWarning, stacklevel=3)
    layout = Layout(
        Static(treedef),
        tuple(kinds),
        tuple(Static(x) for x, kind in zip(leaves, kinds) if kind == STATIC),
    )
    params = jax.tree.unflatten(
        treedef, [x if kind == TRAIN else None for x, kind in zip(leaves, kinds)]
    )
    frozen = tuple(x for x, kind in zip(leaves, kinds) if kind == FROZEN)
    return params, frozen, layout


def _marks(args, trainable, n_leaves: int, caller: str) -> list:
    """``trainable`` resolved to one bool per leaf of ``args``."""

    def resolve(spec, sub):
        if isinstance(spec, (bool, np.bool_)):
            return jax.tree.map(lambda _: bool(spec), sub)
        if callable(spec):
            return jax.tree.map(lambda leaf: _as_bool(spec(leaf), spec, leaf, caller), sub)
        raise PPLError(
            f"{caller}'s trainable= holds {spec!r}; its entries must be True, False or a function "
            "leaf -> bool, e.g. trainable=(False, True) (the guide's arguments) or (True, True)."
        )

    try:
        marked = jax.tree.leaves(jax.tree.map(resolve, trainable, args))
    except PPLError:
        raise
    except (ValueError, TypeError) as err:
        raise PPLError(
            f"{caller}'s trainable={_show(trainable)} does not match (model_args, guide_args): a "
            f"tuple there must have one entry per argument, nesting like the arguments, with True, "
            "False or a function leaf -> bool at any level, e.g. trainable=((False, True), True) "
            f"to train the second model argument and the guide's. JAX said: {err}"
        ) from None
    assert len(marked) == n_leaves
    return marked


def _as_bool(value, spec, leaf, caller: str) -> bool:
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    raise PPLError(
        f"{caller}'s trainable function {_show(spec)} returned {value!r} for a leaf "
        f"{_describe(leaf)}; it must return True or False."
    )


def _looks_like_a_parameter(leaf) -> bool:
    if eqx.is_array(leaf):
        return bool(jnp.issubdtype(leaf.dtype, jnp.integer))
    return isinstance(leaf, (int, float)) and not isinstance(leaf, bool)


def _untrainable(caller: str, named: list) -> str:
    return (
        f"{caller} does not train {', '.join(named)}: trainable= marks "
        f"{'it' if len(named) == 1 else 'them'}, but only floating-point arrays are trained. "
        "To train one, pass it as a float array (jnp.array(0.5), not 0.5 or jnp.array(1)); "
        "to keep it fixed without this warning, mark it False in trainable=, "
        "e.g. trainable=(False, (True, False)) for a guide whose second argument is fixed."
    )


def _nothing_to_train(caller: str, trainable, paths, leaves, marked) -> str:
    looked = [f"{p} ({_describe(x)})" for p, x, m in zip(paths, leaves, marked) if m]
    if len(looked) > 8:
        looked = [*looked[:8], f"and {len(looked) - 8} more"]
    seen = (
        f"it marks {', '.join(looked)}, none a floating-point array"
        if looked
        else "it marks no leaf at all (the marked arguments are empty)"
    )
    msg = f"{caller} found nothing to train: with trainable={_show(trainable)} {seen}. "
    model_floats = [
        p for p, x in zip(paths, leaves) if p.startswith("model_args") and eqx.is_inexact_array(x)
    ]
    if model_floats and not any(m for p, m in zip(paths, marked) if p.startswith("model_args")):
        msg += (
            f"The model's arguments hold floating-point arrays ({', '.join(model_floats[:4])}), "
            f"but they are data unless marked: trainable=(True, True) trains them too. "
        )
    return msg + (
        "Pass initial parameters as float arrays (jnp.array(0.0), not 0 or 0.0), and mark what to "
        "train: trainable=(False, True) the guide's arguments (the default), trainable=(True, "
        "True) the model's too, trainable=((False, True), True) the second model argument and the "
        "guide's."
    )


def _path_name(path) -> str:
    return _PARTS[path[0].idx] + jax.tree_util.keystr(path[1:])


def _describe(leaf) -> str:
    if eqx.is_array(leaf):
        name = jnp.dtype(leaf.dtype).name
        article = "an" if name.startswith("int") else "a"
        return f"{article} {name} array of shape {tuple(jnp.shape(leaf))}"
    return f"a Python {type(leaf).__name__}"


def _show(trainable) -> str:
    if callable(trainable) and not isinstance(trainable, (tuple, list, dict)):
        return getattr(trainable, "__name__", repr(trainable))
    return repr(trainable)
