"""Per-task losses with validity masks, and the deep-supervision (aux) loss collection."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from mtl_perception.tasks import AUX_PREFIX, DEPTH, IGNORE_INDEX, NORMALS, SEMANTIC

DEPTH_LOSSES = ("log_l1", "silog")
NORMALS_LOSSES = ("cosine", "angular")


def _resize_target(target: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Nearest-neighbour resize of a ground-truth map (N,C,H,W) or (N,H,W) to ``size``."""
    if target.shape[-2:] == size:
        return target
    if target.dim() == 3:
        return F.interpolate(target[:, None].float(), size=size, mode="nearest")[:, 0].to(target.dtype)
    return F.interpolate(target, size=size, mode="nearest")


def depth_loss(pred: torch.Tensor, gt: torch.Tensor, kind: str = "log_l1", silog_lambda: float = 0.85) -> torch.Tensor:
    """Depth loss over valid pixels (gt > 0): L1 of log depth, or the scale-invariant log loss."""
    valid = gt > 0
    if not valid.any():
        return pred.sum() * 0.0
    diff = torch.log(pred[valid].clamp_min(1e-6)) - torch.log(gt[valid])
    if kind == "log_l1":
        return diff.abs().mean()
    if kind == "silog":
        return torch.sqrt((diff**2).mean() - silog_lambda * diff.mean() ** 2 + 1e-8)
    raise ValueError(f"unknown depth_loss '{kind}'; valid: {list(DEPTH_LOSSES)}")


def semantic_loss(logits: torch.Tensor, gt: torch.Tensor) -> torch.Tensor:
    """Cross-entropy that skips IGNORE_INDEX pixels."""
    if not (gt != IGNORE_INDEX).any():
        return logits.sum() * 0.0
    return F.cross_entropy(logits, gt, ignore_index=IGNORE_INDEX)


def normals_loss(pred: torch.Tensor, gt: torch.Tensor, kind: str = "cosine") -> torch.Tensor:
    """1 - cos (cosine) or the angle in radians (angular) between unit normals, over valid pixels."""
    valid = gt.abs().sum(dim=1) > 0
    if not valid.any():
        return pred.sum() * 0.0
    cos = (pred * gt).sum(dim=1)[valid].clamp(-1.0, 1.0)
    if kind == "cosine":
        return (1.0 - cos).mean()
    if kind == "angular":
        return torch.acos(cos.clamp(-1 + 1e-6, 1 - 1e-6)).mean()
    raise ValueError(f"unknown normals_loss '{kind}'; valid: {list(NORMALS_LOSSES)}")


def task_loss(task: str, pred: torch.Tensor, batch: dict[str, torch.Tensor], depth_kind: str, normals_kind: str) -> torch.Tensor:
    """Loss of one task's prediction (any resolution) against the batch's ground truth."""
    size = (pred.shape[-2], pred.shape[-1])
    target = _resize_target(batch[task], size)
    if task == DEPTH:
        return depth_loss(pred, target, depth_kind)
    if task == SEMANTIC:
        return semantic_loss(pred, target)
    if task == NORMALS:
        return normals_loss(pred, target, normals_kind)
    raise ValueError(f"unknown task '{task}'")


def compute_losses(outputs: dict[str, torch.Tensor], batch: dict[str, torch.Tensor], tasks: list[str] | tuple[str, ...],
                   depth_kind: str = "log_l1", normals_kind: str = "cosine", aux_weight: float = 0.5) -> dict[str, torch.Tensor]:
    """Per-task losses: each final output's loss plus ``aux_weight`` times the mean of its aux losses."""
    losses: dict[str, torch.Tensor] = {}
    for task in tasks:
        loss = task_loss(task, outputs[task], batch, depth_kind, normals_kind)
        aux = [task_loss(task, v, batch, depth_kind, normals_kind) for k, v in outputs.items()
               if k.startswith(AUX_PREFIX) and k.rsplit("/", 1)[-1] == task]
        if aux:
            loss = loss + aux_weight * torch.stack(aux).mean()
        losses[task] = loss
    return losses
