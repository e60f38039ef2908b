"""examples/c/hanzoo_run.c: built with the system C compiler against ONNX Runtime's C API, and run on
every shipped model's test_data_set_0, as an app that embeds a model would run it."""

import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import onnx
import onnxruntime
import pytest
from onnx import numpy_helper

from hanzoo.runtimes.verify import output_tolerance
from hanzoo.zoo import registry

ROOT = Path(__file__).resolve().parents[2]
SOURCE = ROOT / "examples" / "c" / "hanzoo_run.c"
HEADER = ROOT / "examples" / "c" / "include" / "onnxruntime_c_api.h"
CC = shutil.which(os.environ.get("CC", "cc")) or shutil.which("gcc")


def _why_not() -> str | None:
    if CC is None:
        return "no C compiler (cc or gcc) on PATH"
    if not HEADER.is_file():
        return f"{HEADER.relative_to(ROOT)} is missing: `make {HEADER.relative_to(ROOT)}` fetches it"
    return None


pytestmark = [
    pytest.mark.skipif(_why_not() is not None and not os.environ.get("CI"), reason=_why_not() or ""),
    pytest.mark.xdist_group("c-example"),  # one worker compiles the program once
]


@pytest.fixture(scope="module")
def program(tmp_path_factory) -> Path:
    """hanzoo_run, linked against the libonnxruntime inside the onnxruntime wheel (found beside it)."""
    out = tmp_path_factory.mktemp("c")
    (lib,) = sorted((Path(onnxruntime.__file__).parent / "capi").glob("libonnxruntime.so.*"))[:1]
    (out / "libonnxruntime.so.1").symlink_to(lib)  # the name the library's SONAME asks for
    subprocess.run(
        [CC, "-std=c11", "-Wall", "-Wextra", "-Werror", "-O2", f"-I{HEADER.parent}", str(SOURCE),
         "-o", str(out / "hanzoo_run"), str(out / "libonnxruntime.so.1"), "-Wl,-rpath,$ORIGIN"],
        check=True,
    )  # fmt: skip
    return out / "hanzoo_run"


def _run(program: Path, *args) -> subprocess.CompletedProcess:
    return subprocess.run([str(program), *map(str, args)], capture_output=True, text=True, timeout=120)


SHIPPED = [registry.get(m) for m in registry.shipped()]


@pytest.mark.parametrize("entry", SHIPPED, ids=lambda e: e.id)
def test_the_c_program_gives_test_data_set_0(program, entry, tmp_path):
    folder = registry.EXPORT_DIR / entry.id
    x = numpy_helper.to_array(onnx.load_tensor(str(folder / "test_data_set_0" / "input_0.pb")))
    want = numpy_helper.to_array(onnx.load_tensor(str(folder / "test_data_set_0" / "output_0.pb")))
    x.tofile(tmp_path / "input.bin")
    for artifact in ("model.ort", "model.onnx"):
        res = _run(program, folder / artifact, tmp_path / "input.bin", len(x), tmp_path / "out.bin")
        assert res.returncode == 0, res.stderr
        got = np.fromfile(tmp_path / "out.bin", dtype=np.float32).reshape(want.shape)
        diff, tol = float(np.abs(got - want).max()), output_tolerance(want)
        assert diff <= tol, f"{entry.id} {artifact} from C: differs by {diff:.3g} (tolerance {tol:.3g})"


def test_a_wrong_sized_input_is_refused_and_nothing_is_written(program, tmp_path):
    folder = registry.EXPORT_DIR / "checkerboard-hannet-20x30"
    np.zeros((4, 2), np.float32).tofile(tmp_path / "input.bin")
    res = _run(program, folder / "model.ort", tmp_path / "input.bin", 5, tmp_path / "out.bin")
    assert res.returncode == 1 and "holds 32 bytes; 40 expected" in res.stderr
    assert not list(tmp_path.glob("out.bin*"))
    for rows in ("0", "2x", "-3"):
        res = _run(program, folder / "model.ort", tmp_path / "input.bin", rows, tmp_path / "out.bin")
        assert res.returncode == 1 and "ROWS must be a positive integer" in res.stderr
    res = _run(program, tmp_path / "missing.ort", tmp_path / "input.bin", 4, tmp_path / "out.bin")
    assert res.returncode == 1 and "missing.ort" in res.stderr
    res = _run(program, folder / "model.ort")
    assert res.returncode == 1 and "usage" in res.stderr
