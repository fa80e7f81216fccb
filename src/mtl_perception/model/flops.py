"""Parameter and compute counts of a network, per branch (shared encoder, shared neck, each task, other modules).

Compute is counted as multiply-accumulates (MACs) of convolution, transposed-convolution and linear
layers, measured with forward hooks on one image of the given size; bias additions, normalisation,
activations, pooling and resampling are not counted. GFLOPs are reported as 2 * MACs / 1e9.

Branches: a module or parameter whose dotted path contains a task name belongs to that task
(``decoders.depth.*`` and ``outputs.depth.*`` -> ``depth``; ``nets.depth.encoder.*`` -> ``depth``);
anything else belongs to the first component of its path (``encoder``, ``neck``, ``cross_stitch``, ...).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable

import torch
from torch import nn

from mtl_perception.tasks import ALL_TASKS

COUNTED_LAYERS = (nn.modules.conv._ConvNd, nn.Linear)


@dataclass(frozen=True)
class BranchProfile:
    """Parameters and MACs of one branch."""

    name: str
    parameters: int
    macs: int

    @property
    def gflops(self) -> float:
        return 2 * self.macs / 1e9


@dataclass(frozen=True)
class ModelProfile:
    """Per-branch and total counts of a model at one input size (batch 1)."""

    height: int
    width: int
    branches: tuple[BranchProfile, ...]

    @property
    def parameters(self) -> int:
        return sum(b.parameters for b in self.branches)

    @property
    def macs(self) -> int:
        return sum(b.macs for b in self.branches)

    @property
    def gflops(self) -> float:
        return 2 * self.macs / 1e9

    def branch(self, name: str) -> BranchProfile:
        """The branch called ``name``; KeyError listing the branches if absent."""
        for b in self.branches:
            if b.name == name:
                return b
        raise KeyError(f"no branch '{name}'; branches: {[b.name for b in self.branches]}")


def layer_macs(module: nn.Module, inputs: tuple[torch.Tensor, ...], output: torch.Tensor) -> int:
    """Multiply-accumulates of one call of a Conv*/ConvTranspose*/Linear layer (whole batch)."""
    if isinstance(module, nn.Linear):
        return output.numel() * module.in_features
    if isinstance(module, nn.modules.conv._ConvTransposeNd):
        # Every input element is multiplied into a kernel-sized patch of each output channel of its group.
        kernel = int(torch.tensor(module.kernel_size).prod())
        return inputs[0].numel() * (module.out_channels // module.groups) * kernel
    if isinstance(module, nn.modules.conv._ConvNd):
        kernel = int(torch.tensor(module.kernel_size).prod())
        return output.numel() * (module.in_channels // module.groups) * kernel
    raise TypeError(f"cannot count MACs of {type(module).__name__}")


def branch_of(path: str, tasks: Iterable[str]) -> str:
    """Branch of a dotted module/parameter path: the first component that is a task, else the first component."""
    parts = path.split(".")
    task_set = set(tasks)
    for part in parts:
        if part in task_set:
            return part
    return parts[0] or "model"


def count_macs(model: nn.Module, image: torch.Tensor) -> dict[str, int]:
    """MACs per module path for one forward pass of ``image`` (modules called twice count twice)."""
    macs: dict[str, int] = {}
    handles = []
    for name, module in model.named_modules():
        if isinstance(module, COUNTED_LAYERS):

            def hook(mod: nn.Module, inputs: tuple[torch.Tensor, ...], output: torch.Tensor, name: str = name) -> None:
                macs[name] = macs.get(name, 0) + layer_macs(mod, inputs, output)

            handles.append(module.register_forward_hook(hook))
    try:
        with torch.no_grad():
            model(image)
    finally:
        for handle in handles:
            handle.remove()
    return macs


def profile_model(model: nn.Module, height: int, width: int, tasks: Iterable[str] | None = None) -> ModelProfile:
    """Parameters and MACs per branch for one ``height`` x ``width`` RGB image, in eval mode.

    ``tasks`` defaults to the model's ``tasks`` attribute, else every known task.
    """
    task_names = tuple(tasks if tasks is not None else getattr(model, "tasks", ALL_TASKS))
    first = next(model.parameters(), None)
    device = first.device if first is not None else torch.device("cpu")
    was_training = model.training
    model.eval()
    try:
        macs = count_macs(model, torch.zeros(1, 3, height, width, device=device))
    finally:
        model.train(was_training)

    order: list[str] = []
    params: dict[str, int] = {}
    branch_macs: dict[str, int] = {}

    def add(branch: str) -> None:
        if branch not in params:
            order.append(branch)
            params[branch] = 0
            branch_macs[branch] = 0

    for name, parameter in model.named_parameters():
        branch = branch_of(name, task_names)
        add(branch)
        params[branch] += parameter.numel()
    for name, count in macs.items():
        branch = branch_of(name, task_names)
        add(branch)
        branch_macs[branch] += count
    branches = tuple(BranchProfile(b, params[b], branch_macs[b]) for b in order)
    return ModelProfile(height, width, branches)


def format_profile(profile: ModelProfile, single_task: ModelProfile | None = None) -> str:
    """A text table: branch, parameters (millions), GMACs and GFLOPs, with a total row; with ``single_task``
    (the profile of one single-task network per task, same settings), also their totals and the ratios."""
    header = f"{'branch':<16}{'params (M)':>12}{'GMACs':>10}{'GFLOPs':>10}"
    rule = "-" * len(header)

    def row(name: str, parameters: int, macs: int) -> str:
        return f"{name:<16}{parameters / 1e6:>12.3f}{macs / 1e9:>10.3f}{2 * macs / 1e9:>10.3f}"

    rows = [row(b.name, b.parameters, b.macs) for b in profile.branches]
    note = f"input 1x3x{profile.height}x{profile.width}; MACs of conv/linear layers; GFLOPs = 2 x MACs / 1e9"
    lines = [note, header, rule, *rows, rule, row("total", profile.parameters, profile.macs)]
    if single_task is not None:
        lines += [row(f"single-task x{len(single_task.branches)}", single_task.parameters, single_task.macs),
                  f"total / {len(single_task.branches)} single-task networks: GFLOPs {profile.macs / single_task.macs:.2f}, "
                  f"params {profile.parameters / single_task.parameters:.2f}"]
    return "\n".join(lines)


__all__ = ["BranchProfile", "ModelProfile", "profile_model", "format_profile", "count_macs", "layer_macs", "branch_of"]
