"""`hanzoo export`: a model folder -> export/<id>/ with model.onnx, model.ort, model.tflite, model.pte,
model.c and model.h (the MLPs' C export), test_data_set_0/ (ONNX Model Zoo convention) and manifest.json.
Written atomically. An MLP's model.tflite is also checked in TensorFlow Lite for Microcontrollers where
tflite-micro is installed, and the manifest records the smallest tensor arena it runs in ("tflm").

`hanzoo export ID --format c` (any formats short of all) into a folder that holds an export of the same
weights adds those formats' files there, checks their parity, and keeps every other file as it is.

`hanzoo export ID --precision fp16|int8` adds reduced-precision variants beside them
(hanzoo.graphs.precision), and a later fp32 export rebuilds the variants its folder held, so they never
lag the weights."""

from __future__ import annotations

import importlib
import json
import re
import tempfile
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .. import provenance
from ..errors import HanzooError
from ..files import file_sha256, staged_folder, written_atomically
from ..graphs.export_c import build_c
from ..graphs.export_pte import build_pte, executorch, pte_ops
from ..graphs.export_tflite import build_tflite, op_types, tensor_dtypes, tensorflow
from ..graphs.precision import calibration_data, check_precision, onnx_fp16, onnx_int8, tflite_options
from ..runtimes import micro
from ..runtimes.sessions import MORE_RUNTIMES, RUNTIMES, runtime_for
from ..runtimes.verify import check_source, source_hashes, verify_folder
from ..storage import store
from ..version import __version__
from ..zoo import registry
from ..zoo.formats import FORMATS as FORMAT_TABLE
from ..zoo.tasks import get_task
from . import hub

FORMATS = registry.ARTIFACTS
TEST_ROWS = (
    256  # rows of the test split kept as test_data_set_0: enough to catch a wrong graph, small to ship
)
TEST_IMAGES = 32  # for image models (3 KB a row): the same purpose at 100 KB


def parse_formats(text: str | list[str]) -> list[str]:
    names = [f.strip() for f in (text.split(",") if isinstance(text, str) else text) if f.strip()]
    bad = [f for f in names if f not in FORMATS]
    if bad or not names:
        raise HanzooError(
            f"unknown format {', '.join(bad) or '(none)'}; expected some of {', '.join(FORMATS)}"
        )
    if "ort" in names and "onnx" not in names:
        names.append("onnx")  # the ORT file is converted from the ONNX graph
    return [f for f in FORMATS if f in names]


def covered_formats(net, formats: list[str] | None) -> list[str]:
    """The formats to write for a loaded model: those asked for (all by default, less those that do not
    cover its kind); one asked for by name that does not cover it is one line naming what it covers."""
    images = net.config.takes_images
    if formats is None:
        return [f for f in FORMATS if FORMAT_TABLE[f].covers(images)]
    formats = parse_formats(formats)
    left = [f for f in formats if not FORMAT_TABLE[f].covers(images)]
    if left:
        can = ", ".join(f for f in FORMATS if FORMAT_TABLE[f].covers(images))
        raise HanzooError(
            f"the {', '.join(left)} export covers the MLP models only; {net.meta['model_id']} is an image "
            f"model (a conv backbone): export it as {can}"
        )
    return formats


def unchecked_formats() -> dict[str, str]:
    """The formats whose parity check cannot run here, and why (the C export's, with no compiler)."""
    out = {}
    for name, f in FORMAT_TABLE.items():
        runtime = RUNTIMES[f.runtime]
        why = runtime.needs() if runtime.needs else None
        if why:
            out[name] = why
    return out


def unchecked_runtimes() -> dict[str, str]:
    """The other runtimes of a format's file (tflite-micro) that are not installed here, and why: an export
    writes the file and checks it in its own runtime, and leaves these out of its manifest."""
    return {r: why for r in MORE_RUNTIMES if (why := RUNTIMES[r].missing())}


def parity_runtimes(net, artifacts: set[str]) -> list[str]:
    """The runtimes an export checks its files in: every runtime of those files that covers the model (the
    MLP-only ones leave out an image model), less those `unchecked_runtimes` names."""
    skip = unchecked_runtimes()
    return [
        r
        for r, rt in RUNTIMES.items()
        if rt.artifact in artifacts and rt.covers(net.config.takes_images) and r not in skip
    ]


