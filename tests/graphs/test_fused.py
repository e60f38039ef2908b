"""The fused HanNet kernel against the torch module, for every HanNet in the registry.

On CI (no GPU) the kernel runs in Triton's interpreter (see conftest.py); on a GPU machine the
same tests run the compiled kernel.
"""

import numpy as np
import pytest
import torch

from hanzoo import build
from hanzoo.errors import HanzooError
from hanzoo.nn.models import Block, ModelConfig
from hanzoo.runtimes.verify import ABS_TOL
from hanzoo.zoo import registry

triton = pytest.importorskip("triton")
fused = pytest.importorskip("hanzoo.graphs.fused")
DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
# the kernel covers MLPs; an image classifier's HanNet head sits behind a conv backbone (CUDA graphs there)
HANNETS = [e.id for e in registry.MODELS.values() if e.family == "hannet" and not e.config.backbone]


def _net(model_id: str):
    entry = registry.get(model_id)
    if entry.shipped:
        from hanzoo.storage.store import load_model as load

        return load(model_id)
    net = build(entry.config, seed=0).eval()
    with torch.no_grad():  # fresh biases are zero; perturb every parameter so each one is exercised
        for p in net.parameters():
            p.add_(0.1 * torch.randn(p.shape, generator=torch.Generator().manual_seed(p.numel())))
    return net


def _inputs(model_id: str, batch: int) -> torch.Tensor:
    """Rows from the task's test split where the task has data (raw units), else standard normal."""
    from hanzoo.zoo.tasks import get_task

    try:
        x = get_task(registry.get(model_id).task).split().x_test
    except HanzooError:  # a task whose data loader has not landed (the CIFAR-10 heads)
        return torch.randn(
            batch, registry.get(model_id).config.in_features, generator=torch.Generator().manual_seed(batch)
        )
    idx = np.random.default_rng(batch).choice(len(x), size=batch, replace=False)
    return torch.as_tensor(x[idx])


@pytest.mark.parametrize("batch", [1, 7, 1000])
@pytest.mark.parametrize("model_id", HANNETS)
def test_kernel_matches_torch(model_id, batch):
    net = _net(model_id)
    x = _inputs(model_id, batch)
    with torch.no_grad():
        ref = net(x).double()
    # the column loop everywhere, and tl.dot as well where the net has W x W Dense layers
    square = fused.prepare(net)
    modes = [False, True] if square.n_pre + square.n_post else [False]
    for dot in modes:
        kernel = fused.prepare(net.to(DEVICE), device=DEVICE, dot=dot)
        out = kernel(x.to(DEVICE)).cpu().double()
        assert out.shape == ref.shape
        err = float((out - ref).abs().max())
        assert err <= ABS_TOL * max(1.0, float(ref.abs().max())), (model_id, batch, dot, err)


def test_padding_columns_stay_zero_and_rows_are_independent():
    """A row's output must not depend on the other rows of its tile, nor on the batch size."""
    net = _net("checkerboard-hannet-20x30")
    kernel = fused.prepare(net, device=DEVICE)
    x = _inputs("checkerboard-hannet-20x30", 7).to(DEVICE)
    alone = torch.cat([kernel(x[i : i + 1]) for i in range(7)])
    assert torch.allclose(alone, kernel(x), atol=1e-6)


def test_kernel_catches_a_wrong_weight():
    """The parity test can fail: one Han-layer's v with the wrong sign is far outside the tolerance."""
    net = _net("checkerboard-hannet-20x30")
    kernel = fused.prepare(net, device=DEVICE)
    kernel.weights["v"][5] *= -1
    x = _inputs("checkerboard-hannet-20x30", 7)
    with torch.no_grad():
        assert float((kernel(x.to(DEVICE)).cpu() - net(x)).abs().max()) > 10 * ABS_TOL


def test_prepare_folds_the_regression_scaling():
    net = _net("elevators-hannet-20x200")
    assert net.scaling, "the shipped regression nets carry their standardization"
    x = _inputs("elevators-hannet-20x200", 7)
    with torch.no_grad():
        ref = net(x)
    assert torch.allclose(fused.prepare(net, device=DEVICE)(x.to(DEVICE)).cpu(), ref, rtol=1e-4, atol=1e-5)


