"""Cortex-M bare metal: each MLP's C export built with Debian's arm-none-eabi-gcc for a Cortex-M4F (hard
float) and a Cortex-M0+ (no FPU, soft float), run under qemu-system-arm with semihosting, and checked
against torch fp32 under `hanzoo verify`'s rule, with its footprint and its instruction count per
inference (`hanzoo verify --arch cortex-m`, `make verify-mcu`, docs/mcu.json).

The export is built as firmware would build it: -Os, and -D<NAME>_BLOCK_ROWS=1, the one-row path alone
(a Cortex-M's FPU has no vector unit for blocks of rows to fill; the block path would cost HanNet-20x30
3,840 more bytes of stack). Each build links with baremetal/ (the start-up file, the linker script for
qemu's MPS2 boards, and the harness that streams the test split over semihosting; harness.c says how).

- flash: .text + .rodata of model.o; RAM: .data + .bss + the stack. The stack is the deepest path
  through model.c's call graph in gcc's -fstack-usage figures (-fcallgraph-info), and is also measured:
  the harness paints the stack, runs rows, and finds the deepest word written. gcc has no figure for a
  function outside model.c (newlib's memcpy, libgcc's soft-float __aeabi_f*), so RAM takes the larger
  of the two: the measured one on the M0+ build.
- instructions: qemu's -icount shift=0 makes the virtual clock advance 1 ns a guest instruction, and
  SysTick counts the 25 MHz core clock on it: a tick is 40 instructions, which a loop of known length
  calibrates. A count per call of <name>_run(x, y, 1), averaged over COST_ROWS test rows. An instruction
  count, not a time: an M4's FPU and flash wait states set the cycles.
- qemu 7.2 has no Cortex-M0+ machine: the ARMv6-M build runs on mps2-an385's Cortex-M3, whose instruction
  set is a superset, on the first M0_ROWS test rows (soft float runs ~35x the instructions).
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from ..errors import HanzooError
from ..files import file_sha256, written_atomically
from ..graphs.export_c import build_c, c_name
from ..storage.store import load_model
from ..typed import read_json, to_json
from ..zoo import registry
from ..zoo.formats import FORMATS
from ..zoo.tasks import get_task
from . import native
from .sessions import RUNTIMES
from .verify import check_metric, metric_value, near_boundary, output_tolerance

__all__ = [
    "TARGETS",
    "FLAGS",
    "McuParity",
    "McuBuild",
    "McuModel",
    "McuTarget",
    "McuVersions",
    "McuReport",
    "Built",
    "Ran",
    "missing",
    "versions",
    "stack_peak",
    "build",
    "run",
    "verify_mcu",
    "write_report",
]

BAREMETAL = Path(__file__).resolve().parent / "baremetal"
CC, SIZE, QEMU = "arm-none-eabi-gcc", "arm-none-eabi-size", "qemu-system-arm"
FLAGS = ("-std=c99", "-Os")  # ISO C as on x86-64 (no FMA contraction), and firmware's usual size flag
COST_ROWS = 16
M0_ROWS = 64
QEMU_TIMEOUT_S = 900  # the largest export (453k weights) runs its 4921 rows in about a minute
COUNTER = (
    "qemu -icount shift=0 (1 ns a guest instruction) and SysTick counting the core clock on that clock, a "
    "whole number of instructions a tick, calibrated on a loop of known length; per call of "
    f"<name>_run(x, y, 1), averaged over the first {COST_ROWS} test rows"
)


@dataclass(frozen=True)
class Target:
    machine: str
    cflags: tuple[str, ...]
    rows: int | None  # test rows checked; None: the whole split
    note: str


TARGETS = {
    "cortex-m4f": Target(
        "mps2-an386",
        ("-mcpu=cortex-m4", "-mthumb", "-mfloat-abi=hard", "-mfpu=fpv4-sp-d16"),
        None,
        "a Cortex-M4 with its single-precision FPU (FPv4-SP), the whole test split",
    ),
    "cortex-m0plus": Target(
        "mps2-an385",
        ("-mcpu=cortex-m0plus", "-mthumb", "-mfloat-abi=soft"),
        M0_ROWS,
        f"ARMv6-M with no FPU, so libgcc's soft float, the first {M0_ROWS} test rows; qemu 7.2 has no "
        "Cortex-M0+ machine, so the build runs on mps2-an385's Cortex-M3, whose instruction set is a "
        "superset of ARMv6-M",
    ),
}


@dataclass
class McuParity:
    """One build on its rows: the largest output error against torch fp32, the task metric it gives
    beside torch's on the same rows, the decisions that differ, the output values whose bits differ from
    the x86-64 c runtime's (None without a C compiler here), and whether verify's rule holds."""

    rows: int
    max_abs_err: float
    tolerance_abs: float
    metric: float
    reference: float
    decisions_differ: int
    bits_differ_x86: int | None
    ok: bool


@dataclass
class McuBuild:
    """One model on one Cortex-M: model.o's sections, the stack (static and measured), the RAM that
    makes, the calls that leave model.c, the instructions per inference, and parity."""

    flash_bytes: int
    text_bytes: int
    rodata_bytes: int
    data_bytes: int
    bss_bytes: int
    stack_bytes: int
    stack_measured_bytes: int
    ram_bytes: int
    calls_outside: list[str]
    instructions_per_row: int
    parity: McuParity


@dataclass
class McuModel:
    metric: str
    test_rows: int
    reference: float  # torch fp32's metric on the whole test split
    targets: dict[str, McuBuild]


@dataclass
class McuTarget:
    machine: str
    cflags: list[str]
    note: str


@dataclass
class McuVersions:
    gcc: str
    qemu: str
    newlib: str


@dataclass
class McuReport:
    """docs/mcu.json: how the exports were built and counted, the targets, every model's builds, and
    the tools' versions (last: the one part a rerun on another machine may change)."""

    flags: list[str]
    counter: str
    targets: dict[str, McuTarget]
    models: dict[str, McuModel] = field(default_factory=dict)
    versions: McuVersions | None = None

    @classmethod
    def read(cls, path: Path) -> McuReport:
        return read_json(cls, path)

    def to_json(self) -> dict:
        return to_json(self)


