"""Downloads through huggingface_hub against a real HTTP server on 127.0.0.1 (tests/hub_server.py)."""

import json
import logging
import re
import shutil
import socket
import time

import numpy as np
import pytest
import torch

pytest.importorskip("huggingface_hub")

from hanzoo.errors import HanzooError  # noqa: E402
from hanzoo.publishing import hub  # noqa: E402
from hanzoo.storage.store import load_model as load_bundled  # noqa: E402
from hanzoo.zoo import pins, registry  # noqa: E402

from ..hub_server import FakeHub  # noqa: E402

MODEL = "checkerboard-hannet-20x30"
REPO = f"hanzoo/{MODEL}"
X = torch.as_tensor(np.random.default_rng(0).uniform(-1, 1, (16, 2)), dtype=torch.float32)
with torch.no_grad():
    REF = load_bundled(MODEL)(X)  # before any test hides the bundle


@pytest.fixture
def fake(tmp_path, monkeypatch):
    """A fresh Hub serving the shipped model at its pinned files, an empty cache, and no bundle."""
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("HANZOO_HUB_ORG", raising=False)
    server = FakeHub().start()
    monkeypatch.setenv("HF_ENDPOINT", server.url)
    hub.stage(MODEL, tmp_path / "stage")
    server.commit = server.add_folder(REPO, tmp_path / "stage")
    yield server
    server.stop()


@pytest.fixture
def no_bundle(tmp_path, monkeypatch):
    """As if hanzoo were installed without its bundled weights: the Hub is the only source."""
    monkeypatch.setattr(registry, "PRETRAINED_DIR", tmp_path / "no-bundle")
    monkeypatch.setattr(registry, "EXPORT_DIR", tmp_path / "no-export")


def _same_outputs(net) -> None:
    with torch.no_grad():
        assert torch.equal(net(X), REF)


def test_manifest_pins_every_shipped_file(tmp_path):
    """The committed hub_manifest.json holds the sha256 of exactly what `hanzoo push` would upload."""
    pinned = pins.manifest()
    assert sorted(pinned) == sorted(registry.shipped())
    for mid in ["checkerboard-hannet-20x30", "elevators-fcnet-5x50"]:
        assert pinned[mid]["files"] == hub.stage(mid, tmp_path / mid)


def test_repinning_in_a_wheel_keeps_the_pins_of_the_image_models_it_leaves_out(tmp_path, monkeypatch):
    """An installed wheel has no image model folders (registry.ModelEntry.in_wheel): re-pinning one of its
    models keeps their pins, which their downloads are checked against, and drops nothing else it has."""
    pretrained, exported = tmp_path / "pretrained", tmp_path / "export"
    carried = [e.id for e in registry.MODELS.values() if e.in_wheel and e.shipped]
    for mid in carried:
        shutil.copytree(registry.get(mid).dir, pretrained / mid)
        shutil.copytree(registry.EXPORT_DIR / mid, exported / mid)
    old = pins.manifest()
    monkeypatch.setattr(registry, "PRETRAINED_DIR", pretrained)
    monkeypatch.setattr(registry, "EXPORT_DIR", exported)
    monkeypatch.setattr(pins, "MANIFEST", tmp_path / "hub_manifest.json")
    pins.MANIFEST.write_text(json.dumps(old))
    hub.write_manifest([MODEL])
    assert pins.manifest() == old
    left_out = [e.id for e in registry.MODELS.values() if not e.in_wheel]
    assert left_out and all(mid in old for mid in left_out)


def test_bundled_weights_come_first_without_network(fake):
    net = hub.load(MODEL)
    assert net.folder == registry.get(MODEL).dir and "HanNet" in net.card
    assert fake.requests == []


def test_explicit_folder_comes_first(fake, tmp_path):
    folder = shutil.copytree(registry.get(MODEL).dir, tmp_path / "mine")
    assert hub.load(folder).folder == folder and fake.requests == []


