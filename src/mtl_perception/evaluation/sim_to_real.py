"""The sim-to-real report: a model file on real frames with metric depth, run as the node runs it.

Every frame goes through ``inference.frame_pipeline.FramePipeline`` (the node's deploy graph and default
settings: letterbox, output at the camera's resolution, depth rescaled by the camera's focal length from its
intrinsics) and is scored at the ground truth's resolution, on pixels whose ground truth lies within the
model's depth range:

- depth (``metrics.DepthMetrics``): AbsRel, RMSE, delta1 of the metric prediction; the same after per-frame
  median scaling (prediction x median(gt) / median(prediction)); and of a constant depth equal to the ground
  truth's median, the baseline a depth map must beat to carry any shape;
- floor and wall IoU (``metrics.SemanticMetrics`` on floor | wall | other) on NYU frames, the model's classes
  mapped to NYU40 by name (``resources/synth_to_nyu40.json``). The reference is NYU's own 40-class labels where
  the frames have them (the labelled ``.mat``); the demo frames have none, so there it is a GEOMETRIC reference
  derived from the ground-truth depth and intrinsics (``evaluation.floor_wall``), not NYU's annotation.

Dataset rows are means over frames for depth and IoU pooled over the dataset's pixels. Outdoor frames are
reported apart (out of the indoor model's domain and depth range) and count for no target.
"""
from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from importlib import resources
from pathlib import Path

import cv2
import numpy as np

from mtl_perception.colorize import colorize_depth, colorize_labels, overlay
from mtl_perception.evaluation.contact_sheet import Panel, write_contact_sheet
from mtl_perception.evaluation.floor_wall import FLOOR, OTHER, SURFACES, WALL, geometric_floor_wall
from mtl_perception.evaluation.real_frames import RealFrame, camera_info
from mtl_perception.metrics import DepthMetrics, SemanticMetrics
from mtl_perception.tasks import IGNORE_INDEX

DEPTH_FIGURES = ("abs_rel", "rmse", "delta1")
SCORINGS = ("metric", "median_scaled", "constant")
GEOMETRIC_REFERENCE = "geometric (from ground-truth depth)"
LABEL_REFERENCE = "NYU40 labels"
GEOMETRIC_DATASETS = frozenset({"nyu_demo"})  # NYU frames without labels: scored against the geometric reference
NYU_DATASETS = ("nyu_demo", "nyuv2_test")
DELTA1_TARGET = 0.5
STRIPS_PER_DATASET = 8
STRIP_TILE_HEIGHT = 240


# ---------------------------------------------------------------------------------------------- depth figures

def score_depth(pred: np.ndarray, gt: np.ndarray, depth_range: tuple[float, float]) -> dict:
    """Metric, median-scaled and constant-baseline AbsRel / RMSE / delta1 of one frame (same-size arrays, metres).

    Scored pixels: ground truth finite and within ``depth_range`` (0 = no measurement is outside it) where the
    prediction is finite; ``coverage`` is the share of in-range pixels with a finite prediction, ``median_scale``
    median(gt) / median(prediction).
    """
    if pred.shape != gt.shape:
        raise ValueError(f"depth prediction {pred.shape} and ground truth {gt.shape} differ; resize the prediction")
    low, high = max(float(depth_range[0]), 1e-3), float(depth_range[1])
    target_all = np.asarray(gt, np.float64)
    estimate_all = np.asarray(pred, np.float64)
    with np.errstate(invalid="ignore"):
        in_range = np.isfinite(target_all) & (target_all >= low) & (target_all <= high)
    scored = in_range & np.isfinite(estimate_all)
    if not scored.any():
        nothing = {name: dict.fromkeys(DEPTH_FIGURES, math.nan) for name in SCORINGS}
        return {**nothing, "median_scale": math.nan, "coverage": 0.0, "pixels": 0}
    target, estimate = target_all[scored], estimate_all[scored]
    gt_median = float(np.median(target))
    scale = gt_median / max(float(np.median(estimate)), 1e-9)
    candidates = {"metric": estimate, "median_scaled": estimate * scale, "constant": np.full_like(target, gt_median)}
    figures: dict = {}
    for name, values in candidates.items():
        metrics = DepthMetrics(low, high)
        metrics.update(values, target)
        figures[name] = {key: value for key, value in metrics.compute().items() if key in DEPTH_FIGURES}
    return {**figures, "median_scale": scale, "coverage": float(scored.sum() / in_range.sum()), "pixels": int(scored.sum())}


