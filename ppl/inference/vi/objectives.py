"""The objective library: each objective is a few lines of expectation program.

Every objective here is written the way a user would write a new one: an
``@ppl.expectation`` over ``(model_args, guide_args)`` built from
``sim(guide)`` (sample the family with its strategies) and ``density(model)``.
Hierarchical VI needs no code of its own: pass a ``ppl.marginal`` family, and
``elbo`` becomes HVI (or IWHVI with more marginal particles) and ``iwelbo``
becomes DIWHVI.
"""

from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp

from ppl._errors import PPLError
from ppl._gfi import as_choices
from ppl._numerics import log_mean_exp
from ppl.combinators import repeat
from ppl.expectations import Expectation, add_cost, adev, density, sim
from ppl.gen import gen
from ppl.transforms.adev.interpreter import as_path


class Objective:
    """A variational objective: ``estimate(key, model_args, guide_args)`` is an
    unbiased estimate (of the objective, or of the surrogate whose gradient is
    the method's update), differentiable with ``jax.grad``; higher is better."""

    def __init__(self, fn: Callable, name: str, strategies: dict | None = None):
        self.fn, self.name = fn, name
        self.expectation: Expectation = adev(fn, strategies or {})

    def estimate(self, key, model_args: tuple = (), guide_args: tuple = ()):
        return self.expectation.estimate(key, (_tuple(model_args), _tuple(guide_args)))

    def grad_estimate(self, key, model_args: tuple = (), guide_args: tuple = ()):
        """``(d/d model_args, d/d guide_args)``, unbiased."""
        return self.expectation.grad_estimate(key, (_tuple(model_args), _tuple(guide_args)))

    def __call__(self, key, model_args: tuple = (), guide_args: tuple = ()):
        return self.estimate(key, model_args, guide_args)

    def __repr__(self):
        return f"Objective({self.name})"


def _tuple(args):
    if not isinstance(args, tuple):
        raise PPLError(f"model_args and guide_args must be tuples, e.g. (params,); got {type(args).__name__}.")
    return args


def _guide_policy(strategies, prefix: tuple) -> dict:
    """Strategies are given by guide address; inside the objective the guide's
    choices live under ``prefix``."""
    return {(*prefix, *as_path(addr)): s for addr, s in dict(strategies or {}).items()}


def _check_n(n: int) -> int:
    if not isinstance(n, int) or n < 1:
        raise PPLError(f"the number of particles must be an int >= 1, got {n!r}.")
    return n


# Particles are one vectorised ppl.repeat: compile time does not grow with n.
_PARTICLES = ("particles", "guide")


def _observe(observations) -> Callable:
    """``model_args -> observations``. Observations are a choice map (or dict), or a
    function of the model's arguments that returns one: that is how data that
    changes per call (an example, a minibatch in ``vi.fit(..., data=)``) is observed."""
    if callable(observations):
        return lambda *model_args: as_choices(observations(*model_args))
    obs = as_choices(observations)
    return lambda *model_args: obs


def _log_weight(model, guide, obs, model_args, guide_args):
    """One ``z ~ q`` sampled at ``"guide"``: ``(log p(z, obs) - log q(z), z)``."""
    z, logq = sim(guide)(*guide_args) @ "guide"
    return density(model)(z | obs, *model_args) - logq, z


def _particle(model, guide):
    @gen
    def particle(model_args, guide_args, obs):
        return _log_weight(model, guide, obs, model_args, guide_args)

    return particle


def _log_weights(model, guide, observe, model_args, guide_args, n):
    """log p(z_i, obs) - log q(z_i) for n independent z_i ~ q (stacked), and the z_i."""
    obs = observe(*model_args)
    return repeat(_particle(model, guide), n)(model_args, guide_args, obs) @ "particles"


def elbo(model, guide, observations=None, *, strategies=None) -> Objective:
    """E_q[log p(z, obs) - log q(z)]; with a ``marginal`` guide, HVI/IWHVI."""
    observe = _observe(observations)

    def objective(model_args, guide_args):
        return _log_weight(model, guide, observe(*model_args), model_args, guide_args)[0]

    return Objective(objective, "elbo", _guide_policy(strategies, ("guide",)))


def iwelbo(model, guide, observations=None, n: int = 5, *, strategies=None) -> Objective:
    """E[log (1/n) sum_i p(z_i, obs) / q(z_i)]; with a ``marginal`` guide, DIWHVI."""
    observe, n = _observe(observations), _check_n(n)

    def objective(model_args, guide_args):
        log_w, _ = _log_weights(model, guide, observe, model_args, guide_args, n)
        return log_mean_exp(log_w)

    return Objective(objective, f"iwelbo(n={n})", _guide_policy(strategies, _PARTICLES))


