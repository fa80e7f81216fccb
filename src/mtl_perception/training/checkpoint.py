"""Checkpoints: written atomically (temp file + rename), loaded with ``weights_only=True``.

A checkpoint is a dict: ``format``, ``config`` (ExperimentConfig as a dict), ``model`` (state dict),
``optimizer``, ``scheduler``, ``step``, ``best_metric``, ``dataset`` (class names, palette, focal length
of the training camera at the network input size) and ``loss_weighting`` (state of the weighting scheme).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from mtl_perception.config import ExperimentConfig, config_from_dict
from mtl_perception.fileio import atomic_write_bytes

CHECKPOINT_FORMAT = "mtl_perception.checkpoint/1"
# Architectures whose checkpoints from before ``model.sharing`` existed share the decoder (today's ``neck``; their
# ``decoder.*`` keys load as ``neck.*``: ``MultiTaskNet.renamed_modules``).
NECK_BEFORE_SHARING = ("padnet", "pap")


class CheckpointError(RuntimeError):
    """A checkpoint file is missing, unreadable or not one of this package's."""


def plain(value: Any) -> Any:
    """NumPy scalars and arrays to Python numbers and lists, recursively (tensors kept), so that the
    checkpoint loads with ``weights_only=True``."""
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(plain(v) for v in value)
    if isinstance(value, (np.generic, np.ndarray)):
        return value.tolist()
    return value


def save_checkpoint(path: str | Path, state: dict[str, Any]) -> None:
    """Serialise ``state`` with torch.save and write it atomically."""
    import io

    buffer = io.BytesIO()
    torch.save(plain({"format": CHECKPOINT_FORMAT, **state}), buffer)
    atomic_write_bytes(path, buffer.getvalue())


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load a checkpoint safely (no code execution); raise CheckpointError with a fix on failure."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # torch raises several types for truncated/corrupt files
        if "Weights only load failed" in str(exc):
            raise CheckpointError(f"checkpoint {path} holds Python objects other than tensors and plain data; refused, because loading "
                                  "them could run code: use a checkpoint written by `mtl-perception train`") from None
        raise CheckpointError(f"checkpoint {path} is unreadable ({type(exc).__name__}); it may be truncated: use another checkpoint or retrain") from None
    if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointError(f"{path} is not an mtl_perception checkpoint (expected format {CHECKPOINT_FORMAT})")
    return state


def describe_load_error(exc: BaseException) -> str:
    """A one-line summary of a ``load_state_dict`` failure: how many keys are missing, unexpected or of another shape."""
    text = str(exc)
    counts = {label: sum(line.count("\"") // 2 for line in text.splitlines() if line.strip().startswith(marker))
              for label, marker in (("missing weights", "Missing key(s)"), ("unexpected weights", "Unexpected key(s)"))}
    counts["weights of another shape"] = text.count("size mismatch for")
    parts = [f"{n} {label}" for label, n in counts.items() if n]
    return ", ".join(parts) or text.strip().splitlines()[0]


def with_sharing(raw_config: Any) -> Any:
    """A checkpoint's config with ``model.sharing`` filled in where it predates the key: ``neck`` for the
    architectures that shared their decoder then (``NECK_BEFORE_SHARING``); others keep the default ``encoder``."""
    model = raw_config.get("model") if isinstance(raw_config, dict) else None
    if isinstance(model, dict) and "sharing" not in model and model.get("architecture") in NECK_BEFORE_SHARING:
        return {**raw_config, "model": {**model, "sharing": "neck"}}
    return raw_config


def model_from_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> tuple[nn.Module, ExperimentConfig, dict[str, Any]]:
    """Rebuild the network a checkpoint was trained with and load its weights (eval mode)."""
    from mtl_perception.model.network import build_model

    state = load_checkpoint(path, map_location)
    config = config_from_dict(with_sharing(state["config"]))
    config.model.pretrained = None  # the checkpoint already holds the trained weights
    model = build_model(config.model)
    try:
        model.load_state_dict(state["model"])
    except RuntimeError as exc:
        raise CheckpointError(f"checkpoint {path} does not match its own model config ({describe_load_error(exc)}); it was edited or "
                              "written by another program: use a checkpoint written by `mtl-perception train`") from None
    model.eval()
    return model, config, state
