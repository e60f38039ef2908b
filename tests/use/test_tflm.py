"""The tflite-micro runtime (hanzoo.runtimes.micro, sessions.tflm_session): an MLP's model.tflite in
TensorFlow Lite for Microcontrollers' interpreter, one row per invoke; no int64 tensor in an MLP's TFLite
files; the smallest tensor arena, recomputed for one model; and what the runtime does with bad input, an
image model and no tflite-micro at all. Its parity on every MLP's whole test split is the golden parity
test's (tests/graphs/test_export.py)."""

import json
import sys
from dataclasses import replace

import numpy as np
import pytest

from hanzoo import HanzooError
from hanzoo.graphs.export_tflite import tensor_dtypes
from hanzoo.publishing import export as export_module
from hanzoo.runtimes import micro
from hanzoo.runtimes.predict import predict, to_csv
from hanzoo.runtimes.sessions import RUNTIMES
from hanzoo.runtimes.verify import output_tolerance, present_runtimes
from hanzoo.zoo import registry
from hanzoo.zoo.registry import EXPORT_DIR
from hanzoo.zoo.tasks import get_task

MODEL = "checkerboard-hannet-20x30"
SHIPPED = [e for e in registry.MODELS.values() if e.shipped]
MLPS = [e for e in SHIPPED if not e.config.takes_images]
IMAGES = [e for e in SHIPPED if e.config.takes_images]


def _manifest(model_id: str) -> dict:
    return json.loads((EXPORT_DIR / model_id / "manifest.json").read_text())


def _load(model_id: str = MODEL):
    return RUNTIMES["tflite-micro"].load(registry.get(model_id).dir, EXPORT_DIR / model_id, 1)


@pytest.mark.parametrize("entry", SHIPPED, ids=lambda e: e.id)
def test_no_mlp_tflite_file_has_an_int64_tensor(entry):
    """Every TFLite file of an MLP (fp32 and its shipped variants) is free of int64, which TFLM lacks, and
    Checkerboard's decision is int32 there; the CIFAR-10 files keep ArgMax's int64 class (TFLM is for the
    MLPs). The manifest's specs say the same."""
    files = [n for n in _manifest(entry.id)["files"] if n.endswith(".tflite")]
    assert "model.tflite" in files
    outputs = {v["name"]: v for v in _manifest(entry.id)["outputs"]}
    for name in files:
        types = tensor_dtypes((EXPORT_DIR / entry.id / name).read_bytes())
        if entry.config.takes_images:
            assert types["class"] == "int64" and "tflite_dtype" not in outputs["class"], name
            continue
        assert "int64" not in types.values(), (entry.id, name)
        if entry.task == "checkerboard":
            assert types["decision"] == "int32", (entry.id, name)
            assert (outputs["decision"]["dtype"], outputs["decision"]["tflite_dtype"]) == ("int64", "int32")


def test_it_matches_torch_row_by_row_and_gives_an_int32_decision():
    run = _load()
    ref = RUNTIMES["torch"].load(registry.get(MODEL).dir, EXPORT_DIR / MODEL, 1)
    x = np.random.default_rng(0).uniform(-1, 1, size=(37, 2)).astype(np.float32)
    got, want = run(x), ref(x)
    assert list(got) == ["output", "decision"]
    assert got["output"].shape == (37, 2) and got["output"].dtype == np.float32
    assert np.abs(got["output"] - want["output"]).max() <= output_tolerance(want["output"])
    assert got["decision"].dtype == np.int32
    assert np.array_equal(got["decision"], get_task("checkerboard").decide(got["output"])["decision"])
    # a batch is its rows, each invoked on its own: splitting it changes no bit
    one_by_one = np.concatenate([run(x[i : i + 1])["output"] for i in range(len(x))])
    assert np.array_equal(one_by_one.view(np.uint32), got["output"].view(np.uint32))
    assert run(x[:0])["output"].shape == (0, 2) and run(x[:0])["decision"].shape == (0,)
    assert np.array_equal(run(x.astype(np.float64))["output"], got["output"])


def test_a_regression_mlp_has_one_output():
    model = "elevators-hannet-20x200"
    x, _ = get_task(registry.get(model).task).test_data()
    got = _load(model)(x[:5])
    want = RUNTIMES["torch"].load(registry.get(model).dir, EXPORT_DIR / model, 1)(x[:5])
    assert list(got) == ["output"] and got["output"].shape == (5, 1)
    assert np.abs(got["output"] - want["output"]).max() <= output_tolerance(want["output"])


def test_predict_writes_the_decision_column_as_every_runtime_does():
    """An int32 decision (LiteRT, TFLM) is written as torch's int64 one is: the same CSV text, on rows away
    from the decision boundary (where no rounding can flip it)."""
    x = np.array([[0.1, -0.5], [0.9, 0.9], [-0.6, 0.3]], dtype=np.float32)
    columns = {
        rt: [line.split(",")[-1] for line in to_csv(predict(MODEL, x, runtime=rt)).splitlines()]
        for rt in ("torch", "litert", "tflite-micro")
    }
    assert columns["torch"][0] == "decision" and set(columns["torch"][1:]) <= {"0", "1"}
    assert columns["litert"] == columns["torch"] == columns["tflite-micro"]


