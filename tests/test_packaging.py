"""The package's declared dependencies agree with the versions CI installs, and
importing ppl needs none of the optional extras."""

from __future__ import annotations

import pathlib
import subprocess
import sys
import tomllib

from packaging.requirements import Requirement

ROOT = pathlib.Path(__file__).resolve().parent.parent


def _pins() -> dict[str, str]:
    lines = (ROOT / "constraints.txt").read_text().splitlines()
    pairs = [line.split("==") for line in lines if line and not line.startswith("#")]
    return {name.lower().replace("_", "-"): version for name, version in pairs}


def _requirements() -> list[Requirement]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    groups = [project["dependencies"], *project["optional-dependencies"].values()]
    return [Requirement(r) for group in groups for r in group if not r.startswith("ppl-jax")]


def test_every_declared_range_holds_the_pinned_version():
    pins = _pins()
    for requirement in _requirements():
        name = requirement.name.lower().replace("_", "-")
        assert name in pins, (
            f"{name} is declared in pyproject.toml but not pinned in constraints.txt"
        )
        assert requirement.specifier.contains(pins[name]), (
            f"constraints.txt pins {name}=={pins[name]}, outside pyproject.toml's {requirement}"
        )


def test_importing_ppl_needs_no_optional_extra():
    code = (
        "import sys, ppl, ppl.inference, ppl.inference.vi\n"
        "extras = {'matplotlib', 'mlxtend', 'flowjax', 'arviz', 'torch', 'pyro'}\n"
        "print(sorted(extras & {m.split('.')[0] for m in sys.modules}))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]", f"importing ppl imported {out.stdout.strip()}"
