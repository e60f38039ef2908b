"""The hanzoo command: parse, call once, print (one line and exit 1 on bad input).

One module per command group (models, train, export, verify, reports), each with its `cmd_<command>`
and the `add_<command>` that declares its arguments; this module holds the table of commands and
main. Project rules live in the library, never here."""

from __future__ import annotations

import argparse
import json
import os
import sys

from ..errors import HanzooError
from ..version import __version__
from . import export, models, reports, train, verify
from .common import UsageError

__all__ = ["main", "parser"]


class _Parser(argparse.ArgumentParser):
    # argparse prints the usage and exits 2; hanzoo's contract is one line and exit 1 for every failure
    def error(self, message: str):
        raise UsageError(f"{message} (see `{self.prog} --help`)")


def _commands() -> list[tuple]:
    """(name, command, help, what adds its arguments), in the order `hanzoo --help` lists them; built at
    each call, so the commands are looked up when a parser is made."""
    return [
        ("list", models.cmd_list, "List every model in the registry.", None),
        ("info", models.cmd_info, "Show one registry entry.", models.add_info),
        (
            "eval",
            models.cmd_eval,
            "Evaluate a shipped model (by id) or a model folder on its task.",
            models.add_eval,
        ),
        (
            "train",
            train.cmd_train,
            "Train a registry model with the paper's protocol (all runs stacked).",
            train.add_train,
        ),
        (
            "export",
            export.cmd_export,
            "Export a model to ONNX, ORT and TFLite in rank-one form, with test data and a manifest.",
            export.add_export,
        ),
        (
            "verify",
            verify.cmd_verify,
            "Check every exported artifact against the torch fp32 reference on the whole test split.",
            verify.add_verify,
        ),
        (
            "bench",
            reports.cmd_bench,
            "Time models in every runtime beside their FCNet baselines (interleaved, medians).",
            reports.add_bench,
        ),
        (
            "site",
            reports.cmd_site,
            "Build the static model gallery, with live demos in onnxruntime-web (serve it from any host).",
            reports.add_site,
        ),
        (
            "reproduce",
            reports.cmd_reproduce,
            "Regenerate docs/reproduction.md (paper Tables 3-5, Figures 1 and 6) from the shipped models.",
            reports.add_reproduce,
        ),
        (
            "predict",
            verify.cmd_predict,
            "Run a shipped model on raw inputs from CSV (with a header) or .npy.",
            verify.add_predict,
        ),
        (
            "download",
            models.cmd_download,
            "Fetch a model's files from the Hub into the HF cache, checked by sha256.",
            models.add_download,
        ),
        (
            "push",
            models.cmd_push,
            "Upload a shipped model to a Hub repo in hanzoo's layout.",
            models.add_push,
        ),
        (
            "import-official",
            train.cmd_import_official,
            "Convert the paper authors' checkpoint into a model folder.",
            train.add_import_official,
        ),
    ]


def parser() -> argparse.ArgumentParser:
    p = _Parser(prog="hanzoo", description="A model zoo of HanNets for edge deployment.")
    p.add_argument("--version", action="version", version=f"hanzoo {__version__}")
    p.add_argument("--offline", action="store_true", help="make no network call (as HF_HUB_OFFLINE=1)")
    sub = p.add_subparsers(dest="command", required=True)
    for name, fn, about, add_arguments in _commands():
        s = sub.add_parser(name, help=about, description=about)
        s.add_argument("--json", action="store_true", help="print machine-readable JSON")
        s.set_defaults(fn=fn)
        if add_arguments:
            add_arguments(s)
    return p


def _fail(message: str) -> int:
    # one line, whatever the message (a runtime's own error text can span several)
    print(
        "hanzoo: error: " + " ".join(line.strip() for line in message.splitlines() if line.strip()),
        file=sys.stderr,
    )
    return 1


def main(argv: list[str] | None = None) -> int:
    try:
        args = parser().parse_args(argv)
    except UsageError as e:
        return _fail(str(e))
    if args.offline:
        os.environ["HF_HUB_OFFLINE"] = "1"
    try:
        result = args.fn(args)
    except HanzooError as e:
        return _fail(str(e))
    except OSError as e:
        # The commands turn the failures they expect into HanzooErrors that say what to do; this is the
        # last resort for one they did not foresee (a file vanishing mid-run), still one line naming it.
        return _fail(
            f"{e.filename}: {e.strerror}" if e.filename and e.strerror else str(e) or type(e).__name__
        )
    except KeyboardInterrupt:
        print("hanzoo: interrupted", file=sys.stderr)
        return 130
    if args.json:
        print(json.dumps(result, indent=2, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
