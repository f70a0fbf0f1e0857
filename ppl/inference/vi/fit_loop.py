"""Fitting: the driver that runs ``ppl.inference.vi.fit_step``'s pure step.

What is trained is explicit: the guide's arguments by default, the model's
only when ``trainable=`` says so; everything else (data, integer arrays,
settings) goes through unchanged. Resolving ``trainable=`` is
``ppl.inference.vi._trainable``'s job, one optimizer step is
``ppl.inference.vi.fit_step.advance``'s; this module is the loop around
it: chunks, progress bar, history, errors.

Steps run in a jitted ``while`` loop, a chunk at a time, so the host only
wakes once per chunk (to advance the progress bar and record the history).
The loop stops at the first step whose estimate or gradient is not finite, so
the steps themselves carry no guard; the last finite parameters are
recomputed from the chunk's start when that happens. The number of steps is
an argument of the loop, chosen by time (a few calls a second); the keys come
in blocks of a fixed size (one ``split`` each), so the result does not depend
on how the blocks are grouped into calls. The chunk function is one
module-level ``jax.jit`` whose static arguments are the objective, the
optimizer, the block and the most steps a call runs (the layout of the
arguments is static in the state), so JAX's own cache compiles it once per
shape and dtype: a second identical ``fit`` compiles nothing.
"""

from __future__ import annotations

import dataclasses
from typing import Any, NamedTuple

import numpy as np
import optax

from ppl._errors import PPLError
from ppl._gfi import as_key
from ppl.inference._progress import progress_bar
from ppl.inference._sharding import particle_mesh, replicate
from ppl.inference.vi._data import check_data
from ppl.inference.vi._trainable import split
from ppl.inference.vi._chunks import MAX_CHUNK, Chunk, Sizes, _run_chunk, last_good, with_carried
from ppl.inference.vi.fit_step import check_split, make_spec, start


class FitResult(NamedTuple):
    """What ``fit`` returns.

    Attributes:
        model_args: the model's arguments, with trained leaves replaced by their
            fitted values and every other leaf the very object passed in.
        guide_args: the guide's arguments, likewise.
        history: a float array of shape ``(steps,)``, the objective estimate
            (averaged over ``num_samples`` and the minibatch) at every step.

    It is a named tuple: ``model_args, guide_args, history = result`` works too.

    Examples:
        >>> import jax, jax.numpy as jnp, optax
        >>> from ppl.inference import vi
        >>> def objective(key, model_args, guide_args):  # maximised at mu = 1
        ...     return -(guide_args[0] - 1.0) ** 2
        >>> result = vi.fit(objective, jax.random.key(0), (), (jnp.array(0.0),),
        ...                 optimizer=optax.sgd(0.1), steps=100, progress=False)
        >>> (mu,), curve = result.guide_args, result.history
        >>> round(float(mu), 3), curve.shape
        (1.0, (100,))
    """

    model_args: Any
    guide_args: Any
    history: np.ndarray


