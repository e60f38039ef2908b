"""docs/benchmarks.json's shape (`hanzoo bench --report`): what `bench` measured, as the docs, the site and
the README's speed summary read it."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..typed import absent, from_json, read_json, to_json

__all__ = ["BenchMetric", "BenchCell", "HeadShare", "BenchReport"]


@dataclass
class BenchMetric:
    name: str
    test: float


@dataclass
class BenchCell:
    """One model in one runtime at one batch: median and p90 latency over interleaved rounds, its size and
    metric, and the ratio to each baseline timed beside it (HanNet / baseline)."""

    model: str
    runtime: str
    batch: int
    median_us: float
    p90_us: float
    samples_per_s: float
    rounds: int
    params: int
    artifact_bytes: int
    metric: BenchMetric | None
    path: str | None  # the path the torch-cuda runtime took, where it reports one
    ratio_vs: dict[str, float] | None = absent()  # a HanNet's cells only


@dataclass
class HeadShare:
    """An image model's HanNet or FCNet head timed alone beside the whole model."""

    model: str
    runtime: str
    batch: int
    whole_us: float
    head_us: float
    share: float
    head_params: int
    params: int


@dataclass
class BenchReport:
    """docs/benchmarks.json: the machine, what was timed, every cell, the image heads' shares, and the
    machine's lower bounds (present once `--report` measured them)."""

    machine: dict[str, str | int | None]
    threads: int
    batches: list[int]
    runtimes: list[str]
    groups: list[list[str]]
    cells: list[BenchCell]
    head_share: list[HeadShare] | None = absent()
    lower_bounds: dict[str, float] | None = absent()

    @classmethod
    def read(cls, path: Path) -> BenchReport:
        return read_json(cls, path)

    @classmethod
    def from_json(cls, data: dict, where: str = "the benchmark report") -> BenchReport:
        return from_json(cls, data, where)

    def to_json(self) -> dict:
        return to_json(self)