# ---------------------------------------------------------------------------------------------- floor and wall

@lru_cache(maxsize=1)
def synth_to_nyu40() -> dict[str, str]:
    """Synthetic class name -> NYU40 class name (``resources/synth_to_nyu40.json``)."""
    text = resources.files("mtl_perception.evaluation").joinpath("resources/synth_to_nyu40.json").read_text()
    return dict(json.loads(text)["classes"])


def nyu40_names() -> list[str]:
    from mtl_perception.data.nyuv2 import nyuv2_class_names

    return nyuv2_class_names(40)


def surface_table(class_names: Sequence[str]) -> tuple[np.ndarray, list[str]]:
    """(256,) uint8 lookup: a model's class id -> FLOOR | WALL | OTHER through its NYU40 name; and the names
    neither in the mapping file nor NYU40 names (they count as other)."""
    mapping, nyu = synth_to_nyu40(), set(nyu40_names())
    table = np.full(256, OTHER, np.uint8)
    unmapped = []
    for index, name in enumerate(class_names):
        nyu_name = mapping.get(name, name if name in nyu else None)
        if nyu_name is None:
            unmapped.append(name)
        table[index] = {"floor": FLOOR, "wall": WALL}.get(nyu_name or "", OTHER)
    return table, unmapped


def nyu40_surfaces(labels40: np.ndarray) -> np.ndarray:
    """0-based NYU40 ids (IGNORE_INDEX = unlabelled) -> FLOOR | WALL | OTHER | IGNORE_INDEX."""
    names = nyu40_names()
    table = np.full(256, OTHER, np.uint8)
    table[names.index("floor")], table[names.index("wall")] = FLOOR, WALL
    table[IGNORE_INDEX] = IGNORE_INDEX
    return table[labels40]


