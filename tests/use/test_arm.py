"""`hanzoo verify --arch aarch64`: its measured figures, and its faults (the emulated run itself is
`make verify-arm`, which fetches a few hundred MB)."""

import json
from pathlib import Path

import pytest

from hanzoo import HanzooError
from hanzoo.reports.docs import aarch64_section
from hanzoo.runtimes import arm
from hanzoo.zoo import registry

REPORT = Path(__file__).resolve().parents[2] / "docs" / "aarch64.json"


def test_the_aarch64_report_covers_every_shipped_export_and_passes():
    rep = json.loads(REPORT.read_text())
    assert set(rep["models"]) == set(registry.shipped())
    for model, m in rep["models"].items():
        c = set() if registry.get(model).config.takes_images else {"c"}  # the MLPs' C export, cross-compiled
        assert set(m["runtimes"]) == {"onnxruntime", "ort-mobile", "litert", *c}, model
        assert all(r["ok"] and r["max_abs_err"] <= r["tolerance_abs"] for r in m["runtimes"].values()), model
        if registry.get(model).config.takes_images:
            assert m["rows"] == arm.IMAGE_ROWS
        else:  # measured on the shipped weights: its reference is the figure the model's card gives
            m_ = registry.get(model).metrics
            assert abs(m["reference"] - m_.value("test", m["metric"])) <= 1e-6 * max(
                1, abs(m["reference"])
            ), model
    assert rep["cpu"] == arm.CPU and rep["c_example"]["ok"]
    cc = rep["c_compiler"]
    assert cc.startswith(arm.CROSS_CC) and cc.endswith(" ".join(arm.CROSS_FLAGS))
    assert arm.CROSS_FLAGS == ("-std=c99", "-O3")  # the c runtime's flags, less those of a shared library
    section = aarch64_section(REPORT)
    assert any("| `checkerboard-hannet-20x30` | litert |" in line for line in section)
    assert any("| `checkerboard-hannet-20x30` | c |" in line for line in section)


@pytest.fixture
def empty_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("HANZOO_CACHE", str(tmp_path))
    return tmp_path


def test_a_missing_tool_is_named_with_how_to_get_it(empty_cache, monkeypatch):
    monkeypatch.setattr(arm.shutil, "which", lambda t: None if t == "mmdebstrap" else f"/usr/bin/{t}")
    with pytest.raises(HanzooError, match="needs mmdebstrap: apt-get install mmdebstrap"):
        arm.environment(progress=False)
    assert not list(empty_cache.iterdir())


def test_a_failed_download_leaves_no_half_built_environment(empty_cache, monkeypatch):
    monkeypatch.setattr(arm.shutil, "which", lambda tool: "/usr/bin/" + tool)

    def offline(*args, **kwargs):
        raise OSError("network is unreachable")

    monkeypatch.setattr(arm.urllib.request, "urlopen", offline)
    with pytest.raises(HanzooError, match="cannot download .*qemu-user.*Debian's package mirror"):
        arm.environment(progress=False)
    assert not [p for p in empty_cache.rglob("*") if p.is_file()]


def test_a_damaged_cached_environment_is_rebuilt(empty_cache, monkeypatch):
    damaged = empty_cache / f"aarch64-{arm.KEY}"
    (damaged / "rootfs").mkdir(parents=True)  # an environment whose build never finished: no ready.json
    monkeypatch.setattr(arm.shutil, "which", lambda tool: "/usr/bin/" + tool)
    tried = []

    def qemu(dest):
        tried.append(dest)
        raise HanzooError("stop here")

    monkeypatch.setattr(arm, "_qemu", qemu)
    with pytest.raises(HanzooError, match="stop here"):
        arm.environment(progress=False)
    assert tried and tried[0] != damaged  # rebuilt in a staged folder, never trusted as it was


def _model(rows: int) -> arm.ArmModel:
    return arm.ArmModel(rows, "accuracy", 99.0, {"litert": arm.ArmParity(1e-6, 1e-4, 99.0, 0, True)})


def test_a_partial_run_updates_its_models_only(tmp_path):
    env = {"cpu": arm.CPU, "emulator": "qemu", "wheels": ["a"]}
    path = tmp_path / "aarch64.json"
    c = arm.ArmCExample("m", "cc", 0.0, 1e-4, True)
    arm.write_report(arm.ArmReport(**env, models={"a": _model(1), "b": _model(2)}, c_example=c), path)
    arm.write_report(arm.ArmReport(**env, models={"b": _model(3)}), path)
    want = arm.ArmReport(**env, models={"a": _model(1), "b": _model(3)}, c_example=c)
    assert json.loads(path.read_text()) == want.to_json() and arm.ArmReport.read(path) == want
    arm.write_report(arm.ArmReport(**{**env, "wheels": ["other"]}, models={"c": _model(4)}), path)  # replaced
    assert list(json.loads(path.read_text())["models"]) == ["c"]


def test_a_report_off_its_shape_is_one_line_naming_the_file_and_field(tmp_path):
    path = tmp_path / "aarch64.json"
    good = json.loads(REPORT.read_text())
    assert arm.ArmReport.read(REPORT).to_json() == good  # read and written again: the same
    model = next(iter(good["models"]))
    bad = json.loads(REPORT.read_text())
    bad["models"][model]["runtimes"]["litert"]["ok"] = "yes"
    path.write_text(json.dumps(bad))
    with pytest.raises(
        HanzooError,
        match=rf"aarch64.json: models.{model}.runtimes.litert.ok must be true or false, got a string",
    ):
        arm.ArmReport.read(path)
    del bad["models"][model]["rows"]
    path.write_text(json.dumps(bad))
    with pytest.raises(HanzooError, match=rf"models.{model}.rows is missing"):
        arm.ArmReport.read(path)
    path.write_text("{")
    with pytest.raises(HanzooError, match="is not valid JSON"):
        arm.ArmReport.read(path)


ENV = arm.cache_dir() / f"aarch64-{arm.KEY}"


@pytest.mark.skipif(
    not (ENV / "ready.json").is_file() or arm.shutil.which(arm.CROSS_CC) is None,
    reason=f"needs the cached arm64 environment (`make verify-arm` builds it) and {arm.CROSS_CC}",
)
def test_the_c_export_cross_compiled_for_aarch64_gives_the_x86_bits(tmp_path):
    """A few rows through run_c, the path `make verify-arm` takes for every MLP: ISO C (no FMA contraction)
    makes the emulated arm64 build give the x86-64 c runtime's bits."""
    from hanzoo.runtimes import native
    from hanzoo.runtimes.sessions import RUNTIMES
    from hanzoo.zoo.tasks import get_task

    model_id = "checkerboard-hannet-20x30"
    entry = registry.get(model_id)
    x = get_task(entry.task).test_data()[0][:37].astype("float32")  # two blocks of 16 and 5 rows alone
    y = arm.run_c(ENV, model_id, registry.EXPORT_DIR / model_id, x, tmp_path)
    assert y.shape == (37, 2)
    if native.missing() is None:
        x86 = RUNTIMES["c"].load(entry.dir, registry.EXPORT_DIR / model_id, 1)(x)["output"]
        assert (y.view("uint32") == x86.view("uint32")).all()
