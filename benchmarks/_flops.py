"""FLOP counts of compiled JAX functions, and the machine's matrix-product peak.

``compiled_flops`` reads XLA's own cost analysis. That analysis visits every
HLO computation once, so a ``while`` body (a ``lax.scan`` or ``fori_loop``,
and on CPU the rolled loop of every threefry hash behind ``jax.random``) is
counted once, not once per trip. ``loop_flops`` finds each loop (and refuses
one whose trip count XLA does not know) and estimates, from the compiled HLO
text, the FLOPs its body is missing for the other trips, following XLA's
conventions: a ``dot`` is 2 FLOPs per multiply-add, a non-transcendental
elementwise op 1 per element of its output, data movement 0. ``step_flops``
is the two together.

``matmul_timer`` and ``matmul_peak`` time a jitted float32 ``jnp.dot``: the
rate the machine reaches on matrix products under the current process's
thread settings, the limit a program made of matrix products can approach.
"""

from __future__ import annotations

import math
import re
import statistics
import time
from dataclasses import dataclass

import jax
import jax.numpy as jnp

# XLA's cost analysis files these under "transcendentals", not "flops".
_TRANSCENDENTAL = {
    "exponential",
    "exponential-minus-one",
    "log",
    "log-plus-one",
    "tanh",
    "logistic",
    "sqrt",
    "rsqrt",
    "cbrt",
    "power",
    "sine",
    "cosine",
    "tan",
    "atan2",
    "erf",
}
# Moving or naming data does no arithmetic.
_FREE = {
    "parameter",
    "constant",
    "get-tuple-element",
    "tuple",
    "bitcast",
    "bitcast-convert",
    "broadcast",
    "reshape",
    "transpose",
    "copy",
    "copy-start",
    "copy-done",
    "slice",
    "dynamic-slice",
    "dynamic-update-slice",
    "concatenate",
    "iota",
    "pad",
    "reverse",
    "gather",
    "after-all",
    "partition-id",
    "replica-id",
    "get-dimension-size",
    "opt-barrier",
}
# Charged one application of their called computation per input element.
_REDUCERS = {"reduce", "reduce-window", "map", "sort", "scatter", "select-and-scatter"}
# Their cost is what their called computations cost, which _cost adds.
_CALLERS = {"fusion", "call", "while", "conditional"}

_HEADER = re.compile(r"^(?:ENTRY\s+)?%(\S+)\s.*\{\s*$")
_INSTR = re.compile(r"^\s*(?:ROOT\s+)?%(\S+)\s*=\s*(.*?)\s([a-z][a-z0-9-]*)\((.*)$")
_SHAPE = re.compile(r"^[a-z0-9]+\[([0-9,]*)\]")
_CALLED = re.compile(r"\b(?:calls|to_apply|body|condition)=%([\w.-]+)")
_BRANCHES = re.compile(r"\bbranch_computations=\{([^}]*)\}")


@dataclass(frozen=True)
class _Instr:
    name: str
    shape: str
    opcode: str
    rest: str


def compiled_flops(compiled) -> float:
    """XLA's FLOP count of a ``jax.stages.Compiled`` (loop bodies counted once).

    jax 0.10 returns a dict from ``cost_analysis()``; older versions returned a
    list with one dict per device program, summed here."""
    analysis = compiled.cost_analysis()
    if isinstance(analysis, dict):
        analysis = [analysis]
    return float(sum(a.get("flops", 0.0) for a in analysis))


def _elements(shape: str) -> int:
    m = _SHAPE.match(shape)
    if m is None:  # a tuple or token: not an array
        return 0
    return math.prod(int(d) for d in m.group(1).split(",") if d)


def _dims(shape: str) -> list[int]:
    m = _SHAPE.match(shape)
    return [int(d) for d in m.group(1).split(",") if d] if m else []


def _parse(hlo: str) -> tuple[dict[str, list[_Instr]], str]:
    """The computations of an HLO module's text, by name, and the entry's name."""
    computations: dict[str, list[_Instr]] = {}
    entry, current = "", None
    for line in hlo.splitlines():
        if current is None:
            m = _HEADER.match(line)
            if m:
                current = computations.setdefault(m.group(1), [])
                entry = m.group(1) if line.startswith("ENTRY") else entry
        elif line.strip() == "}":
            current = None
        else:
            m = _INSTR.match(line)
            if m:
                current.append(_Instr(*m.groups()))
    return computations, entry


