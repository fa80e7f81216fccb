"""Sharing depth (``model.sharing``): what each depth shares, export and TensorRT checks for every encoder,
the interaction designs on both depths, model-info's split, and configs and checkpoints from before the key;
the decoder stride (``model.decoder_stride``: heads on the stride-4 or the stride-8 map)."""
from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any, Callable

import pytest
import torch
from network_support import EXPORT_DATASET, EXPORT_SIZE

from mtl_perception.config import ExperimentConfig, ModelConfig, config_from_dict
from mtl_perception.inference.export import PARITY_TOLERANCE
from mtl_perception.inference.trt_ops import check_tensorrt_compat
from mtl_perception.model.decoder import FeaturePyramid, PyramidDecoder
from mtl_perception.model.encoders import ENCODERS
from mtl_perception.model.flops import profile_model
from mtl_perception.model.network import build_model
from mtl_perception.training.checkpoint import model_from_checkpoint, save_checkpoint

torch.set_num_threads(1)

DEPTHS = ("encoder", "neck")
TASKS = ("depth", "semantic", "normals")
NECK_ARCHITECTURES = ("hard", "mti", "padnet", "pap")


def small_config(architecture: str = "hard", sharing: str = "encoder", encoder: str = "resnet18",
                 decoder_stride: int = 4) -> ExperimentConfig:
    """The default experiment at 64x64 with narrow decoders and heads."""
    cfg = ExperimentConfig()
    cfg.model.architecture, cfg.model.sharing, cfg.model.encoder = architecture, sharing, encoder
    cfg.model.decoder_channels = cfg.model.head_channels = 16
    cfg.model.decoder_stride = decoder_stride
    cfg.data.height = cfg.data.width = EXPORT_SIZE
    return cfg.validate()


def small_model(architecture: str = "hard", sharing: str = "encoder", encoder: str = "resnet18",
                decoder_stride: int = 4) -> torch.nn.Module:
    torch.manual_seed(0)
    return build_model(small_config(architecture, sharing, encoder, decoder_stride).model)


# the matrix of every sharing depth (conftest: slow); the encoder-depth hard cases are test_inference_export.py's
# own exports, taken from the same session cache (``exported_network``)
EXPORT_CASES = [pytest.param("hard", sharing, encoder, 4, id=f"hard-{sharing}-{encoder}")
                for encoder in sorted(ENCODERS) for sharing in DEPTHS]
EXPORT_CASES += [pytest.param(architecture, "neck", "resnet18", 4, id=f"{architecture}-neck-resnet18")
                 for architecture in ("mti", "padnet", "pap")]
EXPORT_CASES += [pytest.param("hard", sharing, encoder, 8, id=f"hard-{sharing}-{encoder}-stride8")
                 for sharing, encoder in (("neck", "mobilenetv3_small"), ("encoder", "resnet18"))]


@pytest.mark.parametrize(("architecture", "sharing", "encoder", "decoder_stride"), EXPORT_CASES)
def test_exports_with_onnx_runtime_parity_and_passes_check_trt(exported_network: Callable[..., Any], architecture: str,
                                                                sharing: str, encoder: str, decoder_stride: int) -> None:
    report = exported_network(encoder, architecture, sharing, decoder_stride).report
    assert set(report.max_abs_diff) == set(TASKS)
    assert report.worst_diff <= PARITY_TOLERANCE, report.max_abs_diff
    assert check_tensorrt_compat(report.path) == []  # what `mtl-perception check-trt` runs on the file


def decoder_modules(model: torch.nn.Module) -> list[str]:
    """Paths of the multi-scale decoders (feature pyramids) in a model."""
    return [name for name, module in model.named_modules() if isinstance(module, FeaturePyramid)]


@pytest.mark.parametrize("architecture", NECK_ARCHITECTURES)
def test_neck_is_one_decoder_run_once_for_every_task(architecture: str) -> None:
    encoder_depth, neck_depth = small_model(architecture, "encoder"), small_model(architecture, "neck")
    assert decoder_modules(neck_depth) == ["neck"]
    if architecture == "mti":  # encoder depth: per-scale 1x1 projections, no pyramid
        assert decoder_modules(encoder_depth) == [] and neck_depth.projections is None
    else:
        assert decoder_modules(encoder_depth) == [f"decoders.{t}" for t in TASKS]
    calls = []
    neck_depth.neck.register_forward_hook(lambda *_: calls.append(1))
    neck_depth.eval()(torch.zeros(1, 3, 64, 64))
    assert len(calls) == 1


