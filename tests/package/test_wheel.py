"""The wheel carries the MLP models' weights and exports and every model's pins, and stays under 40 MB:
installed outside the repo, with no network, those models load; the image models it leaves out come from
the Hub (here a local one), sha256-checked."""

import hashlib
import importlib.metadata
import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

from hanzoo.zoo import pins, registry
from hanzoo.zoo.formats import FORMATS

from ..hub_server import FakeHub

REPO = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.xdist_group("wheel")  # one worker builds and installs the wheel once

MAX_BYTES = 40 * 10**6  # PyPI refuses files over 100 MB; the wheel stays well below
IMAGE_MODEL = "cifar10-hannet"
# what the wheel is built from; a build/ or egg-info folder left by an earlier build is not copied, since
# setuptools would put build/lib's stale files into the wheel
SOURCES = ("pyproject.toml", "README.md", "hanzoo", "pretrained", "export")


def _setuptools_ok() -> bool:
    try:
        return int(importlib.metadata.version("setuptools").split(".")[0]) >= 68
    except importlib.metadata.PackageNotFoundError:
        return False


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Path:
    tmp = tmp_path_factory.mktemp("wheel")
    src = tmp / "src"
    for name in SOURCES:
        if (REPO / name).is_dir():
            shutil.copytree(REPO / name, src / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            src.mkdir(exist_ok=True)
            shutil.copy2(REPO / name, src / name)
    # without build isolation when this environment can build it (fast, no index needed)
    iso = ["--no-build-isolation"] if _setuptools_ok() else []
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", *iso, "-w", str(tmp / "dist"), str(src)],
        check=True,
        capture_output=True,
    )
    (wheel,) = (tmp / "dist").glob("hanzoo-*.whl")
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "-q",
            "--no-deps",
            "--target",
            str(tmp / "site"),
            str(wheel),
        ],
        check=True,
        capture_output=True,
    )
    return tmp


def _wheel(installed: Path) -> Path:
    (wheel,) = (installed / "dist").glob("hanzoo-*.whl")
    return wheel


def _run(installed: Path, code: str, **env_vars: str | None) -> subprocess.CompletedProcess:
    """Run `code` with the installed wheel, offline unless `env_vars` say otherwise (None unsets one)."""
    env = {
        **os.environ,
        "PYTHONPATH": str(installed / "site"),
        "HF_HUB_OFFLINE": "1",
        "HF_ENDPOINT": "http://127.0.0.1:9",
        "HF_HUB_CACHE": str(installed / "empty-cache"),
    }
    env.pop("HANZOO_PRETRAINED", None)
    env.pop("HANZOO_EXPORT", None)
    env.pop("HANZOO_HUB_ORG", None)
    for k, v in env_vars.items():
        if v is None:
            env.pop(k, None)
        else:
            env[k] = v
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=installed, env=env, capture_output=True, text=True, timeout=300
    )
    assert out.returncode == 0, out.stderr
    return out


def _last_json(out: subprocess.CompletedProcess) -> dict:
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_wheel_is_under_40_mb(installed):
    size = _wheel(installed).stat().st_size
    assert size < MAX_BYTES, (
        f"the wheel is {size / 1e6:.1f} MB ({size} bytes), over {MAX_BYTES / 1e6:.0f} MB: see which "
        "models pyproject.toml's exclude-package-data leaves out (registry.ModelEntry.in_wheel)"
    )


def test_pyproject_leaves_out_exactly_the_models_the_registry_keeps_off_the_wheel():
    tomllib = pytest.importorskip("tomllib")
    excluded = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"][
        "exclude-package-data"
    ]
    expected = sorted(f"{e.id}/*" for e in registry.MODELS.values() if not e.in_wheel)
    assert expected, "the image models are the ones the wheel leaves out"
    # and, in every export folder, the files of the formats the wheel does not carry (the C sources)
    files = sorted(f"*/{name}" for f in FORMATS.values() if not f.wheel for name in f.files)
    for package, want in (("hanzoo.pretrained", expected), ("hanzoo.exported", sorted(expected + files))):
        assert sorted(excluded[package]) == want, (
            f"pyproject.toml's exclude-package-data for {package} must name the folders of exactly the "
            "models whose registry entry has in_wheel False (and, for exports, the files of the formats "
            "whose table entry has wheel False)"
        )


