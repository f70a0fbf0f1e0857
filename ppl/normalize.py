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
    """The posterior of ``p`` given ``observations``, sampled by SIR with ``n`` particles."""
    return Normalized(p, observations, n)
