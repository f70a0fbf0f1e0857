"""What every objective is built from: the ``Objective`` type and the
pieces the library's objectives share (observations as a function of the
model's arguments, one log weight, ``n`` particles as one ``ppl.repeat``,
strategies given by guide address). The objectives themselves are in
``ppl.inference.vi.objectives``.
"""

from __future__ import annotations

from typing import Callable

import jax

from ppl._errors import PPLError, fmt_addr
from ppl._gfi import as_choices
from ppl.distributions import Distribution
from ppl.choices import ChoiceMap
from ppl.combinators import repeat
from ppl.expectations import Expectation, adev, density, sim
from ppl.gen import StaticGenerativeFunction, gen
from ppl.inference._subsampling import refuse_subsampled
from ppl.inference._util import check_proposal_disjoint
from ppl.transforms.adev.expectation import Sim
from ppl.transforms.adev.interpreter import as_path
from ppl.transforms.adev.strategies import Reparam, WithStrategy, default_strategy
from ppl.transforms._checks import MissingChoice
from ppl.transforms.adev.terms import DensityTerms, SimTerms


class Objective:
    """A variational objective: an expectation program over ``(model_args, guide_args)``.

    ``estimate(key, model_args, guide_args)`` is an unbiased estimate (of the
    objective, or of the surrogate whose gradient is the method's update),
    differentiable with ``jax.grad``; higher is better. Build one with the
    functions of this module, or directly from any program written with
    ``sim``/``density``.

    Args:
        fn: ``fn(model_args, guide_args) -> scalar``, an expectation program.
        name: the name shown by ``repr``.
        strategies: gradient strategies by address inside ``fn``.
        rao_blackwell: whether each score-function choice's score multiplies
            only the terms that depend on it (``True``, the default) or the
            whole value (``False``: plain REINFORCE); see
            ``ppl.Expectation.with_rao_blackwell``.
        expectation: the ``ppl.Expectation`` to estimate with instead of
            the one ADEV builds from ``fn`` (``elbo`` passes
            ``rao_blackwellized``'s); ``strategies`` and ``rao_blackwell``
            are applied to it.
        model: the model whose subsampled ``ppl.vmap`` calls
            ``vi.fit(..., subsample=True)`` checks against the data (``elbo``
            passes its model); ``None`` for an objective that is not linear in
            the model's log density, which ``subsample=True`` refuses.

    Attributes:
        fn, name, model: as given.
        expectation: the ``ppl.Expectation`` built from ``fn`` by ADEV.

    Examples:
        >>> import jax, jax.numpy as jnp
        >>> import ppl
        >>> from ppl.inference import vi
        >>> @ppl.gen
        ... def guide(mu):
        ...     return ppl.normal(mu, 1.0) @ "z"
        >>> def program(model_args, guide_args):
        ...     z, log_q = ppl.sim(guide)(*guide_args) @ "guide"
        ...     return -((z["z"] - 2.0) ** 2)
        >>> objective = vi.Objective(program, "squared distance")
        >>> g = jax.grad(lambda mu: objective.estimate(jax.random.key(0), (), (mu,)))(0.0)
        >>> g.shape, objective
        ((), Objective(squared distance))
    """

    def __init__(
        self,
        fn: Callable,
        name: str,
        strategies: dict | None = None,
        rao_blackwell: bool = True,
        expectation: Expectation | None = None,
        model=None,
    ):
        self.fn, self.name, self.model = fn, name, model
        base = adev(fn) if expectation is None else expectation
        self.expectation: Expectation = adev(base, strategies or {}).with_rao_blackwell(
            rao_blackwell
        )

    def estimate(self, key, model_args: tuple = (), guide_args: tuple = ()):
        """An unbiased estimate, differentiable in both argument tuples.

        Args:
            key: a ``jax.random`` key.
            model_args: the model's arguments (a tuple).
            guide_args: the guide's arguments (a tuple).

        Returns:
            A scalar array.

        Raises:
            PPLError: if either argument is not a tuple.
        """
        return self.expectation.estimate(key, (_tuple(model_args), _tuple(guide_args)))

    def grad_estimate(self, key, model_args: tuple = (), guide_args: tuple = ()):
        """An unbiased estimate of the gradient in both argument tuples.

        Args:
            key: a ``jax.random`` key.
            model_args: the model's arguments (a tuple).
            guide_args: the guide's arguments (a tuple).

        Returns:
            ``(d/d model_args, d/d guide_args)``, each shaped like its arguments.

        Raises:
            PPLError: if either argument is not a tuple.
        """
        return self.expectation.grad_estimate(key, (_tuple(model_args), _tuple(guide_args)))

    def __call__(self, key, model_args: tuple = (), guide_args: tuple = ()):
        return self.estimate(key, model_args, guide_args)

    def __repr__(self):
        return f"Objective({self.name})"


