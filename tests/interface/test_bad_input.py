"""Every bad input a user can give the CLI: exit 1, one line on stderr naming the problem, no traceback,
and nothing left behind (no output file, no temporary file, no changed input).

Each case runs in an empty temporary folder holding only its input files, through `hanzoo.cli.main`.
"""

import io
import json
import pickle
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from safetensors.torch import load_file, save

from hanzoo.cli import main
from hanzoo.zoo import registry
from hanzoo.zoo.tasks import get_task

CB, EL, IMG = "checkerboard-hannet-20x30", "elevators-hannet-20x200", "cifar10-hannet"
OFFICIAL = Path(__file__).parents[1] / "data" / "official-checkerboard-hannet.safetensors"


def png(w: int = 32, h: int = 32) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (w, h), (200, 30, 30)).save(buf, format="PNG")
    return buf.getvalue()


def npy(array: np.ndarray, allow_pickle: bool = False) -> bytes:
    buf = io.BytesIO()
    np.save(buf, array, allow_pickle=allow_pickle)
    return buf.getvalue()


def npz() -> bytes:
    buf = io.BytesIO()
    np.savez(buf, x=np.zeros((2, 2), np.float32))
    return buf.getvalue()


def model_copy(edit=None, weights=None) -> dict:
    """A copy of CB's model folder, its config.json edited by `edit` and its weights by `weights`."""
    src = registry.get(CB).dir
    meta = json.loads((src / "config.json").read_text())
    if edit:
        edit(meta)
    state = load_file(str(src / "model.safetensors"))
    if weights:
        weights(state)
    return {"m/config.json": json.dumps(meta).encode(), "m/model.safetensors": save(state)}


def overflowing_head(state) -> None:
    state["head.weight"].fill_(3e38)  # finite weights (load accepts them) whose products overflow


EL_HEADER = ",".join(get_task("elevators").features)
EL_ROW_P_HUGE = ",".join(["0"] * 2 + ["3e38"] + ["0"] * 15)  # 3e38 in column p overflows (measured: NaN)


def predict(model: str, src: str, *more: str) -> list[str]:
    return ["predict", model, "--input", src, "--output", "out.csv", *more]


OK_CSV = b"x1,x2\n0.1,0.2\n"