def test_wheel_carries_the_mlp_models_and_every_pin(installed):
    with zipfile.ZipFile(_wheel(installed)) as z:
        names = set(z.namelist())
        assert z.read("hanzoo/hub_manifest.json") == pins.MANIFEST.read_bytes()
        pinned = pins.manifest()
        assert sorted(pinned) == sorted(registry.shipped())  # pins for every model, image models too
        for entry in registry.MODELS.values():
            inside = [
                n
                for n in names
                if n.startswith((f"hanzoo/pretrained/{entry.id}/", f"hanzoo/exported/{entry.id}/"))
            ]
            if not entry.in_wheel:
                assert inside == [], f"{entry.id} is an image model, left out of the wheel: {inside}"
                continue
            if not entry.shipped:
                continue
            for name in entry.files:  # the model folder as it ships
                assert f"hanzoo/pretrained/{entry.id}/{name}" in names
            for repo_path, sha in pinned[entry.id]["files"].items():
                if repo_path.split("/")[0] in FORMATS and not FORMATS[repo_path.split("/")[0]].wheel:
                    left_out = f"hanzoo/exported/{entry.id}/{pins.EXPORT_FILES[repo_path]}"
                    assert left_out not in names, f"{left_out}: the wheel leaves out the {repo_path} sources"
                    continue
                if repo_path in pins.EXPORT_FILES:
                    wheel_path = f"hanzoo/exported/{entry.id}/{pins.EXPORT_FILES[repo_path]}"
                elif repo_path == "README.md":  # the Hub's card is generated; the folder's is shipped
                    continue
                else:
                    wheel_path = f"hanzoo/pretrained/{entry.id}/{repo_path}"
                assert hashlib.sha256(z.read(wheel_path)).hexdigest() == sha, wheel_path


def test_wheel_ships_py_typed(installed):
    """PEP 561's marker: a user's type checker reads hanzoo's own annotations."""
    with zipfile.ZipFile(_wheel(installed)) as z:
        assert "hanzoo/py.typed" in z.namelist()


def test_installed_wheel_loads_models_outside_the_repo(installed):
    code = """
import json, hanzoo, torch
from hanzoo.zoo import registry
from hanzoo.zoo.registry import EXPORT_DIR
net = hanzoo.load("checkerboard-hannet-20x30")
with torch.no_grad():
    y = net(torch.zeros(1, 2))
print(json.dumps({"file": hanzoo.__file__, "folder": str(net.folder), "shipped": registry.shipped(),
                  "onnx": str(hanzoo.load_onnx("elevators-hannet-20x200")), "export": str(EXPORT_DIR),
                  "pte": str(hanzoo.load_pte("elevators-hannet-20x200")),
                  "y": y.tolist()}))
"""
    res = _last_json(_run(installed, code))
    site = str(installed / "site")
    assert res["file"].startswith(site), "the wheel's hanzoo, not the checkout's, must be the one imported"
    assert res["folder"].startswith(site) and res["onnx"].startswith(site) and res["export"].startswith(site)
    assert res["pte"].startswith(site) and res["pte"].endswith("model.pte")
    assert "checkerboard-hannet-20x30" in res["shipped"] and len(res["shipped"]) >= 13
    assert sorted(res["shipped"]) == sorted(
        e.id for e in registry.MODELS.values() if e.in_wheel and e.shipped
    )


def test_installed_cli_lists_models(installed):
    out = _run(installed, "import sys; from hanzoo.cli import main; sys.exit(main(['list', '--json']))")
    rows = json.loads(out.stdout)["models"]
    shipped = {r["id"] for r in rows if r["shipped"]}
    assert "checkerboard-hannet-20x30" in shipped
    hub_only = {r["id"] for r in rows if r["on_hub"] and not r["shipped"]}
    assert hub_only == {e.id for e in registry.MODELS.values() if not e.in_wheel}


@pytest.fixture
def hub(tmp_path):
    """A local Hub serving the image model's files as `hanzoo push` would upload them."""
    from hanzoo.publishing import hub as hub_module

    server = FakeHub().start()
    hub_module.stage(IMAGE_MODEL, tmp_path / "stage")
    server.add_folder(f"hanzoo/{IMAGE_MODEL}", tmp_path / "stage")
    yield server
    server.stop()


