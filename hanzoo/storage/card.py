"""Model cards (README.md in each model folder), generated from config and metrics alone."""

from __future__ import annotations

from collections.abc import Mapping
from functools import partial

from ..nn.models import ModelConfig
from ..zoo.registry import ModelEntry

CITATION = "\n".join(
    [
        "@article{yu2021hannet,",
        "  title   = {Householder-Absolute Neural Layers For High Variability and Deep Trainability},",
        "  author  = {Yu, Yueyao and Zhang, Yin},",
        "  journal = {arXiv preprint arXiv:2106.04088 (v1; later versions are titled "
        '"A Lightweight and Gradient-Stable Neural Layer")},',
        "  year    = {2021}",
        "}",
    ]
)


def fmt(metric: str, x: float) -> str:
    """Accuracies in %, with 2 decimals; NRMSE and R^2 with 4; RMSE with 4 significant digits."""
    return (
        f"{x:.2f}" if metric in ("accuracy", "top1_error") else f"{x:.4g}" if metric == "rmse" else f"{x:.4f}"
    )


WHY = {"diverged": "diverged (non-finite loss)", "collapsed": "collapsed to a constant prediction"}


def final_runs(metrics: Mapping) -> list[dict]:
    """The runs behind `seeds_at_selected`, failed ones included: the refit seeds, else the stage-2 seeds,
    else the stage-1 runs at the chosen init and LR (as `hanzoo.training.train` computed them)."""
    if metrics.get("refit"):
        return metrics["refit"]
    if metrics.get("stage2"):
        return metrics["stage2"]
    return stage1_runs(metrics)


def stage1_runs(metrics: Mapping) -> list[dict]:
    """Stage 1's runs at the init and LR it chose (their validation mean is `stage1.val_mean`)."""
    s1 = metrics["stage1"]
    return [r for r in metrics["sweep"] if (r["init"], r["lr"]) == (s1["init"], s1["lr"])]


def _seeds(seeds: list[int]) -> str:
    words = [str(s) for s in seeds]
    return ("seed " if len(words) == 1 else "seeds ") + (
        words[0] if len(words) == 1 else ", ".join(words[:-1]) + " and " + words[-1]
    )


def seed_count(runs: list[dict]) -> str:
    """'10 seeds', or '9 of 10 seeds' when some failed."""
    kept = sum(r["status"] == "ok" for r in runs)
    return (f"{kept} of {len(runs)}" if kept < len(runs) else f"{kept}") + (
        " seed" if len(runs) == 1 else " seeds"
    )


def excluded(runs: list[dict]) -> str:
    """Which seeds failed and why, e.g. 'seed 5 diverged (non-finite loss) and is excluded'; '' if none
    did."""
    by_status: dict[str, list[int]] = {}
    for r in runs:
        if r["status"] != "ok":
            by_status.setdefault(r["status"], []).append(r["seed"])
    if not by_status:
        return ""
    parts = [f"{_seeds(s)} {WHY.get(status, status)}" for status, s in by_status.items()]
    n = sum(len(s) for s in by_status.values())
    return " and ".join(parts) + (" and is excluded" if n == 1 else " and are excluded")


def render(entry: ModelEntry, config: ModelConfig, metrics: Mapping) -> str:
    """The card of a trained model: what it is, what it scored, how it was trained and selected, and how
    to use it."""
    return "\n".join(
        [
            *_front_matter("hannet, householder, tiny-model"),
            f"# {entry.id}",
            "",
            entry.description,
            "",
            _architecture(entry, config, metrics["selected"]["init"]),
            "",
            *_data_section(metrics),
            *_measured_section(metrics),
            *_paper_section(entry.paper, metrics["metric"]),
            *_training_section(metrics),
            *_use_section(entry, config),
            *_citation_section(),
        ]
    )


def _front_matter(tags: str) -> list[str]:
    return ["---", "library_name: hanzoo", f"tags: [{tags}]", "license: mit", "---", ""]


def _citation_section() -> list[str]:
    return ["## Citation", "", "```bibtex", CITATION, "```", ""]


def _architecture(entry: ModelEntry, config: ModelConfig, init: str) -> str:
    backbone = (
        f"the conv backbone of `{entry.frozen}` (widths {'-'.join(map(str, config.backbone))}, frozen), then "
        if config.takes_images
        else ""
    )
    head = f" ({config.head_params} in the head)" if config.takes_images else ""
    return (
        f"Task: **{entry.task}**. Architecture: {backbone}{config.depth} hidden layers x width "
        f"{config.width} "
        f"({entry.arch}), {config.num_params} parameters{head}, activation ratio "
        f"{100 * config.activation_ratio:.2f}%. Init: `{init}`."
    )


