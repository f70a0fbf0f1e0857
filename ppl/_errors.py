"""Errors that say what is wrong, at which address, and what to do instead."""

from __future__ import annotations

import sys


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


def escape(text: str) -> str:
    """``text`` made safe to put in an :class:`AddressError` template (braces doubled).

    >>> escape("{'a': 1}")
    "{{'a': 1}}"
    """
    return text.replace("{", "{{").replace("}", "}}")


class PPLError(ValueError):
    """A ppl usage error. The message names the problem and the fix."""


class AddressError(PPLError, KeyError):
    """A problem at one address of a choice map; nested calls prefix their address."""

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
        A :class:`PPLError` to raise.

    >>> raise choice_outside_error("x")
    Traceback (most recent call last):
    ppl._errors.PPLError: random choice 'x' was made outside a generative function...
    """
    if _in_jax_callback():
        return PPLError(
            f"random choice {fmt_addr(addr)} was made inside a JAX callback (jax.pure_callback, "
            "jax.experimental.io_callback or jax.debug.callback). A callback runs Python outside the "
            "staged program, so ppl cannot record, constrain or weight a choice made there, and random "
            "choices cannot be made in it. Make the choice in the generative function and pass its value "
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
