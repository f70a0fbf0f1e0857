"""Implicit variational families: a neural sampler with a linearized density.

A neural sampler draws ``eps ~ N(0, I_k)`` and ``xi ~ N(0, I_d)`` and returns
``z = g(eps) + sigma xi`` (``g`` an equinox MLP, ``sigma`` a small output
noise). Its density ``q(z) = E_eps N(z; g(eps), sigma^2 I)`` has no closed
form. Following Uppal, Stensbo-Smidt, Boomsma and Frellsen (NeurIPS 2023),
linearize ``g`` at the ``eps0`` that produced ``z``, ``g(eps) ~ g(eps0) +
J (eps - eps0)`` with ``J`` the Jacobian there; under the linear sampler ``z``
is exactly Gaussian, and its log density is the estimate::

    log q_lin(z) = log N(z; g(eps0) - J eps0, J J^T + sigma^2 I_d).

Here that estimate is a ``ppl.marginal`` family: the joint ``(eps, z)`` with
``eps`` integrated out by one retained sample and a proposal ``r(eps | z)``,
so ``log q(eps0, z) - log r(eps0 | z)``. The proposal is the posterior of
``eps`` given ``z`` under the sampler linearized at ``eps0`` (Gaussian, with
precision ``I + J^T J / sigma^2``); by Bayes' rule for the linear model, and
because the linearized and the true sampler agree at ``eps0``, the weight is
exactly ``log q_lin(z)`` (``linearized_log_density`` computes it directly;
the tests check they agree). Every determinant is of a ``k x k`` matrix.

Which objectives keep a bound. With an *affine* sampler the linearization is
exact, ``q_lin = q``, and every objective keeps its guarantee (``elbo`` and
``iwelbo`` are lower bounds on ``log p(obs)``). With a nonlinear sampler the
estimate is not ``log q``: it would be the retained-sample HVI bound (whose
ELBO is a lower bound) if ``r`` did not depend on ``eps0``, but the
proposal linearizes at the very point it scores, so ``E[log q_lin(z)]`` may be
above or below ``E[log q(z)]``, and ``vi.elbo`` with this family is the
paper's approximate ELBO, not a guaranteed bound; its error vanishes where
``g`` is linear over the spread of ``eps`` given ``z`` (about ``sigma`` over
the singular values of ``J``). The same holds for ``iwelbo`` and ``renyi``
(approximate, no ordering to ``log p(obs)``). Objectives that evaluate the
guide's density at points it did not sample (``vimco``'s scores,
``rws_wake_q``/``forward_kl``) are refused with an error, as for every
``ppl.marginal`` family; ``ppl.density`` of the family would sample the
proposal, which has no fixed centre: its draws are NaN, so such an estimate
is NaN (``vi.fit`` stops with ``NonFiniteLoss``), never a wrong number.
"""

from __future__ import annotations

from typing import Any, Iterator

import equinox as eqx
import jax
import jax.numpy as jnp
import numpyro.distributions as nd
from numpyro.distributions import constraints
from numpyro.distributions.transforms import IdentityTransform, IndependentTransform, biject_to

from ppl._errors import PPLError, fmt_addr
from ppl.choices import select
from ppl.distributions import distribution, normal
from ppl.gen import gen
from ppl.inference._sites import sites
from ppl.inference.predictions import compiled_draws
from ppl.inference.vi._autoguide_init import make_layout
from ppl.marginals import marginal


def linearized_log_density(sampler, noise_scale, z, eps):
    """``log N(z; g(eps) - J eps, J J^T + sigma^2 I)``: the density of ``z`` under
    the sampler ``g`` linearized at ``eps`` (``J = dg/deps`` there).

    Args:
        sampler: ``g``, a function from ``(k,)`` to ``(d,)`` (an equinox module).
        noise_scale: ``sigma > 0``.
        z: the point, shape ``(d,)``.
        eps: where to linearize, shape ``(k,)``.

    Returns:
        A scalar; exactly ``log q(z)`` when ``g`` is affine.

    The Jacobian costs ``k`` forward-mode passes through ``g``; by Woodbury's
    identity only a ``k x k`` matrix is factored, ``O(d k^2 + k^3)``.

    Raises:
        Nothing of its own: shapes that do not match fail in ``jax.numpy``.

    Examples:
        >>> from ppl.inference.vi import linearized_log_density
        >>> g = lambda e: 2.0 * e            # z = 2 eps + sigma xi: N(0, 4 + sigma^2)
        >>> v = linearized_log_density(g, 1.0, jnp.zeros(1), jnp.ones(1))
        >>> round(float(v), 4)               # log N(0; 0, 5)
        -1.7237
    """
    out, jac = g_and_jacobian(sampler, eps)
    d, k = jac.shape
    s2 = jnp.asarray(noise_scale) ** 2
    r = z - out + jac @ eps
    # Woodbury and the determinant lemma: only k x k matrices are factored.
    chol = jnp.linalg.cholesky(jnp.eye(k, dtype=jac.dtype) + jac.T @ jac / s2)
    proj = jax.scipy.linalg.solve_triangular(chol, jac.T @ r, lower=True) / s2
    maha = r @ r / s2 - proj @ proj
    log_det = d * jnp.log(s2) + 2 * jnp.sum(jnp.log(jnp.diag(chol)))
    return -0.5 * (d * jnp.log(2 * jnp.pi) + log_det + maha)


