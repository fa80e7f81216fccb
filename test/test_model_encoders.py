"""Encoders: feature pyramid shapes, full-network forward shapes, and ImageNet weight loading."""
from __future__ import annotations

import dataclasses
import importlib.util
import logging
import re
from pathlib import Path

import pytest
import torch

from mtl_perception.config import ModelConfig
from mtl_perception.fileio import file_sha256
from mtl_perception.model.encoders import ENCODERS, Encoder, build_encoder, load_pretrained
from mtl_perception.model.encoders.weights import (
    KNOWN_WEIGHTS,
    KeyMapper,
    KnownWeights,
    resnet_key,
    timm_mobilenet_key,
    torchvision_mobilenet_key,
    verify_weights_file,
)
from mtl_perception.model.network import build_model

torch.set_num_threads(1)

EXPECTED_CHANNELS = {
    "resnet18": (64, 128, 256, 512),
    "resnet34": (64, 128, 256, 512),
    "resnet50": (256, 512, 1024, 2048),
    "mobilenetv3_large": (24, 40, 112, 960),
    "mobilenetv3_small": (16, 24, 48, 576),
}
# Parameter counts of the ImageNet networks without their classifiers (published totals minus the head).
EXPECTED_PARAMETERS = {
    "resnet18": 11_689_512 - 513_000,
    "resnet34": 21_797_672 - 513_000,
    "resnet50": 25_557_032 - 2_049_000,
    "mobilenetv3_large": 5_483_032 - 2_511_080,
    "mobilenetv3_small": 2_542_856 - 1_615_848,  # classifier: 576x1024 + 1024x1000 linear layers
}


def test_registry_covers_expected_encoders() -> None:
    assert set(ENCODERS) == set(EXPECTED_CHANNELS)


def test_unknown_encoder_lists_valid_names() -> None:
    with pytest.raises(ValueError, match="resnet18"):
        build_encoder("vgg16")