def _data_section(metrics: Mapping) -> list[str]:
    lines = []
    if "backbone" in metrics:
        b = metrics["backbone"]
        lines += [
            f"Data: CIFAR-10 (JPEG), the whole dataset re-encoded as JPEG at about quality 75 (the canonical "
            f"binaries cannot be had here), so these are CIFAR-10 (JPEG) figures. The head trained on the "
            f"{b['feature_width']}-d features of the {b['train_images']} images the backbone trained on; "
            f"its LR and checkpoint were chosen on the other {b['val_images']} training images; test is the "
            f"official {b['test_images']}-image test split. Inputs are raw uint8 pixels [batch, 32, 32, 3] "
            "(HWC, RGB); the normalization (statistics of the training images) is inside the model.",
            "",
        ]
    if "split" in metrics:
        sp = metrics["split"]
        lines += [
            f"Data: a seeded split (seed {sp['split_seed']}) with {100 * sp['train_fraction']:.0f}% for "
            f"training ({sp['train_rows']} rows) and the rest for test ({sp['test_rows']} rows). Inputs are "
            "raw "
            "features and the output is the target in its own units: the standardization statistics of the "
            "training split are in config.json and applied inside the model.",
            "",
        ]
    return lines


def _measured_section(metrics: Mapping) -> list[str]:
    m, sel, seeds = metrics["metric"], metrics["selected"], metrics["seeds_at_selected"]
    f = partial(fmt, m)
    runs = final_runs(metrics)
    gone = excluded(runs)
    trained = (
        f"Stage 2 refit {len(runs)} seeds on the whole training split"
        if metrics.get("refit")
        else f"Stage 2 trained {len(runs)} seeds"
        if metrics.get("stage2")
        else f"{len(runs)} seeds were trained at the chosen init and LR"
    )
    lines = [
        "## Measured",
        "",
        f"| split | {m} (selected run) | {m}, mean +- std over {seed_count(runs)} |",
        "| --- | ---: | ---: |",
        *(
            f"| {split} | {f(sel[split][m])} | {f(seeds[split]['mean'])} +- {f(seeds[split]['std'])} |"
            for split in ("train", "test")
        ),
        "",
        trained + (f"; {gone} from the mean +- std." if gone else ", and every one is in the mean +- std."),
    ]
    extra = [k for k in ("rmse", "r2") if k in sel["test"]]
    if extra:
        lines += [
            "",
            "Selected run on test: "
            + ", ".join(f"{k.upper() if k == 'rmse' else 'R^2'} {fmt(k, sel['test'][k])}" for k in extra)
            + ".",
        ]
    if "head_on_features" in metrics:
        lines += [
            "",
            f"The same head scored on the cached features: test {m} "
            f"{f(metrics['head_on_features']['test'][m])} "
            "(the whole classifier's figure above is computed from the images).",
        ]
    return lines


def _paper_section(paper: dict, m: str) -> list[str]:
    """What the paper reports for this model, and how far it compares with ours."""
    if "top1_error" in paper:
        text = (
            f"The paper reports ({paper['table']}) a top-1 test error of {paper['top1_error']}: a different, "
            "far stronger backbone (LaNet, 99% accuracy), so only the relative change between the two heads "
            "compares; see docs/reproduction.md."
        )
    elif "test_accuracy" in paper:
        text = (
            f"The paper reports ({paper['table']}): train {paper.get('train_accuracy', '-')}, test "
            f"{paper['test_accuracy']} (mean +- std over 5 runs, with the best of 10 learning rates picked "
            "on the test set)."
        )
    else:
        text = (
            f"The paper reports this model's test NRMSE only as curves ({paper.get('table', '-')}), "
            "with no table of values; see docs/reproduction.md for the comparison."
        )
    return ["", text]


def _training_section(metrics: Mapping) -> list[str]:
    return [
        "",
        "## How it was trained and selected",
        "",
        f"- Protocol: {metrics['protocol_text']}",
        f"- Selection (no test data): {metrics['selection_rule']}",
        *(_refit_lines(metrics) if metrics["refit"] else _stage_lines(metrics)),
    ]


def _choice(metrics: Mapping, lead: str) -> str:
    """The init and LR stage 1 chose, on how many seeds, and how many runs of the sweep failed."""
    m, sel = metrics["metric"], metrics["selected"]
    first = stage1_runs(metrics)
    gone = excluded(first)
    return (
        f"- {lead} init `{sel['init']}` and LR {sel['lr']}: mean validation {m} "
        f"{fmt(m, metrics['stage1']['val_mean'])} over {seed_count(first)}"
        + (f", {gone}" if gone else "")
        + ". Failed runs in the whole sweep (diverged or "
        f"collapsed): {metrics['failed_runs']} of {len(metrics['sweep'])}."
    )


