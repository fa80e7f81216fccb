"""FLOPs / parameter profiling: hand-computed layer counts and per-branch grouping."""
from __future__ import annotations

import torch
from torch import nn

from mtl_perception.config import ModelConfig
from mtl_perception.model.flops import BranchProfile, ModelProfile, branch_of, count_macs, format_profile, profile_model
from mtl_perception.model.network import build_model, count_parameters

torch.set_num_threads(1)


class Wrap(nn.Module):
    """A one-layer 'model' under a top-level name."""

    def __init__(self, layer: nn.Module) -> None:
        super().__init__()
        self.encoder = layer

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.encoder(x)


def test_conv2d_macs_hand_computed() -> None:
    conv = nn.Conv2d(3, 8, kernel_size=3, stride=2, padding=1)
    profile = profile_model(Wrap(conv), 32, 48)
    # output 8 x 16 x 24; each output value needs 3 * 3 * 3 multiply-accumulates
    assert profile.macs == 8 * 16 * 24 * 3 * 3 * 3
    assert profile.gflops == 2 * 8 * 16 * 24 * 27 / 1e9
    assert profile.parameters == 8 * 3 * 3 * 3 + 8
    assert [b.name for b in profile.branches] == ["encoder"]


def test_depthwise_transposed_and_linear_macs() -> None:
    model = nn.Sequential(
        nn.Conv2d(3, 6, 3, padding=1, groups=3),  # 6 x 8 x 8 outputs, 1 input channel per group
        nn.ConvTranspose2d(6, 4, kernel_size=2, stride=2),  # 6 x 8 x 8 inputs, each into 4 x 2 x 2 outputs
        nn.Flatten(),
        nn.Linear(4 * 16 * 16, 5),
    )
    macs = count_macs(model, torch.zeros(1, 3, 8, 8))
    assert macs == {"0": 6 * 8 * 8 * 1 * 9, "1": 6 * 8 * 8 * 4 * 4, "3": 5 * 4 * 16 * 16}


def test_branch_of_assigns_task_components() -> None:
    tasks = ("depth", "semantic", "normals")
    assert branch_of("encoder.stages.0.0.conv1", tasks) == "encoder"
    assert branch_of("decoders.depth.lateral.0", tasks) == "depth"
    assert branch_of("outputs.normals.head.proj.weight", tasks) == "normals"
    assert branch_of("nets.semantic.encoder.stem.conv1", tasks) == "semantic"
    assert branch_of("cross_stitch.1.weight", tasks) == "cross_stitch"
    assert branch_of("neck.fuse.0.weight", tasks) == "neck"


def test_hard_sharing_branches_sum_to_totals() -> None:
    config = ModelConfig(architecture="hard", encoder="resnet18", tasks=["depth", "semantic", "normals"], num_classes=7)
    model = build_model(config)
    model.train()
    profile = profile_model(model, 64, 64)
    assert model.training  # the profiler restores the caller's mode
    assert [b.name for b in profile.branches] == ["encoder", "depth", "semantic", "normals"]
    assert profile.parameters == count_parameters(model)
    assert profile.macs == sum(count_macs(model.eval(), torch.zeros(1, 3, 64, 64)).values())
    # the encoder branch is exactly the bare encoder; a task branch is its decoder plus its output head
    assert profile.branch("encoder").macs == sum(count_macs(model.encoder, torch.zeros(1, 3, 64, 64)).values())
    depth_params = count_parameters(model.decoders["depth"]) + count_parameters(model.outputs["depth"])
    assert profile.branch("depth").parameters == depth_params
    assert all(b.macs > 0 for b in profile.branches)


def test_single_task_branches_hold_whole_networks() -> None:
    config = ModelConfig(architecture="single", encoder="resnet18", tasks=["depth", "normals"], num_classes=7)
    model = build_model(config)
    profile = profile_model(model, 64, 64)
    assert [b.name for b in profile.branches] == ["depth", "normals"]
    assert profile.branch("depth").parameters == count_parameters(model.nets["depth"])


def test_hard_neck_sharing_reports_the_neck_branch() -> None:
    config = ModelConfig(architecture="hard", sharing="neck", encoder="resnet18", tasks=["depth", "normals"], num_classes=7)
    model = build_model(config)
    profile = profile_model(model, 64, 64)
    assert [b.name for b in profile.branches] == ["encoder", "neck", "depth", "normals"]
    assert profile.branch("neck").parameters == count_parameters(model.neck)
    assert profile.branch("depth").parameters == count_parameters(model.outputs["depth"])


def test_format_profile_table() -> None:
    profile = profile_model(Wrap(nn.Conv2d(3, 8, 3, padding=1)), 16, 16)
    text = format_profile(profile)
    lines = text.splitlines()
    assert "16x16" in lines[0]
    assert lines[3].split()[0] == "encoder"
    assert lines[-1].split()[0] == "total"
    assert f"{profile.gflops:.3f}" in lines[-1]


def test_format_profile_compares_with_single_task_networks() -> None:
    shared = profile_model(Wrap(nn.Conv2d(3, 8, 3, padding=1)), 16, 16)  # 16 * 16 * 8 * 27 MACs, 224 parameters
    single = ModelProfile(16, 16, (BranchProfile("depth", 448, 16 * 16 * 8 * 27),
                                   BranchProfile("normals", 672, 3 * 16 * 16 * 8 * 27)))
    lines = format_profile(shared, single).splitlines()
    assert lines[-2].split()[:2] == ["single-task", "x2"]
    assert lines[-1] == "total / 2 single-task networks: GFLOPs 0.25, params 0.20"
