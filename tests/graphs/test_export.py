"""The graph contract, parity and determinism of every shipped model's exports."""

import hashlib
import json
import os
import shutil
from collections import Counter

import numpy as np
import onnx
import pytest
from onnx import TensorProto, numpy_helper

from hanzoo import HanzooError
from hanzoo.graphs.export_tflite import op_types, read_metadata
from hanzoo.publishing.export import export, parse_formats
from hanzoo.runtimes.sessions import RUNTIMES
from hanzoo.runtimes.verify import ABS_TOL, allowance, near_boundary, output_tolerance, verify
from hanzoo.zoo import registry
from hanzoo.zoo.formats import FORMATS as FORMAT_TABLE
from hanzoo.zoo.registry import EXPORT_DIR
from hanzoo.zoo.tasks import get_task

from .. import golden

SHIPPED = [e for e in registry.MODELS.values() if e.shipped]
ids = lambda e: e.id  # noqa: E731
TFLITE_BUILTINS = {"FULLY_CONNECTED", "ADD", "ABS", "RELU", "MEAN", "GREATER", "CAST"}
# image classifiers add their conv backbone's ops, the normalization and the class
TFLITE_IMAGE_BUILTINS = {"CONV_2D", "MAX_POOL_2D", "GELU", "MUL", "SUB", "REDUCE_MAX", "ARG_MAX"}


def random_input(entry, batch, seed=0):
    from hanzoo.reports.bench import random_input as make

    return make(np.random.default_rng(seed), batch, entry.config.input_shape)


def han_layers(entry):
    return [(i, n) for i, (kind, _, n, _) in enumerate(entry.config.layers()) if kind == "han"]


def covered(entry) -> list[str]:
    """The formats that cover a model: all of them, less the C export for an image model."""
    return [f for f, fmt in FORMAT_TABLE.items() if fmt.covers(entry.config.takes_images)]


def test_every_shipped_model_is_exported():
    for e in SHIPPED:
        files = {name for f in covered(e) for name in FORMAT_TABLE[f].files}
        assert {"manifest.json", *files} <= {p.name for p in (EXPORT_DIR / e.id).iterdir()}, e.id
        left_out = {name for f in set(FORMAT_TABLE) - set(covered(e)) for name in FORMAT_TABLE[f].files}
        assert not left_out & {p.name for p in (EXPORT_DIR / e.id).iterdir()}, e.id


@pytest.mark.parametrize("entry", SHIPPED, ids=ids)
def test_manifest_matches_files(entry):
    folder = EXPORT_DIR / entry.id
    m = json.loads((folder / "manifest.json").read_text())
    for name, f in m["files"].items():
        data = (folder / name).read_bytes()
        assert (hashlib.sha256(data).hexdigest(), len(data)) == (f["sha256"], f["bytes"]), name
    assert m["params"] == entry.config.num_params
    assert m["ops"]["onnx"] == dict(
        Counter(n.op_type for n in onnx.load(str(folder / "model.onnx")).graph.node)
    )


