"""The static site in a real browser: every page loads cleanly, every demo runs, and every shipped model
gives its test_data_set_0 outputs in onnxruntime-web within verify's tolerance."""

import os

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

from hanzoo.errors import HanzooError
from hanzoo.reports.site import DEMO_SHOTS, browser, build, chromium, open_page, serve, shoot, wait_for_demo
from hanzoo.runtimes.verify import output_tolerance
from hanzoo.zoo import registry
from hanzoo.zoo.tasks import get_task


def _why_not() -> str | None:
    try:
        chromium()
    except HanzooError as e:
        if os.geteuid() == 0 or os.environ.get("CI"):
            raise  # `make test` installs it where it can: there, a missing browser is a failure
        return str(e)
    return None


pytestmark = [
    pytest.mark.skipif(_why_not() is not None, reason=_why_not() or ""),
    pytest.mark.xdist_group("browser"),  # one worker builds the site and starts Chromium once
]

RUN = """([id, data, shape, dtype]) =>
  window.hanzoo.run(id, dtype === "uint8" ? new Uint8Array(data) : new Float32Array(data), shape)"""


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    out = build(tmp_path_factory.mktemp("site") / "site")
    with serve(out) as url, browser() as b:
        yield out, url, b


def test_index_and_every_model_page_load_cleanly(site):
    out, url, b = site
    page, errors = open_page(b, url + "index.html")
    shipped = [e.id for e in registry.MODELS.values() if (out / "files" / e.id / "model.onnx").is_file()]
    assert page.locator("table tr").count() == len(shipped) + 1
    for model_id in shipped:
        page.goto(f"{url}models/{model_id}.html")
        assert page.locator("h1").inner_text() == model_id
    assert errors == []


@pytest.mark.parametrize("name", DEMO_SHOTS)
def test_each_demo_runs(site, name):
    _, url, b = site
    page, errors = open_page(b, f"{url}demo/{name}.html")
    wait_for_demo(page)
    assert errors == [] and page.locator("#error").is_hidden()
    result = {"checkerboard": "#info-left", "regression": "#result", "cifar": "#result"}[name]
    text = page.locator(result).inner_text()
    assert text and "running" not in text, text
    if name == "checkerboard":
        assert "% on the 4921 official test points" in text


def test_every_shipped_model_gives_its_test_data_in_onnxruntime_web(site):
    """test_data_set_0 (the ONNX Model Zoo's pairs) through the page's own runtime, every shipped model."""
    out, url, b = site
    page, errors = open_page(b, url + "index.html")
    for e in registry.MODELS.values():
        folder = registry.EXPORT_DIR / e.id / "test_data_set_0"
        if not (out / "files" / e.id / "model.onnx").is_file():
            continue
        x = numpy_helper.to_array(onnx.load_tensor(str(folder / "input_0.pb")))
        want = [numpy_helper.to_array(onnx.load_tensor(str(p))) for p in sorted(folder.glob("output_*.pb"))]
        got = page.evaluate(RUN, [e.id, x.ravel().tolist(), list(x.shape), str(x.dtype)])
        out_ = np.asarray(got["output"]["data"], dtype=np.float32).reshape(got["output"]["dims"])
        diff, tol = float(np.abs(out_ - want[0]).max()), output_tolerance(want[0])
        assert diff <= tol, f"{e.id}: onnxruntime-web differs by {diff:.3g} (tolerance {tol:.3g})"
        near = get_task(e.task).near_boundary(want[0], tol)
        for name, expected in zip(list(got)[1:], want[1:]):
            flips = np.flatnonzero(np.asarray(got[name]["data"]) != expected)
            assert set(flips) <= set(np.flatnonzero(near)), f"{e.id} {name}: rows {flips[:5]} differ"
    assert errors == []


@pytest.mark.parametrize(
    "call, message",
    [
        (["no-such-model", [0.0, 0.0], [1, 2], "float32"], "unknown model"),
        (["checkerboard-hannet-20x30", [0.0, 0.0, 0.0], [1, 2], "float32"], "needs 2 values, got 3"),
        (["checkerboard-hannet-20x30", [0.0], [1, 1], "float32"], "takes input [rows, 2]"),
        (["checkerboard-hannet-20x30", [float("nan"), 0.0], [1, 2], "float32"], "every value must be finite"),
    ],
)
def test_bad_input_is_rejected_and_shown(site, call, message):
    _, url, b = site
    page, _ = open_page(b, url + "index.html")
    with pytest.raises(Exception) as e:  # noqa: PT011 - Playwright wraps the page's rejection as its own Error
        page.evaluate(RUN, call)
    assert message in str(e.value)
    assert message in page.locator("#error").inner_text()


def test_a_dropped_file_that_is_not_an_image_is_named(site, tmp_path):
    _, url, b = site
    page, _ = open_page(b, f"{url}demo/cifar.html")
    wait_for_demo(page)
    bad = tmp_path / "notes.txt"
    bad.write_text("not an image")
    page.set_input_files("#file", str(bad))
    page.wait_for_selector("#error:not([hidden])")
    assert "notes.txt is not an image" in page.locator("#error").inner_text()


def test_screenshots_of_the_demos(site, tmp_path):
    _, url, b = site
    shots = shoot(b, url, tmp_path)
    assert [p.name for p in shots] == [f"site-{n}.png" for n in DEMO_SHOTS]
    assert all(p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" for p in shots)
