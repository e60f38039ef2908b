"""The wheel carries the weights and exports: installed outside the repo, with no network, models load."""

import importlib.metadata
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.xdist_group("wheel")  # one worker builds and installs the wheel once


def _setuptools_ok() -> bool:
    try:
        return int(importlib.metadata.version("setuptools").split(".")[0]) >= 68
    except importlib.metadata.PackageNotFoundError:
        return False


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Path:
    tmp = tmp_path_factory.mktemp("wheel")
    # without build isolation when this environment can build it (fast, no index needed)
    iso = ["--no-build-isolation"] if _setuptools_ok() else []
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", *iso, "-w", str(tmp / "dist"), str(REPO)],
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


def _run(installed: Path, code: str) -> str:
    env = {
        **os.environ,
        "PYTHONPATH": str(installed / "site"),
        "HF_HUB_OFFLINE": "1",
        "HF_ENDPOINT": "http://127.0.0.1:9",
        "HF_HUB_CACHE": str(installed / "empty-cache"),
    }
    env.pop("HANZOO_PRETRAINED", None)
    env.pop("HANZOO_EXPORT", None)
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=installed, env=env, capture_output=True, text=True, timeout=300
    )
    assert out.returncode == 0, out.stderr
    return out.stdout


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
    res = json.loads(_run(installed, code).strip().splitlines()[-1])
    site = str(installed / "site")
    assert res["file"].startswith(site), "the wheel's hanzoo, not the checkout's, must be the one imported"
    assert res["folder"].startswith(site) and res["onnx"].startswith(site) and res["export"].startswith(site)
    assert res["pte"].startswith(site) and res["pte"].endswith("model.pte")
    assert "checkerboard-hannet-20x30" in res["shipped"] and len(res["shipped"]) >= 13


def test_installed_cli_lists_models(installed):
    out = _run(installed, "import sys; from hanzoo.cli import main; sys.exit(main(['list', '--json']))")
    rows = json.loads(out)["models"]
    shipped = {r["id"] for r in rows if r["shipped"]}
    assert "checkerboard-hannet-20x30" in shipped
