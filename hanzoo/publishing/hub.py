"""Getting models: `hanzoo.load(ID)` and friends, through a local folder, the installed package, or the Hub.

Resolution order for a model id (or a path):
1. an explicit local folder;
2. the weights bundled with the installed package (`pretrained/`, `export/`; the wheel leaves out the
   image models, `registry.ModelEntry.in_wheel`);
3. the Hugging Face Hub, through `hf_hub_download`, into the standard HF cache.

Every Hub file is pinned twice: by the revision in `hub_manifest.json` and by its sha256 there. A
downloaded file whose hash differs is evicted from the cache and never used. Offline
(`HF_HUB_OFFLINE=1` or `hanzoo --offline`) means no network call at all: only the bundle and the
cache are read. Settings are read when a call is made, not when hanzoo is imported, so
`HF_ENDPOINT`, `HF_HUB_CACHE` and `HF_HUB_OFFLINE` can change within a process.
"""

from __future__ import annotations

import json
import math
import os
import re
import sys
import tempfile
from pathlib import Path

import huggingface_hub as hf
from huggingface_hub import errors as hf_errors

from ..errors import HanzooError
from ..files import file_sha256 as sha256
from ..files import written_atomically
from ..nn.models import Net
from ..storage import integrity, store
from ..zoo import pins, registry
from ..zoo.formats import FORMATS as FORMAT_TABLE
from ..zoo.pins import EXPORT_FILES
from ..zoo.tasks import Regression, get_task

DEFAULT_ORG = "hanzoo"
FORMATS = {
    "torch": ["config.json", "model.safetensors", "metrics.json", "README.md"],
    **{fmt: [f"{fmt}/{name}" for name in f.files] for fmt, f in FORMAT_TABLE.items()},
}
_REPO = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,95}/[A-Za-z0-9][A-Za-z0-9_.-]{0,95}$")
_TRUE = {"1", "true", "yes", "on"}


# --- settings, read at call time ---------------------------------------------------------------


def offline(flag: bool | None = None) -> bool:
    return bool(flag) or os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in _TRUE


def endpoint() -> str:
    return os.environ.get("HF_ENDPOINT", "https://huggingface.co").rstrip("/")


def cache_dir() -> str:
    if "HF_HUB_CACHE" in os.environ:
        return os.environ["HF_HUB_CACHE"]
    home = os.environ.get("HF_HOME", os.path.join(os.path.expanduser("~"), ".cache", "huggingface"))
    return os.path.join(home, "hub")


def timeout() -> float:
    return float(os.environ.get("HF_HUB_ETAG_TIMEOUT", "10"))


# --- names and the manifest -------------------------------------------------------------------


def check_repo(repo: str) -> str:
    """A Hub repo name, checked before it goes near a path or a URL: no traversal, no stray characters."""
    if not isinstance(repo, str) or not _REPO.match(repo) or ".." in repo:
        raise HanzooError(
            f"invalid Hub repo name {repo!r}; expected ORG/NAME with letters, digits, '-', '_' or '.'"
        )
    return repo


def repo_for(model_id: str) -> str:
    entry = registry.get(model_id)  # validates the id: only registry ids get this far
    return check_repo(f"{os.environ.get('HANZOO_HUB_ORG', DEFAULT_ORG)}/{entry.id}")


def pin(model_id: str) -> dict:
    """The pinned revision and the sha256 of every file of a model on the Hub."""
    entry = registry.get(model_id)
    pinned = pins.manifest().get(entry.id)
    if not pinned:
        raise HanzooError(
            f"model {entry.id!r} has no shipped weights and no Hub pin in {pins.MANIFEST.name} (it has "
            f"not been published); {registry.train_advice(entry.id)}"
        )
    return pinned


def _pipeline_tag(model_id: str) -> str:
    """The Hub task of a model: image-classification for the CIFAR-10 models (they take images, through
    their conv backbone), else tabular regression or classification, by the task's kind."""
    entry = registry.get(model_id)
    if entry.config.takes_images:
        return "image-classification"
    if isinstance(get_task(entry.task), Regression):
        return "tabular-regression"
    return "tabular-classification"


def _card_value(value: float) -> float:
    """A measured metric as the Hub card states it: 6 decimals, and never fewer than 6 significant digits
    (an elevators MSE is about 4e-06, which 6 decimals alone would all but erase)."""
    v = float(value)
    if v == 0 or not math.isfinite(v):
        return v
    return round(v, max(6, 5 - math.floor(math.log10(abs(v)))))


