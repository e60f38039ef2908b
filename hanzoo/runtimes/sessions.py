"""Each inference runtime behind one small interface: load an artifact, run a batch (float32 features,
or uint8 images for the CIFAR-10 classifiers).

`RUNTIMES[name].load(model_dir, export_dir, threads)` returns a callable
x [batch, n_in] -> {output name: array}; torch reads the model folder, the others their artifact.
The exporters write the artifacts; `verify` and `predict` only ever go through this table.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, NamedTuple, Protocol, cast

import numpy as np
import torch

from ..errors import HanzooError
from ..graphs import fused
from ..graphs.export_c import c_name
from ..graphs.export_pte import quiet_executorch_logs
from ..nn.models import ModelConfig
from ..storage.evaluate import forward_in_chunks
from ..storage.integrity import check_artifact
from ..storage.store import load_model, read_config
from ..zoo.formats import FORMATS, MoreRuntime
from ..zoo.registry import VARIANT_FILES
from ..zoo.tasks import get_task
from . import micro, native

__all__ = [
    "Runtime",
    "IMAGE_CHUNK",
    "image_chunks",
    "torch_threads",
    "cuda_graphed",
    "ort_session",
    "litert_session",
    "quiet_stderr",
    "executorch_session",
    "c_session",
    "tflm_session",
    "Session",
    "SESSIONS",
    "MORE_SESSIONS",
    "runtime_for",
    "RUNTIMES",
    "FORMAT_RUNTIMES",
    "MORE_RUNTIMES",
    "get_runtime",
    "file_runtimes",
]

Predictor = Callable[[np.ndarray], dict[str, np.ndarray]]


class _DescribedPredictor(Protocol):
    """A Predictor that also says which code path runs it (`path`, which verify and bench report)."""

    path: str

    def __call__(self, x: np.ndarray, /) -> dict[str, np.ndarray]: ...


@dataclass(frozen=True)
class Runtime:
    name: str
    artifact: str  # the file it runs, in an export folder ("" for the torch reference)
    description: str
    load: Callable[[Path, Path, int], Predictor]
    # of the artifact (hanzoo.graphs.precision); verify holds a variant to its own rule
    precision: str = "fp32"
    package: str = ""  # the import that runs it, and the extra that installs it ("" for torch)
    extra: str = ""
    # what it needs beyond a package (the c runtime: a compiler), as a check that says why not, or None
    needs: Callable[[], str | None] | None = None
    images: bool = True  # whether it runs the image models (the c and tflite-micro runtimes: MLPs only)

    def covers(self, takes_images: bool) -> bool:
        """Whether it runs a model of this kind (an image model or an MLP)."""
        return self.images or not takes_images

    def missing(self) -> str | None:
        """Why this runtime cannot run here (its package is not installed, or what it needs is not there),
        or None."""
        if self.package and importlib.util.find_spec(self.package) is None:
            return f"not installed: pip install 'hanzoo[{self.extra}]'"
        return self.needs() if self.needs else None


def _outputs(net, out: np.ndarray) -> dict[str, np.ndarray]:
    """The graph's outputs from the module's: the raw output, and the task's decision if it has one."""
    return {"output": out, **get_task(net.meta["task"]).decide(out)}


def _as_input(x: np.ndarray, dtype) -> np.ndarray:
    """Images stay uint8 pixels; features become float32."""
    return np.ascontiguousarray(x, dtype=dtype)


# Images per call: 250 (~25 MB of first activations) keep a run cache-sized. A whole CIFAR-10 test split
# in one call is GBs of activations, and its page faults cost ONNX Runtime and LiteRT a third of the run.
IMAGE_CHUNK = 250


def image_chunks(run: Predictor, images: bool) -> Predictor:
    """`run` on an image model takes at most IMAGE_CHUNK images a call; the outputs are concatenated."""
    if not images:
        return run

    def chunked(x: np.ndarray) -> dict[str, np.ndarray]:
        if len(x) <= IMAGE_CHUNK:
            return run(x)
        parts = [run(x[i : i + IMAGE_CHUNK]) for i in range(0, len(x), IMAGE_CHUNK)]
        return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}

    return chunked


