"""The one table of export formats (hanzoo/zoo/formats.py): every list of formats, files or their runtimes is
read from it."""

import subprocess
import sys

from hanzoo.runtimes.sessions import RUNTIMES
from hanzoo.zoo.formats import FORMATS


def test_each_format_has_its_builder_and_its_runtime():
    from hanzoo.publishing.export import BUILDERS
    from hanzoo.runtimes.sessions import SESSIONS

    assert list(BUILDERS) == list(FORMATS) == list(SESSIONS)
    for f in FORMATS.values():
        rt = RUNTIMES[f.runtime]
        assert (rt.artifact, rt.extra, rt.precision) == (f.file, f.extra, "fp32"), f.name
        for p in f.variants:
            assert RUNTIMES[f"{f.runtime}-{p}"].artifact == f.variant_file(p)



def test_a_second_runtime_of_a_file_comes_from_the_table():
    """Format.more_runtimes: each has its session, runs the format's fp32 file, covers what the table says,
    and is one of the format's file_runtimes; tflite-micro reads model.tflite, for the MLPs alone."""
    from hanzoo.runtimes.sessions import MORE_RUNTIMES, MORE_SESSIONS, file_runtimes

    listed = [(f.name, m) for f in FORMATS.values() for m in f.more_runtimes]
    assert [m.name for _, m in listed] == list(MORE_RUNTIMES) == list(MORE_SESSIONS)
    for fmt, m in listed:
        rt = RUNTIMES[m.name]
        assert (rt.artifact, rt.extra, rt.precision) == (FORMATS[fmt].file, m.extra, "fp32"), m.name
        assert rt.covers(True) == m.covers(True) and rt.covers(False)
        assert m.name in [r.name for r in file_runtimes(fmt)]
    assert ("tflite", "tflite-micro") in [(f, m.name) for f, m in listed]
    assert not RUNTIMES["tflite-micro"].covers(takes_images=True) and RUNTIMES["litert"].covers(True)
    assert RUNTIMES["tflite-micro"].package == "tflite_micro"


def test_a_format_added_to_the_table_reaches_every_list():
    """A format added to the table shows in every list read from it, once the modules that read it load
    again (in a process of its own, in the order they import each other)."""
    code = """
import importlib
from hanzoo.runtimes import arm, sessions as runtimes
from hanzoo.reports import bench, docs
from hanzoo.publishing import export, hub
from hanzoo.zoo import formats, pins, registry
formats.FORMATS["fake"] = formats.Format("fake", "model.fake", "fake-runtime", "fake", variants=("int8",))
for module in (registry, pins, runtimes, hub, export, arm, docs, bench):
    importlib.reload(module)
assert registry.ARTIFACTS["fake"] == "model.fake"
assert registry.VARIANT_FILES[("fake", "int8")] == "model.int8.fake"
assert "fake" in registry.VARIANT_FORMATS and pins.EXPORT_FILES["fake/model.fake"] == "model.fake"
assert pins.EXPORT_FILES["fake/model.int8.fake"] == "model.int8.fake"
assert hub.FORMATS["fake"] == ["fake/model.fake"] and export.parse_formats("fake") == ["fake"]
assert runtimes.FORMAT_RUNTIMES["fake"] == "fake-runtime"
assert runtimes.runtime_for("fake", "int8") == "fake-runtime-int8"
assert bench.CPU_RUNTIMES[-1] == "fake-runtime" and docs.APP_RUNTIMES[-1] == "fake-runtime"
assert arm.ARTIFACT_RUNTIMES["model.fake"] == "fake-runtime"
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]


def test_a_format_is_one_table_entry_plus_its_builder_and_its_session(tmp_path):
    """The whole path for a new format: a table entry, a builder and a session, and `hanzoo export` writes it,
    checks its parity into the manifest, and `verify` runs it. The fake format is ONNX under another name,
    so it has a real file and a real runtime."""
    code = f"""
import importlib, json, tempfile
from pathlib import Path
from hanzoo.zoo import formats, pins, registry
from hanzoo.runtimes import sessions, verify as verify_module
from hanzoo.publishing import export, hub
formats.FORMATS["fake"] = formats.Format("fake", "model.fake", "fake-runtime", "onnx")
for module in (registry, pins, sessions, verify_module, hub, export):
    importlib.reload(module)
# its session: ONNX Runtime on the file
sessions.SESSIONS["fake"] = ("ONNX Runtime on model.fake", "onnxruntime",
                             lambda m, path, t: sessions.ort_session(path, t, False))
sessions.RUNTIMES.update({{r.name: r for r in sessions.file_runtimes("fake")}})
# its builder: the ONNX graph, written under the format's own name
def write_fake(net, dest, metadata):
    with tempfile.TemporaryDirectory() as tmp:
        export.BUILDERS["onnx"].write(net, Path(tmp), metadata)
        (Path(tmp) / "model.onnx").rename(dest / "model.fake")
export.BUILDERS["fake"] = export.Builder(export.BUILDERS["onnx"].library, write_fake)
folder = export.export("checkerboard-hannet-20x30", ["fake"], Path({str(tmp_path / "exp")!r}))
manifest = json.loads((folder / "manifest.json").read_text())
assert "model.fake" in manifest["files"], manifest["files"]
assert manifest["parity"]["runtimes"]["fake-runtime"]["ok"], manifest["parity"]
report = verify_module.verify("checkerboard-hannet-20x30", ["fake-runtime"], export_dir=folder)
assert report["runtimes"]["fake-runtime"]["ok"] and not verify_module.failures(report)
print("ok")
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=600)
    assert out.returncode == 0 and out.stdout.strip().endswith("ok"), out.stderr[-3000:]


def test_the_c_export_is_two_files_for_the_mlps_and_stays_out_of_the_wheel():
    c = FORMATS["c"]
    assert c.files == ("model.c", "model.h") and RUNTIMES[c.runtime].artifact == "model.c"
    assert c.covers(takes_images=False) and not c.covers(takes_images=True)
    assert not c.wheel and c.aarch64 and c.byte_identical  # cross-compiled on aarch64
    others = [f for f in FORMATS.values() if f.name != "c"]
    assert all(f.covers(True) and f.wheel and f.files == (f.file,) for f in others)


def test_a_format_of_several_files_is_pinned_and_fetched_file_by_file():
    code = """
import importlib
from hanzoo.zoo import formats, pins, registry
from hanzoo.publishing import hub
formats.FORMATS["fake"] = formats.Format("fake", "model.fake", "fake-rt", "fake", companions=("model.fh",))
for module in (registry, pins, hub):
    importlib.reload(module)
assert registry.ARTIFACTS["fake"] == "model.fake"
assert pins.EXPORT_FILES["fake/model.fake"] == "model.fake"
assert pins.EXPORT_FILES["fake/model.fh"] == "model.fh"
assert hub.FORMATS["fake"] == ["fake/model.fake", "fake/model.fh"]
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
