"""One name for each thing: the shared neck is ``neck`` in every architecture (PAD-Net and PAP-Net called it
``decoder`` once: such state dicts load into today's model and give identical outputs), one largest input
side for configs and model files, and one set of constrained field types (``schemas.py``)."""
from __future__ import annotations

import ast
import json
from pathlib import Path
from typing import Any

import pytest
import torch
from network_support import EXPORT_DATASET, randomise_batchnorm
from torch import nn

from mtl_perception import schemas
from mtl_perception.config import ExperimentConfig, config_from_dict
from mtl_perception.inference.metadata import MetadataError, ModelMetadata
from mtl_perception.model.network import ARCHITECTURES, build_model
from mtl_perception.training.checkpoint import model_from_checkpoint, save_checkpoint

torch.set_num_threads(1)

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "mtl_perception"
NECK_ARCHITECTURES = sorted(name for name, cls in ARCHITECTURES.items() if "neck" in cls.sharing_depths)
RENAMED = ("padnet", "pap")  # their neck was the module ``decoder``


def neck_config(architecture: str) -> ExperimentConfig:
    """``architecture`` with a shared neck, MobileNetV3-small, narrow decoders, 64x64."""
    cfg = ExperimentConfig()
    cfg.model.architecture, cfg.model.sharing, cfg.model.encoder = architecture, "neck", "mobilenetv3_small"
    cfg.model.decoder_channels = cfg.model.head_channels = 8
    cfg.data.height = cfg.data.width = 64
    return cfg.validate()


def trained_looking(architecture: str) -> nn.Module:
    """The model in eval mode with batch-norm statistics unlike a fresh model's (a weight left unloaded shows)."""
    torch.manual_seed(0)
    model = build_model(neck_config(architecture).model).eval()
    randomise_batchnorm(model)
    return model


def with_old_names(state: dict[str, torch.Tensor], prefix: str = "") -> dict[str, torch.Tensor]:
    """A state dict as PAD-Net / PAP-Net wrote it before the rename: ``neck.*`` keys as ``decoder.*``."""
    start = f"{prefix}neck."
    return {(f"{prefix}decoder.{k[len(start):]}" if k.startswith(start) else k): v for k, v in state.items()}


def outputs(model: nn.Module) -> dict[str, torch.Tensor]:
    image = torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        return model(image)


@pytest.mark.parametrize("architecture", NECK_ARCHITECTURES)
def test_every_shared_neck_is_the_module_neck(architecture: str) -> None:
    model = build_model(neck_config(architecture).model)
    top = {name for name, _ in model.named_children()}
    assert "neck" in top and "decoder" not in top
    assert {key.split(".")[0] for key in model.state_dict()} >= {"encoder", "neck"}


@pytest.mark.parametrize("architecture", RENAMED)
def test_checkpoint_with_the_old_keys_loads_and_gives_identical_outputs(tmp_path: Path, architecture: str) -> None:
    model = trained_looking(architecture)
    old = with_old_names(model.state_dict())
    assert any(k.startswith("decoder.") for k in old) and not any(k.startswith("neck.") for k in old)
    raw = neck_config(architecture).to_dict()
    del raw["model"]["sharing"]  # written before model.sharing existed, as such checkpoints were
    path = tmp_path / "old.pt"
    save_checkpoint(path, {"config": raw, "model": old, "step": 0, "dataset": EXPORT_DATASET})
    loaded, config, _ = model_from_checkpoint(path)  # loads strictly: a key not remapped is an error
    assert config.model.sharing == "neck" and loaded.state_dict().keys() == model.state_dict().keys()
    want, got = outputs(model), outputs(loaded)
    assert set(got) == set(want)
    for task, value in want.items():
        torch.testing.assert_close(got[task], value, rtol=0, atol=0)


def test_old_keys_load_under_a_wrapper_prefix_and_both_names_at_once_are_refused() -> None:
    model = trained_looking("padnet")
    wrapper = nn.ModuleDict({"module": build_model(neck_config("padnet").model).eval()})  # as DDP nests it
    wrapper.load_state_dict(with_old_names({f"module.{k}": v for k, v in model.state_dict().items()}, "module."))
    for task, value in outputs(model).items():
        torch.testing.assert_close(outputs(wrapper["module"])[task], value, rtol=0, atol=0)
    both = {**model.state_dict(), **with_old_names(model.state_dict())}  # neck.* and decoder.*: nothing is overwritten
    with pytest.raises(RuntimeError, match=r"Unexpected key\(s\).*\"decoder\."):
        build_model(neck_config("padnet").model).load_state_dict(both)


def metadata(side: int) -> dict[str, Any]:
    return {"tasks": ["depth"], "output_names": {"depth": "depth"}, "class_names": [], "palette": [],
            "input_height": side, "input_width": 32}


def test_configs_and_model_files_share_one_largest_input_side() -> None:
    side = schemas.MAX_INPUT_SIDE
    assert config_from_dict({"data": {"height": side, "width": side}}).data.height == side
    with pytest.raises(ValueError, match=rf"data.height must be at most {side}"):
        config_from_dict({"data": {"height": side + 1}})
    assert ModelMetadata.from_json(json.dumps(metadata(side))).input_height == side
    with pytest.raises(MetadataError, match=rf"input_height must be at most {side}"):
        ModelMetadata.from_json(json.dumps(metadata(side + 1)))


def test_constrained_field_types_are_defined_once_in_schemas() -> None:
    """No module but schemas.py defines a module-level ``X = Annotated[...]`` type, nor its own MAX_INPUT_SIDE."""
    elsewhere = []
    for path in sorted(PACKAGE.rglob("*.py")):
        if path.name == "schemas.py" and path.parent == PACKAGE:
            continue
        for node in ast.parse(path.read_text()).body:
            if not isinstance(node, (ast.Assign, ast.AnnAssign)):
                continue
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            names = [t.id for t in targets if isinstance(t, ast.Name)]
            value = node.value
            annotated = isinstance(value, ast.Subscript) and isinstance(value.value, ast.Name) and value.value.id == "Annotated"
            if annotated or "MAX_INPUT_SIDE" in names:
                elsewhere.append(f"{path.relative_to(PACKAGE)}: {names}")
    assert elsewhere == []
