"""Rao-Blackwellized REINFORCE: each score multiplies only the terms downstream of it.

Every estimator is checked against the exact gradient (by enumeration, or
quadrature for a normal) within 5 Monte Carlo standard errors, with fixed
seeds; the variance must drop against plain REINFORCE (``rao_blackwell=False``).
"""

import itertools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import ppl
from ppl import flip, normal
from ppl.inference import vi

from _adev_util import assert_close_mc, grad_samples

sig = jax.nn.sigmoid
N = 20000


def _objective_grads(obj, guide_args, n=N, seed=0):
    keys = jax.random.split(jax.random.key(seed), n)
    g = jax.jit(jax.vmap(lambda k: obj.grad_estimate(k, (), guide_args)[1]))(keys)
    return [np.asarray(x, np.float64) for x in g]


def _exact_elbo(model, guide, configs, obs, guide_args):
    """The ELBO by enumeration over ``configs`` (choice dicts of the guide)."""

    def elbo(*args):
        total = 0.0
        for z in configs:
            logq, _ = guide.assess(z, args)
            logp, _ = model.assess({**z, **obs}, ())
            total = total + jnp.exp(logq) * (logp - logq)
        return total

    return elbo, jax.grad(elbo, argnums=tuple(range(len(guide_args))))(*guide_args)


def _check_rb(model, guide, configs, obs, guide_args, min_ratio, seed=0):
    """Both estimators unbiased; the Rao-Blackwellized variance at least ``min_ratio``
    times smaller. Returns the ratio."""
    elbo, exact = _exact_elbo(model, guide, configs, obs, guide_args)
    variances = {}
    for rb in (False, True):
        obj = vi.elbo(model, guide, obs, rao_blackwell=rb)
        grads = _objective_grads(obj, guide_args, seed=seed)
        for i, g in enumerate(grads):
            assert_close_mc(g, exact[i], what=f"rao_blackwell={rb}, argument {i}")
        variances[rb] = sum(float(g.var(axis=0).sum()) for g in grads)
    ratio = variances[False] / variances[True]
    print(f"variance plain / Rao-Blackwellized: {ratio:.2f}")
    assert ratio > min_ratio
    return ratio


# ---------------------------------------------------------------------------
# Three dependent flips
# ---------------------------------------------------------------------------


@ppl.gen
def three_model():
    a = flip(0.3) @ "a"
    b = flip(jnp.where(a, 0.8, 0.2)) @ "b"
    c = flip(jnp.where(b, 0.7, 0.4)) @ "c"
    normal(jnp.where(c, 1.0, -1.0), 1.0) @ "y"


@ppl.gen
def three_guide(th):
    a = flip(sig(th[0])) @ "a"
    b = flip(sig(th[1] + jnp.where(a, 1.0, -1.0))) @ "b"
    flip(sig(th[2] + jnp.where(b, 0.5, -0.5))) @ "c"


THREE = [dict(zip("abc", v)) for v in itertools.product([False, True], repeat=3)]


def test_three_dependent_flips():
    _check_rb(three_model, three_guide, THREE, {"y": 0.4}, (jnp.array([0.2, -0.3, 0.4]),), 1.5)


# ---------------------------------------------------------------------------
# A chain of ten flips
# ---------------------------------------------------------------------------

L = 10


@ppl.gen
def chain_model():
    z = False
    for i in range(L):
        z = flip(jnp.where(z, 0.7, 0.3)) @ f"z{i}"
    normal(jnp.where(z, 1.0, -1.0), 1.0) @ "y"


@ppl.gen
def chain_guide(th):
    z = False
    for i in range(L):
        z = flip(sig(th[i] + jnp.where(z, 0.5, -0.5))) @ f"z{i}"


