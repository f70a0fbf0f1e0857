"""Gradient-estimation strategies: how ADEV differentiates through one random choice.

A strategy has a validity check (run at trace time, so a bad pairing is an
error naming the address) and one of two rules:

* ``sample(site, state) -> (value, state)`` for strategies that need only the
  value of the rest of the program (reparam, reinforce); these also work
  inside loops;
* ``with_continuation(site, state, k) -> Result`` for strategies that need the
  rest of the program as a function of the choice (enum; mvd, in
  ``ppl.transforms.adev.mvd``).

Every rule's tangent is linear in the input tangents, which is what lets JAX
transpose the forward pass into reverse mode.

A strategy is chosen per address in three ways, later winning: the default
(``default_strategy``), a wrapper at the call site
(``reinforce(normal)(mu, s) @ "z"``), a policy given to ``ppl.adev``.
"""

from __future__ import annotations

from typing import overload

import jax
import jax.numpy as jnp
import numpyro.distributions as nd

from ppl._errors import PPLError, fmt_addr
from ppl._gfi import GenerativeFunction, Invocation
from ppl.core import depends_on
from ppl.distributions import Distribution
from ppl.transforms.adev import dual as _dual


class Strategy:
    """A gradient estimator for one random choice: a sampling rule and a derivative rule.

    The built-ins are ``ppl.reparam``, ``ppl.implicit_reparam``,
    ``ppl.reinforce``, ``ppl.enum``, ``ppl.enum_sequential`` and ``ppl.mvd``;
    all give unbiased gradients where they are valid and differ in variance,
    cost and what they need of the rest of the program. A strategy is given in
    a policy (``ppl.adev(f, {"z": ppl.mvd})``) or at a call site, where calling
    it on a distribution wraps that one call: ``reinforce(normal)(mu, s) @ "z"``.
    A new strategy subclasses this: ``check`` refuses what it cannot serve
    (raising ``ppl.PPLError`` through ``_refuse``), and it defines
    ``sample`` (needs only the value of the rest of the program) or, with
    ``needs_continuation = True``, ``with_continuation`` and ``branch_count``.

    Examples:
        >>> isinstance(ppl.reinforce(baseline=1.0), ppl.Strategy), ppl.enum.needs_continuation
        (True, True)
        >>> ppl.reinforce(ppl.flip).name  # a flip whose call site fixes its strategy
        'reinforce(flip)'
    """

    name = "strategy"
    needs_continuation = False

    def __call__(self, gen_fn) -> WithStrategy:
        if not isinstance(gen_fn, Distribution):
            raise PPLError(
                f'{self.name}(...) wraps a distribution, as in {self.name}(normal)(mu, s) @ "z"; '
                f"got {gen_fn!r}. For choices inside a generative function, give a policy "
                f"instead: ppl.adev(f, strategies={{('call', 'z'): {self.name}}})."
            )
        return WithStrategy(gen_fn, self)

    def split_traced(self):
        """``(strategy without traced settings, tuple of traced settings)``."""
        return self, ()

    def check(self, dist: Distribution, d: nd.Distribution, addr: tuple) -> None:
        """Raise a ``PPLError`` naming ``addr`` if this strategy cannot serve ``dist``."""

    def branch_count(self, d: nd.Distribution) -> int:
        """How many times a continuation strategy evaluates the rest of the program."""
        return 1

    # A strategy defines ``sample`` when ``needs_continuation`` is False, and
    # ``with_continuation`` when it is True; the ADEV choice rule calls the one it needs.
    def sample(self, site, state):
        """``(dual value, state)``: draw the choice at ``site`` with its tangent."""
        raise NotImplementedError(f"strategy {self.name} evaluates the rest of the program")

    def with_continuation(self, site, state, k):
        """The dual result of the rest of the program ``k(value, state)``, estimated by
        evaluating it at values of the choice at ``site``."""
        raise NotImplementedError(f"strategy {self.name} samples without the rest of the program")

    def _refuse(self, addr, dist, why, instead):
        raise PPLError(
            f"strategy {self.name} cannot be used for the random choice {fmt_addr(addr)} "
            f"({dist.name}): {why}. Use {instead} for this choice instead."
        )

    def __repr__(self):
        return self.name


