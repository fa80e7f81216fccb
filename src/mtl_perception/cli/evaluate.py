"""``mtl-perception evaluate`` and ``study``.

``evaluate``: every metric of a checkpoint (or an exported model) on a dataset, as JSON plus a contact sheet.

NYUv2 (``--data nyu_depth_v2_labeled.mat``) is scored as the literature does by default: predictions resized to
the ground truth's 480x640, depth capped at 10 m (``--max-depth``), the Eigen crop on request (``--crop eigen``);
``--resolution network`` gives the cheaper network-size numbers instead. Tasks the data has no ground truth for
(normals in the labelled ``.mat`` unless ``--nyu-normals DIR``; semantics when the data's classes are not the
model's) are skipped with a line saying so.

``study``: single-task baselines against every multi-task architecture (Δm, cost); see ``evaluation/study.py``.

``sim-to-real``: a model file on the real frames with depth of ``realdata/`` (and the NYUv2 test split with
``--nyu-mat``) through the node's pipeline; see ``evaluation/sim_to_real.py`` and ``docs/sim_to_real.md``.
"""
from __future__ import annotations

import argparse
import json
import math
import re
from pathlib import Path
from typing import Any

import numpy as np

from mtl_perception.cli.errors import command
from mtl_perception.schemas import flag


def add_evaluate_arguments(parser: argparse.ArgumentParser) -> None:
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--checkpoint", help="checkpoint written by `mtl-perception train` (best.pt or last.pt)")
    source.add_argument("--model", help="an exported model file (.onnx), run by ONNX Runtime on the CPU")
    parser.add_argument("--data", default="synthetic",
                        help="'synthetic' (the run's held-out synthetic split), a folder dataset directory, or the "
                             "NYUv2 labelled .mat")
    parser.add_argument("--count", type=flag(int, ge=1, le=10**6),
                        help="synthetic: number of held-out frames (default: the run's data.val_count)")
    parser.add_argument("--out", default="eval_output", help="directory for metrics.json and contact_sheet.png")
    parser.add_argument("--batch-size", type=flag(int, ge=1, le=1024), default=4, help="frames per forward pass")
    parser.add_argument("--sheet-rows", type=flag(int, ge=0, le=64), default=4,
                        help="frames shown in the contact sheet")
    parser.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N (--checkpoint only)")
    parser.add_argument("--resolution", choices=("native", "network"), default="native",
                        help="native: predictions resized to the ground truth's stored size and scored there (NYUv2: "
                             "480x640, as "
                             "published); network: ground truth nearest-resized to the network input size")
    parser.add_argument("--min-depth", type=flag(float, gt=0, le=1e4), default=1e-3,
                        help="ground-truth depth below this (m) is not scored")
    parser.add_argument("--max-depth", type=flag(float, gt=0, allow_inf=True), default=None,
                        help="ground-truth depth above this (m) is not scored and predictions are clamped to it; inf = "
                             "no cap; "
                             "default: 10 for NYUv2 (the literature's cap), no cap otherwise")
    parser.add_argument("--crop", choices=("none", "eigen"), default="none",
                        help="eigen: score only the Eigen et al. crop (rows 45-470, columns 41-600 of 480x640, scaled "
                             "to the size)")
    parser.add_argument("--nyu-split", choices=("auto", "test", "train", "all"), default="auto",
                        help="NYUv2 frames to score: auto = the official 654 test frames for the full .mat, every "
                             "frame of other files")
    parser.add_argument("--nyu-normals", default=None,
                        help="NYUv2: folder of ground-truth normal PNGs (one per frame; the labelled .mat has none)")
    parser.add_argument("--nyu-normals-axes", default="x,y,z",
                        help="which channel (with sign) of the normals PNGs is the optical frame's x (right), y "
                             "(down), z (forward); "
                             "x,-y,-z for files in OpenGL axes")


DEVICE = re.compile(r"^(cpu|cuda(:\d{1,2})?|mps)$")


