import json
import os
import stat

import numpy as np
import pytest
import torch

from hanzoo import HanzooError
from hanzoo.cli import main
from hanzoo.runtimes.predict import model_io, predict, read_inputs, write_outputs
from hanzoo.storage.evaluate import check_output
from hanzoo.storage.evaluate import outputs as torch_predict
from hanzoo.storage.store import load_model as load
from hanzoo.zoo import registry
from hanzoo.zoo.tasks import get_task

FEATURES = ("x1", "x2")
MODELS = ["checkerboard-hannet-20x30", "checkerboard-fcnet-6x100"]


@pytest.mark.parametrize("model", MODELS)
@pytest.mark.parametrize("runtime", ["torch", "onnxruntime", "ort-mobile", "litert"])
def test_every_runtime_predicts_the_test_decisions(model, runtime):
    s = get_task("checkerboard").split()
    ref = predict(model, s.x_test[:500], "torch")
    out = predict(model, s.x_test[:500], runtime)
    assert np.array_equal(out["decision"], ref["decision"])
    assert np.abs(out["output"] - ref["output"]).max() < 1e-4


def test_cli_csv_in_csv_and_npy_out(tmp_path, capsys):
    src = tmp_path / "in.csv"
    src.write_text("x1,x2\n0.1,-0.5\n0.9,0.9\n-1,1\n")
    assert (
        main(
            ["predict", "checkerboard-hannet-20x30", "--input", str(src), "--output", str(tmp_path / "o.csv")]
        )
        == 0
    )
    lines = (tmp_path / "o.csv").read_text().splitlines()
    assert lines[0] == "output_0,output_1,decision" and len(lines) == 4
    assert (
        main(
            [
                "predict",
                "checkerboard-hannet-20x30",
                "--input",
                str(src),
                "--runtime",
                "litert",
                "--output",
                str(tmp_path / "o.npy"),
            ]
        )
        == 0
    )
    assert np.load(tmp_path / "o.npy").shape == (3, 2)
    np.save(tmp_path / "in.npy", np.zeros((5, 2), dtype=np.float64))
    capsys.readouterr()
    assert main(["predict", "checkerboard-fcnet-6x100", "--input", str(tmp_path / "in.npy"), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["rows"] == 5


@pytest.mark.parametrize(
    "content, message",
    [
        ("", "is empty"),
        ("x1,x2\n", "has no data rows"),
        ("a,b\n1,2\n", "has columns a,b; expected x1,x2"),
        ("x1,x2\n1,2\n3\n", "row 3 has 1 values; expected 2"),
        ("x1,x2\n1,2\n3,abc\n", "row 3, column x2: 'abc' is not a number"),
        ("x1,x2\nnan,1\n", "row 2, column x1: nan"),
        ("x1,x2\n1,inf\n", "row 2, column x2: inf"),
    ],
)
def test_bad_csv_input(tmp_path, content, message):
    path = tmp_path / "in.csv"
    path.write_text(content)
    with pytest.raises(HanzooError, match=message):
        read_inputs(path, FEATURES)


def test_bad_npy_input_and_paths(tmp_path, capsys):
    np.save(tmp_path / "wide.npy", np.zeros((3, 5)))
    with pytest.raises(HanzooError, match=r"shape \(3, 5\)"):
        read_inputs(tmp_path / "wide.npy", FEATURES)
    np.save(tmp_path / "text.npy", np.array([["a", "b"]]))
    with pytest.raises(HanzooError, match="numeric"):
        read_inputs(tmp_path / "text.npy", FEATURES)
    np.save(tmp_path / "objects.npy", np.array([[1, None]], dtype=object), allow_pickle=True)
    with pytest.raises(HanzooError, match="never unpickles"):
        read_inputs(tmp_path / "objects.npy", FEATURES)
    with pytest.raises(HanzooError, match="does not exist"):
        read_inputs(tmp_path / "nope.csv", FEATURES)
    src = tmp_path / "in.csv"
    src.write_text("x1,x2\n0,0\n")
    blocker = tmp_path / "file"
    blocker.write_text("")
    assert (
        main(
            ["predict", "checkerboard-hannet-20x30", "--input", str(src), "--output", str(blocker / "o.csv")]
        )
        == 1
    )
    assert "cannot write" in capsys.readouterr().err
    assert main(["predict", "checkerboard-hannet-20x30", "--input", str(src), "--runtime", "tvm"]) == 1
    assert "unknown runtime 'tvm'" in capsys.readouterr().err
    with pytest.raises(HanzooError, match=r"shape \(2, 3\)"):
        predict("checkerboard-hannet-20x30", np.zeros((2, 3)))


def test_csv_with_a_bom_crlf_and_trailing_blank_lines_reads(tmp_path):
    """What Excel's "CSV UTF-8" writes: a byte-order mark and CRLF line ends."""
    path = tmp_path / "in.csv"
    path.write_bytes("\ufeffx1,x2\r\n0.5,-0.25\r\n1,2\r\n\r\n".encode())
    assert read_inputs(path, FEATURES).tolist() == [[0.5, -0.25], [1.0, 2.0]]


@pytest.mark.parametrize(
    "content, message",
    [
        (
            b"x1,x2\n\xe9,1\n",
            "is not a UTF-8 CSV text file; m takes a CSV with header x1,x2 or an .npy \\[rows, 2\\]",
        ),
        (b"0.1,0.2\n", "expected a header row x1,x2"),
        (b"x1,x2\n1e39,0\n", "row 2, column x1: 1e\\+39 \\(beyond float32"),
    ],
)
def test_csv_that_is_not_what_the_model_reads(tmp_path, content, message):
    path = tmp_path / "in.csv"
    path.write_bytes(content)
    with pytest.raises(HanzooError, match=message):
        read_inputs(path, FEATURES, "m")


def test_check_output_names_the_rows():
    ok = np.ones((4, 2), np.float32)
    assert check_output(ok, "here") is ok
    assert check_output(np.zeros(3, np.int64), "here") is not None  # decisions cannot be NaN
    bad = ok.copy()
    bad[1, 0], bad[3, 1] = np.nan, np.inf
    with pytest.raises(
        HanzooError, match=r"^here: the output is NaN or infinite for 2 of 4 rows \(rows 3, 5\); check"
    ):
        check_output(bad, "here", first_row=2, hint="check")
    with pytest.raises(HanzooError, match=r"for 7 of 7 rows \(rows 0, 1, 2, 3, 4 and 2 more\)"):
        check_output(torch.full((7, 1), float("nan")), "t")


@pytest.mark.parametrize("runtime", ["torch", "onnxruntime", "ort-mobile", "litert"])
def test_every_runtime_refuses_an_overflowing_row(runtime):
    x = np.array([[0.1, 0.2], [3e38, 0.0]], np.float32)  # finite, but NaN out of every runtime (measured)
    with pytest.raises(
        HanzooError, match=rf"\({runtime}\) on x: the output is NaN or infinite for 1 of 2 rows \(row 1\)"
    ):
        predict("checkerboard-hannet-20x30", x, runtime, source="x")


def test_torch_evaluation_refuses_non_finite_outputs():
    net = load("checkerboard-hannet-20x30")
    with pytest.raises(
        HanzooError, match=r"checkerboard-hannet-20x30 \(torch\): the output is NaN .* \(row 1\)"
    ):
        torch_predict(net, np.array([[0.0, 0.0], [3e38, 0.0]], np.float32))
    with pytest.raises(HanzooError, match="beyond float32"):  # a float64 that float32 cannot hold
        torch_predict(net, np.array([[1e300, 0.0]]))


def test_threads_must_be_positive():
    with pytest.raises(HanzooError, match="threads must be a whole number of at least 1, got 0"):
        predict("checkerboard-hannet-20x30", np.zeros((1, 2), np.float32), threads=0)


def test_written_outputs_follow_the_umask_and_fail_cleanly(tmp_path):
    out = {"output": np.zeros((2, 1), np.float32)}
    old = os.umask(0o027)
    try:
        write_outputs(out, tmp_path / "o.csv")
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "o.csv").stat().st_mode) == 0o640
    (tmp_path / "d").mkdir()
    with pytest.raises(HanzooError, match="it is a folder"):
        write_outputs(out, tmp_path / "d")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["d", "o.csv"]