class WithStrategy(GenerativeFunction):
    """A distribution with a strategy fixed at its call site. Outside ADEV it
    behaves exactly like the distribution (the strategy is a hint for ADEV):
    its interface takes the distribution's own parameters, so it can also be
    mapped, ``ppl.vmap(ppl.reinforce(ppl.flip))(probs) @ "bs"``."""

    def __init__(self, dist: Distribution, strategy: Strategy):
        self.dist_fn, self.strategy = dist, strategy

    @property
    def name(self) -> str:
        return f"{self.strategy.name}({self.dist_fn.name})"

    def __call__(self, *args, **kwargs):
        # Traced settings (a learned baseline) travel with the arguments: a tracer
        # kept in the primitive's parameters would outlive its trace.
        static, extra = self.strategy.split_traced()
        return Invocation(
            StrategySite(self.dist_fn, static), (self.dist_fn.parameters(args, kwargs), extra)
        )

    def params_and_extra(self, args) -> tuple:
        """``(the distribution's parameters, traced strategy settings)`` of a call."""
        return args, ()

    def _simulate(self, key, args):
        return self.dist_fn._simulate(key, self.params_and_extra(args)[0])

    def _assess(self, choices, args):
        return self.dist_fn._assess(choices, self.params_and_extra(args)[0])

    def _generate(self, key, constraints, args):
        return self.dist_fn._generate(key, constraints, self.params_and_extra(args)[0])

    def _update(self, key, trace, constraints, args):
        return self.dist_fn._update(key, trace, constraints, self.params_and_extra(args)[0])

    def _regenerate(self, key, trace, selection, args):
        return self.dist_fn._regenerate(key, trace, selection, self.params_and_extra(args)[0])


class StrategySite(WithStrategy):
    """The callee recorded at a call site ``reinforce(flip, baseline=b)(p) @ "a"``:
    its arguments are ``(parameters, traced settings)``."""

    def params_and_extra(self, args) -> tuple:
        return args[0], args[1]


def _is_discrete(d) -> bool:
    return bool(getattr(d.support, "is_discrete", False))


def _scalar(d) -> bool:
    return d.batch_shape == () and d.event_shape == ()


# ---------------------------------------------------------------------------
# Strategies that need only the value of the rest of the program
# ---------------------------------------------------------------------------


class Reparam(Strategy):
    """Pathwise derivative (``ppl.reparam``): the sample is a differentiable
    function of the parameters and independent noise.

    Valid for continuous distributions that numpyro can ``rsample`` (normal,
    mv_normal, mv_normal_diag, uniform, laplace, logistic, lognormal,
    exponential, cauchy, student_t, half_normal, half_cauchy), including gamma,
    beta and dirichlet, whose samplers carry implicit-reparameterization
    derivatives; the default for those. Needs the rest of the program to be
    differentiable in the value. Works inside ``ppl.scan``, ``ppl.vmap`` and
    every branch. Cost: one evaluation of the program per choice (the
    derivative rides along). Variance: usually the lowest of the strategies;
    it grows with how steeply the rest of the program changes with the value.

    Args:
        gen_fn: the distribution to wrap for one call site.

    Returns:
        The wrapped distribution: call it with the distribution's parameters and
        give the call an address; outside an expectation it is the distribution.

    Raises:
        PPLError: if ``gen_fn`` is not a distribution; when the expectation is
            staged, naming the address, for a discrete distribution or one
            numpyro cannot ``rsample``.

    Examples:
        >>> @ppl.expectation
        ... def f(theta):
        ...     return ppl.reparam(ppl.normal)(theta, 1.0) @ "x"
        >>> f.grad_estimate(jax.random.key(0), (0.5,))  # x = θ + noise: dx/dθ = 1
        (Array(1., dtype=float32, weak_type=True),)
    """

    name = "reparam"

    def check(self, dist, d, addr):
        if _is_discrete(d):
            self._refuse(
                addr,
                dist,
                "its values are discrete, so they cannot move smoothly with the parameters",
                "enum (finite support), mvd or reinforce",
            )
        if not d.has_rsample:
            self._refuse(
                addr, dist, "numpyro has no reparameterized sampler (rsample) for it", "reinforce"
            )

    def sample(self, site, state):
        key, dist_fn = site.key, site.dist_fn
        return site.jvp(lambda *args: dist_fn.draw(key, dist_fn.dist(*args), reparam=True)), state