def missing() -> str | None:
    """Why the Cortex-M check cannot run here, in one line naming the Debian package, or None."""
    for tool, package in (
        (CC, "gcc-arm-none-eabi"),
        (SIZE, "binutils-arm-none-eabi"),
        (QEMU, "qemu-system-arm"),
    ):
        if shutil.which(tool) is None:
            return f"the Cortex-M check needs {tool}: apt-get install {package}"
    specs = subprocess.run(
        [CC, "-print-file-name=rdimon.specs"], capture_output=True, text=True
    ).stdout.strip()
    if not Path(specs).is_file():  # gcc prints the bare name when no multilib folder holds it
        return "the Cortex-M check needs newlib's rdimon.specs: apt-get install libnewlib-arm-none-eabi"
    return None


def _check_tools() -> None:
    why = missing()
    if why:
        raise HanzooError(why)


def versions() -> McuVersions:
    """The versions of the compiler, the emulator and newlib (from its own header)."""
    _check_tools()
    qemu = subprocess.run([QEMU, "--version"], capture_output=True, text=True).stdout.splitlines()[0]
    macros = subprocess.run(
        [CC, "-dM", "-E", "-include", "newlib.h", "-"], input="", capture_output=True, text=True
    ).stdout
    newlib = re.search(r'#define _NEWLIB_VERSION "([^"]+)"', macros)
    return McuVersions(
        native.compiler_version((CC,)).splitlines()[0], qemu.strip(), newlib[1] if newlib else "unknown"
    )


