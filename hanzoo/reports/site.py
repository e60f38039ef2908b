"""`hanzoo site`: a static gallery of the zoo, with live inference in the browser through onnxruntime-web.

The site is plain files, for any static host (`python -m http.server -d site` serves it locally):

    index.html            every model: task, params, test metric beside the paper's, file sizes, latency
                          ratio against its baseline, downloads
    models/<id>.html      a model's card, parity and latency
    demo/*.html           Checkerboard (the decision over a 321 x 321 grid), regression (a form of raw
                          features), CIFAR-10 (a test image or your own)
    files/<id>/           the shipped model.onnx, model.ort and model.tflite
    assets/               hanzoo.js (loads each shipped .onnx into onnxruntime-web, WASM, 1 thread), the
                          models' metadata, the demos' data
    ort/                  onnxruntime-web's own .mjs and .wasm files (from node_modules, see package.json)

The pages build no graph themselves: they run the shipped ONNX files. For automation, every page exposes
`window.hanzoo.ready` (a Promise) and `window.hanzoo.run(modelId, data, shape)`, which resolves to the
graph's outputs or rejects with a message naming the problem.
"""

from __future__ import annotations

import contextlib
import functools
import html
import http.server
import io
import json
import os
import shutil
import tempfile
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ..errors import HanzooError
from ..files import CHECKOUT, PACKAGE, staged_folder, written_atomically
from ..zoo import registry
from ..zoo.cifar import CLASSES, pillow
from ..zoo.formats import FORMATS
from ..zoo.tasks import get_task
from .docs import DTYPES, output_unit
from .timings import BenchReport

if TYPE_CHECKING:  # an optional extra ([site]), imported on use below
    from playwright.sync_api import Browser, Page

ROOT = CHECKOUT
# onnxruntime-web's files, from `npm ci` in a checkout (package.json pins the version), or $HANZOO_ORT_WEB
ORT_DIST = Path(os.environ.get("HANZOO_ORT_WEB") or ROOT / "node_modules" / "onnxruntime-web" / "dist")
ORT_FILES = ("ort.wasm.min.mjs", "ort-wasm-simd-threaded.mjs", "ort-wasm-simd-threaded.wasm")
WEB = PACKAGE / "reports" / "web"  # the hand-written page assets: hanzoo.js, demos, style


def ort_dist() -> Path:
    missing = [f for f in ORT_FILES if not (ORT_DIST / f).is_file()]
    if missing:
        raise HanzooError(
            f"onnxruntime-web is not installed ({ORT_DIST / missing[0]} is missing): run `npm ci` in the "
            "checkout (package.json pins its version)"
        )
    return ORT_DIST


def build(out: Path) -> Path:
    """Write the whole site into `out` (replaced only once it is complete); returns `out`."""
    dist = ort_dist()
    onnx = FORMATS["onnx"].file
    models = [e for e in registry.MODELS.values() if (registry.EXPORT_DIR / e.id / onnx).is_file()]
    if not models:
        raise HanzooError(f"no exported model in {registry.EXPORT_DIR}; run `hanzoo export --all` first")
    bench = _benchmarks()
    with staged_folder(Path(out), marker="index.html") as tmp:
        for sub in ("ort", "assets", "demo", "models", "files"):
            (tmp / sub).mkdir()
        for name in ORT_FILES:
            shutil.copy2(dist / name, tmp / "ort" / name)
        for src in sorted(WEB.iterdir()):
            shutil.copy2(src, tmp / "assets" / src.name)
        for e in models:
            (tmp / "files" / e.id).mkdir()
            for fmt in FORMATS.values():
                for name in fmt.files:
                    src = registry.EXPORT_DIR / e.id / name
                    if src.is_file():
                        shutil.copy2(src, tmp / "files" / e.id / src.name)
            (tmp / "models" / f"{e.id}.html").write_text(model_page(e, bench))
        (tmp / "assets" / "models.json").write_text(json.dumps(_model_specs(models), indent=1))
        _demo_data(tmp / "assets", models)
        (tmp / "index.html").write_text(index_page(models, bench))
        for name, page in DEMOS.items():
            (tmp / "demo" / f"{name}.html").write_text(_demo_page(name, page))
    return Path(out)


def _benchmarks() -> dict:
    path = ROOT / "docs" / "benchmarks.json"
    return BenchReport.read(path).to_json() if path.is_file() else {"cells": []}


def _manifest(model_id: str) -> dict:
    return json.loads((registry.EXPORT_DIR / model_id / "manifest.json").read_text())