def _chain_exact(th):
    """The ELBO of the chain by enumeration, vectorised over the 2^L paths."""
    zs = jnp.array(list(itertools.product([0.0, 1.0], repeat=L)))
    prev = jnp.concatenate([jnp.zeros((zs.shape[0], 1)), zs[:, :-1]], axis=1)
    q1 = sig(th + jnp.where(prev > 0, 0.5, -0.5))
    p1 = jnp.where(prev > 0, 0.7, 0.3)
    logq = jnp.sum(jnp.log(jnp.where(zs > 0, q1, 1 - q1)), axis=1)
    logp = jnp.sum(jnp.log(jnp.where(zs > 0, p1, 1 - p1)), axis=1)
    logp = logp + jax.scipy.stats.norm.logpdf(0.4, jnp.where(zs[:, -1] > 0, 1.0, -1.0), 1.0)
    return jnp.sum(jnp.exp(logq) * (logp - logq))


def test_chain_of_ten_flips():
    th = jnp.linspace(-0.5, 0.5, L)
    exact = jax.grad(_chain_exact)(th)
    variances = {}
    for rb in (False, True):
        (g,) = _objective_grads(
            vi.elbo(chain_model, chain_guide, {"y": 0.4}, rao_blackwell=rb), (th,)
        )
        assert_close_mc(g, exact, what=f"chain, rao_blackwell={rb}")
        variances[rb] = float(g.var(axis=0).sum())
    print("chain variances", variances)
    assert variances[False] > 2.0 * variances[True]


# ---------------------------------------------------------------------------
# Reparam and reinforce together
# ---------------------------------------------------------------------------


@ppl.gen
def mixed_model():
    z = normal(0.0, 1.0) @ "z"
    b = flip(sig(z)) @ "b"
    normal(z + jnp.where(b, 1.0, 0.0), 1.0) @ "y"


@ppl.gen
def mixed_guide(mu, th):
    z = normal(mu, 0.8) @ "z"
    flip(sig(th + 0.5 * z)) @ "b"


def _mixed_exact(mu, th):
    """Gauss-Hermite over z (reparameterized nodes), enumeration over b."""
    x, w = np.polynomial.hermite_e.hermegauss(30)

    def at(z, b):
        logq, _ = mixed_guide.assess({"z": z, "b": b}, (mu, th))
        logp, _ = mixed_model.assess({"z": z, "b": b, "y": 0.7}, ())
        qb = sig(th + 0.5 * z)
        return (qb if b else 1 - qb) * (logp - logq)

    zs = mu + 0.8 * jnp.asarray(x)
    per_b = [jax.vmap(lambda z: at(z, b))(zs) for b in (False, True)]
    return jnp.sum(jnp.asarray(w) / np.sqrt(2 * np.pi) * (per_b[0] + per_b[1]))


def test_reparam_and_reinforce_together():
    args = (jnp.float32(0.3), jnp.float32(-0.2))
    exact = jax.grad(_mixed_exact, argnums=(0, 1))(*args)
    for rb in (False, True):
        grads = _objective_grads(
            vi.elbo(mixed_model, mixed_guide, {"y": 0.7}, rao_blackwell=rb), args
        )
        for i, g in enumerate(grads):
            assert_close_mc(g, exact[i], what=f"mixed, rao_blackwell={rb}, argument {i}")


def test_reparam_only_is_unchanged():
    @ppl.gen
    def model():
        z = normal(0.0, 1.0) @ "z"
        normal(z, 0.5) @ "y"

    @ppl.gen
    def guide(mu):
        normal(mu, 0.7) @ "z"

    key = jax.random.key(3)
    grads = [
        vi.elbo(model, guide, {"y": 1.0}, rao_blackwell=rb).grad_estimate(key, (), (0.2,))[1][0]
        for rb in (False, True)
    ]
    np.testing.assert_allclose(grads[0], grads[1], rtol=1e-5)


def test_enum_and_mvd_guides_stay_unbiased():
    strategies = {"a": ppl.enum, "b": ppl.mvd}
    obj = vi.elbo(three_model, three_guide, {"y": 0.4}, strategies=strategies)
    th = jnp.array([0.2, -0.3, 0.4])
    _, exact = _exact_elbo(three_model, three_guide, THREE, {"y": 0.4}, (th,))
    (g,) = _objective_grads(obj, (th,), n=8000)
    assert_close_mc(g, exact[0], what="a by enum, b by mvd, c by reinforce")


