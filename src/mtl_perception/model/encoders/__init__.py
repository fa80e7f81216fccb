"""Encoder registry: ``build_encoder(name, pretrained)`` returns an ``Encoder`` (see base.py)."""
from __future__ import annotations

from typing import Callable

from mtl_perception.model.encoders.base import Encoder
from mtl_perception.model.encoders.mobilenet import mobilenetv3_large, mobilenetv3_small
from mtl_perception.model.encoders.resnet import resnet18, resnet34, resnet50
from mtl_perception.model.encoders.weights import load_pretrained

ENCODERS: dict[str, Callable[[], Encoder]] = {
    "resnet18": resnet18,
    "resnet34": resnet34,
    "resnet50": resnet50,
    "mobilenetv3_large": mobilenetv3_large,
    "mobilenetv3_small": mobilenetv3_small,
}


def build_encoder(name: str, pretrained: str | None = None) -> Encoder:
    """Build a backbone by name, optionally loading ImageNet weights from a local file."""
    if name not in ENCODERS:
        raise ValueError(f"unknown encoder '{name}'; valid: {sorted(ENCODERS)}")
    encoder = ENCODERS[name]()
    if pretrained:
        load_pretrained(encoder, pretrained)
    return encoder


__all__ = ["Encoder", "ENCODERS", "build_encoder", "load_pretrained"]
