"""A user's own model goes train -> export -> verify, and an export is only ever checked against the
weights it was made from; an interrupted export leaves nothing behind."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from hanzoo import HanzooError
from hanzoo.cli import main
from hanzoo.files import staged_folder, sweep
from hanzoo.publishing.export import export
from hanzoo.runtimes.verify import source_hashes, verify
from hanzoo.training.protocols import TrainingProtocol
from hanzoo.training.train import train_model
from hanzoo.zoo.registry import EXPORT_DIR

MODEL = "checkerboard-hannet-20x30"
pytestmark = pytest.mark.xdist_group("user-model")  # one worker trains and exports the user model once


@pytest.fixture(scope="module")
def user_model(tmp_path_factory):
    """A model of the user's own: a short training, written where the user chose, and its export."""
    root = tmp_path_factory.mktemp("user")
    protocol = TrainingProtocol(iterations=40, lrs=(0.05,), seeds=(0,), eval_every=20, refit=False)
    folder = train_model(MODEL, root / "mine", protocol=protocol, progress=False, compile=False)
    exported = export(folder, ["onnx", "tflite"], root / "mine-export")
    return folder, exported


def test_user_folder_train_export_verify(user_model, capsys):
    folder, exported = user_model
    manifest = json.loads((exported / "manifest.json").read_text())
    assert manifest["source"] == source_hashes(folder)
    # model.tflite runs in LiteRT and, as an MLP's, in TFLite Micro, whose arena the export measured
    assert set(manifest["parity"]["runtimes"]) == {"onnxruntime", "litert", "tflite-micro"}
    assert manifest["tflm"]["arena_bytes"] > 0
    rep = verify(folder, export_dir=exported)
    assert set(rep["runtimes"]) == {"onnxruntime", "litert", "tflite-micro"} and all(
        r["ok"] for r in rep["runtimes"].values()
    )
    assert main(["verify", str(folder), "--export", str(exported), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)["reports"][0]
    assert out["export_dir"] == str(exported) and "latency" not in out


def test_verify_refuses_an_export_of_other_weights(user_model, capsys):
    folder, exported = user_model
    # the user's folder against the shipped export of the same id: two different models
    assert main(["verify", str(folder)]) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "was exported from another model.safetensors" in err
    assert f"hanzoo export {folder} --out DIR" in err and str(EXPORT_DIR / MODEL) in err
    # and the shipped model against the user's export
    with pytest.raises(HanzooError, match="exported from another model.safetensors"):
        verify(MODEL, export_dir=exported)


def test_verify_refuses_an_export_without_its_source(user_model, tmp_path):
    folder, exported = user_model
    import shutil

    old = shutil.copytree(exported, tmp_path / "old")
    m = json.loads((old / "manifest.json").read_text())
    del m["source"]
    (old / "manifest.json").write_text(json.dumps(m))
    with pytest.raises(HanzooError, match="does not record which weights"):
        verify(folder, export_dir=old)


def test_failed_export_leaves_nothing(tmp_path, monkeypatch):
    from hanzoo.publishing import export as export_mod

    def boom(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(export_mod, "_manifest", boom)
    with pytest.raises(KeyboardInterrupt):
        export(MODEL, ["onnx"], tmp_path / "out")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_signalled_export_leaves_no_temporary_folder(tmp_path, sig):
    """A real `hanzoo export` process, signalled while it writes: no `.NAME.tmp-*` folder survives it."""
    dest = tmp_path / "intr"
    proc = subprocess.Popen(
        [sys.executable, "-m", "hanzoo.cli", "export", MODEL, "--format", "onnx,tflite", "--out", str(dest)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    deadline = time.monotonic() + 120
    while not list(tmp_path.glob(".intr.tmp-*")) and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    assert proc.poll() is None, "the export finished before it could be interrupted"
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode != 0 and b"Traceback" not in err, err.decode()
    assert list(tmp_path.iterdir()) == [], list(tmp_path.iterdir())


def test_stale_temporary_folders_are_swept(tmp_path):
    dest = tmp_path / "intr"
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True
    )
    stale = tmp_path / f".intr.tmp-{dead.stdout.strip()}-abc"
    stale.mkdir()
    live = tmp_path / f".intr.tmp-{os.getpid()}-xyz"  # a writer still running: never swept
    live.mkdir()
    with staged_folder(dest) as tmp:
        (tmp / "f").write_text("x")
    assert not stale.exists() and live.exists() and (dest / "f").read_text() == "x"
    live.rmdir()
    assert sweep(dest) == []


def test_staged_folder_refuses_to_replace_a_file(tmp_path):
    (tmp_path / "f").write_text("mine")
    with pytest.raises(HanzooError, match="a file of that name exists"):
        with staged_folder(tmp_path / "f"):
            pass
    with pytest.raises(HanzooError, match="is a file, not a folder"):
        with staged_folder(tmp_path / "f" / "x"):
            pass
    assert (tmp_path / "f").read_text() == "mine" and [p.name for p in tmp_path.iterdir()] == ["f"]


def test_predict_runs_the_users_export_not_the_shipped_one(user_model, tmp_path, capsys):
    folder, exported = user_model
    csv = tmp_path / "in.csv"
    csv.write_text("x1,x2\n0.1,-0.5\n0.5,0.5\n")
    assert main(["predict", str(folder), "--input", str(csv), "--export", str(exported), "--json"]) == 0
    mine = json.loads(capsys.readouterr().out)["predictions"]
    assert main(["predict", str(folder), "--input", str(csv), "--runtime", "torch", "--json"]) == 0
    torch_out = json.loads(capsys.readouterr().out)["predictions"]
    assert mine["decision"] == torch_out["decision"]
    # without --export, the bundled export of the same id is another model's: refused, not run
    assert main(["predict", str(folder), "--input", str(csv)]) == 1
    assert "was exported from another model.safetensors" in capsys.readouterr().err


def test_writers_never_replace_a_folder_of_other_files(tmp_path):
    mine = tmp_path / "photos"
    mine.mkdir()
    (mine / "cat.jpg").write_bytes(b"\xff\xd8")
    with pytest.raises(HanzooError, match="already holds other files"):
        export(MODEL, ["onnx"], mine)
    with pytest.raises(HanzooError, match="already holds other files"):
        with staged_folder(mine, marker="config.json"):
            pass
    assert [p.name for p in mine.iterdir()] == ["cat.jpg"] and [p.name for p in tmp_path.iterdir()] == [
        "photos"
    ]


def test_verify_fails_on_non_finite_runtime_outputs(monkeypatch, capsys):
    """A runtime that returns NaN for a row fails parity by name, even where the max error would hide it."""
    from dataclasses import replace

    from hanzoo.runtimes import sessions as runtimes

    real = runtimes.RUNTIMES["onnxruntime"]

    def load(model_dir, export_dir, threads):
        run = real.load(model_dir, export_dir, threads)

        def nan_row_3(x):
            out = run(x)
            out["output"][3] = float("nan")
            return out

        return nan_row_3

    monkeypatch.setitem(runtimes.RUNTIMES, "onnxruntime", replace(real, load=load))
    assert main(["verify", MODEL, "--runtime", "onnxruntime", "--no-latency"]) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "non-finite outputs on rows [3]" in err