def _eval_results(entry: registry.ModelEntry, task_type: str) -> list[hf.EvalResult]:
    """The shipped run's test metrics, and the mean of the headline metric over the seeds."""
    m = entry.metrics
    if not m.trained:
        return []

    def result(metric_type: str, value: float, metric_name: str) -> hf.EvalResult:
        return hf.EvalResult(
            task_type=task_type,
            dataset_type=entry.task,
            dataset_name=entry.task,
            dataset_split="test",
            metric_type=metric_type,
            metric_value=_card_value(value),
            metric_name=metric_name,
        )

    results = [result(name, value, f"test {name} (shipped run)") for name, value in m.scores["test"].items()]
    s = m.spread("test")
    results.append(
        result(
            f"{m.metric}_mean_over_seeds", s["mean"], f"test {m.metric}, mean over {len(s['values'])} seeds"
        )
    )
    return results


def _listed(value) -> list:
    return [] if value is None else [value] if isinstance(value, str) else list(value)


def _front_matter(data: hf.ModelCardData) -> str:
    """The front matter as JSON, a YAML flow mapping (so the block reads as JSON too), when huggingface_hub's
    ModelCard, whose parser is PyYAML's YAML 1.1, reads it back as the same metadata; else as the YAML
    huggingface_hub itself writes. They can differ only on a number JSON writes without a point (4e-06,
    1e+16, NaN), which YAML 1.1 takes for a string."""
    meta = data.to_dict()
    text = json.dumps(meta, indent=1)
    if hf.ModelCard(f"---\n{text}\n---\n").data.to_dict() == meta:
        return text
    return data.to_yaml()


def hub_card(model_id: str) -> str:
    """The model's card as the Hub reads it: one front-matter block, the card's own merged with library,
    license, tags, datasets, pipeline tag and a model-index of the measured test metrics."""
    entry = registry.get(model_id)
    card = hf.ModelCard((entry.dir / "README.md").read_text())
    own = card.data.to_dict()
    own.pop("model-index", None)  # the measured metrics replace any the card states
    task_type = _pipeline_tag(entry.id)
    results = _eval_results(entry, task_type)
    tags = [*_listed(own.get("tags")), "hannet", "householder", entry.family, entry.task, "onnx", "tflite"]
    datasets = [*_listed(own.get("datasets")), entry.task.removesuffix("-20pct")]
    data = hf.ModelCardData(
        **{
            **own,
            "library_name": "hanzoo",
            "license": own.get("license", "mit"),
            "tags": tags,  # ModelCardData keeps each tag once, in order
            "datasets": list(dict.fromkeys(datasets)),
            "pipeline_tag": task_type,
            "model_name": entry.id,
            "eval_results": results or None,
        }
    )
    return f"---\n{_front_matter(data)}\n---\n{card.text}"


def hub_files(model_id: str) -> dict[str, bytes | Path]:
    """The Hub repo layout of a shipped model: repo path -> local file (or generated bytes)."""
    entry = registry.get(model_id)
    if not entry.shipped:
        raise HanzooError(f"model {entry.id!r} has no shipped weights to publish")
    files: dict[str, bytes | Path] = {
        n: entry.dir / n for n in ("config.json", "model.safetensors", "metrics.json")
    }
    files["README.md"] = hub_card(entry.id).encode()
    for repo_path, name in EXPORT_FILES.items():
        if (registry.EXPORT_DIR / entry.id / name).is_file():
            files[repo_path] = registry.EXPORT_DIR / entry.id / name
    return files


def stage(model_id: str, dest: Path) -> dict[str, str]:
    """Write the Hub layout into `dest`; returns repo path -> sha256."""
    hashes = {}
    for repo_path, src in hub_files(model_id).items():
        out = dest / repo_path
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_bytes(src if isinstance(src, bytes) else src.read_bytes())
        hashes[repo_path] = sha256(out)
    return hashes


def write_manifest(model_ids: list[str] | None = None, revisions: dict[str, str] | None = None) -> Path:
    """Pin (re-hash) the Hub files of `model_ids` (default: every shipped model), keeping known revisions.
    Other shipped models keep their pins as they are, so re-pinning one model never blesses another's
    changed files; models no longer shipped are dropped, but for the image models an installed wheel
    leaves out (registry.ModelEntry.in_wheel), whose pins are what their downloads are checked against."""
    old = pins.manifest()
    shipped = registry.shipped()
    hub_only = [e.id for e in registry.MODELS.values() if not e.in_wheel and not e.shipped]
    out = {mid: old[mid] for mid in [*shipped, *hub_only] if mid in old}
    for mid in model_ids or shipped:
        with tempfile.TemporaryDirectory() as tmp:
            files = stage(mid, Path(tmp))
        rev = (revisions or {}).get(mid) or old.get(mid, {}).get("revision", "main")
        out[mid] = {"repo_name": mid, "revision": rev, "files": files}
    with written_atomically(pins.MANIFEST) as tmp_path:
        tmp_path.write_text(json.dumps(out, indent=1, sort_keys=True) + "\n")
    return pins.MANIFEST