def _tuple(args):
    if not isinstance(args, tuple):
        raise PPLError(
            f"model_args and guide_args must be tuples, e.g. (params,); got {type(args).__name__}."
        )
    return args


def guide_policy(strategies, prefix: tuple) -> dict:
    """A strategy policy by guide address, moved to where the guide's choices live.

    Args:
        strategies: ``{guide address: strategy}``, or ``None``.
        prefix: the path of the guide's choices inside the objective
            (``("guide",)``, or ``PARTICLES``).

    Returns:
        ``{prefix + address: strategy}``.

    Examples:
        >>> guide_policy({"z": ppl.mvd}, ("guide",))  # {("guide", "z"): mvd}  # doctest: +SKIP
    """
    return {(*prefix, *as_path(addr)): s for addr, s in dict(strategies or {}).items()}


def check_n(n: int) -> int:
    """``n``, the number of particles, checked.

    Args:
        n: the value given.

    Returns:
        ``n``.

    Raises:
        PPLError: if ``n`` is not an int of at least 1.

    Examples:
        >>> check_n(5)
        5
    """
    if not isinstance(n, int) or n < 1:
        raise PPLError(f"the number of particles must be an int >= 1, got {n!r}.")
    return n


# Particles are one vectorised ppl.repeat: compile time does not grow with n.
PARTICLES = ("particles", "guide")


def observer(observations) -> Callable:
    """The observations as a function of the model's arguments.

    Args:
        observations: a choice map (or dict, or ``None``), or a function of the
            model's arguments that returns one: that is how data that change
            per call (an example, a minibatch in ``vi.fit(..., data=)``) are
            observed.

    Returns:
        ``observe(*model_args) -> ChoiceMap``.

    Examples:
        >>> observer({"y": 1.0})()["y"]
        1.0
    """
    if callable(observations):
        return lambda *model_args: as_choices(observations(*model_args))
    obs = as_choices(observations)
    return lambda *model_args: obs


def log_weight(model, guide, obs, model_args, guide_args):
    """One ``z ~ q`` sampled at ``"guide"``, and its log importance weight.

    Call it inside an expectation program (it makes the random choice
    ``"guide"`` with the guide's strategies).

    Args:
        model, guide: the generative functions.
        obs: the observations (a choice map).
        model_args, guide_args: their arguments (tuples).

    Returns:
        ``(log p(z, obs) - log q(z), z)``, ``z`` the guide's choice map.

    Examples:
        >>> log_w, z = log_weight(model, guide, obs, model_args, guide_args)  # doctest: +SKIP
    """
    z, logq = sim(guide)(*guide_args) @ "guide"
    return density(model)(joint_choices(model, guide, z, obs, model_args), *model_args) - logq, z