def tflm_record(net, folder: Path) -> dict:
    """What TFLite Micro needs to run the model.tflite in `folder`: the smallest tensor arena, in bytes, to
    the allocator's granularity (hanzoo.runtimes.micro), for the tflite-micro release that measured it."""
    outputs = 1 + bool(get_task(net.meta["task"]).decision_output)
    return {
        "arena_bytes": micro.arena_bytes(folder / FORMATS["tflite"], outputs),
        "granularity": micro.GRANULE,
        "version": micro.version(),
    }


def onnx_package():
    """The onnx package, for writing and reading graphs."""
    try:
        import onnx  # noqa: PLC0415 - an optional extra, loaded on use so the core install runs without it
    except ImportError:
        raise HanzooError("ONNX export needs onnx: pip install 'hanzoo[onnx]'") from None
    return onnx


def onnx_graphs():
    """hanzoo.graphs.export_onnx, which imports onnx at its top: loaded with it, on use."""
    onnx_package()
    from ..graphs import export_onnx  # noqa: PLC0415 - needs onnx, an optional extra

    return export_onnx


def onnx_to_ort(onnx_path: Path, ort_path: Path) -> None:
    """ONNX Runtime's own conversion (what tools.convert_onnx_models_to_ort does), with basic
    optimisations only, so the file runs on any mobile build."""
    import onnxruntime as ort  # noqa: PLC0415 - optional runtime, loaded on use

    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
    so.optimized_model_filepath = str(ort_path)
    so.add_session_config_entry("session.save_model_format", "ORT")
    so.log_severity_level = 3
    ort.InferenceSession(str(onnx_path), so, providers=["CPUExecutionProvider"])


def _tensor_pb(array: np.ndarray, name: str) -> bytes:
    return onnx_package().numpy_helper.from_array(array, name).SerializeToString()