def repin_if_bundled(folder: Path) -> bool:
    """After hanzoo rewrote a bundled model folder or export, re-pin that model alone in hub_manifest.json
    (keeping its revision); without this the next load would refuse the new files. Returns whether it
    re-pinned."""
    model_id = integrity.bundled_id(folder, registry.PRETRAINED_DIR) or integrity.bundled_id(
        folder, registry.EXPORT_DIR
    )
    if not model_id or not registry.get(model_id).shipped:
        return False  # a scratch folder, or an export of a model without bundled weights: no pin to keep
    write_manifest([model_id])
    return True


# --- download ---------------------------------------------------------------------------------


def _evict(path: str) -> None:
    """Remove a cached file and the blob it points to, so a bad download is never served again."""
    p = Path(path)
    blob = p.resolve() if p.is_symlink() else None
    for f in (p, blob):
        try:
            if f is not None:
                f.unlink()
        except FileNotFoundError:
            pass


def _not_bundled(model_id: str) -> str | None:
    """Why an installed hanzoo takes a model from the Hub, for what it says on the way: the wheel leaves out
    the image models (registry.ModelEntry.in_wheel). None for a model the package carries, or has here."""
    entry = registry.get(model_id)
    if entry.in_wheel or entry.shipped:
        return None
    return (
        f"{entry.id} is not bundled with the installed hanzoo (the wheel carries the MLP models; the image "
        "models are downloaded from the Hugging Face Hub on first use, each file checked against its "
        f"sha256 pin in {pins.MANIFEST.name})"
    )


def fetch(
    model_id: str,
    files: list[str],
    revision: str | None = None,
    offline_flag: bool | None = None,
    repo: str | None = None,
) -> dict[str, Path]:
    """Download (or find in the cache) `files` of a model's Hub repo, each checked against its pinned
    sha256. For a model the installed wheel leaves out, a download says so on stderr first, and an error
    says so before what went wrong."""
    pinned = pin(model_id)
    repo = check_repo(repo) if repo else repo_for(model_id)
    rev = revision or pinned["revision"]
    note = _not_bundled(model_id)
    try:
        return _fetch(model_id, files, pinned, repo, rev, offline(offline_flag), note)
    except HanzooError as e:
        if note is None:
            raise
        raise HanzooError(f"{note}: {e}") from None


def _fetch(
    model_id: str, files: list[str], pinned: dict, repo: str, rev: str, off: bool, note: str | None
) -> dict[str, Path]:
    probed = off  # offline never touches the network
    out = {}
    for name in files:
        expected = pinned["files"].get(name)
        if expected is None:
            raise HanzooError(f"{repo} has no pinned file {name!r}; pinned files: {sorted(pinned['files'])}")
        where = f"{name} from {repo} at revision {rev}"
        if off:  # a pure cache lookup: no HTTP client is even created
            path = hf.try_to_load_from_cache(repo, name, cache_dir=cache_dir(), revision=rev)
            if not isinstance(path, str):
                raise HanzooError(
                    f"{where} is not in the cache ({cache_dir()}) and hanzoo is offline; run "
                    f"`hanzoo download {model_id}` with network access first, or unset HF_HUB_OFFLINE"
                )
        else:
            # a cached file is served by hf_hub_download even when the Hub is gone, at no retry cost: no probe
            cached = hf.try_to_load_from_cache(repo, name, cache_dir=cache_dir(), revision=rev)
            if not probed and not isinstance(cached, str):
                _fail_fast_if_unreachable(repo, name, rev, where)
                probed = True
                if note:
                    print(
                        f"hanzoo: {note}; downloading {repo} at revision {rev} from {endpoint()} into "
                        f"{cache_dir()} (set HF_HUB_OFFLINE=1 to use the cache alone)",
                        file=sys.stderr,
                        flush=True,
                    )
            path = _download(repo, name, rev, where)
        actual = sha256(Path(path))
        if actual != expected:
            _evict(path)
            raise HanzooError(
                f"{where} failed its sha256 check (expected {expected}, got {actual}); the file "
                "was removed from the cache and not used"
            )
        out[name] = Path(path)
    return out


