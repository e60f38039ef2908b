import json
import subprocess
import sys

from hanzoo.cli import main
from hanzoo.zoo import registry

from ..what_exists.test_registry import OUR_PARAMS, PAPER_PARAMS


def run(capsys, *argv):
    code = main(list(argv))
    out = capsys.readouterr()
    return code, out.out, out.err


def test_list_json_has_every_model_with_exact_params(capsys):
    code, out, _ = run(capsys, "list", "--json")
    assert code == 0
    rows = {m["id"]: m for m in json.loads(out)["models"]}
    assert {k: v["params"] for k, v in rows.items()} == PAPER_PARAMS | OUR_PARAMS
    for model_id, row in rows.items():
        assert row["shipped"] == registry.get(model_id).shipped


def test_list_table_and_info(capsys):
    code, out, _ = run(capsys, "list")
    assert code == 0 and "checkerboard-hannet-20x30" in out and "453002" in out
    code, out, _ = run(capsys, "info", "elevators-hannet-20x200", "--json")
    info = json.loads(out)
    assert code == 0 and info["params"] == 11601 and info["config"]["blocks"][1]["repeat"] == 19


def test_info_says_what_goes_in_and_comes_out(capsys):
    code, out, _ = run(capsys, "info", "calhousing-hannet-20x200", "--json")
    info = json.loads(out)
    assert code == 0
    (inp,) = info["inputs"]
    assert (inp["name"], inp["dtype"], inp["shape"]) == ("input", "float32", ["batch", 8])
    units = {c["name"]: c["unit"] for c in inp["columns"]}
    assert next(iter(units)) == "longitude" and units["longitude"] == "raw, as in the dataset"
    assert units["medianIncome"].startswith("tens of thousands of dollars")  # as PROVENANCE.md states
    assert info["outputs"] == [
        {
            "name": "output",
            "dtype": "float32",
            "shape": ["batch", 1],
            "meaning": "medianHouseValue: dollars (the data cap it at 500001)",
        }
    ]
    files = info["exports"]["files"]
    assert set(files) == {
        "model.onnx", "model.ort", "model.tflite", "model.pte", "model.c", "model.h", "manifest.json"
    }  # fmt: skip
    assert all(f["exists"] and f["path"].endswith(f"calhousing-hannet-20x200/{n}") for n, f in files.items())

    code, out, _ = run(capsys, "info", "checkerboard-hannet-20x30")
    assert code == 0
    assert "input: input float32 [batch, 2]" in out and "x1: coordinate on the 81x81 grid over [-1, 1]" in out
    decision = "output: decision int64 [batch] (int32 in model.tflite): 1 if the mean of the 2 scores is"
    assert decision in out
    assert "export/checkerboard-hannet-20x30/model.tflite (exists)" in out

    unshipped = next(e.id for e in registry.MODELS.values() if not e.shipped)
    code, out, _ = run(capsys, "info", unshipped, "--json")
    assert code == 0 and not any(f["exists"] for f in json.loads(out)["exports"]["files"].values())


def test_usage_errors_are_one_line_and_exit_1(capsys):
    for argv in (["predict", "checkerboard-hannet-20x30"], ["bench", "--threads", "0"], ["nope"]):
        code, _, err = run(capsys, *argv)
        assert code == 1 and err.count("\n") == 1 and err.startswith("hanzoo: error: "), (argv, err)
    code, _, err = run(capsys, "bench", "--rounds", "-1")
    assert "argument --rounds: must be at least 1, got -1 (see `hanzoo bench --help`)" in err


def test_unforeseen_os_errors_and_long_messages_are_still_one_line(capsys, monkeypatch):
    from hanzoo.cli import models as cli
    from hanzoo.errors import HanzooError

    def denied(args):
        raise PermissionError(13, "Permission denied", "/data/x.csv")

    def chatty(args):
        raise HanzooError("onnxruntime cannot load m.onnx: [ONNXRuntimeError]\n  detail\n")

    monkeypatch.setattr(cli, "cmd_list", denied)
    assert run(capsys, "list")[::2] == (1, "hanzoo: error: /data/x.csv: Permission denied\n")
    monkeypatch.setattr(cli, "cmd_list", chatty)
    assert run(capsys, "list")[::2] == (
        1,
        "hanzoo: error: onnxruntime cannot load m.onnx: [ONNXRuntimeError] detail\n",
    )


def test_errors_are_one_line_and_nonzero(capsys, tmp_path):
    unshipped = next(e.id for e in registry.MODELS.values() if not e.shipped)
    for argv in (
        ["info", "nope"],
        ["eval", unshipped],
        ["eval", str(tmp_path / "missing")],
        ["train", "cifar10-head-hannet"],
        [
            "import-official",
            str(tmp_path / "x.safetensors"),
            str(tmp_path / "d"),
            "--model",
            "checkerboard-hannet-20x30",
        ],
    ):
        code, out, err = run(capsys, *argv)
        assert code == 1, argv
        assert err.count("\n") == 1 and err.startswith("hanzoo: error: "), (argv, err)
        assert "Traceback" not in err
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "config.json").write_text("[]")
    code, _, err = run(capsys, "eval", str(tmp_path / "bad"))
    assert code == 1 and "not a hanzoo config" in err


def test_console_script_entry_point():
    """The installed `hanzoo` script is this CLI (run as a subprocess, as a user would)."""
    proc = subprocess.run(
        [sys.executable, "-m", "hanzoo.cli", "info", "nope"], capture_output=True, text=True
    )
    assert proc.returncode == 1 and proc.stderr.strip() == (
        "hanzoo: error: unknown model id 'nope'; run `hanzoo list` to see them"
    )


def test_generated_docs_are_current():
    from hanzoo.reports import docs

    for path, text in docs.generated().items():
        assert path.read_text() == text, f"{path.name} is stale: run `make docs`"
