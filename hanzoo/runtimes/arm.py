"""aarch64 parity under user-mode emulation: every shipped export run by the arm64 builds of ONNX Runtime
and LiteRT on an emulated phone-class core, and each MLP's C export cross-compiled with Debian's
aarch64-linux-gnu-gcc (the c runtime's flags), against the same torch fp32 reference and tolerance as
`hanzoo verify`.

The arm64 environment is built from the package registries, with no root daemon and no VM, and cached
under the user's cache directory, keyed by its versions:

    qemu-aarch64   a static binary from Debian 13's qemu-user (Debian 12's qemu 7.2 segfaults in
                   onnxruntime's CPU probe, which reads the host's x86 /sys files)
    rootfs/        Debian 12's arm64 python3.11 and libstdc++ (mmdebstrap --variant=extract)
    site/          the arm64 wheels of onnxruntime, ai-edge-litert and numpy (pip --target --platform)

Emulated time is not device time, so nothing here is a latency.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import urllib.request
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from ..errors import HanzooError
from ..files import CHECKOUT, file_sha256, staged_folder, written_atomically
from ..graphs.export_c import c_name
from ..typed import absent, read_json, to_json
from ..zoo import registry
from ..zoo.cifar import cache_dir
from ..zoo.formats import FORMATS
from ..zoo.tasks import get_task
from . import native
from .sessions import RUNTIMES
from .verify import check_metric, metric_value, near_boundary, output_tolerance

CPU = "cortex-a76"  # a phone-class core (Snapdragon 855/865 era)
QEMU_DEB = (
    "http://deb.debian.org/debian/pool/main/q/qemu/qemu-user_10.0.13+ds-0+deb13u1_amd64.deb",
    "ca6ede739327a20ae5a3498230c8a3a9a072c586e131bc6bcc1201eb1725e336",
)
ROOTFS = ("bookworm", "python3.11,libstdc++6,libgomp1")
WHEELS = ("onnxruntime==1.32.0", "ai-edge-litert==2.3.0", "numpy==2.4.6")
PLATFORMS = ("manylinux_2_28_aarch64", "manylinux_2_27_aarch64", "manylinux_2_17_aarch64")
# the environment installs the arm64 wheels of ONNX Runtime and LiteRT: the formats they run (the C
# export is cross-compiled instead)
ARTIFACT_RUNTIMES = {f.file: f.runtime for f in FORMATS.values() if f.aarch64 and f.name != "c"}
IMAGE_ROWS = 1000  # test images per CIFAR-10 model: the whole split takes too long emulated
KEY = hashlib.sha256(json.dumps([QEMU_DEB, ROOTFS, WHEELS, PLATFORMS]).encode()).hexdigest()[:12]

# Runs inside the emulated Python: every job's artifact on its input, outputs saved beside.
RUNNER = r"""
import json, sys
import numpy as np
jobs = json.load(open(sys.argv[1]))
for job in jobs:
    x = np.load(job["input"])
    if job["runtime"] == "litert":
        from ai_edge_litert.interpreter import Interpreter
        interpreter = Interpreter(model_path=job["artifact"], num_threads=1)
        out = interpreter.get_signature_runner("serving_default")(input=x)
    else:
        import onnxruntime as ort
        so = ort.SessionOptions()
        so.intra_op_num_threads, so.log_severity_level = 1, 3
        if job["runtime"] == "ort-mobile":
            so.add_session_config_entry("session.load_model_format", "ORT")
            so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
        s = ort.InferenceSession(job["artifact"], so, providers=["CPUExecutionProvider"])
        out = dict(zip([o.name for o in s.get_outputs()], s.run(None, {"input": x})))
    np.savez(job["output"], **out)
    print(job["artifact"], job["runtime"], flush=True)
