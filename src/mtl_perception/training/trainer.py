"""The training loop: one process or many (torchrun/DDP), AMP on CUDA, atomic checkpoints, resume.

Outputs in ``train.out_dir``: ``last.pt`` (every ``ckpt_every`` steps and at the end), ``best.pt`` (best
validation score), ``metrics.json`` (last validation), ``config.yaml`` and TensorBoard logs in ``tb/``.
"""
from __future__ import annotations

import json
import logging
import random
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader

from mtl_perception.config import ExperimentConfig
from mtl_perception.data.datasets import build_datasets, dataset_info
from mtl_perception.distributed import (DistInfo, all_reduce_sum, any_rank, average_gradients, barrier, batch_to_device,
                                        init_distributed, shutdown_distributed)
from mtl_perception.metrics import delta_m
from mtl_perception.fileio import atomic_write_bytes, json_safe, remove_stale_temp_files
from mtl_perception.model.network import build_model
from mtl_perception.model.registry import MultiTaskNet
from mtl_perception.training.checkpoint import CheckpointError, describe_load_error, load_checkpoint, save_checkpoint
from mtl_perception.training.losses import compute_losses
from mtl_perception.training.sampler import StepBatchSampler
from mtl_perception.training.schedule import build_scheduler
from mtl_perception.training.validation import evaluate_model, metric_value
from mtl_perception.training.weighting import LossWeighting, build_weighting

LOG = logging.getLogger(__name__)


@dataclass
class TrainResult:
    """What a finished run reports."""

    steps: int
    seconds: float
    images_per_second: float  # training steps only (validation and checkpoint time excluded)
    metrics: dict[str, dict[str, float]] = field(default_factory=dict)
    best_score: float | None = None
    out_dir: str = ""
    loss_history: list[dict[str, float]] = field(default_factory=list)  # each step's task losses (this run, this process)


def resolve_device(name: str, dist_info: DistInfo | None = None) -> torch.device:
    """``auto`` picks CUDA when present (one GPU per local rank), else CPU."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda" and dist_info is not None:
        name = f"cuda:{dist_info.local_rank}"
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("train.device asks for CUDA but no CUDA device is available; use device: cpu")
    return device


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def _unwrap(model: nn.Module) -> MultiTaskNet:
    return model.module if isinstance(model, DistributedDataParallel) else model


def _shared_parameters(model: nn.Module) -> list[torch.Tensor]:
    """The last shared layer's parameters, for gradient-based loss weighting."""
    return list(_unwrap(model).last_shared_parameters())


def _param_groups(model: nn.Module, weighting: LossWeighting, lr: float) -> list[dict[str, Any]]:
    groups = _unwrap(model).param_groups(lr)
    extra = [p for p in weighting.parameters() if p.requires_grad]
    if extra:
        groups.append({"params": extra, "lr": lr, "weight_decay": 0.0})
    return groups


def build_optimizer(config: ExperimentConfig, groups: list[dict[str, Any]]) -> torch.optim.Optimizer:
    t = config.train
    if t.optimizer == "adamw":
        return torch.optim.AdamW(groups, lr=t.lr, weight_decay=t.weight_decay)
    if t.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=t.lr, momentum=t.momentum, weight_decay=t.weight_decay)
    raise ValueError(f"unknown optimizer '{t.optimizer}'; valid: ['adamw', 'sgd']")


def _collate_loader(dataset: Any, batch_sampler: Any, workers: int, pin_memory: bool = False) -> DataLoader:
    """Training batches; ``pin_memory`` (on for CUDA) makes the ``non_blocking`` host-to-GPU copies really asynchronous."""
    return DataLoader(dataset, batch_sampler=batch_sampler, num_workers=workers, persistent_workers=False, pin_memory=pin_memory)


def _val_loader(dataset: Any, batch_size: int, info: DistInfo, workers: int, pin_memory: bool = False) -> DataLoader:
    """Each rank evaluates a disjoint, fixed slice of the validation set."""
    indices = list(range(info.rank, len(dataset), info.world_size))
    subset = torch.utils.data.Subset(dataset, indices)
    return DataLoader(subset, batch_size=batch_size, shuffle=False, num_workers=workers, pin_memory=pin_memory)


