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