"""


def environment(progress: bool = True) -> Path:
    """The cached arm64 environment, built (atomically) on first use."""
    folder = cache_dir() / f"aarch64-{KEY}"
    if (folder / "ready.json").is_file():
        return folder
    for tool, package in (("mmdebstrap", "mmdebstrap"), ("dpkg-deb", "dpkg")):
        if shutil.which(tool) is None:
            raise HanzooError(f"building the arm64 environment needs {tool}: apt-get install {package}")
    with staged_folder(folder) as tmp:
        _say(progress, "qemu-aarch64 (Debian 13 qemu-user)")
        _qemu(tmp)
        _say(progress, f"arm64 rootfs (Debian {ROOTFS[0]}: {ROOTFS[1]})")
        _run(
            ["mmdebstrap", "--quiet", "--variant=extract", "--arch=arm64", f"--include={ROOTFS[1]}",
             ROOTFS[0], str(tmp / "rootfs"), "http://deb.debian.org/debian"],
            "mmdebstrap could not build the arm64 rootfs",
        )  # fmt: skip
        _say(progress, f"arm64 wheels ({', '.join(WHEELS)})")
        platforms = [a for p in PLATFORMS for a in ("--platform", p)]
        _run(
            [sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check", "--target",
             str(tmp / "site"), *platforms, "--python-version", "3.11", "--implementation", "cp",
             "--only-binary=:all:", *WHEELS],
            "pip could not fetch the arm64 wheels",
        )  # fmt: skip
        probe = emulate(tmp, ["-c", "import onnxruntime, ai_edge_litert.interpreter, numpy; print('ok')"])
        if probe.stdout.strip() != "ok":
            raise HanzooError(f"the arm64 environment does not start: {probe.stderr.strip()[-300:]}")
        (tmp / "ready.json").write_text(json.dumps({"qemu": QEMU_DEB[0], "rootfs": ROOTFS, "wheels": WHEELS}))
    return folder


def _say(progress: bool, what: str) -> None:
    if progress:
        print(f"arm64 environment: fetching {what}", file=sys.stderr, flush=True)


def _run(cmd: list[str], what: str) -> None:
    res = subprocess.run(cmd, capture_output=True, text=True)
    if res.returncode != 0:
        raise HanzooError(f"{what}: {(res.stderr or res.stdout).strip().splitlines()[-1:]}")


def _qemu(dest: Path) -> None:
    url, sha = QEMU_DEB
    deb = dest / "qemu-user.deb"
    try:
        with urllib.request.urlopen(url, timeout=60) as r, open(deb, "wb") as f:
            shutil.copyfileobj(r, f)
    except OSError as e:
        raise HanzooError(
            f"cannot download {url} ({e}); the arm64 check needs Debian's package mirror"
        ) from None
    if file_sha256(deb) != sha:
        raise HanzooError(f"{url} did not match its sha256 {sha}")
    data = subprocess.run(["dpkg-deb", "--fsys-tarfile", str(deb)], capture_output=True, check=True).stdout
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run(["tar", "-x", "-C", tmp, "./usr/bin/qemu-aarch64"], input=data, check=True)
        shutil.move(Path(tmp) / "usr" / "bin" / "qemu-aarch64", dest / "qemu-aarch64")
    deb.unlink()


def emulate(env: Path, args: list[str], timeout: float = 3600) -> subprocess.CompletedProcess:
    """The emulated arm64 python3.11 with `args`, on a phone-class core."""
    cmd = [
        str(env / "qemu-aarch64"),
        "-cpu",
        CPU,
        "-L",
        str(env / "rootfs"),
        str(env / "rootfs/usr/bin/python3.11"),
    ]
    extra = {"PYTHONPATH": str(env / "site"), "PYTHONNOUSERSITE": "1", "TF_CPP_MIN_LOG_LEVEL": "3"}
    return subprocess.run(
        [*cmd, *args], capture_output=True, text=True, timeout=timeout, env=os.environ | extra
    )


@dataclass
class ArmParity:
    """One runtime on one model, emulated: its largest output error, the task metric it gives, how many
    decisions differ from torch's, and whether that is within `hanzoo verify`'s rule."""

    max_abs_err: float
    tolerance_abs: float
    metric: float
    decisions_differ: int
    ok: bool


@dataclass
class ArmModel:
    rows: int
    metric: str
    reference: float
    runtimes: dict[str, ArmParity]


@dataclass
class ArmCExample:
    model: str
    compiler: str
    max_abs_err: float
    tolerance_abs: float
    ok: bool


@dataclass
class ArmReport:
    """docs/aarch64.json: the emulated CPU and wheels, the cross compiler that built the C exports, and
    every model's parity on them."""

    cpu: str
    emulator: str
    wheels: list[str]
    models: dict[str, ArmModel] = field(default_factory=dict)
    c_example: ArmCExample | None = absent()  # left out where no cross compiler was found
    c_compiler: str | None = absent()

    @classmethod
    def read(cls, path: Path) -> ArmReport:
        return read_json(cls, path)

    def to_json(self) -> dict:
        return to_json(self)


def verify_arm(model_ids: list[str], progress: bool = True) -> ArmReport:
    """Parity on aarch64 of every shipped artifact of `model_ids`: max abs error, the task metric and the
    decisions, against torch fp32 on x86-64, under `hanzoo verify`'s rule."""
    env = environment(progress)
    report = ArmReport(CPU, QEMU_DEB[0].rsplit("/", 1)[1], list(WHEELS), c_compiler=cross_compiler())
    if report.c_compiler is None and progress:
        print(f"no {CROSS_CC}: the C exports are left out (apt-get install gcc-aarch64-linux-gnu)",
              file=sys.stderr, flush=True)  # fmt: skip
    for model_id in model_ids:
        report.models[model_id] = _verify_model(env, model_id)
        if progress:
            ok = all(r.ok for r in report.models[model_id].runtimes.values())
            print(f"{model_id}: {'ok' if ok else 'FAIL'}", file=sys.stderr, flush=True)
    report.c_example = c_example(env)
    return report