@pytest.mark.parametrize("name", sorted(EXPECTED_CHANNELS))
def test_encoder_pyramid_strides_and_channels(name: str) -> None:
    encoder = build_encoder(name).eval()
    assert encoder.out_channels == EXPECTED_CHANNELS[name]
    assert len(encoder.stages) == 4
    with torch.no_grad():
        features = encoder(torch.randn(1, 3, 64, 96))
    assert len(features) == 4
    for i, feature in enumerate(features):
        stride = 4 * 2**i
        assert tuple(feature.shape) == (1, EXPECTED_CHANNELS[name][i], 64 // stride, 96 // stride)


@pytest.mark.parametrize("name", sorted(EXPECTED_PARAMETERS))
def test_encoder_parameter_count_matches_reference_network(name: str) -> None:
    encoder = build_encoder(name)
    assert sum(p.numel() for p in encoder.parameters()) == EXPECTED_PARAMETERS[name]


TASK_SUBSETS = [("depth",), ("semantic", "normals"), ("depth", "semantic", "normals")]


def _check_outputs(outputs: dict[str, torch.Tensor], tasks: tuple[str, ...], size: tuple[int, int], num_classes: int) -> None:
    assert set(outputs) == set(tasks)
    h, w = size
    expected_channels = {"depth": 1, "semantic": num_classes, "normals": 3}
    for task, tensor in outputs.items():
        assert tuple(tensor.shape) == (2, expected_channels[task], h, w), task
        assert tensor.dtype == torch.float32
        assert torch.isfinite(tensor).all(), task
    if "depth" in outputs:
        assert (outputs["depth"] > 0).all()
    if "normals" in outputs:
        norms = outputs["normals"].norm(dim=1)
        assert torch.allclose(norms, torch.ones_like(norms), atol=1e-4)


@pytest.mark.parametrize("encoder", sorted(EXPECTED_CHANNELS))
@pytest.mark.parametrize("tasks", TASK_SUBSETS, ids=["+".join(t) for t in TASK_SUBSETS])
def test_hard_sharing_forward_shapes(encoder: str, tasks: tuple[str, ...]) -> None:
    model = build_model(ModelConfig(architecture="hard", encoder=encoder, tasks=list(tasks), num_classes=7)).eval()
    with torch.no_grad():
        outputs = model(torch.randn(2, 3, 64, 64))
    _check_outputs(outputs, tasks, (64, 64), 7)


def test_single_task_networks_forward_shapes_non_square() -> None:
    tasks = ("depth", "normals")
    model = build_model(ModelConfig(architecture="single", encoder="mobilenetv3_large", tasks=list(tasks), num_classes=7)).eval()
    with torch.no_grad():
        outputs = model(torch.randn(2, 3, 64, 96))
    _check_outputs(outputs, tasks, (64, 96), 7)


# ---- ImageNet weights from the torchvision / timm layouts ------------------------------------------


def test_key_mapping_known_names() -> None:
    """Hand-picked keys of the published torchvision and timm layouts."""
    resnet = build_encoder("resnet18")
    assert resnet_key(resnet, "stem.conv1.weight") == "conv1.weight"
    assert resnet_key(resnet, "stem.bn1.running_var") == "bn1.running_var"
    assert resnet_key(resnet, "stages.3.0.downsample.1.weight") == "layer4.0.downsample.1.weight"
    mobilenet = build_encoder("mobilenetv3_large")
    tv = {
        "stem.0.0.weight": "features.0.0.weight",
        "stem.1.block.0.0.weight": "features.1.block.0.0.weight",
        "stages.1.0.block.2.fc1.weight": "features.4.block.2.fc1.weight",
        "stages.3.3.1.running_mean": "features.16.1.running_mean",
    }
    timm = {
        "stem.0.0.weight": "conv_stem.weight",
        "stem.0.1.bias": "bn1.bias",
        "stem.1.block.0.0.weight": "blocks.0.0.conv_dw.weight",
        "stem.1.block.1.1.bias": "blocks.0.0.bn2.bias",
        "stages.0.1.block.0.0.weight": "blocks.1.1.conv_pw.weight",
        "stages.1.0.block.1.1.weight": "blocks.2.0.bn2.weight",
        "stages.1.0.block.2.fc2.bias": "blocks.2.0.se.conv_expand.bias",
        "stages.1.2.block.3.0.weight": "blocks.2.2.conv_pwl.weight",
        "stages.2.5.block.3.1.running_var": "blocks.4.1.bn3.running_var",
        "stages.3.2.block.2.fc1.weight": "blocks.5.2.se.conv_reduce.weight",
        "stages.3.3.0.weight": "blocks.6.0.conv.weight",
        "stages.3.3.1.weight": "blocks.6.0.bn1.weight",
    }
    _assert_mobilenet_keys(mobilenet, tv, timm)


def test_key_mapping_known_names_mobilenetv3_small() -> None:
    """MobileNetV3-Small: no stem block (features.1 is the first stage), timm groups 1, 2, 3, 2, 3, 1."""
    small = build_encoder("mobilenetv3_small")
    tv = {
        "stem.0.0.weight": "features.0.0.weight",
        "stages.0.0.block.1.fc1.weight": "features.1.block.1.fc1.weight",
        "stages.2.4.block.0.1.running_mean": "features.8.block.0.1.running_mean",
        "stages.3.3.0.weight": "features.12.0.weight",
    }
    timm = {
        "stem.0.1.bias": "bn1.bias",
        "stages.0.0.block.0.0.weight": "blocks.0.0.conv_dw.weight",  # no expansion: a depthwise-separable block
        "stages.0.0.block.1.fc2.bias": "blocks.0.0.se.conv_expand.bias",
        "stages.0.0.block.2.1.weight": "blocks.0.0.bn2.weight",
        "stages.1.1.block.0.0.weight": "blocks.1.1.conv_pw.weight",
        "stages.2.3.block.3.0.weight": "blocks.3.0.conv_pwl.weight",
        "stages.3.0.block.1.1.running_var": "blocks.4.0.bn2.running_var",
        "stages.3.3.1.weight": "blocks.5.0.bn1.weight",
    }
    _assert_mobilenet_keys(small, tv, timm)


def _assert_mobilenet_keys(encoder: Encoder, torchvision_keys: dict[str, str], timm_keys: dict[str, str]) -> None:
    """Each of our keys maps to the hand-written torchvision and timm names."""
    for ours, theirs in torchvision_keys.items():
        assert torchvision_mobilenet_key(encoder, ours) == theirs
    for ours, theirs in timm_keys.items():
        assert timm_mobilenet_key(encoder, ours) == theirs


def _external_state(encoder: Encoder, mapper: KeyMapper) -> dict[str, torch.Tensor]:
    return {mapper(encoder, k): v.clone() for k, v in encoder.state_dict().items()}


def _assert_same_state(a: torch.nn.Module, b: torch.nn.Module) -> None:
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    for key in sa:
        assert torch.equal(sa[key], sb[key]), key


def _assert_same_state_except_counters(a: torch.nn.Module, b: torch.nn.Module) -> None:
    sa, sb = a.state_dict(), b.state_dict()
    for key in sa:
        if not key.endswith("num_batches_tracked"):
            assert torch.equal(sa[key], sb[key]), key


def _randomise_batch_norm_statistics(encoder: torch.nn.Module) -> None:
    """Give running statistics distinct values so that loading them is actually checked."""
    gen = torch.Generator().manual_seed(0)
    for module in encoder.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.running_mean.copy_(torch.randn(module.running_mean.shape, generator=gen))
            module.running_var.copy_(torch.rand(module.running_var.shape, generator=gen) + 0.5)


@pytest.mark.parametrize(
    ("name", "mapper", "layout"),
    [
        ("resnet18", resnet_key, "torchvision/timm"),
        ("resnet50", resnet_key, "torchvision/timm"),
        ("mobilenetv3_large", torchvision_mobilenet_key, "torchvision"),
        ("mobilenetv3_large", timm_mobilenet_key, "timm"),
        ("mobilenetv3_small", torchvision_mobilenet_key, "torchvision"),
        ("mobilenetv3_small", timm_mobilenet_key, "timm"),
    ],
)
def test_load_pretrained_external_layout(tmp_path: Path, name: str, mapper: KeyMapper, layout: str) -> None:
    source = build_encoder(name)
    _randomise_batch_norm_statistics(source)
    state = _external_state(source, mapper)
    state = {k: v for k, v in state.items() if not k.endswith("num_batches_tracked")}  # often absent in files
    classifier = {"fc.weight": torch.zeros(10, 4), "fc.bias": torch.zeros(10), "classifier.0.weight": torch.zeros(3, 3)}
    path = tmp_path / "weights.pth"
    torch.save({**state, **classifier}, path)

    target = build_encoder(name)
    report = load_pretrained(target, path)
    assert report.layout == layout
    assert report.loaded == len(state)
    assert report.skipped == len(classifier)
    _assert_same_state_except_counters(source, target)


def test_load_pretrained_wrapped_and_prefixed(tmp_path: Path) -> None:
    source = build_encoder("resnet18")
    state = {"module." + k: v for k, v in _external_state(source, resnet_key).items()}
    path = tmp_path / "ckpt.pth"
    torch.save({"state_dict": state, "epoch": 3}, path)
    target = build_encoder("resnet18")
    load_pretrained(target, path)
    _assert_same_state(source, target)


def test_build_encoder_with_pretrained_path(tmp_path: Path) -> None:
    source = build_encoder("mobilenetv3_large")
    path = tmp_path / "mnv3.pth"
    torch.save(_external_state(source, torchvision_mobilenet_key), path)
    _assert_same_state(source, build_encoder("mobilenetv3_large", str(path)))


def test_mismatched_file_raises_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "resnet18.pth"
    torch.save(_external_state(build_encoder("resnet18"), resnet_key), path)
    with pytest.raises(ValueError, match=r"does not fit encoder ResNetEncoder.*missing keys: layer1\.2\.") as info:
        load_pretrained(build_encoder("resnet34"), path)
    assert "(+" in str(info.value)  # long lists are truncated with a count

    with pytest.raises(ValueError, match=r"unexpected keys: conv1\.weight"):
        load_pretrained(build_encoder("mobilenetv3_large"), path)


def test_shape_mismatch_is_reported(tmp_path: Path) -> None:
    state = _external_state(build_encoder("resnet18"), resnet_key)
    state["conv1.weight"] = torch.zeros(64, 3, 3, 3)
    path = tmp_path / "bad.pth"
    torch.save(state, path)
    with pytest.raises(ValueError, match=r"shape mismatches: conv1\.weight \(64, 3, 3, 3\) vs \(64, 3, 7, 7\)"):
        load_pretrained(build_encoder("resnet18"), path)


def test_missing_file_raises() -> None:
    with pytest.raises(FileNotFoundError, match="pretrained weights file not found"):
        load_pretrained(build_encoder("resnet18"), "/nonexistent/weights.pth")


@pytest.mark.skipif(importlib.util.find_spec("safetensors") is None, reason="safetensors package not installed")
def test_load_pretrained_safetensors(tmp_path: Path) -> None:
    from safetensors.torch import save_file

    source = build_encoder("resnet18")
    path = tmp_path / "w.safetensors"
    save_file({k: v.contiguous() for k, v in _external_state(source, resnet_key).items()}, str(path))
    target = build_encoder("resnet18")
    load_pretrained(target, path)
    _assert_same_state(source, target)


@pytest.mark.skipif(importlib.util.find_spec("safetensors") is not None, reason="safetensors is installed")
def test_safetensors_without_package_explains(tmp_path: Path) -> None:
    path = tmp_path / "w.safetensors"
    path.write_bytes(b"\0" * 16)
    with pytest.raises(ValueError, match="pip install safetensors"):
        load_pretrained(build_encoder("resnet18"), path)


# ---- SHA-256 check of torchvision ImageNet weight files (NYUv2 recipe) --------------------------------


def _save_torchvision_resnet18(path: Path) -> Encoder:
    """A real resnet18 state dict in the torchvision layout at ``path``; returns the encoder it holds."""
    source = build_encoder("resnet18")
    _randomise_batch_norm_statistics(source)
    torch.save(_external_state(source, resnet_key), path)
    return source


def test_known_weights_table_matches_torchvision_names() -> None:
    """Every entry's digest starts with the hex its file name embeds, for an encoder of the registry."""
    assert {entry.encoder for entry in KNOWN_WEIGHTS} == set(ENCODERS)
    for entry in KNOWN_WEIGHTS:
        embedded = re.fullmatch(r"[a-z0-9_]+-([0-9a-f]{8})\.pth", entry.file_name)
        assert embedded is not None, entry.file_name
        assert re.fullmatch(r"[0-9a-f]{64}", entry.sha256), entry.file_name
        assert entry.sha256.startswith(embedded.group(1)), entry.file_name
        assert entry.url == f"https://download.pytorch.org/models/{entry.file_name}"


def test_known_name_with_wrong_content_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "resnet18-f37072fd.pth"
    _save_torchvision_resnet18(path)
    digest = file_sha256(path)
    with pytest.raises(ValueError) as info:
        build_encoder("resnet18", str(path))
    message = str(info.value)
    assert "\n" not in message
    assert "expected SHA-256 f37072fd47e89c5e827621c5baffa7500819f7896bbacec160b1a16c560e07ec" in message
    assert f"got {digest}" in message
    assert "https://download.pytorch.org/models/resnet18-f37072fd.pth" in message


def test_unrelated_file_name_is_loaded_with_its_digest_logged(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "my_resnet18_imagenet.pth"
    source = _save_torchvision_resnet18(path)
    target = build_encoder("resnet18")
    with caplog.at_level(logging.WARNING, logger="mtl_perception.model.encoders.weights"):
        report = load_pretrained(target, path)
    assert report.sha256 == file_sha256(path)
    assert report.release is None
    assert report.sha256 in caplog.text
    _assert_same_state_except_counters(source, target)


@pytest.mark.parametrize("digits", [8, 64], ids=["prefix", "full"])
def test_known_digest_or_prefix_is_checked(tmp_path: Path, digits: int) -> None:
    path = tmp_path / "resnet18-testfile.pth"
    _save_torchvision_resnet18(path)
    digest = file_sha256(path)
    matching = KnownWeights(path.name, "resnet18", "test release", digest[:digits], path.stat().st_size)
    assert verify_weights_file(path, (matching,)) == (digest, matching)

    flipped = ("0" if digest[0] != "0" else "1") + digest[1:digits]
    with pytest.raises(ValueError, match=f"expected SHA-256 {flipped} .*got {digest}"):
        verify_weights_file(path, (dataclasses.replace(matching, sha256=flipped),))
    other_name = tmp_path / "renamed.pth"
    path.rename(other_name)
    assert verify_weights_file(other_name, (matching,)) == (digest, None)  # the check goes by file name