def export(
    source: str | Path, formats: list[str] | None = None, out: Path | None = None, parity: bool = True
) -> Path:
    """Export a shipped model (id) or a model folder; returns the export folder. With `parity`, every
    artifact is checked on the whole test split and the figures go in the manifest (`hanzoo export`
    always does; the re-export test, which compares bytes, skips it). Some formats, into a folder that
    holds an export of the same weights, are added to it (`add_formats`)."""
    model_dir = store.resolve(source)
    net = store.load_model(model_dir)
    # by default, the formats whose parity can be checked here: with no C compiler, no C export
    every = [f for f in covered_formats(net, None) if not (parity and f in unchecked_formats())]
    formats = every if formats is None else covered_formats(net, formats)
    model_id, task_name = net.meta["model_id"], net.meta["task"]
    dest = Path(out) if out else registry.EXPORT_DIR / model_id
    if set(formats) != set(every) and _same_weights(model_dir, dest):
        return add_formats(net, model_dir, dest, formats, parity)
    # the variants the folder holds are rebuilt from these weights, and for the bundled weights also those
    # their bundled export ships (so an export elsewhere reproduces it whole)
    bundled = (
        model_id in registry.MODELS and Path(model_dir).resolve() == registry.get(model_id).dir.resolve()
    )
    held = (dest, registry.EXPORT_DIR / model_id) if bundled else (dest,)
    variants = [
        v
        for v, f in registry.VARIANT_FILES.items()
        if v[0] in formats and any((d / f).is_file() for d in held)
    ]
    _load_libraries(formats, parity)
    with staged_folder(dest, marker="manifest.json") as tmp:
        write_graphs(net, tmp, formats, {"input_names": ",".join(get_task(task_name).features)})
        for fmt, precision in variants:
            write_variant(net, fmt, precision, tmp)
        x_test, _ = get_task(task_name).test_data()
        reference = RUNTIMES["torch"].load(model_dir, tmp, 1)
        x = x_test[: TEST_IMAGES if net.config.takes_images else TEST_ROWS]
        ref = reference(x)
        data = tmp / "test_data_set_0"
        data.mkdir()
        (data / "input_0.pb").write_bytes(_tensor_pb(x, "input"))
        for i, (name, arr) in enumerate(ref.items()):
            (data / f"output_{i}.pb").write_bytes(_tensor_pb(arr, name))
        manifest = _manifest(net, tmp, formats, None) | {"source": source_hashes(model_dir)}
        (tmp / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
        if parity:
            artifacts = {FORMATS[f] for f in formats} | {registry.VARIANT_FILES[v] for v in variants}
            runtimes = parity_runtimes(net, artifacts)
            manifest["parity"] = verify_folder(model_dir, tmp, runtimes)
            if "tflite-micro" in runtimes:
                manifest["tflm"] = tflm_record(net, tmp)
            (tmp / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    # `hanzoo export ID` rewrote export/<id>: its pins in hub_manifest.json must follow
    hub.repin_if_bundled(dest)
    return dest


def _same_weights(model_dir: Path, dest: Path) -> bool:
    """Whether `dest` holds an export made from these weights (and this config)."""
    try:
        check_source(model_dir, dest)
    except HanzooError:
        return False
    return True


def add_formats(net, model_dir: Path, dest: Path, formats: list[str], parity: bool = True) -> Path:
    """Write `formats` into an export folder of the same weights and check their parity; every other file,
    test_data_set_0 and the other runtimes' parity stay as they are. The files are made and checked in a
    temporary folder beside it and moved in only then, so a failed write or parity check leaves the folder
    as it was."""
    _load_libraries(formats, parity)
    with tempfile.TemporaryDirectory(dir=dest.parent, prefix=f".{dest.name}.add-") as work:
        tmp = Path(work)
        write_graphs(net, tmp, formats, {"input_names": ",".join(get_task(net.meta["task"]).features)})
        names = {FORMATS[f] for f in formats}
        tflm: dict | None = None
        if parity:
            runtimes = parity_runtimes(net, names)
            checked = verify_folder(model_dir, tmp, runtimes)
            tflm = tflm_record(net, tmp) if "tflite-micro" in runtimes else None
        for p in sorted(tmp.iterdir()):
            p.replace(dest / p.name)
    manifest = json.loads((dest / "manifest.json").read_text())
    new = _manifest(net, dest, formats, None)
    keys = [f for f in FORMATS if f in manifest["ops"] or f in new["ops"]]
    keys += [k for k in manifest["ops"] if k not in keys]  # the variants, after the formats
    manifest["files"] = new["files"]
    manifest["ops"] = {k: new["ops"].get(k, manifest["ops"].get(k)) for k in keys}
    if "tflite" in formats and "outputs" in manifest:  # the TFLite file's own dtypes, where they differ
        for side in ("inputs", "outputs"):
            manifest[side] = tflite_io(manifest[side], dest / FORMATS["tflite"])
    if parity and manifest.get("parity"):
        runs = manifest["parity"]["runtimes"]
        for r in [r for r, rt in RUNTIMES.items() if rt.artifact in names and r not in checked["runtimes"]]:
            runs.pop(r, None)  # a rewritten file's figures from a runtime not run now would be stale
        runs |= checked["runtimes"]
    elif parity:
        manifest["parity"] = checked
    if "tflite" in formats:
        manifest.pop("tflm", None)
        if parity and tflm:
            manifest["tflm"] = tflm
    with written_atomically(dest / "manifest.json") as tmp_manifest:
        tmp_manifest.write_text(json.dumps(manifest, indent=2) + "\n")
    hub.repin_if_bundled(dest)
    return dest


def export_variants(
    source: str | Path, precision: str, formats: list[str] | None = None, out: Path | None = None
) -> Path:
    """Add a precision's variants (ONNX and TFLite by default) to a model's export folder, made from
    the same weights; they are checked on the whole test split and recorded in its manifest."""
    check_precision(precision)
    formats = [f for f in (formats or registry.VARIANT_FORMATS) if f != "ort"]
    bad = [f for f in formats if f not in registry.VARIANT_FORMATS]
    if bad or not formats:
        raise HanzooError(
            f"format {', '.join(bad) or '(none)'} has no {precision} variant; "
            f"expected some of {', '.join(registry.VARIANT_FORMATS)}"
        )
    model_dir = store.resolve(source)
    net = store.load_model(model_dir)
    dest = Path(out) if out else registry.EXPORT_DIR / net.meta["model_id"]
    check_source(model_dir, dest, source)
    _load_libraries(formats, parity=True)
    names = {registry.VARIANT_FILES[(f, precision)] for f in formats}
    # made and checked in a temporary folder beside it, then moved in: a file its runtime cannot run, or an
    # interruption, leaves the folder as it was (a variant it held included), and a variant made again is
    # not checked against the pin of the one it replaces
    with tempfile.TemporaryDirectory(dir=dest.parent, prefix=f".{dest.name}.{precision}-") as work:
        tmp = Path(work)
        for fmt in formats:
            write_variant(net, fmt, precision, tmp)
        runtimes = [r for r, rt in RUNTIMES.items() if rt.artifact in names]
        parity = verify_folder(model_dir, tmp, runtimes)
        for name in sorted(names):
            (tmp / name).replace(dest / name)
    manifest = json.loads((dest / "manifest.json").read_text())
    new = _manifest(net, dest, [f for f in FORMATS if (dest / FORMATS[f]).is_file()], None)
    manifest["files"], manifest["ops"] = new["files"], new["ops"]
    if manifest.get("parity"):
        manifest["parity"]["runtimes"] |= parity["runtimes"]
    else:
        manifest["parity"] = parity
    with written_atomically(dest / "manifest.json") as tmp:
        tmp.write_text(json.dumps(manifest, indent=2) + "\n")
    hub.repin_if_bundled(dest)
    return dest


def remove_variants(folder: Path, variants: list[tuple[str, str]]) -> None:
    """Take (format, precision) variants out of an export folder and its manifest (and its pins)."""
    folder = Path(folder)
    manifest = json.loads((folder / "manifest.json").read_text())
    for fmt, precision in variants:
        name = registry.VARIANT_FILES[(fmt, precision)]
        (folder / name).unlink(missing_ok=True)
        manifest["files"].pop(name, None)
        manifest["ops"].pop(f"{fmt}-{precision}", None)
        (manifest.get("parity") or {}).get("runtimes", {}).pop(runtime_for(fmt, precision), None)
    with written_atomically(folder / "manifest.json") as tmp:
        tmp.write_text(json.dumps(manifest, indent=2) + "\n")
    hub.repin_if_bundled(folder)


def write_variant(net, fmt: str, precision: str, dest: Path) -> Path:
    """One reduced-precision file of a loaded model into the folder `dest` (hanzoo.graphs.precision)."""
    model_id, task_name = net.meta["model_id"], net.meta["task"]
    meta = {"input_names": ",".join(get_task(task_name).features), "precision": precision}
    path = Path(dest) / registry.VARIANT_FILES[(fmt, precision)]
    calibration = calibration_data(task_name) if precision == "int8" else None
    with written_atomically(path) as tmp:
        if fmt == "tflite":
            configure = tflite_options(precision, calibration)
            tmp.write_bytes(build_tflite(net, model_id, task_name, meta, configure))
        elif precision == "fp16":
            graph = onnx_graphs().build_onnx(net, model_id, task_name, meta)
            onnx_package().save(onnx_fp16(graph), str(tmp))
        else:
            assert calibration is not None  # int8, the one other ONNX variant: calibrated above
            with tempfile.TemporaryDirectory() as work:
                write_graphs(net, Path(work), ["onnx"], meta)
                onnx_int8(Path(work) / FORMATS["onnx"], tmp, calibration)
    return path


def _onnx_file(net, dest: Path, metadata: dict | None) -> None:
    graph = onnx_graphs().build_onnx(net, net.meta["model_id"], net.meta["task"], metadata)
    onnx_package().save(graph, str(dest / FORMATS["onnx"]))


def _ort_file(net, dest: Path, metadata: dict | None) -> None:
    if not (dest / FORMATS["onnx"]).is_file():  # the ORT file is converted from the ONNX graph
        _onnx_file(net, dest, metadata)
    onnx_to_ort(dest / FORMATS["onnx"], dest / FORMATS["ort"])


def _tflite_file(net, dest: Path, metadata: dict | None) -> None:
    flat = build_tflite(net, net.meta["model_id"], net.meta["task"], metadata)
    (dest / FORMATS["tflite"]).write_bytes(flat)


def _pte_file(net, dest: Path, metadata: dict | None) -> None:
    (dest / FORMATS["pte"]).write_bytes(build_pte(net))


def _c_files(net, dest: Path, metadata: dict | None) -> None:
    weights = file_sha256(Path(net.folder) / "model.safetensors")
    for name, text in build_c(net, net.meta["model_id"], net.meta["task"], weights).items():
        (dest / name).write_text(text)


def _onnx_ops(path: Path) -> dict[str, int]:
    return dict(sorted(Counter(n.op_type for n in onnx_package().load(str(path)).graph.node).items()))


def _tflite_ops(path: Path) -> dict[str, int]:
    return dict(sorted(Counter(op_types(path.read_bytes())).items()))


def _pte_ops(path: Path) -> dict[str, int]:
    return pte_ops(path.read_bytes())


def _c_ops(path: Path) -> dict[str, int]:
    """The C export's layers, as its comments name them (one loop nest per layer, no ops)."""
    kinds = Counter(re.findall(r"^/\* layer \d+: (dense|Han-layer)", path.read_text(), flags=re.M))
    return {"dense": kinds["dense"], "han": kinds["Han-layer"]}


@dataclass(frozen=True)
class Builder:
    """How one format of hanzoo.zoo.formats is written: `library` imports its heavy library (before the staged
    folder exists), `write` puts its file into a folder from a loaded model, and `ops` reads the op
    histogram the manifest records (None: it records none)."""

    library: Callable[[], object]
    write: Callable[..., None]
    ops: Callable[[Path], dict[str, int]] | None = None


BUILDERS = {
    "onnx": Builder(onnx_graphs, _onnx_file, _onnx_ops),
    "ort": Builder(onnx_graphs, _ort_file),
    "tflite": Builder(tensorflow, _tflite_file, _tflite_ops),
    "pte": Builder(executorch, _pte_file, _pte_ops),
    "c": Builder(lambda: None, _c_files, _c_ops),  # plain text: no library to load
}


def _load_libraries(formats: list[str], parity: bool) -> None:
    """Import the heavy libraries this export uses before its temporary folder exists. Ctrl-C in the
    middle of a native library's import can crash the process outright (seen: SIGSEGV, SIGABRT), past
    every cleanup; interrupted anywhere later, the staged folder is removed."""
    for name in formats:
        BUILDERS[name].library()
        why = unchecked_formats().get(name) if parity else None  # the C export's parity needs a compiler
        if why:
            raise HanzooError(f"the {name} export's parity check cannot run here: {why}")
    if parity or "ort" in formats:
        for name in ("onnxruntime", "ai_edge_litert.interpreter", "tflite_micro.python.tflite_micro.runtime"):
            try:
                importlib.import_module(name)
            except ImportError:
                pass  # the runtime that needs it says what to install


def write_graphs(net, dest: Path, formats: list[str], metadata: dict | None = None) -> None:
    """The model files alone (one per format of hanzoo.zoo.formats) for a loaded model, into an existing
    folder, in the table's order."""
    for name in FORMATS:
        if name in formats:
            BUILDERS[name].write(net, dest, metadata)


def _manifest(net, folder: Path, formats: list[str], parity: dict | None) -> dict:
    files = {}
    for p in sorted(folder.rglob("*")):
        if p.is_file() and p.name != "manifest.json":
            files[str(p.relative_to(folder))] = {"sha256": file_sha256(p), "bytes": p.stat().st_size}
    ops = {}
    for name, file in FORMATS.items():
        read_ops = BUILDERS[name].ops
        if name in formats and read_ops:
            ops[name] = read_ops(folder / file)
    if "onnx" in formats:
        m = onnx_package().load(str(folder / FORMATS["onnx"]))
        io = {"inputs": [_io(v) for v in m.graph.input], "outputs": [_io(v) for v in m.graph.output]}
        if (folder / FORMATS["tflite"]).is_file():
            io = {side: tflite_io(specs, folder / FORMATS["tflite"]) for side, specs in io.items()}
    for (fmt, precision), name in registry.VARIANT_FILES.items():
        if (folder / name).is_file():
            read_ops = BUILDERS[fmt].ops
            assert read_ops is not None  # the formats with variants (ONNX, TFLite) record their ops
            ops[f"{fmt}-{precision}"] = read_ops(folder / name)
    versions = {
        d: provenance.dist_version(d)
        for d in ("torch", "onnx", "onnxruntime", "tensorflow-cpu", "ai-edge-litert", "executorch")
    }
    return {
        "model_id": net.meta["model_id"],
        "task": net.meta["task"],
        "hanzoo_version": __version__,
        "versions": versions,
        "params": net.config.num_params,
        "onnx_opset": onnx_graphs().OPSET if "onnx" in formats else None,
        **(io if "onnx" in formats else {}),
        "files": files,
        "ops": ops,
        "parity": parity,
    }


def tflite_io(specs: list[dict], path: Path) -> list[dict]:
    """The ONNX graph's tensor specs, each with `tflite_dtype` where the TFLite file at `path` declares
    another type (Checkerboard's `decision`: int32 there, since TFLite Micro has no int64)."""
    types = tensor_dtypes(path.read_bytes())
    out = []
    for spec in specs:
        spec = {k: v for k, v in spec.items() if k != "tflite_dtype"}
        theirs = types.get(spec["name"])
        if theirs is not None and theirs != {"float": "float32"}.get(spec["dtype"], spec["dtype"]):
            spec["tflite_dtype"] = theirs
        out.append(spec)
    return out


def _io(v) -> dict:
    dims = [d.dim_param or d.dim_value for d in v.type.tensor_type.shape.dim]
    return {
        "name": v.name,
        "dtype": onnx_package().TensorProto.DataType.Name(v.type.tensor_type.elem_type).lower(),
        "shape": dims,
    }
