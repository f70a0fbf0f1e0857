"""Errors that say what is wrong, at which address, and what to do instead."""

from __future__ import annotations

import sys

import numpy as np


def fmt_addr(addr) -> str:
    """An address as users write it: ``'x'`` or ``('outer', 'x')``; the empty
    path (a generative function called directly) reads ``(top level)``.

    >>> fmt_addr(("m", "x"))
    "('m', 'x')"
    """
    if addr == ():
        return "(top level)"
    if isinstance(addr, tuple):
        return "(" + ", ".join(repr(a) for a in addr) + ")" if len(addr) != 1 else repr(addr[0])
    return repr(addr)


def fmt_addrs(addrs, limit: int | None = None, empty: str = "none") -> str:
    """A list of addresses as users write them, comma-separated.

    Args:
        addrs: the addresses.
        limit: show at most this many, then ``...``; ``None`` shows all.
        empty: the text for no addresses.

    Returns:
        The text, e.g. ``"'x', ('sub', 'z')"``.

    >>> fmt_addrs(["x", ("sub", "z")])
    "'x', ('sub', 'z')"
    >>> fmt_addrs(["a", "b", "c"], limit=2)
    "'a', 'b', ..."
    """
    addrs = list(addrs)
    shown = addrs if limit is None else addrs[:limit]
    text = ", ".join(fmt_addr(a) for a in shown)
    if len(shown) < len(addrs):
        text += ", ..."
    return text or empty


# How to write the combinator that replaces a JAX construct, in error messages.
SWITCH_CALL = 'ppl.switch(f0, f1, ...)(index, ...) @ "addr"'
COND_CALL = 'ppl.cond(if_true, if_false)(pred, ...) @ "addr"'
VMAP_CALL = "ppl.vmap(gen_fn)(*args) @ 'addr'"
SCAN_CALL = "ppl.scan(step, length=n)"


def choice_inside_error(addrs, where: str, explanation: str) -> PPLError:
    """The error for random choices made inside a JAX transformation or control
    flow that cannot give them addresses (``jax.vmap``, ``jax.grad``, ``lax.scan``...).

    Args:
        addrs: the addresses of the choices.
        where: where they are, e.g. ``"inside jax.vmap within a generative function"``.
        explanation: why that cannot work and what to write instead (starts
            with its own punctuation: ``". Use ..."`` or ``", whose ..."``).

    Returns:
        A ``PPLError`` to raise.

    >>> str(choice_inside_error(["x"], "inside jax.vmap", ". Use ppl.vmap."))
    "random choice 'x' is inside jax.vmap. Use ppl.vmap."
    """
    return PPLError(f"random choice {fmt_addrs(addrs)} is {where}{explanation}")


def escape(text: str) -> str:
    """``text`` made safe to put in an ``AddressError`` template (braces doubled).

    >>> escape("{'a': 1}")
    "{{'a': 1}}"
    """
    return text.replace("{", "{{").replace("}", "}}")


class PPLError(ValueError):
    """A ppl usage error. The message names the problem and the fix.

    Every error ppl raises for a wrong use (a bad argument, a strategy that
    cannot serve a choice, a random choice where none can be made) is a
    ``PPLError``; problems at one address of a choice map are the subclass
    ``AddressError``. It is a ``ValueError``, so code that catches
    ``ValueError`` catches it too.

    Examples:
        >>> try:
        ...     ppl.normal(0.0, 1.0) @ "x"  # a random choice outside @ppl.gen
        ... except ppl.PPLError as err:
        ...     print(str(err)[:60])
        random choice 'x' was made outside a generative function. Ra
    """


class AddressError(PPLError, KeyError):
    """A problem at one address of a choice map; nested calls prefix their address.

    Raised, for example, when a choice map has no value at an address that is
    read, when ``assess`` lacks a value for a choice or gets one at an address
    the program never makes, and when a distribution's parameter is outside its
    domain. It is both a ``PPLError`` and a ``KeyError``. As the error
    passes out of a nested call, the call's address is put in front of the
    path, so the message names the full path.

    Args:
        template: the message, with ``{addr}`` where the address goes (other
            braces doubled).
        path: the address, as a tuple of names (empty at the top level).

    Attributes:
        template: the message template.
        path: the address the error is at, outermost first.

    Examples:
        >>> try:
        ...     ppl.ChoiceMap.d({"x": 1.0})["y"]
        ... except ppl.AddressError as err:
        ...     print(err)
        no random choice at 'y'; the addresses here are: 'x'
        >>> print(ppl.AddressError("no value at {addr}", ("outer", "x")))
        no value at ('outer', 'x')
    """

    def __init__(self, template: str, path: tuple = ()):
        self.template = template
        self.path = tuple(path)
        super().__init__(self.__str__())

    def under(self, addr) -> "AddressError":
        return type(self)(self.template, (addr, *self.path))

    def __str__(self) -> str:
        return self.template.format(addr=fmt_addr(self.path))