def test_download_and_load(fake, no_bundle):
    net = hub.load(MODEL)
    _same_outputs(net)
    assert net.card.startswith("---\n") and '"library_name": "hanzoo"' in net.card
    assert "snapshots" in str(net.folder) and any(r.startswith("GET /cdn/") for r in fake.requests)
    onnx = hub.load_onnx(MODEL)
    assert onnx.name == "model.onnx" and hub.sha256(onnx) == hub.pin(MODEL)["files"]["onnx/model.onnx"]


def test_revision_pinning(fake, no_bundle, tmp_path):
    """A later commit on main changes metrics.json: the pinned commit still loads, main fails its hash."""
    changed = tmp_path / "stage2"
    shutil.copytree(tmp_path / "stage", changed)
    (changed / "metrics.json").write_text("{}")
    fake.add_folder(REPO, changed)
    net = hub.load(MODEL, revision=fake.commit)
    assert fake.commit in str(net.folder)
    _same_outputs(net)
    with pytest.raises(HanzooError, match=r"metrics.json from hanzoo/.* failed its sha256 check"):
        hub.load(MODEL, revision="main")


def test_second_load_from_cache_with_server_stopped(fake, no_bundle):
    hub.load(MODEL)
    fake.stop()
    _same_outputs(hub.load(MODEL))


def test_offline_uses_the_cache_and_makes_no_call(fake, no_bundle, monkeypatch):
    hub.load(MODEL)
    before = len(fake.requests)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    _same_outputs(hub.load(MODEL))
    assert len(fake.requests) == before


def test_offline_missing_model_fails_at_once(fake, no_bundle):
    with pytest.raises(HanzooError, match="not in the cache .* offline; run `hanzoo download"):
        hub.load(MODEL, offline=True)
    assert fake.requests == []


@pytest.mark.parametrize("path", ["config.json", "model.safetensors"])
def test_corrupted_file_is_evicted_not_used(fake, no_bundle, path):
    fake.corrupt = {path}
    with pytest.raises(HanzooError) as err:
        hub.load(MODEL)
    msg = str(err.value)
    assert (
        path in msg
        and REPO in msg
        and hub.pin(MODEL)["files"][path] in msg
        and "removed from the cache" in msg
    )
    fake.corrupt = set()  # the Hub is fixed: nothing bad was left in the cache to be served
    _same_outputs(hub.load(MODEL))


def test_interrupted_transfer_resumes(fake, no_bundle, monkeypatch):
    import huggingface_hub.constants

    # the client keeps only whole chunks of a cut transfer (10 MB by default, more than this file): smaller
    # chunks let the cut fall after some of them, so the retry has bytes to resume from
    monkeypatch.setattr(huggingface_hub.constants, "DOWNLOAD_CHUNK_SIZE", 1024)
    fake.truncate = {
        "model.safetensors": 1
    }  # the first transfer stops halfway; the client resumes with Range
    _same_outputs(hub.load(MODEL))
    assert fake.truncate["model.safetensors"] == 0
    size = len(fake.repos[REPO]["commits"][fake.commit]["model.safetensors"])
    ((path, start),) = fake.ranges
    assert (
        path == "model.safetensors" and 0 < start <= size // 2
    )  # resumed after what it had, not started over


def test_transfer_that_keeps_failing_is_a_clean_error(fake, no_bundle):
    fake.truncate = {"model.safetensors": 100}
    with pytest.raises(HanzooError, match="download of model.safetensors from hanzoo/.* failed"):
        hub.load(MODEL)
    fake.truncate = {}
    _same_outputs(hub.load(MODEL))


def test_http_404_repo_and_file(fake, no_bundle, monkeypatch):
    monkeypatch.setenv("HANZOO_HUB_ORG", "nobody")
    with pytest.raises(HanzooError, match="Hub repo nobody/.* does not exist"):
        hub.load(MODEL)
    monkeypatch.delenv("HANZOO_HUB_ORG")
    fake.repos[REPO]["commits"][fake.commit].pop("metrics.json")
    with pytest.raises(HanzooError, match="metrics.json .* does not exist on the Hub"):
        hub.load(MODEL)
    with pytest.raises(HanzooError, match="revision 'v9' does not exist"):
        hub.load(MODEL, revision="v9")


