"""The self-describing model file: facts the node and tools read from the exported model only.

Stored in the ONNX ``metadata_props`` under the key ``mtl_perception`` as JSON, and next to a TensorRT
engine in the engine cache. Training decides these facts; nothing downstream repeats them.
"""
from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from typing import Any

METADATA_KEY = "mtl_perception"
METADATA_VERSION = 1

# Names of the graph's input and outputs (the backend contract).
INPUT_NAME = "image"
OUTPUT_NAMES = {"depth": "depth", "semantic": "semantic_logits", "normals": "normals"}


METADATA_MAX_BYTES = 256 * 1024  # a model with 1024 classes needs about 40 KiB
REEXPORT = "re-export the model with `mtl-perception export`"


class MetadataError(ValueError):
    """The model file's metadata is missing or inconsistent."""


@dataclass
class ModelMetadata:
    """Everything a consumer needs to feed the network and interpret its outputs."""

    tasks: list[str]  # tasks the model predicts, canonical order
    output_names: dict[str, str]  # task -> graph output name
    class_names: list[str]  # semantic class names, index = class id
    palette: list[list[int]]  # RGB colour per class
    input_height: int  # network input height (pixels)
    input_width: int  # network input width (pixels)
    channel_order: str = "rgb"  # channel order the network expects
    mean: list[float] = field(default_factory=lambda: [0.485, 0.456, 0.406])  # per-channel mean, on [0, 1] pixels
    std: list[float] = field(default_factory=lambda: [0.229, 0.224, 0.225])  # per-channel std, on [0, 1] pixels
    depth_units: str = "m"  # units of the depth output
    depth_min: float = 0.1  # smallest depth the model reports (metres)
    depth_max: float = 10.0  # largest depth the model reports (metres)
    focal_length_px: float = 0.0  # training camera's fx at the network input size; 0 = no rescaling
    depth_scaling: str = "focal"  # how depth follows a camera with another focal length: focal | none
    architecture: str = "hard"
    encoder: str = "resnet18"
    checkpoint_sha256: str = ""  # hash of the checkpoint the model was exported from
    config_hash: str = ""  # ExperimentConfig.hash() of the training run
    ignore_index: int = 255
    version: int = METADATA_VERSION

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> "ModelMetadata":
        """Parse and validate the metadata JSON once, where it enters (``schemas.MetadataSchema``).

        Bounded: at most ``METADATA_MAX_BYTES`` of JSON nested at most ``safeload.MAX_DEPTH`` levels. Every
        problem is a MetadataError naming the field and the fix.
        """
        from mtl_perception.safeload import LoadError, json_loads

        try:
            raw = json_loads(text, "model metadata", max_bytes=METADATA_MAX_BYTES)
        except LoadError as exc:
            raise MetadataError(f"{exc}; {REEXPORT}") from None
        if not isinstance(raw, dict):
            raise MetadataError(f"model metadata must be a JSON object of fields, got {type(raw).__name__} {str(raw)[:40]}; {REEXPORT}")
        missing = [f.name for f in dataclasses.fields(cls) if f.name not in raw and f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING]
        if missing:
            raise MetadataError(f"model metadata lacks {missing}; {REEXPORT}")
        version = raw.get("version", METADATA_VERSION)
        if isinstance(version, int) and not isinstance(version, bool) and version > METADATA_VERSION:
            raise MetadataError(f"model metadata version {version} is newer than this package understands ({METADATA_VERSION}); update mtl_perception")
        return cls._from_checked(raw)

    @classmethod
    def _from_checked(cls, raw: dict[str, Any]) -> "ModelMetadata":
        from pydantic import ValidationError

        from mtl_perception.schemas import MetadataSchema, describe_errors

        try:
            checked = MetadataSchema.model_validate(raw)
        except ValidationError as exc:
            raise MetadataError(f"{describe_errors(exc, label='model metadata field ')}; {REEXPORT}") from None
        unknown = [t for t in checked.tasks if t not in OUTPUT_NAMES]
        if unknown:  # the schema's Literal already refuses them; kept for readers of this method
            raise MetadataError(f"model metadata names unknown tasks {unknown}")
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in checked.model_dump().items() if k in names})

    def validate(self) -> "ModelMetadata":
        """Check an in-memory metadata object (e.g. before export embeds it) against the same schema."""
        self._from_checked(dataclasses.asdict(self))
        return self