@pytest.mark.parametrize("architecture", ("hard", "padnet", "pap"))
def test_neck_costs_less_than_a_decoder_per_task(architecture: str) -> None:
    encoder_depth = profile_model(small_model(architecture, "encoder"), 64, 64)
    neck_depth = profile_model(small_model(architecture, "neck"), 64, 64)
    assert [b.name for b in neck_depth.branches][:2] == ["encoder", "neck"]
    assert "neck" not in [b.name for b in encoder_depth.branches]
    assert neck_depth.branch("encoder") == encoder_depth.branch("encoder")
    # the neck replaces three task decoders of the same size: about two decoders' compute saved
    decoder = neck_depth.branch("neck")
    assert encoder_depth.macs - neck_depth.macs == 2 * decoder.macs
    assert encoder_depth.parameters - neck_depth.parameters == 2 * decoder.parameters


def test_hard_neck_keeps_only_light_heads() -> None:
    model = small_model("hard", "neck")
    assert model.decoders is None and isinstance(model.neck, PyramidDecoder)
    head = model.outputs["depth"].head
    assert [type(m) for m in head.body] == [torch.nn.Conv2d, torch.nn.BatchNorm2d, torch.nn.ReLU]
    assert head.body[0].kernel_size == (3, 3) and head.body[0].out_channels == 16 and head.proj.kernel_size == (1, 1)
    assert {name.split(".")[0] for name in model.state_dict()} == {"encoder", "neck", "outputs"}


def test_encoder_depth_keeps_the_module_names_of_existing_checkpoints() -> None:
    assert {n.split(".")[0] for n in small_model("hard").state_dict()} == {"encoder", "decoders", "outputs"}
    assert {n.split(".")[0] for n in small_model("mti").state_dict()} >= {"encoder", "projections"}
    for architecture in ("padnet", "pap"):  # their neck was called "decoder" once: test_model_names.py loads such keys
        assert "neck" in {n.split(".")[0] for n in small_model(architecture, "neck").state_dict()}


@pytest.mark.parametrize("architecture", NECK_ARCHITECTURES)
@pytest.mark.parametrize("sharing", DEPTHS)
def test_last_shared_parameters_are_the_deepest_shared_layer(architecture: str, sharing: str) -> None:
    model = small_model(architecture, sharing)
    if sharing == "encoder":
        expected = model.projections if architecture == "mti" else model.encoder.stages[-1]
    else:
        expected = model.neck.smooth if architecture == "mti" else model.neck.fuse
    assert [id(p) for p in model.last_shared_parameters()] == [id(p) for p in expected.parameters()]


@pytest.mark.parametrize("architecture", ("cross_stitch", "single"))
def test_neck_with_an_architecture_without_a_shared_decoder_is_a_one_line_error(architecture: str) -> None:
    with pytest.raises(ValueError) as error:
        build_model(ModelConfig(architecture=architecture, sharing="neck"))
    message = str(error.value)
    assert "\n" not in message and f"architecture '{architecture}'" in message
    assert "architectures that accept it: ['hard', 'mti', 'padnet', 'pap']" in message


def test_unknown_sharing_depth_is_refused() -> None:
    with pytest.raises(ValueError, match="model.sharing"):
        config_from_dict({"model": {"sharing": "decoder"}})


def test_config_without_sharing_means_encoder_and_new_configs_carry_it() -> None:
    assert config_from_dict({"model": {"architecture": "padnet"}}).model.sharing == "encoder"
    assert small_config("hard", "neck").to_dict()["model"]["sharing"] == "neck"


def write_checkpoint(path: Path, config: ExperimentConfig, model: torch.nn.Module, drop_sharing: bool) -> Path:
    raw = config.to_dict()
    if drop_sharing:
        del raw["model"]["sharing"]
    save_checkpoint(path, {"config": raw, "model": model.state_dict(), "step": 0, "dataset": EXPORT_DATASET})
    return path


@pytest.mark.parametrize(("architecture", "written_as"), [("hard", "encoder"), ("mti", "encoder"), ("padnet", "neck"),
                                                          ("pap", "neck")])
def test_checkpoint_from_before_the_setting_loads_as_the_network_it_holds(tmp_path: Path, architecture: str,
                                                                         written_as: str) -> None:
    """Old checkpoints: hard and mti shared the encoder only; padnet and pap shared their decoder."""
    model = small_model(architecture, written_as)
    path = write_checkpoint(tmp_path / "old.pt", small_config(architecture, written_as), model, drop_sharing=True)
    loaded, config, _ = model_from_checkpoint(path)
    assert config.model.sharing == written_as
    assert loaded.state_dict().keys() == model.state_dict().keys()