def test_http_500(fake, no_bundle, monkeypatch):
    import huggingface_hub.utils._http as http

    monkeypatch.setattr(
        http.time, "sleep", lambda s: None
    )  # the client's own backoff; no need to wait it out
    fake.status = {"config.json": 500}
    with pytest.raises(HanzooError, match="HTTP 500 for config.json"):
        hub.load(MODEL)
    # a 5xx may be transient: it is still retried (failing fast is only for a Hub that cannot be connected to)
    assert sum(r.startswith("HEAD") and r.endswith("/config.json") for r in fake.requests) > 2


def test_names_are_validated_before_any_path(fake):
    for bad in ["../../etc", "a/b/c", "org/..", "org/na me", ""]:
        with pytest.raises(HanzooError, match="invalid Hub repo name"):
            hub.check_repo(bad)
    with pytest.raises(HanzooError, match="does not exist"):
        hub.load("../../etc/passwd")
    with pytest.raises(HanzooError, match="unknown model id"):
        hub.load("etc-passwd")
    with pytest.raises(HanzooError, match="invalid Hub repo name"):
        hub.fetch(MODEL, ["config.json"], repo="../evil")
    assert fake.requests == []


def test_cli_download_prints_cached_paths(fake, no_bundle, capsys, monkeypatch):
    from hanzoo.cli import main

    monkeypatch.setenv("HF_HUB_OFFLINE", "")  # `--offline` sets it; monkeypatch puts it back
    assert main(["download", MODEL, "--format", "onnx", "--json"]) == 0
    out = capsys.readouterr().out
    assert "onnx/model.onnx" in out and "snapshots" in out
    assert main(["--offline", "download", MODEL, "--format", "tflite"]) == 1  # not cached, and offline


def test_hub_card_front_matter_has_measured_metrics():
    import json

    card = hub.hub_card(MODEL)
    front = json.loads(card.split("---\n")[1])
    metrics = front["model-index"][0]["results"][0]["metrics"]
    acc = next(m["value"] for m in metrics if m["type"] == "accuracy")
    assert acc == round(registry.get(MODEL).metrics["selected"]["test"]["accuracy"], 6)
    assert front["library_name"] == "hanzoo"


def _hub_task(model_id: str) -> str:
    """What the Hub should file a model under: its inputs decide (images for the CIFAR-10 models)."""
    from hanzoo.zoo.tasks import Regression, get_task

    entry = registry.get(model_id)
    if entry.config.backbone:
        return "image-classification"
    return "tabular-regression" if isinstance(get_task(entry.task), Regression) else "tabular-classification"


@pytest.mark.parametrize("model_id", registry.shipped())
def test_hub_card_reads_as_one_front_matter_block_on_the_hub(model_id, tmp_path):
    """hub_card parsed the way the Hub client does (ModelCard, metadata_load): one front-matter block, the
    card's own merged into it, each tag once, the right task, and the metrics of metrics.json."""
    import json

    from huggingface_hub import ModelCard
    from huggingface_hub.repocard import metadata_load

    entry = registry.get(model_id)
    text = hub.hub_card(model_id)
    card = ModelCard(text)
    (tmp_path / "README.md").write_text(text)
    meta = metadata_load(tmp_path / "README.md")
    assert meta == card.data.to_dict()
    assert text.startswith("---\n") and not card.text.lstrip().startswith("---")  # no second block
    own = ModelCard((entry.dir / "README.md").read_text()).data.to_dict()
    assert own and {k: meta[k] for k in own if k != "tags"} == {k: v for k, v in own.items() if k != "tags"}
    assert meta["tags"][: len(own["tags"])] == own["tags"]
    assert len(meta["tags"]) == len(set(meta["tags"])) and {"hannet", entry.task} <= set(meta["tags"])
    assert meta["library_name"] == "hanzoo"
    assert meta["pipeline_tag"] == _hub_task(model_id)
    (index,) = meta["model-index"]
    (result,) = index["results"]
    assert index["name"] == model_id and result["task"]["type"] == _hub_task(model_id)
    assert result["dataset"]["type"] == entry.task and result["dataset"]["split"] == "test"
    measured = json.loads((entry.dir / "metrics.json").read_text())
    want = {
        **measured["selected"]["test"],
        f"{measured['metric']}_mean_over_seeds": measured["seeds_at_selected"]["test"]["mean"],
    }
    got = {m["type"]: m["value"] for m in result["metrics"]}
    assert list(got) == list(want)
    for name, value in want.items():  # stated to 6 significant digits at least: a 4e-06 MSE keeps its digits
        assert isinstance(got[name], float) and got[name] == pytest.approx(value, rel=1e-5, abs=0), name


