"""Approximate marginalization and normalization: generative functions whose
density is estimated by importance sampling.

``marginal(q, keep=select("x"), n=m)`` is a generative function over the kept
choices of ``q``; the other (auxiliary) choices ``u`` are integrated out with
``m`` importance samples from a proposal ``r(u | x)`` (by default ``q``'s own
prior over them, given ``x``). Two estimators keep variational bounds valid:

* as a **family** (``sim``, its log density subtracted): sample ``(x, u0)``
  jointly, draw ``u1..u(m-1)`` from ``r``, and use
  ``log (1/m) sum_i q(x, u_i) / r(u_i | x)`` with the retained ``u0``: its
  expectation is at least ``log q(x)``, so the objective stays a lower bound;
* as a **model** (``density``, added): ``m`` fresh ``u``'s, an unbiased estimate
  of ``q(x)`` whose log is at most ``log q(x)`` in expectation.

``normalize(p, observations, n=m)`` is the posterior of ``p`` given
observations, sampled by sampling importance resampling; as a family its
log-density estimate uses all ``m`` particles the same way.
"""

from __future__ import annotations

from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp

from ppl._errors import PPLError
from ppl._numerics import log_mean_exp
from ppl._gfi import GenerativeFunction, Trace
from ppl.choices import ChoiceMap, Selection


class EstimatedTrace(Trace):
    """A trace whose ``score`` is an estimate of the log density of its choices."""

    gen_fn: Any = eqx.field(static=True)
    args: tuple
    kept: ChoiceMap
    retval: Any
    score: Any

    @property
    def choices(self) -> ChoiceMap:
        return self.kept

    def project(self, selection: Selection):
        if selection.is_all():
            return self.score
        raise PPLError(
            f"{self.gen_fn.name} estimates the density of all its choices together; it cannot "
            f"project onto {selection!r}."
        )


class Marginal(GenerativeFunction):
    """``q`` with its unkept choices integrated out; build with ``marginal``."""

    def __init__(
        self, q: GenerativeFunction, keep: Selection, proposal: GenerativeFunction | None, n: int
    ):
        if not isinstance(q, GenerativeFunction):
            raise PPLError(f"ppl.marginal takes a generative function, got {q!r}.")
        if not isinstance(keep, Selection):
            raise PPLError(
                f"ppl.marginal needs keep=ppl.select(...), the choices to keep; got {keep!r}."
            )
        if not isinstance(n, int) or n < 1:
            raise PPLError(f"ppl.marginal needs a number of particles n >= 1, got {n!r}.")
        if proposal is not None and not isinstance(proposal, GenerativeFunction):
            raise PPLError(
                "the proposal of ppl.marginal must be a generative function of (x, *args), got "
                f"{proposal!r}."
            )
        self.q, self.keep, self.proposal, self.n = q, keep, proposal, n

    @property
    def name(self) -> str:
        return f"marginal({self.q.name}, n={self.n})"

    # -- the weight of one auxiliary sample, outside ADEV --------------------
    def _weight(self, key, x: ChoiceMap, args):
        """One importance weight ``log q(x, u) - log r(u | x)`` with u ~ r."""
        if self.proposal is None:
            _, w = self.q.generate(key, x, args)
            return w
        k1, _ = jax.random.split(key)
        tr_r = self.proposal.simulate(k1, (x, *args))
        logq, _ = self.q.assess(x | tr_r.choices, args)
        return logq - tr_r.score

    def _retained_weight(self, key, joint: Trace, x: ChoiceMap, args):
        """The weight of the auxiliary choices ``u0`` sampled jointly with ``x``."""
        if self.proposal is None:
            # r(u | x) is q's prior over u given x: the weight is the density of x's sites.
            return joint.project(self.keep)
        u0 = joint.choices.without(self.keep)
        logr, _ = self.proposal.assess(u0, (x, *args))
        return joint.score - logr

    def _check_kept(self, x: ChoiceMap):
        if x.is_empty():
            raise PPLError(
                f"{self.name}: the selection keeps none of q's choices; keep=ppl.select(...) must "
                "name "
                "the choices the marginal is over."
            )

    # -- the interface --------------------------------------------------------
    def _simulate(self, key, args):
        k_joint, k_rest = jax.random.split(key)
        joint = self.q.simulate(k_joint, args)
        x = joint.choices.filter(self.keep)
        self._check_kept(x)
        w0 = self._retained_weight(k_rest, joint, x, args)
        keys = jax.random.split(k_rest, self.n)[1:]
        ws = (
            jax.vmap(lambda k: self._weight(k, x, args))(keys)
            if self.n > 1
            else jnp.zeros((0,), w0.dtype)
        )
        score = log_mean_exp(jnp.concatenate([w0[None], ws]))
        return EstimatedTrace(self, args, x, joint.retval, score)

    def _generate(self, key, constraints, args):
        """With all kept choices constrained, the weight is the unbiased
        importance estimate of ``q(x)`` with ``n`` fresh auxiliary samples."""
        if constraints.is_empty():
            tr = self._simulate(key, args)
            return tr, jnp.zeros_like(tr.score)
        keys = jax.random.split(key, self.n + 1)
        ws = jax.vmap(lambda k: self._weight(k, constraints, args))(keys[1:])
        log_q = log_mean_exp(ws)
        retval = self.q.generate(keys[0], constraints, args)[0].retval
        return EstimatedTrace(self, args, constraints, retval, log_q), log_q

    def _assess(self, choices, args):
        raise PPLError(
            f"{self.name} has no exact density, and assess takes no key to estimate one. Use "
            "generate(key, choices, args): with every kept choice constrained, its weight is an "
            "unbiased importance estimate of the density (its log is a lower bound in expectation)."
        )

    def _update(self, key, trace, constraints, args):
        raise PPLError(
            f"{self.name} does not support update: its density is only estimated. Use generate."
        )

    def _regenerate(self, key, trace, selection, args):
        raise PPLError(
            f"{self.name} does not support regenerate: its density is only estimated. Use generate."
        )


