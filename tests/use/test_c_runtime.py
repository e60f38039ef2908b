"""The c runtime (hanzoo.runtimes.native, sessions.c_session): the C export compiled once with the system
compiler, cached, called through ctypes, and what it does with bad input, a broken source, a damaged cache
entry and no compiler at all."""

import ctypes
import re
import shutil
from pathlib import Path

import numpy as np
import pytest

from hanzoo import HanzooError
from hanzoo.graphs.export_c import BLOCK_ROWS, c_name
from hanzoo.runtimes import native
from hanzoo.runtimes.sessions import RUNTIMES
from hanzoo.runtimes.verify import output_tolerance, verify
from hanzoo.zoo import registry
from hanzoo.zoo.registry import EXPORT_DIR

MODEL = "checkerboard-hannet-20x30"
pytestmark = pytest.mark.skipif(native.compiler() is None, reason="no C compiler (cc) on PATH")


@pytest.fixture
def cache(tmp_path, monkeypatch) -> Path:
    """An empty cache of libraries, of this test's own."""
    monkeypatch.setenv("HANZOO_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache" / "c"


def _load(model_id: str = MODEL, folder: Path | None = None):
    return RUNTIMES["c"].load(registry.get(model_id).dir, folder or EXPORT_DIR / model_id, 1)


def _sources(model_id: str = MODEL) -> tuple[Path, list[Path]]:
    return EXPORT_DIR / model_id / "model.c", [EXPORT_DIR / model_id / "model.h"]


def test_the_c_runtime_matches_torch_at_any_batch(cache):
    """Whole blocks, the rows left over, and one row: torch's outputs within verify's tolerance, the decision
    the task's; and splitting a batch does not change a bit."""
    run, ref = _load(), RUNTIMES["torch"].load(registry.get(MODEL).dir, EXPORT_DIR / MODEL, 1)
    x = np.random.default_rng(0).uniform(-1, 1, size=(5 * BLOCK_ROWS + 7, 2)).astype(np.float32)
    got, want = run(x), ref(x)
    assert got["output"].shape == (len(x), 2) and got["output"].dtype == np.float32
    assert np.abs(got["output"] - want["output"]).max() <= output_tolerance(want["output"])
    assert np.array_equal(got["decision"], (got["output"].mean(axis=1) > 0.5).astype(np.int64))
    one_by_one = np.concatenate([run(x[i : i + 1])["output"] for i in range(len(x))])
    assert np.array_equal(one_by_one.view(np.uint32), got["output"].view(np.uint32))
    assert run(x[:0])["output"].shape == (0, 2)
    # a float64 or strided input is made float32 and contiguous first
    assert np.array_equal(
        run(x.astype(np.float64)[::-1])["output"], run(np.ascontiguousarray(x[::-1]))["output"]
    )
    assert len(list(cache.iterdir())) == 1  # built once, for both calls and every batch


def test_verify_and_predict_run_it_through_the_tables(cache):
    rep = verify(MODEL, runtimes=["c"], threads=1)
    assert rep["runtimes"]["c"]["ok"] and "-O3" in rep["runtimes"]["c"]["path"]
    assert "c" in verify(MODEL, threads=1)["runtimes"]  # present in the folder, so run by default
    from hanzoo.runtimes.predict import predict

    x = np.array([[0.1, -0.5], [0.9, 0.9]], dtype=np.float32)
    out, ref = predict(MODEL, x, runtime="c"), predict(MODEL, x, runtime="torch")
    assert np.abs(out["output"] - ref["output"]).max() <= output_tolerance(ref["output"])
    assert np.array_equal(out["decision"], ref["decision"])


def test_a_wrong_column_count_is_refused_before_the_library_reads_anything(cache, monkeypatch):
    calls = []
    real = native.load_function

    def spy(*args):
        fn, path = real(*args)
        return (lambda *a: calls.append(a) or fn(*a)), path

    monkeypatch.setattr(native, "load_function", spy)
    run = _load()
    for bad in (np.zeros((3, 5), np.float32), np.zeros((4, 1), np.float32), np.zeros(2, np.float32)):
        want = f"model.c takes input of shape [rows, 2], got {list(bad.shape)}"
        with pytest.raises(HanzooError, match=re.escape(want)):
            run(bad)
    assert calls == []
    run(np.zeros((3, 2), np.float32))
    assert len(calls) == 1


def test_null_pointers_return_non_zero_and_touch_nothing(cache):
    fn, _ = native.load_function(*_sources(), f"{c_name(MODEL)}_run")
    x = np.zeros((BLOCK_ROWS, 2), np.float32)
    y = np.full((BLOCK_ROWS, 2), 7.0, np.float32)
    assert (
        fn(None, y.ctypes.data, BLOCK_ROWS) == 1
        and fn(x.ctypes.data, None, 1) == 1
        and fn(None, None, 0) == 1
    )
    assert (y == 7.0).all()
    assert fn(x.ctypes.data, y.ctypes.data, 0) == 0 and (y == 7.0).all()
    assert fn(x.ctypes.data, y.ctypes.data, BLOCK_ROWS) == 0 and not (y == 7.0).any()


def test_a_compiler_error_is_its_first_error_line_and_leaves_no_library(cache, tmp_path):
    folder = tmp_path / "broken"
    shutil.copytree(EXPORT_DIR / MODEL, folder, ignore=shutil.ignore_patterns("manifest*"))
    source = folder / "model.c"
    source.write_text(source.read_text().replace("static void run_row(", "static void run_row(int oops"))
    with pytest.raises(HanzooError) as e:
        native.load_function(source, [folder / "model.h"], f"{c_name(MODEL)}_run")
    message = str(e.value)
    assert "\n" not in message and f"cannot compile {source}: " in message
    assert "error:" in message and "model.c:" in message  # the compiler's own line, where it points
    assert not cache.exists() or list(cache.iterdir()) == []  # no half-built library, no temporary file


def test_a_damaged_cache_entry_is_built_again(cache):
    lib = native.library_path(*_sources())
    lib.parent.mkdir(parents=True)
    lib.write_bytes(b"\x7fELF but not a library")
    with pytest.raises(OSError):
        ctypes.CDLL(str(lib))
    run = _load()
    assert lib.read_bytes()[:4] == b"\x7fELF" and len(lib.read_bytes()) > 1000
    assert run(np.zeros((1, 2), np.float32))["output"].shape == (1, 2)
    assert sorted(p.name for p in cache.iterdir()) == [lib.name]


def test_the_cache_key_is_the_sources_the_flags_and_the_compiler(cache, tmp_path, monkeypatch):
    source, others = _sources()
    key = native.library_path(source, others)
    assert native.library_path(source, others) == key and key.parent == cache
    copy = shutil.copytree(EXPORT_DIR / MODEL, tmp_path / "copy")
    assert native.library_path(copy / "model.c", [copy / "model.h"]) == key  # the bytes, not the place
    (copy / "model.h").write_text((copy / "model.h").read_text() + "\n")
    assert native.library_path(copy / "model.c", [copy / "model.h"]) != key
    monkeypatch.setattr(native, "FLAGS", (*native.FLAGS, "-g"))
    assert native.library_path(source, others) != key
    monkeypatch.undo()
    monkeypatch.setenv("HANZOO_CACHE", str(cache.parent))
    monkeypatch.setattr(native, "compiler_version", lambda cmd: "another compiler 1.0")
    assert native.library_path(source, others) != key


def test_the_wrong_models_source_is_named(cache, tmp_path):
    """An export folder holding another model's C file: the symbol is missing, said in one line."""
    with pytest.raises(HanzooError, match="defines no elevators_hannet_20x200_run"):
        native.load_function(*_sources(), "elevators_hannet_20x200_run")


def test_with_no_compiler_the_runtime_is_left_out_in_one_line(monkeypatch, tmp_path):
    monkeypatch.setenv("CC", str(tmp_path / "no-such-cc"))
    why = RUNTIMES["c"].missing()
    assert why and "\n" not in why and "no C compiler" in why and "no-such-cc" in why
    rep = verify(MODEL, threads=1)
    assert rep["not_run"] == {"c": why} and "c" not in rep["runtimes"]
    assert rep["runtimes"]["onnxruntime"]["ok"]
    from hanzoo.reports import bench

    assert "c" not in bench.available_runtimes()
    with pytest.raises(HanzooError, match="the c runtime cannot run: no C compiler"):
        _load()
    from hanzoo.publishing.export import export, unchecked_formats

    assert unchecked_formats() == {"c": why}  # `hanzoo export ID` writes the other formats, and says so
    with pytest.raises(HanzooError, match="the c export's parity check cannot run here: no C compiler"):
        export(MODEL, ["c"], tmp_path / "out")
    assert not (tmp_path / "out").exists()
    monkeypatch.delenv("CC")
    assert RUNTIMES["c"].missing() is None and unchecked_formats() == {}


def test_an_image_model_is_not_the_c_runtimes(cache):
    with pytest.raises(HanzooError, match="c runtime runs the MLP models; cifar10-hannet is an image model"):
        _load("cifar10-hannet")
