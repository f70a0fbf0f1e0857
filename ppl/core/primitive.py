"""The sample primitive: a random choice as a JAX primitive, and tracer checks.

``gen_fn(*args) @ addr`` binds ``sample_p``. JAX can stage it (its abstract
evaluation asks the callee for the shapes of its return value) but cannot
evaluate, batch or differentiate it: those rules refuse, with errors that say
which combinator or interface method to use instead. Interpreters of staged
programs (``ppl.transforms``) give the primitive its meaning.
"""

from __future__ import annotations

from typing import Callable

import jax
from jax._src import core as _jcore
from jax._src import dtypes as _jdtypes
from jax._src.interpreters import ad as _jad
from jax.extend import core as jex
from jax.interpreters import ad, batching

from ppl._args import hold, release
from ppl._errors import (
    VMAP_CALL,
    PPLError,
    at_address,
    choice_inside_error,
    choice_outside_error,
    fmt_addr,
)
from ppl.core.callee import Callee

sample_p = jex.Primitive("ppl_sample")
sample_p.multiple_results = True


def _outside_error(*_, addr, **__):
    raise choice_outside_error(addr)


sample_p.def_impl(_outside_error)


def _sample_abstract_eval(*in_avals, gen_fn, addr, in_tree):
    return gen_fn.retval_avals(in_tree, tuple(in_avals))


sample_p.def_abstract_eval(_sample_abstract_eval)


def _batching_error(args, dims, *, addr, **_):
    raise choice_inside_error(
        [addr],
        "inside jax.vmap within a generative function",
        ". jax.vmap cannot give each element its own address; use the combinator instead: "
        f"{VMAP_CALL} stacks the choices along a leading axis.",
    )


def _jvp_error(primals, tangents, *, addr, **_):
    raise choice_inside_error(
        [addr],
        "inside jax.jvp/jax.grad within a generative function",
        ". Differentiate the interface instead, e.g. jax.grad(lambda p: model.assess(choices, "
        "(p,))[0]), or use an @ppl.expectation for gradients of expected values.",
    )


batching.primitive_batchers[sample_p] = _batching_error
ad.primitive_jvps[sample_p] = _jvp_error


def bind_sample(gen_fn: Callee, args: tuple, addr):
    """Make the random choice ``gen_fn(*args) @ addr`` (what ``@`` does).

    Args:
        gen_fn: the callee: a generative function, or a callee that only has
            meaning inside an expectation.
        args: its arguments (leaves JAX cannot trace are held static).
        addr: the address.

    Returns:
        The choice's value, as ``gen_fn``'s return value.

    Raises:
        PPLError: if ``gen_fn`` is not a ``Callee``; errors while staging
            the callee name ``addr``; evaluated outside a program run by ppl,
            the error says to run the generative function.

    Examples:
        >>> z = bind_sample(ppl.normal, (0.0, 1.0), "z")   # inside an @gen function
    """
    if not isinstance(gen_fn, Callee):
        raise PPLError(
            f"{gen_fn!r} was called at address {fmt_addr(addr)}, but only generative functions "
            "(distributions, @ppl.gen functions, combinators) can make a random choice there."
        )
    args = hold(args, repr(gen_fn))
    gen_fn, args = gen_fn.hoisted(args)
    flat, in_tree = jax.tree.flatten(args)
    with at_address(addr):  # errors while staging the callee name this site
        outs = sample_p.bind(*flat, gen_fn=gen_fn, addr=addr, in_tree=in_tree)
        tree = gen_fn.retval_tree(in_tree, tuple(map(aval, flat)))
    return release(jax.tree.unflatten(tree, outs))


def aval(x):
    """The abstract value (shape, dtype, weak type) of an array or number ``x``.

    Args:
        x: an array, a tracer or a Python/NumPy number.

    Returns:
        Its ``jax.core.ShapedArray``.

    Raises:
        TypeError: if JAX cannot describe ``x`` (a string, a function...).

    Examples:
        >>> aval(jnp.zeros(3)).shape
        (3,)
    """
    return jax.typeof(x)


def refuse_as_array(cls, error: Callable) -> None:
    """Make JAX raise ``error(x)`` wherever it meets an instance ``x`` of ``cls``
    as an array (``jnp`` functions, ``jax.typeof``, arguments of primitives).

    Args:
        cls: a Python class that is not a value, such as ``Invocation``.
        error: ``x -> Exception`` saying what to write instead.

    Returns:
        None; JAX raises ``error(x)`` from then on.

    >>> refuse_as_array(Invocation, lambda inv: inv._misuse("used as an array"))
    """

    def refuse(x):
        raise error(x)

    _jcore.pytype_aval_mappings[cls] = refuse
    _jdtypes.canonicalize_value_handlers[cls] = refuse


def is_concrete(x) -> bool:
    """Whether every leaf of ``x`` holds a value now (none is a tracer).

    Args:
        x: a pytree.

    Returns:
        True outside any trace, or for constants under ``jit``; False if
        some leaf is being traced.

    Examples:
        >>> is_concrete((1.0, jnp.zeros(2)))
        True
        >>> jax.jit(lambda v: is_concrete(v))(1.0)   # evaluated while tracing: False
    """
    return not any(is_tracer(leaf) for leaf in jax.tree.leaves(x))


def is_tracer(x) -> bool:
    """Whether ``x`` is a value being traced (by ``jit``, ``vmap``, ``grad``, ...).

    Args:
        x: any value.

    Returns:
        ``True`` for a JAX tracer, ``False`` for anything else.

    Examples:
        >>> is_tracer(1.0)
        False
        >>> jax.jit(lambda v: is_tracer(v))(1.0)   # evaluated while tracing: True
    """
    return isinstance(x, _jcore.Tracer)


def closes_over_tracers(fn) -> bool:
    """Whether ``fn``'s closure holds a value of a trace in progress (a nested
    ``@gen`` function using an argument of the function that defines it).

    Args:
        fn: a Python function (anything else has no closure: False).

    Returns:
        True if a filled closure cell holds a tracer.

    Examples:
        >>> def outer(x):
        ...     return closes_over_tracers(lambda: x)
        >>> outer(1.0), jax.jit(outer)(1.0)   # (False, True while tracing)
    """
    for cell in getattr(fn, "__closure__", None) or ():
        try:
            contents = cell.cell_contents
        except ValueError:  # a cell not yet filled
            continue
        if not is_concrete(contents):
            return True
    return False


def is_differentiated(tree) -> bool:
    """Whether a leaf of ``tree`` is being differentiated by an enclosing
    ``jax.jvp``/``jax.grad`` (a forward- or reverse-mode tracer).

    Args:
        tree: a pytree.

    Returns:
        True if some leaf is a JVP or linearize tracer.

    Examples:
        >>> jax.grad(lambda p: float(is_differentiated(p)) + p)(1.0)   # True inside
    """
    kinds = tuple(getattr(_jad, n) for n in ("JVPTracer", "LinearizeTracer") if hasattr(_jad, n))
    return any(isinstance(leaf, kinds) for leaf in jax.tree.leaves(tree))
