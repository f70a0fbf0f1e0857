"""Which algorithms may run a model with a subsampled ``ppl.vmap``, and the checks.

``ppl.vmap(g, subsample_of=N)`` scales its elements' summed log density by
``N / len``: an unbiased estimate of the full data's log density. An
objective that is linear in the model's log density (``vi.elbo``) stays
unbiased under it. Everything that exponentiates or compares log densities
does not: importance weights, SMC's incremental weights, MCMC's acceptance
ratios and gradients, enumeration, and objectives such as ``vi.iwelbo``'s
log-mean-exp. They call ``refuse_subsampled``, which names the
addresses and the way out.
"""

from __future__ import annotations

import jax

from ppl._errors import PPLError, fmt_addrs
from ppl.combinators.vmap import VmapTrace
from ppl.improper import addresses_within


def _is_subsampled(x) -> bool:
    return isinstance(x, VmapTrace) and x.gen_fn.subsample_of is not None


def subsampled_addresses(trace) -> list:
    """The addresses of the choices made inside a subsampled ``ppl.vmap``.

    Args:
        trace: a trace, or a shape-only one from ``gen_fn.trace_shape(args)``.

    Returns:
        A list of address tuples (empty when nothing is subsampled).

    Examples:
        >>> subsampled_addresses(model.trace_shape((x_batch,)))
        [('points', 'y')]
    """
    return addresses_within(trace, _is_subsampled)


def subsample_sizes(trace) -> set:
    """The ``subsample_of`` sizes of the subsampled ``ppl.vmap`` calls in ``trace``.

    Args:
        trace: a trace, or a shape-only one.

    Returns:
        A set of ints (empty when nothing is subsampled).

    Examples:
        >>> subsample_sizes(model.trace_shape((x_batch,)))
        {100000}
    """
    leaves = jax.tree.leaves(trace, is_leaf=_is_subsampled)
    return {t.gen_fn.subsample_of for t in leaves if _is_subsampled(t)}


def model_trace_shape(model, args):
    """``model.trace_shape(args)``, or ``None`` if the model cannot simulate.

    Examples:
        >>> model_trace_shape(model, (x_batch,)) is not None
        True
    """
    try:
        return model.trace_shape(args)
    except Exception:  # an observed choice without a sampler: the algorithm says what is wrong
        return None


def refuse_subsampled(model, args, algorithm: str) -> None:
    """Raise if ``model`` at ``args`` calls a ``ppl.vmap(..., subsample_of=N)``.

    Args:
        model: the generative function.
        args: its arguments (a tuple).
        algorithm: what is refused, for the message (``"importance sampling"``).

    Raises:
        PPLError: naming the subsampled addresses, why ``algorithm`` would be
            biased, and what to do instead.

    Examples:
        >>> refuse_subsampled(model, (), "importance sampling")  # nothing subsampled
    """
    shape = model_trace_shape(model, args)
    if shape is not None:
        refuse_in_trace(shape, algorithm)


def refuse_in_trace(trace, algorithm: str) -> None:
    """Raise if ``trace`` (of any model, shapes only or batched is fine) holds a
    subsampled ``ppl.vmap`` call; as ``refuse_subsampled``.

    Raises:
        PPLError: naming the subsampled addresses and the way out.

    Examples:
        >>> refuse_in_trace(trace, "MCMC (nuts)")  # nothing subsampled
    """
    if not subsample_sizes(trace):
        return
    addrs = subsampled_addresses(trace)
    name = getattr(trace.gen_fn, "name", "the model")
    raise PPLError(
        f"{algorithm} on {name}: {fmt_addrs(addrs) if addrs else 'a choice'} is made in a "
        "ppl.vmap(..., subsample_of=N), whose log density is a minibatch's scaled by N/B. That "
        f"estimate is unbiased only inside an objective linear in the log density (vi.elbo); "
        f"{algorithm} exponentiates or compares log densities, so a scaled minibatch would "
        "bias it. Run it on the full data (the same model with ppl.vmap(...) without "
        "subsample_of), or fit with vi.elbo and vi.fit(..., data=, subsample=True)."
    )