def broadcast_buffers(module: nn.Module, info: DistInfo) -> None:
    """Give every process rank 0's buffers (a collective; nothing in a single process)."""
    if info.enabled:
        for buffer in module.buffers():
            torch.distributed.broadcast(buffer, src=0)


def load_scaler_state(scaler: torch.amp.GradScaler, state: dict[str, Any] | None) -> bool:
    """Restore a GradScaler; False (and a fresh scale) when the checkpoint's scaler was disabled.

    A checkpoint written on the CPU or with ``amp: false`` holds an empty scaler state, which an enabled
    GradScaler refuses ("The source state dict is empty"); AMP then starts from its initial scale.
    """
    if not state:
        return False
    scaler.load_state_dict(state)
    return True


def check_finite_loss(total: torch.Tensor, losses: dict[str, torch.Tensor], step: int, info: DistInfo, device: torch.device) -> None:
    """FloatingPointError on *every* process when the loss is non-finite on any.

    Raising on one rank only would leave the others waiting forever in the next gradient all-reduce.
    """
    bad_here = not bool(torch.isfinite(total))
    if any_rank(bad_here, info, device):
        where = "this process" if bad_here else "another process"
        detail = {k: float(v) for k, v in losses.items()} if bad_here else "see that rank's log"
        raise FloatingPointError(f"non-finite loss at step {step} on {where} (rank {info.rank} of {info.world_size}): {detail}; lower train.lr")