def test_model_io_matches_every_export_manifest():
    """`hanzoo info` describes the tensors as the exported files have them."""
    from hanzoo.zoo.registry import EXPORT_DIR

    dtypes = {"float": "float32"}  # ONNX's name in the manifest; apps say float32
    checked = 0
    for e in registry.MODELS.values():
        path = EXPORT_DIR / e.id / "manifest.json"
        if not path.is_file():
            continue
        manifest = json.loads(path.read_text())
        io = model_io(e.id, e.task, e.config)
        for side in ("inputs", "outputs"):
            ours = [(v["name"], v["dtype"], v["shape"], v.get("tflite_dtype")) for v in io[side]]
            theirs = [
                (v["name"], dtypes.get(v["dtype"], v["dtype"]), v["shape"], v.get("tflite_dtype"))
                for v in manifest[side]
            ]
            assert ours == theirs, (e.id, side)
        checked += 1
    assert checked >= 3


def test_os_errors_on_user_paths_are_named(tmp_path, monkeypatch):
    """Root (CI) may read anything, so a denied read or write is simulated where it would happen."""
    from pathlib import Path

    csv_path, npy_path = tmp_path / "in.csv", tmp_path / "in.npy"
    csv_path.write_text("x1,x2\n0,0\n")
    np.save(npy_path, np.zeros((1, 2), np.float32))

    def denied(*args, **kwargs):
        raise PermissionError(13, "Permission denied")

    with monkeypatch.context() as m:
        m.setattr(Path, "read_bytes", denied)
        with pytest.raises(HanzooError, match=r"cannot read .*in.csv: Permission denied"):
            read_inputs(csv_path, FEATURES)
    with monkeypatch.context() as m:
        m.setattr(Path, "open", denied)
        with pytest.raises(HanzooError, match=r"cannot read .*in.npy: Permission denied"):
            read_inputs(npy_path, FEATURES)
    with monkeypatch.context() as m:
        m.setattr(os, "replace", denied)
        with pytest.raises(HanzooError, match=r"cannot write .*o.csv: Permission denied"):
            write_outputs({"output": np.zeros((1, 1), np.float32)}, tmp_path / "o.csv")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.csv", "in.npy"]  # no temporary file left