def marginal(
    q: GenerativeFunction, keep: Selection, proposal: GenerativeFunction | None = None, n: int = 1
) -> Marginal:
    """``q`` over its ``keep`` choices, the others integrated out by importance sampling.

    The result's density is only estimated. As a variational family
    (``ppl.sim`` in an objective, or the guide of ``vi.elbo``) the estimate
    keeps the objective a lower bound; with ``n = 1`` that is hierarchical VI,
    with more particles IWHVI. As a model (``ppl.density``) the estimate of
    ``q(x)`` is unbiased. Strategies for ``q``'s choices are given under the
    family's address (``{("q", "u"): ppl.reinforce}``) and apply in every
    particle. Each particle runs ``q`` (and the proposal) once, so a call costs
    ``n`` runs.

    Args:
        q: the generative function whose choices are split into kept ones ``x``
            and auxiliary ones ``u``.
        keep: ``ppl.select(...)`` of the kept choices.
        proposal: ``None`` (the auxiliary choices are drawn from ``q``'s own
            prior given ``x``), or a generative function of ``(x, *args)``
            making exactly the auxiliary choices.
        n: the number of importance samples, a positive int.

    Returns:
        A generative function of ``q``'s arguments over the kept choices.
        ``simulate`` gives a trace whose score is the family-side estimate;
        ``generate`` with every kept choice constrained gives the unbiased
        estimate of ``q(x)`` as the weight.

    Raises:
        PPLError: if ``q`` or ``proposal`` is not a generative function, ``keep``
            not a selection or ``n`` not a positive int; when run, if ``keep``
            selects none of ``q``'s choices; always from ``assess``, ``update``
            and ``regenerate`` (the density has no exact value), and from a
            trace's ``project`` of anything but every choice.

    Examples:
        >>> @ppl.gen
        ... def q(mu):
        ...     u = ppl.normal(mu, 1.0) @ "u"
        ...     return ppl.normal(u, 0.5) @ "x"
        >>> m = ppl.marginal(q, keep=ppl.select("x"), n=8)
        >>> tr = m.simulate(jax.random.key(0), (0.0,))
        >>> tr.choices.addresses(), tr.score.shape
        ([('x',)], ())
        >>> _, log_q = m.generate(jax.random.key(1), {"x": 0.3}, (0.0,))  # exact: -1.07
        >>> round(float(log_q), 2)
        -1.41
    """
    return Marginal(q, keep, proposal, n)


__all__ = ["EstimatedTrace", "Marginal", "marginal"]
