"""End-to-end training on the synthetic renderer: learning, checkpoints, exact resume, kill + resume, DDP."""
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from mtl_perception.config import load_config
from mtl_perception.data.datasets import build_datasets
from mtl_perception.metrics import MultiTaskMetrics
from mtl_perception.training.checkpoint import load_checkpoint, model_from_checkpoint
from mtl_perception.training.trainer import Trainer, train

ROOT = Path(__file__).resolve().parents[1]
TINY = ["model.encoder=resnet18", "model.decoder_channels=16", "model.head_channels=16", "data.height=48", "data.width=64",
        "data.train_count=64", "data.val_count=8", "data.augment=false", "train.batch_size=2", "train.warmup_steps=0",
        "train.log_every=1", "train.threads=1"]


def tiny_config(tmp_path: Path, *extra: str):
    return load_config(None, TINY + [f"train.out_dir={tmp_path}"] + list(extra))


def _baseline_metrics(config) -> dict:
    """Metrics of trivial predictors: training-set mean depth, majority class, mean normal."""
    train_set, val_set = build_datasets(config.data)
    depths, labels, normals = [], [], []
    for i in range(len(train_set)):
        sample = train_set[i]
        valid = sample["depth"][0] > 0
        depths.append(sample["depth"][0][valid])
        labels.append(sample["semantic"].flatten())
        normals.append(sample["normals"].reshape(3, -1))
    mean_depth = torch.cat(depths).mean()
    majority = torch.bincount(torch.cat(labels)[torch.cat(labels) != 255]).argmax()
    mean_normal = torch.nn.functional.normalize(torch.cat(normals, 1).mean(1), dim=0)
    metrics = MultiTaskMetrics(config.model.tasks, config.model.num_classes)
    for i in range(len(val_set)):
        sample = val_set[i]
        h, w = sample["depth"].shape[-2:]
        logits = torch.zeros(1, config.model.num_classes, h, w)
        logits[:, majority] = 1.0
        outputs = {"depth": torch.full((1, 1, h, w), float(mean_depth)), "semantic": logits,
                   "normals": mean_normal.view(1, 3, 1, 1).expand(1, 3, h, w)}
        metrics.update(outputs, {k: v[None] for k, v in sample.items() if torch.is_tensor(v)})
    return metrics.compute()


def test_short_training_reduces_loss_and_beats_trivial_baselines(tmp_path):
    config = tiny_config(tmp_path, "data.train_count=256", "data.val_count=16", "train.steps=150", "train.batch_size=4",
                         "train.lr=0.003", "train.val_every=150", "train.ckpt_every=150")
    result = train(config, progress=False)
    totals = [sum(losses.values()) for losses in result.loss_history]
    first, last = np.mean(totals[:10]), np.mean(totals[-10:])
    assert last < 0.8 * first, f"loss went from {first:.3f} to {last:.3f}"
    baseline = _baseline_metrics(config)
    assert result.metrics["depth"]["rmse"] < baseline["depth"]["rmse"]
    assert result.metrics["semantic"]["miou"] > baseline["semantic"]["miou"]
    assert result.metrics["semantic"]["pixel_acc"] > baseline["semantic"]["pixel_acc"]
    assert result.metrics["normals"]["mean"] < baseline["normals"]["mean"]
    for name in ("last.pt", "best.pt", "metrics.json", "config.yaml"):
        assert (tmp_path / name).is_file()
    model, loaded_config, state = model_from_checkpoint(tmp_path / "last.pt")
    assert state["step"] == 150 and loaded_config.model.tasks == config.model.tasks
    assert state["dataset"]["class_names"][0] == "floor"


@pytest.mark.parametrize("weighting", ["famo", "aligned_mtl"])
def test_short_run_with_the_weighting_reduces_every_task_loss(tmp_path, weighting):
    trainer = Trainer(tiny_config(tmp_path, "data.height=32", "data.width=48", "data.train_count=8", "train.steps=30", "train.lr=0.003",
                                  "train.val_every=100", "train.ckpt_every=100", f"train.loss_weighting={weighting}"), progress=False)
    history = trainer.fit().loss_history
    for task in trainer.tasks:
        first, last = np.mean([step[task] for step in history[:5]]), np.mean([step[task] for step in history[-5:]])
        assert last < 0.9 * first, f"{weighting}: the {task} loss went from {first:.3f} to {last:.3f}"
    weights = trainer.weighting.weights()
    assert set(weights) == set(trainer.tasks)
    assert max(weights.values()) - min(weights.values()) > 1e-3, f"{weighting} never moved its task weights: {weights}"


