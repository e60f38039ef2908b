import json

import numpy as np
import pytest

from hanzoo import HanzooError
from hanzoo.cli import main
from hanzoo.predict import predict, read_inputs
from hanzoo.tasks import get_task

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
    assert main(["predict", "checkerboard-hannet-20x30", "--input", str(src), "--output", str(tmp_path / "o.csv")]) == 0
    lines = (tmp_path / "o.csv").read_text().splitlines()
    assert lines[0] == "output_0,output_1,decision" and len(lines) == 4
    assert main(["predict", "checkerboard-hannet-20x30", "--input", str(src), "--runtime", "litert",
                 "--output", str(tmp_path / "o.npy")]) == 0
    assert np.load(tmp_path / "o.npy").shape == (3, 2)
    np.save(tmp_path / "in.npy", np.zeros((5, 2), dtype=np.float64))
    capsys.readouterr()
    assert main(["predict", "checkerboard-fcnet-6x100", "--input", str(tmp_path / "in.npy"), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["rows"] == 5


@pytest.mark.parametrize("content, message", [
    ("", "is empty"),
    ("x1,x2\n", "has no data rows"),
    ("a,b\n1,2\n", "has columns a,b; expected x1,x2"),
    ("x1,x2\n1,2\n3\n", "row 3 has 1 values; expected 2"),
    ("x1,x2\n1,2\n3,abc\n", "row 3, column x2: 'abc' is not a number"),
    ("x1,x2\nnan,1\n", "row 2, column x1: nan"),
    ("x1,x2\n1,inf\n", "row 2, column x2: inf"),
])
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
    with pytest.raises(HanzooError, match="not a readable .npy"):  # never unpickled
        read_inputs(tmp_path / "objects.npy", FEATURES)
    with pytest.raises(HanzooError, match="does not exist"):
        read_inputs(tmp_path / "nope.csv", FEATURES)
    src = tmp_path / "in.csv"
    src.write_text("x1,x2\n0,0\n")
    blocker = tmp_path / "file"
    blocker.write_text("")
    assert main(["predict", "checkerboard-hannet-20x30", "--input", str(src), "--output", str(blocker / "o.csv")]) == 1
    assert "cannot write" in capsys.readouterr().err
    assert main(["predict", "checkerboard-hannet-20x30", "--input", str(src), "--runtime", "tvm"]) == 1
    assert "unknown runtime 'tvm'" in capsys.readouterr().err
    with pytest.raises(HanzooError, match=r"shape \(2, 3\)"):
        predict("checkerboard-hannet-20x30", np.zeros((2, 3)))