# (id, input files, argv, a phrase the one error line must hold)
CASES = [
    # --- CSV given to a tabular model
    ("csv-not-utf8", {"in.csv": b"x1,x2\n\xe9,1\n"}, predict(CB, "in.csv"), "is not a UTF-8 CSV text file"),
    ("csv-is-png-bytes", {"in.csv": png()}, predict(CB, "in.csv"), "is not a UTF-8 CSV text file"),
    (
        "image-to-tabular",
        {"x.png": png()},
        predict(CB, "x.png"),
        "x.png is an image; checkerboard-hannet-20x30 takes a CSV",
    ),
    (
        "csv-no-header",
        {"in.csv": b"0.1,0.2\n0.3,0.4\n"},
        predict(CB, "in.csv"),
        "expected a header row x1,x2",
    ),
    ("csv-wrong-header", {"in.csv": b"a,b\n1,2\n"}, predict(CB, "in.csv"), "has columns a,b; expected x1,x2"),
    (
        "csv-header-order",
        {"in.csv": b"x2,x1\n1,2\n"},
        predict(CB, "in.csv"),
        "in another order; expected x1,x2",
    ),
    ("csv-other-task-header", {"in.csv": b"x1,x2\n1,2\n"}, predict(EL, "in.csv"), "expected climbRate,Sgz,p"),
    ("csv-empty", {"in.csv": b""}, predict(CB, "in.csv"), "is empty"),
    ("csv-header-only", {"in.csv": b"x1,x2\n"}, predict(CB, "in.csv"), "has no data rows"),
    ("csv-ragged", {"in.csv": b"x1,x2\n1,2\n3\n"}, predict(CB, "in.csv"), "row 3 has 1 values; expected 2"),
    (
        "csv-not-a-number",
        {"in.csv": b"x1,x2\n1,2\n3,abc\n"},
        predict(CB, "in.csv"),
        "row 3, column x2: 'abc' is not a number",
    ),
    ("csv-nul-byte", {"in.csv": b"x1,x2\n1,\x002\n"}, predict(CB, "in.csv"), "row 2, column x2"),
    ("csv-nan", {"in.csv": b"x1,x2\nnan,1\n"}, predict(CB, "in.csv"), "row 2, column x1: nan"),
    ("csv-inf", {"in.csv": b"x1,x2\n1,-inf\n"}, predict(CB, "in.csv"), "row 2, column x2: -inf"),
    ("csv-beyond-float32", {"in.csv": b"x1,x2\n1e39,1\n"}, predict(CB, "in.csv"), "beyond float32"),
    # --- finite inputs whose outputs overflow: refused in every path
    (
        "overflow-onnxruntime",
        {"in.csv": b"x1,x2\n0.1,0.2\n3e38,0\n"},
        predict(CB, "in.csv"),
        "(onnxruntime) on in.csv: the output is NaN or infinite for 1 of 2 rows (row 3)",
    ),
    (
        "overflow-torch",
        {"in.csv": b"x1,x2\n3e38,0\n0,-3e38\n"},
        predict(CB, "in.csv", "--runtime", "torch"),
        "(torch) on in.csv: the output is NaN or infinite for 2 of 2 rows (rows 2, 3)",
    ),
    (
        "overflow-elevators",
        {"in.csv": f"{EL_HEADER}\n{EL_ROW_P_HUGE}\n".encode()},
        predict(EL, "in.csv"),
        "the output is NaN or infinite for 1 of 1 rows (row 2)",
    ),
    (
        "overflow-npy-rows-from-0",
        {"in.npy": npy(np.array([[0, 0], [3e38, 0]], np.float32))},
        predict(CB, "in.npy"),
        "(row 1)",
    ),
    (
        "eval-overflowing-weights",
        model_copy(weights=overflowing_head),
        ["eval", "m"],
        "on the checkerboard train split: the output is NaN or infinite",
    ),
    # --- .npy given to a tabular model
    ("npy-no-rows", {"in.npy": npy(np.zeros((0, 2), np.float32))}, predict(CB, "in.npy"), "has no data rows"),
    ("npy-zero-bytes", {"in.npy": b""}, predict(CB, "in.npy"), "in.npy is empty"),
    (
        "npy-object-dtype",
        {"in.npy": npy(np.array([[1, None]], dtype=object), allow_pickle=True)},
        predict(CB, "in.npy"),
        "holds Python objects",
    ),
    (
        "npy-pickled-dict",
        {"in.npy": npy(np.array({"x": 1}, dtype=object), allow_pickle=True)},
        predict(CB, "in.npy"),
        "holds Python objects",
    ),
    ("npy-raw-pickle", {"in.npy": pickle.dumps([[1.0, 2.0]])}, predict(CB, "in.npy"), "is not an .npy file"),
    ("npy-is-csv-text", {"in.npy": OK_CSV}, predict(CB, "in.npy"), "is not an .npy file"),
    ("npy-is-npz", {"in.npy": npz()}, predict(CB, "in.npy"), "is not an .npy file"),
    (
        "npy-truncated",
        {"in.npy": npy(np.zeros((50, 2), np.float32))[:-9]},
        predict(CB, "in.npy"),
        "truncated or damaged",
    ),
    (
        "npy-truncated-header",
        {"in.npy": npy(np.zeros((50, 2), np.float32))[:40]},
        predict(CB, "in.npy"),
        "truncated or damaged",
    ),
    (
        "npy-wrong-shape",
        {"in.npy": npy(np.zeros((3, 5)))},
        predict(CB, "in.npy"),
        "has shape (3, 5); expected [rows, 2]",
    ),
    (
        "npy-complex",
        {"in.npy": npy(np.zeros((3, 2), np.complex64))},
        predict(CB, "in.npy"),
        "dtype complex64",
    ),
    ("npy-strings", {"in.npy": npy(np.array([["a", "b"]]))}, predict(CB, "in.npy"), "dtype <U1"),
    (
        "npy-beyond-float32",
        {"in.npy": npy(np.array([[1e300, 0]]))},
        predict(CB, "in.npy"),
        "row 0, column x1: 1e+300",
    ),
    # --- paths
    ("input-missing", {}, predict(CB, "nope.csv"), "input file nope.csv does not exist"),
    ("input-is-folder", {"d/in.csv": OK_CSV}, predict(CB, "d"), "input d is a folder"),
    (
        "output-is-folder",
        {"in.csv": OK_CSV, "o/keep": b""},
        ["predict", CB, "--input", "in.csv", "--output", "o"],
        "cannot write o: it is a folder",
    ),
    (
        "output-under-file",
        {"in.csv": OK_CSV, "f.txt": b"x"},
        ["predict", CB, "--input", "in.csv", "--output", "f.txt/o.csv"],
        "cannot write f.txt/o.csv: f.txt is a file, not a folder",
    ),
    (
        "output-folder-missing",
        {"in.csv": OK_CSV},
        ["predict", CB, "--input", "in.csv", "--output", "no/o.csv"],
        "folder no does not exist",
    ),
    # --- model and runtime
    ("unknown-model", {"in.csv": OK_CSV}, predict("checkerboard-hannet-99x99", "in.csv"), "unknown model id"),
    (
        "unknown-runtime",
        {"in.csv": OK_CSV},
        predict(CB, "in.csv", "--runtime", "tvm"),
        "unknown runtime 'tvm'",
    ),
    (
        "model-folder-no-config",
        {"in.csv": OK_CSV, "m/model.safetensors": b""},
        predict("m", "in.csv"),
        "config.json is missing",
    ),
    (
        "model-folder-binary-config",
        {"in.csv": OK_CSV, "m/config.json": b"\xff\xfe\x00garbage"},
        predict("m", "in.csv"),
        "config.json is not valid JSON",
    ),
    (
        "model-folder-json-not-config",
        {"in.csv": OK_CSV, "m/config.json": b"[]"},
        predict("m", "in.csv"),
        "not a hanzoo config",
    ),
    (
        "model-folder-without-id",
        {"in.csv": OK_CSV, **model_copy(lambda m: m.pop("model_id"))},
        predict("m", "in.csv"),
        "has no model_id",
    ),
    (
        "threads-zero",
        {"in.csv": OK_CSV},
        predict(CB, "in.csv", "--threads", "0"),
        "--threads: must be at least 1, got 0",
    ),
    (
        "threads-negative",
        {"in.csv": OK_CSV},
        predict(CB, "in.csv", "--threads", "-2"),
        "must be at least 1, got -2",
    ),
    (
        "threads-not-a-number",
        {"in.csv": OK_CSV},
        predict(CB, "in.csv", "--threads", "two"),
        "expected a whole number",
    ),
    ("input-flag-missing", {}, ["predict", CB], "the following arguments are required: --input"),
    # --- image models (one 32x32 image at most)
    ("csv-to-image-model", {"in.csv": OK_CSV}, predict(IMG, "in.csv"), "is neither an image nor an .npy"),
    (
        "png-corrupt",
        {"x.png": b"\x89PNG\r\n\x1a\n" + bytes(range(256))},
        predict(IMG, "x.png"),
        "is not a readable image",
    ),
    ("png-truncated", {"x.png": png()[:60]}, predict(IMG, "x.png"), "is not a readable image"),
    (
        "png-wrong-size",
        {"x.png": png(16, 20)},
        predict(IMG, "x.png"),
        "is 16x20 pixels; this model takes 32x32",
    ),
    ("jpg-is-text", {"x.jpg": b"not an image"}, predict(IMG, "x.jpg"), "is not a readable image"),
    (
        "npy-images-float",
        {"x.npy": npy(np.zeros((1, 32, 32, 3), np.float32))},
        predict(IMG, "x.npy"),
        "must be uint8",
    ),
    (
        "npy-images-nchw",
        {"x.npy": npy(np.zeros((1, 3, 32, 32), np.uint8))},
        predict(IMG, "x.npy"),
        "32x32 RGB",
    ),
    ("npy-images-empty", {"x.npy": b""}, predict(IMG, "x.npy"), "x.npy is empty"),
    # --- other commands' output folders
    (
        "export-out-under-file",
        {"f.txt": b"x"},
        ["export", CB, "--format", "onnx", "--out", "f.txt/x"],
        "f.txt is a file, not a folder",
    ),
    (
        "export-out-is-file",
        {"f.txt": b"x"},
        ["export", CB, "--format", "onnx", "--out", "f.txt"],
        "it is a file",
    ),
    (
        "export-out-holds-other-files",
        {"mine/notes.txt": b"keep me"},
        ["export", CB, "--format", "onnx", "--out", "mine"],
        "already holds other files",
    ),
    (
        "export-unknown-format",
        {},
        ["export", CB, "--format", "coreml", "--out", "e"],
        "unknown format coreml",
    ),
    (
        "train-out-under-file",
        {"f.txt": b"x"},
        [
            "train",
            CB,
            "--out",
            "f.txt/m",
            "--iterations",
            "1",
            "--seeds",
            "0",
            "--lrs",
            "0.01",
            "--no-compile",
        ],
        "f.txt is a file, not a folder",
    ),
    (
        "train-iterations-zero",
        {},
        ["train", CB, "--out", "m", "--iterations", "0"],
        "must be at least 1, got 0",
    ),
    (
        "bench-report-under-file",
        {"f.txt": b"x"},
        ["bench", CB, "--runtime", "torch", "--batch", "1", "--rounds", "1", "--report", "f.txt/r"],
        "f.txt is a file, not a folder",
    ),
    ("bench-batch-zero", {}, ["bench", CB, "--batch", "0"], "--batch: must be at least 1, got 0"),
    (
        "import-official-dest-under-file",
        {"a.safetensors": OFFICIAL.read_bytes(), "f.txt": b"x"},
        ["import-official", "a.safetensors", "f.txt/m", "--model", CB],
        "f.txt is a file, not a folder",
    ),
    (
        "import-official-src-missing",
        {},
        ["import-official", "a.safetensors", "m", "--model", CB],
        "is missing",
    ),
    (
        "import-official-src-garbage",
        {"a.safetensors": b"\x00" * 64},
        ["import-official", "a.safetensors", "m", "--model", CB],
        "not a readable safetensors file",
    ),
    ("eval-missing-folder", {}, ["eval", "no/such/folder"], "does not exist"),
    ("info-unknown", {}, ["info", "nope"], "unknown model id 'nope'"),
    ("unknown-command", {}, ["frobnicate"], "invalid choice: 'frobnicate'"),
]