def _verify_model(env: Path, model_id: str) -> ArmModel:
    entry = registry.get(model_id)
    task = get_task(entry.task)
    x, y = task.test_data()
    if entry.config.takes_images:
        x, y = x[:IMAGE_ROWS], y[:IMAGE_ROWS]
    folder = registry.EXPORT_DIR / model_id
    ref = RUNTIMES["torch"].load(entry.dir, folder, 1)(x)
    with tempfile.TemporaryDirectory() as tmp:
        np.save(Path(tmp) / "x.npy", x)
        jobs = [
            {
                "artifact": str(folder / name),
                "runtime": rt,
                "input": f"{tmp}/x.npy",
                "output": f"{tmp}/{rt}.npz",
            }
            for name, rt in ARTIFACT_RUNTIMES.items()
            if (folder / name).is_file()
        ]
        (Path(tmp) / "jobs.json").write_text(json.dumps(jobs))
        (Path(tmp) / "runner.py").write_text(RUNNER)
        res = emulate(env, [f"{tmp}/runner.py", f"{tmp}/jobs.json"])
        if res.returncode != 0:
            raise HanzooError(f"{model_id} on aarch64: {res.stderr.strip()[-400:]}")
        outs = {j["runtime"]: dict(np.load(j["output"])) for j in jobs}
        if (folder / FORMATS["c"].file).is_file() and shutil.which(CROSS_CC):
            y_c = run_c(env, model_id, folder, x, Path(tmp))
            outs[FORMATS["c"].runtime] = {"output": y_c, **task.decide(y_c)}
    tol, near = output_tolerance(ref["output"]), near_boundary(task, ref["output"])
    ref_metric = metric_value(task, ref["output"], y)
    runtimes = {}
    for rt, out in outs.items():
        err = float(np.abs(out["output"].astype(np.float64) - ref["output"]).max())
        check = check_metric(task, out["output"], y, ref_metric)
        differ = sum(int((out[k] != ref[k]).sum()) for k in ref if k != "output")
        off = sum(int(((out[k] != ref[k]) & ~near).sum()) for k in ref if k != "output")
        runtimes[rt] = ArmParity(err, tol, check.value, differ, bool(err <= tol and check.ok and off == 0))
    return ArmModel(int(len(x)), task.metric, ref_metric, runtimes)


C_SOURCE = CHECKOUT / "examples" / "c"
C_MODEL = "checkerboard-hannet-20x30"
CROSS_CC = "aarch64-linux-gnu-gcc"
# the c runtime's flags (native.FLAGS) less -fPIC -shared: the export is linked into a program
CROSS_FLAGS = tuple(f for f in native.FLAGS if f not in ("-fPIC", "-shared"))

# Runs emulated: every row of argv[1] (float32, RUN_N_IN a row) in one call of the model, as the c runtime
# calls it (whole blocks, then the rows left over), the outputs written to argv[2].
C_RUNNER = r"""
#include <stdio.h>
#include <stdlib.h>
#include "model.h"

int main(int argc, char **argv)
{
    FILE *f;
    long bytes;
    size_t rows;
    float *x, *y;
    if (argc != 3 || !(f = fopen(argv[1], "rb")) || fseek(f, 0, SEEK_END) || (bytes = ftell(f)) < 0)
        return 2;
    rows = (size_t)bytes / (sizeof(float) * RUN_N_IN);
    x = malloc(rows * RUN_N_IN * sizeof(float) + 1);
    y = malloc(rows * RUN_N_OUT * sizeof(float) + 1);
    rewind(f);
    if (!x || !y || fread(x, sizeof(float) * RUN_N_IN, rows, f) != rows || fclose(f))
        return 3;
    if (RUN(x, y, rows) != 0)
        return 4;
    if (!(f = fopen(argv[2], "wb")) || fwrite(y, sizeof(float) * RUN_N_OUT, rows, f) != rows || fclose(f))
        return 5;
    return 0;
}
"""


def cross_compiler() -> str | None:
    """The cross compiler's version line and flags, as the report records them, or None without one."""
    if shutil.which(CROSS_CC) is None:
        return None
    return f"{native.compiler_version((CROSS_CC,)).splitlines()[0]}, {' '.join(CROSS_FLAGS)}"