def g_and_jacobian(sampler, eps):
    """``(g(eps), dg/deps)``, the Jacobian by forward mode (``k`` columns).

    Args:
        sampler: a function from ``(k,)`` to ``(d,)``.
        eps: shape ``(k,)``.

    Returns:
        ``(out, jac)`` of shapes ``(d,)`` and ``(d, k)``.

    Raises:
        Nothing of its own: an error of the sampler (or of ``jax.jacfwd``) passes through.

    Examples:
        >>> from ppl.inference.vi import g_and_jacobian
        >>> out, jac = g_and_jacobian(lambda e: 3.0 * e, jnp.ones(2))
        >>> jac.shape
        (2, 2)
    """
    return sampler(eps), jax.jacfwd(sampler)(eps)


class _LinearizedPosterior(nd.Distribution):
    """``r(eps | z)``: the posterior of ``eps`` given ``z`` under the sampler
    linearized at the point scored. It is only ever evaluated at the retained
    ``eps0``; it has no fixed centre to be sampled from (its draws are NaN)."""

    support = constraints.real_vector  # pyright: ignore[reportAssignmentType]

    def __init__(self, z, noise_scale, sampler, noise_dim: int):
        self.z, self.noise_scale, self.sampler = z, noise_scale, sampler
        super().__init__(batch_shape=(), event_shape=(noise_dim,))

    def sample(self, key, sample_shape=()):
        # NaN, not an error: ppl reads the shape of a draw while staging. A
        # draw that is used makes the objective NaN, which vi.fit reports.
        return jnp.full(tuple(sample_shape) + self.event_shape, jnp.nan, self.z.dtype)

    def log_prob(self, value):
        out, jac = g_and_jacobian(self.sampler, value)
        k = jac.shape[1]
        s2 = self.noise_scale**2
        prec = jnp.eye(k, dtype=jac.dtype) + jac.T @ jac / s2
        chol = jnp.linalg.cholesky(prec)
        # the posterior mean P^{-1} J^T (z - g(eps0) + J eps0) / sigma^2
        mean = jax.scipy.linalg.cho_solve((chol, True), jac.T @ (self.z - out + jac @ value) / s2)
        white = chol.T @ (value - mean)
        return (
            -0.5 * k * jnp.log(2 * jnp.pi) + jnp.sum(jnp.log(jnp.diag(chol))) - 0.5 * white @ white
        )


def _noise_dim(sampler):
    # eqx.nn.MLP says in_size, eqx.nn.Linear in_features
    size = getattr(sampler, "in_size", getattr(sampler, "in_features", None))
    return size if isinstance(size, int) else None