def surface_confusion(predicted: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """(3, 3) confusion [reference, prediction] of floor | wall | other; IGNORE_INDEX pixels left out."""
    metrics = SemanticMetrics(len(SURFACES), IGNORE_INDEX, list(SURFACES))
    metrics.update(predicted[None], reference[None])
    return metrics.confusion


def surface_iou(confusion: np.ndarray) -> dict[str, float]:
    """Floor and wall IoU of a (possibly pooled) confusion, NaN where neither side has the surface; and the share
    of the reference's scored pixels that are floor and wall."""
    metrics = SemanticMetrics(len(SURFACES), IGNORE_INDEX, list(SURFACES))
    metrics.load_state(confusion.reshape(-1))
    iou = metrics.per_class_iou()
    reference = confusion.sum(axis=1) / max(float(confusion.sum()), 1.0)
    return {"floor_iou": float(iou[FLOOR]), "wall_iou": float(iou[WALL]),
            "floor_share": float(reference[FLOOR]), "wall_share": float(reference[WALL])}


# ---------------------------------------------------------------------------------------------- running a model

class ModelOnFrames:
    """A model file run on real frames through the node's ``FramePipeline`` (ONNX Runtime, CPU)."""

    def __init__(self, path: str | Path, tag: str) -> None:
        from mtl_perception.fileio import file_sha256
        from mtl_perception.inference.frame_pipeline import FramePipeline, FrameSettings

        # out_of_range "inf" gives -inf / +inf beyond the depth range, which scoring clamps to the range (the node's
        # NaN would drop those pixels); everything else is the node's default
        self.pipeline = FramePipeline(path, "onnxruntime", {"provider": "cpu"}, FrameSettings(out_of_range="inf"))
        meta = self.pipeline.metadata
        if "depth" not in meta.tasks:
            self.pipeline.close()
            raise ValueError(f"{path}: the model predicts {meta.tasks}, no depth: nothing to compare with real depth")
        self.tag, self.path, self.sha256 = tag, str(path), file_sha256(path)
        self.outputs = {"depth", "labels"} if "semantic" in meta.tasks else {"depth"}
        self.surfaces, self.unmapped = surface_table(meta.class_names)
        self.palette = self.pipeline.palette_rgb

    def predict(self, frame: RealFrame) -> tuple[np.ndarray, np.ndarray | None]:
        """(depth in metres, class ids or None) at the ground truth's size."""
        arrays = self.pipeline.run(frame.rgb, "rgb8", self.outputs, camera_info(frame)).arrays
        height, width = frame.depth.shape
        depth = arrays["depth"]
        if depth.shape != (height, width):
            depth = cv2.resize(depth, (width, height), interpolation=cv2.INTER_LINEAR)
        labels = arrays.get("labels")
        if labels is not None and labels.shape != (height, width):
            labels = cv2.resize(labels, (width, height), interpolation=cv2.INTER_NEAREST)
        return depth, labels

    def close(self) -> None:
        self.pipeline.close()


# ---------------------------------------------------------------------------------------------- the study

@dataclass
class FrameScore:
    """One model on one frame."""

    dataset: str
    frame: str
    indoor: bool
    depth: dict  # score_depth's result
    reference: str | None = None  # GEOMETRIC_REFERENCE | LABEL_REFERENCE | None (no floor/wall scoring)
    confusion: np.ndarray | None = None  # (3, 3) floor | wall | other against the reference
    strip: str | None = None

    def to_json(self) -> dict:
        surfaces = surface_iou(self.confusion) if self.confusion is not None else {}
        return {"dataset": self.dataset, "frame": self.frame, "indoor": self.indoor, "depth": self.depth,
                "reference": self.reference, **surfaces, "strip": self.strip}


@dataclass
class ModelReport:
    """Every frame's scores of one model."""

    tag: str
    path: str
    sha256: str
    frames: list[FrameScore] = field(default_factory=list)
    unmapped_classes: list[str] = field(default_factory=list)

    def datasets(self) -> dict[str, dict]:
        """Per dataset: frame means of the depth figures, floor/wall IoU pooled over its pixels."""
        summary: dict[str, dict] = {}
        for name in dict.fromkeys(score.dataset for score in self.frames):
            scores = [score for score in self.frames if score.dataset == name]
            depth = {scoring: {key: _mean(s.depth[scoring][key] for s in scores) for key in DEPTH_FIGURES}
                     for scoring in SCORINGS}
            depth["median_scale"] = _mean(s.depth["median_scale"] for s in scores)
            entry = {"frames": len(scores), "indoor": scores[0].indoor, "depth": depth}
            confusions = [s.confusion for s in scores if s.confusion is not None]
            if confusions:
                entry.update(surface_iou(np.sum(confusions, axis=0)), reference=scores[0].reference)
            summary[name] = entry
        return summary

    def targets(self) -> list[tuple[bool, str]]:
        """(passed, line) of the issue's targets: median-scaled AbsRel below the constant baseline on every indoor
        frame; metric delta1 >= 0.5 (mean over frames) on each NYU dataset."""
        lines = []
        indoor = [s for s in self.frames if s.indoor]
        if indoor:
            beaten = [s for s in indoor if s.depth["median_scaled"]["abs_rel"] < s.depth["constant"]["abs_rel"]]
            missed = [f"{s.dataset}/{s.frame}" for s in indoor if s not in beaten]
            lines.append((not missed, f"{self.tag}: median-scaled AbsRel below the constant baseline on every indoor "
                                      f"frame: {len(beaten)}/{len(indoor)}"
                                      + (f" (not on {', '.join(missed[:6])}{' ...' if len(missed) > 6 else ''})"
                                         if missed else "")))
        datasets = self.datasets()
        for name in (n for n in NYU_DATASETS if n in datasets):
            delta1 = datasets[name]["depth"]["metric"]["delta1"]
            frames = [s for s in self.frames if s.dataset == name]
            above = sum(s.depth["metric"]["delta1"] >= DELTA1_TARGET for s in frames)
            lines.append((delta1 >= DELTA1_TARGET, f"{self.tag}: metric δ1 >= {DELTA1_TARGET} on {name}: mean "
                                                   f"{delta1:.3f} ({above}/{len(frames)} frames at or above)"))
        return lines

    def to_json(self) -> dict:
        return {"tag": self.tag, "model": self.path, "sha256": self.sha256, "unmapped_classes": self.unmapped_classes,
                "datasets": self.datasets(), "targets": [{"passed": ok, "target": line} for ok, line in self.targets()],
                "frames": [score.to_json() for score in self.frames]}


def _mean(values: Iterable[float]) -> float:
    finite = [v for v in values if math.isfinite(v)]
    return float(np.mean(finite)) if finite else math.nan


def reference_for(frame: RealFrame) -> tuple[str | None, np.ndarray | None]:
    """The floor/wall reference of a frame: NYU40 labels where it has them, the geometric one on NYU demo frames."""
    if frame.labels40 is not None:
        return LABEL_REFERENCE, nyu40_surfaces(frame.labels40)
    if frame.dataset in GEOMETRIC_DATASETS:
        return GEOMETRIC_REFERENCE, geometric_floor_wall(frame.depth, frame.K)
    return None, None


def depth_colour_range(depth: np.ndarray) -> tuple[float, float]:
    """The 2nd..98th percentile of a frame's measured depth (both depth panels share it)."""
    measured = depth[np.isfinite(depth) & (depth > 0)]
    if measured.size == 0:
        return 0.1, 10.0
    low, high = np.percentile(measured, [2, 98])
    return float(low), float(max(high, low + 1e-3))


def strip_row(frame: RealFrame, predictions: Sequence[tuple[str, np.ndarray, np.ndarray | None, np.ndarray]],
              reference: np.ndarray | None) -> list[Panel]:
    """input | predicted depth per model | ground-truth depth | predicted semantics per model | floor/wall reference.

    ``predictions``: (tag, depth, labels or None, palette) per model; the depth panels share one colour range.
    """
    low, high = depth_colour_range(frame.depth)
    row: list[Panel] = [(f"{frame.dataset}/{frame.name}", frame.rgb)]
    row += [(f"depth {tag}", colorize_depth(depth, low, high)) for tag, depth, _, _ in predictions]
    row.append((f"depth gt {low:.1f}-{high:.1f} m", colorize_depth(frame.depth, low, high)))
    for tag, _, labels, palette in predictions:
        if labels is not None:
            row.append((f"semantics {tag}", overlay(frame.rgb, colorize_labels(labels, palette), 0.6)))
    if reference is not None:
        colours = np.array([[152, 110, 62], [174, 199, 232], [48, 48, 48]], np.uint8)  # floor, wall, other
        row.append(("floor/wall reference", overlay(frame.rgb, colorize_labels(reference, colours), 0.6)))
    return row


def run_sim_to_real(models: Sequence[ModelOnFrames], frames: Iterable[RealFrame], out_dir: Path,
                    progress: Callable[[Iterable[RealFrame]], Iterable[RealFrame]] = iter) -> list[ModelReport]:
    """Score every model on every frame; picture strips under ``out_dir/strips`` (STRIPS_PER_DATASET per dataset)."""
    reports = [ModelReport(m.tag, m.path, m.sha256, unmapped_classes=list(m.unmapped)) for m in models]
    strips_written: dict[str, int] = {}
    for frame in progress(frames):
        reference_name, reference = reference_for(frame)
        predictions = []
        for model, report in zip(models, reports):
            depth, labels = model.predict(frame)
            score = FrameScore(frame.dataset, frame.name, frame.indoor,
                               score_depth(depth, frame.depth, model.pipeline.depth_range))
            if reference is not None and labels is not None:
                score.reference, score.confusion = reference_name, surface_confusion(model.surfaces[labels], reference)
            report.frames.append(score)
            predictions.append((model.tag, depth, labels, model.palette))
        if strips_written.get(frame.dataset, 0) < STRIPS_PER_DATASET:
            strips_written[frame.dataset] = strips_written.get(frame.dataset, 0) + 1
            relative = f"strips/{frame.dataset}_{frame.name}.png"
            write_contact_sheet(out_dir / relative, [strip_row(frame, predictions, reference)], STRIP_TILE_HEIGHT)
            for report in reports:
                report.frames[-1].strip = relative
    return reports


# ---------------------------------------------------------------------------------------------- the report

def _cell(value: float, digits: int = 3) -> str:
    return f"{value:.{digits}f}" if math.isfinite(value) else "–"


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    return ["| " + " | ".join(header) + " |", "|" + "---|" * len(header), *("| " + " | ".join(r) + " |" for r in rows)]


def _rows(reports: Sequence[ModelReport], cells: Callable[[dict], list[str]],
          keep: Callable[[FrameScore], bool] = lambda score: True,
          shared: Callable[[dict], list[str]] = lambda entry: []) -> list[list[str]]:
    """Per dataset: a row per frame then its mean row: ``shared`` cells (of the first model), then each model's
    ``cells`` side by side."""
    rows = []
    summaries = [report.datasets() for report in reports]
    for name, entry in summaries[0].items():
        positions = [i for i, s in enumerate(reports[0].frames) if s.dataset == name and keep(s)]
        if not positions:
            continue
        label = name if entry["indoor"] else f"{name} (out-of-domain)"
        for i in positions:
            rows.append([label, reports[0].frames[i].frame, *shared(reports[0].frames[i].to_json())]
                        + [c for report in reports for c in cells(report.frames[i].to_json())])
        rows.append([f"**{label}**", f"**mean of {entry['frames']}**", *shared(entry)]
                    + [c for summary in summaries for c in cells(summary[name])])
    return rows


def markdown_report(reports: Sequence[ModelReport], notes: Sequence[str]) -> str:
    """report.md: the depth, median-scaled and floor/wall tables (models side by side), targets and notes."""
    tags = [report.tag for report in reports]
    lines = ["# Sim-to-real report", "", "Models: " + "; ".join(f"`{r.tag}` = {r.path} (sha256 {r.sha256[:12]})"
                                                               for r in reports), "",
             "## Metric depth", ""]
    lines += _table(["dataset", "frame"] + [f"{h} {t}" for t in tags for h in ("AbsRel", "RMSE m", "δ1", "gt/pred")],
                    _rows(reports, lambda e: [_cell(e["depth"]["metric"]["abs_rel"]), _cell(e["depth"]["metric"]["rmse"]),
                                              _cell(e["depth"]["metric"]["delta1"]), _cell(e["depth"]["median_scale"], 2)]))
    lines += ["", "## Median-scaled depth against a constant depth (the ground truth's median)", ""]
    lines += _table(["dataset", "frame"] + [f"{h} {t}" for t in tags
                                            for h in ("AbsRel scaled", "AbsRel const", "δ1 scaled", "δ1 const")],
                    _rows(reports, lambda e: [_cell(e["depth"][s][k]) for k in ("abs_rel", "delta1")
                                              for s in ("median_scaled", "constant")]))
    if any(score.confusion is not None for score in reports[0].frames):
        lines += ["", "## Floor and wall IoU", "",
                  f"Reference: {LABEL_REFERENCE} where the frames have them. The NYU demo frames carry no annotation: "
                  "there the reference is derived from the ground-truth depth and intrinsics (floor = the room-bounding "
                  "horizontal plane with most points, walls = room-bounding vertical planes): a geometric reference, "
                  "not NYU's labels. Reference floor / wall: the share of the scored pixels the reference gives them.",
                  ""]
        lines += _table(["dataset", "frame", "reference floor", "reference wall"]
                        + [f"{h} {t}" for t in tags for h in ("floor IoU", "wall IoU")],
                        _rows(reports, lambda e: [_cell(e["floor_iou"]), _cell(e["wall_iou"])],
                              keep=lambda score: score.confusion is not None,
                              shared=lambda e: [f"{e['floor_share']:.0%}", f"{e['wall_share']:.0%}"]))
    lines += ["", "## Targets", ""] + [f"- {'PASS' if ok else 'FAIL'} {line}" for r in reports for ok, line in r.targets()]
    all_notes = list(notes) + [f"{r.tag}: classes {r.unmapped_classes} have no NYU40 name and count as other"
                               for r in reports if r.unmapped_classes]
    if all_notes:
        lines += ["", "## Notes", ""] + [f"- {note}" for note in all_notes]
    return "\n".join(lines) + "\n"


def report_json(reports: Sequence[ModelReport], notes: Sequence[str]) -> dict:
    """report.json: every model's per-frame figures, dataset means and targets."""
    return {"protocol": {"pipeline": "FramePipeline, node defaults (letterbox, camera resolution, focal rescale)",
                         "valid": "ground truth within the model's depth range, prediction finite",
                         "dataset_means": "depth: mean over frames; floor/wall IoU: pooled over pixels",
                         "floor_wall_reference": {"labelled": LABEL_REFERENCE, "unlabelled NYU": GEOMETRIC_REFERENCE}},
            "notes": list(notes), "models": [report.to_json() for report in reports]}
