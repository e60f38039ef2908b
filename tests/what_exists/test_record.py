import json

import pytest

from hanzoo import HanzooError
from hanzoo.zoo import registry
from hanzoo.zoo.record import Record, read


def test_every_shipped_record_reads_typed():
    for mid in registry.shipped():
        m = registry.get(mid).metrics
        assert isinstance(m, Record) and m.trained
        assert m.value("test") == m["selected"]["test"][m.metric]
        assert len(m.spread("test")["values"]) >= 1


def test_a_field_of_the_wrong_type_is_named(tmp_path):
    good = registry.get("checkerboard-hannet-20x30").metrics
    for key, bad in [("metric", 3), ("higher_is_better", "yes"), ("wall_seconds", True), ("selected", [])]:
        path = tmp_path / "metrics.json"
        path.write_text(json.dumps(dict(good) | {key: bad}))
        with pytest.raises(HanzooError, match=f"{path}: {key} must be"):
            read(path)
    path.write_text(json.dumps(dict(good) | {"selected": {"test": {"accuracy": "high"}}}))
    with pytest.raises(HanzooError, match="test figures must map metric names to numbers"):
        read(path)
    path.write_text("[1, 2]")
    with pytest.raises(HanzooError, match="must hold a JSON object"):
        read(path)
    path.write_text("{")
    with pytest.raises(HanzooError, match="is not valid JSON"):
        read(path)


def test_a_missing_file_is_an_empty_record(tmp_path):
    r = read(tmp_path / "metrics.json")
    assert not r.trained and dict(r) == {} and r.scores == {}


def test_build_records_what_the_figures_were_made_with():
    r = Record.build(
        model_id="m",
        task="checkerboard",
        metric="accuracy",
        higher_is_better=True,
        selected={"train": {"accuracy": 100.0}, "test": {"accuracy": 99.0}},
        seeds_at_selected={"test": {"values": [99.0], "mean": 99.0, "std": 0.0}},
        selection_rule="best validation accuracy",
        wall_seconds=1.5,
        sweep=[],
    )
    assert r.value("test") == 99.0 and r["sweep"] == [] and "torch" in r["versions"] and r["machine"]
    assert json.loads(r.to_json()) == dict(r)
