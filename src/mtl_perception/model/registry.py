"""The architecture registry and the base class every architecture derives from.

``@register("name")`` adds a ``MultiTaskNet`` subclass to ``ARCHITECTURES``. The registry is filled by
explicit imports: ``model/network.py`` defines ``hard`` and ``single`` and imports ``model/interaction``,
whose ``__init__`` imports every interaction architecture; importing ``mtl_perception.model.network``
therefore gives the full registry.
"""
from __future__ import annotations

from typing import Any, Callable

import torch
from torch import nn


class MultiTaskNet(nn.Module):
    """A network whose forward maps an image batch to ``{task: tensor}``.

    Besides ``forward``, it tells the trainer which parameters the tasks share last (gradient-based loss
    weighting such as GradNorm) and how to group its parameters for the optimiser. ``sharing_depths`` and
    ``decoder_strides`` list the ``ModelConfig.sharing`` and ``decoder_stride`` values it accepts
    (``build_model`` refuses the others). ``renamed_modules`` maps a top-level module's old name to today's: a
    state dict with the old keys (a checkpoint written before the rename) loads under the new ones.
    """

    tasks: list[str]
    sharing_depths: tuple[str, ...] = ("encoder",)
    decoder_strides: tuple[int, ...] = (4,)
    renamed_modules: dict[str, str] = {}

    def __init__(self) -> None:
        super().__init__()
        self.register_load_state_dict_pre_hook(rename_old_keys)

    def forward(self, image: torch.Tensor) -> dict[str, torch.Tensor]:  # pragma: no cover - every subclass defines it
        raise NotImplementedError

    def last_shared_parameters(self) -> list[nn.Parameter]:
        """The parameters of the last layer every task shares; none for independent networks."""
        return []

    def param_groups(self, base_lr: float) -> list[dict[str, Any]]:
        """Optimiser parameter groups: by default every parameter at ``base_lr``."""
        return [{"params": list(self.parameters()), "lr": base_lr}]


def rename_old_keys(module: MultiTaskNet, state_dict: dict[str, Any], prefix: str, *_: Any) -> None:
    """Load-state-dict pre-hook: keys under an old module name (``renamed_modules``) move to the new name, in place,
    before any submodule reads them; a key whose new name is also present stays (and is reported unexpected)."""
    for old, new in module.renamed_modules.items():
        start = f"{prefix}{old}."
        for key in [k for k in state_dict if k.startswith(start)]:
            renamed = f"{prefix}{new}.{key[len(start):]}"
            if renamed not in state_dict:
                state_dict[renamed] = state_dict.pop(key)


ARCHITECTURES: dict[str, type[MultiTaskNet]] = {}


def register(name: str) -> Callable[[type], type]:
    """Class decorator adding a ``MultiTaskNet`` subclass to the registry under ``name``."""

    def wrap(cls: type) -> type:
        if not issubclass(cls, MultiTaskNet):
            raise TypeError(f"architecture '{name}' ({cls.__name__}) must subclass MultiTaskNet")
        ARCHITECTURES[name] = cls
        return cls

    return wrap