@pytest.mark.parametrize("entry", SHIPPED, ids=ids)
def test_onnx_graph_contract(entry):
    model = onnx.load(str(EXPORT_DIR / entry.id / "model.onnx"))
    onnx.checker.check_model(model, full_check=True)
    consts = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    n_han = 0
    for i, n in han_layers(entry):
        n_han += 1
        # Three nodes per Han-layer (MatMul, Gemm, Abs or the ablation's Relu), and only O(n) constants.
        act = {"abs": "Abs", "relu": "Relu"}[entry.config.layers()[i][3]]
        nodes = [nd.op_type for nd in model.graph.node if nd.name.startswith(f"l{i}.")]
        assert nodes == ["MatMul", "Gemm", act], (i, nodes)
        assert consts[f"l{i}.p"].shape == (n + 1, 2) and consts[f"l{i}.q"].shape == (2, n + 1)
    width = entry.config.width
    if n_han:
        assert not any(
            a.ndim == 2
            and a.shape[0] >= width
            and a.shape[1] >= width
            and name.startswith(tuple(f"l{i}." for i, _ in han_layers(entry)))
            for name, a in consts.items()
        )
    total = sum(a.size for a in consts.values())
    # Each Han-layer stores 4(n+1) floats instead of its 2n parameters (v precomputed, the bias riding
    # in the Gemm); the Dense layers around a Han run carry one extra row for the constant-1 column.
    layers = entry.config.layers()
    first = han_layers(entry)[0][0] if n_han else None
    extra = sum(2 * n + 4 for _, n in han_layers(entry)) + (layers[first - 1][1] + 1 if n_han else 0) + 1
    extra += 9 if entry.config.backbone else 0  # pixel mean and std, GELU's three scalars
    assert entry.config.num_params <= total <= entry.config.num_params + extra
    size = (EXPORT_DIR / entry.id / "model.onnx").stat().st_size
    assert size <= 4 * total + 8192 + 64 * len(model.graph.node), (
        "the file is about its constants' bytes plus a small overhead"
    )
    props = {p.key: p.value for p in model.metadata_props}
    assert props["hanzoo_id"] == entry.id and props["task"] == entry.task and "hanzoo_version" in props
    assert [d.dim_param for d in model.graph.input[0].type.tensor_type.shape.dim][0] == "batch"


@pytest.mark.parametrize("entry", SHIPPED, ids=ids)
def test_tflite_builtins_only_and_metadata(entry):
    flat = (EXPORT_DIR / entry.id / "model.tflite").read_bytes()
    ops = op_types(flat)
    allowed = TFLITE_BUILTINS | (TFLITE_IMAGE_BUILTINS if entry.config.backbone else set())
    assert set(ops) <= allowed, set(ops) - allowed
    counts = Counter(ops)
    h = len(han_layers(entry))
    # one ADD per Han-layer (x' + [s, 1] @ Q), and an image backbone's per-channel shift after each pool
    assert counts["ADD"] == h + (len(entry.config.backbone) - 1 if entry.config.backbone else 0)
    assert read_metadata(flat)["hanzoo_id"] == entry.id
    from ai_edge_litert.interpreter import Interpreter

    interp = Interpreter(model_content=flat)
    sig = interp.get_signature_list()["serving_default"]
    assert sig["inputs"] == ["input"] and "output" in sig["outputs"]
    runner = interp.get_signature_runner("serving_default")
    assert list(runner.get_input_details()["input"]["shape_signature"]) == [-1, *entry.config.input_shape]


@pytest.mark.parametrize("entry", SHIPPED, ids=ids)
@pytest.mark.parametrize("runtime", ["onnxruntime", "ort-mobile", "litert", "executorch"])
def test_dynamic_batch(entry, runtime):
    run = RUNTIMES[runtime].load(entry.dir, EXPORT_DIR / entry.id, 1)
    ref = RUNTIMES["torch"].load(entry.dir, EXPORT_DIR / entry.id, 1)
    for batch in (1, 7, 64 if entry.config.backbone else 1024):
        x = random_input(entry, batch, seed=batch)
        got, want = run(x), ref(x)
        assert got["output"].shape == (batch, entry.config.out_features)
        assert np.abs(got["output"] - want["output"]).max() <= ABS_TOL * max(
            1.0, np.abs(want["output"]).max()
        )


def test_torch_runtime_leaves_the_callers_thread_count():
    """torch's thread count is process-wide: a reference run at one thread must not keep the caller there."""
    import torch

    entry = registry.get("checkerboard-hannet-20x30")
    before = torch.get_num_threads()
    want = 2 if before != 2 else 3
    torch.set_num_threads(want)
    try:
        RUNTIMES["torch"].load(entry.dir, EXPORT_DIR / entry.id, 1)(random_input(entry, 4, seed=0))
        assert torch.get_num_threads() == want
    finally:
        torch.set_num_threads(before)


