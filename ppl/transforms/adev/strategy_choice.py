"""The result of ``ppl.choose_strategies``: the measured rows, the chosen
policy and its printable table."""

from __future__ import annotations

import math
from typing import NamedTuple


from ppl._errors import PPLError, fmt_addr
from ppl.transforms.adev.interpreter import as_path
from ppl.transforms.adev.strategies import Strategy


AS_WRITTEN = "as written"


class PilotRow(NamedTuple):
    """One line of the pilot's table: a strategy tried at one address.

    ``strategy`` is the strategy tried, or ``None`` for the program as written
    (the choice's call-site strategy or its default). ``variance`` is the sum
    of the per-coordinate variances of the gradient estimates, ``seconds`` the
    run time of one estimate, ``cost`` their product; all three are ``None``
    for a skipped row, whose ``skipped`` gives the reason. ``same_as`` names
    the candidate whose estimates the program as written reproduces exactly
    (then the two are one estimator and only the candidate competes)."""

    address: tuple
    strategy: Strategy | None
    variance: float | None
    seconds: float | None
    cost: float | None
    chosen: bool
    skipped: str | None
    round: int
    same_as: str | None = None

    @property
    def label(self) -> str:
        """The strategy's name, or ``"as written"``."""
        if self.strategy is None:
            return AS_WRITTEN + (f" (= {self.same_as})" if self.same_as else "")
        return repr(self.strategy)


class _Measured:
    """A compiled pilot: its gradient samples, their variance, and (once timed)
    the seconds per estimate."""

    def __init__(self, compiled, variance: float, samples: list):
        self.compiled, self.variance, self.samples = compiled, variance, samples
        self.seconds = math.nan
        self.times: list[float] = []

    @property
    def cost(self) -> float:
        return self.variance * self.seconds


class StrategyChoice:
    """The result of ``choose_strategies``: the chosen policy and the pilot's table.

    Attributes:
        policy: ``{address: strategy}`` for every address whose best strategy
            is not the program as written; pass it as ``strategies=`` (to
            ``ppl.adev``, ``f.with_strategies`` or ``vi.elbo``) to freeze the
            choice. Top-level addresses are plain names, nested ones paths.
        rows: the table, one ``PilotRow`` per address and strategy tried.
        addresses: the addresses of the pilot, as paths, in program order.
        distributions: address -> the name of its distribution (``"?"`` where
            a policy of the expectation already fixed the strategy).
        as_written: ``(variance, seconds per estimate)`` of the whole gradient
            as written.
        tuned: ``(variance, seconds per estimate)`` of the whole gradient with
            ``policy``.
        n: the pilot gradient estimates per candidate.

    ``print(result)`` shows the table (``table``). Made by
    ``choose_strategies``, not by hand (its constructor takes the
    attributes above, in order).

    Examples:
        >>> @ppl.expectation
        ... def f(theta):
        ...     b = ppl.flip(jax.nn.sigmoid(theta)) @ "b"
        ...     return jnp.where(b, 3.0, -1.0)
        >>> result = ppl.choose_strategies(
        ...     f, jax.random.key(0), (0.0,), candidates=[ppl.reinforce, ppl.enum], n=16, repeats=1
        ... )
        >>> result.policy, result.chosen("b"), result.addresses
        ({'b': enum}, 'enum', [('b',)])
        >>> len(result.rows), result.rows[0].label, result.rows[-1].label, result.rows[-1].chosen
        (3, 'as written (= reinforce)', 'enum', True)
        >>> result.tuned[0]  # the variance of the whole gradient with the policy
        0.0
    """

    def __init__(self, policy, rows, addresses, distributions, as_written, tuned, n):
        self.policy: dict = policy
        self.rows: list[PilotRow] = rows
        self.addresses: list[tuple] = addresses
        self.distributions: dict = distributions
        self.as_written: tuple[float, float] = as_written
        self.tuned: tuple[float, float] = tuned
        self.n: int = n

    def chosen(self, address) -> str:
        """The strategy chosen at one address of the pilot.

        Args:
            address: a name (``"x"``) or a path (``("guide", "x")``).

        Returns:
            The chosen strategy's name (``"enum"``, ``"reinforce(baseline=1.0)"``),
            or ``"as written"`` where the program as written won (the address
            is then not in ``policy``).

        Raises:
            PPLError: if ``address`` is not an address of the pilot.

        Examples:
            >>> result.chosen("b")  # result: see the class's example  # doctest: +SKIP
            'enum'
        """
        path = as_path(address)
        if path not in self.addresses:
            raise PPLError(
                f"{fmt_addr(path)} is not an address of the pilot; its addresses are "
                + ", ".join(fmt_addr(a) for a in self.addresses)
                + "."
            )
        s = self.policy.get(_user_addr(path))
        return AS_WRITTEN if s is None else repr(s)

    def table(self) -> str:
        """The pilot as a text table: address, distribution, strategy, gradient
        variance, seconds per estimate, variance x seconds, the chosen one
        (``*``), and why a strategy was skipped.

        Returns:
            The table as one string (also ``repr(result)``).

        Examples:
            >>> print(result.table())  # result: see the class's example  # doctest: +SKIP
        """
        addrs = [
            fmt_addr(r.address) + (f" [round {r.round}]" if r.round > 1 else "") for r in self.rows
        ]
        wa = max([len("address"), *map(len, addrs)])
        wd = max([len("dist"), *(len(d) for d in self.distributions.values())])
        ws = max([len("strategy"), *(len(r.label) for r in self.rows)])
        head = (
            f"{'address':{wa}s} {'dist':{wd}s} {'strategy':{ws}s} {'variance':>10s} "
            f"{'s/estimate':>10s} {'var*s':>10s}  chosen / skipped"
        )
        lines = [
            f"strategy pilot: {self.n} gradient estimates per candidate; variance = trace of the "
            "gradient's covariance",
            head,
            "-" * len(head),
        ]
        for addr, r in zip(addrs, self.rows):
            dist = self.distributions.get(r.address, "?")
            left = f"{addr:{wa}s} {dist:{wd}s} {r.label:{ws}s}"
            if r.skipped is not None:
                nums = f"{'-':>10s} {'-':>10s} {'-':>10s}"
                lines.append(f"{left} {nums}  skipped: {_short(r.skipped)}")
                continue
            nums = f"{_num(r.variance)} {_num(r.seconds)} {_num(r.cost)}"
            lines.append(f"{left} {nums}  {'*' if r.chosen else ''}".rstrip())
        (v0, t0), (v1, t1) = self.as_written, self.tuned
        lines.append(
            f"whole gradient: as written var {_num(v0).strip()} x {_num(t0).strip()} s = "
            f"{_num(v0 * t0).strip()}; chosen policy var {_num(v1).strip()} x {_num(t1).strip()} "
            f"s = {_num(v1 * t1).strip()}"
        )
        shown = ", ".join(f"{fmt_addr(as_path(a))}: {s!r}" for a, s in self.policy.items())
        lines.append(f"policy: {{{shown}}}")
        return "\n".join(lines)

    def __repr__(self) -> str:
        return self.table()


def _short(reason: str, width: int = 90) -> str:
    """A refusal's reason without the preamble the row already shows."""
    cut = reason.find("): ")
    if reason.startswith("strategy ") and " cannot be used for " in reason[:cut] and cut > 0:
        reason = reason[cut + 3 :]
    return reason if len(reason) <= width else reason[: width - 3] + "..."


def _num(x) -> str:
    return f"{x:10.3g}"


def _user_addr(path: tuple):
    return path[0] if len(path) == 1 else path