def test_losses_after_the_step_leave_the_network_as_it_was(tmp_path):
    trainer = Trainer(tiny_config(tmp_path, "train.steps=1", "train.loss_weighting=famo"), progress=False)
    batch = next(iter(torch.utils.data.DataLoader(trainer.train_set, batch_size=2)))
    state = {k: v.clone() for k, v in trainer.network.state_dict().items()}
    first = trainer._losses_after_step(batch)
    assert trainer._losses_after_step(batch) == first, "BatchNorm running statistics moved between the two passes"
    for key, value in trainer.network.state_dict().items():
        assert torch.equal(value, state[key]), f"{key} changed"
    with torch.no_grad():
        step_losses = {k: float(v) for k, v in trainer._losses(trainer.model, batch).items()}
    assert step_losses == pytest.approx(first, rel=1e-6), "the same batch in training mode gives the step's own losses"


def _assert_same_weighting_state(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for key in a:
        if key == "_extra_state":  # FAMO's Adam state
            assert a[key]["param_groups"] == b[key]["param_groups"]
            for index, moments in a[key]["state"].items():
                for name, value in moments.items():
                    torch.testing.assert_close(value, b[key]["state"][index][name], rtol=1e-5, atol=1e-7, msg=f"Adam {name} differs")
        else:
            torch.testing.assert_close(a[key], b[key], rtol=1e-5, atol=1e-7, msg=f"weighting {key} differs after resume")


@pytest.mark.parametrize("weighting", ["fixed", "famo", "aligned_mtl"])
def test_resumed_run_matches_uninterrupted_run(tmp_path, weighting):
    options = ["train.steps=4", "train.val_every=100", f"train.loss_weighting={weighting}"]
    straight = Trainer(tiny_config(tmp_path / "a", *options), progress=False)
    straight.fit()
    first_half = Trainer(tiny_config(tmp_path / "b", *options), progress=False)
    first_half.config.train.steps = 2  # stop early; the LR schedule was built for 4 steps, like the straight run's
    first_half.fit()
    assert load_checkpoint(tmp_path / "b" / "last.pt")["step"] == 2
    resumed = Trainer(tiny_config(tmp_path / "b", *options), resume="auto", progress=False)
    assert resumed.step == 2
    _assert_same_weighting_state(first_half.weighting.state_dict(), resumed.weighting.state_dict())
    resumed.fit()
    a, b = straight.model.state_dict(), resumed.model.state_dict()
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=1e-5, atol=1e-6, msg=f"{key} differs after resume")
    _assert_same_weighting_state(straight.weighting.state_dict(), resumed.weighting.state_dict())


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "mtl_perception.cli", *args]


def test_killed_training_resumes_from_its_last_checkpoint(tmp_path):
    base = TINY + [f"train.out_dir={tmp_path}", "train.ckpt_every=2", "train.val_every=100000"]
    process = subprocess.Popen(_cli("train", "--no-progress", *base, "train.steps=100000"), stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
    checkpoint = tmp_path / "last.pt"
    deadline = time.time() + 120
    while time.time() < deadline and not (checkpoint.is_file() and load_checkpoint(checkpoint)["step"] >= 4):
        time.sleep(0.2)
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=30)
    saved_step = load_checkpoint(checkpoint)["step"]  # never a half-written file
    assert saved_step >= 4
    resume = subprocess.run(_cli("train", "--no-progress", "--resume", "auto", *base, f"train.steps={saved_step + 2}"),
                            capture_output=True, text=True, timeout=300)
    assert resume.returncode == 0, resume.stderr[-2000:]
    assert load_checkpoint(checkpoint)["step"] == saved_step + 2


DDP_WEIGHTINGS = ("uncertainty", "famo", "aligned_mtl")


def test_torchrun_two_processes_keep_identical_weights(tmp_path):
    """One torchrun launch trains each weighting in turn (ddp_worker.py), each into its own folder."""
    env = dict(os.environ, OMP_NUM_THREADS="1")
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", str(29500 + os.getpid() % 1000),
               str(ROOT / "test" / "ddp_worker.py"), *TINY, f"train.out_dir={tmp_path}", "train.steps=3", "train.val_every=3",
               "train.ckpt_every=3", f"weightings={','.join(DDP_WEIGHTINGS)}"]
    run = subprocess.run(command, capture_output=True, text=True, timeout=300, env=env)
    assert run.returncode == 0, run.stderr[-3000:]
    for weighting in DDP_WEIGHTINGS:
        out = tmp_path / weighting
        digests = [(out / f"weights_rank{r}.sha256").read_text() for r in (0, 1)]
        assert digests[0] == digests[1], f"{weighting}: the ranks' weights differ"
        # each rank sees other frames, so without averaging (the log-variances' gradients, FAMO's losses, Aligned-MTL's
        # task gradients) the weighting states would differ
        states = [(out / f"weighting_rank{r}.sha256").read_text() for r in (0, 1)]
        assert states[0] == states[1], f"the {weighting} weighting state drifted apart between ranks"
        model, config, state = model_from_checkpoint(out / "last.pt")
        assert state["step"] == 3 and config.train.loss_weighting == weighting
