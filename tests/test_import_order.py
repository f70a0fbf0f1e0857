"""The package's imports run one way, along the data path.

core -> interface -> transforms -> gen -> combinators -> adev -> inference: a module
imports only modules of its own layer or below, the imports form no cycle, no
import of ppl hides inside a function, and only ``ppl/core`` touches JAX internals.
"""

import ast
import pathlib

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1] / "ppl"

# The layers, lowest first; a module belongs to the first layer with a matching prefix.
LAYERS = [
    ("core", ["ppl._errors", "ppl._args", "ppl._caches", "ppl._numerics", "ppl.core"]),
    (
        "interface",
        ["ppl.selections", "ppl.choices", "ppl._gfi", "ppl._distribution_checks"]
        + ["ppl._distribution_docs"],
    ),
    ("distributions", ["ppl.distributions", "ppl.primitives", "ppl.improper"]),
    (
        "transforms",
        ["ppl.transforms._", "ppl.transforms.assess", "ppl.transforms.generate"]
        + ["ppl.transforms.simulate", "ppl.transforms.update"],
    ),
    ("gen", ["ppl.gen"]),
    ("combinators", ["ppl.combinators", "ppl.marginals", "ppl.normalize"]),
    ("adev", ["ppl.transforms.adev", "ppl.expectations"]),
    ("inference", ["ppl.inference"]),
]
ORDER = [layer for layer, _ in LAYERS]
JAX_INTERNALS = ("jax._src", "jax.extend", "jax.interpreters", "jax.core")


def _module_name(path: pathlib.Path) -> str:
    parts = path.relative_to(ROOT.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _is_module(name: str) -> bool:
    path = ROOT.parent.joinpath(*name.split("."))
    return path.with_suffix(".py").exists() or (path / "__init__.py").exists()


def _imports(tree: ast.Module) -> list[tuple[ast.stmt, str]]:
    """Every ``(statement, imported module)``; ``from pkg import sub`` imports ``sub``."""
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            subs = [f"{node.module}.{a.name}" for a in node.names]
            subs = [s for s in subs if _is_module(s)]
            found += [(node, s) for s in subs] or [(node, node.module)]
    return found


def _layer(name: str) -> str:
    for layer, prefixes in LAYERS:
        if any(name == p or name.startswith(p if p.endswith("_") else p + ".") for p in prefixes):
            return layer
    if name == "ppl.transforms":
        return "transforms"
    raise AssertionError(f"{name} is in no layer: add it to LAYERS in {__file__}")


MODULES = {_module_name(p): ast.parse(p.read_text()) for p in sorted(ROOT.rglob("*.py"))}


def _graph() -> dict[str, set[str]]:
    """Module -> the ppl modules it imports, leaving out a submodule's own packages
    (Python runs a package's ``__init__`` before any of its submodules)."""
    graph = {}
    for name, tree in MODULES.items():
        deps = {m for _, m in _imports(tree) if m.split(".")[0] == "ppl"}
        graph[name] = {d for d in deps if not name.startswith(d + ".") and d != name}
    return graph


def test_every_module_has_a_layer():
    for name in MODULES:
        if name != "ppl":
            _layer(name)


@pytest.mark.parametrize("name", sorted(n for n in MODULES if n != "ppl"))
def test_imports_go_down_the_layers(name):
    mine = ORDER.index(_layer(name))
    for dep in _graph()[name]:
        assert ORDER.index(_layer(dep)) <= mine, (
            f"{name} ({_layer(name)}) imports {dep} ({_layer(dep)}), a later layer"
        )


def test_no_import_cycles():
    graph, done, path = _graph(), set(), []

    def visit(name):
        if name in path:
            cycle = path[path.index(name) :] + [name]
            raise AssertionError("import cycle: " + " -> ".join(cycle))
        if name in done:
            return
        path.append(name)
        for dep in sorted(graph.get(name, ())):
            visit(dep)
        path.pop()
        done.add(name)

    for name in sorted(graph):
        visit(name)


def test_no_ppl_import_inside_a_function():
    for name, tree in MODULES.items():
        top = {id(n) for n in tree.body}
        for node, mod in _imports(tree):
            assert id(node) in top or mod.split(".")[0] != "ppl", (
                f"{name}, line {node.lineno}: `{ast.unparse(node)}` is inside a function or "
                "block; imports of ppl go at the top of the module"
            )


def test_only_core_touches_jax_internals():
    for name, tree in MODULES.items():
        if name.startswith("ppl.core"):
            continue
        for node, mod in _imports(tree):
            assert not mod.startswith(JAX_INTERNALS), (
                f"{name}, line {node.lineno}: `{ast.unparse(node)}` uses JAX internals, "
                "which stay in ppl/core"
            )
        for node in ast.walk(tree):
            if isinstance(node, ast.Attribute):
                dotted = ast.unparse(node)
                assert not dotted.startswith(JAX_INTERNALS), (
                    f"{name}, line {node.lineno}: {dotted} is a JAX internal; "
                    "reach it through ppl.core"
                )