class at_address:
    """Context manager: errors raised below ``addr`` get ``addr`` prefixed."""

    def __init__(self, addr):
        self.addr = addr

    def __enter__(self):
        return self

    def __exit__(self, typ, err, tb):
        if isinstance(err, AddressError):
            raise err.under(self.addr).with_traceback(tb) from None
        return False


def choice_outside_error(addr) -> PPLError:
    """The error for a random choice made where no ppl program is running:
    at the top level, or inside a JAX callback (which runs Python outside the
    staged program, so a choice there could not be recorded or weighted).

    Args:
        addr: the address the choice was given.

    Returns:
        A ``PPLError`` to raise.

    >>> raise choice_outside_error("x")
    Traceback (most recent call last):
    ppl._errors.PPLError: random choice 'x' was made outside a generative function...
    """
    if _in_jax_callback():
        return PPLError(
            f"random choice {fmt_addr(addr)} was made inside a JAX callback (jax.pure_callback, "
            "jax.experimental.io_callback or jax.debug.callback). A callback runs Python outside "
            "the "
            "staged program, so ppl cannot record, constrain or weight a choice made there, and "
            "random "
            "choices cannot be made in it. Make the choice in the generative function and pass its "
            "value "
            "to the callback as an argument."
        )
    return PPLError(
        f"random choice {fmt_addr(addr)} was made outside a generative function. "
        "Random choices only mean something inside a program run by ppl: decorate "
        "the function with @ppl.gen and call gen_fn.simulate(key, args)."
    )


def _in_jax_callback() -> bool:
    frame = sys._getframe(1)
    while frame is not None:
        path = frame.f_code.co_filename.replace("\\", "/")
        if "/jax/" in path and path.endswith(("/callback.py", "/debugging.py")):
            return True
        frame = frame.f_back
    return False


_DOMAINS = {
    "_Positive": "must be > 0",
    "_Real": "must be finite (not NaN or inf)",
    "_UnitInterval": "must be in [0, 1]",
    "_Simplex": (
        "must be non-negative and sum to 1 along the last axis (normalise it, or pass logits)"
    ),
    "_PositiveDefinite": "must be a symmetric positive-definite matrix",
    "_LowerCholesky": "must be lower triangular with a positive diagonal",
    "_CorrCholesky": "must be the Cholesky factor of a correlation matrix",
}


def parameter_error(dist: str, param: str, domain: str, x, ok) -> AddressError:
    """The error for a distribution parameter outside its domain.

    Args:
        dist: the distribution's name.
        param: the parameter's name.
        domain: the class name of numpyro's constraint (``"_Positive"``...).
        x: the parameter's value, a NumPy array.
        ok: the constraint's verdict, elementwise (same shape as ``x``) or not.

    Returns:
        An ``AddressError`` whose message names the parameter, its
        domain and an offending entry (the address is filled in by callers).

    >>> str(parameter_error("normal", "scale", "_Positive", np.array(-1.0), np.array(False)))
    "parameter 'scale' of normal at (top level) must be > 0; got -1.0. Fix the value passed to
    normal."
    """
    rule = _DOMAINS.get(domain, f"must satisfy {domain.lstrip('_')}")
    if x.ndim == 0:
        got = f"got {x.item()!r:.60}"
    elif ok.shape == x.shape:
        where = tuple(int(i) for i in np.argwhere(~ok)[0])
        got = (
            f"{int((~ok).sum())} of its {x.size} entries are not, "
            f"e.g. {x[where].item()!r:.40} at index {where}"
        )
    else:
        got = f"got an array of shape {x.shape} that is not"
    return AddressError(
        f"parameter {param!r} of {dist} at {{addr}} {rule}; {escape(got)}. Fix the value passed to "
        f"{dist}."
    )