def _not_connected(e: BaseException) -> bool:
    """A request that failed because no connection could be opened: the name does not resolve, the port
    refuses, TLS fails. Matched by class name because huggingface_hub's transport is httpx2, httpx or
    requests depending on its version; they call this ConnectError or ConnectionError."""
    return any(c.__name__ in ("ConnectError", "ConnectionError") for c in type(e).__mro__)


def _unreachable(cause: BaseException | None, where: str) -> str:
    return (
        f"cannot reach {endpoint()} ({type(cause).__name__ if cause else 'no response'}) for {where}, "
        f"and it is not in the cache ({cache_dir()})"
    )


def _fail_fast_if_unreachable(repo: str, name: str, rev: str, where: str) -> None:
    """Raise at once when the Hub cannot be connected to, before hf_hub_download is asked for a file it lacks.

    When its first HEAD fails and the file is not cached, hf_hub_download asks again through http_backoff:
    6 tries with 1+2+4+8+8 s of sleep, ~24 s, and huggingface_hub has no setting for that (HF_HUB_ETAG_TIMEOUT
    and HF_HUB_DOWNLOAD_TIMEOUT bound each request, not the retries). Waiting does not make a name resolve
    or a closed port open, so one HEAD without retries (get_hf_file_metadata's documented default) tells
    that case apart. Anything else, an answer or a transient failure (5xx, a timeout), is left to
    hf_hub_download with its retries and its resuming of cut transfers. One HEAD per fetch, on a
    connection hf_hub_download then reuses, and none when every file is cached.
    """
    try:
        hf.get_hf_file_metadata(
            hf.hf_hub_url(repo, name, revision=rev, endpoint=endpoint()), timeout=timeout()
        )
    except Exception as e:  # noqa: BLE001 - only a connection that cannot be opened is decided here
        if _not_connected(e):
            raise HanzooError(_unreachable(e, where)) from None


def _download(repo: str, name: str, rev: str, where: str) -> str:
    try:
        return hf.hf_hub_download(
            repo, name, revision=rev, cache_dir=cache_dir(), endpoint=endpoint(), etag_timeout=timeout()
        )
    except hf_errors.LocalEntryNotFoundError as e:
        # the Hub could not be asked (or failed), and there is no cached copy: say what went wrong
        cause = e.__cause__ or e.__context__
        status = getattr(getattr(cause, "response", None), "status_code", None)
        if status:
            raise HanzooError(
                f"the Hub answered HTTP {status} for {where}, and it is not in the cache ({cache_dir()})"
            ) from None
        raise HanzooError(_unreachable(cause, where)) from None
    except hf_errors.RevisionNotFoundError:
        raise HanzooError(f"revision {rev!r} does not exist in {repo}") from None
    except hf_errors.EntryNotFoundError:
        raise HanzooError(f"{where} does not exist on the Hub (HTTP 404)") from None
    except hf_errors.RepositoryNotFoundError:
        raise HanzooError(
            f"Hub repo {repo} does not exist or is private (HTTP 404); set HANZOO_HUB_ORG if "
            "the models live under another organisation"
        ) from None
    except hf_errors.HfHubHTTPError as e:
        status = getattr(getattr(e, "response", None), "status_code", "?")
        raise HanzooError(f"the Hub answered HTTP {status} for {where}: {str(e).splitlines()[0]}") from None
    except OSError as e:  # network errors surface as OSError subclasses or httpx errors (below)
        raise HanzooError(f"download of {where} failed: {e}") from None
    except Exception as e:  # noqa: BLE001 - the HTTP client's transport errors have no common base we import
        raise HanzooError(f"download of {where} failed: {type(e).__name__}: {e}") from None


# --- the public entry points ------------------------------------------------------------------


def model_folder(source: str | Path, revision: str | None = None, offline_flag: bool | None = None) -> Path:
    """The folder holding a model's torch files: a local folder, the bundle, or the Hub cache."""
    folder = store.local_folder(source)
    if folder is not None and (revision is None or Path(source).is_dir()):
        return folder
    files = fetch(registry.get(str(source)).id, FORMATS["torch"], revision, offline_flag)
    return files["config.json"].parent