def _per_seed(metrics: Mapping, noun: str) -> str:
    """The test figure of every kept seed of the final runs, and which ones failed."""
    m = metrics["metric"]
    runs = final_runs(metrics)
    gone = excluded(runs)
    kept = [r["seed"] for r in runs if r["status"] == "ok"]
    values = metrics["seeds_at_selected"]["test"]["values"]
    per_seed = ", ".join(f"seed {s} {fmt(m, v)}" for s, v in zip(kept, values))
    return (
        f"Test {m} of every {noun}{' kept' if gone else ''}: {per_seed}" + (f"; {gone}" if gone else "") + "."
    )


def _refit_lines(metrics: Mapping) -> list[str]:
    """Stage 1 chose the init and LR, stage 2 refit seeds on the whole training split."""
    sel, sweep = metrics["selected"], metrics["sweep"]
    return [
        _choice(metrics, "Stage 1 chose"),
        f"- Stage 2 refit {len(final_runs(metrics))} seeds and shipped seed {sel['seed']} (final iterate, "
        f"iteration {sel['iterations']}). " + _per_seed(metrics, "refit seed"),
        f"- Wall time: stage 1 {metrics['sweep_wall_seconds']:.0f} s for all {len(sweep)} runs at "
        f"once ({metrics['sweep_iterations_per_second']:.1f} stacked iterations/s), stage 2 "
        f"{metrics['refit_wall_seconds']:.0f} s for {len(metrics['refit'])} seeds; torch "
        f"{metrics['versions']['torch']}, {metrics['machine']}.",
    ]


def _stage_lines(metrics: Mapping) -> list[str]:
    """Stage 1 chose the init and LR, and the shipped run is the best on validation (of stage 2 if any)."""
    m, sel, sweep = metrics["metric"], metrics["selected"], metrics["sweep"]
    stage2 = metrics.get("stage2")
    if metrics.get("distillation"):
        return _distill_lines(metrics)
    shipped = (
        f"- Stage 2 trained {len(stage2)} seeds at that init and LR and shipped seed {sel['seed']}"
        if stage2
        else f"- Shipped seed {sel['seed']}"
    )
    return [
        _choice(metrics, "Chose"),
        shipped + f": its checkpoint at iteration {sel['iterations']}, the best validation {m} among that "
        "init and LR's seeds. " + _per_seed(metrics, "seed"),
        f"- Wall time {metrics['sweep_wall_seconds']:.0f} s for all {len(sweep)} runs at once "
        f"({metrics['sweep_iterations_per_second']:.1f} stacked iterations/s)"
        + (f", stage 2 {metrics['stage2_wall_seconds']:.0f} s" if stage2 else "")
        + f"; torch {metrics['versions']['torch']}, {metrics['machine']}.",
    ]


def _distill_lines(metrics: Mapping) -> list[str]:
    """Stage 1 chose the init and LR; stage 2 distilled (hanzoo.training.distill) and shipped one student."""
    m, sel, d = metrics["metric"], metrics["selected"], metrics["distillation"]
    teachers = [t for t in d["teachers"] if t["status"] == "ok"]
    reg = d["registered"]
    return [
        _choice(metrics, "Stage 1 chose"),
        f"- Stage 2 distilled at that init and LR, with the recipe registered in {reg['page']} (commit "
        f"{reg['commit'][:12]}) before this run: {len(d['teachers'])} teachers refit on the whole training "
        f"split (test {m} {fmt(m, min(t['test'][m] for t in teachers))} to "
        f"{fmt(m, max(t['test'][m] for t in teachers))}; their mean output {fmt(m, d['ensemble_test'][m])}) "
        f"labelled {d['recipe']['points']} uniform points; {len(d['student_seeds'])} students trained on the "
        f"training points plus those; shipped seed {sel['seed']}, the student closest to the teachers on "
        f"{d['recipe']['points']} fresh uniform points. " + _per_seed(metrics, "student"),
        f"- Wall time: stage 1 {metrics['sweep_wall_seconds']:.0f} s for all {len(metrics['sweep'])} runs "
        f"at once, stage 2 {metrics['stage2_wall_seconds']:.0f} s; torch {metrics['versions']['torch']}, "
        f"{metrics['machine']}.",
    ]


