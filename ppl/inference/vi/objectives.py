"""The objective library: each objective is a few lines of expectation program.

Every objective here is written the way a user would write a new one: an
``@ppl.expectation`` over ``(model_args, guide_args)`` built from
``sim(guide)`` (sample the family with its strategies) and ``density(model)``.
Hierarchical VI needs no code of its own: pass a ``ppl.marginal`` family, and
``elbo`` becomes HVI (or IWHVI with more marginal particles) and ``iwelbo``
becomes DIWHVI.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from ppl._errors import PPLError
from ppl._numerics import log_mean_exp
from ppl.expectations import add_cost, density
from ppl.inference._subsampling import refuse_subsampled
from ppl.inference.vi._guide_checks import check_exact_density
from ppl.inference.vi._objective import (
    PARTICLES,
    Objective,
    check_n,
    guide_policy,
    has_terms,
    log_weight,
    log_weights,
    observer,
    rao_blackwellized,
)


def elbo(
    model, guide, observations=None, *, strategies=None, rao_blackwell: bool = True
) -> Objective:
    """The ELBO, ``E_q[log p(z, obs) - log q(z)]``; with a ``marginal`` guide, HVI/IWHVI.

    With ``rao_blackwell=True`` (the default) and ``@ppl.gen`` model and guide,
    the bound is a sum of per-choice terms (each ``log p`` of a model choice,
    each ``-log q`` of a guide choice) and each score-function choice's score
    multiplies only the terms that read it, by data flow, as Pyro's
    ``TraceGraph_ELBO``; the zero-mean ``-d/dtheta log q(z; theta)`` of those
    choices is dropped. ``rao_blackwell=False`` is plain REINFORCE on the whole
    bound. Both are unbiased; reparam, enum and mvd choices are unaffected.
    When no guide choice has a score-function derivative (a reparameterized
    guide, as the automatic guides are), the terms would change nothing, and
    the default computes the plain bound: the same estimate and gradient as
    ``rao_blackwell=False``, at its cost.

    Args:
        model: the model, a generative function called with ``*model_args``.
        guide: the variational family, called with ``*guide_args``; its
            addresses are latent addresses of ``model`` (a ``ppl.marginal``
            family works too).
        observations: a choice map (or dict) of observed values, or a function
            of the model's arguments returning one (data that change per call,
            e.g. the example appended by ``vi.fit(..., data=)``).
        strategies: gradient strategies by guide address (``{"z": ppl.mvd}``),
            overriding each choice's default.
        rao_blackwell: Rao-Blackwellized REINFORCE (``True``) or plain (``False``).

    Returns:
        An ``Objective``; its estimate is one sample's ``log p(z, obs) - log q(z)``.

    Raises:
        PPLError: if ``observations`` is not a choice map, dict, ``None`` or
            function; when estimating, if the arguments are not tuples or
            ``strategies`` names an address the guide does not make.
        AddressError: when estimating, if the guide leaves a latent choice of
            the model without a value or makes one the model does not.

    Examples:
        >>> from ppl.inference import vi
        >>> @ppl.gen
        ... def model():
        ...     z = ppl.normal(0.0, 1.0) @ "z"
        ...     return ppl.normal(z, 1.0) @ "y"
        >>> @ppl.gen
        ... def guide(mu):
        ...     return ppl.normal(mu, 1.0) @ "z"
        >>> objective = vi.elbo(model, guide, {"y": 1.0})
        >>> objective.estimate(jax.random.key(0), (), (jnp.array(0.5),)).shape
        ()
    """
    observe = observer(observations)
    policy = guide_policy(strategies, ("guide",))

    def objective(model_args, guide_args):
        return log_weight(model, guide, observe(*model_args), model_args, guide_args)[0]

    if rao_blackwell and has_terms(model, guide):
        # per-choice terms only where a guide choice has a score to multiply them
        terms = rao_blackwellized(model, guide, observe)
        return Objective(objective, "elbo", policy, expectation=terms, model=model)
    return Objective(objective, "elbo", policy, rao_blackwell=rao_blackwell, model=model)


def iwelbo(model, guide, observations=None, n: int = 5, *, strategies=None) -> Objective:
    """The importance-weighted bound ``E[log (1/n) sum_i p(z_i, obs) / q(z_i)]``; with a
    ``marginal`` guide, DIWHVI. The ``n`` particles are one vectorised ``ppl.repeat``.

    Args:
        model: the model, a generative function called with ``*model_args``.
        guide: the variational family, called with ``*guide_args``; its
            addresses are latent addresses of ``model`` (a ``ppl.marginal``
            family works too).
        observations: a choice map (or dict) of observed values, or a function
            of the model's arguments returning one (data that change per call,
            e.g. the example appended by ``vi.fit(..., data=)``).
        n: the number of importance samples, an int of at least 1.
        strategies: gradient strategies by guide address (``{"z": ppl.mvd}``),
            overriding each choice's default.

    Returns:
        An ``Objective``.

    Raises:
        PPLError: if ``n`` is not an int of at least 1; when estimating, if the model or guide
            has a subsampled ``ppl.vmap`` (the weights are exponentiated), and
            as ``elbo``.
        AddressError: as ``elbo``.

    Examples:
        >>> from ppl.inference import vi
        >>> @ppl.gen
        ... def model():
        ...     z = ppl.normal(0.0, 1.0) @ "z"
        ...     return ppl.normal(z, 1.0) @ "y"
        >>> @ppl.gen
        ... def guide(mu):
        ...     return ppl.normal(mu, 1.0) @ "z"
        >>> objective = vi.iwelbo(model, guide, {"y": 1.0}, n=10)
        >>> objective.estimate(jax.random.key(0), (), (jnp.array(0.5),)).shape
        ()
    """
    observe, n = observer(observations), check_n(n)

    def objective(model_args, guide_args):
        log_w, _ = log_weights(model, guide, observe, model_args, guide_args, n, "vi.iwelbo")
        return log_mean_exp(log_w)

    return Objective(objective, f"iwelbo(n={n})", guide_policy(strategies, PARTICLES))


def renyi(
    model, guide, observations=None, alpha: float = 0.5, n: int = 5, *, strategies=None
) -> Objective:
    """The Renyi (VR) bound ``1/(1-alpha) log (1/n) sum_i w_i^(1-alpha)``; ``alpha=0`` is IWELBO.

    Args:
        model: the model, a generative function called with ``*model_args``.
        guide: the variational family, called with ``*guide_args``; its
            addresses are latent addresses of ``model`` (a ``ppl.marginal``
            family works too).
        observations: a choice map (or dict) of observed values, or a function
            of the model's arguments returning one (data that change per call,
            e.g. the example appended by ``vi.fit(..., data=)``).
        alpha: the order, any float but 1 (the ELBO).
        n: the number of importance samples, an int of at least 1.
        strategies: gradient strategies by guide address (``{"z": ppl.mvd}``),
            overriding each choice's default.

    Returns:
        An ``Objective``.

    Raises:
        PPLError: if ``alpha`` is 1 (use ``elbo``), or ``n`` is not an int
            of at least 1; when estimating, if the model or guide
            has a subsampled ``ppl.vmap`` (the weights are exponentiated), and
            as ``elbo``.
        AddressError: as ``elbo``.

    Examples:
        >>> from ppl.inference import vi
        >>> @ppl.gen
        ... def model():
        ...     z = ppl.normal(0.0, 1.0) @ "z"
        ...     return ppl.normal(z, 1.0) @ "y"
        >>> @ppl.gen
        ... def guide(mu):
        ...     return ppl.normal(mu, 1.0) @ "z"
        >>> objective = vi.renyi(model, guide, {"y": 1.0}, alpha=0.5, n=10)
        >>> objective.estimate(jax.random.key(0), (), (jnp.array(0.5),)).shape
        ()
    """
    if alpha == 1.0:
        raise PPLError("renyi(alpha=1) is the ELBO; use ppl.inference.vi.elbo.")
    observe, n = observer(observations), check_n(n)

    def objective(model_args, guide_args):
        log_w, _ = log_weights(model, guide, observe, model_args, guide_args, n, "vi.renyi")
        return log_mean_exp((1.0 - alpha) * log_w) / (1.0 - alpha)

    return Objective(objective, f"renyi(alpha={alpha}, n={n})", guide_policy(strategies, PARTICLES))


def vimco(model, guide, observations=None, n: int = 5, *, strategies=None) -> Objective:
    """IWELBO whose score-function terms use VIMCO's leave-one-out control variates.

    Particle j's baseline is the bound recomputed with its log weight replaced
    by the mean of the others'. Meant for guides whose choices use REINFORCE
    (the default for discrete choices; ask for it on others with
    ``strategies={"z": ppl.reinforce}``); unbiased with any strategies.

    Args:
        model: the model, a generative function called with ``*model_args``.
        guide: the variational family, called with ``*guide_args``; its
            addresses are latent addresses of ``model``. Its density must be
            exact (not a ``ppl.marginal`` or ``ppl.normalize`` family).
        observations: a choice map (or dict) of observed values, or a function
            of the model's arguments returning one (data that change per call,
            e.g. the example appended by ``vi.fit(..., data=)``).
        n: the number of particles, an int of at least 2.
        strategies: gradient strategies by guide address (``{"z": ppl.mvd}``),
            overriding each choice's default.

    Returns:
        An ``Objective``.

    Raises:
        PPLError: if ``n`` is not an int of at least 2, or the guide's density is
            only estimated; when estimating, if the model or guide
            has a subsampled ``ppl.vmap`` (the weights are exponentiated), and
            as ``elbo``.
        AddressError: as ``elbo``.

    Examples:
        >>> from ppl.inference import vi
        >>> @ppl.gen
        ... def model():
        ...     z = ppl.normal(0.0, 1.0) @ "z"
        ...     return ppl.normal(z, 1.0) @ "y"
        >>> @ppl.gen
        ... def guide(mu):
        ...     return ppl.normal(mu, 1.0) @ "z"
        >>> objective = vi.vimco(model, guide, {"y": 1.0}, n=5, strategies={"z": ppl.reinforce})
        >>> objective.estimate(jax.random.key(0), (), (jnp.array(0.5),)).shape
        ()
    """
    if check_n(n) < 2:
        raise PPLError("vimco needs n >= 2 particles (its baselines leave one out).")
    check_exact_density(guide, "vimco", "for the score of each particle")
    observe = observer(observations)

    def objective(model_args, guide_args):
        log_w, zs = log_weights(model, guide, observe, model_args, guide_args, n, "vi.vimco")
        bound = log_mean_exp(log_w)
        others = (jnp.sum(log_w) - log_w) / (n - 1)
        loo = jax.vmap(lambda j: log_mean_exp(log_w.at[j].set(others[j])))(jnp.arange(n))
        # Zero in value; its gradient subtracts each particle's baseline times its score.
        frozen = jax.lax.stop_gradient(zs)
        score = jax.vmap(lambda z: density(guide)(z, *guide_args))(frozen)
        add_cost(-jnp.sum(jax.lax.stop_gradient(loo) * (score - jax.lax.stop_gradient(score))))
        return bound

    return Objective(objective, f"vimco(n={n})", guide_policy(strategies, PARTICLES))


def rws_wake_p(model, guide, observations=None, n: int = 5) -> Objective:
    """Reweighted wake-sleep, wake phase for the model.

    A surrogate whose gradient in ``model_args`` is the self-normalised
    importance estimate of ``grad log p(obs)``; the guide's arguments get no
    gradient (train them with ``rws_wake_q``).

    Args:
        model: the model, a generative function called with ``*model_args``.
        guide: the variational family, called with ``*guide_args``; its
            addresses are latent addresses of ``model`` (a ``ppl.marginal``
            family is accepted: its density estimate enters the weights).
        observations: a choice map (or dict) of observed values, or a function
            of the model's arguments returning one (data that change per call,
            e.g. the example appended by ``vi.fit(..., data=)``).
        n: the number of importance samples, an int of at least 1.

    Returns:
        An ``Objective`` (a surrogate: its value is not a bound).

    Raises:
        PPLError: if ``n`` is not an int of at least 1; when estimating, if the model or guide
            has a subsampled ``ppl.vmap`` (the weights are exponentiated), and
            as ``elbo``.
        AddressError: as ``elbo``.

    Examples:
        >>> from ppl.inference import vi
        >>> @ppl.gen
        ... def model():
        ...     z = ppl.normal(0.0, 1.0) @ "z"
        ...     return ppl.normal(z, 1.0) @ "y"
        >>> @ppl.gen
        ... def guide(mu):
        ...     return ppl.normal(mu, 1.0) @ "z"
        >>> objective = vi.rws_wake_p(model, guide, {"y": 1.0}, n=10)
        >>> objective.estimate(jax.random.key(0), (), (jnp.array(0.5),)).shape
        ()
    """
    observe, n = observer(observations), check_n(n)

    def objective(model_args, guide_args):
        log_w, _ = log_weights(
            model, guide, observe, model_args, jax.lax.stop_gradient(guide_args), n, "vi.rws_wake_p"
        )
        return jnp.sum(jax.nn.softmax(jax.lax.stop_gradient(log_w)) * log_w)

    return Objective(objective, f"rws_wake_p(n={n})")


def rws_wake_q(model, guide, observations=None, n: int = 5) -> Objective:
    """Reweighted wake-sleep, wake phase for the guide (also ``forward_kl``).

    A surrogate whose gradient in ``guide_args`` estimates
    ``-grad KL(p(z | obs) || q(z))``, the forward KL, by self-normalised
    importance sampling from the guide.

    Args:
        model: the model, a generative function called with ``*model_args``.
        guide: the variational family, called with ``*guide_args``; its
            addresses are latent addresses of ``model``. Its density must be
            exact (not a ``ppl.marginal`` or ``ppl.normalize`` family).
        observations: a choice map (or dict) of observed values, or a function
            of the model's arguments returning one (data that change per call,
            e.g. the example appended by ``vi.fit(..., data=)``).
        n: the number of importance samples, an int of at least 1.

    Returns:
        An ``Objective`` (a surrogate: its value is not a bound).

    Raises:
        PPLError: if ``n`` is not an int of at least 1, or the guide's density is
            only estimated; when estimating, if the model or guide
            has a subsampled ``ppl.vmap`` (the weights are exponentiated), and
            as ``elbo``.
        AddressError: as ``elbo``.

    Examples:
        >>> from ppl.inference import vi
        >>> @ppl.gen
        ... def model():
        ...     z = ppl.normal(0.0, 1.0) @ "z"
        ...     return ppl.normal(z, 1.0) @ "y"
        >>> @ppl.gen
        ... def guide(mu):
        ...     return ppl.normal(mu, 1.0) @ "z"
        >>> objective = vi.rws_wake_q(model, guide, {"y": 1.0}, n=10)
        >>> objective.estimate(jax.random.key(0), (), (jnp.array(0.5),)).shape
        ()
    """
    observe, n = observer(observations), check_n(n)
    check_exact_density(guide, "rws_wake_q (forward_kl)", "for the gradient of log q")

    def objective(model_args, guide_args):
        log_w, zs = log_weights(
            model, guide, observe, model_args, jax.lax.stop_gradient(guide_args), n, "vi.rws_wake_q"
        )
        w = jax.nn.softmax(jax.lax.stop_gradient(log_w))
        log_q = jax.vmap(lambda z: density(guide)(z, *guide_args))(jax.lax.stop_gradient(zs))
        return jnp.sum(w * log_q)

    return Objective(objective, f"rws_wake_q(n={n})")


forward_kl = rws_wake_q


def cubo(model, guide, observations=None, power: float = 2.0, *, strategies=None) -> Objective:
    """Minus ``E_q[(p(z, obs) / q(z))^power]``, estimated without bias.

    Maximising it minimises the CUBO upper bound
    ``(1/power) log E_q[(p/q)^power]`` on ``log p(obs)``.

    Args:
        model: the model, a generative function called with ``*model_args``.
        guide: the variational family, called with ``*guide_args``; its
            addresses are latent addresses of ``model`` (a ``ppl.marginal``
            family works too).
        observations: a choice map (or dict) of observed values, or a function
            of the model's arguments returning one (data that change per call,
            e.g. the example appended by ``vi.fit(..., data=)``).
        power: the exponent (2.0: the chi-square upper bound).
        strategies: gradient strategies by guide address (``{"z": ppl.mvd}``),
            overriding each choice's default.

    Returns:
        An ``Objective``.

    Raises:
        PPLError: when estimating, if the model has a subsampled
            ``ppl.vmap(..., subsample_of=N)`` (the exponentiated weight would be
            biased), and as ``elbo``.
        AddressError: as ``elbo``.

    Examples:
        >>> from ppl.inference import vi
        >>> @ppl.gen
        ... def model():
        ...     z = ppl.normal(0.0, 1.0) @ "z"
        ...     return ppl.normal(z, 1.0) @ "y"
        >>> @ppl.gen
        ... def guide(mu):
        ...     return ppl.normal(mu, 1.0) @ "z"
        >>> objective = vi.cubo(model, guide, {"y": 1.0}, power=2.0)
        >>> objective.estimate(jax.random.key(0), (), (jnp.array(0.5),)).shape
        ()
    """
    observe = observer(observations)

    def objective(model_args, guide_args):
        refuse_subsampled(model, model_args, "vi.cubo")
        log_w, _ = log_weight(model, guide, observe(*model_args), model_args, guide_args)
        return -jnp.exp(power * log_w)

    return Objective(objective, f"cubo(power={power})", guide_policy(strategies, ("guide",)))


# Hierarchical VI is ELBO / IWELBO with a ppl.marginal family.
hvi = elbo
iwhvi = elbo
diwhvi = iwelbo
