"""AIR: the model, the recurrent guide, and the objectives as expectation programs.

Per canvas, for steps t = 0, 1 (at most two objects):

  model   present_t ~ flip(rho_t) while every earlier step was present (rho_t
          may be annealed during training: AIR.log_rho);
          where_t ~ normal(prior);  what_t ~ normal(0, I);
          canvas += [present so far] * place(decoder(what_t), where_t);
          x ~ normal(canvas, 0.3)
  guide   a GRU reads the image and the previous step's latents; its state
          gives present_t's probability and where_t; what_t comes from an
          encoder of the glimpse that where_t cuts out of the image.

Once a step is absent the later steps are not used; their choices are still
made (so every trace has the same addresses, which is what ``enum`` and
``vmap`` need) but both the model and the guide then draw them from the same
fixed distributions, so they cancel exactly in log p - log q. That keeps the
bound valid without any masking machinery, and keeps enumeration free of
0 * (-inf) branches.

Estimators for the presence choices are a policy: the guide's call site says
REINFORCE with a learned baseline; ``strategies={present: enum}`` or ``mvd``
overrides it without touching the guide. The baseline is a network of the
image, one output per step, passed at the call site: the bound does not
depend on it, and its slot of the gradient is the regression signal
(bound - baseline) * d baseline, so the step that raises the bound also
trains the baseline to predict it (no separate regression loss).
"""

from __future__ import annotations

from collections.abc import Sequence

import equinox as eqx
import jax
import jax.numpy as jnp

import ppl
from airlib import stn
from airlib.data import CANVAS, DIGIT, MAX_DIGITS, SIZE

STEPS = MAX_DIGITS
WHAT, HIDDEN, OBJ = (
    50,
    200,
    DIGIT,
)  # latent code, GRU state, decoded object side (as sharp as a digit)
PIXEL_SD = 0.3
RHO = 0.01  # prior probability of one more object: small, so an object must earn its place
# where = (log s, tx, ty): a SIZE-pixel digit on a 50-pixel canvas has s = SIZE / 50.
WHERE_LOC = jnp.array([jnp.log(SIZE / CANVAS), 0.0, 0.0])
WHERE_SD = jnp.array([0.2, 0.6, 0.6])
PRESENCE = ("reinforce", "enum", "mvd")
PRES_BIAS = -3.0


def _mlp(sizes, key):
    keys = jax.random.split(key, len(sizes) - 1)
    return [eqx.nn.Linear(a, b, key=k) for a, b, k in zip(sizes[:-1], sizes[1:], keys)]


def _run(layers, x):
    for layer in layers[:-1]:
        x = jax.nn.relu(layer(x))
    return layers[-1](x)


class Decoder(eqx.Module):
    layers: list

    def __init__(self, key):
        self.layers = _mlp([WHAT, 200, OBJ * OBJ], key)

    def __call__(self, what):
        # Biased towards dark objects at first, so early objects do not flood the canvas.
        return jax.nn.sigmoid(_run(self.layers, what) - 2.0).reshape(OBJ, OBJ)


class Guide(eqx.Module):
    embed: eqx.nn.Linear
    rnn: eqx.nn.GRUCell
    pres: eqx.nn.Linear
    where: eqx.nn.Linear
    what: list
    baseline: list | None  # image -> one predicted bound per step; only REINFORCE has one

    def __init__(self, key, baseline: bool = True):
        k = jax.random.split(key, 6)
        self.embed = eqx.nn.Linear(CANVAS * CANVAS, HIDDEN, key=k[0])
        self.rnn = eqx.nn.GRUCell(HIDDEN + 3 + WHAT + 1, HIDDEN, key=k[1])
        # Objects start rare (p ~ 0.05): an object is then added where it pays for
        # itself, rather than two objects each learning to draw half a digit.
        self.pres = eqx.tree_at(
            lambda linear: linear.bias, eqx.nn.Linear(HIDDEN, 1, key=k[2]), jnp.array([PRES_BIAS])
        )
        self.where = eqx.nn.Linear(HIDDEN, 6, key=k[3])
        self.what = _mlp([OBJ * OBJ, 200, 2 * WHAT], k[4])
        # Without one, no optimizer state is spent on parameters no gradient reaches.
        self.baseline = _mlp([CANVAS * CANVAS, 100, STEPS], k[5]) if baseline else None


class AIR(eqx.Module):
    decoder: Decoder
    guide: Guide
    # log rho_t, the model's prior log probability of object t given the ones
    # before it, one per step. An array rather than a constant so that a
    # schedule can anneal it during training without a recompilation; the model
    # stops its gradient, so it is never learned.
    log_rho: jax.Array

    def __init__(self, key, baseline: bool = True, rho: float | Sequence[float] = RHO):
        kd, kg = jax.random.split(key)
        self.decoder, self.guide = Decoder(kd), Guide(kg, baseline)
        self.log_rho = jnp.log(jnp.broadcast_to(jnp.asarray(rho, jnp.float32), (STEPS,)))


def window(where):
    """Latent where (log s, tx, ty) -> the transformer's (s, tx, ty)."""
    return jnp.concatenate([jnp.exp(where[:1]), where[1:]])


def draw(decoder, canvas, alive, where, what):
    return canvas + alive * stn.place(decoder(what), window(where), CANVAS)


