"""Run a model over a dataset and compute every metric (distributed-aware)."""
from __future__ import annotations

from typing import Any, Iterable

import numpy as np
import torch
from torch import nn

from mtl_perception.evaluation.metrics import MultiTaskMetrics
from mtl_perception.tasks import IGNORE_INDEX
from mtl_perception.training.distributed import DistInfo, all_reduce_sum

LOWER_IS_BETTER = {"abs_rel", "sq_rel", "rmse", "rmse_log", "mean", "median", "loss"}


def batch_to_device(batch: dict[str, Any], device: torch.device) -> dict[str, Any]:
    """Move every tensor of a batch dict to ``device``."""
    return {k: v.to(device, non_blocking=True) if torch.is_tensor(v) else v for k, v in batch.items()}


@torch.no_grad()
def evaluate_model(model: nn.Module, batches: Iterable[dict[str, torch.Tensor]], tasks: list[str] | tuple[str, ...],
                   num_classes: int, class_names: list[str] | None = None, device: torch.device | str = "cpu",
                   dist_info: DistInfo | None = None, on_batch: Any = None) -> dict[str, dict[str, float]]:
    """Accumulate metrics over ``batches`` (summed across processes when distributed).

    ``on_batch(batch, outputs)`` is called for each batch (e.g. to collect contact-sheet rows).
    """
    device = torch.device(device)
    was_training = model.training
    model.eval()
    metrics = MultiTaskMetrics(list(tasks), num_classes, IGNORE_INDEX, class_names)
    for batch in batches:
        batch = batch_to_device(batch, device)
        outputs = {k: v.float() for k, v in model(batch["image"]).items()}
        metrics.update(outputs, batch)
        if on_batch is not None:
            on_batch(batch, outputs)
    if dist_info is not None and dist_info.enabled:
        metrics.load_state(all_reduce_sum(metrics.state(), dist_info, device))
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
    return float(results[task][key]), key in LOWER_IS_BETTER


def json_safe(value: Any) -> Any:
    """Replace NaN/inf floats (e.g. IoU of a class absent from a dataset) by None, recursively."""
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    if isinstance(value, float) and not np.isfinite(value):
        return None
    return value