def check_device(device: str) -> str:
    """``device`` when torch can use it here; ValueError naming --device and the valid forms otherwise."""
    import torch

    from mtl_perception.safeload import shorten

    if not DEVICE.match(device):
        raise ValueError(f"--device '{shorten(device, 40)}' is not a device; use cpu, cuda or cuda:N")
    if device.startswith("cuda"):
        if not torch.cuda.is_available():
            raise ValueError(f"--device {device}: no CUDA device is available here; use --device cpu")
        index = int(device.partition(":")[2] or 0)
        if index >= torch.cuda.device_count():
            count = torch.cuda.device_count()
            raise ValueError(f"--device {device}: this machine has {count} CUDA device(s); "
                             f"use cuda:0..cuda:{count - 1}")
    if device == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise ValueError("--device mps: Apple's Metal backend is not available here; use --device cpu")
    return device


class OnnxNetwork:
    """An exported model run by ONNX Runtime with the torch model's interface: normalised batch -> {task: tensor}."""

    def __init__(self, path: str) -> None:
        from mtl_perception.inference.backends import create_backend
        from mtl_perception.tasks import IMAGENET_MEAN, IMAGENET_STD

        self.backend = create_backend("onnxruntime", path, provider="cpu")
        self.metadata = self.backend.metadata
        meta = self.metadata
        # the datasets normalise with the ImageNet statistics in RGB order; re-normalise where the model wants others
        mean, std = np.asarray(IMAGENET_MEAN, np.float32), np.asarray(IMAGENET_STD, np.float32)
        self.order = [2, 1, 0] if meta.channel_order == "bgr" else [0, 1, 2]
        self.scale = (std[self.order] / np.asarray(meta.std, np.float32)).reshape(1, 3, 1, 1)
        model_mean, model_std = np.asarray(meta.mean, np.float32), np.asarray(meta.std, np.float32)
        self.shift = ((mean[self.order] - model_mean) / model_std).reshape(1, 3, 1, 1)

    def __call__(self, image: Any) -> dict[str, Any]:
        import torch

        batch = image.detach().cpu().numpy()[:, self.order] * self.scale + self.shift
        step = self.backend.batch_size or batch.shape[0]
        parts = [self.backend.infer(np.ascontiguousarray(batch[i: i + step], dtype=np.float32))
                 for i in range(0, batch.shape[0], step)]
        return {task: torch.from_numpy(np.concatenate([p[task] for p in parts])) for task in parts[0]}

    def close(self) -> None:
        self.backend.close()


def _config_for_model(meta: Any) -> Any:
    """An ExperimentConfig describing an exported model (what the datasets and metrics need)."""
    from mtl_perception.config import config_from_dict

    return config_from_dict({"model": {"tasks": list(meta.tasks), "num_classes": max(2, len(meta.class_names)),
                                       "min_depth": float(meta.depth_min) or 1e-3, "max_depth": float(meta.depth_max)},
                             "data": {"height": int(meta.input_height), "width": int(meta.input_width)}})