def test_unsupported_layouts_and_inputs_are_refused():
    mixed = build(ModelConfig(2, 2, (Block("fc", 8, "abs", 1), Block("han", 8, "relu", 2)), "kaiming"))
    with pytest.raises(HanzooError, match="one activation"):
        fused.prepare(mixed)
    kernel = fused.prepare(_net("checkerboard-hannet-20x30"))
    with pytest.raises(HanzooError, match=r"shape \[batch, 2\]"):
        kernel(torch.zeros(3, 5))
    kernel.weights = {k: v.to("meta") for k, v in kernel.weights.items()}
    with pytest.raises(HanzooError, match="input is on cpu, the kernel.s weights on meta"):
        kernel(torch.zeros(3, 2))


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error on a machine without a GPU")
def test_cuda_runtime_says_no_gpu():
    from hanzoo.runtimes.sessions import RUNTIMES

    entry = registry.get("checkerboard-hannet-20x30")
    with pytest.raises(HanzooError, match="needs a CUDA GPU"):
        RUNTIMES["torch-cuda"].load(entry.dir, entry.dir, 1)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message on a machine without a GPU")
def test_gpu_benchmark_script_says_it_needs_a_gpu():
    import subprocess
    import sys
    from pathlib import Path

    script = Path(__file__).resolve().parents[2] / "benchmarks" / "gpu.py"
    out = subprocess.run(
        [sys.executable, str(script), "--out", "/dev/null"], capture_output=True, text=True, timeout=120
    )
    assert out.returncode != 0 and "needs a CUDA GPU" in out.stderr


def test_flops_per_row_counts_rank_one_han_layers():
    import importlib.util
    from pathlib import Path

    spec = importlib.util.spec_from_file_location(
        "gpu_bench", Path(__file__).resolve().parents[2] / "benchmarks" / "gpu.py"
    )
    gpu = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(gpu)
    net = build(registry.get("checkerboard-hannet-20x30").config, seed=0)
    # 2x30 and 2 of 30x30 Dense, 17 Han-layers of 4n, a 30x2 head: 2 flops per multiply-add
    assert gpu.flops_per_row(net) == 2 * (2 * 30 + 2 * 30 * 30 + 30 * 2) + 17 * 4 * 30


def test_image_models_are_refused_with_a_reason():
    net = build(registry.get("cifar10-hannet").config, seed=0)
    with pytest.raises(HanzooError, match="conv backbone"):
        fused.prepare(net, device=DEVICE)


def _gpu_script():
    import importlib.util
    from pathlib import Path

    spec = importlib.util.spec_from_file_location(
        "gpu_bench", Path(__file__).resolve().parents[2] / "benchmarks" / "gpu.py"
    )
    gpu = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(gpu)
    return gpu


def test_gpu_page_is_rendered_from_its_json():
    """Every figure on docs/gpu.md comes from docs/gpu.json through the script's renderer."""
    import json
    from pathlib import Path

    docs = Path(__file__).resolve().parents[2] / "docs"
    gpu = _gpu_script()
    report = json.loads((docs / "gpu.json").read_text())
    md = (docs / "gpu.md").read_text()
    assert gpu.splice(md, gpu.render(report)) == md
    # every shipped HanNet was measured, and the parity it reports holds
    assert set(report["parity"]) == set(gpu.HANNETS)
    assert all(p["loop"]["ok"] and p["dot"]["ok"] for p in report["parity"].values())
    # the launch table the kernel ships is the one those figures ran with
    assert gpu.launch_table(report["launch"]) == fused.LAUNCH


def test_launch_takes_the_nearest_measured_batch(monkeypatch):
    monkeypatch.setattr(fused, "LAUNCH", {(32, 1024): (32, 1), (32, 65536): (64, 2)})
    assert fused.launch_for(32, 1) == fused.launch_for(32, 8000) == (32, 1)
    assert fused.launch_for(32, 9000) == fused.launch_for(32, 10**6) == (64, 2)
    assert fused.launch_for(256, 65536) == (16, 4)  # no entry for the width: a tile of about 4K floats
    kernel = fused.prepare(_net("checkerboard-hannet-20x30"))
    assert kernel.launch(65536) == (64, 2)
    kernel.block_m, kernel.num_warps = 16, 8
    assert kernel.launch(65536) == (16, 8)