def _run(cmd: list[str], what: str, cwd: Path | None = None) -> str:
    res = subprocess.run(cmd, capture_output=True, text=True, cwd=cwd)
    if res.returncode != 0:
        lines = [line for line in (res.stderr or res.stdout).splitlines() if line.strip()]
        first = next((line for line in lines if "error" in line), lines[0] if lines else "no message")
        raise HanzooError(f"{what}: {first.strip()}")
    return res.stdout


def stack_peak(callgraph: str, root: str) -> tuple[int, list[str]]:
    """The deepest stack from `root` through gcc's -fcallgraph-info=su graph (one .ci file), and the
    functions called that the graph has no figure for (outside the file: libgcc, memset)."""
    frames: dict[str, int | None] = {}  # None: a function the file only calls
    edges: dict[str, set[str]] = {}
    for title, label in re.findall(r'node: \{ title: "([^"]+)" label: "([^"]*)"', callgraph):
        size = re.search(r"\\n(\d+) bytes \((\w+)", label)
        if size and size[2] != "static":
            raise HanzooError(f"{title} has a {size[2]} frame: its stack cannot be bounded statically")
        frames[title] = int(size[1]) if size else None
    for src, dst in re.findall(r'edge: \{ sourcename: "([^"]+)" targetname: "([^"]+)"', callgraph):
        edges.setdefault(src, set()).add(dst)
    outside: set[str] = set()

    def deepest(name: str, seen: frozenset[str]) -> int:
        if name in seen:
            raise HanzooError(f"{name} is recursive: its stack cannot be bounded statically")
        frame = frames.get(name)
        if frame is None:
            outside.add(name)
            return 0
        return frame + max((deepest(d, seen | {name}) for d in edges.get(name, ())), default=0)

    if root not in frames:
        raise HanzooError(f"the call graph has no {root}")
    return deepest(root, frozenset()), sorted(outside)


def _sections(obj: Path) -> dict[str, int]:
    """Bytes of .text, .rodata, .data and .bss in an object (-ffunction-sections' .text.* folded in)."""
    sizes = dict.fromkeys(("text", "rodata", "data", "bss"), 0)
    for line in _run([SIZE, "-A", str(obj)], f"{SIZE} cannot read {obj}").splitlines():
        parts = line.split()
        kind = parts[0].lstrip(".").split(".")[0] if parts and parts[0].startswith(".") else ""
        if kind in sizes and len(parts) >= 2 and parts[1].isdigit():
            sizes[kind] += int(parts[1])
    return sizes


@dataclass
class Built:
    """A check program: its ELF, model.o's section sizes, and model.c's static stack and outside calls."""

    elf: Path
    sections: dict[str, int]
    stack_bytes: int
    calls_outside: list[str]


def _c_sources(model_id: str, dest: Path) -> Path:
    """The C export written from the bundled weights into `dest`: an installed wheel leaves the C sources
    out, and they are a function of the weights alone, the same bytes as a checkout's."""
    entry = registry.get(model_id)
    net = load_model(model_id)
    files = build_c(net, model_id, entry.task, file_sha256(entry.dir / "model.safetensors"))
    dest.mkdir(parents=True, exist_ok=True)
    for file_name, text in files.items():
        (dest / file_name).write_text(text)
    return dest