def _dataset_for(args: argparse.Namespace, config: Any, notes: list[str]) -> tuple[Any, str]:
    """The evaluation dataset the --data flag names and its kind (synthetic | folder | nyuv2)."""
    from dataclasses import replace

    from mtl_perception.data.datasets import build_datasets
    from mtl_perception.data.transforms import EvalTransform
    from mtl_perception.training.validation import NativeTargets

    height, width = config.data.height, config.data.width
    transform = NativeTargets(height, width) if args.resolution == "native" else EvalTransform(height, width)
    if args.data == "synthetic":
        data_cfg = replace(config.data, val_count=args.count or config.data.val_count, augment=False)
        return build_datasets(data_cfg)[1], "synthetic"  # rendered at the network size: both resolutions agree
    path = Path(args.data)
    if not path.exists():
        raise FileNotFoundError(f"--data {args.data}: no such file or directory "
                                "(use 'synthetic', a folder dataset or the NYUv2 .mat)")
    if path.is_dir():
        from mtl_perception.data.folder import FolderDataset

        return FolderDataset(path, transform), "folder"
    import h5py

    from mtl_perception.data.nyuv2 import NUM_FRAMES, NYUv2Dataset

    split = args.nyu_split
    if split == "auto":
        try:
            with h5py.File(path, "r") as handle:
                count = handle["images"].shape[0] if "images" in handle else NUM_FRAMES
        except OSError:
            count = NUM_FRAMES  # the dataset's own check names the problem
        split = "test" if count == NUM_FRAMES else "all"
        if split == "all":
            notes.append(f"{path.name} holds {count} frames, not the official {NUM_FRAMES}: "
                         "scoring all of them (not the official test split)")
    dataset = NYUv2Dataset(path, split, config.data.nyu_classes, transform, normals_dir=args.nyu_normals,
                           normals_axes=args.nyu_normals_axes)
    return dataset, "nyuv2"


def _data_tasks(dataset: Any) -> set[str]:
    from mtl_perception.tasks import ALL_TASKS

    tasks = getattr(dataset, "tasks", None)
    if tasks is not None:  # folder datasets name their label maps 'labels'
        return {"semantic" if t == "labels" else t for t in tasks}
    if len(dataset) == 0:
        return set()
    return {t for t in ALL_TASKS if t in dataset[0]}


def _denormalise(image: np.ndarray) -> np.ndarray:
    from mtl_perception.tasks import IMAGENET_MEAN, IMAGENET_STD

    rgb = image.transpose(1, 2, 0) * np.array(IMAGENET_STD) + np.array(IMAGENET_MEAN)
    return (np.clip(rgb, 0, 1) * 255).astype(np.uint8)


