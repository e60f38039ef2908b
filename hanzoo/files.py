"""Files on disk: folders written all at once, and the sha256 every integrity check reads.

A folder is written all at once: a temporary sibling is filled, then renamed into place.

An interrupted write (an exception, Ctrl-C, or SIGTERM from a job scheduler) removes its temporary
folder, and a later write to the same place sweeps any left by a process that was killed outright
(SIGKILL, power loss): the temporary name carries the writer's pid, so a live writer's is never swept.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import secrets
import shutil
import signal
import tempfile
import threading
from pathlib import Path
from typing import Iterator

from .errors import HanzooError

__all__ = [
    "PACKAGE",
    "CHECKOUT",
    "DOCS",
    "sweep",
    "staged_folder",
    "file_sha256",
    "written_atomically",
    "save_figure",
]

PACKAGE = Path(__file__).resolve().parent  # hanzoo/: the package data (data/, web/, hub_manifest.json)
CHECKOUT = PACKAGE.parent  # the repository, in a source checkout (README.md, docs/, examples/)
DOCS = CHECKOUT / "docs"
EXAMPLES = CHECKOUT / "examples"  # the C program and the app snippets docs/mobile.md includes


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's live process
        return True
    return True


def sweep(dest: Path) -> list[Path]:
    """Remove temporary siblings of `dest` whose writer is gone; returns what was removed."""
    removed = []
    for p in Path(dest).parent.glob(f".{Path(dest).name}.tmp-*"):
        pid = p.name.removeprefix(f".{Path(dest).name}.tmp-").split("-", 1)[0]
        if p.is_dir() and pid.isdigit() and not _alive(int(pid)):
            if p.name.endswith("-old") and not Path(dest).exists():  # killed between its two renames
                p.rename(dest)
                continue
            shutil.rmtree(p, ignore_errors=True)
            removed.append(p)
    return removed


class _Interrupts:
    """SIGINT and SIGTERM raise KeyboardInterrupt (so `finally` blocks clean up), and are remembered: a
    library that swallows the exception (a bare `except:` in an import) cannot make the write go on to
    land."""

    def __init__(self) -> None:
        self.received: int | None = None

    def _handler(self, signum, frame):
        self.received = signum
        raise KeyboardInterrupt(f"signal {signum}")

    @contextlib.contextmanager
    def installed(self) -> Iterator["_Interrupts"]:
        if threading.current_thread() is not threading.main_thread():  # signals reach the main thread only
            yield self
            return
        old = {s: signal.signal(s, self._handler) for s in (signal.SIGINT, signal.SIGTERM)}
        try:
            yield self
        finally:
            for s, h in old.items():
                signal.signal(s, h)

    def check(self) -> None:
        if self.received is not None:
            raise KeyboardInterrupt(f"signal {self.received}")


@contextlib.contextmanager
def staged_folder(dest: Path, marker: str | None = None) -> Iterator[Path]:
    """Yield an empty temporary folder; on success it replaces `dest` (the old one is kept until the new
    one is in place), on any interruption it is removed and `dest` is left as it was. With `marker`, an
    existing `dest` is replaced only if it is empty or holds that file (hanzoo wrote it): a mistyped
    path never deletes a user's other files."""
    dest = Path(dest)
    if dest.exists() and not dest.is_dir():
        raise HanzooError(f"cannot write the folder {dest}: a file of that name exists")
    if marker and dest.is_dir() and not (dest / marker).exists() and any(dest.iterdir()):
        raise HanzooError(
            f"{dest} already holds other files, and hanzoo replaces this folder whole; "
            "give a new or empty folder"
        )
    with _Interrupts().installed() as interrupts:  # before the temporary folder exists: no signal orphans it
        # named before it is made, so an interruption at any point knows what to remove
        tmp = dest.with_name(f".{dest.name}.tmp-{os.getpid()}-{secrets.token_hex(4)}")
        old = None
        try:
            _make_tmp(dest, tmp)
            yield tmp
            interrupts.check()
            if dest.exists():
                old = dest.with_name(f".{dest.name}.tmp-{os.getpid()}-old")
                dest.rename(old)
            try:
                tmp.rename(dest)
            except BaseException:
                if old is not None:
                    old.rename(dest)
                raise
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def _make_tmp(dest: Path, tmp: Path) -> None:
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
        sweep(dest)
        tmp.mkdir()
    except OSError as e:
        blocker = next((a for a in dest.parents if a.exists() and not a.is_dir()), None)
        if blocker is not None:
            raise HanzooError(f"cannot write {dest}: {blocker} is a file, not a folder") from None
        raise HanzooError(f"cannot write to {dest.parent}: {e.strerror}") from None


def file_sha256(path: Path) -> str:
    """The sha256 of a file, read in 1 MB chunks (downloads and tarballs can be large)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


@contextlib.contextmanager
def written_atomically(path: Path) -> Iterator[Path]:
    """Yield a temporary path beside `path` (with its suffix: some writers pick the format by it) for the
    caller to write; on success it replaces `path` in one rename, on any failure it is removed, so a
    reader never sees half a file. An OSError becomes one HanzooError naming `path`."""
    path = Path(path)
    tmp = None
    try:
        fd, name = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=path.suffix, dir=path.parent)
        os.close(fd)
        tmp = Path(name)
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp's file is private; the result is as readable as any other
        yield tmp
        os.replace(tmp, path)
        tmp = None
    except OSError as e:
        raise HanzooError(f"cannot write {path}: {e.strerror or e}") from None
    finally:
        if tmp is not None:
            tmp.unlink(missing_ok=True)


def save_figure(fig, path: Path, dpi: int) -> None:
    """A matplotlib figure as a PNG written whole (no "Software" stamp: the bytes depend on the figure
    alone)."""
    with written_atomically(path) as tmp:
        fig.savefig(tmp, dpi=dpi, metadata={"Software": None})


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask
