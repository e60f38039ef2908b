"""hanzoo.publishing.ship: an export folder made to hold exactly the variants a measured report ships."""

from hanzoo.publishing import ship
from hanzoo.zoo.registry import EXPORT_DIR, VARIANT_FILES


def test_ship_writes_the_winners_and_removes_the_rest(monkeypatch):
    calls = []
    monkeypatch.setattr(
        ship, "remove_variants", lambda folder, variants: calls.append(("rm", folder, variants))
    )
    monkeypatch.setattr(
        ship,
        "export_variants",
        lambda mid, precision, formats: calls.append(("add", mid, precision, formats)),
    )
    rows = [
        {"model": "b", "format": "onnx", "precision": "fp16", "ships": True},
        {"model": "b", "format": "tflite", "precision": "fp16", "ships": True},
        {"model": "b", "format": "onnx", "precision": "int8", "ships": False},
        {"model": "a", "format": "onnx", "precision": "int8", "ships": False},
    ]
    assert ship.ship({"rows": rows}) == {"a": [], "b": [("onnx", "fp16"), ("tflite", "fp16")]}
    assert calls == [
        ("rm", EXPORT_DIR / "a", list(VARIANT_FILES)),
        (
            "rm",
            EXPORT_DIR / "b",
            [v for v in VARIANT_FILES if v not in {("onnx", "fp16"), ("tflite", "fp16")}],
        ),
        ("add", "b", "fp16", ["onnx", "tflite"]),
    ]
