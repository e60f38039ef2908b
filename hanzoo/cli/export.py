"""`hanzoo export`: every format, or reduced-precision variants, of a model or a folder."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from ..errors import HanzooError
from ..publishing.export import export, export_variants, parse_formats, unchecked_formats, unchecked_runtimes
from ..zoo import registry
from ..zoo.formats import FORMATS
from .common import check_out_folder, console


def cmd_export(args) -> dict:

    ids = _export_ids(args)
    if args.precision:
        return _export_variants(args, ids)
    formats = parse_formats(args.format) if args.format else None
    check_out_folder(args.out, "--out", replaces="manifest.json")
    if formats is None and not args.json:
        for name, why in unchecked_formats().items():
            console.print(f"not writing the {name} export, whose parity cannot be checked here: {why}")
    if (formats is None or "tflite" in formats) and not args.json:
        for name, why in unchecked_runtimes().items():
            console.print(f"not checking parity in the {name} runtime here: {why}")
    done = []
    for model in ids:
        asked = formats
        if args.all and formats:  # --all: each model in the formats asked for that cover it
            images = registry.get(model).config.takes_images
            asked = [f for f in formats if FORMATS[f].covers(images)]
            if not asked:
                if not args.json:
                    console.print(f"skipped {model}: {', '.join(formats)} does not cover image models")
                continue
        folder = export(model, asked, Path(args.out) if args.out else None)
        manifest = json.loads((folder / "manifest.json").read_text())
        done.append(
            {"model": model, "folder": str(folder), "files": manifest["files"], "parity": manifest["parity"]}
        )
        if not args.json:
            sizes = ", ".join(
                f"{k} {v['bytes']} B" for k, v in manifest["files"].items() if k.startswith("model.")
            )
            console.print(f"wrote {folder}: {sizes} ({manifest['params']} params)")
    return {"exports": done}


def _export_ids(args) -> list:
    """The models `hanzoo export` was asked for: one id or folder, or --all."""
    ids = registry.shipped() if args.all else [args.model]
    if not ids or ids == [None]:
        raise HanzooError("name a model id or folder, or pass --all")
    if args.out and len(ids) > 1:
        raise HanzooError("--out takes one model; drop --all or --out")
    return ids


def _export_variants(args, ids: list) -> dict:
    formats = [f.strip() for f in args.format.split(",") if f.strip()] if args.format else None
    done = []
    for model in ids:
        folder = export_variants(model, args.precision, formats, Path(args.out) if args.out else None)
        manifest = json.loads((folder / "manifest.json").read_text())
        parity = manifest["parity"]["runtimes"]
        runs = {k: v for k, v in parity.items() if v.get("precision") == args.precision}
        done.append({"model": model, "folder": str(folder), "parity": runs})
        if not args.json:
            for name, r in runs.items():
                state = "ok" if r["ok"] else "outside its tolerance"
                console.print(
                    f"{folder}: {name} {manifest['parity']['reference']['metric']} {r['metric']:.6g} "
                    f"(fp32 {manifest['parity']['reference']['value']:.6g}; {state}), "
                    f"max abs error {r['max_abs_err']:.3g}"
                )
    return {"exports": done}


def add_export(s: argparse.ArgumentParser) -> None:
    s.add_argument("model", nargs="?", help="model id or folder")
    s.add_argument("--all", action="store_true", help="every shipped model")
    s.add_argument(
        "--format",
        default=None,
        help=f"comma-separated: {', '.join(FORMATS)} (default: all that cover the model; c covers the MLPs; "
        "with --precision: onnx, tflite). Some formats into an export of the same weights are added to it",
    )
    s.add_argument("--out", help="export folder (default: export/<id>)")
    s.add_argument(
        "--precision",
        choices=registry.PRECISIONS,
        help="add reduced-precision variants (model.fp16.onnx, model.int8.tflite, ...) to an existing "
        "export folder, calibrated on the training split (see docs/quantization.md)",
    )