def snapshot(root: Path) -> dict[str, bytes | None]:
    """Every file and folder under root (hidden ones too), with each file's bytes."""
    return {
        str(p.relative_to(root)): (p.read_bytes() if p.is_file() else None) for p in sorted(root.rglob("*"))
    }


def test_cases_have_unique_ids():
    ids = [c[0] for c in CASES]
    assert len(ids) == len(set(ids))


@pytest.mark.parametrize("files, argv, phrase", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_input_is_one_line_and_exit_1(tmp_path, monkeypatch, capsys, files, argv, phrase):
    for name, data in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(data)
    monkeypatch.chdir(tmp_path)
    before = snapshot(tmp_path)
    code = main(argv)
    err = capsys.readouterr().err
    assert code == 1, err
    assert "Traceback" not in err
    lines = err.splitlines()
    assert (
        len(lines) == 1 and lines[0].startswith("hanzoo: error: ") and lines[0].strip() != "hanzoo: error:"
    ), err
    assert phrase in lines[0], lines[0]
    assert snapshot(tmp_path) == before, "the failed command left files behind or changed its inputs"


def test_the_same_inputs_done_right_succeed(tmp_path, monkeypatch, capsys):
    """The battery's failures come from the bad part of each input, not from its setup."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "in.csv").write_bytes(OK_CSV)
    (tmp_path / "x.png").write_bytes(png())
    (tmp_path / "el.csv").write_text(f"{EL_HEADER}\n{','.join(['0'] * 18)}\n")
    for argv in (
        predict(CB, "in.csv"),
        predict(IMG, "x.png"),
        predict(EL, "el.csv"),
        predict(CB, "in.csv", "--runtime", "torch", "--threads", "1"),
    ):
        assert main(argv) == 0, capsys.readouterr().err