def test_hub_card_front_matter_is_yaml_where_json_would_be_misread():
    """A number JSON writes without a point (4e-06) is a string to YAML 1.1 (PyYAML, which the Hub client
    parses cards with): such front matter is written as YAML instead, and reads back as the same metadata."""
    from huggingface_hub import EvalResult, ModelCard, ModelCardData

    result = EvalResult(
        task_type="tabular-regression",
        dataset_type="d",
        dataset_name="d",
        metric_type="mse",
        metric_value=4e-06,
    )
    data = ModelCardData(library_name="hanzoo", model_name="m", eval_results=[result])
    text = hub._front_matter(data)
    assert not text.startswith("{")
    assert ModelCard(f"---\n{text}\n---\n").data.to_dict() == data.to_dict()
    value = ModelCard(f"---\n{text}\n---\n").data.to_dict()["model-index"][0]["results"][0]["metrics"][0]
    assert value["value"] == 4e-06


def test_push_uploads_the_hub_layout_and_pins_the_commit(fake, monkeypatch, tmp_path):
    """`hanzoo push` against the local server, then a download of what it pushed, checked by the pins."""
    import json

    manifest = tmp_path / "hub_manifest.json"
    manifest.write_text(pins.MANIFEST.read_text())
    monkeypatch.setattr(pins, "MANIFEST", manifest)
    monkeypatch.setenv("HANZOO_HUB_ORG", "pushed")
    commit = hub.push(MODEL, f"pushed/{MODEL}", token="hf_test")
    files = fake.repos[f"pushed/{MODEL}"]["commits"][commit]
    assert (
        set(files)
        == set(hub.pin(MODEL)["files"])
        >= {
            "config.json",
            "model.safetensors",
            "metrics.json",
            "README.md",
            "onnx/model.onnx",
            "tflite/model.tflite",
            "ort/model.ort",
        }
    )
    assert json.loads(manifest.read_text())[MODEL]["revision"] == commit  # the pin is now an immutable commit
    (card,) = fake.validated  # the front matter went through a YAML parser on the server
    assert card["library_name"] == "hanzoo" and card["model-index"][0]["name"] == MODEL
    assert hub.fetch(MODEL, ["model.safetensors"])["model.safetensors"].parent.name == commit
    with pytest.raises(HanzooError, match="invalid Hub repo name"):
        hub.push(MODEL, "../x", token="hf_test")


# --- a Hub that cannot be connected to --------------------------------------------------------------

UNREACHABLE_S = 5  # huggingface_hub alone retries a failed connection for ~24 s before giving up


