"""The base of ``ppl.sum_out``: its trace, and the interface every kind shares
(the kinds differ only in how they sum: jointly, per element, along a chain)."""

from __future__ import annotations

from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp

from ppl._errors import PPLError, fmt_addrs
from ppl._gfi import GenerativeFunction, Trace, as_args, as_choices, as_key
from ppl.choices import ChoiceMap, Selection, select

MAX_ASSIGNMENTS = 2**16


class SumOutTrace(Trace):
    """A trace of ``sum_out``: the remaining choices and their exact log marginal.

    It keeps a whole trace of the original function (``inner``; its summed
    choices hold some values, not to be read) so that algorithms that look up
    the distribution behind each remaining choice (NUTS's supports) find it.
    """

    gen_fn: Any = eqx.field(static=True)
    args: tuple
    inner: Trace
    retval: Any
    score: Any

    @property
    def choices(self) -> ChoiceMap:
        return self.inner.choices.without(self.gen_fn.selection)

    @property
    def kept(self) -> ChoiceMap:
        return self.choices

    def project(self, selection: Selection):
        """The log density of the selected choices: all of them (the score) or none.

        Args:
            selection: a selection.

        Returns:
            ``score`` if it selects everything, 0 if it selects no remaining choice.

        Raises:
            PPLError: for any other selection: the summed-out density does not
                split into per-choice terms.

        Examples:
            >>> tr.project(ppl.select_all()) == tr.score
        """
        if selection.is_all():
            return self.score
        if self.kept.filter(selection).is_empty():
            return jnp.zeros_like(self.score)
        raise PPLError(
            f"{self.gen_fn.name}: the summed-out density does not split over its choices, so it "
            f"cannot be projected onto {selection!r}. Project onto all of them or none."
        )


