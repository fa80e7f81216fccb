"""Experiment configuration as dataclasses, loaded from YAML with dotted command-line overrides.

A config file has three sections, ``model``, ``data`` and ``train``; every field is documented below.
Unknown keys are errors (a typo must not silently fall back to a default). Every field's type and range is
written next to it (``Annotated``) and validated once, by pydantic, where a config enters (``config_from_dict``).
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import ConfigDict, Field, Strict, TypeAdapter, ValidationError

from mtl_perception.safeload import shorten, yaml_load_file, yaml_loads
# Field types with their constraints (``schemas.py``), validated once by pydantic when a config enters (``config_from_dict``).
from mtl_perception.schemas import (
    Depth,
    NonNegativeFloat,
    NonNegativeInt,
    Options,
    PositiveInt,
    Seed,
    Side,
    StrictBool,
    Text,
    Weights,
    Word,
    describe_errors,
)
from mtl_perception.tasks import ALL_TASKS, validate_tasks

_SECTION = ConfigDict(extra="forbid")


@dataclass
class ModelConfig:
    """What network to build."""

    __pydantic_config__ = _SECTION

    architecture: Word = "hard"  # single | hard | cross_stitch | padnet | mti | pap
    sharing: Literal["encoder", "neck"] = "encoder"  # what the tasks share: the encoder, or also one multi-scale decoder (hard, padnet, mti, pap)
    encoder: Word = "resnet18"  # resnet18 | resnet34 | resnet50 | mobilenetv3_large | mobilenetv3_small
    tasks: Annotated[list[Word], Field(max_length=8)] = field(default_factory=lambda: list(ALL_TASKS))  # any subset of depth, semantic, normals
    num_classes: Annotated[int, Strict(), Field(ge=2, le=1024)] = 7  # semantic classes (without the ignore id)
    decoder_channels: Annotated[int, Strict(), Field(ge=1, le=4096)] = 64  # width of the multi-scale decoder
    decoder_stride: Literal[4, 8] = 4  # finest level the decoder fuses to; 8 drops the stride-4 level (hard, single)
    head_channels: Annotated[int, Strict(), Field(ge=1, le=4096)] = 64  # width of the task heads' hidden layer
    pretrained: Text | None = None  # optional local file of ImageNet encoder weights (torchvision or timm layout)
    max_depth: Depth = 10.0  # metres; upper end of the depth range the model reports
    min_depth: Depth = 0.1  # metres; lower end of the depth range the model reports
    options: Options = field(default_factory=dict)  # architecture-specific settings (see docs/architectures.md)


@dataclass
class DataConfig:
    """Where training and validation frames come from."""

    __pydantic_config__ = _SECTION

    dataset: Word = "synthetic"  # synthetic | folder | nyuv2
    root: Text | None = None  # folder root (folder) or path of nyu_depth_v2_labeled.mat (nyuv2)
    val_root: Text | None = None  # folder dataset for validation; default: a held-out split of `root`
    nyu_classes: Literal[13, 40] = 13  # 13 or 40, for nyuv2
    height: Side = 120  # network input height in pixels (32 to 4096)
    width: Side = 160  # network input width in pixels (32 to 4096)
    train_count: Annotated[int, Strict(), Field(ge=0, le=10**8)] = 2000  # synthetic: frames in the training split
    val_count: Annotated[int, Strict(), Field(ge=0, le=10**7)] = 64  # synthetic: frames in the held-out validation split
    seed: Seed = 0  # synthetic: base seed of the scenes (validation uses a disjoint seed range)
    augment: StrictBool = True  # random scale/crop/flip and colour jitter on training frames
    workers: Annotated[int, Strict(), Field(ge=0, le=256)] = 0  # DataLoader worker processes


@dataclass
class TrainConfig:
    """How to optimise."""

    __pydantic_config__ = _SECTION

    steps: PositiveInt = 2000  # optimiser steps in total
    batch_size: Annotated[int, Strict(), Field(ge=1, le=4096)] = 8  # frames per step per process
    optimizer: Word = "adamw"  # adamw | sgd
    lr: Annotated[float, Strict(), Field(gt=0, le=10.0, allow_inf_nan=False)] = 1e-3  # peak learning rate
    weight_decay: NonNegativeFloat = 1e-4  # decoupled (AdamW) or L2 (SGD) weight decay
    momentum: Annotated[float, Strict(), Field(ge=0, le=1, allow_inf_nan=False)] = 0.9  # SGD momentum
    schedule: Word = "cosine"  # cosine | poly
    warmup_steps: NonNegativeInt = 100  # linear warm-up from 0 to lr
    grad_clip: NonNegativeFloat = 5.0  # max global gradient norm; 0 disables clipping
    amp: StrictBool = True  # mixed precision where the device supports it (CUDA); ignored on CPU
    seed: Seed = 0  # seed of weights, data order and augmentation
    depth_loss: Word = "log_l1"  # log_l1 | silog
    normals_loss: Word = "cosine"  # cosine | angular
    loss_weighting: Word = "fixed"  # fixed | uncertainty | dwa | gradnorm | famo | aligned_mtl
    task_weights: Weights = field(default_factory=lambda: {t: 1.0 for t in ALL_TASKS})  # initial/fixed weights
    weighting_options: Annotated[dict[Word, Annotated[float, Strict(), Field(allow_inf_nan=False)]], Field(max_length=16)] = field(default_factory=dict)  # options of the weighting scheme (see training/weighting.py)
    aux_weight: NonNegativeFloat = 0.5  # weight of deep-supervision (intermediate) losses, where the architecture has them
    out_dir: Text = "runs/default"  # checkpoints, TensorBoard logs and metrics go here
    val_every: PositiveInt = 250  # steps between validations (and best-checkpoint updates)
    best_metric: Word = "delta_m"  # what "best" means: delta_m (all tasks, vs. the first validation) or task.key, e.g. depth.rmse
    ckpt_every: PositiveInt = 250  # steps between checkpoints
    log_every: PositiveInt = 20  # steps between TensorBoard scalars
    device: Word = "auto"  # auto | cpu | cuda | cuda:N
    threads: Annotated[int, Strict(), Field(ge=0, le=1024)] = 0  # torch intra-op threads on CPU; 0 keeps torch's default


@dataclass
class ExperimentConfig:
    """A whole experiment: the model, its data and its optimisation."""

    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)

    def validate(self) -> "ExperimentConfig":
        """Cross-field checks the per-field schema cannot express; ValueError saying what to fix.

        Types and ranges of single fields are checked where a config enters (``config_from_dict``);
        this also re-checks an ExperimentConfig built in code (e.g. ``ExperimentConfig().validate()``).
        """
        _validate_sections({section: dataclasses.asdict(getattr(self, section)) for section in SECTIONS})
        return self._cross_checks()

    def _cross_checks(self) -> "ExperimentConfig":
        self.model.tasks = list(validate_tasks(self.model.tasks))
        if not self.model.min_depth < self.model.max_depth:
            raise ValueError(f"model.min_depth must be positive and below model.max_depth, got {self.model.min_depth} and {self.model.max_depth}")
        return self

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def hash(self) -> str:
        """Stable short hash of the model and data settings (what decides the trained network)."""
        blob = json.dumps({"model": dataclasses.asdict(self.model), "data": dataclasses.asdict(self.data)}, sort_keys=True)
        return hashlib.sha256(blob.encode()).hexdigest()[:16]


SECTIONS = {"model": ModelConfig, "data": DataConfig, "train": TrainConfig}
_ADAPTERS: dict[str, TypeAdapter] = {}


def _adapter(section: str) -> TypeAdapter:
    if section not in _ADAPTERS:
        _ADAPTERS[section] = TypeAdapter(SECTIONS[section])
    return _ADAPTERS[section]


def _validate_sections(raw: dict[Any, Any]) -> dict[str, Any]:
    """Each section of ``raw`` validated by its dataclass schema: the sections, or ValueError naming the field."""
    sections = {}
    for section, cls in SECTIONS.items():
        values = raw.get(section)
        values = {} if values is None else values
        if not isinstance(values, dict):
            raise ValueError(f"section '{section}' must be a mapping of key: value, got {type(values).__name__} {shorten(repr(values), 60)}")
        unknown = sorted((k for k in values if k not in {f.name for f in dataclasses.fields(cls)}), key=str)
        if unknown:
            shown = [shorten(str(k), 40) for k in unknown[:8]]
            raise ValueError(f"unknown key(s) {shown}{' ...' if len(unknown) > 8 else ''} in '{section}'; valid keys: {sorted(f.name for f in dataclasses.fields(cls))}")
        try:
            sections[section] = _adapter(section).validate_python(values)
        except ValidationError as exc:
            raise ValueError(describe_errors(exc, prefix=(section,))) from None
    return sections


def config_from_dict(raw: dict[str, Any]) -> ExperimentConfig:
    """Build and validate an ExperimentConfig from a plain dict (parsed YAML or a checkpoint's config): once, here.

    The dict must be a mapping of the sections model, data, train, each a mapping of known keys with typed
    values in range (the ``Annotated`` fields above); every failure is one ValueError line naming the field.
    """
    raw = {} if raw is None else raw
    if not isinstance(raw, dict):
        raise ValueError(f"a config must be a mapping with sections model, data, train; got {type(raw).__name__} {shorten(repr(raw), 60)}")
    unknown = sorted((k for k in raw if k not in SECTIONS), key=str)
    if unknown:
        raise ValueError(f"unknown section(s) {[shorten(str(k), 40) for k in unknown[:8]]}; valid sections: ['data', 'model', 'train']")
    sections = _validate_sections(raw)
    return ExperimentConfig(**sections)._cross_checks()


def _parse_value(text: str, item: str) -> Any:
    return yaml_loads(text, f"override '{shorten(item, 80)}'", "value")


def apply_overrides(raw: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Apply ``section.key=value`` overrides (value parsed as bounded YAML) to a raw config dict."""
    if not isinstance(raw, dict):
        raise ValueError(f"a config must be a mapping with sections model, data, train; got {type(raw).__name__} {shorten(repr(raw), 60)}")
    for item in overrides:
        if "=" not in item or "." not in item.split("=", 1)[0]:
            raise ValueError(f"override '{shorten(item, 80)}' must look like section.key=value, e.g. train.lr=0.0005")
        dotted, value = item.split("=", 1)
        section, key = dotted.split(".", 1)
        if raw.get(section) is None:
            raw[section] = {}
        if not isinstance(raw[section], dict):
            raise ValueError(f"section '{shorten(section, 40)}' must be a mapping of key: value, got {type(raw[section]).__name__}; "
                             f"override '{shorten(item, 80)}' cannot apply")
        raw[section][key] = _parse_value(value, item)
    return raw


def load_config(path: str | Path | None, overrides: list[str] | None = None) -> ExperimentConfig:
    """Load a YAML config (or the defaults when path is None) and apply overrides.

    The file is read with ``safeload.yaml_load_file``: at most 1 MiB, nesting at most 32 levels, no aliases.
    """
    raw: Any = {}
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"config file not found: {shorten(str(path))}")
        raw = yaml_load_file(path, "config file")
        raw = {} if raw is None else raw
    return config_from_dict(apply_overrides(raw, overrides or []))
