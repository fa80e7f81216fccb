"""Cross-task interaction architectures on both sharing depths: outputs, deep supervision, gradients, options,
ONNX parity."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import pytest
import torch
import torch.nn.functional as F
from network_support import randomise_batchnorm

from mtl_perception.config import ModelConfig
from mtl_perception.model.interaction.blocks import GatedDistillation
from mtl_perception.model.interaction.cross_stitch import CrossStitchUnit
from mtl_perception.model.network import ARCHITECTURES, build_model
from mtl_perception.tasks import AUX_PREFIX, IGNORE_INDEX
from mtl_perception.training.losses import compute_losses
from mtl_perception.training.weighting import build_weighting

torch.set_num_threads(1)

INTERACTION = ("cross_stitch", "padnet", "mti", "pap")
# (architecture, model.sharing): every interaction design on every depth it offers (cross-stitch has no shared decoder)
DEPTH_CASES = [(a, "encoder") for a in INTERACTION] + [(a, "neck") for a in ("padnet", "mti", "pap")]
DEPTH_IDS = [f"{a}-{s}" for a, s in DEPTH_CASES]
SIZE = 64
NUM_CLASSES = 5
EXPECTED_AUX_STAGES = {"cross_stitch": [], "padnet": ["initial"], "mti": ["s4", "s8", "s16", "s32"], "pap": ["initial"]}


ALL = ("depth", "semantic", "normals")


def make_config(architecture: str, tasks: tuple[str, ...] = ALL, sharing: str = "encoder", **options: object) -> ModelConfig:
    return ModelConfig(architecture=architecture, sharing=sharing, encoder="resnet18", tasks=list(tasks),
                       num_classes=NUM_CLASSES, decoder_channels=32, head_channels=32, options=dict(options))


def make_model(architecture: str, **kwargs: object) -> torch.nn.Module:
    torch.manual_seed(0)
    return build_model(make_config(architecture, **kwargs))


def images(batch: int = 2) -> torch.Tensor:
    return torch.randn(batch, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(1))


def ground_truth(batch: int = 2) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(2)
    semantic = torch.randint(0, NUM_CLASSES, (batch, SIZE, SIZE), generator=g)
    semantic[:, :4] = IGNORE_INDEX
    return {
        "depth": torch.rand(batch, 1, SIZE, SIZE, generator=g) * 5 + 0.5,
        "semantic": semantic,
        "normals": F.normalize(torch.randn(batch, 3, SIZE, SIZE, generator=g), dim=1),
    }


def check_task_tensor(task: str, x: torch.Tensor, batch: int, size: tuple[int, int]) -> None:
    channels = {"depth": 1, "semantic": NUM_CLASSES, "normals": 3}[task]
    assert x.shape == (batch, channels, *size), f"{task}: shape {tuple(x.shape)}"
    assert x.dtype == torch.float32 and torch.isfinite(x).all()
    if task == "depth":
        assert (x > 0.1 - 1e-6).all() and (x < 10.0 + 1e-5).all(), "depth must lie in (min_depth, max_depth)"
    if task == "normals":
        assert torch.allclose(x.norm(dim=1), torch.ones(()), atol=1e-4), "normals must be unit vectors"


def test_all_interaction_architectures_are_registered() -> None:
    build_model(make_config("hard"))  # importing the builder's optional modules registers them
    assert set(INTERACTION) <= set(ARCHITECTURES)


@pytest.mark.parametrize(("architecture", "sharing"), DEPTH_CASES, ids=DEPTH_IDS)
def test_eval_returns_final_outputs_only(architecture: str, sharing: str) -> None:
    model = make_model(architecture, sharing=sharing).eval()
    with torch.no_grad():
        out = model(images())
    assert list(out) == ["depth", "semantic", "normals"]
    for task, x in out.items():
        check_task_tensor(task, x, 2, (SIZE, SIZE))


@pytest.mark.parametrize(("architecture", "sharing"), DEPTH_CASES, ids=DEPTH_IDS)
def test_train_adds_activated_aux_outputs(architecture: str, sharing: str) -> None:
    model = make_model(architecture, sharing=sharing).train()
    out = model(images())
    tasks = ["depth", "semantic", "normals"]
    expected = {f"{AUX_PREFIX}{stage}/{t}" for stage in EXPECTED_AUX_STAGES[architecture] for t in tasks}
    assert set(out) == set(tasks) | expected
    for key in expected:
        task = key.rsplit("/", 1)[-1]
        x = out[key]
        check_task_tensor(task, x, 2, (x.shape[-2], x.shape[-1]))
        assert x.shape[-1] in (SIZE // 4, SIZE // 8, SIZE // 16, SIZE // 32)
    for task in tasks:
        check_task_tensor(task, out[task], 2, (SIZE, SIZE))


@pytest.mark.parametrize("architecture", INTERACTION)
def test_any_two_tasks_work_and_one_task_is_refused(architecture: str) -> None:
    model = make_model(architecture, tasks=("normals", "depth")).eval()
    with torch.no_grad():
        out = model(images(1))
    assert list(out) == ["depth", "normals"]
    with pytest.raises(ValueError, match="needs at least 2 tasks.*use architecture 'hard' or 'single'"):
        make_model(architecture, tasks=("depth",))


@pytest.mark.parametrize("architecture", INTERACTION)
def test_unknown_option_is_an_error(architecture: str) -> None:
    with pytest.raises(ValueError, match=f"unknown model.options \\['colour'\\] for architecture '{architecture}'"):
        make_model(architecture, colour=3)


@pytest.mark.parametrize(("architecture", "sharing"), DEPTH_CASES, ids=DEPTH_IDS)
def test_backward_reaches_every_parameter(architecture: str, sharing: str) -> None:
    model = make_model(architecture, sharing=sharing).train()
    randomise_batchnorm(model)  # the ResNet zero-initialises each block's last BN scale, which would block its branch
    losses = compute_losses(model(images()), ground_truth(), model.tasks)
    sum(losses.values()).backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None]
    assert not missing, f"parameters without gradient: {missing[:5]}"
    zero = [n for n, p in model.named_parameters() if not p.grad.abs().sum() > 0]
    assert not zero, f"parameters with an all-zero gradient: {zero[:5]}"
    assert all(torch.isfinite(p.grad).all() for p in model.parameters())


@pytest.mark.parametrize(("architecture", "sharing"), [("hard", "encoder"), ("hard", "neck"), *DEPTH_CASES],
                         ids=["hard-encoder", "hard-neck", *DEPTH_IDS])
def test_last_shared_parameters_drive_gradnorm(architecture: str, sharing: str) -> None:
    model = make_model(architecture, sharing=sharing).train()
    shared = model.last_shared_parameters()
    assert shared and {id(p) for p in shared} <= {id(p) for p in model.parameters()}
    weighting = build_weighting("gradnorm", list(model.tasks), {})
    losses = compute_losses(model(images()), ground_truth(), model.tasks)
    norms = weighting.gradient_norms(torch.stack([losses[t] for t in model.tasks]), shared)
    assert (norms > 0).all(), f"every task must reach the last shared layer; gradient norms {norms.tolist()}"
    total = weighting(losses, shared)
    total.backward()
    assert weighting.loss_weights.grad is not None and torch.isfinite(weighting.loss_weights.grad).all()


def test_cross_stitch_initial_coefficients_and_lr_multiplier() -> None:
    model = make_model("cross_stitch", tasks=("depth", "semantic"))
    for unit, channels in zip(model.stitches, (64, 128, 256, 512)):
        alpha = unit.alpha.detach()
        assert alpha.shape == (2, 2, channels)
        assert (alpha[0, 0] == 0.9).all() and (alpha[1, 1] == 0.9).all()
        assert (alpha[0, 1] == 0.1).all() and (alpha[1, 0] == 0.1).all()
    groups = model.param_groups(0.002)
    assert [g["lr"] for g in groups] == [0.002, 0.002 * 10.0]
    assert groups[1]["weight_decay"] == 0.0
    assert [id(p) for p in groups[1]["params"]] == [id(u.alpha) for u in model.stitches]
    grouped = [id(p) for g in groups for p in g["params"]]
    assert sorted(grouped) == sorted(id(p) for p in model.parameters()), "every parameter in exactly one group"
    assert model.last_shared_parameters() == [model.stitches[-1].alpha]
    custom = make_model("cross_stitch", tasks=("depth", "semantic"),
                        cross_stitch_self=0.7, cross_stitch_other=0.3, cross_stitch_lr_mult=100)
    assert float(custom.stitches[0].alpha[0, 0, 0].detach()) == pytest.approx(0.7)
    assert float(custom.stitches[0].alpha[0, 1, 0].detach()) == pytest.approx(0.3)
    assert custom.param_groups(1.0)[1]["lr"] == 100.0


def test_cross_stitch_unit_mixes_per_channel() -> None:
    unit = CrossStitchUnit(2, 2, 0.9, 0.1)
    with torch.no_grad():
        unit.alpha.copy_(torch.tensor([[[1.0, 0.5], [2.0, 0.0]], [[0.0, 3.0], [1.0, 1.0]]]))
    a = torch.tensor([1.0, 10.0]).view(1, 2, 1, 1)
    b = torch.tensor([100.0, 1000.0]).view(1, 2, 1, 1)
    out_a, out_b = unit([a, b])
    assert out_a.flatten().tolist() == [1.0 * 1 + 2.0 * 100, 0.5 * 10 + 0.0 * 1000]
    assert out_b.flatten().tolist() == [0.0 * 1 + 1.0 * 100, 3.0 * 10 + 1.0 * 1000]


def test_distillation_passes_nothing_from_an_all_zero_task() -> None:
    distill = GatedDistillation(("depth", "semantic"), 8).eval()
    features = {"depth": torch.randn(1, 8, 6, 6), "semantic": torch.zeros(1, 8, 6, 6)}
    with torch.no_grad():
        out = distill(features)
    # the message from zero features is relu(bn(conv(0))) = 0 with fresh batch-norm statistics
    assert torch.equal(out["depth"], features["depth"])
    assert not torch.equal(out["semantic"], features["semantic"])


def test_pap_affinities_are_row_stochastic_and_mixing_selects_tasks() -> None:
    model = make_model("pap", tasks=("depth", "semantic"), pap_stride=8, pap_iterations=3).eval()
    propagation = model.propagation
    pooled = {t: torch.randn(2, 32, SIZE // 8, SIZE // 8) for t in model.tasks}
    with torch.no_grad():
        combined = propagation.combined_affinities(pooled)
        pixels = (SIZE // 8) ** 2
        for affinity in combined.values():
            assert affinity.shape == (2, pixels, pixels)
            assert torch.allclose(affinity.sum(-1), torch.ones(()), atol=1e-5)
        propagation.mix_logits.copy_(torch.tensor([[-50.0, 50.0], [50.0, -50.0]]))  # each task takes the other's affinity
        swapped = propagation.combined_affinities(pooled)
        assert torch.allclose(swapped["depth"], propagation.affinity("semantic", pooled["semantic"]), atol=1e-6)
        constant = {t: torch.full((2, 32, 8, 8), 3.0) for t in model.tasks}
        diffused = propagation(constant)
    for t in model.tasks:
        assert torch.allclose(diffused[t], constant[t], atol=1e-5), "diffusing a constant map must keep it constant"


@pytest.mark.parametrize("options", [{"pap_stride": 4}, {"pap_iterations": 0}, {"pap_stride": "16"}])
def test_pap_rejects_bad_options(options: dict[str, object]) -> None:
    with pytest.raises(ValueError, match="pap_"):
        make_model("pap", **options)


@pytest.mark.parametrize("architecture", INTERACTION)
def test_onnx_runtime_matches_pytorch(architecture: str, exported_network: Callable[..., Any]) -> None:
    """The session's export of the architecture (conftest.exported_network, shared with test_inference_export)."""
    report = exported_network("resnet18", architecture).report
    assert report.opset == 17 and not report.dynamic_batch
    assert report.worst_diff < 1e-3, f"{architecture}: max abs diff ONNX Runtime vs PyTorch {report.max_abs_diff}"
    assert report.trt_problems == [], f"{architecture}: {report.trt_problems}"
    print(f"{architecture}: max abs diff ONNX Runtime vs PyTorch {report.max_abs_diff}")
    assert_rebatched_network_matches(report.path)


def assert_rebatched_network_matches(path: Path, batch: int = 3) -> None:
    """The deploy graph's rebatched network (batch 3, for three cameras) gives each frame what batch 1 gives it."""
    import numpy as np
    import onnx
    import onnxruntime as ort

    from mtl_perception.inference.deploy_graph import rebatch_network

    model = onnx.load(str(path))
    single = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    batched = ort.InferenceSession(rebatch_network(model, batch).SerializeToString(), providers=["CPUExecutionProvider"])
    frames = images(batch).numpy()
    together = batched.run(None, {"image": frames})
    for index in range(batch):
        alone = single.run(None, {"image": frames[index : index + 1]})
        for a, b in zip(alone, together):
            np.testing.assert_allclose(b[index : index + 1], a, rtol=1e-4, atol=1e-5)