@contextlib.contextmanager
def torch_threads(n: int) -> Iterator[None]:
    """torch's thread count set to n for the block, then put back: the count is process-wide, and a
    runtime asked for one thread must not leave the caller's later torch work on one thread."""
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _torch(model_dir: Path, export_dir: Path, threads: int, compile: bool = False) -> Predictor:
    net = load_model(model_dir, compile=compile)  # as hanzoo.load(ID, compile=True)
    dtype = np.uint8 if net.config.takes_images else np.float32

    def run(x: np.ndarray) -> dict[str, np.ndarray]:
        with torch.no_grad(), torch_threads(threads):
            out = forward_in_chunks(net, torch.from_numpy(_as_input(x, dtype)), batch=IMAGE_CHUNK)
        return _outputs(net, out.numpy())

    return run


def cuda_graphed(net, x_shape: tuple[int, ...], dtype=None):
    """`net` (a module, or any callable of one CUDA tensor, such as the fused kernel) captured as one CUDA
    graph for inputs of `x_shape`: one launch replays every kernel.

    Returns (run, static_input, static_output); copy into static_input, call run(), read static_output."""

    static_x = torch.zeros(x_shape, device="cuda", dtype=dtype or torch.float32)
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side), torch.no_grad():  # warm up off the capture stream, as CUDA graphs require
        for _ in range(3):
            net(static_x)
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph), torch.no_grad():
        static_out = net(static_x)
    return graph.replay, static_x, static_out


def _torch_cuda(model_dir: Path, export_dir: Path, threads: int) -> Predictor:
    """On an NVIDIA GPU: a HanNet through the fused Triton kernel (one kernel for the whole net), anything
    else, or a HanNet without Triton, as eager torch; either captured in one CUDA graph per input shape, so
    that a call is one graph launch with no Python launch overhead. `run.path` says which one runs."""

    if not torch.cuda.is_available():
        raise HanzooError("the torch-cuda runtime needs a CUDA GPU; none is visible to torch")
    net = load_model(model_dir).cuda()
    kernel, why_not = fused.for_runtime(net, device="cuda")
    graphs: dict[tuple[int, ...], tuple] = {}

    def run(x: np.ndarray) -> dict[str, np.ndarray]:
        xt = torch.from_numpy(_as_input(x, np.uint8 if net.config.takes_images else np.float32)).cuda()
        if xt.shape not in graphs:
            graphs[xt.shape] = cuda_graphed(net if kernel is None else kernel, tuple(xt.shape), xt.dtype)
        replay, static_x, static_out = graphs[xt.shape]
        static_x.copy_(xt)
        replay()
        return _outputs(net, static_out.cpu().numpy())

    described = cast(_DescribedPredictor, run)  # a function takes attributes; mypy's model of one does not
    described.path = (
        f"CUDA-graph eager ({why_not})" if kernel is None else "fused triton kernel in a CUDA graph"
    )
    return described


def ort_session(path: Path, threads: int, mobile: bool):
    try:
        import onnxruntime as ort  # noqa: PLC0415 - optional runtime, loaded on use
    except ImportError:
        raise HanzooError("this runtime needs onnxruntime: pip install onnxruntime") from None
    if not path.is_file():
        raise HanzooError(f"{path} is missing; run `hanzoo export` first")
    if path.suffix == ".onnx":
        import onnx  # noqa: PLC0415 - optional runtime, loaded on use

        try:
            onnx.checker.check_model(str(path), full_check=True)
        except Exception as e:  # noqa: BLE001 - the checker and the protobuf parser raise different types
            raise HanzooError(
                f"{path} fails onnx.checker: {str(e).splitlines()[0] if str(e) else type(e).__name__}"
            ) from None
    # after the checker, which names what is wrong in a malformed graph; the hash catches what it cannot see
    check_artifact(path)
    so = ort.SessionOptions()
    so.intra_op_num_threads, so.inter_op_num_threads = threads, 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.log_severity_level = 3
    if mobile:
        # What an ONNX Runtime Mobile app does: load the pre-optimised ORT-format file as it is.
        so.add_session_config_entry("session.load_model_format", "ORT")
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    try:
        sess = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
    except Exception as e:  # noqa: BLE001 - onnxruntime raises several unrelated types
        raise HanzooError(f"onnxruntime cannot load {path}: {e}") from None
    names = [o.name for o in sess.get_outputs()]
    dtype = np.uint8 if sess.get_inputs()[0].type == "tensor(uint8)" else np.float32

    def run(x: np.ndarray) -> dict[str, np.ndarray]:
        return dict(zip(names, sess.run(None, {"input": _as_input(x, dtype)})))

    return image_chunks(run, dtype == np.uint8)