class ImplicitReparam(Reparam):
    """Implicit reparameterization (``ppl.implicit_reparam``; gamma, beta,
    dirichlet): the derivative of the sample follows from differentiating its
    CDF, which numpyro's samplers do.

    The rule is that of ``ppl.reparam``, so it is valid, costs and behaves
    exactly as that (one evaluation per choice, usually the lowest variance,
    the rest of the program differentiable in the value); this name documents
    the intent.

    Args:
        gen_fn: the distribution to wrap for one call site.

    Returns:
        The wrapped distribution, as for ``ppl.reparam``.

    Raises:
        PPLError: as for ``ppl.reparam``: ``gen_fn`` not a distribution; when
            staged, a discrete distribution or one numpyro cannot ``rsample``.

    Examples:
        >>> @ppl.expectation
        ... def f(a):
        ...     return ppl.implicit_reparam(ppl.gamma)(a, 1.0) @ "x"
        >>> (g,) = f.grad_estimate(jax.random.key(0), (2.0,))  # unbiased for d/da E[x] = 1
        >>> bool(jnp.isfinite(g))
        True
    """

    name = "implicit_reparam"


class Reinforce(Strategy):
    """Score function (``ppl.reinforce``, REINFORCE / likelihood ratio): valid for
    every distribution, discrete or continuous, including infinite supports
    (geometric, poisson), except one whose support moves with the parameters
    being differentiated (``uniform(theta, theta + 1)``). The rest of the
    program need not be differentiable; it works inside ``ppl.scan``,
    ``ppl.vmap`` and every branch. The default for discrete choices. Cost: one
    evaluation of the program per choice. Variance: usually the highest, growing
    with the size of the value its score multiplies: give a ``baseline``, keep
    Rao-Blackwellization on (the default), or average samples with
    ``ppl.E(f, n, loo=True)``.

    The baseline ``b`` is subtracted from the value the choice's score
    multiplies (its *continuation*: the value of the expectation plus the
    costs added after the choice; with Rao-Blackwellization, the default,
    only those of them that depend on the choice), which leaves every
    derivative unbiased.
    It is either a Python number, or a traced value given at the call site,
    ``reinforce(flip, baseline=b)(p) @ "a"`` (a parameter, or a network's
    output computed in the program). A traced baseline **learns itself**:
    the objective does not depend on it (its true derivative is zero), so
    ``grad_estimate`` reports in its place the regression signal
    ``(continuation - b) * db``, the gradient of ``-(continuation - b)**2 / 2``.
    Gradient *ascent* on the expectation (what ``vi.fit`` does, or descent on
    its negative) therefore moves ``b`` towards ``E[continuation]``, the
    baseline that minimises the variance, while the derivative of every
    other argument is exactly the unbiased score-function estimate with
    ``b`` subtracted. The signal reaches whatever ``b`` is computed from:
    compute it from its own parameters and from values with no derivative
    of their own (data, or ``jax.lax.stop_gradient`` of latents), or the
    regression would leak into the objective's parameters. Minimising a
    loss (``-objective``) by descent is the same; descending on the
    objective itself would push ``b`` away. Inside ``ppl.E(f, n, loo=True)``
    the score multiplies the continuation minus the others' mean, and that
    is what ``b`` learns.

    Args:
        gen_fn: ``None``, or a distribution to wrap for one call site.
        baseline: ``None`` (no baseline), a number, or (at a call site) a
            traced scalar. ``ppl.reinforce(baseline=b)`` is a strategy with it.

    Returns:
        With ``gen_fn``, the wrapped distribution (call it with its parameters
        and give the call an address); without, a strategy with ``baseline``.

    Raises:
        PPLError: if ``gen_fn`` is not a distribution; at trace time, naming the
            address, for a baseline that is not a scalar, or for a distribution
            whose support moves with the parameters being differentiated (the
            score function would miss the boundary term).

    Examples:
        >>> @ppl.expectation
        ... def f(theta, b):
        ...     x = ppl.reinforce(ppl.flip, baseline=b)(jax.nn.sigmoid(theta)) @ "x"
        ...     return jnp.where(x, 3.0, -1.0)
        >>> d_theta, d_b = f.grad_estimate(jax.random.key(0), (0.0, 1.0))
        >>> float(d_theta)  # b = E[f] = 1 here: (f - b) * score is 1 for either value
        1.0
        >>> # d_b = f(x) - b, so b += lr * d_b moves b towards E[f(x)]
    """

    name = "reinforce"

    def __init__(self, baseline=None):
        self.baseline = baseline

    @overload
    def __call__(self, gen_fn: None = None, *, baseline=None) -> Reinforce: ...
    @overload
    def __call__(self, gen_fn: GenerativeFunction, *, baseline=None) -> WithStrategy: ...
    def __call__(self, gen_fn=None, *, baseline=None) -> Reinforce | WithStrategy:
        if gen_fn is None:
            return Reinforce(baseline)
        if baseline is not None:
            return Reinforce(baseline)(gen_fn)
        return super().__call__(gen_fn)

    def split_traced(self):
        if self.baseline is None or isinstance(self.baseline, (int, float)):
            return self, ()
        return reinforce, (self.baseline,)

    def sample(self, site, state):
        x = site.dist_fn.draw(site.key, site.dist_fn.dist(*site.args_p))
        _check_fixed_support(site)
        _, dlogp = site.jvp(lambda *args: site.dist_fn.log_density(x, args))
        b, db = self._baseline(site)
        s, c = state.s, state.c
        if dlogp is not None:
            s = _dual.add(s, dlogp)
            if b is not None:
                c = _dual.add(c, jax.lax.stop_gradient(b) * dlogp)
        if db is not None:
            # The regression signal (continuation - b) * db: the end of the program
            # adds value * s - c, and later costs add cost * s, so adding db to s and
            # b * db to c gives it, inside loops too.
            s, c = _dual.add(s, db), _dual.add(c, b * db)
        return (x, None), state._replace(s=s, c=c)

    def _baseline(self, site):
        """``(b, db)``: the baseline's value and tangent (``None`` for none)."""
        if not site.extra_p:
            return self.baseline, None
        b = site.extra_p[0]
        if jnp.shape(b) != ():
            raise PPLError(
                f"the baseline of reinforce at {fmt_addr(site.addr)} has shape {jnp.shape(b)}; "
                "a baseline stands in for the one real number the score multiplies, so it must "
                "be a scalar. Give one baseline per choice (e.g. b[i] for the i-th), or sum the "
                "prediction."
            )
        extra_t = getattr(site, "extra_t", ())
        db = extra_t[0] if extra_t else None
        return b, (None if _dual.is_zero(db) else db)

    def __repr__(self):
        return "reinforce" if self.baseline is None else f"reinforce(baseline={self.baseline!r})"


