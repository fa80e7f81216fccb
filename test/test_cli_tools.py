"""The offline tools through the real `mtl-perception` command: synth -> train -> evaluate, model-info, errors."""
import json
import subprocess
import sys
from pathlib import Path

import cv2
import pytest

TINY = ["model.encoder=resnet18", "model.decoder_channels=16", "model.head_channels=16", "data.height=48", "data.width=64",
        "data.train_count=16", "data.val_count=4", "train.batch_size=2", "train.warmup_steps=0", "train.threads=1"]


def cli(*args: str, timeout: int = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "mtl_perception.cli", *args], capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("run")
    run = cli("train", "--no-progress", *TINY, f"train.out_dir={out}", "train.steps=3", "train.val_every=3")
    assert run.returncode == 0, run.stderr[-2000:]
    assert json.loads(run.stdout[run.stdout.index("{"):])["steps"] == 3
    return out / "best.pt"


def test_evaluate_on_synthetic_and_on_a_synth_folder(checkpoint, tmp_path):
    folder = tmp_path / "frames"
    made = cli("synth", "--out", str(folder), "--count", "3", "--size", "48x64")
    assert made.returncode == 0, made.stderr
    for data, frames in (("synthetic", 4), (str(folder), 3)):
        out = tmp_path / ("eval_" + Path(data).name)
        run = cli("evaluate", "--checkpoint", str(checkpoint), "--data", data, "--out", str(out))
        assert run.returncode == 0, run.stderr[-2000:]
        report = json.loads((out / "metrics.json").read_text())
        assert report["frames"] == frames
        assert set(report["metrics"]) == {"depth", "semantic", "normals"}
        assert {"abs_rel", "rmse", "delta1"} <= set(report["metrics"]["depth"])
        sheet = cv2.imread(str(out / "contact_sheet.png"))
        assert sheet is not None and sheet.shape[0] > 48 and sheet.shape[1] > 64 * 7


def test_model_info_prints_every_branch():
    run = cli("model-info", "--height", "64", "--width", "64", "model.encoder=mobilenetv3_large")
    assert run.returncode == 0, run.stderr
    for branch in ("encoder", "depth", "semantic", "normals", "total"):
        assert branch in run.stdout


@pytest.mark.parametrize("args, message", [
    (["evaluate", "--checkpoint", "/nonexistent/best.pt"], "checkpoint not found"),
    (["train", "model.encoder=vgg"], "unknown encoder"),
    (["train", "--config", "/nonexistent.yaml"], "config file not found"),
    (["model-info", "model.architecture=unknown"], "unknown architecture"),
])
def test_bad_input_is_one_line_and_exit_code_2(args, message):
    run = cli(*args)
    assert run.returncode == 2
    assert message in run.stderr and "Traceback" not in run.stderr


def test_truncated_checkpoint_is_a_clear_error(checkpoint, tmp_path):
    broken = tmp_path / "broken.pt"
    broken.write_bytes(checkpoint.read_bytes()[:1000])
    run = cli("evaluate", "--checkpoint", str(broken), "--out", str(tmp_path / "e"))
    assert run.returncode == 2 and "truncated" in run.stderr and "Traceback" not in run.stderr