# ---------------------------------------------------------------------------
# Costs and values of a plain expectation, a branch, a loop
# ---------------------------------------------------------------------------


@ppl.gen
def branch_true(theta):
    y = flip(sig(theta[1])) @ "y"
    ppl.add_cost(jnp.where(y, 2.0, 0.0))
    return jnp.where(y, 3.0, -1.0)


@ppl.gen
def branch_false(theta):
    y = flip(sig(theta[2])) @ "y"
    return jnp.where(y, 0.5, 1.5)


@ppl.expectation
def branching(theta):
    a = flip(sig(theta[0])) @ "a"
    v = ppl.cond(branch_true, branch_false)(a, theta) @ "s"
    d = flip(sig(theta[3])) @ "d"
    ppl.add_cost(jnp.where(d, 2.0, -1.0))  # depends on d alone
    e = flip(sig(theta[4] + jnp.where(d, 1.0, 0.0))) @ "e"
    return v + jnp.where(e, 1.0, -2.0)


def _branching_exact(theta):
    total = 0.0
    for a, y, d, e in itertools.product([False, True], repeat=4):
        pa = sig(theta[0]) if a else 1 - sig(theta[0])
        py1 = sig(theta[1]) if a else sig(theta[2])
        py = py1 if y else 1 - py1
        pd = sig(theta[3]) if d else 1 - sig(theta[3])
        pe1 = sig(theta[4] + (1.0 if d else 0.0))
        pe = pe1 if e else 1 - pe1
        if a:
            v = (3.0 if y else -1.0) + (2.0 if y else 0.0)
        else:
            v = 0.5 if y else 1.5
        value = v + (2.0 if d else -1.0) + (1.0 if e else -2.0)
        total = total + pa * py * pd * pe * value
    return total


def test_branch_and_costs():
    theta = jnp.array([0.3, -0.4, 0.2, 0.5, -0.1])
    exact = jax.grad(_branching_exact)(theta)
    variances = {}
    for rb in (False, True):
        g = grad_samples(branching.with_rao_blackwell(rb), (theta,), n=N)
        assert_close_mc(g, exact, what=f"branch, rao_blackwell={rb}")
        variances[rb] = float(g.var(axis=0).sum())
    print("branch variances", variances)
    assert variances[False] > 1.5 * variances[True]


@ppl.gen
def coin_step(count, p):
    b = flip(p) @ "b"
    return count + jnp.where(b, 1.0, 0.0), b


T = 4


@ppl.expectation
def looping(theta):
    first = flip(sig(theta[0])) @ "first"
    count, _ = ppl.scan(coin_step, length=T)(0.0, sig(theta[1]) * jnp.ones(T)) @ "loop"
    ppl.add_cost(jnp.where(first, 10.0, -8.0))  # independent of the loop
    last = flip(sig(theta[2] + 0.3 * count)) @ "last"
    return count**2 + jnp.where(last, 1.0, 0.0)


def _looping_exact(theta):
    total = 0.0
    p = sig(theta[1])
    for k in range(T + 1):
        pk = math.comb(T, k) * p**k * (1 - p) ** (T - k)
        total = total + pk * (k**2 + sig(theta[2] + 0.3 * k))
    pf = sig(theta[0])
    return total + pf * 10.0 - (1 - pf) * 8.0


def test_scan():
    theta = jnp.array([0.4, -0.2, 0.3])
    exact = jax.grad(_looping_exact)(theta)
    variances = {}
    for rb in (False, True):
        g = grad_samples(looping.with_rao_blackwell(rb), (theta,), n=N)
        assert_close_mc(g, exact, what=f"scan, rao_blackwell={rb}")
        variances[rb] = float(g.var(axis=0).sum())
    print("scan variances", variances)
    assert variances[False] > 1.5 * variances[True]


def test_the_option_is_checked():
    with pytest.raises(ppl.PPLError, match="with_rao_blackwell takes True or False"):
        branching.with_rao_blackwell(1)  # type: ignore[arg-type]