def run_c(env: Path, model_id: str, folder: Path, x: np.ndarray, tmp: Path) -> np.ndarray:
    """`model_id`'s C export (model.c in `folder`) cross-compiled for arm64 with the c runtime's flags and
    run emulated on the rows of `x`: its outputs."""
    entry = registry.get(model_id)
    n_in, n_out = entry.config.in_features, entry.config.out_features
    runner = tmp / "c_runner.c"
    runner.write_text(C_RUNNER)
    defines = [f"-DRUN={c_name(model_id)}_run", f"-DRUN_N_IN={n_in}", f"-DRUN_N_OUT={n_out}"]
    _run(
        [CROSS_CC, *CROSS_FLAGS, f"-I{folder}", *defines, str(folder / FORMATS["c"].file), str(runner),
         "-o", str(tmp / "c_runner"), "-lm"],
        f"{CROSS_CC} could not build {model_id}'s C export",
    )  # fmt: skip
    np.ascontiguousarray(x, dtype=np.float32).tofile(tmp / "c_x.bin")
    cmd = [str(env / "qemu-aarch64"), "-cpu", CPU, "-L", str(env / "rootfs"), str(tmp / "c_runner")]
    res = subprocess.run([*cmd, str(tmp / "c_x.bin"), str(tmp / "c_y.bin")], capture_output=True, text=True)
    if res.returncode != 0:  # the runner's own codes: 2-3 reading, 4 a refused call, 5 writing
        why = res.stderr.strip()[-300:] or "no message"
        raise HanzooError(f"{model_id}'s C export on aarch64 exits with {res.returncode}: {why}")
    return np.fromfile(tmp / "c_y.bin", dtype=np.float32).reshape(len(x), n_out)


def c_example(env: Path) -> ArmCExample | None:
    """examples/c cross-compiled for arm64 against the arm64 wheel's libonnxruntime and run emulated on
    a shipped model's test_data_set_0; None where the cross compiler or the C API header is missing."""
    header = C_SOURCE / "include" / "onnxruntime_c_api.h"
    if shutil.which(CROSS_CC) is None or not header.is_file():
        return None
    from onnx import load_tensor, numpy_helper  # noqa: PLC0415 - the [onnx] extra, for test_data_set_0

    (lib,) = sorted((env / "site" / "onnxruntime" / "capi").glob("libonnxruntime.so.*"))[:1]
    data = registry.EXPORT_DIR / C_MODEL / "test_data_set_0"
    x = numpy_helper.to_array(load_tensor(str(data / "input_0.pb")))
    want = numpy_helper.to_array(load_tensor(str(data / "output_0.pb")))
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "libonnxruntime.so.1").symlink_to(lib)
        _run(
            [CROSS_CC, "-std=c11", "-Wall", "-Wextra", "-O2", f"-I{header.parent}",
             str(C_SOURCE / "hanzoo_run.c"), "-o", f"{tmp}/hanzoo_run", f"{tmp}/libonnxruntime.so.1",
             "-Wl,-rpath,$ORIGIN"],
            f"{CROSS_CC} could not build examples/c",
        )  # fmt: skip
        x.tofile(f"{tmp}/input.bin")
        model = registry.EXPORT_DIR / C_MODEL / FORMATS["ort"].file
        cmd = [str(env / "qemu-aarch64"), "-cpu", CPU, "-L", str(env / "rootfs"), f"{tmp}/hanzoo_run"]
        res = subprocess.run(
            [*cmd, str(model), f"{tmp}/input.bin", str(len(x)), f"{tmp}/out.bin"],
            capture_output=True,
            text=True,
        )
        if res.returncode != 0:
            raise HanzooError(f"examples/c on aarch64: {res.stderr.strip()}")
        got = np.fromfile(f"{tmp}/out.bin", dtype=np.float32).reshape(want.shape)
    err, tol = float(np.abs(got - want).max()), output_tolerance(want)
    return ArmCExample(C_MODEL, CROSS_CC, err, tol, err <= tol)


def write_report(report: ArmReport, path: Path) -> Path:
    """Write `report`; an existing report made in the same emulated environment keeps its other models,
    so re-checking a few models (`hanzoo verify ID --arch aarch64 --report ...`) updates their rows only."""
    path = Path(path)
    try:
        old = ArmReport.read(path) if path.is_file() else None
    except HanzooError:
        old = None  # a damaged report is replaced whole
    if old and (old.cpu, old.emulator, old.wheels) == (report.cpu, report.emulator, report.wheels):
        merged = {**old.models, **report.models}
        report = replace(
            report,
            models=merged,
            c_example=report.c_example or old.c_example,
            c_compiler=report.c_compiler or old.c_compiler,
        )
    with written_atomically(path) as tmp:
        tmp.write_text(json.dumps(report.to_json(), indent=1) + "\n")
    return path
