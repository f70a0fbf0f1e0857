"""Models with exact answers for the inference tests: a linear-Gaussian state-space
model (Kalman filter), a discrete HMM (forward algorithm), conjugate pairs."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from scipy.special import logsumexp

import ppl

# Linear-Gaussian state space: z_t ~ N(A z_{t-1}, Q), y_t ~ N(z_t, R), z_0 = 0.
A, Q, R = 0.9, 0.5, 0.7


@ppl.gen
def lgssm_step(z_prev, _):
    z = ppl.normal(A * z_prev, Q) @ "z"
    y = ppl.normal(z, R) @ "y"
    return z, y


def lgssm(T):
    return ppl.scan(lgssm_step, length=T)


def lgssm_data(T, seed=3):
    tr = lgssm(T).simulate(jax.random.key(seed), (0.0, None))
    return tr.choices["y"]


def kalman_log_marginal(ys) -> float:
    m, P, ll = 0.0, 0.0, 0.0
    for y in np.asarray(ys, np.float64):
        m, P = A * m, A * A * P + Q**2
        S = P + R**2
        ll += -0.5 * np.log(2 * np.pi * S) - 0.5 * (y - m) ** 2 / S
        K = P / S
        m, P = m + K * (y - m), (1 - K) * P
    return ll


# Discrete HMM: 3 hidden states, Gaussian emissions.
TRANS = np.array([[0.8, 0.15, 0.05], [0.1, 0.8, 0.1], [0.05, 0.15, 0.8]])
INIT = np.array([0.5, 0.3, 0.2])
MEANS = np.array([-1.0, 0.0, 1.5])
SIGMA = 0.8


@ppl.gen
def hmm_step(s_prev, t):
    probs = jnp.where(t == 0, jnp.asarray(INIT), jnp.asarray(TRANS)[s_prev])
    s = ppl.categorical(probs) @ "s"
    y = ppl.normal(jnp.asarray(MEANS)[s], SIGMA) @ "y"
    return s, y


def hmm(T):
    return ppl.scan(hmm_step, length=T)


def hmm_args(T):
    return (jnp.zeros((), jnp.int32), jnp.arange(T))


def hmm_data(T, seed=5):
    return hmm(T).simulate(jax.random.key(seed), hmm_args(T)).choices["y"]


def forward_log_marginal(ys) -> float:
    ys = np.asarray(ys, np.float64)
    log_em = -0.5 * np.log(2 * np.pi * SIGMA**2) - 0.5 * (ys[:, None] - MEANS) ** 2 / SIGMA**2
    alpha = np.log(INIT) + log_em[0]
    for t in range(1, len(ys)):
        alpha = logsumexp(alpha[:, None] + np.log(TRANS), axis=0) + log_em[t]
    # scipy's logsumexp is unannotated; the checker sees the tuple only return_sign=True returns
    return float(logsumexp(alpha))  # pyright: ignore[reportArgumentType]


# Conjugate models.
MU0, S0, SY = 0.5, 1.5, 1.0
NN_DATA = jnp.array([1.2, 0.3, 2.1, 1.7, 0.9])


@ppl.gen
def normal_normal(ys_like):
    mu = ppl.normal(MU0, S0) @ "mu"
    ppl.normal(mu + ys_like, SY) @ "y"
    return mu


def normal_normal_posterior(ys=NN_DATA):
    prec = 1 / S0**2 + len(ys) / SY**2
    mean = (MU0 / S0**2 + float(np.sum(ys)) / SY**2) / prec
    return mean, 1 / prec


def normal_normal_log_marginal(ys=NN_DATA) -> float:
    n = len(ys)
    cov = SY**2 * np.eye(n) + S0**2 * np.ones((n, n))
    d = np.asarray(ys, np.float64) - MU0
    _, logdet = np.linalg.slogdet(cov)
    return float(-0.5 * (n * np.log(2 * np.pi) + logdet + d @ np.linalg.solve(cov, d)))


A0, B0 = 2.0, 3.0
BB_DATA = jnp.array([1, 0, 1, 1, 0, 1, 1, 1], dtype=bool)


@ppl.gen
def beta_bernoulli(ones):
    p = ppl.beta(A0, B0) @ "p"
    ppl.flip(p * ones) @ "y"
    return p


def beta_bernoulli_posterior(ys=BB_DATA):
    a, b = A0 + float(np.sum(ys)), B0 + float(len(ys) - np.sum(ys))
    return a / (a + b), a * b / ((a + b) ** 2 * (a + b + 1))
