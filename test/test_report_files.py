"""The bag-evaluation report: files exist, plots are valid PNGs, documents show the figures and link the plots."""
from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from bags_support import FRAMES, ground_truth_as_prediction, make_synthetic_bag, png_is_valid

from mtl_perception.bags.evaluation import BagEvalSettings, evaluate_bags, summarize
from mtl_perception.bags.evaluation.report import table_rows, write_animation, write_report


def test_report_of_two_bags_with_a_model(tmp_path: Path, model_file: Path) -> None:
    bags = [make_synthetic_bag(tmp_path / "a"), make_synthetic_bag(tmp_path / "b", "mcap", frames=3, seed=2)]
    settings = BagEvalSettings(model=str(model_file), progress=False)
    results = evaluate_bags(bags, settings)
    summary = summarize(results, settings)
    files = write_report(tmp_path / "report", summary, results)

    assert set(files.plots) == {"table", "latency", "per_frame", "strip"}
    for plot in files.plots.values():
        assert plot.parent == tmp_path / "report" / "plots" and png_is_valid(plot), plot
    assert [d.name for d in files.documents] == ["report.md", "report.html"]
    saved = json.loads(files.json.read_text())
    assert saved["aggregate"]["frames_evaluated"] == FRAMES + 3
    assert saved["aggregate"]["latency"]["total"]["count"] == FRAMES + 3
    assert [b["bag"] for b in saved["bags"]] == [str(b) for b in bags]

    markdown = (tmp_path / "report" / "report.md").read_text()
    html = (tmp_path / "report" / "report.html").read_text()
    assert "| figure | a | b | all bags |" in markdown
    rows = dict(table_rows(summary))
    assert rows["depth AbsRel ↓"][2] == f"{summary['aggregate']['metrics']['depth']['abs_rel']:.4g}"
    for document in (markdown, html):
        linked = re.findall(r"plots/[a-z_]+\.png", document)
        assert sorted(set(linked)) == sorted(f"plots/{p.name}" for p in files.plots.values())
        assert "Latency (ms)" in document and "Semantic IoU per class" in document


def test_report_without_model_latency_and_animation(tmp_path: Path) -> None:
    bag = make_synthetic_bag(tmp_path / "bag")
    settings = ground_truth_as_prediction(strip_frames=FRAMES)
    results = evaluate_bags([bag], settings)
    summary = summarize(results, settings)
    files = write_report(tmp_path / "report", summary, results, formats=["html"])
    assert [d.name for d in files.documents] == ["report.html"] and not (tmp_path / "report" / "report.md").exists()
    assert all(png_is_valid(p) for p in files.plots.values())
    strip = files.plots["strip"]
    import cv2

    sheet = cv2.imread(str(strip))
    assert sheet.shape[1] > 3 * 96  # three tiles per row: input | overlay | depth

    animation = write_animation(results[0].strip, tmp_path / "demo.gif")
    from PIL import Image

    with Image.open(animation) as gif:
        assert gif.format == "GIF" and gif.n_frames == FRAMES
    with pytest.raises(ValueError, match="at least one strip row"):
        write_animation([], tmp_path / "empty.gif")
    with pytest.raises(ValueError, match="unknown report format"):
        write_report(tmp_path / "other", summary, results, formats=["pdf"])
