"""`hanzoo verify --arch cortex-m`: the shipped figures in docs/mcu.json, a quick build and run of one model
on each emulated core, examples/mcu, and the faults (the whole run is `make verify-mcu`)."""

import json
import subprocess
from pathlib import Path

import numpy as np
import pytest

from hanzoo import HanzooError
from hanzoo.reports import microcontroller
from hanzoo.runtimes import mcu, native
from hanzoo.runtimes.sessions import RUNTIMES
from hanzoo.zoo import registry
from hanzoo.zoo.tasks import get_task

ROOT = Path(__file__).resolve().parents[2]
REPORT = ROOT / "docs" / "mcu.json"
EXAMPLE = ROOT / "examples" / "mcu"
MODEL = "checkerboard-hannet-20x30"
MLPS = [m for m in registry.shipped() if not registry.get(m).config.takes_images]
TOOLS = mcu.missing()
needs_tools = pytest.mark.skipif(TOOLS is not None, reason=f"{TOOLS}")


def test_the_report_covers_every_shipped_mlp_on_both_cores_and_passes():
    rep = mcu.McuReport.read(REPORT)
    assert list(rep.models) == MLPS
    assert rep.flags == [*mcu.FLAGS, "-D<NAME>_BLOCK_ROWS=1"] and rep.counter == mcu.COUNTER
    assert {k: (t.machine, tuple(t.cflags)) for k, t in rep.targets.items()} == {
        k: (t.machine, t.cflags) for k, t in mcu.TARGETS.items()
    }
    for model_id, m in rep.models.items():
        entry = registry.get(model_id)
        assert m.test_rows == len(get_task(entry.task).test_data()[0])
        # measured on the shipped weights: the reference is the figure the model's card gives
        want = entry.metrics.value("test", m.metric)
        assert abs(m.reference - want) <= 1e-6 * max(1, abs(want)), model_id
        assert set(m.targets) == set(mcu.TARGETS), model_id
        for core, b in m.targets.items():
            p = b.parity
            assert p.ok and p.max_abs_err <= p.tolerance_abs, (model_id, core)
            assert p.rows == (mcu.TARGETS[core].rows or m.test_rows), (model_id, core)
            assert b.flash_bytes == b.text_bytes + b.rodata_bytes and b.data_bytes == b.bss_bytes == 0
            assert b.ram_bytes == max(b.stack_bytes, b.stack_measured_bytes), (model_id, core)
            assert b.instructions_per_row > 0
        m4 = m.targets["cortex-m4f"]
        assert m4.parity.reference == m.reference and m4.parity.decisions_differ == 0, model_id
        # with an FPU, model.c calls no soft-float routine, and at most memcpy (a leaf, on a shallower path
        # than the layers'), so the static figure is the whole stack, as measured
        assert set(m4.calls_outside) <= {"memcpy"} and m4.stack_bytes == m4.stack_measured_bytes, model_id
        assert m.targets["cortex-m0plus"].instructions_per_row > m4.instructions_per_row


def test_the_goal_model_fits_its_flash_and_ram():
    b = mcu.McuReport.read(REPORT).models[MODEL].targets["cortex-m4f"]
    assert b.flash_bytes <= 16 * 1024 and b.ram_bytes <= 2 * 1024
    rows = microcontroller.goal_rows(mcu.McuReport.read(REPORT))
    assert all(met for *_, met in rows), rows


def test_readme_and_the_page_give_the_reports_figures():
    """README's block and docs/mcu.md are generated from docs/mcu.json (tests/interface checks they are
    current); here, that the figures they print are the report's."""
    rep = mcu.McuReport.read(REPORT)
    b = rep.models[MODEL].targets["cortex-m4f"]
    readme = (ROOT / "README.md").read_text()
    block = readme.split("<!-- mcu:start", 1)[1].split("<!-- mcu:end -->", 1)[0]
    for figure in (b.flash_bytes, b.ram_bytes, b.instructions_per_row):
        assert f"**{figure:,} " in block, figure
    assert all(command in block for command in microcontroller.COMMANDS)
    page = (ROOT / "docs" / "mcu.md").read_text()
    for model_id, m in rep.models.items():
        for b in m.targets.values():
            assert f"| {b.flash_bytes:,} ({b.text_bytes:,} + {b.rodata_bytes:,}) | {b.ram_bytes:,} | " in page
            assert f" | {b.instructions_per_row:,} | " in page, model_id