def render(decoder, choices):
    """The mean canvas the model draws for the latent choices of one trace."""
    canvas, alive = jnp.zeros((CANVAS, CANVAS)), jnp.array(True)
    for t in range(STEPS):
        alive = alive & choices[f"present{t}"]
        canvas = draw(decoder, canvas, alive, choices[f"where{t}"], choices[f"what{t}"])
    return canvas


@ppl.gen
def model(decoder, log_rho):
    log_rho = jax.lax.stop_gradient(log_rho)
    more = log_rho - jnp.log1p(-jnp.exp(log_rho))  # the log-odds of one more object, per step
    canvas = jnp.zeros((CANVAS, CANVAS))
    alive = jnp.array(True)
    for t in range(STEPS):
        present = ppl.flip(logits=jnp.where(alive, more[t], 0.0)) @ f"present{t}"
        alive = alive & present
        where = ppl.normal(WHERE_LOC, WHERE_SD) @ f"where{t}"
        what = ppl.normal(jnp.zeros(WHAT), 1.0) @ f"what{t}"
        canvas = draw(decoder, canvas, alive, where, what)
    return ppl.normal(canvas.reshape(-1), PIXEL_SD) @ "x"


def where_posterior(raw):
    """The guide's mean and sd of where from 6 unbounded outputs: the mean
    within 3 prior sds of the prior mean, the sd below the prior's. Unbounded,
    one bad REINFORCE step can throw a window off the canvas or shrink it to
    nothing, and the next gradient is NaN."""
    loc, sd = jnp.split(raw, 2)
    return WHERE_LOC + 3.0 * WHERE_SD * jnp.tanh(loc), WHERE_SD * jax.nn.sigmoid(sd)


@ppl.gen
def guide(net: Guide, x):
    h = jnp.zeros(HIDDEN)
    embedded = jax.nn.relu(net.embed(x))
    baselines = jnp.zeros(STEPS) if net.baseline is None else _run(net.baseline, x)
    where, what, present = WHERE_LOC, jnp.zeros(WHAT), jnp.array(1.0)
    alive = jnp.array(True)
    for t in range(STEPS):
        h = net.rnn(jnp.concatenate([embedded, where, what, present[None]]), h)
        flip = ppl.reinforce(ppl.flip, baseline=baselines[t])
        # Logits, not probabilities: a confident guide saturates a sigmoid to
        # exactly 0 or 1 in float32, where the log density's gradient is 0/0.
        present = flip(logits=jnp.where(alive, net.pres(h)[0], 0.0)) @ f"present{t}"
        alive = alive & present
        loc, sd = where_posterior(net.where(h))
        where = (
            ppl.normal(jnp.where(alive, loc, WHERE_LOC), jnp.where(alive, sd, WHERE_SD))
            @ f"where{t}"
        )
        cut = stn.glimpse(x.reshape(CANVAS, CANVAS), window(where), OBJ).reshape(-1)
        mu, log_sd = jnp.split(_run(net.what, cut), 2)
        what = (
            ppl.normal(jnp.where(alive, mu, 0.0), jnp.where(alive, jnp.exp(log_sd), 1.0))
            @ f"what{t}"
        )
        present = alive.astype(jnp.float32)
    return alive


def bound(objective: str = "elbo", k: int = 2, presence: str = "reinforce") -> ppl.Expectation:
    """The per-canvas ELBO or IWELBO (k particles) as an expectation of (air, x)."""
    if presence not in PRESENCE:
        raise ValueError(f"the presence estimator must be one of {PRESENCE}, got {presence!r}.")
    if objective not in ("elbo", "iwelbo"):
        raise ValueError(f"the objective must be elbo or iwelbo, got {objective!r}.")
    k = 1 if objective == "elbo" else k
    particles = [f"particle{i}" for i in range(k)]

    @ppl.expectation
    def iwelbo(air, x):
        obs = ppl.ChoiceMap.d({"x": x})
        log_w = []
        for p in particles:
            z, log_q = ppl.sim(guide)(air.guide, x) @ p
            log_w.append(ppl.density(model)(z | obs, air.decoder, air.log_rho) - log_q)
        return jax.nn.logsumexp(jnp.stack(log_w)) - jnp.log(float(k))

    if presence == "reinforce":  # the guide's call site already says so
        return iwelbo
    strategy = ppl.enum if presence == "enum" else ppl.mvd
    return ppl.adev(iwelbo, {(p, f"present{t}"): strategy for p in particles for t in range(STEPS)})


def loss_function(objective: ppl.Expectation, learn_baseline: bool = False):
    """``(air, key, batch) -> (loss, mean bound)``: one sample per canvas via jax.vmap.

    The loss is minus the mean bound. The guide's baseline network, when it has
    one, learns from the same gradient (its slot is the regression signal of the
    bound on the baseline), so ``learn_baseline`` changes nothing; it is kept for
    callers that pass it."""
    del learn_baseline

    def loss(air, key, batch):
        keys = jax.random.split(key, batch.shape[0])
        values = jax.vmap(lambda kk, x: objective.estimate(kk, (air, x)))(keys, batch)
        return -jnp.mean(values), jnp.mean(values)

    return loss


def counts(air, key, images):
    """Object counts of one guide sample per canvas (the guide's simulate, outside ADEV)."""

    def one(k, x):
        choices = guide.simulate(k, (air.guide, x)).choices
        alive, n = jnp.array(True), jnp.array(0)
        for t in range(STEPS):
            alive = alive & choices[f"present{t}"]
            n = n + alive
        return n

    return jax.vmap(one)(jax.random.split(key, images.shape[0]), images)
