"""The summary of a bag evaluation as typed figures: what ``summary.json``, the reports and the demo render.

``summarize`` pools the bags' metric states (exact pooled metrics) into a ``BagSummary``: the source of the
predictions, the scoring settings, the class set, one ``BagFigures`` per evaluated bag (or camera) and the
``Aggregate`` over all. ``BagSummary.to_json()`` is the document ``summary.json`` holds; a summary also reads
as that document (``summary["aggregate"]["metrics"]``), for callers that work on the JSON.
"""
from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any, Iterator, Sequence

import numpy as np

from mtl_perception.bags.evaluation.one_bag import BagResult
from mtl_perception.bags.evaluation.scoring import STABILITY_KEYS, task_accumulator
from mtl_perception.bags.evaluation.settings import BagEvalSettings
from mtl_perception.metrics import flatten_metrics
from mtl_perception.tasks import ALL_TASKS, IGNORE_INDEX, SEMANTIC

LATENCY_FIELDS = ("mean_ms", "std_ms", "min_ms", "p50_ms", "p90_ms", "p99_ms", "max_ms")


def finite(value: Any) -> float | None:
    """A figure as a float, or None when absent or not finite."""
    if value is None or isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return None
    return float(value)


@dataclass(frozen=True)
class LatencyStats:
    """Milliseconds over the latency samples of one stage; the statistics are None without samples."""

    count: int = 0
    mean_ms: float | None = None
    std_ms: float | None = None
    min_ms: float | None = None
    p50_ms: float | None = None
    p90_ms: float | None = None
    p99_ms: float | None = None
    max_ms: float | None = None

    @classmethod
    def of(cls, samples_s: Sequence[float]) -> "LatencyStats":
        """The statistics of latency samples given in seconds (non-finite samples left out)."""
        values = np.asarray([s for s in samples_s if s is not None and math.isfinite(s)], dtype=np.float64) * 1000.0
        if values.size == 0:
            return cls()
        p50, p90, p99 = (float(np.percentile(values, q)) for q in (50, 90, 99))
        return cls(int(values.size), float(values.mean()), float(values.std()), float(values.min()), p50, p90, p99,
                   float(values.max()))

    def to_json(self) -> dict[str, float]:
        if not self.count:
            return {"count": 0}
        return {"count": self.count, **{name: getattr(self, name) for name in LATENCY_FIELDS}}


@dataclass(frozen=True)
class Figures:
    """The figures of one bag, or of every bag pooled."""

    metrics: dict[str, dict[str, float]]  # task -> metric -> value
    depth_coverage: float | None  # share of valid ground-truth depth pixels with an estimate
    stability: dict[str, float]  # STABILITY_KEYS value -> mean change between consecutive frames
    latency: dict[str, LatencyStats]  # stage (decode, graph, total) -> statistics

    def metric(self, task: str, key: str) -> float | None:
        return finite(self.metrics.get(task, {}).get(key))

    def change(self, key: str) -> float | None:
        return finite(self.stability.get(key))

    def latency_ms(self, stage: str, statistic: str) -> float | None:
        stats = self.latency.get(stage)
        return finite(getattr(stats, statistic)) if stats is not None else None

    @property
    def flat_metrics(self) -> dict[str, float]:
        return flatten_metrics(self.metrics)

    def to_json(self) -> dict[str, Any]:
        return {"metrics": self.metrics, "depth_coverage": self.depth_coverage, "stability": self.stability,
                "latency": {stage: stats.to_json() for stage, stats in self.latency.items()}}


@dataclass(frozen=True)
class TopicsUsed:
    """The topics an evaluation read."""

    camera: str | None
    camera_info: str | None
    ground_truth: dict[str, str]  # task -> topic
    predictions: dict[str, str]  # task -> topic (recorded predictions only)
    classes: str | None


@dataclass(frozen=True)
class FrameCounts:
    """What happened to the frames of one bag."""

    planned: int
    evaluated: int
    with_ground_truth: dict[str, int]  # task -> frames scored against ground truth
    failures: dict[str, int]  # reason -> frames
    unmatched: dict[str, int]  # role -> frames without a matching message

    @property
    def failed(self) -> int:
        return sum(self.failures.values())


@dataclass(frozen=True)
class BagFigures:
    """Everything reported about one evaluated bag (or one camera of a bag)."""

    bag: str
    storage: str
    topics: TopicsUsed
    frames: FrameCounts
    figures: Figures
    latency_source: str
    output_bag: str | None
    notes: list[str]

    def to_json(self) -> dict[str, Any]:
        frames = self.frames
        return {"bag": self.bag, "storage": self.storage, "topics": asdict(self.topics),
                "frames": {"planned": frames.planned, "evaluated": frames.evaluated,
                           "with_ground_truth": frames.with_ground_truth, "failed": frames.failed,
                           "failures": frames.failures, "unmatched": frames.unmatched},
                **self.figures.to_json(), "latency_source": self.latency_source, "output_bag": self.output_bag,
                "notes": self.notes}


@dataclass(frozen=True)
class Aggregate:
    """The figures over every bag: metric states summed, so pooled metrics are exact."""

    bags: int
    frames_evaluated: int
    frames_failed: int
    figures: Figures

    def to_json(self) -> dict[str, Any]:
        figures = self.figures.to_json()
        return {"bags": self.bags, "frames_evaluated": self.frames_evaluated, "frames_failed": self.frames_failed,
                "metrics": figures.pop("metrics"), "flat_metrics": self.figures.flat_metrics, **figures}


