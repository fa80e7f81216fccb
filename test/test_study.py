"""The CI-sized study (config/study/tiny.yaml): it lists every architecture and loss weighting; a study of the
single-task baselines and one multi-task network is run and tabulated; every other entry trains and is scored."""
import json
from pathlib import Path

import cv2

from mtl_perception.evaluation.study import StudyConfig, run_study

STUDY = Path(__file__).resolve().parents[1] / "config" / "study"


# the study itself runs on the three single-task baselines and one multi-task network: what only the study does
# (training every entry, Δm against the baselines, the summed single-task row, latency ratios, table, JSON, plot)
STUDIED = ("single_depth", "single_semantic", "single_normals", "hard")
# entries whose training (Trainer.fit with that weighting) test_training_run.py runs already: the short runs (FAMO,
# Aligned-MTL), the exact resume (FAMO, Aligned-MTL) and the two-process DDP runs (uncertainty, FAMO, Aligned-MTL)
TRAINED_ELSEWHERE = ("hard_uncertainty", "hard_famo", "hard_aligned_mtl")


def tiny_study(tmp_path: Path) -> StudyConfig:
    return StudyConfig.load(STUDY / "tiny.yaml", [f"out_dir={tmp_path}"])


def test_tiny_study_lists_every_architecture_and_weighting(tmp_path: Path) -> None:
    from mtl_perception.config import ModelConfig
    from mtl_perception.model.network import ARCHITECTURES, build_model
    from mtl_perception.training.weighting import WEIGHTINGS

    study = tiny_study(tmp_path)
    build_model(ModelConfig())  # registers the optional architectures
    configs = [study.entry_config(e, 0) for e in study.entries]
    assert {c.model.architecture for c in configs} == set(ARCHITECTURES)
    assert {c.train.loss_weighting for c in configs} == set(WEIGHTINGS)
    assert set(STUDIED + TRAINED_ELSEWHERE) <= {e["name"] for e in study.entries}


def test_every_other_tiny_study_entry_trains_evaluates_and_profiles(tmp_path: Path) -> None:
    """Each entry the study run below leaves out (every other architecture and sharing depth, DWA, GradNorm) trains
    its steps and is scored on the held-out set like a study entry; its checkpoint loads for inference and profiles.
    Their ONNX export and parity: test_inference_export.py (each architecture), test_model_sharing.py (neck depth)."""
    from mtl_perception.evaluation.study import run_entry
    from mtl_perception.inference.checkpoint_model import load_for_inference
    from mtl_perception.model.flops import profile_model

    study = tiny_study(tmp_path)
    for entry in (e for e in study.entries if e["name"] not in STUDIED + TRAINED_ELSEWHERE):
        config = study.entry_config(entry, 0)
        result = run_entry(config, study.eval_count)
        assert result["steps"] == config.train.steps and set(result["metrics"]) == set(config.model.tasks), entry["name"]
        model, meta = load_for_inference(Path(config.train.out_dir) / "last.pt")
        assert list(meta.tasks) == config.model.tasks, entry["name"]
        profile = profile_model(model, config.data.height, config.data.width)
        assert profile.parameters > 0 and profile.gflops > 0, entry["name"]


def test_tiny_study_tabulates_the_baselines_and_a_multi_task_network(tmp_path: Path) -> None:
    study = tiny_study(tmp_path)
    study.entries = [e for e in study.entries if e["name"] in STUDIED]
    configs = [study.entry_config(e, 0) for e in study.entries]
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
