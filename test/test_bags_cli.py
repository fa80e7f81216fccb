"""The bag-make / bag-eval commands as users run them: results on good bags, one-line errors on bad ones."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from bags_support import GT_TOPICS, make_synthetic_bag, run_cli

from mtl_perception.cli import main

GT_AS_PREDICTION = ["--predictions-from-bag", "--pred-depth-topic", GT_TOPICS["depth"], "--pred-semantic-topic",
                    GT_TOPICS["semantic"], "--pred-normals-topic", GT_TOPICS["normals"]]


def test_bag_make_then_bag_eval(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bag = tmp_path / "made"
    assert main(["bag-make", str(bag), "--frames", "3", "--height", "48", "--width", "64", "--storage", "mcap",
                 "--compression", "png", "--rate", "5", "--quiet"]) == 0
    assert "wrote" in capsys.readouterr().out
    assert main(["bag-eval", str(bag), *GT_AS_PREDICTION, "--out", str(tmp_path / "report"), "--quiet"]) == 0
    printed = capsys.readouterr().out
    assert "3 frames, depth AbsRel 0," in printed and "mIoU 1," in printed
    summary = json.loads((tmp_path / "report" / "summary.json").read_text())
    assert summary["bags"][0]["storage"] == "mcap"
    assert summary["bags"][0]["topics"]["camera"] == "/camera/image_raw/compressed"
    assert summary["aggregate"]["metrics"]["depth"]["abs_rel"] == 0.0
    # the bag's stamps follow --rate
    assert summary["bags"][0]["frames"]["planned"] == 3
    # writing over an existing bag needs --overwrite
    assert main(["bag-make", str(bag), "--frames", "1", "--quiet"]) == 2
    assert "exists already" in capsys.readouterr().err


def _truncate(bag: Path, fraction: float) -> None:
    storage = next(p for p in bag.iterdir() if p.suffix in (".db3", ".mcap"))
    data = storage.read_bytes()
    storage.write_bytes(data[: int(len(data) * fraction)])


def _scramble_middle(bag: Path) -> None:
    storage = next(p for p in bag.iterdir() if p.suffix in (".db3", ".mcap"))
    data = bytearray(storage.read_bytes())
    middle = len(data) // 2
    data[middle: middle + 20000] = bytes((i * 97 + 13) % 251 for i in range(20000))
    storage.write_bytes(bytes(data))


@pytest.mark.parametrize("storage,damage", [("sqlite3", "truncate"), ("mcap", "truncate"), ("sqlite3", "scramble"),
                                            ("mcap", "scramble"), ("sqlite3", "no_metadata")])
def test_damaged_bag_is_one_line_error_without_traceback(tmp_path: Path, storage: str, damage: str) -> None:
    bag = make_synthetic_bag(tmp_path / "bag", storage)
    if damage == "truncate":
        _truncate(bag, 0.6)
    elif damage == "scramble":
        _scramble_middle(bag)
    else:
        (bag / "metadata.yaml").unlink()
    result = run_cli("bag-eval", str(bag), *GT_AS_PREDICTION, "--out", str(tmp_path / "report"), "--quiet")
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("mtl-perception bag-eval: error:"), result.stderr
    assert str(bag) in lines[0] and ("corrupt" in lines[0] or "metadata" in lines[0])


def test_bad_flags_are_one_line_errors(tmp_path: Path) -> None:
    bag = make_synthetic_bag(tmp_path / "bag")
    missing_topic = run_cli("bag-eval", str(bag), *GT_AS_PREDICTION, "--image-topic", "/nope", "--out", str(tmp_path / "r"))
    assert missing_topic.returncode == 2 and "Traceback" not in missing_topic.stderr
    assert "topic /nope (from --image-topic) does not exist" in missing_topic.stderr and "/camera/image_raw (sensor_msgs/msg/Image" in missing_topic.stderr
    no_source = run_cli("bag-eval", str(bag), "--out", str(tmp_path / "r"))
    assert no_source.returncode == 2 and "--predictions-from-bag" in no_source.stderr and "Traceback" not in no_source.stderr
    shutil.rmtree(tmp_path / "r", ignore_errors=True)
    no_model = run_cli("bag-eval", str(bag), "--model", str(tmp_path / "absent.onnx"), "--out", str(tmp_path / "r"))
    assert no_model.returncode == 2 and "model file not found" in no_model.stderr and "Traceback" not in no_model.stderr
