"""`make demo` end to end (small frames, tiny model): node process, live replay, report, animation."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
from bags_support import png_is_valid

pytest.importorskip("rclpy", reason="rclpy (ros-rclpy wheels) is not installed")

from mtl_perception import demo  # noqa: E402


def test_demo_runs_end_to_end(tmp_path: Path, model_file: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "demo_output"
    code = demo.main(["--out", str(out), "--model", str(model_file), "--frames", "6", "--height", "64", "--width", "96",
                      "--rate", "1.0", "--wait", "60"])
    printed = capsys.readouterr()
    assert code == 0, printed.err
    figures = json.loads((out / "demo_summary.json").read_text())
    # a --model file: the demo cannot tell whether it was trained (this one is random), so it does not claim so
    assert figures["trained_model"] is None and figures["model"] == str(model_file)
    assert figures["frames_published"] == 6
    assert 1 <= figures["frames_evaluated"] <= 6
    assert figures["max_abs_difference_online_vs_offline"] < 1e-6  # the node's outputs score like offline evaluation
    for key in ("report_md", "report_html", "summary_json", "animation", "input_bag", "recording"):
        assert Path(figures["files"][key]).exists(), key
    assert all(png_is_valid(p) for p in (out / "report" / "plots").glob("*.png"))
    assert Path(figures["files"]["animation"]).suffix in (".gif", ".png")
    assert "largest metric difference" in printed.out and str(out / "report" / "report.html") in printed.out


def test_missing_bundled_model_falls_back_loudly(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    from mtl_perception.inference.model_file import load_onnx_file, metadata_from_props

    monkeypatch.setattr("mtl_perception.paths.default_model_path", lambda: tmp_path / "absent" / "default.onnx")
    path, trained = demo.choose_model(None, tmp_path)
    assert not trained and path == tmp_path / "untrained.onnx"
    printed = capsys.readouterr().out
    assert "RANDOMLY INITIALISED" in printed and "is missing" in printed
    props = {p.key: p.value for p in load_onnx_file(path).metadata_props}
    assert metadata_from_props(props, str(path)).class_names[:2] == ["floor", "wall"]
    with pytest.raises(FileNotFoundError):
        demo.choose_model(str(tmp_path / "nope.onnx"), tmp_path)