def _check_fixed_support(site):
    """The score-function identity needs a support that does not move with the
    parameters (no boundary term); refuse e.g. uniform(theta, theta + 1)."""
    live = [i for i, (_, t) in enumerate(site.duals) if t is not None]
    support = site.dist_fn.dist(*site.args_p).support
    if not live or not hasattr(support, "lower_bound") or getattr(support, "is_discrete", False):
        return
    tree, dist_fn = site.tree, site.dist_fn

    def bounds(*flat):
        s = dist_fn.dist(*jax.tree.unflatten(tree, flat)).support
        return [jnp.asarray(getattr(s, b)) for b in ("lower_bound", "upper_bound") if hasattr(s, b)]

    if depends_on(bounds, [p for p, _ in site.duals], live):
        raise PPLError(
            f"strategy reinforce cannot be used for the random choice {fmt_addr(site.addr)} "
            f"({dist_fn.name}): its support moves with the parameters being differentiated, so the "
            "score function misses the boundary term and the gradient would be biased. Use reparam "
            "for this choice instead."
        )


reparam = Reparam()
implicit_reparam = ImplicitReparam()
reinforce = Reinforce()


def default_strategy(d: nd.Distribution) -> Strategy:
    """Reparam where valid, otherwise reinforce."""
    if not _is_discrete(d) and d.has_rsample:
        return reparam
    return reinforce