def test_the_example_uses_the_checks_start_up_file_and_linker_script():
    for name in ("startup.c", "mps2.ld"):
        assert (EXAMPLE / name).read_bytes() == (mcu.BAREMETAL / name).read_bytes(), name


def _same_tools(rep: mcu.McuReport) -> bool:
    return rep.versions == mcu.versions()


@needs_tools
@pytest.mark.parametrize("core", list(mcu.TARGETS))
def test_one_model_builds_and_runs_a_few_rows_on_each_core(core, tmp_path):
    """HanNet-20x30 built for the core, run on 20 test rows in qemu: torch's outputs within verify's
    tolerance, the x86-64 c runtime's bits, and (with the report's tools) the report's figures exactly."""
    entry = registry.get(MODEL)
    x = np.ascontiguousarray(get_task(entry.task).test_data()[0][:20], dtype=np.float32)
    built = mcu.build(MODEL, core, tmp_path, len(x))
    ran = mcu.run(built.elf, core, x, entry.config.out_features, tmp_path)
    ref = RUNTIMES["torch"].load(entry.dir, registry.EXPORT_DIR / MODEL, 1)(x)["output"]
    assert np.abs(ran.y - ref).max() <= 1e-4
    if native.missing() is None:
        x86 = RUNTIMES["c"].load(entry.dir, registry.EXPORT_DIR / MODEL, 1)(x)["output"]
        assert np.array_equal(ran.y.view(np.uint32), x86.view(np.uint32))
    rep = mcu.McuReport.read(REPORT)
    b = rep.models[MODEL].targets[core]
    assert built.sections["text"] + built.sections["rodata"] <= 16 * 1024
    if _same_tools(rep):  # the same compiler and emulator: the same bytes and the same count
        assert built.sections["text"] == b.text_bytes and built.sections["rodata"] == b.rodata_bytes
        assert (built.stack_bytes, ran.stack_measured_bytes) == (b.stack_bytes, b.stack_measured_bytes)
        assert ran.instructions_per_row == b.instructions_per_row


@needs_tools
def test_the_example_classifies_its_points_as_torch_does(tmp_path):
    build = tmp_path / "build"
    out = subprocess.run(
        ["make", "-C", str(EXAMPLE), f"BUILD={build}", "run"], capture_output=True, text=True, timeout=300
    )
    assert out.returncode == 0, out.stderr[-2000:]
    lines = [line for line in out.stdout.splitlines() if " -> class " in line]
    points = np.array([line.split(" -> ")[0].split() for line in lines], dtype=np.float32)
    assert len(points) == 5 and "5 points classified" in out.stdout
    entry = registry.get(MODEL)
    ref = RUNTIMES["torch"].load(entry.dir, registry.EXPORT_DIR / MODEL, 1)(points)
    got = [int(line.split(" -> class ")[1][0]) for line in lines]
    assert got == ref["decision"].astype(int).ravel().tolist()


@needs_tools
def test_without_the_shipped_c_sources_it_builds_them_from_the_weights(tmp_path, monkeypatch):
    """An installed wheel leaves model.c out: the build writes the same bytes from the bundled weights."""
    shipped = registry.EXPORT_DIR / MODEL
    monkeypatch.setattr(registry, "EXPORT_DIR", tmp_path / "no-exports")
    built = mcu.build(MODEL, "cortex-m0plus", tmp_path / "work", 1)
    for name in ("model.c", "model.h"):
        assert (tmp_path / "work" / "c" / name).read_bytes() == (shipped / name).read_bytes()
    assert built.elf.is_file() and built.sections["rodata"] == 3542 * 4  # the plan's floats