def joint_choices(model, guide, z: ChoiceMap, obs: ChoiceMap, model_args) -> ChoiceMap:
    """The model's choices: the guide's ``z`` and the observations, checked to be
    disjoint and to cover every choice of the model (by shape, at trace time).

    Raises:
        PPLError: if the guide samples an observed address (its ``log q`` would
            count a draw the model's density never sees).
        PPLError: if a choice of the model is neither sampled by the guide nor
            observed (the message names it and both ways to fix it).
    """
    check_proposal_disjoint(z, obs, repr(getattr(guide, "name", "guide")), role="guide")
    joint = z | obs
    try:
        jax.eval_shape(lambda cm, args: model.assess(cm, args)[0], joint, model_args)
    except MissingChoice as err:
        # a PPLError, not an AddressError: the particles' repeat would prefix its own
        # address to the model's
        raise PPLError(
            f"the model's choice {fmt_addr(err.path)} is neither sampled by the guide "
            f"{getattr(guide, 'name', 'guide')!r} nor observed. Make it in the guide (a "
            "latent), or add it to the observations."
        ) from None
    except PPLError:
        pass  # a model that assess refuses (a marginal...): density(model) has its own rules
    return joint


def has_terms(model, guide) -> bool:
    """Whether the ELBO of ``model`` and ``guide`` can be split into per-choice
    terms (``elbo_terms``): both are ``@ppl.gen`` functions.

    Args:
        model, guide: the generative functions.

    Returns:
        ``True`` when ``elbo_terms`` applies.

    Examples:
        >>> has_terms(model, guide)  # doctest: +SKIP
        True
    """
    return isinstance(model, StaticGenerativeFunction) and type(sim(guide)) is Sim


def elbo_terms(model, guide, obs, model_args, guide_args):
    """One ``z ~ q`` sampled at ``"guide"``, and ``log p(z, obs) - log q(z)`` added to
    the value of the enclosing expectation one choice at a time.

    Each ``log p`` of a model choice and each ``-log q`` of a guide choice is its
    own term, so a score-function choice's score multiplies only the terms that
    read it (Rao-Blackwellization, as Pyro's ``TraceGraph_ELBO``); the zero-mean
    ``-d/dtheta log q(z_i; theta)`` of score-function choices is dropped (as in
    Pyro's ``Trace_ELBO``). Call it inside an expectation program that returns
    zero (the terms are the value).

    Args:
        model, guide: ``@ppl.gen`` functions (see ``has_terms``).
        obs: the observations (a choice map).
        model_args, guide_args: their arguments (tuples).

    Returns:
        ``z``, the guide's choice map.

    Examples:
        >>> z = elbo_terms(model, guide, obs, model_args, guide_args)  # doctest: +SKIP
    """
    z, _ = SimTerms(guide)(*guide_args) @ "guide"
    DensityTerms(model)(joint_choices(model, guide, z, obs, model_args), *model_args) @ "model"
    return z


class _Scored(Exception):
    """A guide choice that may have a score-function derivative: stop looking."""


