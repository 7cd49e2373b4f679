"""`representer demo --quick` end to end: the report and summary exist and hold what they should."""

import json
import re

from typer.testing import CliRunner

from representer.cli import app


def test_demo_quick_writes_report_and_summary(tmp_path):
    result = CliRunner().invoke(app, ["demo", "--quick", "--out", str(tmp_path), "--seed", "0"])
    assert result.exit_code == 0, result.output
    assert "report.html" in result.output
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["quick"] and summary["epochs"] == 1 and summary["n_flipped"] == round(0.1 * summary["n_train"])
    assert summary["accuracy"]["test"] > 0.2  # twice chance after one epoch on 600 images (seeds 0-2: 31-44 %)
    assert summary["fidelity"]["test"]["pearson"] > 0.9  # the representer decomposition reproduces the model
    detection = summary["detection"]
    random = detection["random (expected)"]["found_at"]
    assert random == {"0.05": 0.05, "0.10": 0.1, "0.20": 0.2}
    for row in detection.values():  # found after inspecting more never decreases, and never exceeds all
        found = [row["found_at"][f] for f in sorted(row["found_at"], key=float)]
        assert found == sorted(found) and found[-1] <= 1.0, row
    # the model's loss on the given label is a strong detector even after one epoch (seeds 0-4: 53-73 % at 20 %)
    assert detection["model loss on given label"]["found_at"]["0.20"] > 2 * random["0.20"]
    # the list shown is find_label_issues' auto route; one epoch gives one checkpoint, so it cross-fits the head
    assert summary["label_issues"]["method"] == "cross-fit" and summary["label_issues"]["reason"]
    auto = detection["find_label_issues (auto: cross-fit)"]["found_at"]
    assert auto["0.20"] > 3 * random["0.20"]
    # RPS-L2's Eq. (3) student ranks by the L2 head's loss on the given label: a strong detector too
    assert detection["RPS-L2 |α_i,y_i| (Eq. 3 student)"]["found_at"]["0.20"] > 2 * random["0.20"]
    html = (tmp_path / "report.html").read_text(encoding="utf-8")
    for title in ("Finding the flipped labels", "Detection curve", "Most suspicious training labels", "RPS-L2 fit"):
        assert title in html
    sources = re.findall(r'src="([^"]*)"', html)
    assert len(sources) > 20 and all(s.startswith("data:image/png;base64,") for s in sources)


def test_cli_without_arguments_shows_help():
    result = CliRunner().invoke(app, [])
    assert "demo" in result.output


def test_demo_refuses_a_flip_fraction_that_flips_nothing(tmp_path):
    result = CliRunner().invoke(app, ["demo", "--quick", "--flip", "0", "--out", str(tmp_path)])
    assert result.exit_code == 1 and "flips no label" in result.output
    assert not (tmp_path / "report.html").exists()
