"""The package's shape: imports go one way, down the layers of docs/architecture.md, with no cycle even
counting imports inside functions, and no private name crosses a module boundary."""

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "hanzoo"

# Lowest first: a layer is a subpackage, or a few modules at the top. A module may import modules of its
# own layer or below, never above.
LAYERS = [
    ("leaves", {"version", "errors", "files", "provenance", "typed"}),
    ("nn", None),
    ("zoo", None),
    ("storage", None),
    ("graphs", None),
    ("runtimes", None),
    ("publishing", None),
    ("training", None),
    ("reports", None),
    ("cli", None),
    ("interface", {"__init__", "__main__"}),
]
LAYER_OF_NAME = {name: i for i, (name, mods) in enumerate(LAYERS) if mods is None}
LAYER_OF_NAME.update({m: i for i, (_, mods) in enumerate(LAYERS) if mods for m in mods})

# every module, as its dotted name below hanzoo: "files", "zoo.registry", "zoo.__init__"
MODULES = {
    ".".join(p.relative_to(PACKAGE).with_suffix("").parts): p
    for p in sorted(PACKAGE.rglob("*.py"))
    if "data" not in p.relative_to(PACKAGE).parts[:-1]
}


def layer(module: str) -> int:
    return LAYER_OF_NAME[module.split(".")[0]]


def _resolve(base: list[str], name: str) -> str:
    """A dotted name below hanzoo -> the module it is, or the package whose __init__ holds it."""
    dotted = ".".join([*base, name]) if name else ".".join(base)
    if dotted in MODULES:
        return dotted
    return ".".join([*base, "__init__"]) if base else "__init__"


def _imports(path: Path, module: str | None = None) -> list[tuple[str, int, list[str]]]:
    """(module imported, line, names) for every hanzoo import in a file, at any depth."""
    here = (module or "").split(".")[:-1]  # the package the file sits in, below hanzoo
    out = []
    for node in ast.walk(ast.parse(path.read_text())):
        if not isinstance(node, ast.ImportFrom):
            continue
        names = [a.name for a in node.names]
        if node.level >= 1:
            base = here[: len(here) - (node.level - 1)] if node.level > 1 else list(here)
        elif (node.module or "").split(".")[0] == "hanzoo":
            base = []
        else:
            continue
        mod = (node.module or "").split(".")
        if node.level == 0:
            mod = mod[1:]
        parts = [*base, *[m for m in mod if m]]
        if node.module and node.level >= 0 and (node.level or mod):
            target = _resolve(parts[:-1], parts[-1]) if parts else "__init__"
            if ".".join(parts) in MODULES or not parts:
                out.append((target, node.lineno, names))
                continue
            # from ..zoo import registry: the names are modules of that package
        for n in names:
            out.append((_resolve(parts, n), node.lineno, [n]))
    return out


def test_every_module_has_a_layer():
    tops = {m for m in MODULES if "." not in m}
    subs = {m.split(".")[0] for m in MODULES if "." in m}
    declared_tops = {m for _, mods in LAYERS if mods for m in mods}
    declared_subs = {name for name, mods in LAYERS if mods is None}
    assert tops == declared_tops and subs == declared_subs, (
        f"place these in LAYERS (and docs/architecture.md): {(tops ^ declared_tops) | (subs ^ declared_subs)}"
    )


@pytest.mark.parametrize("sub", [name for name, mods in LAYERS if mods is None and name != "cli"])
def test_each_subpackage_declares_its_modules(sub):
    """A subpackage's __all__ names its modules, and importing it loads none of them (the CLI's, which is
    the command itself, declares main and parser)."""
    tree = ast.parse((PACKAGE / sub / "__init__.py").read_text())
    (declared,) = [
        ast.literal_eval(n.value)
        for n in tree.body
        if isinstance(n, ast.Assign) and any(getattr(t, "id", "") == "__all__" for t in n.targets)
    ]
    assert sorted(declared) == sorted(
        m.split(".")[1] for m in MODULES if m.startswith(sub + ".") and not m.endswith("__init__")
    )
    assert not [n for n in tree.body if isinstance(n, (ast.Import, ast.ImportFrom))]


@pytest.mark.parametrize("module", sorted(MODULES))
def test_imports_go_down_the_layers(module):
    for target, line, names in _imports(MODULES[module], module):
        if module == "__init__":
            continue  # the public API re-exports from every layer
        here, there = LAYERS[layer(module)][0], LAYERS[layer(target)][0]
        assert layer(target) <= layer(module), (
            f"hanzoo/{module.replace('.', '/')}.py:{line} ({here}) imports {target} ({there})"
        )
        if target == "__init__":
            assert names == ["__version__"] or not names, (
                f"hanzoo/{module.replace('.', '/')}.py:{line} imports {names} from hanzoo"
            )


