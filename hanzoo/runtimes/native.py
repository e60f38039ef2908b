"""The c runtime's library: a C export (model.c, model.h) compiled once with the system compiler into a
shared library, cached, and called through ctypes.

The cache entry is named by the sha256 of the sources, the flags and the compiler's own `--version`, so
an edited export, other flags or another compiler each build their own. It is written under a temporary
name and renamed into place, so a failed or interrupted build leaves nothing, and an entry that no longer
loads (a damaged file) is built again.

The flags are fixed: -O3 and ISO C (-std=c99, which keeps every a*b+c as two roundings), and neither
-march=native nor -ffast-math, so that the library gives the same results on every x86-64 machine, and
within verify's tolerance of any other build.
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import secrets
import shlex
import shutil
import subprocess
from collections.abc import Callable
from functools import lru_cache
from pathlib import Path

from ..errors import HanzooError
from ..zoo.cifar import cache_dir

__all__ = ["FLAGS", "compiler", "missing", "compiler_version", "library_path", "load_function"]

FLAGS = ("-std=c99", "-O3", "-fPIC", "-shared")
COMPILE_TIMEOUT_S = 600  # the largest shipped export (453k weights) compiles in well under a minute


def compiler() -> list[str] | None:
    """The C compiler command ($CC, else cc), or None when it is not on PATH."""
    cmd = shlex.split(os.environ.get("CC") or "cc")
    found = shutil.which(cmd[0]) if cmd else None
    return [found, *cmd[1:]] if found else None


def missing() -> str | None:
    """Why the c runtime cannot run here, in one line, or None."""
    if compiler() is None:
        name = os.environ.get("CC") or "cc"
        return f"no C compiler: {name!r} is not on PATH (install gcc or clang, or set CC)"
    return None


@lru_cache(maxsize=8)
def compiler_version(cmd: tuple[str, ...]) -> str:
    """The compiler's `--version` text: part of the cache key, since another compiler makes other code."""
    try:
        out = subprocess.run([*cmd, "--version"], capture_output=True, text=True, timeout=60)
    except OSError as e:
        raise HanzooError(f"cannot run the C compiler {cmd[0]}: {e.strerror or e}") from None
    return out.stdout.strip() or out.stderr.strip()


def _compiler_or_fail() -> list[str]:
    cmd = compiler()
    if cmd is None:
        raise HanzooError(f"the c runtime cannot run: {missing()}")
    return cmd


def library_path(source: Path, others: list[Path]) -> Path:
    """Where the library of `source` (with the files it includes, `others`) is cached."""
    cmd = _compiler_or_fail()
    h = hashlib.sha256()
    for part in (
        *(p.name.encode() + b"\0" + p.read_bytes() for p in (source, *others)),
        "\0".join(FLAGS).encode(),
        compiler_version(tuple(cmd)).encode(),
    ):
        h.update(hashlib.sha256(part).digest())
    return cache_dir() / "c" / f"{source.stem}-{h.hexdigest()[:32]}.so"


def _first_error(stderr: str) -> str:
    lines = [line.strip() for line in stderr.splitlines() if line.strip()]
    return next((line for line in lines if "error" in line), lines[0] if lines else "no message")


def _build(source: Path, lib: Path) -> None:
    """Compile `source` into `lib`, through a temporary file renamed into place."""
    cmd = _compiler_or_fail()
    lib.parent.mkdir(parents=True, exist_ok=True)
    tmp = lib.with_name(f".{lib.name}.tmp-{os.getpid()}-{secrets.token_hex(4)}")
    try:
        try:
            out = subprocess.run(
                [*cmd, *FLAGS, "-o", str(tmp), str(source), "-lm"],
                capture_output=True,
                text=True,
                timeout=COMPILE_TIMEOUT_S,
            )
        except subprocess.TimeoutExpired:
            raise HanzooError(f"{cmd[0]} took over {COMPILE_TIMEOUT_S} s to compile {source}") from None
        if out.returncode != 0 or not tmp.is_file():
            raise HanzooError(f"{cmd[0]} cannot compile {source}: {_first_error(out.stderr)}")
        os.replace(tmp, lib)
    finally:
        tmp.unlink(missing_ok=True)


def load_function(source: Path, others: list[Path], symbol: str) -> tuple[Callable[..., int], Path]:
    """`int symbol(const float *, float *, size_t)` from the cached library of `source`, built on first
    use (and again if the cached file does not load); returns it and the library's path."""
    lib_path = library_path(source, others)
    lib = None
    if lib_path.is_file():
        try:
            lib = ctypes.CDLL(str(lib_path))
        except OSError:  # a damaged entry: truncated, overwritten, not a library
            lib_path.unlink(missing_ok=True)
    if lib is None:
        _build(source, lib_path)
        try:
            lib = ctypes.CDLL(str(lib_path))
        except OSError as e:
            raise HanzooError(f"the library built from {source} does not load: {e}") from None
    try:
        fn = getattr(lib, symbol)
    except AttributeError:
        raise HanzooError(
            f"{source} defines no {symbol}(): it is the C export of another model; export this one with "
            "`hanzoo export ID --format c`"
        ) from None
    fn.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_size_t]
    fn.restype = ctypes.c_int
    return fn, lib_path