LOAD_IMAGE_MODEL = f"""
import json, numpy as np, torch, hanzoo
torch.set_num_threads(1)
try:
    net = hanzoo.load("{IMAGE_MODEL}")
    onnx = hanzoo.load_onnx("{IMAGE_MODEL}")
except hanzoo.HanzooError as e:
    print(json.dumps({{"error": str(e)}}))
    raise SystemExit(0)
x = torch.as_tensor(np.random.default_rng(0).integers(0, 256, (4, 32, 32, 3), dtype=np.uint8))
with torch.no_grad():
    y = net(x)
print(json.dumps({{"file": hanzoo.__file__, "folder": str(net.folder), "onnx": str(onnx), "y": y.tolist()}}))
"""


def test_installed_wheel_downloads_an_image_model_from_the_hub(installed, hub, tmp_path):
    cache = tmp_path / "cache"
    out = _run(installed, LOAD_IMAGE_MODEL, HF_HUB_OFFLINE=None, HF_ENDPOINT=hub.url, HF_HUB_CACHE=str(cache))
    res = _last_json(out)
    assert "error" not in res, res
    assert res["file"].startswith(str(installed / "site"))
    # through the Hub path: the files lie in the HF cache, fetched from the server
    assert res["folder"].startswith(str(cache)) and "snapshots" in res["folder"]
    assert res["onnx"].startswith(str(cache)) and res["onnx"].endswith("onnx/model.onnx")
    assert any(r.startswith("GET /cdn/") for r in hub.requests)
    pinned = pins.files(IMAGE_MODEL)
    folder = Path(res["folder"])
    for name in ("config.json", "model.safetensors", "metrics.json", "README.md"):
        assert hashlib.sha256((folder / name).read_bytes()).hexdigest() == pinned[name]
    assert hashlib.sha256(Path(res["onnx"]).read_bytes()).hexdigest() == pinned["onnx/model.onnx"]
    # the same model as the checkout's
    from hanzoo.storage.store import load_model

    x = torch.as_tensor(np.random.default_rng(0).integers(0, 256, (4, 32, 32, 3), dtype=np.uint8))
    with torch.no_grad():
        ref = load_model(IMAGE_MODEL)(x)
    np.testing.assert_allclose(np.array(res["y"], dtype=np.float32), ref.numpy(), rtol=0, atol=1e-5)
    # and the download said what it was doing
    assert f"{IMAGE_MODEL} is not bundled with the installed hanzoo" in out.stderr
    assert f"downloading hanzoo/{IMAGE_MODEL}" in out.stderr and hub.url in out.stderr


def test_installed_wheel_refuses_a_tampered_image_model(installed, hub, tmp_path):
    cache = tmp_path / "cache"
    hub.corrupt = {"model.safetensors"}
    out = _run(installed, LOAD_IMAGE_MODEL, HF_HUB_OFFLINE=None, HF_ENDPOINT=hub.url, HF_HUB_CACHE=str(cache))
    msg = _last_json(out).get("error")
    assert msg, "a tampered file must be refused"
    assert f"{IMAGE_MODEL} is not bundled with the installed hanzoo" in msg
    assert f"model.safetensors from hanzoo/{IMAGE_MODEL}" in msg and "failed its sha256 check" in msg
    assert pins.files(IMAGE_MODEL)["model.safetensors"] in msg and "removed from the cache" in msg
    size = (registry.get(IMAGE_MODEL).dir / "model.safetensors").stat().st_size
    left = [p for p in cache.rglob("*") if p.is_file() and p.stat().st_size == size]
    assert left == [], f"the tampered weights stayed in the cache: {left}"


def test_installed_wheel_says_where_an_image_model_comes_from_offline(installed):
    code = f"""
import json, hanzoo
from hanzoo.storage import store
errors = {{}}
for name, call in [("load", lambda: hanzoo.load("{IMAGE_MODEL}")),
                   ("resolve", lambda: store.resolve("{IMAGE_MODEL}"))]:
    try:
        call()
    except hanzoo.HanzooError as e:
        errors[name] = str(e)
print(json.dumps(errors))
"""
    errors = _last_json(_run(installed, code))
    load = errors["load"]
    assert f"{IMAGE_MODEL} is not bundled with the installed hanzoo" in load and "Hugging Face Hub" in load
    assert "hanzoo is offline" in load and f"`hanzoo download {IMAGE_MODEL}`" in load
    assert "HF_HUB_OFFLINE" in load
    resolve = errors["resolve"]
    assert f"model {IMAGE_MODEL!r} is not installed here" in resolve and "Hugging Face Hub" in resolve