def test_no_import_cycle_counting_function_local_imports():
    graph = {
        m: {t for t, _, _ in _imports(p, m) if t != m and not t.endswith("__init__")}
        for m, p in MODULES.items()
    }
    state: dict[str, int] = {}

    def visit(m: str, path: list[str]) -> None:
        state[m] = 1
        for t in sorted(graph[m]):
            assert state.get(t) != 1, "import cycle: " + " -> ".join([*path, m, t])
            if t not in state:
                visit(t, [*path, m])
        state[m] = 2

    for m in sorted(graph):
        if m not in state:
            visit(m, [])


@pytest.mark.parametrize("module", sorted(MODULES))
def test_no_private_name_crosses_modules(module):
    imports = _imports(MODULES[module], module)
    for target, line, names in imports:
        private = [n for n in names if n.startswith("_") and not n.startswith("__")]
        assert not private, f"hanzoo/{module}.py:{line} imports private {private} from {target}"
    tree = ast.parse(MODULES[module].read_text())
    local = {
        a.asname or a.name
        for n in ast.walk(tree)
        if isinstance(n, ast.ImportFrom) and n.level >= 1
        for a in n.names
    }
    modules = {part for m in MODULES for part in m.split(".")}
    for n in ast.walk(tree):
        if isinstance(n, ast.Attribute) and isinstance(n.value, ast.Name) and n.value.id in local & modules:
            assert not (n.attr.startswith("_") and not n.attr.startswith("__")), (
                f"hanzoo/{module}.py:{n.lineno} uses {n.value.id}.{n.attr}"
            )


def test_no_function_over_80_lines():
    long = []
    for p in MODULES.values():
        for n in ast.walk(ast.parse(p.read_text())):
            if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef)) and n.end_lineno - n.lineno + 1 > 80:
                long.append(
                    f"{p.relative_to(ROOT)}:{n.lineno} {n.name} ({n.end_lineno - n.lineno + 1} lines)"
                )
    assert not long, long


def test_architecture_doc_names_every_module():
    doc = (ROOT / "docs" / "architecture.md").read_text()
    missing = [m for m in MODULES if not m.endswith("__init__") and f"{m.split('.')[-1]}.py" not in doc]
    assert not missing, f"docs/architecture.md does not place {missing}"


SCRIPTS = sorted([*ROOT.glob("benchmarks/*.py"), *ROOT.glob("experiments/*.py")])


def _declared(module: str) -> list[str]:
    """A module's __all__ (a package's: its modules, or the public API for hanzoo itself)."""
    tree = ast.parse(MODULES[module].read_text())
    found = [
        ast.literal_eval(n.value)
        for n in tree.body
        if isinstance(n, ast.Assign) and any(getattr(t, "id", "") == "__all__" for t in n.targets)
    ]
    return found[0] if found else []


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_scripts_import_and_use_only_public_names(script):
    """benchmarks/ and experiments/ import (not only answer --help), and each name they take from hanzoo is in
    the __all__ of the module it comes from."""
    probe = (
        "import importlib.util, sys\n"
        f"spec = importlib.util.spec_from_file_location('script_under_test', {str(script)!r})\n"
        "module = importlib.util.module_from_spec(spec)\n"
        "spec.loader.exec_module(module)\n"
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert out.returncode == 0, out.stderr[-2000:]
    out = subprocess.run([sys.executable, str(script), "--help"], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and "usage" in out.stdout.lower(), out.stderr[-2000:]
    for target, line, names in _imports(script):
        for name in names:
            if target.split(".")[-1] == name:
                continue  # the module itself (`from hanzoo.zoo import registry`), declared by its package
            where = (
                "hanzoo." + target.removesuffix("__init__").rstrip(".") if target != "__init__" else "hanzoo"
            )
            assert name in _declared(target), (
                f"{script.relative_to(ROOT)}:{line} imports {name!r} from {where}, "
                "whose __all__ does not declare it"
            )


def test_core_install_needs_no_optional_runtime():
    """`pip install hanzoo` (no extras) lists, scores and predicts in torch: ONNX, ONNX Runtime, TensorFlow
    and LiteRT are imported only by the commands that use them."""
    block = (
        "import sys\n"
        "class Block:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        optional = {'onnx', 'onnxruntime', 'tensorflow', 'ai_edge_litert', 'matplotlib'}\n"
        "        if name.split('.')[0] in optional:\n"
        "            raise ImportError('not installed: ' + name)\n"
        "sys.meta_path.insert(0, Block())\n"
        "from hanzoo.cli import main\n"
        "sys.exit(main(sys.argv[1:]))\n"
    )
    for argv in (["list", "--json"], ["eval", "checkerboard-hannet-20x30", "--json"]):
        out = subprocess.run(
            [sys.executable, "-c", block, *argv], capture_output=True, text=True, timeout=300
        )
        assert out.returncode == 0, out.stderr[-2000:]