class Trainer:
    """Holds the run's state; ``fit()`` trains to ``train.steps``."""

    def __init__(self, config: ExperimentConfig, resume: str | None = None, progress: bool = True) -> None:
        self.config = config
        t = config.train
        if t.threads > 0:
            torch.set_num_threads(t.threads)
        self.dist = init_distributed("cuda" if t.device.startswith("cuda") or (t.device == "auto" and torch.cuda.is_available()) else "cpu")
        self.device = resolve_device(t.device, self.dist)
        seed_everything(t.seed)
        self.out_dir = Path(t.out_dir)
        self.progress = progress and self.dist.is_main
        self.info = dataset_info(config.data)
        self.train_set, self.val_set = build_datasets(config.data)
        self.tasks = list(config.model.tasks)

        model = build_model(config.model).to(self.device)
        self.weighting = build_weighting(t.loss_weighting, self.tasks, t.task_weights, **t.weighting_options).to(self.device)
        self.model: nn.Module = DistributedDataParallel(model, device_ids=[self.device.index] if self.device.type == "cuda" else None) if self.dist.enabled else model
        self.optimizer = build_optimizer(config, _param_groups(self.model, self.weighting, t.lr))
        self.scheduler = build_scheduler(self.optimizer, t.steps, t.warmup_steps, t.schedule)
        self.amp = t.amp and self.device.type == "cuda"
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.amp)
        self.step = 0
        self.best_score: float | None = None
        self.reference: dict[str, dict[str, float]] | None = None  # first validation, for delta_m scores
        if resume:
            self._resume(resume)

    # -- checkpoints -------------------------------------------------------------------------
    def _state(self) -> dict[str, Any]:
        return {
            "config": self.config.to_dict(),
            "model": _unwrap(self.model).state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "scaler": self.scaler.state_dict(),
            "loss_weighting": self.weighting.state_dict(),
            "step": self.step,
            "best_metric": self.best_score,
            "reference_metrics": self.reference,
            "dataset": {"class_names": self.info.class_names, "palette": [list(map(int, c)) for c in self.info.palette],
                        "focal_length_px": float(self.info.focal_length_px)},
        }

    def _resume(self, path: str) -> None:
        if path == "auto":
            candidate = self.out_dir / "last.pt"
            if not candidate.is_file():
                return
            path = str(candidate)
        state = load_checkpoint(path, map_location=self.device)
        try:
            _unwrap(self.model).load_state_dict(state["model"])
            self.optimizer.load_state_dict(state["optimizer"])
            self.scheduler.load_state_dict(state["scheduler"])
            if not load_scaler_state(self.scaler, state.get("scaler")) and self.scaler.is_enabled():
                LOG.warning("resuming %s: its GradScaler state is empty (written on the CPU or with amp off); AMP starts from its initial scale", path)
            self.weighting.load_state_dict(state["loss_weighting"])
        except (KeyError, RuntimeError, ValueError) as exc:
            reason = describe_load_error(exc) if isinstance(exc, RuntimeError) else f"{type(exc).__name__}: {exc}"
            raise CheckpointError(f"cannot resume from {path}: it was written by another model or training setup ({reason}); "
                                  "resume with the config that wrote it, or use a new train.out_dir") from None
        self.step = int(state["step"])
        self.best_score = state.get("best_metric")
        self.reference = state.get("reference_metrics")

    def save(self, name: str) -> None:
        if self.dist.is_main:
            save_checkpoint(self.out_dir / name, self._state())

    # -- validation --------------------------------------------------------------------------
    def validate(self) -> dict[str, dict[str, float]]:
        """Metrics of the network on the validation set, each process on its own slice.

        Runs the unwrapped network, never the DistributedDataParallel wrapper: the wrapper broadcasts the buffers
        before every forward (a collective), and the slices differ by a batch when the set does not divide by
        the number of processes, so a process with one batch more would wait forever. Rank 0's buffers
        (BatchNorm statistics, which each process updates with its own batches) are broadcast once first, so
        every process scores the network that rank 0 saves.
        """
        loader = _val_loader(self.val_set, self.config.train.batch_size, self.dist, self.config.data.workers, self.pin_memory)
        broadcast_buffers(self.network, self.dist)
        return evaluate_model(self.network, loader, self.tasks, self.config.model.num_classes, self.info.class_names,
                              self.device, self.dist)

    @property
    def network(self) -> MultiTaskNet:
        """The network itself (under its DistributedDataParallel wrapper when there is one)."""
        return _unwrap(self.model)

    @property
    def pin_memory(self) -> bool:
        return self.device.type == "cuda"

    def _score(self, metrics: dict[str, dict[str, float]]) -> float:
        """Higher is better."""
        name = self.config.train.best_metric
        if name == "delta_m":
            if self.reference is None:
                self.reference = metrics
            try:
                return delta_m(metrics, self.reference, self.tasks)
            except ValueError:  # a zero or non-finite reference value (e.g. mIoU 0 early on): restart from here
                self.reference = metrics
                return 0.0
        value, lower = metric_value(metrics, name)
        return -value if lower else value

    # -- the loop ----------------------------------------------------------------------------
    def fit(self) -> TrainResult:
        from torch.utils.tensorboard import SummaryWriter
        from tqdm import tqdm

        t = self.config.train
        self.out_dir.mkdir(parents=True, exist_ok=True)
        writer = SummaryWriter(str(self.out_dir / "tb")) if self.dist.is_main else None
        if self.dist.is_main:
            remove_stale_temp_files(self.out_dir, ["last.pt", "best.pt", "metrics.json", "config.yaml"])  # from a killed run
            atomic_write_bytes(self.out_dir / "config.yaml", yaml.safe_dump(self.config.to_dict(), sort_keys=False).encode())
        sampler = StepBatchSampler(len(self.train_set), t.batch_size, t.steps, self.step, t.seed, self.dist.rank, self.dist.world_size)
        loader = _collate_loader(self.train_set, sampler, self.config.data.workers, self.pin_memory)
        bar = tqdm(total=t.steps, initial=self.step, desc="train", disable=not self.progress, dynamic_ncols=True)
        metrics: dict[str, dict[str, float]] = {}
        history: list[dict[str, float]] = []
        start_step, started, side_seconds = self.step, time.perf_counter(), 0.0
        self.model.train()
        for batch in loader:
            losses = self._train_step(batch_to_device(batch, self.device))
            history.append(losses)
            self.step += 1
            bar.update(1)
            if self.step % t.log_every == 0 or self.step == t.steps:
                bar.set_postfix({k: f"{v:.3f}" for k, v in losses.items()})
                if writer is not None:
                    for task, value in losses.items():
                        writer.add_scalar(f"loss/{task}", value, self.step)
                    for task, weight in self.weighting.weights().items():
                        writer.add_scalar(f"weight/{task}", weight, self.step)
                    writer.add_scalar("lr", self.optimizer.param_groups[0]["lr"], self.step)
            side_started = time.perf_counter()
            if self.step % t.val_every == 0 or self.step == t.steps:
                metrics = self._validate_and_track(writer)
            if self.step % t.ckpt_every == 0 or self.step == t.steps:
                self.save("last.pt")
            side_seconds += time.perf_counter() - side_started
        bar.close()
        seconds = time.perf_counter() - started - side_seconds
        done = self.step - start_step
        if writer is not None:
            writer.close()
        barrier(self.dist)
        images = done * t.batch_size * self.dist.world_size
        return TrainResult(self.step, seconds, images / seconds if seconds > 0 else 0.0, metrics, self.best_score,
                           str(self.out_dir), history)

    def _losses(self, model: nn.Module, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        t = self.config.train
        with torch.autocast(device_type=self.device.type, enabled=self.amp):
            outputs = model(batch["image"])
        outputs = {k: v.float() for k, v in outputs.items()}
        return compute_losses(outputs, batch, self.tasks, t.depth_loss, t.normals_loss, t.aux_weight)

    def _losses_after_step(self, batch: dict[str, torch.Tensor]) -> dict[str, float]:
        """The batch's losses under the updated weights: no grad, still in training mode (batch statistics, like
        the step's own losses), and the network's buffers (BatchNorm running statistics) left as they were."""
        network = self.network
        saved = [buffer.clone() for buffer in network.buffers()]
        with torch.no_grad():
            losses = {k: float(v) for k, v in self._losses(network, batch).items()}
            for buffer, value in zip(network.buffers(), saved):
                buffer.copy_(value)
        return losses

    def _global_mean(self, values: dict[str, float]) -> dict[str, float]:
        """Per-task values averaged over the DDP processes (a collective); themselves in a single process."""
        if not self.dist.enabled:
            return values
        names = list(values)
        summed = all_reduce_sum(np.array([values[k] for k in names], dtype=np.float64), self.dist, self.device)
        return {k: float(v) / self.dist.world_size for k, v in zip(names, summed)}

    def _train_step(self, batch: dict[str, torch.Tensor]) -> dict[str, float]:
        t = self.config.train
        losses = self._losses(self.model, batch)
        # gradient-based weightings differentiate each task's loss: under AMP at the scaler's scale (FP16 underflow)
        loss_scale = self.scaler.get_scale() if self.amp and self.weighting.USES_GRADIENTS else 1.0
        total = self.weighting(losses, _shared_parameters(self.model), loss_scale)
        check_finite_loss(total, losses, self.step, self.dist, self.device)
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(total).backward()
        # DDP all-reduces the network's gradients only; the loss-weighting parameters (uncertainty, GradNorm)
        # live outside it, so their gradients are averaged here, or every rank would train its own weights.
        average_gradients([p for p in self.weighting.parameters() if p.requires_grad], self.dist)
        if t.grad_clip > 0:
            self.scaler.unscale_(self.optimizer)
            torch.nn.utils.clip_grad_norm_(_unwrap(self.model).parameters(), t.grad_clip)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.scheduler.step()
        values = {k: float(v.detach()) for k, v in losses.items()}
        # the weighting's bookkeeping (DWA history, GradNorm renormalisation, FAMO's logits) sees the global
        # losses, so that every process keeps the same weighting state
        before = self._global_mean(values)
        self.weighting.after_step(before)
        if self.weighting.RECOMPUTES_LOSSES:
            self.weighting.after_recompute(before, self._global_mean(self._losses_after_step(batch)))
        return values

    def _validate_and_track(self, writer: Any) -> dict[str, dict[str, float]]:
        metrics = self.validate()
        score = self._score(metrics)
        if writer is not None:
            for task, values in metrics.items():
                for key, value in values.items():
                    writer.add_scalar(f"val/{task}/{key}", value, self.step)
            writer.add_scalar("val/score", score, self.step)
        if self.best_score is None or score > self.best_score:
            self.best_score = score
            self.save("best.pt")
        if self.dist.is_main:
            report = json_safe({"step": self.step, "metrics": metrics, "score": score})
            atomic_write_bytes(self.out_dir / "metrics.json", json.dumps(report, indent=2, allow_nan=False).encode())
        self.model.train()
        return metrics


def train(config: ExperimentConfig, resume: str | None = None, progress: bool = True) -> TrainResult:
    """Train a model as ``config`` says; returns the run's figures."""
    try:
        result = Trainer(config, resume, progress).fit()
    except BaseException:
        shutdown_distributed(finished=False)
        raise
    shutdown_distributed()
    return result