def litert_session(path: Path, threads: int) -> Predictor:
    if not path.is_file():
        raise HanzooError(f"{path} is missing; run `hanzoo export` first")
    check_artifact(path)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    try:
        from ai_edge_litert.interpreter import Interpreter  # noqa: PLC0415 - optional runtime, loaded on use
    except ImportError:
        raise HanzooError("this runtime needs LiteRT: pip install 'hanzoo[tflite]'") from None
    interp = Interpreter(model_path=str(path), num_threads=threads)  # XNNPACK is the default CPU delegate
    runner = interp.get_signature_runner("serving_default")
    dtype = runner.get_input_details()["input"]["dtype"]

    def run(x: np.ndarray) -> dict[str, np.ndarray]:
        try:
            return runner(input=_as_input(x, dtype))
        except RuntimeError as e:  # the interpreter prepares its delegate on the first call
            raise HanzooError(f"LiteRT cannot run {path}: {str(e).splitlines()[0]}") from None

    return image_chunks(run, dtype == np.uint8)


@contextlib.contextmanager
def quiet_stderr() -> Iterator[None]:
    """Native libraries' logging to file descriptor 2, silenced for the block (Python's sys.stderr too)."""
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "w") as null:
            os.dup2(null.fileno(), 2)
            yield
    finally:
        sys.stderr.flush()
        os.dup2(saved, 2)
        os.close(saved)


def executorch_session(path: Path, threads: int, task: str) -> Predictor:
    """An ExecuTorch program through executorch.runtime (XNNPACK for the net, portable kernels for the
    decision). The program's input holds at most as many rows as its planned size: larger inputs run
    in pieces of that size (one image at a time for image models)."""
    if not path.is_file():
        raise HanzooError(f"{path} is missing; run `hanzoo export` first")
    check_artifact(path)
    # its import and first load also print the CPU probe's lines to stderr, natively
    quiet_executorch_logs()
    with quiet_stderr():
        try:
            from executorch.extension.pybindings import portable_lib  # noqa: PLC0415 - optional runtime
            from executorch.runtime import Runtime as ETRuntime  # noqa: PLC0415 - optional runtime
        except ImportError:
            raise HanzooError("this runtime needs ExecuTorch: pip install 'hanzoo[executorch]'") from None
        portable_lib._unsafe_reset_threadpool(threads)  # XNNPACK's thread pool, as LiteRT's num_threads
        try:
            method = ETRuntime.get().load_program(path).load_method("forward")
        except Exception as e:  # noqa: BLE001 - the bindings raise RuntimeError and ValueError
            raise HanzooError(f"ExecuTorch cannot load {path}: {e}") from None
    meta = method.metadata.input_tensor_meta(0)
    rows, image = meta.sizes()[0], len(meta.sizes()) == 4
    decision = get_task(task).decision_output  # the program's outputs carry no names; the task says them
    names = ["output", *([decision] if decision else [])]

    def run(x: np.ndarray) -> dict[str, np.ndarray]:
        t = torch.from_numpy(_as_input(x, np.uint8 if image else np.float32))
        if list(t.shape[1:]) != list(meta.sizes()[1:]):
            raise HanzooError(
                f"{path.name} takes input of shape [rows, {', '.join(map(str, meta.sizes()[1:]))}], "
                f"got {list(t.shape)}"
            )
        try:
            pieces = [method.execute([t[i : i + rows]]) for i in range(0, len(t), rows)]
        except RuntimeError as e:
            raise HanzooError(f"ExecuTorch cannot run {path}: {str(e).splitlines()[0]}") from None
        return {n: np.concatenate([p[k].numpy() for p in pieces]) for k, n in enumerate(names)}

    return run


