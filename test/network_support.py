"""Helpers of the network tests: trained-like batch norms, configs and verified ONNX exports of random networks."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from mtl_perception.config import ExperimentConfig
from mtl_perception.inference.export import ExportReport


def randomise_batchnorm(model: torch.nn.Module) -> None:
    """Give every batch norm non-trivial scales and statistics, like a trained network has."""
    g = torch.Generator().manual_seed(3)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.weight.copy_(torch.rand(module.weight.shape, generator=g) + 0.5)
                module.bias.copy_(torch.randn(module.bias.shape, generator=g) * 0.1)
                module.running_mean.copy_(torch.randn(module.running_mean.shape, generator=g) * 0.1)
                module.running_var.copy_(torch.rand(module.running_var.shape, generator=g) + 0.5)


EXPORT_SIZE = 64
EXPORT_DATASET = {"class_names": [f"c{i}" for i in range(7)], "palette": [[i, i, i] for i in range(7)],
                  "focal_length_px": 50.0}


def network_config(encoder: str = "resnet18", architecture: str = "hard", height: int = EXPORT_SIZE,
                   width: int = EXPORT_SIZE, sharing: str = "encoder", decoder_stride: int = 4) -> ExperimentConfig:
    """The default experiment with another encoder, architecture, sharing depth, decoder stride or input size."""
    cfg = ExperimentConfig()
    cfg.model.encoder, cfg.model.architecture = encoder, architecture
    cfg.model.sharing, cfg.model.decoder_stride = sharing, decoder_stride
    cfg.data.height, cfg.data.width = height, width
    return cfg.validate()


@dataclass(frozen=True)
class Exported:
    """A random network (trained-like batch norms) exported to ONNX: its config and the export's report."""

    config: ExperimentConfig
    report: ExportReport


def export_random_network(folder: Path, encoder: str, architecture: str, sharing: str = "encoder",
                          decoder_stride: int = 4) -> Exported:
    """Export one (encoder, architecture, sharing, decoder stride) at 64x64, opset 17, verified against PyTorch
    (conftest caches it)."""
    from mtl_perception.inference.checkpoint_model import build_metadata
    from mtl_perception.inference.export import export_model
    from mtl_perception.model.network import build_model

    torch.manual_seed(0)
    config = network_config(encoder, architecture, sharing=sharing, decoder_stride=decoder_stride)
    model = build_model(config.model).eval()
    randomise_batchnorm(model)
    meta = build_metadata(config, EXPORT_DATASET, "0" * 64)
    return Exported(config, export_model(model, meta, folder / f"{encoder}-{architecture}-{sharing}-{decoder_stride}.onnx", opset=17))