@command
def evaluate_main(args: argparse.Namespace) -> int:
    import torch
    import torch.nn.functional as F
    from torch.utils.data import DataLoader

    from mtl_perception.colorize import palette_from_sequence
    from mtl_perception.evaluation.contact_sheet import sample_panels, write_contact_sheet
    from mtl_perception.metrics import NYU_MAX_DEPTH
    from mtl_perception.fileio import atomic_write_bytes, check_output_dir, file_sha256, json_safe
    from mtl_perception.safeload import check_path
    from mtl_perception.training.validation import EvalProtocol, evaluate_model

    check_output_dir(check_path(args.out, "--out"))
    notes: list[str] = []
    if args.checkpoint:
        from mtl_perception.training.checkpoint import model_from_checkpoint

        device = check_device(args.device)
        model, config, state = model_from_checkpoint(check_path(args.checkpoint, "--checkpoint"), map_location=device)
        model = model.to(device)
        info = state.get("dataset", {})
        class_names, palette_source, source = info.get("class_names"), info.get("palette"), str(args.checkpoint)
    else:
        from mtl_perception.inference.backends import validate_model_path

        if args.device != "cpu":
            raise ValueError("--device applies to --checkpoint; "
                             "an exported --model runs on ONNX Runtime's CPU provider")
        device = "cpu"
        model = OnnxNetwork(str(validate_model_path("onnxruntime", check_path(args.model, "--model"))))
        config = _config_for_model(model.metadata)
        class_names, palette_source, source = list(model.metadata.class_names), model.metadata.palette, str(args.model)
    dataset, kind = _dataset_for(args, config, notes)
    max_depth = args.max_depth if args.max_depth is not None else (NYU_MAX_DEPTH if kind == "nyuv2" else math.inf)
    if not args.min_depth < max_depth:
        raise ValueError(f"--min-depth {args.min_depth} must be below --max-depth {max_depth}")
    protocol = EvalProtocol(args.resolution, args.min_depth, max_depth, args.crop)
    available = _data_tasks(dataset)
    tasks = [t for t in config.model.tasks if t in available]
    for task in config.model.tasks:
        if task not in available:
            nyu_normals = kind == "nyuv2" and task == "normals"
            hint = " (the NYUv2 labelled .mat has none; give --nyu-normals DIR)" if nyu_normals else ""
            notes.append(f"{task} not scored: the data has no {task} ground truth{hint}")
    if "semantic" in tasks and kind == "nyuv2":
        from mtl_perception.data.nyuv2 import nyuv2_class_names

        data_classes = nyuv2_class_names(config.data.nyu_classes)
        if len(data_classes) != config.model.num_classes or (class_names and list(class_names) != data_classes):
            tasks.remove("semantic")
            notes.append(f"semantic not scored: the model predicts {config.model.num_classes} classes "
                         f"({', '.join((class_names or [])[:4])}...), "
                         f"the data labels the NYUv2 {len(data_classes)}-class set")
    if not tasks:
        raise ValueError(f"nothing to score: the model predicts {config.model.tasks} "
                         f"but the data has ground truth for {sorted(available) or 'no task'}")
    palette = palette_from_sequence(palette_source, config.model.num_classes)
    rows: list[Any] = []

    def collect(batch: dict[str, Any], outputs: dict[str, Any]) -> None:
        for i in range(min(batch["image"].shape[0], args.sheet_rows - len(rows))):
            size = batch["image"].shape[-2:]  # the sheet shows every panel at the network size
            targets = {t: _at(batch[t][i], size, F) for t in tasks}
            predictions = {t: _at(outputs[t][i], size, F, interpolate=True) for t in tasks}
            rows.append(sample_panels(_denormalise(batch["image"][i].cpu().numpy()), targets, predictions,
                                      palette=palette, num_classes=config.model.num_classes,
                                      min_depth=config.model.min_depth, max_depth=config.model.max_depth))

    loader = DataLoader(dataset, batch_size=args.batch_size, shuffle=False)
    try:
        with torch.inference_mode():
            metrics = evaluate_model(model, loader, tasks, config.model.num_classes, class_names, device,
                                     on_batch=collect, protocol=protocol)
    finally:
        if hasattr(model, "close"):
            model.close()
    out = Path(args.out)
    max_depth_cap = None if math.isinf(protocol.max_depth) else protocol.max_depth
    report = {("checkpoint" if args.checkpoint else "model"): source, "sha256": file_sha256(source), "data": args.data,
              "frames": len(dataset), "protocol": {"resolution": protocol.resolution, "min_depth": protocol.min_depth,
                                                   "max_depth": max_depth_cap, "crop": protocol.crop},
              "skipped": notes, "metrics": metrics}
    atomic_write_bytes(out / "metrics.json", json.dumps(json_safe(report), indent=2, allow_nan=False).encode())
    if rows:
        write_contact_sheet(out / "contact_sheet.png", rows)
    print(json.dumps(json_safe(metrics), indent=2))
    for note in notes:
        print(f"note: {note}")
    print(f"scored {len(dataset)} frames ({protocol.describe()}); wrote {out / 'metrics.json'}"
          + (f" and {out / 'contact_sheet.png'}" if rows else ""))
    return 0


def _at(value: Any, size: Any, F: Any, interpolate: bool = False) -> Any:
    """A (C, H, W) or (H, W) tensor at ``size`` (nearest for targets, bilinear for predictions)."""
    if tuple(value.shape[-2:]) == tuple(size):
        return value
    batch = value[None] if value.ndim == 3 else value[None, None]
    mode = "bilinear" if interpolate and batch.dtype.is_floating_point else "nearest"
    options = {"align_corners": False} if mode == "bilinear" else {}
    resized = F.interpolate(batch.float(), size=tuple(size), mode=mode, **options)
    resized = resized.to(value.dtype)
    return resized[0] if value.ndim == 3 else resized[0, 0]


