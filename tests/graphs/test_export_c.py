"""The C export (hanzoo.graphs.export_c): clean C99, the plan's weights exactly, and its two code paths
(one row, a block of rows) giving the same bits, built with the system compiler."""

import ctypes
import json
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from hanzoo import HanzooError
from hanzoo.files import file_sha256
from hanzoo.graphs.export_c import BLOCK_ROWS, CDense, CHan, build_c, c_layers, c_name, hex_float, stack_bytes
from hanzoo.graphs.lower import lower
from hanzoo.publishing.export import export
from hanzoo.runtimes import native
from hanzoo.storage.store import load_model
from hanzoo.version import __version__
from hanzoo.zoo import registry
from hanzoo.zoo.registry import EXPORT_DIR
from hanzoo.zoo.tasks import Checkerboard, get_task

MLPS = [e for e in registry.MODELS.values() if e.shipped and not e.config.takes_images]
# one of each kind: ABS and ReLU Han runs, a regression net with its scaling folded in, an FCNet (no Han)
KINDS = ["checkerboard-hannet-20x30", "checkerboard-hannet-relu-20x30", "elevators-hannet-20x200",
         "checkerboard-fcnet-6x100"]  # fmt: skip
CC = native.compiler()
needs_cc = pytest.mark.skipif(CC is None, reason="no C compiler (cc) on PATH")
STRICT = ["-std=c99", "-Wall", "-Wextra", "-Werror", "-pedantic"]


