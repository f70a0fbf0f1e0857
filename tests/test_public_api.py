"""The public surface: ``ppl.__all__`` is the list of public names, each one
importable and documented."""

from __future__ import annotations

import inspect
import types

import ppl


def _public_names(module) -> set:
    """Names a user sees on ``module``: not private, and not submodules that
    importing the package binds as a side effect (``ppl.choices``...), except
    those it exports on purpose."""
    return {
        n
        for n, v in vars(module).items()
        if not n.startswith("_") and (not isinstance(v, types.ModuleType) or n in module.__all__)
    }


def test_all_is_one_list_of_unique_names():
    assert isinstance(ppl.__all__, list)
    assert len(ppl.__all__) == len(set(ppl.__all__))
    assert all(isinstance(n, str) for n in ppl.__all__)


def test_all_matches_the_public_names():
    assert set(ppl.__all__) == _public_names(ppl)


def test_every_exported_name_is_importable_and_documented():
    namespace: dict = {}
    exec("from ppl import *", namespace)
    for name in ppl.__all__:
        assert name in namespace, name
        doc = inspect.getdoc(getattr(ppl, name))
        assert doc and len(doc.split()) >= 5, f"ppl.{name} has no docstring"


def test_clear_caches_is_public():
    assert "clear_caches" in ppl.__all__
    ppl.clear_caches()  # nothing to clear is fine