class SumOut(GenerativeFunction):
    """``gen_fn`` with the selected finite discrete choices summed out exactly.

    Build with ``ppl.sum_out``, which picks the kind for ``gen_fn`` (joint,
    per element of a ``ppl.vmap``, or along a ``ppl.scan``). The kinds differ in
    ``_marginal`` (the exact log marginal), ``_summed`` (posterior draw or mode
    of the summed choices) and ``dependent``; the interface is shared.

    Attributes:
        gen_fn: the original generative function.
        selection: the summed choices.
        max_assignments: the most joint assignments one joint sum may have.

    Examples:
        >>> marg = ppl.sum_out(model, ppl.select("z"))
        >>> marg.assess(ChoiceMap.d({"y": 0.3}), ())[0]   # log sum_z p(y, z)
    """

    def __init__(self, gen_fn: GenerativeFunction, selection: Selection, max_assignments: int):
        self.gen_fn, self.selection, self.max_assignments = gen_fn, selection, max_assignments
        self.inner = (gen_fn,)

    @property
    def name(self) -> str:
        return f"sum_out({self.gen_fn.name})"

    # -- what each kind computes ---------------------------------------------
    def _marginal(self, kept: ChoiceMap, args) -> tuple[jax.Array, Any]:
        """``(log sum_z p(kept, z), retval)``."""
        raise NotImplementedError

    def _summed(self, key, kept: ChoiceMap, args, mode: bool) -> ChoiceMap:
        """The summed choices: a posterior draw, or the most probable assignment."""
        raise NotImplementedError

    def dependent(self, args) -> list[bool]:
        """For each leaf of the return value: whether it depends on the summed choices.

        Args:
            args: the arguments (arrays, tracers or shapes).

        Returns:
            One bool per leaf of the return value, decided when traced.

        Examples:
            >>> ppl.sum_out(hmm_scan, ppl.select("z")).dependent((z0, None))  # [True, False]
        """
        raise NotImplementedError

    # -- checks ----------------------------------------------------------------
    def _check_kept(self, choices: ChoiceMap, what: str) -> None:
        summed = choices.filter(self.selection)
        if not summed.is_empty():
            raise PPLError(
                f"{what} of {self.name} was given {fmt_addrs(summed.addresses())}, which it sums "
                "out. Give only the remaining choices; for the summed ones use posterior_sample "
                "or most_probable."
            )

    def kept_shape(self, args) -> ChoiceMap:
        """The remaining choices, as shapes, for ``args`` (nothing is run).

        Args:
            args: the arguments.

        Returns:
            A ``ppl.ChoiceMap`` of ``jax.ShapeDtypeStruct`` leaves.

        Examples:
            >>> marg.kept_shape(args).addresses()
        """
        return self.gen_fn.trace_shape(args).choices.without(self.selection)

    # -- the interface -----------------------------------------------------------
    def _simulate(self, key, args):
        tr = self.gen_fn.simulate(key, args)
        score, _ = self._marginal(tr.choices.without(self.selection), args)
        return SumOutTrace(self, args, tr, tr.retval, score)

    def _assess(self, choices, args):
        self._check_kept(choices, "assess")
        return self._marginal(choices, args)

    def _generate(self, key, constraints, args):
        self._check_kept(constraints, "generate")
        if constraints.is_empty():
            tr = self._simulate(key, args)
            return tr, jnp.zeros_like(tr.score)
        given = select(*constraints.addresses())
        free = self.kept_shape(args).without(given).addresses()
        if free:
            return self._generate_partial(key, constraints, free, args)
        score, retval = self._marginal(constraints, args)
        inner, _ = self.gen_fn.generate(key, constraints, args)
        return SumOutTrace(self, args, inner, retval, score), score

    def _generate_partial(self, key, constraints, free, args):
        """Generate with the remaining choices at ``free`` unconstrained; the kinds
        that can sample them from a known proposal override this."""
        raise self._partial_error(free, "")

    def _partial_error(self, free, why):
        return PPLError(
            f"generate of {self.name} constrains some remaining choices but not "
            f"{fmt_addrs(free)}{why}: their proposal density would have to be summed over the "
            "summed choices too. Constrain them as well (or nothing), e.g. with a proposal that "
            "samples them (importance sampling's proposal=, an MCMC run's starting traces)."
        )

    def _update(self, key, trace, constraints, args):
        self._check_kept(constraints, "update")
        score, retval = self._marginal(trace.kept | constraints, args)
        inner, _, discard = self.gen_fn.update(key, trace.inner, constraints, args)
        return SumOutTrace(self, args, inner, retval, score), score - trace.score, discard

    def _regenerate(self, key, trace, selection, args):
        if trace.kept.filter(selection).is_empty():
            # Nothing here is resampled (a move elsewhere in an enclosing model):
            # the weight is the change of this density with the arguments.
            new, w, _ = self._update(key, trace, ChoiceMap.empty(), args)
            return new, w
        raise PPLError(
            f"{self.name} cannot regenerate: resampling its remaining choices would need their "
            "marginal conditional prior, which has no closed form. Propose new values with "
            "update (as Metropolis-Hastings with a custom proposal does), or use a kernel built "
            "on the exact density such as HMC/NUTS."
        )

    # -- the summed choices afterwards -----------------------------------------
    def posterior_sample(self, key, choices, args: tuple) -> ChoiceMap:
        """Draw the summed choices from their exact posterior given the others.

        Args:
            key: a ``jax.random`` key.
            choices: every remaining choice (as for ``assess``).
            args: the arguments.

        Returns:
            A ``ppl.ChoiceMap`` of the summed-out choices; with
            ``choices`` it is a complete choice map of the original function.
            Under ``ppl.scan`` this is forward-filtering backward-sampling.

        Raises:
            PPLError: if ``choices`` holds summed-out addresses.

        Examples:
            >>> z = hmm_marg.posterior_sample(key, ChoiceMap.d({("chain", "x"): xs}), (T,))
        """
        choices, args = as_choices(choices), as_args(args, self.name)
        self._check_kept(choices, "posterior_sample")
        return self._summed(as_key(key), choices, args, False)

    def most_probable(self, choices, args: tuple) -> ChoiceMap:
        """The jointly most probable values of the summed choices given the others.

        Args:
            choices: every remaining choice (as for ``assess``).
            args: the arguments.

        Returns:
            A ``ppl.ChoiceMap`` of the summed-out choices (the joint mode;
            under ``ppl.scan`` the Viterbi path). Ties go to the first assignment.

        Raises:
            PPLError: if ``choices`` holds summed-out addresses.

        Examples:
            >>> path = hmm_marg.most_probable(ChoiceMap.d({("chain", "x"): xs}), (T,))
        """
        choices, args = as_choices(choices), as_args(args, self.name)
        self._check_kept(choices, "most_probable")
        return self._summed(jax.random.key(0), choices, args, True)