def _cc(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([*CC, *args], capture_output=True, text=True, timeout=300)


@needs_cc
@pytest.mark.parametrize("entry", MLPS, ids=lambda e: e.id)
def test_the_shipped_c_export_is_clean_c99(entry, tmp_path):
    out = _cc(*STRICT, "-O2", "-c", str(EXPORT_DIR / entry.id / "model.c"), "-o", str(tmp_path / "model.o"))
    assert out.returncode == 0, out.stderr[:2000]


def test_the_shipped_c_export_is_the_generators():
    """A quick check of one model (the golden re-export test checks every one): same weights, same bytes."""
    net = load_model("checkerboard-hannet-20x30")
    weights = file_sha256(net.folder / "model.safetensors")
    files = build_c(net, net.meta["model_id"], net.meta["task"], weights)
    for name, text in files.items():
        assert (EXPORT_DIR / "checkerboard-hannet-20x30" / name).read_text() == text, name


@pytest.mark.parametrize("model_id", KINDS)
def test_the_arrays_are_the_plans_float32_values(model_id):
    """Every literal in model.c, read back, is the plan's float32 value, bit for bit, in the plan's order."""
    net = load_model(model_id)
    text = (EXPORT_DIR / model_id / "model.c").read_text()
    arrays = dict(re.findall(r"static const float (\w+)\[\d+\] = \{(.*?)\};", text, flags=re.S))
    layers = c_layers(lower(net))
    want = {}
    for k, layer in enumerate(layers):
        if isinstance(layer, CDense):
            want |= {f"l{k}_w": layer.weight, f"l{k}_b": layer.bias}
        else:
            want |= {f"l{k}_v": layer.v, f"l{k}_neg_u": layer.neg_u, f"l{k}_b": layer.bias}
    assert list(arrays) == list(want)
    for name, body in arrays.items():
        got = np.array([float.fromhex(v.strip().removesuffix("f")) for v in body.split(",") if v.strip()])
        bits = got.astype(np.float32).view(np.uint32)
        assert np.array_equal(bits, want[name].ravel().view(np.uint32)), name


def test_the_c_plan_is_the_lowered_plan_without_its_constant_one_column():
    net = load_model("checkerboard-hannet-20x30")
    steps, layers = lower(net), c_layers(lower(net))
    assert len(steps) == len(layers)
    # FC, FC, 17 Han-layers, FC, head
    before, han, after = layers[1], layers[2], layers[19]
    assert isinstance(han, CHan) and isinstance(after, CDense) and isinstance(layers[18], CHan)
    assert before.weight.shape == (30, 30) and steps[1].weight.shape == (31, 30)  # the emitted 1 dropped
    assert np.array_equal(before.bias, steps[1].bias[:30]) and steps[1].bias[30] == 1
    assert np.array_equal(han.v, steps[2].p[:30, 0]) and np.array_equal(han.neg_u, steps[2].q[0, :30])
    assert np.array_equal(han.bias, steps[2].q[1, :30])
    assert steps[19].bias is None and steps[19].weight.shape == (30, 31)
    assert np.array_equal(after.bias, steps[19].weight[:, -1])  # the bias rode in the 1 column
    assert np.array_equal(after.weight, steps[19].weight[:, :30])
    u = net.layers[2].u.detach().double().numpy()
    assert np.allclose(han.v, 2 * u / u.dot(u), rtol=1e-6) and np.allclose(han.neg_u, -u, rtol=1e-6)


def test_hex_floats_are_exact():
    # signed zeros, a subnormal, the smallest normal, the largest, and one that decimal cannot write exactly
    for x in (0.0, -0.0, 1.0, -2.5, 1e-45, 1.1754942e-38, 3.4028235e38, 0.1):
        lit = hex_float(float(np.float32(x)))
        back = np.float32(float.fromhex(lit.removesuffix("f")))
        assert lit.endswith("f") and back.view(np.uint32) == np.float32(x).view(np.uint32), (x, lit)
    assert hex_float(1.0) == "0x1p+0f" and hex_float(-0.375) == "-0x1.8p-2f"
    with pytest.raises(HanzooError, match="non-finite"):
        hex_float(float("nan"))


def test_names_are_c_identifiers():
    assert c_name("calhousing-hannet-20x200-20pct") == "calhousing_hannet_20x200_20pct"
    assert c_name("9lives.v2") == "m_9lives_v2"
    assert all(re.fullmatch(r"[A-Za-z_]\w*", c_name(e.id)) for e in registry.MODELS.values())


@pytest.mark.parametrize("entry", MLPS, ids=lambda e: e.id)
def test_the_header_says_what_goes_in_and_out(entry):
    header = (EXPORT_DIR / entry.id / "model.h").read_text()
    name, task = c_name(entry.id), get_task(entry.task)
    assert f"int {name}_run(const float *x, float *y, size_t rows);" in header
    assert f"#define {name.upper()}_N_IN {entry.config.in_features}\n" in header
    assert f"#define {name.upper()}_N_OUT {entry.config.out_features}\n" in header
    assert f"#define {name.upper()}_BLOCK_ROWS {BLOCK_ROWS}\n" in header
    assert f"sha256 {file_sha256(entry.dir / 'model.safetensors')}" in header
    assert f"hanzoo {__version__}" in header and entry.id in header
    for i, feature in enumerate(task.features):
        assert f"column {i}: {feature}, " in header
    if isinstance(task, Checkerboard):
        assert f"class 1 where (y[0] + y[1]) / 2 > {task.THRESHOLD:g}f" in header
    else:
        assert f"column 0: {task.target}, in " in header
    # the scratch the header states holds the two buffers of the block path and of the row path
    width = int(re.search(r"#define WIDTH (\d+)", (EXPORT_DIR / entry.id / "model.c").read_text())[1])
    assert width == max(entry.config.in_features, entry.config.width or 0, entry.config.out_features)
    stack = f"#define {name.upper()}_STACK_BYTES (4 * 2 * {width} * ({name.upper()}_BLOCK_ROWS > 1 ? "
    assert stack in header and f"{stack_bytes(width)} with blocks of {BLOCK_ROWS} rows" in header
    assert stack_bytes(width) == 4 * 2 * width * (BLOCK_ROWS + 1) and stack_bytes(width, 1) == 4 * 2 * width


def test_the_manifest_counts_the_layers():
    for entry in MLPS:
        ops = json.loads((EXPORT_DIR / entry.id / "manifest.json").read_text())["ops"]["c"]
        kinds = [kind for kind, *_ in entry.config.layers()]
        assert ops == {"dense": kinds.count("fc") + 1, "han": kinds.count("han")}, entry.id


HARNESS = """
#include "{source}"
/* the two paths of the export, each over whole rows or whole blocks */
void rows_one_by_one(const float *x, float *y, size_t n)
{{
    size_t r;
    for (r = 0; r < n; r++)
        run_row(x + r * N_IN, y + r * N_OUT);
}}
void whole_blocks(const float *x, float *y, size_t blocks)
{{
    size_t b;
    for (b = 0; b < blocks; b++)
        run_block(x + b * BLOCK * N_IN, y + b * BLOCK * N_OUT);
}}
"""


def _harness(model_id: str, folder: Path, opt: str) -> ctypes.CDLL:
    src = folder / f"harness{opt}.c"
    src.write_text(HARNESS.format(source=EXPORT_DIR / model_id / "model.c"))
    lib = folder / f"harness{opt}.so"
    out = _cc("-std=c99", opt, "-fPIC", "-shared", "-o", str(lib), str(src), "-lm")
    assert out.returncode == 0, out.stderr[:2000]
    return ctypes.CDLL(str(lib))


def _inputs(model_id: str) -> np.ndarray:
    """The whole test split, then rows far outside it (wide ranges, zeros), in whole blocks."""
    x_test, _ = get_task(registry.get(model_id).task).test_data()
    rng = np.random.default_rng(0)
    scale = np.abs(x_test).max(axis=0) + 1
    wide = rng.uniform(-4, 4, size=(160, x_test.shape[1])) * scale
    x = np.concatenate([x_test, wide, np.zeros((16, x_test.shape[1]))]).astype(np.float32)
    return np.ascontiguousarray(x[: len(x) // BLOCK_ROWS * BLOCK_ROWS])


def _paths(lib: ctypes.CDLL, x: np.ndarray, n_out: int) -> tuple[np.ndarray, np.ndarray]:
    one, block = (np.full((len(x), n_out), np.nan, dtype=np.float32) for _ in range(2))
    ptr = lambda a: ctypes.c_void_p(a.ctypes.data)  # noqa: E731
    lib.rows_one_by_one(ptr(x), ptr(one), ctypes.c_size_t(len(x)))
    lib.whole_blocks(ptr(x), ptr(block), ctypes.c_size_t(len(x) // BLOCK_ROWS))
    return one, block


@needs_cc
@pytest.mark.parametrize("model_id", KINDS)
def test_one_row_and_block_paths_give_the_same_bits(model_id, tmp_path):
    """Strict IEEE, the same operations in the same order on each row: the paths agree to the bit, and so
    do -O0 and -O3 builds (which is why results do not depend on the optimization level)."""
    n_out = registry.get(model_id).config.out_features
    x = _inputs(model_id)
    runs = [_paths(_harness(model_id, tmp_path, opt), x, n_out) for opt in ("-O0", "-O3")]
    ref = runs[0][0]
    assert np.isfinite(ref).all()
    for one, block in runs:
        assert one.view(np.uint32).tolist() == ref.view(np.uint32).tolist()
        assert block.view(np.uint32).tolist() == ref.view(np.uint32).tolist()
    # and they are the model: within verify's tolerance of the plan in float64
    want = _plan(model_id, x)
    assert np.abs(ref - want).max() <= 1e-4 * max(1.0, float(np.abs(want).max()))


def _plan(model_id: str, x: np.ndarray) -> np.ndarray:
    from hanzoo.graphs.lower import run_plan

    return run_plan(lower(load_model(model_id)), x.astype(np.float64))


@needs_cc
@pytest.mark.skipif(CC is not None and "Free Software Foundation" not in native.compiler_version(tuple(CC)),
                    reason="the vectorization report is gcc's")  # fmt: skip
@pytest.mark.parametrize("model_id", ["checkerboard-hannet-20x30", "checkerboard-fcnet-6x100"])
def test_gcc_vectorizes_the_block_path_across_rows(model_id):
    """Each loop over the rows of a block (ACROSS_ROWS) is one gcc's vectorizer takes, at -O3 with no
    -march and no -ffast-math: SSE on any x86-64."""
    source = EXPORT_DIR / model_id / "model.c"
    out = _cc(*native.FLAGS, "-o", "/dev/null", str(source), "-lm", "-fopt-info-vec-optimized")
    assert out.returncode == 0, out.stderr[:2000]
    vectorized = {int(n) for n in re.findall(r"model\.c:(\d+):\d+: optimized: loop vectorized", out.stderr)}
    lines = source.read_text().splitlines()
    across = [i + 2 for i, line in enumerate(lines) if line.strip() == "ACROSS_ROWS"]  # the loop's own line
    assert across and all(lines[n - 1].strip().startswith("for (r = 0; r < BLOCK;") for n in across)
    assert set(across) <= vectorized, sorted(set(across) - vectorized)


@needs_cc
@pytest.mark.parametrize("model_id", KINDS)
def test_blocks_of_one_row_build_the_one_row_path_alone_with_the_same_bits(model_id, tmp_path):
    """-D<NAME>_BLOCK_ROWS=1 (a microcontroller's build) leaves the block path out: clean C99 with no
    unused function, no run_block in the object, and the same bits as the default build, whatever the
    batch."""
    source, up = EXPORT_DIR / model_id / "model.c", c_name(model_id).upper()
    one = f"-D{up}_BLOCK_ROWS=1"
    out = _cc(*STRICT, one, "-O2", "-c", str(source), "-o", str(tmp_path / "one.o"))
    assert out.returncode == 0, out.stderr[:2000]
    assert b"run_block" not in (tmp_path / "one.o").read_bytes()  # a local symbol, were it there
    libs = {}
    for name, flags in (("default", []), ("one", [one])):
        lib = tmp_path / f"{name}.so"
        out = _cc("-std=c99", "-O3", "-fPIC", "-shared", *flags, "-o", str(lib), str(source), "-lm")
        assert out.returncode == 0, out.stderr[:2000]
        fn = getattr(ctypes.CDLL(str(lib)), f"{c_name(model_id)}_run")
        fn.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_size_t]
        libs[name] = fn
    x = _inputs(model_id)
    n_out = registry.get(model_id).config.out_features
    got = {}
    for name, fn in libs.items():
        y = np.full((len(x), n_out), np.nan, dtype=np.float32)
        assert fn(x.ctypes.data, y.ctypes.data, len(x)) == 0
        got[name] = y.view(np.uint32)
    assert np.array_equal(got["one"], got["default"])


@needs_cc
def test_an_export_with_no_han_layer_has_no_han_code():
    """-Wall would flag unused helpers: an FCNet's source defines only what it calls."""
    text = (EXPORT_DIR / "checkerboard-fcnet-6x100" / "model.c").read_text()
    assert "han_block" not in text and "dense_block(" in text


def test_an_image_model_is_one_line_naming_what_the_c_export_covers(tmp_path, capsys):
    with pytest.raises(HanzooError, match="c export covers the MLP models only; cifar10-hannet is an image"):
        export("cifar10-hannet", ["c"], tmp_path / "out")
    assert not (tmp_path / "out").exists()
    from hanzoo.cli import main

    assert main(["export", "cifar10-hannet", "--format", "c", "--out", str(tmp_path / "cli")]) == 1
    err = capsys.readouterr().err
    assert err.startswith("hanzoo: error: the c export covers the MLP models only") and err.count("\n") == 1
    from hanzoo.publishing import hub

    with pytest.raises(HanzooError, match="does not cover"):
        hub.export_path("cifar10-hannet", "c")


@needs_cc
def test_format_c_adds_the_c_files_to_an_export_of_the_same_weights(tmp_path):
    """`hanzoo export ID --format c` into an export folder of the same weights writes model.c and model.h,
    records their parity, and leaves every other file as it was."""
    model_id = "checkerboard-hannet-20x30"
    folder = shutil.copytree(EXPORT_DIR / model_id, tmp_path / "export")
    for name in ("model.c", "model.h"):
        (folder / name).unlink()
    manifest = json.loads((folder / "manifest.json").read_text())
    for key in ("files", "ops", "parity"):
        sub = manifest[key]["runtimes"] if key == "parity" else manifest[key]
        for k in ("model.c", "model.h", "c"):
            sub.pop(k, None)
    (folder / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    before = {p.relative_to(folder): p.read_bytes() for p in folder.rglob("*") if p.is_file()}
    export(model_id, ["c"], folder)
    after = {p.relative_to(folder): p.read_bytes() for p in folder.rglob("*") if p.is_file()}
    assert set(after) - set(before) == {Path("model.c"), Path("model.h")}
    assert all(after[p] == data for p, data in before.items() if p.name != "manifest.json")
    for name in ("model.c", "model.h"):  # the shipped bytes, from the same weights
        assert after[Path(name)] == (EXPORT_DIR / model_id / name).read_bytes()
    fresh = json.loads(after[Path("manifest.json")])
    assert fresh["parity"]["runtimes"]["c"]["ok"] and fresh["ops"]["c"] == {"dense": 4, "han": 17}
    others = {k: v for k, v in fresh["parity"]["runtimes"].items() if k != "c"}
    assert others == manifest["parity"]["runtimes"]
    assert [p.name for p in tmp_path.iterdir()] == ["export"]  # its working folder is gone


def _cross_targets() -> list[tuple[str, list[str]]]:
    """Every target the C export claims, as (name, compiler and its CPU flags): the arm64 cross compiler
    of `hanzoo verify --arch aarch64`, and the Cortex-M builds of `--arch cortex-m` (one-row path)."""
    from hanzoo.runtimes import arm, mcu

    out = [("aarch64", [arm.CROSS_CC])]
    out += [(name, ["arm-none-eabi-gcc", *t.cflags]) for name, t in mcu.TARGETS.items()]
    return out


@pytest.mark.parametrize("target", _cross_targets(), ids=lambda t: t[0])
def test_the_shipped_c_exports_are_clean_c99_on_every_claimed_target(target, tmp_path):
    name, cmd = target
    if shutil.which(cmd[0]) is None:
        pytest.skip(f"{cmd[0]} is not installed (make verify-arm / make verify-mcu install it)")
    one_row = name.startswith("cortex")  # the microcontroller build has the one-row path alone
    for entry in MLPS:
        flags = [f"-D{c_name(entry.id).upper()}_BLOCK_ROWS=1"] if one_row else []
        source = EXPORT_DIR / entry.id / "model.c"
        out = subprocess.run(
            [*cmd, *STRICT, "-Os", *flags, "-c", str(source), "-o", str(tmp_path / "model.o")],
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert out.returncode == 0, f"{entry.id} on {name}: {out.stderr[:2000]}"
