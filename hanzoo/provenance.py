"""Where a figure came from: package versions, the machine, the git commit. Cards, manifests and
benchmark reports record these, so each is gathered here once."""

from __future__ import annotations

import os
import platform
import subprocess
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import numpy as np
import torch

from .version import __version__

__all__ = ["dist_version", "versions", "git_commit", "machine_line", "cpu_name", "machine"]


def dist_version(dist: str) -> str:
    """The installed version of a distribution, or "(not installed)"."""
    try:
        return version(dist)
    except PackageNotFoundError:
        return "(not installed)"


def versions() -> dict[str, str]:
    """What a training run records of its software."""
    return {
        "hanzoo": __version__,
        "torch": torch.__version__,
        "numpy": np.__version__,
        "python": platform.python_version(),
    }


def git_commit() -> str | None:
    """The checkout's commit, or None outside a git checkout (an installed wheel)."""
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=Path(__file__).parent, capture_output=True, text=True, timeout=5
        )
        return out.stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


def machine_line() -> str:
    """One line for a card: architecture, cores and the torch threads a training used."""
    return f"{platform.machine()} CPU, {os.cpu_count()} cores, {torch.get_num_threads()} torch threads"


def cpu_name() -> str:
    name = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return name


def machine() -> dict:
    """What a benchmark report records of the machine and the runtimes it timed."""
    return {
        "cpu": cpu_name(),
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "onnxruntime": dist_version("onnxruntime"),
        "ai-edge-litert": dist_version("ai-edge-litert"),
        "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
    }
