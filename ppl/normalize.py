"""``normalize``: the posterior of a model given observations, as a family.

``normalize(p, observations, n=m)`` is a generative function over the latent
choices of ``p`` given the observations. It samples by sampling importance
resampling: ``m`` particles from ``p``'s prior given the observations,
weighted by the observations' density, one resampled in proportion to its
weight. Its log-density estimate for the chosen particle ``z`` is
``log p(z, obs) - log (1/m) sum_i w_i``; as a variational family (subtracted)
it keeps objectives lower bounds (the ELBO of ``p`` with this family is the
IWELBO with the prior as proposal). An unbiased estimate of the posterior
density itself would need an unbiased estimate of ``1 / p(obs)``, which
importance sampling does not give, so ``density(normalize(...))`` is refused.
"""

from __future__ import annotations

import jax

from ppl._errors import PPLError
from ppl._numerics import log_mean_exp
from ppl._gfi import GenerativeFunction, as_choices
from ppl.choices import select
from ppl.marginals import EstimatedTrace


class Normalized(GenerativeFunction):
    def __init__(self, p: GenerativeFunction, observations, n: int):
        if not isinstance(p, GenerativeFunction):
            raise PPLError(f"ppl.normalize takes a generative function, got {p!r}.")
        self.p, self.observations = p, as_choices(observations)
        if self.observations.is_empty():
            raise PPLError(
                "ppl.normalize needs observations: the posterior given nothing is the prior."
            )
        if not isinstance(n, int) or n < 1:
            raise PPLError(f"ppl.normalize needs a number of particles n >= 1, got {n!r}.")
        self.n = n
        self.observed = select(*self.observations.addresses())

    @property
    def name(self) -> str:
        return f"normalize({self.p.name}, n={self.n})"

    def _simulate(self, key, args):
        k_particles, k_pick = jax.random.split(key)
        keys = jax.random.split(k_particles, self.n)
        traces, log_w = jax.vmap(lambda k: self.p.generate(k, self.observations, args))(keys)
        k = jax.random.categorical(k_pick, log_w)
        chosen = jax.tree.map(lambda x: x[k], traces)
        score = chosen.score - log_mean_exp(log_w)
        return EstimatedTrace(
            self, args, chosen.choices.without(self.observed), chosen.retval, score
        )

    def _refusal(self) -> PPLError:
        return PPLError(
            f"{self.name} can be sampled (simulate, or ppl.sim inside an objective), but its "
            "density "
            "has no unbiased estimate: it would need one of 1 / p(observations). Use it as a "
            "variational family, or use ppl.inference.importance for the posterior itself."
        )

    def _assess(self, choices, args):
        raise self._refusal()

    def _generate(self, key, constraints, args):
        raise self._refusal()

    def _update(self, key, trace, constraints, args):
        raise self._refusal()

    def _regenerate(self, key, trace, selection, args):
        raise self._refusal()


def normalize(p: GenerativeFunction, observations, n: int = 1) -> Normalized:
    """The posterior of ``p`` given ``observations``, sampled by SIR with ``n`` particles.

    ``n`` particles are drawn from ``p``'s prior given the observations
    (``p.generate``), and one is resampled in proportion to its weight. The
    result can be sampled (``simulate``, or ``ppl.sim`` inside an objective,
    where the resampling index is a categorical choice at ``"index"``,
    REINFORCE by default), and its score is ``log p(z, obs) - log (1/n) sum_i
    w_i``, which keeps an objective with it as the family a lower bound. Its
    density has no unbiased estimate (that would need one of ``1 / p(obs)``), so
    everything that needs one is refused. A call costs ``n`` runs of ``p``.

    Args:
        p: the model, a generative function.
        observations: the observed choices (a ``ppl.ChoiceMap`` or a dict),
            not empty.
        n: the number of particles, a positive int.

    Returns:
        A generative function of ``p``'s arguments over its unobserved choices.

    Raises:
        PPLError: if ``p`` is not a generative function, ``observations`` is not
            a choice map or is empty, or ``n`` is not a positive int; always from
            ``assess``, ``generate``, ``update``, ``regenerate`` and
            ``ppl.density`` of it.

    Examples:
        >>> @ppl.gen
        ... def model():
        ...     z = ppl.normal(0.0, 1.0) @ "z"
        ...     return ppl.normal(z, 1.0) @ "y"
        >>> post = ppl.normalize(model, {"y": 1.0}, n=16)
        >>> tr = post.simulate(jax.random.key(0), ())
        >>> tr.choices.addresses(), tr.score.shape
        ([('z',)], ())
    """
    return Normalized(p, observations, n)
