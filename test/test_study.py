"""The CI-sized study: every architecture and loss weighting trains, evaluates, exports and is tabulated."""
import json
from pathlib import Path

import cv2

from mtl_perception.evaluation.study import StudyConfig, run_study

STUDY = Path(__file__).resolve().parents[1] / "config" / "study"


def test_tiny_study_covers_every_architecture_and_weighting(tmp_path):
    from mtl_perception.model.network import ARCHITECTURES, build_model
    from mtl_perception.training.weighting import WEIGHTINGS
    from mtl_perception.config import ModelConfig

    study = StudyConfig.load(STUDY / "tiny.yaml", [f"out_dir={tmp_path}"])
    build_model(ModelConfig())  # registers the optional architectures
    configs = [study.entry_config(e, 0) for e in study.entries]
    assert {c.model.architecture for c in configs} == set(ARCHITECTURES)
    assert {c.train.loss_weighting for c in configs} == set(WEIGHTINGS)

    summary = run_study(study, log=lambda *_: None)
    rows = {row["name"]: row for row in summary["rows"]}
    for config, entry in zip(configs, study.entries):
        row = rows[entry["name"]]
        assert set(row["metrics"]) == set(config.model.tasks)
        assert row["export_max_abs_diff"] <= 1e-3
        assert row["latency_ms"] > 0 and row["params_m"] > 0 and row["gflops"] > 0
        if len(config.model.tasks) > 1:
            assert "delta_m" in row
    single = rows["single-task (3 nets)"]
    assert single["delta_m"] == 0.0
    assert single["latency_ms"] == sum(rows[f"single_{t}"]["latency_ms"] for t in ("depth", "semantic", "normals"))
    for row in rows.values():
        assert row["latency_vs_single"] == row["latency_ms"] / single["latency_ms"]
    table = (tmp_path / "study.md").read_text()
    assert all(f"| {name} |" in table for name in rows)
    assert json.loads((tmp_path / "study.json").read_text())["rows"]
    plot = cv2.imread(str(tmp_path / "delta_m_vs_latency.png"))
    assert plot is not None and plot.shape[0] > 100


def test_study_config_errors_name_the_entry(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("base: {}\nentries:\n  - {name: x, model: {architecture: hard, encoder: vgg}}\n")
    import pytest

    StudyConfig.load(bad)  # the encoder is checked when the model is built, the config itself is valid
    bad.write_text("base: {}\nentries:\n  - {name: x, model: {tasks: [edges]}}\n")
    with pytest.raises(ValueError, match="study entry 'x'"):
        StudyConfig.load(bad)


def test_the_shipped_studies_build_every_entry():
    """Each study under config/study loads, and every entry's network builds (a typo would surface hours in)."""
    from mtl_perception.model.network import build_model

    for path in sorted(STUDY.glob("*.yaml")):
        study = StudyConfig.load(path)
        for entry in study.entries:
            config = study.entry_config(entry, study.seeds[0])
            assert list(build_model(config.model).tasks) == config.model.tasks, (path.name, entry["name"])
