"""Which fp16/int8 variants ship, and export/<id>/ made to hold exactly those.

A variant ships only where it wins: its metric within VARIANT_TOLERANCE of fp32 (as verify checks it),
never slower than fp32 beyond the timing noise, and something gained: a smaller file or less time.
`decide` applies that rule to one measured variant (hanzoo.reports.quantization measures every variant,
records the decision in docs/quantization.json and explains it in docs/quantization.md); `ship` takes
that measured report and writes the winning variants into each bundled export folder, removing the others
(and re-pinning them).

`python -m hanzoo.publishing.ship` ships what docs/quantization.json decided.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path

from ..files import DOCS
from ..typed import absent, from_json, read_json, to_json
from ..zoo import registry
from ..zoo.registry import PRECISIONS, VARIANT_FILES
from .export import export_variants, remove_variants


@dataclass
class Latency:
    fp32_us: float
    variant_us: float
    ratio: float  # variant / fp32


@dataclass
class VariantRow:
    """One fp16/int8 variant of one shipped model, as docs/quantization.json records it: its metric against
    fp32's, its bytes, its latency per batch, its ops, and the decision. A variant that could not be built
    or run has its error instead of the figures."""

    model: str
    family: str
    task: str
    format: str
    precision: str
    metric: str
    beyond_fp16: list[str]
    error: str | None = absent()
    fp32: float | None = absent()
    value: float | None = absent()
    delta: float | None = absent()
    metric_ok: bool | None = absent()
    max_abs_err: float | None = absent()
    decisions_differ: int | None = absent()
    bytes: int | None = None
    fp32_bytes: int | None = absent()
    latency: dict[str, Latency] | None = absent()
    ops: dict[str, int] | None = absent()
    quantize_dequantize: int | None = absent()
    float_ops: list[str] | None = absent()
    xnnpack_partitions: int | None = absent()
    ships: bool = False
    why: str = ""


@dataclass
class QuantizationReport:
    """docs/quantization.json: every variant's row, the tolerance and the rule they were held to, and the
    machine and versions that measured them."""

    rows: list[VariantRow]
    tolerance: dict[str, float]
    rule: dict[str, float]
    rounds: int
    threads: int
    machine: str
    versions: dict[str, str | None]

    @classmethod
    def read(cls, path: Path) -> QuantizationReport:
        return read_json(cls, path)

    @classmethod
    def from_json(cls, data: dict, where: str = "the quantization report") -> QuantizationReport:
        return from_json(cls, data, where)

    def to_json(self) -> dict:
        return to_json(self)


SLOWER = 1.10  # median latency ratio variant / fp32 above which a variant counts as slower, at any batch
SMALLER = 0.80  # a file at most this share of the fp32 file's bytes counts as smaller
FASTER = 0.90  # a latency ratio at most this, at some batch, counts as faster


def decide(row: dict) -> tuple[bool, str]:
    """Whether a measured variant ships, and why (the rule in the module's docstring)."""
    if "error" in row:
        return False, f"does not run: {row['error']}"
    if not row["metric_ok"]:
        return False, f"{row['metric']} moves by {abs(row['delta']):.3g}, beyond the variant tolerance"
    ratios = [c["ratio"] for c in row["latency"].values()]
    if max(ratios) > SLOWER:
        return False, f"slower than fp32 ({max(ratios):.2f}x at batch {_worst(row)})"
    size = row["bytes"] / row["fp32_bytes"]
    if size <= SMALLER:
        return True, f"{size:.2f}x the bytes, same speed or better"
    if min(ratios) <= FASTER:
        return True, f"{min(ratios):.2f}x the time"
    return False, f"gains nothing: {size:.2f}x the bytes, {min(ratios):.2f}x-{max(ratios):.2f}x the time"


def _worst(row: dict) -> str:
    return max(row["latency"], key=lambda b: row["latency"][b]["ratio"])


def ship(report: dict) -> dict[str, list[tuple[str, str]]]:
    """Make each bundled export folder hold exactly the variants the report's rows mark as shipping;
    returns, per model, the (format, precision) variants it now holds."""
    shipped = {}
    for model_id in sorted({r["model"] for r in report["rows"]}):
        wins = {
            (r["format"], r["precision"]) for r in report["rows"] if r["model"] == model_id and r["ships"]
        }
        folder = registry.EXPORT_DIR / model_id
        remove_variants(folder, [v for v in VARIANT_FILES if v not in wins])
        for precision in PRECISIONS:
            formats = [f for f, p in sorted(wins) if p == precision]
            if formats:
                export_variants(model_id, precision, formats)
        shipped[model_id] = sorted(wins)
    return shipped


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(
        prog="python -m hanzoo.publishing.ship", description=__doc__.split("\n\n")[0]
    )
    ap.add_argument(
        "report",
        nargs="?",
        type=Path,
        default=DOCS / "quantization.json",
        help="the measured report (default: the checkout's docs/quantization.json)",
    )
    args = ap.parse_args(argv)
    for model_id, wins in ship(QuantizationReport.read(args.report).to_json()).items():
        print(f"{model_id}: {', '.join(f'{p} {f}' for f, p in wins) or 'no variant'}")


if __name__ == "__main__":
    main()