def _refusing_endpoint() -> str:
    """A port on 127.0.0.1 that nothing listens on: bound to get a free number, then closed."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{s.getsockname()[1]}"


@pytest.fixture(params=["refused", "unresolvable"])
def dead_hub(request, tmp_path, monkeypatch, no_bundle):
    """HF_ENDPOINT at a port that refuses, or at a name that never resolves (.invalid, RFC 6761); empty
    cache."""
    url = _refusing_endpoint() if request.param == "refused" else "http://hub.invalid"
    monkeypatch.setenv("HF_ENDPOINT", url)
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("HANZOO_HUB_ORG", raising=False)
    return url


def test_unreachable_hub_fails_fast_with_one_clear_line(dead_hub, capfd, caplog):
    from hanzoo.cli import main

    clear = (
        rf"cannot reach {re.escape(dead_hub)} \(\w+\) for config\.json from {REPO} at revision main, "
        r"and it is not in the cache \("
    )
    start = time.monotonic()
    with pytest.raises(HanzooError, match=clear) as err:
        hub.load(MODEL)
    assert time.monotonic() - start < UNREACHABLE_S
    assert "\n" not in str(err.value)
    capfd.readouterr()
    start = time.monotonic()
    assert main(["download", MODEL]) == 1
    assert time.monotonic() - start < UNREACHABLE_S
    lines = capfd.readouterr().err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("hanzoo: error: ") and re.search(clear, lines[0]), lines
    # under pytest, huggingface_hub's "Retrying in 1s..." warnings land in caplog rather than on stderr
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING] == []


def test_unreachable_hub_still_serves_what_is_cached(fake, no_bundle):
    """Failing fast must not cost the cache: with the Hub gone, cached files load and only missing ones
    fail."""
    hub.load(MODEL)
    fake.stop()  # its port now refuses
    start = time.monotonic()
    _same_outputs(hub.load(MODEL))
    with pytest.raises(HanzooError, match=r"cannot reach .* for onnx/model\.onnx .* not in the cache"):
        hub.load_onnx(MODEL)
    assert time.monotonic() - start < UNREACHABLE_S


def test_a_download_asks_the_hub_once_more_at_most(fake, no_bundle):
    """The reachability check is one HEAD per fetch, before the first file that is not cached, and none
    after."""
    hub.load(MODEL)
    heads = [r for r in fake.requests if r.startswith("HEAD")]
    assert len(heads) <= len(hub.FORMATS["torch"]) + 1
    before = len(fake.requests)
    hub.load(MODEL)  # all cached: hf_hub_download's own HEADs only
    assert len(fake.requests) - before <= len(hub.FORMATS["torch"])


# --- advice to train ----------------------------------------------------------------------------


def _trainable(model_id: str) -> bool:
    """What `hanzoo train` accepts (cli.cmd_train): the backbone, or a task with a training protocol."""
    from hanzoo.training.protocols import PROTOCOLS

    entry = registry.get(model_id)
    return entry.family == "backbone" or entry.task in PROTOCOLS


def _advised(message: str) -> list[str]:
    return re.findall(r"hanzoo train ([\w.-]+)", message)


def _check_advice(model_id: str, message: str) -> None:
    advised = _advised(message)
    assert all(a in registry.MODELS and _trainable(a) for a in advised), message
    if not _trainable(model_id):
        assert model_id not in advised and advised, message  # not this one, but what can be trained instead


def test_every_train_advice_names_a_trainable_model(monkeypatch):
    monkeypatch.setattr(pins, "manifest", lambda: {})  # as if nothing were published: pin() gives its advice
    assert not all(
        _trainable(m) for m in registry.MODELS
    )  # the check below has an untrainable entry to catch
    for model_id in registry.MODELS:
        with pytest.raises(HanzooError) as err:
            hub.pin(model_id)
        _check_advice(model_id, str(err.value))


def test_reference_config_says_why_it_cannot_be_trained(monkeypatch):
    monkeypatch.setattr(pins, "manifest", lambda: {})
    with pytest.raises(HanzooError) as err:
        hub.pin("cifar10-head-hannet")
    msg = str(err.value)
    assert "reference config" in msg and "LaNet" in msg and "2048-d" in msg, msg
    assert _advised(msg) == ["cifar10-hannet", "cifar10-fc"], msg
    with pytest.raises(HanzooError) as err:
        hub.pin("cifar10-head-fc")
    assert _advised(str(err.value)) == ["cifar10-fc", "cifar10-hannet"]
    with pytest.raises(HanzooError, match=r"train it with `hanzoo train checkerboard-hannet-20x30`"):
        hub.pin("checkerboard-hannet-20x30")


def test_store_resolve_advice_names_a_trainable_model(tmp_path, monkeypatch):
    from hanzoo.storage import store

    monkeypatch.setattr(
        registry, "PRETRAINED_DIR", tmp_path / "no-bundle"
    )  # nothing shipped: every id gives advice
    for model_id in registry.MODELS:
        with pytest.raises(HanzooError) as err:
            store.resolve(model_id)
        _check_advice(model_id, str(err.value))