class ImplicitFamily:
    """A neural-sampler family and its initial arguments; unpacks as ``(guide, guide_args)``.

    Built by ``implicit_family``, which says what the family is. The first
    four arguments are kept as attributes of the same names; ``.sample``,
    ``.sampler`` and ``.noise_scale`` read them with fitted arguments.

    Args:
        guide: the family, a ``ppl.marginal`` over the model's latent addresses,
            called with ``*guide_args``.
        guide_args: ``(params,)`` with ``params = {"sampler": arrays, "log_noise":
            log sigma}``, ``arrays`` the array part of the sampler
            (``eqx.partition(mlp, eqx.is_array)[0]``); ``vi.fit`` trains them.
        latents: ``{address: shape}``, in program order.
        noise_dim: ``k``, the dimension of ``eps``.
        joint: the generative function of ``(eps, z)`` that ``.sample`` runs.
        static: the sampler's non-array part, recombined with ``arrays``.

    Examples:
        >>> from ppl.inference import vi
        >>> @ppl.gen
        ... def model():
        ...     z = ppl.normal(jnp.zeros(2), 1.0) @ "z"
        ...     return ppl.normal(jnp.sum(z), 1.0) @ "y"
        >>> family = vi.implicit_family(model, {"y": 1.0}, width=8)
        >>> guide, guide_args = family
        >>> family.sample(jax.random.key(0), guide_args, n=100)["z"].shape
        (100, 2)
    """

    def __init__(self, guide, guide_args: tuple, latents: dict, noise_dim: int, joint, static):
        self.guide, self.guide_args = guide, guide_args
        self.latents, self.noise_dim, self._joint = latents, noise_dim, joint
        self._static = static

    def __iter__(self) -> Iterator[Any]:
        return iter((self.guide, self.guide_args))

    def __repr__(self):
        d = sum(int(jnp.prod(jnp.array(s))) for s in self.latents.values())
        n, k = len(self.latents), self.noise_dim
        return f"ImplicitFamily({n} latent choices, {d} coordinates, k={k})"

    def sampler(self, guide_args: tuple | None = None) -> eqx.Module:
        """The sampler ``g`` with the given arguments' arrays.

        Args:
            guide_args: ``(params,)`` (default: the initial ones).

        Returns:
            The equinox module ``g``.

        Raises:
            KeyError: if ``guide_args`` are not this family's ``(params,)``.

        Examples:
            >>> g = family.sampler(result.guide_args)   # doctest: +SKIP
        """
        args = self.guide_args if guide_args is None else guide_args
        return eqx.combine(args[0]["sampler"], self._static)

    def noise_scale(self, guide_args: tuple | None = None):
        """``sigma``, the output noise.

        Args:
            guide_args: ``(params,)`` (default: the initial ones).

        Returns:
            A scalar array.

        Raises:
            KeyError: if ``guide_args`` are not this family's ``(params,)``.

        Examples:
            >>> float(family.noise_scale())   # doctest: +SKIP
            0.01
        """
        args = self.guide_args if guide_args is None else guide_args
        return jnp.exp(args[0]["log_noise"])

    def sample(self, key, guide_args: tuple | None = None, n: int = 1000):
        """``n`` draws of the latent choices (vectorised).

        Args:
            key: a ``jax.random`` key.
            guide_args: ``(params,)`` (default: the initial ones), e.g. ``result.guide_args``.
            n: the number of draws.

        Returns:
            ``{address: array}``, each with a leading axis of ``n``.

        Raises:
            KeyError: if ``guide_args`` are not this family's ``(params,)``.

        Examples:
            >>> draws = family.sample(jax.random.key(0), result.guide_args, 500)  # doctest: +SKIP
        """
        args = self.guide_args if guide_args is None else guide_args
        choices = compiled_draws(self._joint, n)(key, args)
        return {a: choices[a] for a in self.latents}


def _real_latents(layout, caller):
    marked = sites(layout.prototype, layout.selection())
    latents = {}
    for lat in layout.latents:
        if len(lat.path) != 1 or not isinstance(lat.path[0], str):
            raise PPLError(
                f"{caller}: the latent choice {fmt_addr(lat.path)} is nested; an implicit family "
                "samples top-level addresses only. Make the model's latent choices at top-level "
                "string addresses (pass sub-models' values in as arguments), or write the "
                "family by hand with ppl.marginal."
            )
        t = biject_to(marked[lat.path].dist.support)
        while isinstance(t, IndependentTransform):
            t = t.base_transform
        if not isinstance(t, IdentityTransform):
            raise PPLError(
                f"{caller}: the latent choice {fmt_addr(lat.path)} has support "
                f"{marked[lat.path].dist.support}, and the neural sampler makes real values. "
                "Write the model over an unconstrained value (e.g. a normal log-scale, "
                "exponentiated) or use an automatic guide (vi.auto_normal, ...)."
            )
        latents[lat.path[0]] = lat.shape
    return latents


