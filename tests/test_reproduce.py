from hanzoo import reproduce


def test_report_builds_from_shipped_metrics_and_is_current():
    text = reproduce.report()
    assert "## Table 3: Checkerboard" in text and "## Table 4" in text and "## Table 5" in text
    assert (reproduce.DOCS / "reproduction.md").read_text() == text, "docs/reproduction.md is stale: run `hanzoo reproduce`"
    for fig in ("reproduction-figure1.png", "reproduction-figure6.png"):
        assert (reproduce.DOCS / fig).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_every_covered_model_has_a_row():
    text = reproduce.report()
    for model in reproduce.COVERED:
        assert f"`{model}`" in text