def test_the_recorded_arena_is_the_smallest_one_recomputed():
    """The manifest's arena for one model, found again by bisection: the file runs in it with the outputs
    of an ample arena and fails one granule below. Its value is that tflite-micro release's: recorded with
    another release, only the property is checked."""
    path = EXPORT_DIR / MODEL / "model.tflite"
    recorded = _manifest(MODEL)["tflm"]
    arena = micro.arena_bytes(path, 2)
    assert arena % micro.GRANULE == 0 and 0 < arena < 10 * path.stat().st_size
    ample = micro.outputs_in(path, 10 * path.stat().st_size, 2)
    assert ample is not None and micro.outputs_in(path, arena, 2) == ample
    assert micro.outputs_in(path, arena - micro.GRANULE, 2) != ample
    assert recorded["granularity"] == micro.GRANULE
    if recorded["version"] == micro.version():
        assert arena == recorded["arena_bytes"], "re-export it: `hanzoo export ID --format tflite`"


def test_every_mlp_manifest_has_its_arena_and_tflite_micro_parity():
    for e in SHIPPED:
        m = _manifest(e.id)
        runs = m["parity"]["runtimes"]
        if e.config.takes_images:
            assert "tflm" not in m and "tflite-micro" not in runs, e.id
            continue
        assert m["tflm"]["arena_bytes"] % m["tflm"]["granularity"] == 0 and m["tflm"]["arena_bytes"] > 0
        assert runs["tflite-micro"]["ok"] and runs["tflite-micro"]["tolerance_abs"] is not None, e.id
        assert m["parity"]["reference"]["rows"] == len(get_task(e.task).test_data()[0]), e.id


@pytest.mark.parametrize("shape", [(3, 5), (4,), (2, 2, 1), (1, 1)])
def test_a_wrong_column_count_is_refused_before_anything_is_invoked(shape, monkeypatch):
    calls = []
    real = micro.interpreter

    class Spy:
        def __init__(self, inner):
            self.inner = inner

        def __getattr__(self, name):
            if name in ("set_input", "invoke"):
                calls.append(name)
            return getattr(self.inner, name)

    monkeypatch.setattr(micro, "interpreter", lambda *a, **k: Spy(real(*a, **k)))
    run = _load()
    with pytest.raises(HanzooError, match=r"model.tflite takes input of shape \[rows, 2\], got \["):
        run(np.zeros(shape, np.float32))
    assert calls == []
    run(np.zeros((1, 2), np.float32))
    assert calls == ["set_input", "invoke"]  # the spy sees what a good call does


def test_a_failed_invoke_is_one_line(monkeypatch):
    real = micro.interpreter

    class Failing:
        def __init__(self, inner):
            self.inner = inner

        def invoke(self):
            raise RuntimeError("Interpreter invocation failed.\nmore")

        def __getattr__(self, name):
            return getattr(self.inner, name)

    monkeypatch.setattr(micro, "interpreter", lambda *a, **k: Failing(real(*a, **k)))
    run = _load()
    said = r"TFLite Micro cannot run .*model.tflite: Interpreter invocation failed\.$"
    with pytest.raises(HanzooError, match=said):
        run(np.zeros((1, 2), np.float32))


def test_an_image_model_is_left_out_and_refused_in_one_line():
    image = IMAGES[0]
    assert "tflite-micro" not in present_runtimes(image.dir, EXPORT_DIR / image.id)
    assert "litert" in present_runtimes(image.dir, EXPORT_DIR / image.id)
    assert "tflite-micro" in present_runtimes(registry.get(MODEL).dir, EXPORT_DIR / MODEL)
    assert not RUNTIMES["tflite-micro"].covers(takes_images=True)
    with pytest.raises(HanzooError, match="tflite-micro runtime runs the MLP models; .* is an image model"):
        RUNTIMES["tflite-micro"].load(image.dir, EXPORT_DIR / image.id, 1)


def test_without_tflite_micro_it_says_how_to_install_it_and_export_leaves_it_out(monkeypatch):
    absent = replace(RUNTIMES["tflite-micro"], package="no_such_package")
    monkeypatch.setitem(RUNTIMES, "tflite-micro", absent)
    why = "not installed: pip install 'hanzoo[tflm]'"
    assert RUNTIMES["tflite-micro"].missing() == why
    assert export_module.unchecked_runtimes() == {"tflite-micro": why}
    net = type("Net", (), {"config": registry.get(MODEL).config})()
    assert "tflite-micro" not in export_module.parity_runtimes(net, {"model.tflite"})
    assert "litert" in export_module.parity_runtimes(net, {"model.tflite"})
    for name in [n for n in sys.modules if n.split(".")[0] == "tflite_micro"] or ["tflite_micro"]:
        monkeypatch.setitem(sys.modules, name, None)  # its import now fails
    with pytest.raises(HanzooError, match=r"Lite for Microcontrollers: pip install 'hanzoo\[tflm\]'"):
        micro.runtime()


def test_a_tflite_export_without_tflite_micro_drops_its_stale_figures(tmp_path, monkeypatch):
    """`hanzoo export ID --format tflite` where tflite-micro is not installed rewrites model.tflite and checks
    it in LiteRT; the arena and the tflite-micro parity measured on the file it replaced are dropped, not
    kept beside a file they were not measured on."""
    import shutil

    folder = tmp_path / "export"
    shutil.copytree(EXPORT_DIR / MODEL, folder)
    absent = replace(RUNTIMES["tflite-micro"], package="no_such_package")
    monkeypatch.setitem(RUNTIMES, "tflite-micro", absent)
    export_module.export(MODEL, ["tflite"], out=folder)
    m = json.loads((folder / "manifest.json").read_text())
    assert "tflm" not in m and "tflite-micro" not in m["parity"]["runtimes"]
    assert m["parity"]["runtimes"]["litert"]["ok"] and "c" in m["parity"]["runtimes"]
    assert (folder / "model.tflite").read_bytes() == (EXPORT_DIR / MODEL / "model.tflite").read_bytes()
    assert {v["name"]: v.get("tflite_dtype") for v in m["outputs"]} == {"output": None, "decision": "int32"}