@pytest.mark.parametrize("entry", SHIPPED, ids=ids)
def test_pte_is_one_xnnpack_partition(entry):
    """The whole net runs in one XNNPACK delegate call; only the decision (mean > 0.5, argmax) and an image's
    reshape run outside it. The manifest's op counts are the file's own."""
    from hanzoo.graphs.export_pte import pte_ops

    folder = EXPORT_DIR / entry.id
    ops = pte_ops((folder / "model.pte").read_bytes())
    assert ops.pop("XnnpackBackend") == 1, ops
    assert set(ops) <= {
        "aten::mean",
        "aten::gt",
        "aten::argmax",
        "aten::view_copy",
        "dim_order_ops::_to_dim_order_copy",
    }
    assert json.loads((folder / "manifest.json").read_text())["ops"]["pte"] == pte_ops(
        (folder / "model.pte").read_bytes()
    )


def test_a_one_dimensional_dot_would_split_the_partition():
    """Why the .pte is built from the plan: the training module's 1-D `x @ u` lowers to ops XNNPACK does not
    take, and the net falls apart into a partition per layer; the plan's (n+1) x 2 matrices keep one."""
    import torch

    from hanzoo.graphs.export_pte import executorch, lowered, partitions

    to_edge, partitioner = executorch()
    net = registry.get("checkerboard-hannet-20x30")
    from hanzoo import load

    module = load(net.id).eval()
    as_trained = to_edge(torch.export.export(module, (torch.zeros(2, 2),)), partitioner=[partitioner()])
    assert partitions(as_trained) > 10
    assert partitions(lowered(module)) == 1


def test_executorch_names_a_wrong_shape():
    e = registry.get("checkerboard-hannet-20x30")
    run = RUNTIMES["executorch"].load(e.dir, EXPORT_DIR / e.id, 1)
    with pytest.raises(HanzooError, match=r"takes input of shape \[rows, 2\], got \[3, 5\]"):
        run(np.zeros((3, 5), np.float32))


@pytest.mark.golden
@pytest.mark.parametrize("entry", SHIPPED, ids=ids)
def test_parity_on_the_whole_test_split(entry, cached_reference, request):
    # the shipped fp16/int8 variants are checked by their own rule (tests/reports/test_quantization.py)
    fp32 = golden.runtimes(request.config, ["onnxruntime", "ort-mobile", "litert", "executorch"])
    # the C export, built with the system cc (a machine without one skips it, but not CI)
    if not entry.config.takes_images and (not RUNTIMES["c"].missing() or os.environ.get("CI")):
        fp32.append("c")
    # model.tflite in TFLite Micro's reference kernels, one row per invoke: the MLPs only (the test extra
    # installs tflite-micro, so a machine without it fails here, naming the extra)
    if not entry.config.takes_images:
        fp32 += golden.runtimes(request.config, ["tflite-micro"])
    rows = golden.rows(request.config, entry.id)
    rep = verify(entry.id, runtimes=fp32, rows=rows)
    for name, r in rep["runtimes"].items():
        assert r["ok"], (name, r)
    assert set(rep["runtimes"]) == set(fp32)
    if rows is not None:  # the recorded figures are the whole split's
        return
    # The manifest's figures were measured on another CPU: they agree within verify's rule, not to the bit.
    recorded = json.loads((EXPORT_DIR / entry.id / "manifest.json").read_text())["parity"]
    ref, rows = rep["reference"], rep["reference"]["rows"]
    near = max(ref["rows_near_boundary"], recorded["reference"]["rows_near_boundary"])
    check = allowance(ref["metric"], ref["value"], recorded["reference"]["value"], near, rows)
    assert check.ok, f"torch reference {ref['metric']} of {entry.id}: {check}"
    for name, r in rep["runtimes"].items():
        was = recorded["runtimes"][name]
        check = allowance(ref["metric"], r["metric"], was["metric"], near, rows)
        assert check.ok, f"{name} {ref['metric']} of {entry.id}: {check}"
        assert was["max_abs_err"] <= was["tolerance_abs"] and r["max_abs_err"] <= r["tolerance_abs"]


