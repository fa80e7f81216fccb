"""Experiment configuration as dataclasses, loaded from YAML with dotted command-line overrides.

A config file has three sections, ``model``, ``data`` and ``train``; every field is documented below.
Unknown keys are errors (a typo must not silently fall back to a default).
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from mtl_perception.tasks import ALL_TASKS, validate_tasks


@dataclass
class ModelConfig:
    """What network to build."""

    architecture: str = "hard"  # single | hard | cross_stitch | padnet | mti | pap
    encoder: str = "resnet18"  # resnet18 | resnet34 | resnet50 | mobilenetv3_large
    tasks: list[str] = field(default_factory=lambda: list(ALL_TASKS))  # any subset of depth, semantic, normals
    num_classes: int = 7  # semantic classes (without the ignore id)
    decoder_channels: int = 64  # width of the multi-scale decoder
    head_channels: int = 64  # width of the task heads' hidden layer
    pretrained: str | None = None  # optional local file of ImageNet encoder weights (torchvision or timm layout)
    max_depth: float = 10.0  # metres; upper end of the depth range the model reports
    min_depth: float = 0.1  # metres; lower end of the depth range the model reports
    options: dict[str, Any] = field(default_factory=dict)  # architecture-specific settings (see docs/architectures.md)


@dataclass
class DataConfig:
    """Where training and validation frames come from."""

    dataset: str = "synthetic"  # synthetic | folder | nyuv2
    root: str | None = None  # folder root (folder) or path of nyu_depth_v2_labeled.mat (nyuv2)
    val_root: str | None = None  # folder dataset for validation; default: a held-out split of `root`
    nyu_classes: int = 13  # 13 or 40, for nyuv2
    height: int = 120  # network input height in pixels
    width: int = 160  # network input width in pixels
    train_count: int = 2000  # synthetic: frames in the training split
    val_count: int = 64  # synthetic: frames in the held-out validation split
    seed: int = 0  # synthetic: base seed of the scenes (validation uses a disjoint seed range)
    augment: bool = True  # random scale/crop/flip and colour jitter on training frames
    workers: int = 0  # DataLoader worker processes


@dataclass
class TrainConfig:
    """How to optimise."""

    steps: int = 2000  # optimiser steps in total
    batch_size: int = 8  # frames per step per process
    optimizer: str = "adamw"  # adamw | sgd
    lr: float = 1e-3  # peak learning rate
    weight_decay: float = 1e-4  # decoupled (AdamW) or L2 (SGD) weight decay
    momentum: float = 0.9  # SGD momentum
    schedule: str = "cosine"  # cosine | poly
    warmup_steps: int = 100  # linear warm-up from 0 to lr
    grad_clip: float = 5.0  # max global gradient norm; 0 disables clipping
    amp: bool = True  # mixed precision where the device supports it (CUDA); ignored on CPU
    seed: int = 0  # seed of weights, data order and augmentation
    depth_loss: str = "log_l1"  # log_l1 | silog
    normals_loss: str = "cosine"  # cosine | angular
    loss_weighting: str = "fixed"  # fixed | uncertainty | dwa | gradnorm
    task_weights: dict[str, float] = field(default_factory=lambda: {t: 1.0 for t in ALL_TASKS})  # initial/fixed weights
    weighting_options: dict[str, float] = field(default_factory=dict)  # options of the weighting scheme (see training/weighting.py)
    aux_weight: float = 0.5  # weight of deep-supervision (intermediate) losses, where the architecture has them
    out_dir: str = "runs/default"  # checkpoints, TensorBoard logs and metrics go here
    val_every: int = 250  # steps between validations (and best-checkpoint updates)
    best_metric: str = "delta_m"  # what "best" means: delta_m (all tasks, vs. the first validation) or task.key, e.g. depth.rmse
    ckpt_every: int = 250  # steps between checkpoints
    log_every: int = 20  # steps between TensorBoard scalars
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    threads: int = 0  # torch intra-op threads on CPU; 0 keeps torch's default


@dataclass
class ExperimentConfig:
    """A whole experiment: the model, its data and its optimisation."""

    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)

    def validate(self) -> "ExperimentConfig":
        """Check values that YAML types cannot express; raise ValueError saying what to fix."""
        self.model.tasks = list(validate_tasks(self.model.tasks))
        if self.data.height < 32 or self.data.width < 32:
            raise ValueError(f"data.height and data.width must be at least 32 pixels, got {self.data.height}x{self.data.width}")
        if not 0 < self.model.min_depth < self.model.max_depth:
            raise ValueError("model.min_depth must be positive and below model.max_depth")
        if self.model.num_classes < 2:
            raise ValueError("model.num_classes must be at least 2")
        for section in ("model", "data", "train"):
            _check_types(getattr(self, section), section)
        if self.train.steps < 1 or self.train.batch_size < 1:
            raise ValueError("train.steps and train.batch_size must be positive")
        for name in ("val_every", "ckpt_every", "log_every"):
            if getattr(self.train, name) < 1:
                raise ValueError(f"train.{name} must be at least 1 (steps between events), got {getattr(self.train, name)}")
        if not self.train.lr > 0:
            raise ValueError(f"train.lr must be positive, got {self.train.lr}")
        if self.data.workers < 0 or self.train.threads < 0 or self.train.warmup_steps < 0:
            raise ValueError("data.workers, train.threads and train.warmup_steps must not be negative")
        return self

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def hash(self) -> str:
        """Stable short hash of the model and data settings (what decides the trained network)."""
        blob = json.dumps({"model": dataclasses.asdict(self.model), "data": dataclasses.asdict(self.data)}, sort_keys=True)
        return hashlib.sha256(blob.encode()).hexdigest()[:16]


_TYPE_WORDS = {bool: "true or false", int: "an integer", float: "a number", str: "a string", list: "a list", dict: "a mapping"}


def _check_types(section: Any, where: str) -> None:
    """ValueError unless every field holds the type of its default (ints pass for floats; None only where the default is None)."""
    for spec in dataclasses.fields(section):
        value = getattr(section, spec.name)
        default = spec.default if spec.default is not dataclasses.MISSING else spec.default_factory()  # type: ignore[misc]
        if default is None:
            ok = value is None or isinstance(value, str)
        elif isinstance(default, bool):
            ok = isinstance(value, bool)
        elif isinstance(default, float):
            ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        else:
            ok = isinstance(value, type(default)) and not (isinstance(value, bool) and not isinstance(default, bool))
        if not ok:
            expected = "a string or null" if default is None else _TYPE_WORDS.get(type(default), type(default).__name__)
            raise ValueError(f"{where}.{spec.name} must be {expected}, got {value!r} ({type(value).__name__})")


def _build(cls: type, values: dict[str, Any], where: str) -> Any:
    if not isinstance(values, dict):
        raise ValueError(f"section '{where}' must be a mapping of key: value, got {type(values).__name__} {values!r}")
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - names)
    if unknown:
        raise ValueError(f"unknown key(s) {unknown} in '{where}'; valid keys: {sorted(names)}")
    return cls(**values)


def config_from_dict(raw: dict[str, Any]) -> ExperimentConfig:
    """Build and validate an ExperimentConfig from a plain dict (e.g. parsed YAML or a checkpoint)."""
    raw = raw or {}
    if not isinstance(raw, dict):
        raise ValueError("a config must be a mapping with sections model, data, train")
    unknown = sorted(set(raw) - {"model", "data", "train"})
    if unknown:
        raise ValueError(f"unknown section(s) {unknown}; valid sections: ['data', 'model', 'train']")
    return ExperimentConfig(
        model=_build(ModelConfig, raw.get("model") or {}, "model"),
        data=_build(DataConfig, raw.get("data") or {}, "data"),
        train=_build(TrainConfig, raw.get("train") or {}, "train"),
    ).validate()


def _parse_value(text: str) -> Any:
    return yaml.safe_load(text)


def apply_overrides(raw: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Apply ``section.key=value`` overrides (value parsed as YAML) to a raw config dict."""
    for item in overrides:
        if "=" not in item or "." not in item.split("=", 1)[0]:
            raise ValueError(f"override '{item}' must look like section.key=value, e.g. train.lr=0.0005")
        dotted, value = item.split("=", 1)
        section, key = dotted.split(".", 1)
        raw.setdefault(section, {})
        if raw[section] is None:
            raw[section] = {}
        raw[section][key] = _parse_value(value)
    return raw


def load_config(path: str | Path | None, overrides: list[str] | None = None) -> ExperimentConfig:
    """Load a YAML config (or the defaults when path is None) and apply overrides."""
    raw: dict[str, Any] = {}
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"config file not found: {path}")
        try:
            raw = yaml.safe_load(path.read_text()) or {}
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
            problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
            raise ValueError(f"config file {path} is not valid YAML{where}: {problem}; fix the syntax there") from None
    return config_from_dict(apply_overrides(raw, overrides or []))