def _model_specs(models: list) -> dict:
    """What the page needs to check an input before it runs a model: shape, dtype, columns, units."""
    specs = {}
    for e in models:
        task, manifest = get_task(e.task), _manifest(e.id)
        io = manifest["inputs"][0]
        specs[e.id] = {
            "task": e.task,
            "input_shape": io["shape"][1:],
            "input_dtype": DTYPES.get(io["dtype"], io["dtype"]),
            "features": list(task.features),
            "units": dict(task.units),
            "outputs": [o["name"] for o in manifest["outputs"]],
        }
    return specs


def _demo_data(assets: Path, models: list) -> None:
    ids = [e.id for e in models]
    board = [i for i in ids if registry.get(i).task == "checkerboard"]
    if board:
        split = get_task("checkerboard").split()
        test = [[float(a), float(b), int(y)] for (a, b), y in zip(split.x_test, split.y_test[:, 0])]
        first = next(i for i in board if registry.get(i).family == "hannet")
        base = next((b.id for b in registry.baselines(first) if b.id in board), board[-1])
        order = [first] + [i for i in board if i != first]
        params = {i: registry.get(i).config.num_params for i in board}
        (assets / "checkerboard.json").write_text(
            json.dumps({"test": test, "models": order, "baseline": base, "params": params})
        )
    regression = {}
    for e in models:
        task = get_task(e.task)
        if task.metric == "nrmse":
            x, y = task.test_data()
            target, unit = _target(e.task)
            regression[e.id] = {
                "row": [_short(v) for v in x[0]],
                "truth": float(y[0, 0]),
                "target": target,
                "unit": unit,
            }
    (assets / "regression.json").write_text(json.dumps(regression, indent=1))
    images = [e.id for e in models if e.config.takes_images and e.family != "backbone"]
    if images:
        _cifar_assets(assets, images)


def _short(v) -> float:
    """A float32 as the shortest decimal that reads back to it (-0.02, not -0.019999999552965164)."""
    return float(np.format_float_positional(np.float32(v), unique=True, trim="-"))


def _target(task_name: str) -> tuple[str, str]:
    task = get_task(task_name)
    name = getattr(task, "target", "target")
    return name, output_unit(task_name)[0].replace("`", "")


def _cifar_assets(assets: Path, ids: list[str]) -> None:
    Image = pillow()  # noqa: N806 - the module, under its usual name
    x, y = get_task("cifar10").test_data()
    (assets / "cifar").mkdir()
    for k in range(32):
        buf = io.BytesIO()
        Image.fromarray(x[k]).save(buf, format="PNG")
        (assets / "cifar" / f"{k}.png").write_bytes(buf.getvalue())
    (assets / "cifar.json").write_text(
        json.dumps({"models": ids, "classes": list(CLASSES), "labels": [int(v) for v in y[:32, 0]]})
    )


def _page(title: str, body: str, depth: int, script: str | None = None) -> str:
    up = "../" * depth
    js = f'<script type="module" src="{up}assets/{script}"></script>' if script else ""
    return f"""<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{html.escape(title)} - hanzoo</title>
<link rel="stylesheet" href="{up}assets/style.css">
<link rel="icon" href="data:,">
<script type="module" src="{up}assets/hanzoo.js"></script>
{js}
</head>
<body>
<nav><a href="{up}index.html">hanzoo</a> | <a href="{up}demo/checkerboard.html">Checkerboard</a> |
<a href="{up}demo/regression.html">regression</a> | <a href="{up}demo/cifar.html">CIFAR-10</a></nav>
<p id="error" class="error" hidden></p>
{body}
</body>
</html>
"""


def _row(*cells: str, tag: str = "td") -> str:
    return "<tr>" + "".join(f"<{tag}>{c}</{tag}>" for c in cells) + "</tr>"


def _metric(e) -> str:
    m = e.metrics
    if not m.trained:
        return "-"
    return f"{m.metric} {m.value('test'):.4g}"


def _paper(e) -> str:
    return html.escape(str(e.paper.get("test_accuracy") or e.paper.get("top1_error") or "-"))


def _ratio(bench: dict, model_id: str, runtime: str = "onnxruntime") -> str:
    """HanNet / its first baseline, median latency at each timed batch, from docs/benchmarks.json."""
    cells = [
        c for c in bench["cells"] if c["model"] == model_id and c["runtime"] == runtime and c.get("ratio_vs")
    ]
    if not cells:
        return "-"
    base = next(iter(cells[0]["ratio_vs"]))
    ratios = ", ".join(f"{c['ratio_vs'][base]:.2f}x at {c['batch']}" for c in cells)
    return f"{ratios} vs <code>{base}</code>"


def _downloads(model_id: str, depth: int) -> str:
    files = _manifest(model_id)["files"]
    up = "../" * depth
    # a format's main file under the format's name, the files beside it (the C export's header) under theirs
    links = [(f if name == FORMATS[f].file else name, name) for f in FORMATS for name in FORMATS[f].files]
    return " ".join(
        f'<a href="{up}files/{model_id}/{name}">{label} ({files[name]["bytes"]:,} B)</a>'
        for label, name in links
        if name in files
    )