def build(model_id: str, target: str, work: Path, rows: int) -> Built:
    """`model_id`'s C export (export/<id>/model.c, or written from the bundled weights where an installed
    wheel left it out) as a bare-metal program for `target` that checks up to `rows` rows: model.o
    measured, linked with the start-up file and the harness."""
    _check_tools()
    entry, t, name = registry.get(model_id), TARGETS[target], c_name(model_id)
    work.mkdir(parents=True, exist_ok=True)
    folder = registry.EXPORT_DIR / model_id
    if not (folder / FORMATS["c"].file).is_file():
        folder = _c_sources(model_id, work / "c")
    source = folder / FORMATS["c"].file
    model_flags = [*t.cflags, *FLAGS, f"-D{name.upper()}_BLOCK_ROWS=1"]
    obj = work / "model.o"
    _run(
        [CC, *model_flags, "-fstack-usage", "-fcallgraph-info=su", "-c", str(source), "-o", str(obj)],
        f"{CC} cannot compile {source} for {target}",
        cwd=work,
    )
    stack, outside = stack_peak((work / "model.ci").read_text(), f"{name}_run")
    harness = [
        f"-I{folder}",
        f"-DRUN={name}_run",
        f"-DRUN_N_IN={entry.config.in_features}",
        f"-DRUN_N_OUT={entry.config.out_features}",
        f"-DMAX_ROWS={rows}ul",
        f"-DCOST_ROWS={COST_ROWS}",
    ]
    elf = work / "check.elf"
    _run(
        [CC, *t.cflags, *FLAGS, *harness, "--specs=rdimon.specs", "-nostartfiles",
         f"-T{BAREMETAL / 'mps2.ld'}", "-Wl,--gc-sections", str(BAREMETAL / "startup.c"),
         str(BAREMETAL / "harness.c"), str(obj), "-lm", "-o", str(elf)],
        f"{CC} cannot link {model_id}'s check program for {target}",
    )  # fmt: skip
    return Built(elf, _sections(obj), stack, outside)


@dataclass
class Ran:
    """What a check program gave: the outputs, the instructions a row, and the stack it touched."""

    y: np.ndarray
    instructions_per_row: int
    stack_measured_bytes: int


def run(elf: Path, target: str, x: np.ndarray, n_out: int, work: Path) -> Ran:
    """The program `elf` under qemu-system-arm on the rows of `x` (streamed over semihosting from
    work/x.bin): its outputs, instructions per inference and the stack it touched."""
    np.ascontiguousarray(x, dtype=np.float32).tofile(work / "x.bin")
    (work / "y.bin").unlink(missing_ok=True)
    # -icount: a deterministic virtual clock, 1 ns a guest instruction (see the module's docstring)
    cmd = [QEMU, "-M", TARGETS[target].machine, "-nographic", "-semihosting-config",
           "enable=on,target=native", "-icount", "shift=0,align=off,sleep=off",
           "-kernel", str(elf)]  # fmt: skip
    try:
        res = subprocess.run(
            cmd, capture_output=True, text=True, cwd=work, stdin=subprocess.DEVNULL, timeout=QEMU_TIMEOUT_S
        )
    except subprocess.TimeoutExpired:
        raise HanzooError(f"{elf.name} on {target} did not finish in {QEMU_TIMEOUT_S} s") from None
    line = next((ln for ln in res.stdout.splitlines() if ln.startswith("hanzoo-mcu")), None)
    if line is None or not line.startswith("hanzoo-mcu ok "):
        why = line or (res.stderr or res.stdout).strip()[-300:] or f"qemu exited with {res.returncode}"
        raise HanzooError(f"the check program on {target}: {why}")
    got = {k: int(v) for k, v in re.findall(r"(\w+)=(\d+)", line)}
    per_tick = got["calib_insns"] / got["calib_ticks"]
    if abs(per_tick - round(per_tick)) > 0.01 * per_tick:
        raise HanzooError(f"SysTick does not count whole instructions here ({per_tick:.3f} a tick)")
    instructions = round(got["cost_ticks"] * round(per_tick) / got["cost_rows"])
    y = np.fromfile(work / "y.bin", dtype=np.float32)
    if got["rows"] != len(x) or y.size != len(x) * n_out:
        raise HanzooError(f"the check program on {target} wrote {y.size} values for {len(x)} rows")
    return Ran(y.reshape(len(x), n_out), instructions, got["stack"])