@dataclass(frozen=True)
class Source:
    """Where the predictions came from."""

    model: str | None
    backend: str | None
    predictions_from_bag: bool

    def describe(self) -> str:
        return f"model {self.model} ({self.backend})" if self.model else "prediction topics recorded in the bag"


@dataclass(frozen=True)
class ScoringSettings:
    """The settings that decide the figures."""

    stamp_tolerance_s: float
    resize_mode: str
    rescale_for_camera: bool
    min_depth: float
    max_depth: float | None  # None: no cap


@dataclass(frozen=True)
class BagFailure:
    """A bag (or camera of a bag) that could not be evaluated, and the one-line reason."""

    bag: str
    error: str


@dataclass(frozen=True)
class BagSummary(Mapping):
    """The summary of a bag evaluation; reads as its JSON document too (``summary["aggregate"]``)."""

    source: Source
    settings: ScoringSettings
    classes: list[str]
    bags: list[BagFigures]
    aggregate: Aggregate
    failed: list[BagFailure] = field(default_factory=list)  # bags an executor reported and went past

    def to_json(self) -> dict[str, Any]:
        """The document ``summary.json`` holds (NaN kept: ``json_safe`` turns it into null when written)."""
        return {"source": asdict(self.source), "settings": asdict(self.settings), "classes": self.classes,
                "bags": [bag.to_json() for bag in self.bags], "aggregate": self.aggregate.to_json(),
                "failed_bags": [asdict(failure) for failure in self.failed]}

    def __getitem__(self, key: str) -> Any:
        return self.to_json()[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self.to_json())

    def __len__(self) -> int:
        return len(self.to_json())


# ---------------------------------------------------------------------------------------------- summarize

def _metrics_from_states(states: dict[str, np.ndarray], settings: BagEvalSettings, class_names: list[str],
                         ignore_index: int) -> dict[str, dict[str, float]]:
    results: dict[str, dict[str, float]] = {}
    for task in ALL_TASKS:
        if task in states:
            accumulator = task_accumulator(task, settings, class_names, ignore_index)
            accumulator.load_state(states[task])
            results[task] = accumulator.compute()
    return results


def _stability(results: Sequence[BagResult]) -> dict[str, float]:
    summary: dict[str, float] = {}
    for key in STABILITY_KEYS.values():
        values = [r.stability[key] for result in results for r in result.records
                  if key in r.stability and math.isfinite(r.stability[key])]
        if values:
            summary[key] = float(np.mean(values))
    return summary


def _latency(results: Sequence[BagResult]) -> dict[str, LatencyStats]:
    stages = sorted({stage for result in results for r in result.records for stage in r.latency},
                    key=lambda s: (s == "total", s))
    return {stage: LatencyStats.of([r.latency[stage] for result in results for r in result.records
                                    if stage in r.latency]) for stage in stages}


def _coverage(valid: int, covered: int) -> float | None:
    return covered / valid if valid else None


def _figures(results: Sequence[BagResult], metrics: dict[str, dict[str, float]]) -> Figures:
    valid = sum(r.depth_pixels[0] for r in results)
    covered = sum(r.depth_pixels[1] for r in results)
    return Figures(metrics, _coverage(valid, covered), _stability(results), _latency(results))


def bag_figures(result: BagResult, settings: BagEvalSettings) -> BagFigures:
    """The figures of one bag."""
    choice = result.topics
    topics = TopicsUsed(choice.camera, choice.camera_info, choice.ground_truth, choice.predictions, choice.classes)
    frames = FrameCounts(result.frames_planned, result.frames_evaluated, result.frames_with_gt, result.failures,
                         result.unmatched)
    metrics = _metrics_from_states(result.states, settings, result.class_names, result.ignore_index)
    return BagFigures(result.bag, result.storage, topics, frames, _figures([result], metrics), result.latency_source,
                      result.output_bag, result.notes)


def summarize(results: Sequence[BagResult], settings: BagEvalSettings,
              failed: Sequence[BagFailure] = ()) -> BagSummary:
    """Per-bag figures and the aggregate over all bags (metric states summed: exact pooled metrics).

    ``failed``: the bags that could not be evaluated, listed in the summary; the aggregate is over the others."""
    if not results:
        reasons = "; ".join(f"{failure.bag}: {failure.error}" for failure in failed[:3])
        raise ValueError("no bag results to summarize" + (f" (every bag failed: {reasons})" if reasons else ""))
    semantic_sets = {tuple(r.class_names) for r in results if SEMANTIC in r.states}
    if len(semantic_sets) > 1:
        raise ValueError(f"the bags name different semantic class sets {sorted(semantic_sets)}; "
                         "evaluate them separately")
    class_names = list(next(iter(semantic_sets))) if semantic_sets else results[0].class_names
    ignore_index = next((r.ignore_index for r in results if SEMANTIC in r.states), IGNORE_INDEX)
    pooled: dict[str, np.ndarray] = {}
    for result in results:
        for task, state in result.states.items():
            pooled[task] = pooled[task] + state if task in pooled else state.copy()
    aggregate = Aggregate(len(results), sum(r.frames_evaluated for r in results),
                          sum(sum(r.failures.values()) for r in results),
                          _figures(results, _metrics_from_states(pooled, settings, class_names, ignore_index)))
    source = Source(settings.model, settings.backend if settings.model else None, settings.predictions_from_bag)
    max_depth = settings.max_depth if math.isfinite(settings.max_depth) else None
    scoring = ScoringSettings(settings.tolerance_s, settings.resize_mode, settings.rescale_for_camera,
                              settings.min_depth, max_depth)
    return BagSummary(source, scoring, class_names, [bag_figures(r, settings) for r in results], aggregate,
                      list(failed))