def index_page(models: list, bench: dict) -> str:
    rows = "\n".join(
        _row(
            f'<a href="models/{e.id}.html">{e.id}</a>',
            e.task,
            f"{e.config.num_params:,}",
            _metric(e),
            _paper(e),
            _ratio(bench, e.id),
            _downloads(e.id, 0),
        )
        for e in models
    )
    head = _row("model", "task", "params", "test (ours)", "paper", "latency vs baseline", "files", tag="th")
    body = f"""<h1>hanzoo: HanNets for the edge</h1>
<p>Every shipped model, its test figure beside the paper's, its files, and how a HanNet's latency compares
with its FCNet baseline (ONNX Runtime, 1 thread, from docs/benchmarks.md). The demos run the same
<code>model.onnx</code> files in this page, through onnxruntime-web.</p>
<table>
{head}
{rows}
</table>"""
    return _page("models", body, 0)


def model_page(e, bench: dict) -> str:
    card = (e.dir / "README.md").read_text() if (e.dir / "README.md").is_file() else ""
    parity = _manifest(e.id).get("parity") or {"runtimes": {}}
    prow = "\n".join(
        _row(name, f"{r['max_abs_err']:.2e}", f"{r['metric']:.6g}", "ok" if r["ok"] else "FAIL")
        for name, r in parity["runtimes"].items()
    )
    cells = [c for c in bench["cells"] if c["model"] == e.id]
    lrow = "\n".join(
        f"<tr><td>{c['runtime']}</td><td>{c['batch']}</td><td>{c['median_us']:.1f}</td></tr>" for c in cells
    )
    body = f"""<h1>{e.id}</h1>
<p>{html.escape(e.description)}</p>
<p>Download: {_downloads(e.id, 1)}</p>
<h2>Parity on the whole test split (against torch fp32)</h2>
<table><tr><th>runtime</th><th>max abs err</th><th>metric</th><th>parity</th></tr>
{prow}</table>
<h2>Latency (median us per call, 1 thread)</h2>
<table><tr><th>runtime</th><th>batch</th><th>us</th></tr>
{lrow}</table>
<h2>Card</h2>
<pre class="card">{html.escape(card)}</pre>"""
    return _page(e.id, body, 1)


DEMOS = {
    "checkerboard": (
        "Checkerboard, live",
        """<h1>Checkerboard: the paper's Figure 1, run in your browser</h1>
<p>Each panel is a model's decision (mean of its 2 outputs &gt; 0.5, computed in the graph) over a 321 x 321
grid of [-1, 1]<sup>2</sup>. The shipped files run here, in onnxruntime-web (WASM, 1 thread).</p>
<p>latency batch <select id="batch"><option>1</option><option>64</option>
<option selected>1024</option></select></p>
<div class="panels">
<figure><canvas id="canvas-target" width="321" height="321"></canvas><figcaption>target</figcaption></figure>
<figure><canvas id="canvas-left" width="321" height="321"></canvas>
<figcaption><select id="model-left"></select>
<span id="info-left"></span></figcaption></figure>
<figure><canvas id="canvas-right" width="321" height="321"></canvas>
<figcaption><select id="model-right"></select>
<span id="info-right"></span></figcaption></figure>
</div>""",
    ),
    "regression": (
        "Regression, live",
        """<h1>Elevators and California Housing: predict from raw features</h1>
<p>The inputs are in the dataset's own units (the defaults are the first test row); the model standardizes
them inside its graph and answers in the target's units.</p>
<p>model <select id="model"></select></p>
<form id="features" onsubmit="return false"></form>
<button id="predict">predict</button>
<p id="result"></p>""",
    ),
    "cifar": (
        "CIFAR-10, live",
        """<h1>CIFAR-10 (JPEG): the FC and HanNet heads on one image</h1>
<p>Pick a test image, or choose an image of your own (it is resized to 32 x 32 pixels).</p>
<div id="images" class="strip"></div>
<p><input type="file" id="file" accept="image/*"></p>
<canvas id="image" width="32" height="32"></canvas>
<pre id="result"></pre>""",
    ),
}


def _demo_page(name: str, page: tuple[str, str]) -> str:
    title, body = page
    return _page(title, body, 1, f"{name}.js")