@pytest.mark.parametrize("sharing", DEPTHS)
def test_new_checkpoint_round_trips_its_sharing_depth(tmp_path: Path, sharing: str) -> None:
    model = small_model("padnet", sharing)
    path = write_checkpoint(tmp_path / "new.pt", small_config("padnet", sharing), model, drop_sharing=False)
    loaded, config, _ = model_from_checkpoint(path)
    assert config.model.sharing == sharing
    assert decoder_modules(loaded) == decoder_modules(model)


def test_model_info_prints_the_split_and_the_ratio_to_single_task_networks(capsys: pytest.CaptureFixture[str]) -> None:
    from mtl_perception.cli.model import model_info_main

    overrides = ["model.sharing=neck", "model.decoder_channels=16", "model.head_channels=16"]
    assert model_info_main(argparse.Namespace(config=None, height=64, width=64, overrides=overrides)) == 0
    lines = capsys.readouterr().out.splitlines()
    assert "sharing=neck" in lines[0]
    names = [line.split()[0] for line in lines[4:]]
    assert names[:5] == ["encoder", "neck", "depth", "semantic", "normals"]
    neck = profile_model(small_model("hard", "neck"), 64, 64)
    single = profile_model(build_model(ModelConfig(encoder="resnet18", architecture="single", decoder_channels=16,
                                                   head_channels=16)), 64, 64)
    assert lines[-1] == (f"total / 3 single-task networks: GFLOPs {neck.macs / single.macs:.2f}, "
                         f"params {neck.parameters / single.parameters:.2f}")


# ---- decoder stride --------------------------------------------------------------------------------------


@pytest.mark.parametrize("sharing", DEPTHS)
def test_stride8_decoder_skips_the_stride4_level_and_outputs_stay_at_input_size(sharing: str) -> None:
    model = small_model("hard", sharing, "mobilenetv3_small", decoder_stride=8).eval()
    decoders = [model.neck] if sharing == "neck" else list(model.decoders.values())
    shapes: list[tuple[int, ...]] = []
    for decoder in decoders:
        assert len(decoder.lateral) == 3  # strides 8, 16, 32
        decoder.register_forward_hook(lambda _m, _i, out: shapes.append(tuple(out.shape)))
    with torch.no_grad():
        outputs = model(torch.zeros(1, 3, 64, 96))
    assert shapes == [(1, 16, 8, 12)] * len(decoders)  # stride 8
    assert {t: tuple(v.shape[-2:]) for t, v in outputs.items()} == {t: (64, 96) for t in TASKS}


def test_stride8_heads_cost_a_quarter_and_the_encoder_is_unchanged() -> None:
    stride4 = profile_model(small_model("hard", "neck", "mobilenetv3_small"), 64, 64)
    stride8 = profile_model(small_model("hard", "neck", "mobilenetv3_small", decoder_stride=8), 64, 64)
    assert stride8.branch("encoder") == stride4.branch("encoder")
    for task in TASKS:  # same layers on a quarter of the pixels
        assert 4 * stride8.branch(task).macs == stride4.branch(task).macs
        assert stride8.branch(task).parameters == stride4.branch(task).parameters
    assert stride8.branch("neck").macs < stride4.branch("neck").macs / 2


@pytest.mark.parametrize("architecture", ("cross_stitch", "mti", "padnet", "pap"))
def test_stride8_with_an_architecture_built_for_stride4_is_a_one_line_error(architecture: str) -> None:
    with pytest.raises(ValueError) as error:
        build_model(ModelConfig(architecture=architecture, decoder_stride=8))
    message = str(error.value)
    assert "\n" not in message and f"architecture '{architecture}'" in message
    assert "architectures that accept it: ['hard', 'single']" in message


def test_decoder_stride_defaults_to_4_and_only_4_or_8_are_accepted() -> None:
    assert config_from_dict({"model": {}}).model.decoder_stride == 4
    with pytest.raises(ValueError, match="decoder_stride"):
        config_from_dict({"model": {"decoder_stride": 16}})
    with pytest.raises(ValueError, match="decoder stride must be 4 or 8"):
        PyramidDecoder((8, 16, 32, 64), 8, stride=2)


def test_stride8_checkpoint_round_trips(tmp_path: Path) -> None:
    config = small_config("hard", "neck", "mobilenetv3_small", decoder_stride=8)
    model = small_model("hard", "neck", "mobilenetv3_small", decoder_stride=8)
    loaded, loaded_config, _ = model_from_checkpoint(write_checkpoint(tmp_path / "s8.pt", config, model, drop_sharing=False))
    assert loaded_config.model.decoder_stride == 8
    assert loaded.state_dict().keys() == model.state_dict().keys()