class _TermsIfScored(Expectation):
    """``plain``'s estimate, or ``terms``'s when a choice of ``guide`` may be scored.

    Rao-Blackwellization only moves score-function terms, so without one the
    two programs estimate the same value with the same derivative; the plain
    one is cheaper to trace and to run. The guide's program is read at the
    arguments (abstractly, primal values only): when every site is a
    distribution whose strategy (the policy's, the call site's, else the
    default) is a reparameterization, there is no score. Anything else (a
    REINFORCE, enum or mvd choice, a call of another generative function, a
    policy for the whole guide) takes the per-choice terms, as before; so
    does nothing when no argument carries a tangent (the value is the same).
    """

    def __init__(self, plain: Expectation, terms: Expectation, guide):
        self.plain, self.terms, self.guide = plain.with_rao_blackwell(False), terms, guide
        super().__init__(None)

    @property
    def name(self) -> str:
        return self.plain.name

    def _result(self, ctx, key, duals, tree, path):
        ctx = ctx.nested(self.policy, path)
        if self.rao_blackwell and not self._reparameterized(ctx, duals, tree, path):
            return self.terms._result(ctx, key, duals, tree, path)
        return self.plain._result(ctx, key, duals, tree, path)

    def _reparameterized(self, ctx, duals, tree, path) -> bool:
        if all(t is None for _, t in duals):
            return True
        root = (*path, "guide")
        if root in ctx.policy or ctx.lookup_forced(root) is not None:
            return False
        _, guide_args = jax.tree.unflatten(tree, [p for p, _ in duals])

        def on_site(site, args):
            g, addr = site.gen_fn, (*root, site.addr)
            if isinstance(g, WithStrategy):
                (dist_fn, chosen), params = (g.dist_fn, g.strategy), g.params_and_extra(args)[0]
            elif isinstance(g, Distribution):
                dist_fn, chosen, params = g, None, args
            else:
                raise _Scored
            d = dist_fn.dist(*params)
            chosen = ctx.policy.get(addr) or ctx.lookup_forced(addr) or chosen
            if not isinstance(chosen or default_strategy(d), Reparam):
                raise _Scored
            return d.sample(jax.random.key(0))  # a value of the right shape, for what follows

        try:
            jax.eval_shape(lambda: self.guide.program(guide_args).run(guide_args, on_site))
        except _Scored:
            return False
        return True


def rao_blackwellized(model, guide, observe) -> Expectation:
    """The ELBO's expectation: per-choice terms (``elbo_terms``) when a guide
    choice may have a score-function derivative, the plain log weight otherwise.

    Args:
        model, guide: ``@ppl.gen`` functions (see ``has_terms``).
        observe: ``observe(*model_args) -> observations`` (see ``observer``).

    Returns:
        An ``ppl.Expectation`` over ``(model_args, guide_args)`` without a
        policy (give it one with ``adev(e, strategies)``, as ``Objective``
        does; the check of the guide's choices reads the same); with
        Rao-Blackwellization off it is always the plain one.

    Examples:
        >>> e = rao_blackwellized(model, guide, observer({"y": 1.0}))  # doctest: +SKIP
    """

    def plain(model_args, guide_args):
        return log_weight(model, guide, observe(*model_args), model_args, guide_args)[0]

    def by_terms(model_args, guide_args):
        elbo_terms(model, guide, observe(*model_args), model_args, guide_args)
        return 0.0

    return _TermsIfScored(adev(plain), adev(by_terms), guide)


def _particle(model, guide):
    @gen
    def particle(model_args, guide_args, obs):
        return log_weight(model, guide, obs, model_args, guide_args)

    return particle


def log_weights(model, guide, observe, model_args, guide_args, n, objective: str = "vi.iwelbo"):
    """``n`` independent particles as one vectorised ``ppl.repeat`` at ``"particles"``.

    Call it inside an expectation program; each particle's guide choices live
    under ``PARTICLES``, so compile time does not grow with ``n``.

    Args:
        model, guide: the generative functions.
        observe: ``observe(*model_args) -> observations`` (see ``observer``).
        model_args, guide_args: their arguments (tuples).
        n: the number of particles.
        objective: the objective's name, for the error below.

    Returns:
        ``(log_w, zs)``: the ``n`` log weights ``log p(z_i, obs) - log q(z_i)``
        and the ``z_i``, stacked along a leading axis.

    Raises:
        PPLError: if ``model`` has a ``ppl.vmap(..., subsample_of=N)``: the
            particles' weights are exponentiated, and a scaled minibatch's
            log density would bias them.

    Examples:
        >>> observe = observer({"y": 1.0})
        >>> log_w, zs = log_weights(model, guide, observe, (), (mu,), 10)  # doctest: +SKIP
    """
    refuse_subsampled(model, model_args, objective)
    refuse_subsampled(guide, guide_args, objective)
    obs = observe(*model_args)
    return repeat(_particle(model, guide), n)(model_args, guide_args, obs) @ "particles"
