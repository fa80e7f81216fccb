"""torchrun / DDP helpers: process-group set-up from the environment, cross-process reductions and device moves.

Neutral: training (DDP), validation and evaluation all import it.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.distributed as dist


@dataclass(frozen=True)
class DistInfo:
    """Where this process stands in a (possibly single-process) run."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def init_distributed(device_type: str) -> DistInfo:
    """Join the process group torchrun describes (RANK/WORLD_SIZE/LOCAL_RANK); no-op when absent.

    Uses NCCL on CUDA and gloo on CPU. On CUDA the process's GPU (``LOCAL_RANK``) is made current first:
    NCCL binds each communicator to the current device, and without it every rank of a node would set
    up (and allocate on) GPU 0.
    """
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistInfo()
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if device_type == "cuda":
        torch.cuda.set_device(local_rank)
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device_type == "cuda" else "gloo")
    return DistInfo(rank=dist.get_rank(), world_size=dist.get_world_size(), local_rank=local_rank)


def shutdown_distributed(finished: bool = True) -> None:
    """Leave the process group (a no-op outside one).

    ``finished``: every rank got here the same way (the run completed, or all ranks stopped together), so a
    barrier runs first: no rank then closes its connections while a peer still waits on the last collective
    (gloo can abort a process whose peer hangs up mid-transfer). After an error on this rank alone the
    peers may never reach a barrier, so ``finished=False`` destroys the group at once.
    """
    if dist.is_available() and dist.is_initialized():
        if finished:
            dist.barrier()
        dist.destroy_process_group()


def all_reduce_sum(vector: np.ndarray, info: DistInfo, device: torch.device) -> np.ndarray:
    """Sum a float64 statistics vector across processes (identity in a single process)."""
    if not info.enabled:
        return vector
    backend_device = device if dist.get_backend() == "nccl" else torch.device("cpu")
    tensor = torch.from_numpy(np.ascontiguousarray(vector, dtype=np.float64)).to(backend_device)
    dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor.cpu().numpy()


def any_rank(flag: bool, info: DistInfo, device: torch.device) -> bool:
    """True on every process when ``flag`` is true on any (a collective: every rank must call it)."""
    if not info.enabled:
        return flag
    return bool(all_reduce_sum(np.array([1.0 if flag else 0.0]), info, device)[0] > 0)


def average_gradients(parameters: list[torch.Tensor], info: DistInfo) -> None:
    """Average the gradients of parameters that DDP does not manage (e.g. loss-weighting parameters) across processes.

    Every rank must call it with the same parameters in the same order; a missing gradient counts as zero.
    """
    if not info.enabled:
        return
    for parameter in parameters:
        if parameter.grad is None:
            parameter.grad = torch.zeros_like(parameter)
        dist.all_reduce(parameter.grad, op=dist.ReduceOp.SUM)
        parameter.grad.div_(info.world_size)


def mean_over_processes(tensor: torch.Tensor) -> torch.Tensor:
    """The mean of ``tensor`` over the DDP process group, itself without one.

    A collective: under DDP every process must call it, in the same order (the loss-weighting schemes call it in
    the training step's ``forward``, which every process runs in lockstep).
    """
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return tensor
    reduced = tensor.detach().clone() if dist.get_backend() == "nccl" else tensor.detach().cpu().clone()  # gloo: CPU tensors
    dist.all_reduce(reduced, op=dist.ReduceOp.SUM)
    return (reduced / dist.get_world_size()).to(tensor.device)


def barrier(info: DistInfo) -> None:
    if info.enabled:
        dist.barrier()


def batch_to_device(batch: dict[str, Any], device: torch.device) -> dict[str, Any]:
    """Move every tensor of a batch dict to ``device``."""
    return {k: v.to(device, non_blocking=True) if torch.is_tensor(v) else v for k, v in batch.items()}
