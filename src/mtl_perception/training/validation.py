"""Run a model over a dataset and compute every metric (distributed-aware), under a stated protocol.

Training validates with it and the ``evaluate`` and ``study`` commands score with it, so it sits in ``training``
(below evaluation, see docs/architecture.md).

``EvalProtocol`` says how predictions meet the ground truth:
- resolution ``native``: the ground truth stays at its stored size (NYUv2: 480x640) and predictions are
  resized to it (bilinear; semantic logits bilinear, then argmax; normals re-normalised), as published NYUv2
  numbers are computed; ``network``: the ground truth is nearest-resized to the network size (cheaper, what
  training validates with; its numbers cannot be compared with published ones).
- ``min_depth`` / ``max_depth``: ground-truth depth outside is not scored and predictions are clamped into
  the range (NYUv2: 1e-3 to 10 m).
- ``crop``: ``eigen`` scores only the Eigen crop (``metrics.EIGEN_CROP_480x640``, scaled to the size).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Iterable

import numpy as np
import torch
from torch import nn

from mtl_perception.distributed import DistInfo, all_reduce_sum, batch_to_device
from mtl_perception.metrics import MultiTaskMetrics, eigen_crop_mask, lower_is_better
from mtl_perception.tasks import DEPTH, IGNORE_INDEX, NORMALS, SEMANTIC


@dataclass(frozen=True)
class EvalProtocol:
    """How predictions are scored against the ground truth (module docstring)."""

    resolution: str = "native"  # native | network
    min_depth: float = 1e-3
    max_depth: float = math.inf
    crop: str = "none"  # none | eigen

    def describe(self) -> str:
        cap = "no cap" if math.isinf(self.max_depth) else f"depth {self.min_depth:g}..{self.max_depth:g} m"
        return f"{self.resolution} resolution, {cap}, crop {self.crop}"


class NativeTargets:
    """Dataset transform for ``resolution=native``: the image resized to the network size, the ground truth kept as stored."""

    def __init__(self, height: int, width: int) -> None:
        self.height, self.width = height, width

    def __call__(self, record: dict[str, np.ndarray]) -> dict[str, torch.Tensor]:
        from mtl_perception.data.transforms import resize_record, to_sample

        sample = to_sample(record)  # the ground truth at its stored size
        sample.update(to_sample(resize_record({"rgb": record["rgb"], "K": record["K"]}, self.height, self.width)))  # image, intrinsics
        return sample


def align_outputs(outputs: dict[str, torch.Tensor], batch: dict[str, Any]) -> dict[str, torch.Tensor]:
    """Predictions resized to each task's ground-truth size where they differ (bilinear; normals re-normalised)."""
    import torch.nn.functional as F

    aligned = dict(outputs)
    for task, value in outputs.items():
        target = batch.get(task)
        if target is None or not torch.is_tensor(target):
            continue
        size = tuple(target.shape[-2:])
        if tuple(value.shape[-2:]) == size:
            continue
        resized = F.interpolate(value, size=size, mode="bilinear", align_corners=False)
        if task == NORMALS:
            resized = F.normalize(resized, dim=1)
        aligned[task] = resized
    return aligned


def apply_crop(batch: dict[str, Any], crop: str) -> dict[str, Any]:
    """The batch with ground truth outside the crop marked invalid (depth 0, labels ignored, normals 0)."""
    if crop == "none":
        return batch
    if crop != "eigen":
        raise ValueError(f"unknown crop '{crop}'; valid: none, eigen")
    out = dict(batch)
    for task in (DEPTH, SEMANTIC, NORMALS):
        if task not in batch:
            continue
        target = batch[task]
        mask = torch.from_numpy(eigen_crop_mask(*target.shape[-2:])).to(target.device)
        if task == SEMANTIC:
            out[task] = torch.where(mask, target, torch.full_like(target, IGNORE_INDEX))
        else:
            out[task] = target * mask.to(target.dtype)
    return out


@torch.inference_mode()
def evaluate_model(model: nn.Module, batches: Iterable[dict[str, torch.Tensor]], tasks: list[str] | tuple[str, ...],
                   num_classes: int, class_names: list[str] | None = None, device: torch.device | str = "cpu",
                   dist_info: DistInfo | None = None, on_batch: Any = None, protocol: EvalProtocol | None = None) -> dict[str, dict[str, float]]:
    """Accumulate metrics over ``batches`` (summed across processes when distributed), under inference mode.

    ``model`` is the network itself, never a DistributedDataParallel wrapper (whose forward is a collective:
    see ``Trainer.validate``); a wrapper is refused.

    Predictions whose size differs from the ground truth's are resized to it (``align_outputs``); ``protocol``
    sets the depth range and crop (default: no cap, no crop). ``on_batch(batch, outputs)`` is called for each
    batch (e.g. to collect contact-sheet rows).
    """
    if isinstance(model, nn.parallel.DistributedDataParallel):
        raise TypeError("evaluate_model runs the network itself: pass model.module, not its DistributedDataParallel wrapper")
    protocol = protocol or EvalProtocol()
    device = torch.device(device)
    was_training = getattr(model, "training", False)
    if hasattr(model, "eval"):
        model.eval()
    metrics = MultiTaskMetrics(list(tasks), num_classes, IGNORE_INDEX, class_names, protocol.min_depth, protocol.max_depth)
    for batch in batches:
        batch = apply_crop(batch_to_device(batch, device), protocol.crop)
        outputs = align_outputs({k: v.float() for k, v in model(batch["image"]).items() if k in tasks}, batch)
        metrics.update(outputs, batch)
        if on_batch is not None:
            on_batch(batch, outputs)
    if dist_info is not None and dist_info.enabled:
        metrics.load_state(all_reduce_sum(metrics.state(), dist_info, device))
    if hasattr(model, "train"):
        model.train(was_training)
    return metrics.compute()


def metric_value(results: dict[str, dict[str, float]], name: str) -> tuple[float, bool]:
    """Look up ``task.key`` in evaluation results; return (value, lower_is_better)."""
    if "." not in name:
        raise ValueError(f"metric '{name}' must look like task.key, e.g. depth.rmse or semantic.miou")
    task, key = name.split(".", 1)
    if task not in results or key not in results[task]:
        available = [f"{t}.{k}" for t, r in results.items() for k in r]
        raise ValueError(f"metric '{name}' not in the evaluation results; available: {available}")
    return float(results[task][key]), lower_is_better(key)