def renyi(model, guide, observations=None, alpha: float = 0.5, n: int = 5, *, strategies=None) -> Objective:
    """The Renyi (VR) bound 1/(1-alpha) log (1/n) sum_i w_i^(1-alpha); alpha=0 is IWELBO."""
    if alpha == 1.0:
        raise PPLError("renyi(alpha=1) is the ELBO; use ppl.inference.vi.elbo.")
    observe, n = _observe(observations), _check_n(n)

    def objective(model_args, guide_args):
        log_w, _ = _log_weights(model, guide, observe, model_args, guide_args, n)
        return log_mean_exp((1.0 - alpha) * log_w) / (1.0 - alpha)

    return Objective(objective, f"renyi(alpha={alpha}, n={n})", _guide_policy(strategies, _PARTICLES))


def vimco(model, guide, observations=None, n: int = 5, *, strategies=None) -> Objective:
    """IWELBO whose score-function terms use VIMCO's leave-one-out control
    variates: particle j's baseline is the bound recomputed with its log weight
    replaced by the mean of the others'. Meant for guides whose choices use
    REINFORCE (the default for discrete choices; ask for it on others with
    ``strategies={"z": ppl.reinforce}``); unbiased with any strategies."""
    if _check_n(n) < 2:
        raise PPLError("vimco needs n >= 2 particles (its baselines leave one out).")
    observe = _observe(observations)

    def objective(model_args, guide_args):
        log_w, zs = _log_weights(model, guide, observe, model_args, guide_args, n)
        bound = log_mean_exp(log_w)
        others = (jnp.sum(log_w) - log_w) / (n - 1)
        loo = jax.vmap(lambda j: log_mean_exp(log_w.at[j].set(others[j])))(jnp.arange(n))
        # Zero in value; its gradient subtracts each particle's baseline times its score.
        frozen = jax.lax.stop_gradient(zs)
        score = jax.vmap(lambda z: density(guide)(z, *guide_args))(frozen)
        add_cost(-jnp.sum(jax.lax.stop_gradient(loo) * (score - jax.lax.stop_gradient(score))))
        return bound

    return Objective(objective, f"vimco(n={n})", _guide_policy(strategies, _PARTICLES))


def rws_wake_p(model, guide, observations=None, n: int = 5) -> Objective:
    """Reweighted wake-sleep, wake phase for the model: a surrogate whose gradient
    in ``model_args`` is the self-normalised importance estimate of grad log p(obs)."""
    observe, n = _observe(observations), _check_n(n)

    def objective(model_args, guide_args):
        log_w, _ = _log_weights(model, guide, observe, model_args, jax.lax.stop_gradient(guide_args), n)
        return jnp.sum(jax.nn.softmax(jax.lax.stop_gradient(log_w)) * log_w)

    return Objective(objective, f"rws_wake_p(n={n})")


def rws_wake_q(model, guide, observations=None, n: int = 5) -> Objective:
    """Reweighted wake-sleep, wake phase for the guide: a surrogate whose gradient
    in ``guide_args`` estimates -grad KL(p(z | obs) || q(z)) (the forward KL)."""
    observe, n = _observe(observations), _check_n(n)

    def objective(model_args, guide_args):
        log_w, zs = _log_weights(model, guide, observe, model_args, jax.lax.stop_gradient(guide_args), n)
        w = jax.nn.softmax(jax.lax.stop_gradient(log_w))
        log_q = jax.vmap(lambda z: density(guide)(z, *guide_args))(jax.lax.stop_gradient(zs))
        return jnp.sum(w * log_q)

    return Objective(objective, f"rws_wake_q(n={n})")


forward_kl = rws_wake_q


def cubo(model, guide, observations=None, power: float = 2.0, *, strategies=None) -> Objective:
    """Minus E_q[(p(z, obs) / q(z))^power], an unbiased estimate; maximising it
    minimises the CUBO_power upper bound (1/power) log E_q[(p/q)^power]."""
    observe = _observe(observations)

    def objective(model_args, guide_args):
        log_w, _ = _log_weight(model, guide, observe(*model_args), model_args, guide_args)
        return -jnp.exp(power * log_w)

    return Objective(objective, f"cubo(power={power})", _guide_policy(strategies, ("guide",)))


# Hierarchical VI is ELBO / IWELBO with a ppl.marginal family.
hvi = elbo
iwhvi = elbo
diwhvi = iwelbo