def add_study_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", required=True, help="study YAML (see config/study/); entries x seeds are trained")
    parser.add_argument("overrides", nargs="*", metavar="key=value",
                        help="study keys (seeds, eval_count, latency_runs, out_dir) or base config keys "
                             "(train.steps=100)")


@command
def study_main(args: argparse.Namespace) -> int:
    from mtl_perception.evaluation.study import StudyConfig, run_study

    run_study(StudyConfig.load(args.config, args.overrides))
    return 0


DEFAULT_REALDATA = "../shared/realdata"


def add_sim_to_real_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", required=True, help="the model file (.onnx) to score, e.g. models/default.onnx")
    parser.add_argument("--compare", default=None,
                        help="a second model file scored on the same frames; its columns sit beside --model's")
    parser.add_argument("--realdata", default=None,
                        help=f"the realdata folder (nyu_demo, realsense_d435i, kitti_demo layouts; see "
                             f"docs/sim_to_real.md); default: {DEFAULT_REALDATA} when it exists")
    parser.add_argument("--nyu-mat", default=None,
                        help="nyu_depth_v2_labeled.mat: also score the official 654 test frames, floor/wall IoU "
                             "against NYU's own 40-class labels")
    parser.add_argument("--out", default="sim_to_real", help="directory for report.json, report.md and strips/")


def _model_tags(paths: list[Path]) -> list[str]:
    """Column names of the models: file stems, made unique by their position."""
    stems = [path.stem for path in paths]
    return stems if len(set(stems)) == len(stems) else [f"{stem}#{i + 1}" for i, stem in enumerate(stems)]


@command
def sim_to_real_main(args: argparse.Namespace) -> int:
    from itertools import chain

    from tqdm import tqdm

    from mtl_perception.evaluation.real_frames import NyuTestFrames, realdata_frames
    from mtl_perception.evaluation.sim_to_real import ModelOnFrames, markdown_report, report_json, run_sim_to_real
    from mtl_perception.fileio import atomic_write_bytes, check_output_dir, json_safe
    from mtl_perception.safeload import check_path

    out = check_output_dir(check_path(args.out, "--out"))
    paths = [check_path(args.model, "--model")] + ([check_path(args.compare, "--compare")] if args.compare else [])
    for flag_name, path in zip(("--model", "--compare"), paths):
        if not path.is_file():
            raise FileNotFoundError(f"{flag_name} {path}: no such model file")
    notes: list[str] = []
    root = Path(args.realdata or DEFAULT_REALDATA)
    if not root.is_dir():
        if args.realdata:
            raise NotADirectoryError(f"--realdata {root}: no such folder")
        frames, skipped = [], [f"realdata: {root} is absent, real frames skipped (give --realdata DIR)"]
    else:
        frames, skipped = realdata_frames(root)
    notes += skipped
    nyu = NyuTestFrames(check_path(args.nyu_mat, "--nyu-mat")) if args.nyu_mat else None
    count = len(frames) + (len(nyu) if nyu is not None else 0)
    if count == 0:
        raise ValueError("no real frames to score: " + "; ".join(skipped) + "; or give --nyu-mat")
    models = []
    try:
        for path, tag in zip(paths, _model_tags(paths)):
            models.append(ModelOnFrames(path, tag))
        source = chain(frames, nyu if nyu is not None else ())
        reports = run_sim_to_real(models, source, out, progress=lambda it: tqdm(it, total=count, desc="frames"))
    finally:
        for model in models:
            model.close()
    markdown = markdown_report(reports, notes)
    atomic_write_bytes(out / "report.json", json.dumps(json_safe(report_json(reports, notes)), indent=2,
                                                       allow_nan=False).encode())
    atomic_write_bytes(out / "report.md", markdown.encode())
    print(markdown, end="")
    print(f"scored {count} frames with {len(models)} model(s); wrote {out / 'report.json'}, {out / 'report.md'} "
          f"and {out / 'strips'}")
    return 0