def load(
    source: str | Path, revision: str | None = None, offline: bool | None = None, compile: bool = False
) -> Net:
    """An eval-mode torch module with its card (`.card`), metrics and config attached. `compile=True`
    compiles its forward in place with torch.compile (inductor): a HanNet's layers become a few fused
    kernels instead of four per layer, which is what costs time at small batches. The first call compiles
    (once for batch 1, once for the rest), which takes seconds and needs a C compiler on the CPU."""
    folder = model_folder(source, revision, offline)
    net = store.load_model(folder, compile=compile)
    card = folder / "README.md"
    net.card = card.read_text() if card.is_file() else ""
    return net


def export_path(
    model_id: str,
    fmt: str,
    revision: str | None = None,
    offline: bool | None = None,
    precision: str = "fp32",
) -> Path:
    """The path of an exported artifact (onnx, tflite, ort, pte or c; `precision` fp16 or int8 for a shipped
    variant, see docs/quantization.md): from the bundle, else the Hub cache. A format of several files
    (the C export's model.c and model.h) gives its main file, with the others beside it."""
    if fmt not in registry.ARTIFACTS:
        raise HanzooError(f"unknown format {fmt!r}; expected one of {sorted(registry.ARTIFACTS)}")
    entry = registry.get(model_id)
    if not FORMAT_TABLE[fmt].covers(entry.config.takes_images):
        raise HanzooError(f"{entry.id} is an image model, which the {fmt} format does not cover")
    if precision == "fp32":
        repo_path, *others = FORMATS[fmt]
    elif (fmt, precision) in registry.VARIANT_FILES:
        repo_path, others = f"{fmt}/{registry.VARIANT_FILES[(fmt, precision)]}", []
        if repo_path not in pins.files(entry.id):
            raise HanzooError(
                f"{entry.id} ships no {precision} {fmt} variant; docs/quantization.md says which ship and why"
            )
    else:
        raise HanzooError(
            f"no {precision!r} variant of the {fmt} format; variants: "
            + ", ".join(f"{p} {f}" for f, p in registry.VARIANT_FILES)
        )
    local = [registry.EXPORT_DIR / entry.id / EXPORT_FILES[p] for p in (repo_path, *others)]
    if all(p.is_file() for p in local) and revision is None:
        for p in local:  # a path handed out is a promise: callers open it without checking
            integrity.check_artifact(p)
        return local[0]
    return fetch(entry.id, [repo_path, *others], revision, offline)[repo_path]


def load_onnx(
    model_id: str,
    revision: str | None = None,
    offline: bool | None = None,
    session: bool = False,
    precision: str = "fp32",
):
    """The model.onnx path (model.fp16.onnx with `precision="fp16"`, where that variant ships), or with
    `session=True` a ready onnxruntime InferenceSession."""
    path = export_path(model_id, "onnx", revision, offline, precision)
    if not session:
        return path
    import onnxruntime as ort  # noqa: PLC0415 - optional runtime, loaded on use

    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])


def load_tflite(
    model_id: str, revision: str | None = None, offline: bool | None = None, precision: str = "fp32"
):
    """The model.tflite path (give it to LiteRT's Interpreter, or ship it in an app); `precision` picks a
    shipped variant."""
    return export_path(model_id, "tflite", revision, offline, precision)


def load_pte(model_id: str, revision: str | None = None, offline: bool | None = None) -> Path:
    """The model.pte path: an ExecuTorch program with the XNNPACK delegate, for a PyTorch mobile app."""
    return export_path(model_id, "pte", revision, offline)


def download(
    model_id: str, fmt: str = "torch", revision: str | None = None, offline: bool | None = None
) -> dict[str, Path]:
    """Fetch a model's files for one format into the HF cache (always from the Hub); returns the local
    paths."""
    if fmt not in FORMATS:
        raise HanzooError(f"unknown format {fmt!r}; expected one of {sorted(FORMATS)}")
    return fetch(model_id, FORMATS[fmt], revision, offline)


def push(model_id: str, repo: str, token: str | None = None, private: bool = False) -> str:
    """Upload a shipped model in the Hub layout with `HfApi.upload_folder`; returns the new commit's id."""
    repo = check_repo(repo)
    if offline():
        raise HanzooError("cannot push while offline (HF_HUB_OFFLINE is set)")
    api = hf.HfApi(endpoint=endpoint(), token=token)
    with tempfile.TemporaryDirectory() as tmp:
        stage(model_id, Path(tmp))
        api.create_repo(repo, private=private, exist_ok=True)
        info = api.upload_folder(repo_id=repo, folder_path=tmp, commit_message=f"hanzoo push {model_id}")
    oid = getattr(info, "oid", None) or str(info)
    if repo == repo_for(model_id) and oid:
        write_manifest([model_id], revisions={model_id: oid})
    return oid