@pytest.mark.parametrize("block_m,num_warps", [(16, 1), (64, 8)])
def test_kernel_matches_torch_at_other_launches(block_m, num_warps):
    net = _net("checkerboard-hannet-20x30")
    x = _inputs("checkerboard-hannet-20x30", 100)
    with torch.no_grad():
        ref = net(x).double()
    kernel = fused.prepare(net, device=DEVICE)
    kernel.block_m, kernel.num_warps = block_m, num_warps
    out = kernel(x.to(DEVICE)).cpu().double()
    assert float((out - ref).abs().max()) <= ABS_TOL * max(1.0, float(ref.abs().max()))


@pytest.mark.skipif(torch.cuda.is_available(), reason="the CPU smoke run; on a GPU the script runs for real")
def test_gpu_script_smoke_run_on_cpu(tmp_path, monkeypatch):
    """The whole measuring path (launch sweep, parity, variants, ratios, rendering), interpreted."""
    import json

    monkeypatch.setattr(fused, "LAUNCH", dict(fused.LAUNCH))  # --tune replaces the table in-process
    gpu = _gpu_script()
    md = tmp_path / "gpu.md"
    md.write_text(f"intro\n{gpu.BEGIN}\nstale section\n{gpu.END}\noutro\n")
    out = tmp_path / "gpu.json"
    gpu.main(
        [
            "--device",
            "cpu",
            "--out",
            str(out),
            "--md",
            str(md),
            "--batches",
            "1,16",
            "--reps",
            "1",
            "--parity-rows",
            "16",
            "--models",
            "checkerboard-hannet-20x30",
            "--tune",
            "--tune-batches",
            "16,64",
            "--block-ms",
            "16,32",
            "--warps",
            "1,4",
        ]
    )
    report = json.loads(out.read_text())
    assert len(report["launch_sweep"]) == 8 and all("median_us" in c for c in report["launch_sweep"])
    assert {(c["block_n"], c["batch"]) for c in report["launch"]} == {(32, 16), (32, 64)}
    assert gpu.launch_table(report["launch"]) == fused.LAUNCH
    fused_cells = [c for c in report["cells"] if c["variant"].startswith("fused")]
    assert all(tuple(c["launch"]) == fused.launch_for(32, c["batch"]) for c in fused_cells)
    assert report["parity"]["checkerboard-hannet-20x30"]["dot"]["ok"]
    variants = {c["variant"] for c in report["cells"] if c["model"] == "checkerboard-hannet-20x30"}
    assert variants == {"eager", "fused", "fused (tl.dot)"}
    assert {r["baseline"] for r in report["ratios"]} == {
        "checkerboard-fcnet-6x100",
        "checkerboard-fcnet-10x100",
        "checkerboard-fcnet-6x300",
    }
    text = md.read_text()
    assert text.startswith("intro\n") and text.endswith("outro\n") and "stale section" not in text
    assert "| checkerboard-hannet-20x30 | 16 |" in text


def test_runtime_runs_the_kernel_for_hannets_only():
    """The torch-cuda runtime's choice: the kernel for a HanNet, a CUDA graph (with the reason) otherwise."""
    kernel, why = fused.for_runtime(_net("checkerboard-hannet-20x30"), device=DEVICE)
    assert kernel is not None and why is None and kernel.dot
    kernel, why = fused.for_runtime(_net("checkerboard-fcnet-6x100"), device=DEVICE)
    assert kernel is None and "no Han-layer" in why


def test_column_loop_refuses_wide_dense_stacks():
    """An unrolled loop over FCNet-6x100's 500 columns compiles for minutes on a GPU; refuse it up front."""
    with pytest.raises(HanzooError, match="unroll 500 columns"):
        fused.prepare(_net("checkerboard-fcnet-6x100"), dot=False)
    assert fused.prepare(_net("checkerboard-fcnet-6x100"), dot=True).dot
