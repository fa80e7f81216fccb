"""Defects a first multi-GPU training run would hit, checked on the CPU: resuming a CPU / amp-off checkpoint
with AMP on, the CUDA device set before NCCL, a non-finite loss on one rank, loss-weighting gradients
outside DDP, and pinned memory for non_blocking copies."""
from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

from mtl_perception import distributed
from mtl_perception.distributed import DistInfo, average_gradients
from mtl_perception.training.trainer import Trainer, _collate_loader, check_finite_loss, load_scaler_state
from two_ranks import finish_rank, join_group, run_two_ranks


def test_an_empty_scaler_state_resumes_with_amp_on():
    """A checkpoint from the CPU or amp: false holds {} for the scaler; an enabled GradScaler refuses it."""
    enabled = torch.amp.GradScaler("cpu", enabled=True, init_scale=1024.0)
    with pytest.raises(RuntimeError, match="empty"):
        enabled.load_state_dict({})  # what _resume did before
    assert load_scaler_state(enabled, {}) is False and load_scaler_state(enabled, None) is False
    assert enabled.get_scale() == 1024.0
    saved = torch.amp.GradScaler("cpu", enabled=True, init_scale=8.0).state_dict()
    assert load_scaler_state(enabled, saved) is True and enabled.get_scale() == 8.0


def test_cuda_device_is_set_before_the_process_group(monkeypatch):
    calls = []
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("LOCAL_RANK", "1")
    monkeypatch.setattr(distributed.torch.cuda, "set_device", lambda index: calls.append(("set_device", index)))
    monkeypatch.setattr(distributed.dist, "is_initialized", lambda: False)
    monkeypatch.setattr(distributed.dist, "init_process_group", lambda backend: calls.append(("init", backend)))
    monkeypatch.setattr(distributed.dist, "get_rank", lambda: 1)
    monkeypatch.setattr(distributed.dist, "get_world_size", lambda: 2)
    info = distributed.init_distributed("cuda")
    assert calls == [("set_device", 1), ("init", "nccl")] and info == DistInfo(1, 2, 1)
    calls.clear()
    distributed.init_distributed("cpu")
    assert calls == [("init", "gloo")], "no CUDA call on a CPU run"


def test_train_leaves_the_group_with_a_barrier_only_when_the_run_finished(monkeypatch):
    """A rank that failed alone must not wait at a barrier its peers, still in a training step, never reach."""
    from mtl_perception.training import trainer as trainer_module

    calls = []
    monkeypatch.setattr(distributed.dist, "is_initialized", lambda: True)
    monkeypatch.setattr(distributed.dist, "barrier", lambda: calls.append("barrier"))
    monkeypatch.setattr(distributed.dist, "destroy_process_group", lambda: calls.append("destroy"))

    class Failing:
        def __init__(self, *args):
            pass

        def fit(self):
            raise RuntimeError("out of memory on this rank")

    monkeypatch.setattr(trainer_module, "Trainer", Failing)
    with pytest.raises(RuntimeError, match="out of memory"):
        trainer_module.train(SimpleNamespace())
    assert calls == ["destroy"]
    calls.clear()
    monkeypatch.setattr(Failing, "fit", lambda self: "result")
    assert trainer_module.train(SimpleNamespace()) == "result"
    assert calls == ["barrier", "destroy"]


def _two_rank_worker(rank: int, init_file: str, out_dir: str) -> None:
    join_group(rank, init_file)
    info = DistInfo(rank, 2, rank)
    weight = torch.nn.Parameter(torch.zeros(2))
    weight.grad = torch.full((2,), float(rank + 1))  # each rank's own gradient of a loss-weighting parameter
    unused = torch.nn.Parameter(torch.zeros(1))  # no gradient on this rank: counts as zero
    if rank == 0:
        unused.grad = torch.ones(1)
    average_gradients([weight, unused], info)
    result = {"grad": weight.grad.tolist(), "unused": unused.grad.tolist(), "raised": None}
    total = torch.tensor(float("nan") if rank == 1 else 1.0)
    try:
        check_finite_loss(total, {"depth": total}, 7, info, torch.device("cpu"))
    except FloatingPointError as exc:
        result["raised"] = str(exc)
    finish_rank(rank, out_dir, result)


def test_nonfinite_loss_on_one_rank_stops_every_rank_and_weighting_gradients_are_averaged(tmp_path):
    results = run_two_ranks(_two_rank_worker, tmp_path)  # a rank that hangs fails the test: the non-finite loss must stop all
    assert [r["grad"] for r in results] == [[1.5, 1.5], [1.5, 1.5]]
    assert [r["unused"] for r in results] == [[0.5], [0.5]]
    assert "step 7 on another process" in results[0]["raised"] and "step 7 on this process" in results[1]["raised"]


def test_single_process_checks_stay_local():
    info = DistInfo()
    check_finite_loss(torch.tensor(2.0), {}, 0, info, torch.device("cpu"))
    with pytest.raises(FloatingPointError, match="step 3 on this process"):
        check_finite_loss(torch.tensor(float("inf")), {"depth": torch.tensor(float("inf"))}, 3, info, torch.device("cpu"))
    weight = torch.nn.Parameter(torch.zeros(1))
    weight.grad = torch.ones(1)
    average_gradients([weight], info)
    assert weight.grad.tolist() == [1.0]


def test_loaders_pin_memory_for_cuda_only():
    assert Trainer.pin_memory.fget(SimpleNamespace(device=torch.device("cuda", 0))) is True
    assert Trainer.pin_memory.fget(SimpleNamespace(device=torch.device("cpu"))) is False
    loader = _collate_loader(list(range(4)), [[0, 1], [2, 3]], 0, pin_memory=True)
    assert loader.pin_memory is True