def c_session(model_dir: Path, path: Path) -> Predictor:
    """The C export (model.c, with model.h beside it) compiled by the system compiler into a cached
    library (hanzoo.runtimes.native) and called through ctypes, on one thread. A batch runs in one call:
    whole blocks of rows vectorized across rows, the rest one row at a time."""
    meta = read_config(model_dir)
    if ModelConfig.from_dict(meta["architecture"]).takes_images:
        raise HanzooError(
            f"the c runtime runs the MLP models; {meta['model_id']} is an image model, which the C export "
            "does not cover"
        )
    files = [path, *(path.with_name(n) for n in FORMATS["c"].companions)]
    for p in files:
        if not p.is_file():
            raise HanzooError(f"{p} is missing; run `hanzoo export {meta['model_id']} --format c` first")
        check_artifact(p)
    n_in, n_out = meta["architecture"]["in_features"], meta["architecture"]["out_features"]
    fn, lib = native.load_function(path, files[1:], f"{c_name(meta['model_id'])}_run")
    task = get_task(meta["task"])

    def run(x: np.ndarray) -> dict[str, np.ndarray]:
        x = np.asarray(x)
        # the C code trusts its caller for the row length: a wrong one is refused before it reads anything
        if x.ndim != 2 or x.shape[1] != n_in:
            raise HanzooError(f"{path.name} takes input of shape [rows, {n_in}], got {list(x.shape)}")
        x = np.ascontiguousarray(x, dtype=np.float32)
        y = np.empty((len(x), n_out), dtype=np.float32)
        if fn(x.ctypes.data, y.ctypes.data, len(x)) != 0:
            raise HanzooError(f"{lib.name} refused its input (a NULL pointer)")
        return {"output": y, **task.decide(y)}

    version = native.compiler_version(tuple(native.compiler() or ())).splitlines()[0]
    cast(_DescribedPredictor, run).path = f"{version}, {' '.join(native.FLAGS)}"
    return run


def tflm_session(model_dir: Path, path: Path) -> Predictor:
    """model.tflite in TensorFlow Lite for Microcontrollers' interpreter (hanzoo.runtimes.micro), on TFLM's
    reference kernels. TFLM runs the file at its static shapes, one row an invoke, so a batch runs row by
    row through one interpreter; nothing carries over between invokes (the graph has no variables), so it
    is never reset."""
    meta = read_config(model_dir)
    if ModelConfig.from_dict(meta["architecture"]).takes_images:
        raise HanzooError(
            f"the tflite-micro runtime runs the MLP models; {meta['model_id']} is an image model, which "
            "TFLite Micro's reference convolutions would take hours over"
        )
    if not path.is_file():
        raise HanzooError(f"{path} is missing; run `hanzoo export {meta['model_id']} --format tflite` first")
    check_artifact(path)
    interp = micro.interpreter(path.read_bytes())
    n_in = meta["architecture"]["in_features"]
    decision = get_task(meta["task"]).decision_output
    names = ["output", *([decision] if decision else [])]  # the file's outputs, in the ONNX graph's order
    specs = [interp.get_output_details(k) for k in range(len(names))]

    def run(x: np.ndarray) -> dict[str, np.ndarray]:
        x = np.asarray(x)
        # refused before anything is invoked: TFLM copies in as many bytes as its input tensor holds
        if x.ndim != 2 or x.shape[1] != n_in:
            raise HanzooError(f"{path.name} takes input of shape [rows, {n_in}], got {list(x.shape)}")
        x = np.ascontiguousarray(x, dtype=np.float32)
        out = [np.empty((len(x), *s["shape"][1:]), dtype=s["dtype"]) for s in specs]
        for i in range(len(x)):
            interp.set_input(x[i : i + 1], 0)
            try:
                interp.invoke()
            except RuntimeError as e:
                raise HanzooError(f"TFLite Micro cannot run {path}: {str(e).splitlines()[0]}") from None
            for k, y in enumerate(out):
                y[i] = interp.get_output(k)[0]
        return dict(zip(names, out))

    return run


class Session(NamedTuple):
    """How one format of hanzoo.zoo.formats runs: what the runtime is, the package that runs it, a session
    from (model folder, artifact path, threads), and what it needs beyond a package (Runtime.needs)."""

    what: str
    package: str
    open: Callable[[Path, Path, int], Predictor]
    needs: Callable[[], str | None] | None = None