CHROMIUM_ARGS = [
    # the flags a headless Chromium needs on a machine with no network: without the background ones it
    # keeps trying (and failing) to reach Google's hosts
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
DEMO_SHOTS = ("checkerboard", "regression", "cifar")


def chromium() -> str:
    """The Chromium to drive: $HANZOO_CHROMIUM, else Debian's."""
    path = os.environ.get("HANZOO_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
    if not Path(path).is_file():
        raise HanzooError(
            "no Chromium found: install Debian's `chromium` package (apt-get install chromium), or set "
            "HANZOO_CHROMIUM to a Chromium binary"
        )
    return path


def browser_available() -> bool:
    """Whether onnxruntime-web, Playwright and Chromium are all here (what the browser runtime needs)."""
    try:
        ort_dist(), chromium()
        import playwright  # noqa: F401, PLC0415 - only asking whether it is installed
    except (HanzooError, ImportError):
        return False
    return True


@contextlib.contextmanager
def serve(folder: Path) -> Iterator[str]:
    """Serve `folder` on 127.0.0.1 (a free port) while the block runs; yields the base URL."""
    handler = functools.partial(_Quiet, directory=str(folder))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()


class _Quiet(http.server.SimpleHTTPRequestHandler):
    extensions_map = {
        **http.server.SimpleHTTPRequestHandler.extensions_map,
        ".mjs": "text/javascript",
        ".wasm": "application/wasm",
    }

    def log_message(self, *args) -> None:  # a request log per file would drown the test output
        pass


@contextlib.contextmanager
def browser() -> Iterator[Browser]:
    """A headless Chromium, through Playwright (its own browser download does not work offline)."""
    try:
        from playwright.sync_api import sync_playwright  # noqa: PLC0415 - optional, for tests and screenshots
    except ImportError:
        raise HanzooError("driving a browser needs Playwright: pip install 'hanzoo[test]'") from None
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=chromium(), args=CHROMIUM_ARGS)
        try:
            yield b
        finally:
            b.close()


def open_page(b: Browser, url: str) -> tuple[Page, list[str]]:
    """A page at `url`, with the console errors and uncaught exceptions it reports collected."""
    page = b.new_page(viewport={"width": 1150, "height": 620})
    errors: list[str] = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(url)
    # polled flags rather than awaited promises: Chromium may collect a promise Playwright awaits
    page.wait_for_function("document.documentElement.dataset.hanzoo", timeout=60_000)
    if page.evaluate("document.documentElement.dataset.hanzoo") != "ready":
        raise HanzooError(f"{url} could not load its models: {errors[:3]}")
    return page, errors


def wait_for_demo(page: Page, timeout_s: float = 300) -> None:
    """Until the page's demo has run to its end; its failure, if it failed, as a HanzooError."""
    page.wait_for_function("document.documentElement.dataset.demo", timeout=timeout_s * 1000)
    state = page.evaluate("document.documentElement.dataset.demo")
    if state != "done":
        raise HanzooError(f"the demo at {page.url} {state}")


def screenshots(site: Path, out: Path) -> list[Path]:
    """Run each demo in headless Chromium and save docs-ready screenshots (site-<demo>.png) into `out`."""
    with serve(site) as url, browser() as b:
        return shoot(b, url, out)


def shoot(b: Browser, url: str, out: Path) -> list[Path]:
    """The demos of the site served at `url`, each run to the end in browser `b` and saved as a PNG."""
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for name in DEMO_SHOTS:
        page, errors = open_page(b, f"{url}demo/{name}.html")
        wait_for_demo(page)
        if errors:
            raise HanzooError(f"the {name} demo reported errors: {errors[:3]}")
        with written_atomically(out / f"site-{name}.png") as tmp:
            page.screenshot(path=str(tmp), full_page=True)
        written.append(out / f"site-{name}.png")
        page.close()
    return written


TIME_PAIR = """([ids, data, shape, dtype, rounds, blockMs]) => window.hanzoo.timePair(
  ids, dtype === "uint8" ? new Uint8Array(data) : new Float32Array(data), shape, rounds, blockMs)"""


@contextlib.contextmanager
def browser_timer(block_s: float = 0.02) -> Iterator[Callable]:
    """onnxruntime-web in headless Chromium, for `hanzoo bench`: yields `time_pair(model_ids, x, rounds)`,
    which times the models interleaved inside the page (the browser's round trip is not counted) and
    returns their per-call seconds per round."""
    with tempfile.TemporaryDirectory() as tmp:
        folder = build(Path(tmp) / "site")
        with serve(folder) as url, browser() as b:
            page, errors = open_page(b, url + "index.html")

            def time_pair(model_ids: list[str], x: np.ndarray, rounds: int) -> dict[str, list[float]]:
                args = [model_ids, x.ravel().tolist(), list(x.shape), str(x.dtype), rounds, 1000 * block_s]
                samples = page.evaluate(TIME_PAIR, args)
                if errors:
                    raise HanzooError(f"onnxruntime-web reported errors: {errors[:3]}")
                return samples

            yield time_pair
