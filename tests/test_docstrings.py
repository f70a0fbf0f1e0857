"""Every public name documents itself, and the examples in the docstrings run.

A full docstring has an ``Args:`` section naming every parameter (``Attributes:``
for a record type), ``Returns:`` for a function, ``Raises:`` for a function that
checks its input, and an ``Examples:`` section (``>>>`` lines). The examples run as doctests,
each name's in a fresh namespace that holds ``jax``, ``jnp`` (``jax.numpy``) and
``ppl``, as the reference pages say examples assume.
"""

from __future__ import annotations

import doctest
import importlib
import inspect
import pathlib
import re
import types

import jax
import jax.numpy as jnp
import pytest

import ppl
import ppl.inference
import ppl.inference.vi

ROOT = pathlib.Path(__file__).resolve().parent.parent
MODULES = [ppl, ppl.inference, ppl.inference.vi, ppl.inference.smc, ppl.inference.diagnostics]
PUBLIC = [
    (module.__name__, name)
    for module in MODULES
    for name in module.__all__
    # constants (diagnostics.MIN_DRAWS) are described by their module's docstring
    if not isinstance(getattr(module, name), (types.ModuleType, int, float, str, tuple))
]
FLAGS = doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE


def _section(doc: str, title: str) -> str | None:
    found = re.search(rf"^{title}:\s*$(.*?)(?=^\S|\Z)", doc, re.M | re.S)
    return found.group(1) if found else None


def _parameters(obj) -> list[str]:
    try:
        signature = inspect.signature(obj)
    except (TypeError, ValueError):
        return []
    return [p.name for p in signature.parameters.values() if p.name not in ("self", "cls")]


def missing_parts(obj) -> list[str]:
    """What ``obj``'s docstring lacks, as short phrases (empty when it is full)."""
    doc = inspect.getdoc(obj) or ""
    if len(doc.split()) < 5:
        return ["a docstring"]
    examples = _section(doc, "Examples") or ""
    missing = [] if ">>>" in examples else ["an Examples: section of >>> lines"]
    if not callable(obj):
        return missing
    names = _parameters(obj)
    listed = _section(doc, "Args") or _section(doc, "Attributes")
    if names and listed is None:
        missing.append("an Args section")
    elif names:
        unlisted = [n for n in names if not re.search(rf"^\s*\**{n}\b", listed or "", re.M)]
        missing += [f"the argument {n!r}" for n in unlisted]
    if not inspect.isclass(obj):
        if _section(doc, "Returns") is None:
            missing.append("a Returns section")
        if _section(doc, "Raises") is None:
            missing.append("a Raises section")
    return missing


@pytest.mark.parametrize("module, name", PUBLIC, ids=[f"{m}.{n}" for m, n in PUBLIC])
def test_public_name_has_a_full_docstring(module, name):
    missing = missing_parts(getattr(__import__(module, fromlist=[name]), name))
    assert not missing, f"{module}.{name}'s docstring needs {', '.join(missing)}"


@pytest.mark.parametrize("module, name", PUBLIC, ids=[f"{m}.{n}" for m, n in PUBLIC])
def test_docstring_examples_run(module, name):
    obj = getattr(__import__(module, fromlist=[name]), name)
    finder = doctest.DocTestFinder(recurse=False)
    runner = doctest.DocTestRunner(optionflags=FLAGS)
    for test in finder.find(obj, f"{module}.{name}", globs={"jax": jax, "jnp": jnp, "ppl": ppl}):
        runner.run(test)
    result = runner.summarize(verbose=False)
    assert result.failed == 0, f"{result.failed} of {module}.{name}'s examples failed (above)"


def _resolve(path: str):
    parts = path.split(".")
    for cut in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:cut]))
        except ImportError:
            continue
        for part in parts[cut:]:
            obj = getattr(obj, part)
        return obj
    raise ImportError(path)


def test_every_public_name_is_in_the_api_reference():
    """Each name appears on an API page, through a ``::: path`` directive for it,
    for its class (the strategies and primitives are instances), or for a module
    whose members the page lists."""
    pages = "\n".join(p.read_text() for p in (ROOT / "docs" / "api").glob("*.md"))
    shown = [_resolve(path) for path in re.findall(r"^::: ([\w.]+)", pages, re.M)]
    covered = {id(obj) for obj in shown}
    for module in (m for m in shown if isinstance(m, types.ModuleType)):
        covered |= {id(getattr(module, n)) for n in getattr(module, "__all__", ())}
    missing = [
        f"{module}.{name}"
        for module, name in PUBLIC
        if not {id(obj := getattr(importlib.import_module(module), name)), id(type(obj))} & covered
        and not isinstance(obj, ppl.Distribution)  # the generated table lists them
    ]
    assert not missing, f"not in docs/api/*.md: {missing}"