def test_a_missing_tool_is_one_line_naming_its_package(monkeypatch):
    monkeypatch.setattr(mcu.shutil, "which", lambda t: None if t == mcu.QEMU else f"/usr/bin/{t}")
    assert mcu.missing() == "the Cortex-M check needs qemu-system-arm: apt-get install qemu-system-arm"
    with pytest.raises(HanzooError, match=r"^the Cortex-M check needs qemu-system-arm: apt-get install"):
        mcu.verify_mcu([MODEL], progress=False)
    monkeypatch.setattr(mcu.shutil, "which", lambda t: None)
    assert mcu.missing().endswith("apt-get install gcc-arm-none-eabi")


def test_the_cli_refuses_an_image_model_in_one_line(capsys):
    from hanzoo.cli import main

    assert main(["verify", "cifar10-hannet", "--arch", "cortex-m"]) == 1
    err = capsys.readouterr().err
    assert "--arch cortex-m takes shipped MLP ids" in err and err.count("\n") == 1


CI = """graph: { title: "model.c"
node: { title: "model.c:leaf" label: "leaf\\nmodel.c:3:13\\n24 bytes (static)" }
node: { title: "__aeabi_fmul" label: "__aeabi_fmul\\n<built-in>" shape : ellipse }
edge: { sourcename: "model.c:leaf" targetname: "__aeabi_fmul" }
node: { title: "m_run" label: "m_run\\nmodel.c:9:5\\n296 bytes (static)" }
edge: { sourcename: "m_run" targetname: "model.c:leaf" label: "model.c:10:5" }
edge: { sourcename: "m_run" targetname: "__aeabi_fmul" label: "model.c:11:5" }
}
"""


def test_the_static_stack_is_the_deepest_path_of_the_call_graph():
    assert mcu.stack_peak(CI, "m_run") == (296 + 24, ["__aeabi_fmul"])
    with pytest.raises(HanzooError, match="has a dynamic frame"):
        mcu.stack_peak(CI.replace("24 bytes (static)", "24 bytes (dynamic)"), "m_run")
    recursive = CI.replace('targetname: "__aeabi_fmul" }', 'targetname: "m_run" }', 1)
    with pytest.raises(HanzooError, match="recursive"):
        mcu.stack_peak(recursive, "m_run")


def test_a_partial_run_updates_its_models_only_and_a_bad_report_is_named(tmp_path):
    rep = mcu.McuReport.read(REPORT)
    path = tmp_path / "mcu.json"
    first = {k: rep.models[k] for k in MLPS[:2]}
    mcu.write_report(mcu.McuReport(rep.flags, rep.counter, rep.targets, first, rep.versions), path)
    mcu.write_report(mcu.McuReport(rep.flags, rep.counter, rep.targets, {MLPS[1]: rep.models[MLPS[0]]}), path)
    got = mcu.McuReport.read(path)
    assert list(got.models) == MLPS[:2] and got.models[MLPS[1]] == rep.models[MLPS[0]]
    assert mcu.McuReport.read(REPORT).to_json() == json.loads(REPORT.read_text())  # read, written: the same
    bad = json.loads(REPORT.read_text())
    bad["models"][MODEL]["targets"]["cortex-m4f"]["flash_bytes"] = "15 KB"
    path.write_text(json.dumps(bad))
    with pytest.raises(HanzooError, match=rf"models.{MODEL}.targets.cortex-m4f.flash_bytes must be a whole"):
        mcu.McuReport.read(path)


def test_the_wheel_carries_the_bare_metal_files():
    text = (ROOT / "pyproject.toml").read_text()
    assert '"hanzoo.runtimes" = ["baremetal/*"]' in text
    assert sorted(p.name for p in mcu.BAREMETAL.iterdir()) == ["harness.c", "mps2.ld", "startup.c"]
