"""Whatever is in a model folder, loading it gives a module or a HanzooError that names the problem."""

import json
import shutil

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from safetensors.torch import save_file

from hanzoo.errors import HanzooError
from hanzoo.storage.store import load_model as load
from hanzoo.zoo import registry

MODEL = "checkerboard-hannet-20x30"
FUZZ = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


@pytest.fixture
def folder(tmp_path):
    """A copy of a shipped folder without its recorded weights hash: these tests damage the weights on
    purpose, and it is the loader's own checks, not the hash, that must name each problem."""
    out = shutil.copytree(registry.get(MODEL).dir, tmp_path / "m")
    metrics = json.loads((out / "metrics.json").read_text())
    metrics.pop("weights_sha256", None)
    (out / "metrics.json").write_text(json.dumps(metrics))
    return out


def _load_cleanly(folder) -> None:
    """The property under test: a module, or a HanzooError; never another exception."""
    try:
        load(folder)
    except HanzooError as e:
        assert str(e)


@FUZZ
@given(cut=st.floats(0, 0.999))
def test_truncated_weights(folder, cut):
    data = (registry.get(MODEL).dir / "model.safetensors").read_bytes()
    (folder / "model.safetensors").write_bytes(data[: int(cut * len(data))])
    with pytest.raises(HanzooError, match="model.safetensors"):
        load(folder)


@FUZZ
@given(flips=st.lists(st.tuples(st.floats(0, 0.999), st.integers(0, 7)), min_size=1, max_size=8))
def test_bit_flipped_weights(folder, flips):
    data = bytearray((registry.get(MODEL).dir / "model.safetensors").read_bytes())
    for where, bit in flips:
        data[int(where * len(data))] ^= 1 << bit
    (folder / "model.safetensors").write_bytes(bytes(data))
    _load_cleanly(
        folder
    )  # a flip inside the numbers can still be a valid model; the Hub's sha256 pin catches it


@pytest.mark.parametrize("dtype", [torch.float64, torch.float16, torch.bfloat16, torch.int32])
def test_wrong_dtype_is_named(folder, dtype):
    state = {k: v.to(dtype) for k, v in load(MODEL).state_dict().items() if not k.startswith(("x_", "y_"))}
    save_file(state, str(folder / "model.safetensors"))
    with pytest.raises(HanzooError, match=r"tensor .* has dtype .*expected float32"):
        load(folder)


def _json_values():
    return st.recursive(
        st.none() | st.booleans() | st.integers(-5, 5000) | st.floats(allow_nan=True) | st.text(max_size=8),
        lambda kids: st.lists(kids, max_size=3) | st.dictionaries(st.text(max_size=6), kids, max_size=3),
        max_leaves=8,
    )


@FUZZ
@given(
    path=st.lists(
        st.sampled_from(
            [
                "architecture",
                "blocks",
                0,
                1,
                2,
                "width",
                "kind",
                "repeat",
                "act",
                "init",
                "in_features",
                "out_features",
                "task",
                "format_version",
                "preprocessing",
            ]
        ),
        min_size=1,
        max_size=4,
    ),
    value=_json_values(),
)
def test_mutated_config(folder, path, value):
    meta = json.loads((registry.get(MODEL).dir / "config.json").read_text())
    node = meta
    for key in path[:-1]:
        if isinstance(node, dict) and key in node:
            node = node[key]
        elif isinstance(node, list) and isinstance(key, int) and key < len(node):
            node = node[key]
    last = path[-1]
    if isinstance(node, dict) and isinstance(last, str):
        node[last] = value
    elif isinstance(node, list) and isinstance(last, int) and last < len(node):
        node[last] = value
    (folder / "config.json").write_text(json.dumps(meta))
    _load_cleanly(folder)


@FUZZ
@given(cut=st.integers(0, 500))
def test_truncated_config(folder, cut):
    text = (registry.get(MODEL).dir / "config.json").read_text()
    (folder / "config.json").write_text(text[:cut])
    with pytest.raises(HanzooError, match="config.json"):
        load(folder)


@pytest.mark.parametrize(
    "edit, message",
    [
        (lambda m: m.update(extra=1), r"'extra' is not a known field"),
        (lambda m: m["architecture"].update(dropout=0.1), r"architecture.dropout is not a known field"),
        (
            lambda m: m["architecture"]["blocks"][1].update(width="30"),
            r"blocks\[1\].width must be int, got str",
        ),
        (
            lambda m: m["architecture"]["blocks"][0].update(repeat=True),
            r"blocks\[0\].repeat must be int, got bool",
        ),
        (lambda m: m["architecture"].update(in_features=3), r"tensor layers.0.linear.weight has shape"),
        (
            lambda m: m["architecture"]["blocks"][1].update(repeat=16),
            r"does not match the architecture: missing \['layers.18",
        ),
        (lambda m: m.update(task="imagenet"), r"task 'imagenet' is unknown"),
        (lambda m: m.update(model_id="../../x"), r"not a valid model id"),
        (lambda m: m.update(format_version=2), r"format_version 2"),
    ],
)
def test_config_errors_name_the_field(folder, edit, message):
    meta = json.loads((folder / "config.json").read_text())
    edit(meta)
    (folder / "config.json").write_text(json.dumps(meta))
    with pytest.raises(HanzooError, match=message):
        load(folder)


def test_zero_norm_u_is_named(folder):
    state = dict(load(MODEL).state_dict())
    state["layers.5.u"] = torch.zeros_like(state["layers.5.u"])
    save_file({k: v.contiguous() for k, v in state.items()}, str(folder / "model.safetensors"))
    with pytest.raises(HanzooError, match=r"layers.5.u has zero norm"):
        load(folder)


def test_no_pickle_path_exists():
    """Weights are read with safetensors only: no torch.load, pickle or numpy allow_pickle anywhere."""
    from pathlib import Path

    src = Path(__file__).resolve().parents[2] / "hanzoo"
    for f in src.rglob("*.py"):
        text = f.read_text()
        for banned in ("torch.load(", "pickle.load", "allow_pickle=True", "import pickle"):
            assert banned not in text, f"{f.name} uses {banned}"