def _parity(task, out: np.ndarray, ref: dict, y: np.ndarray, x86: np.ndarray | None) -> McuParity:
    """verify's rule on the rows of `out` (the first len(out) rows of the reference)."""
    rows = len(out)
    ref = {k: v[:rows] for k, v in ref.items()}
    tol, near = output_tolerance(ref["output"]), near_boundary(task, ref["output"])
    ref_metric = metric_value(task, ref["output"], y[:rows])
    check = check_metric(task, out, y[:rows], ref_metric)
    mine = {"output": out, **task.decide(out)}
    differ = sum(int((mine[k] != ref[k]).sum()) for k in ref if k != "output")
    off = sum(int(((mine[k] != ref[k]) & ~near).sum()) for k in ref if k != "output")
    err = float(np.abs(out.astype(np.float64) - ref["output"]).max())
    bits = None if x86 is None else int((out.view(np.uint32) != x86[:rows].view(np.uint32)).sum())
    ok = bool(err <= tol and check.ok and off == 0)
    return McuParity(rows, err, tol, check.value, ref_metric, differ, bits, ok)


def _verify_model(model_id: str, targets: list[str], progress: bool) -> McuModel:
    entry = registry.get(model_id)
    if entry.config.takes_images:
        raise HanzooError(f"the Cortex-M check runs the MLP models; {model_id} is an image model")
    task = get_task(entry.task)
    x, y = task.test_data()
    x = np.ascontiguousarray(x, dtype=np.float32)
    folder = registry.EXPORT_DIR / model_id
    ref = RUNTIMES["torch"].load(entry.dir, folder, 1)(x)
    x86 = None  # the x86-64 c runtime's bits, where the shipped sources and a compiler are here
    if (folder / FORMATS["c"].file).is_file() and not native.missing():
        x86 = RUNTIMES["c"].load(entry.dir, folder, 1)(x)["output"]
    builds = {}
    for target in targets:
        rows = TARGETS[target].rows or len(x)
        with tempfile.TemporaryDirectory(prefix="hanzoo-mcu-") as tmp:
            built = build(model_id, target, Path(tmp), rows)
            ran = run(built.elf, target, x[:rows], entry.config.out_features, Path(tmp))
        s = built.sections
        ram = s["data"] + s["bss"] + max(built.stack_bytes, ran.stack_measured_bytes)
        builds[target] = McuBuild(
            s["text"] + s["rodata"], s["text"], s["rodata"], s["data"], s["bss"], built.stack_bytes,
            ran.stack_measured_bytes, ram, built.calls_outside, ran.instructions_per_row,
            _parity(task, ran.y, ref, y, x86),
        )  # fmt: skip
        if progress:
            b = builds[target]
            print(f"{model_id} on {target}: {'ok' if b.parity.ok else 'FAIL'}, {b.flash_bytes} B flash, "
                  f"{b.ram_bytes} B RAM, {b.instructions_per_row} instructions a row",
                  file=sys.stderr, flush=True)  # fmt: skip
    return McuModel(task.metric, len(x), metric_value(task, ref["output"], y), builds)


def verify_mcu(model_ids: list[str], targets: list[str] | None = None, progress: bool = True) -> McuReport:
    """Every model of `model_ids` built for each Cortex-M target, run emulated, and checked."""
    _check_tools()
    targets = targets or list(TARGETS)
    report = McuReport(
        [*FLAGS, "-D<NAME>_BLOCK_ROWS=1"],
        COUNTER,
        {t: McuTarget(TARGETS[t].machine, list(TARGETS[t].cflags), TARGETS[t].note) for t in targets},
    )
    for model_id in model_ids:
        report.models[model_id] = _verify_model(model_id, targets, progress)
    report.versions = versions()
    return report


def write_report(report: McuReport, path: Path) -> Path:
    """Write `report`; an existing report made with the same flags and targets keeps its other models, so
    re-checking a few models updates their rows only."""
    path = Path(path)
    try:
        old = McuReport.read(path) if path.is_file() else None
    except HanzooError:
        old = None  # a damaged report is replaced whole
    if old and (old.flags, old.counter, old.targets) == (report.flags, report.counter, report.targets):
        report = replace(report, models={**old.models, **report.models})
    with written_atomically(path) as tmp:
        tmp.write_text(json.dumps(report.to_json(), indent=1) + "\n")
    return path
