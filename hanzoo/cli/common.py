"""What every command shares: the console, the argument types, and the output-folder check."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from rich.console import Console

from ..errors import HanzooError

# Off a terminal (pipes, CI logs) rich assumes 80 columns, too narrow for the model table.
console = Console() if sys.stdout.isatty() else Console(width=200)


def check_out_folder(path: str | None, flag: str, replaces: str | None = None) -> None:
    """Refuse a folder that cannot be written before any work is done (training takes hours, and its
    writer would only fail at the end). With `replaces`, the command swaps the folder in whole, so an
    existing folder must be empty or one it wrote before (holding `replaces`): never a user's other files."""
    if not path:
        return
    p = Path(path)
    # os.path's tests answer False rather than raise on an unreadable parent; the write then names it
    if os.path.lexists(p) and not os.path.isdir(p):
        raise HanzooError(f"cannot write {flag} {p}: it is a file, not a folder")
    if replaces and os.path.isdir(p) and not (p / replaces).exists():
        try:
            others = any(p.iterdir())
        except OSError as e:
            raise HanzooError(f"cannot read {flag} {p}: {e.strerror}") from None
        if others:
            raise HanzooError(
                f"{flag} {p} already holds other files, and hanzoo replaces this folder whole; "
                "give a new or empty folder"
            )
    base = p if os.path.isdir(p) and not replaces else p.parent
    while not os.path.exists(base) and base != base.parent:
        base = base.parent
    if not os.path.isdir(base):
        raise HanzooError(f"cannot write {flag} {p}: {base} is a file, not a folder")
    if not os.access(base, os.W_OK | os.X_OK):
        raise HanzooError(f"cannot write {flag} {p}: no permission to write in {base}")


def positive(text: str) -> int:
    """A whole number of at least 1: a thread count, round count, batch size or iteration count."""
    try:
        n = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if n < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {n}")
    return n


def csv_of(kind):
    def parse(text: str):
        try:
            return tuple(kind(v) for v in text.split(",") if v)
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"expected a comma-separated list of {kind.__name__}, got {text!r}"
            ) from None

    return parse


class UsageError(HanzooError):
    """A command line argparse cannot parse."""


EXPORT_HELP = (
    "the export folder to {verb} (default: the bundled export of the model's id); "
    "for a folder of your own, the one `hanzoo export FOLDER --out EXP` wrote"
)
