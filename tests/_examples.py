"""Loading an example script (``examples/*.py``) as a module, for its smoke test."""

import importlib.util
import pathlib

ROOT = pathlib.Path(__file__).resolve().parents[1]


def load_example(rel: str):
    """The module at ``ROOT / rel`` (e.g. ``"examples/hmm_smc.py"``), executed."""
    spec = importlib.util.spec_from_file_location(pathlib.Path(rel).stem, ROOT / rel)
    assert spec is not None and spec.loader is not None  # a .py path always has both
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