def implicit_family(
    model,
    observations=None,
    args: tuple = (),
    *,
    noise_dim: int | None = None,
    width: int = 64,
    depth: int = 1,
    activation=jax.nn.tanh,
    noise_scale: float = 1e-2,
    sampler: eqx.Module | None = None,
    key=None,
) -> ImplicitFamily:
    """An implicit family for the latent choices of ``model``: ``z = g(eps) + sigma xi``
    with a linearized log density (see the module's text for which objectives
    keep a bound).

    ``eps ~ N(0, I_k)``, ``xi ~ N(0, I_d)``; the family's density of ``z`` is
    ``linearized_log_density`` at the ``eps`` that drew it (Uppal et al.,
    NeurIPS 2023). ``vi.elbo`` with it is the paper's approximate ELBO, a
    bound only for an affine sampler; ``vimco`` and ``rws_wake_q`` are
    refused (they score the guide at points it did not sample). A draw costs
    one pass of ``g`` plus its ``k``-column Jacobian and a ``k x k`` Cholesky.

    Args:
        model: an ``@ppl.gen`` model; its latent choices (given ``observations``)
            must be real-valued, at top-level string addresses.
        observations: a choice map (or dict) of observed values.
        args: the model's arguments (a tuple).
        noise_dim: ``k``, the dimension of ``eps`` (default: the number of latent
            coordinates ``d``).
        width: the default sampler's hidden width: it is ``eqx.nn.MLP(k, d,
            width, depth, activation)``.
        depth: its number of hidden layers (``depth=0`` is affine: a
            full-rank Gaussian, for which the density is exact).
        activation: its activation function.
        noise_scale: the initial ``sigma``.
        sampler: an equinox module from ``(k,)`` to ``(d,)`` to use instead.
        key: a ``jax.random`` key for the MLP's weights and the prior draw that
            reads the model (default ``key(0)``).

    Returns:
        An ``ImplicitFamily``.

    Raises:
        PPLError: if a latent choice is not real-valued or is nested, if
            ``noise_dim`` or ``noise_scale`` is invalid, or if ``sampler``'s
            output does not have ``d`` coordinates.

    Examples:
        >>> import jax, jax.numpy as jnp, ppl
        >>> from ppl.inference import vi
        >>> @ppl.gen
        ... def model():
        ...     z = ppl.normal(jnp.zeros(2), 1.0) @ "z"
        ...     return ppl.normal(jnp.sum(z), 1.0) @ "y"
        >>> family = vi.implicit_family(model, {"y": 1.0}, width=8)
        >>> family.latents, family.noise_dim
        ({'z': (2,)}, 2)
    """
    caller = "implicit_family"
    k_layout, k_mlp = jax.random.split(jax.random.key(0) if key is None else key)
    layout, _ = make_layout(k_layout, model, observations, args, caller)
    latents = _real_latents(layout, caller)
    d = layout.size
    if not isinstance(noise_scale, (int, float)) or noise_scale <= 0:
        raise PPLError(f"{caller}: noise_scale must be a positive number, got {noise_scale!r}.")
    if sampler is None:
        k = d if noise_dim is None else noise_dim
        if not isinstance(k, int) or isinstance(k, bool) or k < 1:
            raise PPLError(f"{caller}: noise_dim must be a positive int, got {noise_dim!r}.")
        sampler = eqx.nn.MLP(k, d, width, depth, activation=activation, key=k_mlp)
    k = _noise_dim(sampler) if noise_dim is None else noise_dim
    if not isinstance(k, int):
        raise PPLError(
            f"{caller}: pass noise_dim= with a sampler that has no integer in_size; got "
            f"{sampler!r}."
        )
    out = jax.eval_shape(lambda e: sampler(e), jnp.zeros(k))  # pyright: ignore[reportCallIssue]
    if out.shape != (d,):
        raise PPLError(
            f"{caller}: the sampler maps ({k},) to {out.shape}, but the model has {d} latent "
            f"coordinates ({', '.join(f'{a}: {s}' for a, s in latents.items())}); it must return "
            f"shape ({d},)."
        )
    # only arrays in the arguments, so stop_gradient and vi.fit see a plain pytree
    arrays, static = eqx.partition(sampler, eqx.is_array)
    offsets, start = {}, 0
    for a, shape in latents.items():
        size = int(jnp.prod(jnp.array(shape, int))) if shape else 1
        offsets[a], start = (start, size, shape), start + size

    @gen
    def implicit_joint(params):
        eps = normal(jnp.zeros(k), 1.0) @ "eps"
        mean = eqx.combine(params["sampler"], static)(eps)
        sigma = jnp.exp(params["log_noise"])
        for a, (lo, size, shape) in offsets.items():
            normal(jnp.reshape(mean[lo : lo + size], shape), sigma) @ a

    def posterior_factory(z, log_noise, arrays):
        return _LinearizedPosterior(z, jnp.exp(log_noise), eqx.combine(arrays, static), k)

    linearized = distribution(posterior_factory, "linearized_posterior")

    @gen
    def implicit_proposal(x, params):
        z = jnp.concatenate([jnp.reshape(x[a], (-1,)) for a in latents])
        return linearized(z, params["log_noise"], params["sampler"]) @ "eps"

    guide = marginal(implicit_joint, select(*latents), proposal=implicit_proposal, n=1)
    params = {"sampler": arrays, "log_noise": jnp.log(jnp.asarray(noise_scale, float))}
    return ImplicitFamily(guide, (params,), latents, k, implicit_joint, static)


__all__ = ["ImplicitFamily", "g_and_jacobian", "implicit_family", "linearized_log_density"]