@pytest.mark.parametrize("entry", SHIPPED, ids=ids)
def test_test_data_set_round_trips(entry):
    folder = EXPORT_DIR / entry.id
    x = numpy_helper.to_array(onnx.load_tensor(str(folder / "test_data_set_0" / "input_0.pb")))
    want = numpy_helper.to_array(onnx.load_tensor(str(folder / "test_data_set_0" / "output_0.pb")))
    got = RUNTIMES["onnxruntime"].load(entry.dir, folder, 1)(x)["output"]
    assert np.abs(got - want).max() <= ABS_TOL * max(1.0, np.abs(want).max())


# Files computed from the weights alone are byte-identical on every machine; the reference outputs
# are torch's float32 results, which differ in their last bits between CPUs, so they are compared
# numerically; the ORT flatbuffer is laid out in hash-map order (same size, same outputs).
WEIGHTS_ONLY = (
    *(name for f in FORMAT_TABLE.values() if f.byte_identical for name in f.files),
    "test_data_set_0/input_0.pb",
)


@pytest.mark.golden
@pytest.mark.parametrize("entry", SHIPPED, ids=ids)
def test_reexport_is_deterministic(entry, tmp_path, request):
    """Exporting the shipped weights again gives the checked-in files; changed weights fail here."""
    # the parity run is the parity test's job (an image model's costs a minute)
    formats = golden.formats(request.config, covered(entry))
    out = export(entry.id, formats, out=tmp_path / "again", parity=False)
    shipped_dir = EXPORT_DIR / entry.id
    shipped = json.loads((shipped_dir / "manifest.json").read_text())
    for fmt in set(covered(entry)) - set(formats):
        del shipped["ops"][fmt]
        for name in FORMAT_TABLE[fmt].files:
            del shipped["files"][name]
    fresh = json.loads((out / "manifest.json").read_text())
    half = [n for n in shipped["files"] if ".fp16." in n]  # half-precision weights: from the weights alone
    for name in (*[n for n in WEIGHTS_ONLY if n in shipped["files"]], *half):
        assert fresh["files"][name]["sha256"] == shipped["files"][name]["sha256"], (
            f"{name} of {entry.id} differs from the shipped one: run `hanzoo export --all`"
        )
    outputs = sorted(n for n in shipped["files"] if n.startswith("test_data_set_0/output_"))
    assert outputs == sorted(n for n in fresh["files"] if n.startswith("test_data_set_0/output_"))
    for name in outputs:
        want = numpy_helper.to_array(onnx.load_tensor(str(shipped_dir / name)))
        got = numpy_helper.to_array(onnx.load_tensor(str(out / name)))
        assert got.shape == want.shape and got.dtype == want.dtype, name
        if want.dtype.kind == "f":
            diff, tol = float(np.abs(got - want).max()), output_tolerance(want)
            assert diff <= tol, (
                f"{name} of {entry.id}: torch's reference differs by {diff:.3g} (tolerance {tol:.3g})"
            )
        else:  # a decision or class: only rows on the boundary may flip
            ref = numpy_helper.to_array(onnx.load_tensor(str(shipped_dir / outputs[0])))
            flips = np.flatnonzero(got != want)
            near = np.flatnonzero(near_boundary(get_task(entry.task), ref))
            assert set(flips) <= set(near), (
                f"{name} of {entry.id}: rows {flips[:5]} changed away from the boundary"
            )
    # measured, not written: parity, and TFLite Micro's arena (tests/use/test_tflm.py recomputes one)
    unmeasured = lambda m: {k: v for k, v in m.items() if k not in ("files", "parity", "versions", "tflm")}  # noqa: E731
    assert unmeasured(fresh) == unmeasured(shipped)
    assert fresh["files"]["model.ort"]["bytes"] == shipped["files"]["model.ort"]["bytes"]
    x = random_input(entry, 64, seed=1)
    a = RUNTIMES["ort-mobile"].load(entry.dir, shipped_dir, 1)(x)
    b = RUNTIMES["ort-mobile"].load(entry.dir, out, 1)(x)
    assert all(np.array_equal(a[k], b[k]) for k in a)


