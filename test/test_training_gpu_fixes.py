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


# -- validation on the network itself (issue 22, 11) -------------------------------------------------

class _DepthNet(torch.nn.Module):
    """A BatchNorm and a 1x1 convolution predicting positive depth; records how it was called."""

    def __init__(self) -> None:
        super().__init__()
        self.norm = torch.nn.BatchNorm2d(3)
        self.conv = torch.nn.Conv2d(3, 1, 1)
        self.calls: list[tuple[bool, bool]] = []

    def forward(self, image: torch.Tensor) -> dict[str, torch.Tensor]:
        self.calls.append((torch.is_inference_mode_enabled(), torch.is_grad_enabled()))
        return {"depth": torch.nn.functional.softplus(self.conv(self.norm(image))) + 0.1}


def _validation_trainer(network: torch.nn.Module, model: torch.nn.Module, info: DistInfo, count: int) -> SimpleNamespace:
    """What Trainer.validate reads, around a real network (``model`` is what training runs: the network or its DDP wrapper)."""
    generator = torch.Generator().manual_seed(0)
    records = [{"image": torch.rand(3, 4, 6, generator=generator), "depth": torch.rand(1, 4, 6, generator=generator) + 0.5} for _ in range(count)]
    config = SimpleNamespace(train=SimpleNamespace(batch_size=1), data=SimpleNamespace(workers=0), model=SimpleNamespace(num_classes=1))
    return SimpleNamespace(val_set=records, config=config, dist=info, pin_memory=False, network=network, model=model,
                           tasks=["depth"], info=SimpleNamespace(class_names=[]), device=torch.device("cpu"))


class _Wrapper(torch.nn.Module):
    def __init__(self, module: torch.nn.Module) -> None:
        super().__init__()
        self.module = module

    def forward(self, image):  # pragma: no cover - validation must never call it
        raise AssertionError("validation ran the training wrapper")


def test_validation_runs_the_network_itself_under_inference_mode():
    network = _DepthNet()
    network.train()
    metrics = Trainer.validate(_validation_trainer(network, _Wrapper(network), DistInfo(), 3))
    assert network.calls == [(True, False)] * 3, "every validation batch under inference mode, no grad"
    assert network.training, "the training mode comes back" and metrics["depth"]["abs_rel"] > 0
    from mtl_perception.training.validation import evaluate_model

    with pytest.raises(TypeError, match="not its DistributedDataParallel wrapper"):
        evaluate_model(torch.nn.parallel.DistributedDataParallel.__new__(torch.nn.parallel.DistributedDataParallel), [], ["depth"], 1)


def _validation_worker(rank: int, init_file: str, out_dir: str) -> None:
    join_group(rank, init_file)
    info = DistInfo(rank, 2, rank)
    torch.manual_seed(0)
    network = _DepthNet()
    model = torch.nn.parallel.DistributedDataParallel(network)  # its first forward after training broadcasts the buffers
    wrapper_calls = []
    wrapped = model.forward
    model.forward = lambda *a, **k: wrapper_calls.append(1) or wrapped(*a, **k)
    with torch.no_grad():
        network.norm.running_mean.fill_(float(rank))  # each rank's own BatchNorm statistics, as after training steps
    network.train()
    metrics = Trainer.validate(_validation_trainer(network, model, info, 1))  # one record: rank 0 one batch, rank 1 none
    finish_rank(rank, out_dir, {"abs_rel": metrics["depth"]["abs_rel"], "calls": len(network.calls), "wrapper_calls": len(wrapper_calls),
                                "running_mean": network.norm.running_mean.tolist()})


def test_validation_with_uneven_slices_finishes_on_every_rank_and_scores_rank_0s_network(tmp_path):
    """Through the DDP wrapper, the first validation forward is a buffer broadcast that a rank without a batch never joins."""
    results = run_two_ranks(_validation_worker, tmp_path, timeout_s=120.0)
    assert [r["calls"] for r in results] == [1, 0] and [r["wrapper_calls"] for r in results] == [0, 0]
    assert results[0]["abs_rel"] == pytest.approx(results[1]["abs_rel"]) and results[0]["abs_rel"] > 0, "metrics summed over both ranks"
    assert results[1]["running_mean"] == [0.0, 0.0, 0.0], "rank 0's BatchNorm statistics on every rank"
