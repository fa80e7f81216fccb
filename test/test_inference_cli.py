"""Deployment subcommands (cli/inference.py): exit codes and one-line errors."""
from __future__ import annotations

import argparse
import importlib.util

import pytest
import torch

from mtl_perception.config import ExperimentConfig
from mtl_perception.cli import inference as cli_commands
from mtl_perception.model.network import build_model
from mtl_perception.training.checkpoint import save_checkpoint


def parse(add, argv):
    parser = argparse.ArgumentParser()
    add(parser)
    return parser.parse_args(argv)


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    torch.set_num_threads(1)
    cfg = ExperimentConfig()
    cfg.model.tasks = ["depth"]
    cfg.data.height = cfg.data.width = 64
    cfg.validate()
    path = tmp_path_factory.mktemp("cli") / "m.pt"
    save_checkpoint(path, {"config": cfg.to_dict(), "model": build_model(cfg.model).state_dict(), "step": 0})
    return path


def test_export_then_check_trt(tmp_path, checkpoint, capsys):
    out = tmp_path / "m.onnx"
    args = parse(cli_commands.add_export_arguments, ["--checkpoint", str(checkpoint), "--out", str(out)])
    assert cli_commands.export_main(args) == 0
    printed = capsys.readouterr().out
    assert "max abs diff" in printed and "TensorRT 10/11 parsers: compatible" in printed
    assert cli_commands.check_trt_main(parse(cli_commands.add_check_trt_arguments, ["--model", str(out)])) == 0
    assert "compatible with the TensorRT 10" in capsys.readouterr().out


def test_bad_inputs_exit_nonzero_with_one_line(tmp_path, checkpoint, capsys):
    missing = parse(cli_commands.add_export_arguments, ["--checkpoint", str(tmp_path / "none.pt"), "--out", str(tmp_path / "m.onnx")])
    assert cli_commands.export_main(missing) == cli_commands.EXIT_BAD_INPUT
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "checkpoint not found" in err
    odd = parse(cli_commands.add_export_arguments, ["--checkpoint", str(checkpoint), "--out", str(tmp_path / "m.onnx"), "--height", "16"])
    assert cli_commands.export_main(odd) == cli_commands.EXIT_BAD_INPUT
    assert "at least 32" in capsys.readouterr().err
    broken = tmp_path / "broken.onnx"
    broken.write_bytes(b"\x08\x07garbage")
    assert cli_commands.check_trt_main(parse(cli_commands.add_check_trt_arguments, ["--model", str(broken)])) == cli_commands.EXIT_BAD_INPUT
    assert "truncated or corrupt" in capsys.readouterr().err


@pytest.mark.skipif(importlib.util.find_spec("tensorrt") is not None, reason="TensorRT is importable here")
def test_build_engine_without_tensorrt(tmp_path, capsys):
    args = parse(cli_commands.add_build_engine_arguments, ["--model", str(tmp_path / "m.onnx"), "--precision", "fp16", "--workspace-mb", "512"])
    assert args.workspace_mb == 512 and args.cache_dir is None
    assert cli_commands.build_engine_main(args) == cli_commands.EXIT_BAD_INPUT
    assert "TensorRT Python package is not importable" in capsys.readouterr().err