def test_error_paths(tmp_path, monkeypatch):
    with pytest.raises(HanzooError, match="unknown format png"):
        parse_formats("onnx,png")
    assert parse_formats("ort") == ["onnx", "ort"]
    # Root writes through permission bits, so the unwritable path is one with a file in the way.
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(HanzooError, match="cannot write"):
        export("checkerboard-hannet-20x30", ["onnx"], blocker / "x")

    import builtins

    real_import = builtins.__import__

    def no_tf(name, *a, **k):
        if name == "tensorflow" or name.startswith("tensorflow."):
            raise ImportError("no tensorflow")
        return real_import(name, *a, **k)

    monkeypatch.setattr(builtins, "__import__", no_tf)
    with pytest.raises(HanzooError, match=r"pip install 'hanzoo\[tflite\]'"):
        export("checkerboard-hannet-20x30", ["tflite"], tmp_path / "t")
    monkeypatch.undo()
    assert not (tmp_path / "t").exists()


def test_corrupt_onnx_is_named(tmp_path):
    folder = tmp_path / "e"
    shutil.copytree(EXPORT_DIR / "checkerboard-hannet-20x30", folder)
    model = onnx.load(str(folder / "model.onnx"))
    next(n for n in model.graph.node if n.op_type == "MatMul").input[1] = "no_such_tensor"
    onnx.save(model, str(folder / "model.onnx"))
    with pytest.raises(HanzooError, match="fails onnx.checker"):
        RUNTIMES["onnxruntime"].load(registry.get("checkerboard-hannet-20x30").dir, folder, 1)
    (folder / "model.onnx").write_bytes(b"garbage")
    with pytest.raises(HanzooError, match="fails onnx.checker"):
        RUNTIMES["onnxruntime"].load(registry.get("checkerboard-hannet-20x30").dir, folder, 1)


def test_cli_verify_fails_loudly_on_a_broken_export(tmp_path, monkeypatch, capsys):
    from hanzoo.cli import main

    broken = tmp_path / "export"
    shutil.copytree(EXPORT_DIR, broken)
    model = onnx.load(str(broken / "checkerboard-hannet-20x30" / "model.onnx"))
    for init in model.graph.initializer:
        if init.name == "l5.q":  # flip one Han-layer's bias sign: a plausible exporter bug
            a = numpy_helper.to_array(init).copy()
            a[1] = -a[1]
            init.CopyFrom(numpy_helper.from_array(a, init.name))
    onnx.save(model, str(broken / "checkerboard-hannet-20x30" / "model.onnx"))
    # an exporter bug, not a damaged file: the manifest and the pins record the bad graph's own hash
    from hanzoo.files import file_sha256
    from hanzoo.zoo import pins

    digest = file_sha256(broken / "checkerboard-hannet-20x30" / "model.onnx")
    man = broken / "checkerboard-hannet-20x30" / "manifest.json"
    m = json.loads(man.read_text())
    m["files"]["model.onnx"]["sha256"] = digest
    man.write_text(json.dumps(m))
    pinned = pins.manifest()
    pinned["checkerboard-hannet-20x30"]["files"]["onnx/model.onnx"] = digest
    monkeypatch.setattr(pins, "manifest", lambda: pinned)
    monkeypatch.setattr(registry, "EXPORT_DIR", broken)
    assert main(["verify", "checkerboard-hannet-20x30", "--runtime", "onnxruntime", "--json"]) == 1
    err = capsys.readouterr().err
    assert "parity failed: onnxruntime on checkerboard-hannet-20x30" in err and "worst input row" in err