def _use_section(entry: ModelEntry, config: ModelConfig) -> list[str]:
    call = (
        "logits = net(images)  # images: torch.uint8 [batch, 32, 32, 3]; logits [batch, 10]"
        if config.takes_images
        else "y = net(x)  # x: float32 [batch, " + str(config.in_features) + "]"
    )
    return _use_lines(entry, [call])


def _use_lines(entry: ModelEntry, calls: list[str]) -> list[str]:
    """The card's closing "Use" snippet around `calls`, and where its figures come from."""
    return [
        "",
        "## Use",
        "",
        "```python",
        "import hanzoo",
        "",
        f'net = hanzoo.load("{entry.id}")',
        *calls,
        "```",
        "",
        "Every figure on this card is regenerated from `metrics.json` and checked against a fresh "
        "evaluation by the test suite.",
        "",
    ]


def render_imported(entry: ModelEntry, metrics: Mapping) -> str:
    m, ev = metrics["metric"], metrics["evaluation"]
    return "\n".join(
        [
            f"# {entry.id} (the paper authors' checkpoint)",
            "",
            f"Imported by `hanzoo import-official` from `{metrics['source']['file']}` "
            f"(sha256 `{metrics['source']['sha256']}`), {metrics['source']['origin']}.",
            "",
            f"| split | {m} |",
            "| --- | ---: |",
            f"| train | {ev['train'][m]:.2f} |",
            f"| test | {ev['test'][m]:.2f} |",
            "",
            "The authors picked this checkpoint by its test accuracy during training, so its test figure is "
            "not an honest estimate; hanzoo's own models are selected on validation data.",
            "",
            *_citation_section(),
        ]
    )


def render_backbone(entry: ModelEntry, metrics: Mapping) -> str:
    """The card of a backbone trained end to end by a fixed recipe (one seed, no selection)."""
    sel, r = metrics["selected"], metrics["recipe"]
    log = metrics["log"]
    crop = "one offset per image" if r.get("crop") == "sample" else "one offset per batch"
    return "\n".join(
        [
            *_front_matter("cifar10, cnn, backbone"),
            f"# {entry.id}",
            "",
            entry.description,
            "",
            f"Architecture: {entry.arch}, {entry.config.num_params} parameters (BatchNorm folded into the "
            "convs and per-channel scale/shift after each max pool). Input: raw uint8 pixels "
            "[batch, 32, 32, 3] (HWC, RGB); the per-channel normalization (statistics of its training "
            "images) is inside the model. Output: logits [batch, 10].",
            "",
            "Data: CIFAR-10 (JPEG), the whole dataset re-encoded as JPEG at about quality 75 (the canonical "
            f"binaries cannot be had here). It trained on {metrics['train_images']} of the 50000 training "
            f"images; the other {metrics['val_images']} (seeded split) were only watched, and are the heads' "
            "validation set.",
            "",
            "## Measured",
            "",
            "| split | top-1 accuracy % | top-1 error % |",
            "| --- | ---: | ---: |",
            *[
                f"| {s} | {100 - sel[s]['top1_error']:.2f} | {sel[s]['top1_error']:.2f} |"
                for s in ("train", "val", "test")
            ],
            "",
            f"One seed ({sel['seed']}); the last epoch is shipped, so nothing was selected on any data. "
            "Plain forward pass, no test-time augmentation.",
            "",
            "## Recipe (hanzoo.backbone; `hanzoo train cifar10-backbone`)",
            "",
            f"- {r['epochs']} epochs, batch {r['batch_size']}, SGD Nesterov momentum {r['momentum']}, peak "
            f"LR {r['lr']} (linear warm-up over {r['warmup_epochs']} epochs, then linear decay to 0), weight "
            f"decay {r['weight_decay']} on weights, label smoothing {r['label_smoothing']}; random 4-pixel "
            f"reflect-crop ({crop}) and horizontal flip"
            + (
                "; the forward in bfloat16 autocast (weights, update and the shipped model in float32)"
                if r.get("precision") == "bf16"
                else ""
            )
            + (
                f"; an exponential moving average of the weights (decay {r['ema_decay']}) is shipped."
                if r.get("ema_decay")
                else "."
            ),
            f"- Wall time {metrics['wall_seconds'] / 60:.1f} min ({metrics['images_per_second']:.0f} "
            f"training images/s) on {metrics['machine']}; torch {metrics['versions']['torch']}.",
            "- Validation accuracy by epoch: " + ", ".join(f"{e['val_accuracy']:.1f}" for e in log) + ".",
            *_use_lines(
                entry,
                [
                    "logits = net(images)  # images: torch.uint8 [batch, 32, 32, 3]",
                    f"features = net.backbone(images)  # [batch, {entry.config.in_features}]",
                ],
            ),
        ]
    )