def fit(
    objective,
    key,
    model_args: tuple = (),
    guide_args: tuple = (),
    *,
    data: Any = None,
    batch_size: int | None = None,
    optimizer: optax.GradientTransformation | None = None,
    steps: int = 1000,
    num_samples: int = 1,
    trainable: Any = (False, True),
    progress: bool | str = True,
    chunk: int | None = None,
    mesh: Any = None,
    subsample: bool = False,
) -> FitResult:
    """Maximise ``objective`` over the trainable leaves of ``(model_args, guide_args)``.

    **What is trained.** ``trainable`` is a prefix of the pair
    ``(model_args, guide_args)`` (an equinox filter spec): ``True``/``False``
    marks a whole part, a nested tuple (or dict, or module) marks its pieces,
    and a function ``leaf -> bool`` decides leaf by leaf. The default
    ``(False, True)`` trains the guide's arguments and treats the model's as
    data. ``(True, True)`` also trains model parameters (a VAE's decoder);
    ``((False, True), True)`` the second of two model arguments and the
    guide's; ``(False, (True, False))`` the first of two guide arguments only;
    ``eqx.is_inexact_array`` every floating-point array of both. Within
    a marked part only floating-point arrays (jax or numpy) are trained. Every
    other leaf is returned as the object passed in: arrays go into the compiled
    program as ordinary arguments (so new data of the same shape reuses it), and
    non-arrays (functions, strings, Python numbers) as constants.

    Python numbers are never trained, also in a marked part: they are settings
    (a dropout rate inside an equinox module, a fixed scale), equinox treats
    them that way, and they stay Python numbers that the model may branch on.
    Write ``jnp.array(0.5)`` to train one. A Python int or float, or an integer
    array, in a marked part gets a warning naming its path (for example
    ``guide_args[1]``); mark it ``False`` to keep it fixed without one.
    Booleans are flags and masks, never parameters, and pass silently.

    **Data.** With ``data`` (a pytree of arrays whose leading axis indexes
    independent examples), the objective is per example: each step draws
    ``batch_size`` examples without replacement, estimates the objective for
    each with the example appended as the last argument of both ``model_args``
    and ``guide_args`` (observe it with ``observations=lambda *model_args: ...``),
    and maximises the mean over the minibatch. That is the amortised inference
    of a VAE.

    **Subsampled data.** A model with latents shared across examples (a
    regression's weights) takes the whole minibatch: with ``subsample=True``
    each step appends the ``batch_size`` examples, as one pytree, to both
    argument tuples, and the model maps them with
    ``ppl.vmap(point, ..., subsample_of=N)``, ``N`` the number of examples,
    which scales the minibatch's log density (and a guide's local terms) by
    ``N / batch_size``. The objective is then an unbiased estimate of the
    full-data objective. Only ``vi.elbo`` is accepted: the other objectives
    are not linear in the log density and a scaled minibatch would bias them.
    An automatic guide cannot give local latents inside the subsampled map a
    parameter per example; write an amortised guide that maps the minibatch
    for them. See ``docs/scaling.md``.

    **Compilation.** The steps run in one jitted loop, called once per chunk
    of steps (the number of steps is an argument, so every chunk reuses the
    same program). A later ``fit`` with the same
    objective object, the same optimizer object, the same options and arguments
    of the same shapes and dtypes reuses the compiled program; the default
    optimizer is one shared object. Python numbers among the arguments are
    compiled in, so a new value compiles again: pass values that change between
    fits as arrays.

    **Devices.** With ``mesh`` (a one-axis ``jax.sharding.Mesh``), each step's
    work is split over the mesh's devices: with ``data``, the ``batch_size``
    examples of the minibatch (each example's ``num_samples`` estimates stay
    on its device); without, the ``num_samples`` independent estimates. The
    trained parameters, the optimizer state, the frozen arguments and the
    whole of ``data`` are replicated on every device; the mean over examples
    or estimates, and so the gradient, is reduced by the all-reduces XLA's
    partitioner inserts. Keys are split before the work is split, so the fit
    follows the one-device fit with the same key (up to float rounding in the
    order of the sums). A mesh over the devices of several processes
    (``jax.distributed``) works the same way; every process then runs the same
    ``fit`` call. See ``docs/scaling.md``.

    Args:
        objective: a variational objective (``vi.elbo(...)``, ...) or any
            function ``(key, model_args, guide_args) -> scalar`` to maximise.
        key: a ``jax.random.key`` (or legacy ``PRNGKey``).
        model_args: a tuple of the model's arguments (any pytrees).
        guide_args: a tuple of the guide's arguments, holding its initial
            parameters.
        data: optional examples, split into minibatches as described above.
        batch_size: examples per step (default ``min(64, number of examples)``).
        optimizer: an optax ``GradientTransformation`` (default Adam, step 1e-3).
        steps: number of optimisation steps (at least 1).
        num_samples: independent objective estimates averaged per step (per
            example with ``data``).
        trainable: which leaves are trained, as described above.
        progress: show a progress bar (``True``: labelled ``fit`` and the
            objective's name, e.g. ``fit iwelbo(n=5)``; a string: labelled with it).
        chunk: steps per call of the compiled loop (the host wakes between
            calls) and per split of keys. Default: keys split for about
            ``steps / 100`` steps at a time (at least 10), and calls of as many
            of those blocks as run in about a quarter of a second (at most
            4096 steps).
        mesh: ``None`` (one device) or a one-axis ``jax.sharding.Mesh``, as
            described above; ``batch_size`` (with data) or ``num_samples``
            (without) must be a multiple of its number of devices.
        subsample: with ``data``, pass each minibatch whole to a model that
            subsamples it, as described above.

    Returns:
        A ``FitResult`` ``(model_args, guide_args, history)``.

    Raises:
        PPLError: if nothing is trainable (the message lists the leaves
            looked at and the fix), if ``trainable`` does not match the
            arguments, if ``objective`` is neither an objective nor a
            function, if ``data`` is empty or malformed, or if ``steps``,
            ``num_samples``, ``chunk`` or ``batch_size`` are out of range; if
            ``mesh`` is not a one-axis mesh, or the examples (with data) or the
            ``num_samples`` estimates (without) cannot be split equally over
            its devices (the message names the nearest counts that can); if
            ``subsample`` comes without ``data`` or with an objective other
            than ``vi.elbo``, or the model's ``subsample_of`` is not the
            number of examples (or the model subsamples and ``subsample`` is
            not given).
        NonFiniteLoss: if the objective or a gradient stops being finite; it
            names the step and holds the history and the last finite parameters.

    Warns:
        UserWarning: naming each leaf that ``trainable`` marks but that cannot
            be trained (a Python int or float, an integer array).

    Examples:
        >>> import jax, jax.numpy as jnp, optax
        >>> import ppl
        >>> from ppl import gen, normal
        >>> from ppl.inference import vi
        >>> @gen
        ... def model(x, noise):  # x and noise are data
        ...     w = normal(0.0, 1.0) @ "w"
        ...     return normal(w * x, noise) @ "y"
        >>> @gen
        ... def guide(mu, log_s):
        ...     return normal(mu, jnp.exp(log_s)) @ "w"
        >>> xs = jnp.linspace(-1.0, 1.0, 10)
        >>> objective = vi.elbo(model, guide, ppl.ChoiceMap.d({"y": 2.0 * xs}))
        >>> start = (jnp.array(0.0), jnp.array(0.0))
        >>> result = vi.fit(objective, jax.random.key(0), (xs, 0.5), start,
        ...                 optimizer=optax.adam(0.05), steps=500, progress=False)
        >>> mu, log_s = result.guide_args
        >>> result.model_args[0] is xs and result.model_args[1] == 0.5  # data come back as passed
        True

        On every device (``jax.device_count()`` of them), 8 estimates each:

        >>> mesh = jax.make_mesh((jax.device_count(),), ("samples",))
        >>> result = vi.fit(objective, jax.random.key(0), (xs, 0.5), start, steps=50,
        ...                 num_samples=8 * jax.device_count(), mesh=mesh, progress=False)
    """
    if not _is_int(steps) or not _is_int(num_samples) or steps < 1 or num_samples < 1:
        raise PPLError(
            f"fit needs steps >= 1 and num_samples >= 1, got steps={steps}, "
            f"num_samples={num_samples}."
        )
    if chunk is not None and (not _is_int(chunk) or chunk < 1):
        raise PPLError(
            f"fit's chunk must be a positive int (steps per compiled chunk), got {chunk!r}."
        )
    n_data, batch_size = check_data(data, batch_size, "fit", subsample)
    mesh = particle_mesh(mesh, "fit")
    spec = make_spec(objective, optimizer, num_samples, "fit", mesh, subsample)
    check_split(spec, n_data, batch_size, "fit")
    key = replicate(as_key(key), mesh)
    params, frozen, layout = split(model_args, guide_args, trainable, caller="fit")
    state = start(spec, params, frozen, layout, data, n_data, batch_size)
    # Placed once, so no chunk copies them; the arguments returned keep the very objects given.
    state = replicate(state, mesh)
    block = chunk or max(1, min(steps, max(steps // 100, 10)))
    compiled = Chunk(spec, block, block if chunk else block * max(1, MAX_CHUNK // block))
    sizes = Sizes(compiled)
    history = []
    bar = progress_bar(steps, bool(progress), _label(progress, objective))
    done, before = 0, (state, 0)  # the start of the chunk before this one, for recovery
    try:
        while done < steps:
            n = sizes.next(steps - done)
            carry, values, ran, failed = _run_chunk(
                state, key, np.int32(done), np.int32(n), chunk=compiled
            )
            values, ran = np.asarray(values), int(ran)
            sizes.took(n)
            if bool(failed):
                bad = ran - 1  # the loop stopped after the first step that was not finite
                history.extend(values[:bad].tolist())
                err = NonFiniteLoss(done + bad, float(values[bad]), history)
                good = last_good(state, done, bad, before, key, compiled)
                err.model_args, err.guide_args = _as_given(good, frozen).arguments()
                raise err
            history.extend(values[:n].tolist())
            # The arrays passed in (frozen leaves, data) stay the very objects given.
            before, state = (state, done), with_carried(state, carry)
            done += n
            if bar is not None:
                bar.update(n)
                bar.set_postfix(objective=f"{np.mean(values[max(0, n - max(1, n // 4)) : n]):.4g}")
    finally:
        if bar is not None:
            bar.close()
    # Around the trained leaves, the very objects passed in.
    model_args, guide_args = _as_given(state, frozen).arguments()
    return FitResult(model_args, guide_args, np.asarray(history))


class NonFiniteLoss(PPLError):
    """The objective or its gradient became NaN or infinite during ``fit``.

    Raised by ``fit``; a ``ppl.PPLError`` whose message names the
    step and the common causes.

    Args:
        step: the first step whose objective estimate or gradient was not finite.
        value: the objective estimate at that step.
        history: the objective estimates of the steps before it.

    Attributes:
        step, value: as given; history: as given, a float array.
        model_args, guide_args: the arguments at the last step whose objective
            and gradient were finite (set by ``fit``).

    Examples:
        >>> import jax, jax.numpy as jnp, optax
        >>> from ppl.inference import vi
        >>> def objective(key, model_args, guide_args):  # a step of 1 jumps past a = 2
        ...     return 3.0 * guide_args[0] + jnp.log(2.0 - guide_args[0])
        >>> try:
        ...     vi.fit(objective, jax.random.key(0), (), (jnp.array(0.0),),
        ...            optimizer=optax.sgd(1.0), steps=20, progress=False)
        ... except vi.NonFiniteLoss as err:
        ...     # step 0 was finite, at a = 0
        ...     print(err.step, len(err.history), float(err.guide_args[0]))
        1 1 0.0
    """

    step: int
    value: float
    history: np.ndarray
    model_args: Any
    guide_args: Any

    def __init__(self, step: int, value: float, history: list):
        self.step, self.value, self.history = step, value, np.asarray(history)
        super().__init__(
            f"fit stopped at step {step}: the objective estimate was {value} or a gradient was not "
            "finite. Common causes: a learning rate too large (try a smaller one), a scale "
            "parameter that reached 0 (parameterise it as exp or softplus of a free parameter), "
            "or a log density of -inf (a value outside the support). The history up to that step "
            "is in .history and the last finite parameters in .model_args and .guide_args."
        )


def _as_given(state, frozen):
    """``state`` with the frozen arrays as passed in (the loop's may be copies on a mesh)."""
    return dataclasses.replace(state, frozen=frozen)


def _is_int(x) -> bool:
    return isinstance(x, (int, np.integer)) and not isinstance(x, bool)


def _label(progress, objective) -> str:
    """The progress bar's label: the one given, or ``fit`` and the objective's name."""
    if isinstance(progress, str):
        return progress
    name = getattr(objective, "name", None)
    return f"fit {name}" if isinstance(name, str) else "fit"
