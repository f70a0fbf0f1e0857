"""Errors that say what is wrong, at which address, and what to do instead."""

from __future__ import annotations


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
