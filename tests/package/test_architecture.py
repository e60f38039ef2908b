"""The package's shape: imports go one way, down the layers of docs/architecture.md, with no cycle even
counting imports inside functions, and no private name crosses a module boundary."""

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "hanzoo"

# Lowest first. A module may import modules of its own layer or below, never above.
LAYERS = [
    ("leaves", {"version", "errors", "files", "provenance"}),
    ("architecture", {"layers", "convnet", "models"}),
    ("what exists", {"cifar", "tasks", "record", "formats", "registry", "pins"}),
    ("storage and scoring", {"integrity", "card", "store", "evaluate"}),
    (
        "graphs and runtimes",
        {"lower", "export_onnx", "export_tflite", "export_pte", "precision", "fused", "runtimes", "verify"},
    ),
    ("publishing", {"hub", "export"}),
    (
        "training and use",
        {"backprop", "stacked", "distill", "train", "backbone", "official", "predict", "arm"},
    ),
    ("reports", {"docs", "reproduce", "retrain", "bench", "quantization", "site"}),
    ("interface", {"cli", "__init__", "__main__"}),
]
LAYER = {m: i for i, (_, mods) in enumerate(LAYERS) for m in mods}


def _imports(path: Path) -> list[tuple[str, int, list[str]]]:
    """(module imported, line, names) for every hanzoo import in a file, at any depth."""
    out = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.level == 1:
            if node.module:
                out.append((node.module.split(".")[0], node.lineno, [a.name for a in node.names]))
            else:  # from . import a, b
                for a in node.names:
                    out.append(
                        (a.name if (PACKAGE / f"{a.name}.py").exists() else "__init__", node.lineno, [a.name])
                    )
        elif (
            isinstance(node, ast.ImportFrom) and node.level == 0 and (node.module or "").startswith("hanzoo")
        ):
            out.append(
                ((node.module.split(".") + ["__init__"])[1], node.lineno, [a.name for a in node.names])
            )
    return out


MODULES = {p.stem: p for p in PACKAGE.glob("*.py")}


def test_every_module_has_a_layer():
    assert set(MODULES) == set(LAYER), (
        f"place these in LAYERS (and docs/architecture.md): {set(MODULES) ^ set(LAYER)}"
    )


@pytest.mark.parametrize("module", sorted(MODULES))
def test_imports_go_down_the_layers(module):
    for target, line, names in _imports(MODULES[module]):
        if module == "__init__":
            continue  # the public API re-exports from every layer
        here, there = LAYERS[LAYER[module]][0], LAYERS[LAYER[target]][0]
        assert LAYER[target] <= LAYER[module], (
            f"hanzoo/{module}.py:{line} ({here}) imports {target} ({there})"
        )
        if target == "__init__":
            assert names == ["__version__"] or not names, (
                f"hanzoo/{module}.py:{line} imports {names} from hanzoo"
            )


def test_no_import_cycle_counting_function_local_imports():
    graph = {m: {t for t, _, _ in _imports(p) if t != m and t != "__init__"} for m, p in MODULES.items()}
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
    for target, line, names in _imports(MODULES[module]):
        private = [n for n in names if n.startswith("_") and not n.startswith("__")]
        assert not private, f"hanzoo/{module}.py:{line} imports private {private} from {target}"
    tree = ast.parse(MODULES[module].read_text())
    local = {
        a.asname or a.name
        for n in ast.walk(tree)
        if isinstance(n, ast.ImportFrom) and n.level == 1
        for a in n.names
    }
    for n in ast.walk(tree):
        if (
            isinstance(n, ast.Attribute)
            and isinstance(n.value, ast.Name)
            and n.value.id in local & set(MODULES)
        ):
            assert not (n.attr.startswith("_") and not n.attr.startswith("__")), (
                f"hanzoo/{module}.py:{n.lineno} uses {n.value.id}.{n.attr}"
            )


def test_no_function_over_80_lines():
    long = []
    for p in sorted(PACKAGE.glob("*.py")):
        for n in ast.walk(ast.parse(p.read_text())):
            if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef)) and n.end_lineno - n.lineno + 1 > 80:
                long.append(f"hanzoo/{p.name}:{n.lineno} {n.name} ({n.end_lineno - n.lineno + 1} lines)")
    assert not long, long


def test_architecture_doc_names_every_module():
    doc = (ROOT / "docs" / "architecture.md").read_text()
    missing = [m for m in MODULES if m != "__init__" and f"{m}.py" not in doc]
    assert not missing, f"docs/architecture.md does not place {missing}"


SCRIPTS = sorted([*ROOT.glob("benchmarks/*.py"), *ROOT.glob("experiments/*.py")])


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_scripts_answer_help(script):
    """benchmarks/ and experiments/ use only hanzoo's public names, and at least start."""
    out = subprocess.run([sys.executable, str(script), "--help"], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and "usage" in out.stdout.lower(), out.stderr[-2000:]
    for _, line, names in _imports(script):
        assert not [n for n in names if n.startswith("_")], f"{script.name}:{line} imports a private name"


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