def _instr_flops(instr: _Instr, shapes: dict[str, str]) -> float:
    """One instruction's own FLOPs, not counting the computations it calls."""
    op = instr.opcode
    if op in _FREE or op in _CALLERS or op in _TRANSCENDENTAL:
        return 0.0
    if op == "dot":
        lhs = instr.rest.split(",")[0].strip().lstrip("%")
        contracting = re.search(r"lhs_contracting_dims=\{([0-9,]*)\}", instr.rest)
        dims = _dims(shapes.get(lhs, ""))
        k = (
            math.prod(dims[int(i)] for i in contracting.group(1).split(",") if i)
            if contracting
            else 1
        )
        return 2.0 * _elements(instr.shape) * k
    if op in _REDUCERS:
        # One application of the reducer per input element: what XLA charges.
        first = instr.rest.split(",")[0].strip().lstrip("%")
        return float(_elements(shapes.get(first, instr.shape)))
    return float(_elements(instr.shape))


def _called(rest: str) -> list[str]:
    names = _CALLED.findall(rest)
    for group in _BRANCHES.findall(rest):
        names += [c.strip().lstrip("%") for c in group.split(",") if c.strip()]
    return names


def _cost(name: str, computations: dict, unrolled: bool, dots_only: bool, memo: dict) -> float:
    """FLOPs of one computation; loop bodies count once per trip if ``unrolled``."""
    key = (name, unrolled, dots_only)
    if key in memo:
        return memo[key]
    instrs = computations.get(name, [])
    shapes = {i.name: i.shape for i in instrs}
    total = 0.0
    for instr in instrs:
        if not dots_only or instr.opcode == "dot":
            total += _instr_flops(instr, shapes)
        if instr.opcode in _REDUCERS:
            continue  # _instr_flops charged the reducer already
        called = sum(_cost(c, computations, unrolled, dots_only, memo) for c in _called(instr.rest))
        trips = re.search(r'"known_trip_count":\{"n":"(\d+)"\}', instr.rest)
        if instr.opcode == "while" and unrolled:
            if trips is None:
                # Counting the body once would understate the work by an unknown factor.
                raise ValueError(
                    f"the loop {instr.name} has a trip count XLA does not know, so its FLOPs "
                    "cannot be counted; analyse a version with the loop unrolled."
                )
            called *= int(trips.group(1))
        total += called
    memo[key] = total
    return total


def _text(compiled) -> str:
    text = compiled.as_text()
    if text is None:
        raise ValueError("this compiled function has no HLO text to count FLOPs from.")
    return text


def hlo_flops(compiled, unrolled: bool = True, dots_only: bool = False) -> float:
    """An estimate of a compiled function's FLOPs from its HLO text, each loop
    body counted once per trip (``unrolled``) or once, as XLA's analysis does;
    ``dots_only`` counts the matrix products alone."""
    computations, entry = _parse(_text(compiled))
    return _cost(entry, computations, unrolled, dots_only, {})


def loop_flops(compiled) -> float:
    """The FLOPs XLA's analysis of ``compiled`` misses by counting each loop
    body once: the body's estimated cost times (trip count - 1), summed."""
    return hlo_flops(compiled, unrolled=True) - hlo_flops(compiled, unrolled=False)


def step_flops(compiled) -> tuple[float, float]:
    """``(flops, loop_correction)``: XLA's count of ``compiled`` with every
    loop's other trips added, and how much of it those trips are."""
    extra = loop_flops(compiled)
    return compiled_flops(compiled) + extra, extra


def matmul_timer(m: int, k: int, n: int, min_seconds: float = 0.05):
    """A function timing one repeat of a jitted float32 ``(m, k) @ (k, n)``
    and returning its GFLOP/s, so the caller can interleave repeats with other
    work. A repeat runs the product enough times to last ``min_seconds``, so a
    small product is not timed against the cost of dispatching it."""
    ka, kb = jax.random.split(jax.random.key(0))
    a = jax.random.normal(ka, (m, k), jnp.float32)
    b = jax.random.normal(kb, (k, n), jnp.float32)
    f = jax.jit(jnp.dot)
    jax.block_until_ready(f(a, b))
    t = time.perf_counter()
    jax.block_until_ready(f(a, b))
    inner = max(1, int(min_seconds / max(time.perf_counter() - t, 1e-9)))

    def once() -> float:
        t = time.perf_counter()
        for _ in range(inner):
            out = f(a, b)
        jax.block_until_ready(out)
        return 2.0 * m * k * n * inner / (time.perf_counter() - t) / 1e9

    return once


def matmul_peak(m: int, k: int, n: int, repeats: int = 20, min_seconds: float = 0.05) -> float:
    """Median GFLOP/s of ``repeats`` repeats of ``matmul_timer(m, k, n)``."""
    once = matmul_timer(m, k, n, min_seconds)
    return statistics.median(once() for _ in range(repeats))