@pytest.mark.parametrize("entry", SHIPPED, ids=ids)
def test_manifest_tensor_specs_are_the_artifacts_own(entry):
    """docs/mobile.md is generated from these specs, so they must be what each file really declares."""
    folder = EXPORT_DIR / entry.id
    m = json.loads((folder / "manifest.json").read_text())
    from ai_edge_litert.interpreter import Interpreter

    runner = Interpreter(model_path=str(folder / "model.tflite")).get_signature_runner("serving_default")
    dtypes = {"float": np.float32, "int64": np.int64, "int32": np.int32, "uint8": np.uint8}
    for spec, details in (
        (m["inputs"], runner.get_input_details()),
        (m["outputs"], runner.get_output_details()),
    ):
        assert {v["name"] for v in spec} == set(details)
        for v in spec:
            d = details[v["name"]]
            # the TFLite file's own type where it differs (Checkerboard's decision: int32, for TFLite Micro)
            assert d["dtype"] == dtypes[v.get("tflite_dtype", v["dtype"])]
            assert list(d["shape_signature"]) == [-1 if x == "batch" else x for x in v["shape"]]
    for spec, real in (
        (m["inputs"], onnx.load(str(folder / "model.onnx")).graph.input),
        (m["outputs"], onnx.load(str(folder / "model.onnx")).graph.output),
    ):
        assert [v["name"] for v in spec] == [r.name for r in real]
        assert [v["dtype"] for v in spec] == [
            TensorProto.DataType.Name(r.type.tensor_type.elem_type).lower() for r in real
        ]
    # an app that skips the signature runner reads the tensors by name, in the ONNX graph's order
    interp = Interpreter(model_path=str(folder / "model.tflite"))
    assert [d["name"] for d in interp.get_input_details()] == [v["name"] for v in m["inputs"]]
    assert [d["name"] for d in interp.get_output_details()] == [v["name"] for v in m["outputs"]]
    import onnxruntime as ort

    sess = ort.InferenceSession(str(folder / "model.ort"), providers=["CPUExecutionProvider"])
    assert [i.name for i in sess.get_inputs()] == [v["name"] for v in m["inputs"]]
    assert [o.name for o in sess.get_outputs()] == [v["name"] for v in m["outputs"]]


def test_verify_names_a_runtime_that_is_not_installed(monkeypatch, capsys):
    """`make demo` installs no ExecuTorch: verify runs the other files and names the one it could not run."""
    from dataclasses import replace

    from hanzoo.runtimes.verify import verify

    monkeypatch.setitem(
        RUNTIMES, "executorch", replace(RUNTIMES["executorch"], package="no_such_package_here")
    )
    rep = verify("checkerboard-hannet-20x30", threads=1)
    assert rep["not_run"] == {"executorch": "not installed: pip install 'hanzoo[executorch]'"}
    assert "executorch" not in rep["runtimes"] and rep["runtimes"]["onnxruntime"]["ok"]
    from hanzoo.cli import main

    assert main(["verify", "checkerboard-hannet-20x30", "--no-latency"]) == 0
    assert "executorch: not run (not installed: pip install 'hanzoo[executorch]')" in capsys.readouterr().out


def test_verify_on_the_first_rows_of_the_test_split():
    rep = verify("checkerboard-hannet-20x30", runtimes=["onnxruntime"], threads=1, rows=100)
    assert rep["reference"]["rows"] == 100 and rep["runtimes"]["onnxruntime"]["ok"]
    with pytest.raises(HanzooError, match="rows must be at least 1, got 0"):
        verify("checkerboard-hannet-20x30", runtimes=["onnxruntime"], rows=0)


def test_image_runtimes_take_at_most_a_chunk_of_images_a_call():
    from hanzoo.runtimes.sessions import IMAGE_CHUNK, image_chunks

    calls = []

    def run(x):
        calls.append(len(x))
        return {"output": x[:, :1].astype(np.float32), "class": x[:, 0].astype(np.int64)}

    x = np.arange(2 * IMAGE_CHUNK + 7, dtype=np.uint8)[:, None].repeat(3, axis=1)
    out = image_chunks(run, images=True)(x)
    assert calls == [IMAGE_CHUNK, IMAGE_CHUNK, 7]
    assert np.array_equal(out["output"][:, 0], x[:, 0]) and np.array_equal(out["class"], x[:, 0])
    calls.clear()
    assert image_chunks(run, images=False)(x)["output"].shape == (len(x), 1) and calls == [len(x)]