SESSIONS: dict[str, Session] = {
    "onnx": Session(
        "ONNX Runtime, CPU provider", "onnxruntime", lambda m, path, t: ort_session(path, t, False)
    ),
    "ort": Session(
        "ONNX Runtime on the ORT-format file, as a mobile app loads it",
        "onnxruntime",
        lambda m, path, t: ort_session(path, t, True),
    ),
    "tflite": Session(
        "LiteRT interpreter with XNNPACK",
        "ai_edge_litert",
        lambda m, path, t: litert_session(path, t),
    ),
    "pte": Session(
        "ExecuTorch with the XNNPACK delegate, as a PyTorch mobile app runs it",
        "executorch",
        lambda m, path, t: executorch_session(path, t, read_config(m)["task"]),
    ),
    "c": Session(
        "the C export, built once with the system cc and called through ctypes",
        "",
        lambda m, path, t: c_session(m, path),
        native.missing,
    ),
}


# the runtimes that run a format's fp32 file beside its own (Format.more_runtimes), by runtime name
MORE_SESSIONS: dict[str, Session] = {
    "tflite-micro": Session(
        "TensorFlow Lite for Microcontrollers' reference kernels, one row per invoke",
        micro.PACKAGE,
        lambda m, path, t: tflm_session(m, path),
    ),
}


def runtime_for(fmt: str, precision: str = "fp32") -> str:
    """The runtime name for an export format at a precision: onnxruntime, litert-int8, ..."""
    base = FORMATS[fmt].runtime
    return base if precision == "fp32" else f"{base}-{precision}"


def _file_runtime(fmt: str, precision: str = "fp32") -> Runtime:
    """The runtime of a format's file (or of its fp16/int8 variant), from the two tables."""
    what, package, session, needs = Session(*SESSIONS[fmt])
    file = FORMATS[fmt].variant_file(precision)
    return Runtime(
        runtime_for(fmt, precision),
        file,
        what if precision == "fp32" else f"{what}, on the {precision} variant",
        lambda m, e, t: session(m, e / file, t),
        precision,
        package,
        FORMATS[fmt].extra,
        needs,
        FORMATS[fmt].images,
    )


def _more_runtime(fmt: str, more: MoreRuntime) -> Runtime:
    """Another runtime of a format's fp32 file (Format.more_runtimes), from the table and MORE_SESSIONS."""
    what, package, session, needs = Session(*MORE_SESSIONS[more.name])
    file = FORMATS[fmt].file
    return Runtime(
        more.name,
        file,
        what,
        lambda m, e, t: session(m, e / file, t),
        "fp32",
        package,
        more.extra,
        needs,
        more.images,
    )


def file_runtimes(fmt: str) -> list[Runtime]:
    """The runtimes of a format's files: its fp32 file's, the other runtimes of that file, then each
    variant's (what a format added to the table, with its entry in SESSIONS, contributes to RUNTIMES)."""
    return (
        [_file_runtime(fmt)]
        + [_more_runtime(fmt, m) for m in FORMATS[fmt].more_runtimes]
        + [_file_runtime(fmt, p) for p in FORMATS[fmt].variants]
    )


RUNTIMES: dict[str, Runtime] = {
    r.name: r
    for r in [
        Runtime("torch", "", "PyTorch eager on the CPU (the fp32 reference)", _torch),
        Runtime(
            "torch-compile",
            "",
            "PyTorch with torch.compile (inductor) on the CPU, as hanzoo.load(ID, compile=True)",
            lambda m, e, t: _torch(m, e, t, compile=True),
        ),
        *(_file_runtime(fmt) for fmt in FORMATS if fmt in SESSIONS),  # a test holds every format to a session
        *(_more_runtime(fmt, m) for fmt, f in FORMATS.items() for m in f.more_runtimes),
        Runtime(
            "torch-cuda",
            "",
            "PyTorch on an NVIDIA GPU: the fused Triton kernel for HanNets, else CUDA graphs",
            _torch_cuda,
        ),
        *(_file_runtime(fmt, p) for (fmt, p) in VARIANT_FILES if fmt in SESSIONS),
    ]
}
# the runtime that runs each export format (and its fp16/int8 variants, for onnx and tflite)
FORMAT_RUNTIMES = {name: f.runtime for name, f in FORMATS.items()}
# the runtimes that run a format's file beside its own (tflite-micro: model.tflite), checked where installed
MORE_RUNTIMES = tuple(m.name for f in FORMATS.values() for m in f.more_runtimes)


def get_runtime(name: str) -> Runtime:
    try:
        return RUNTIMES[name]
    except KeyError:
        raise HanzooError(f"unknown runtime {name!r}; expected one of {sorted(RUNTIMES)}") from None
