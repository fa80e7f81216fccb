"""Dataset-level metrics for depth, semantic segmentation and surface normals, and the multi-task gain Δm.

Every accumulator is pure NumPy (inputs may be NumPy arrays or torch tensors) and keeps only additive
sufficient statistics, so that results pooled over a whole dataset are exact and a distributed run can
combine processes by summing one vector:

    vec = torch.from_numpy(metrics.state())
    torch.distributed.all_reduce(vec)          # SUM over processes
    metrics.load_state(vec.numpy())
    results = metrics.compute()

Pooling rule: statistics are summed over every valid pixel of every frame, then divided once (a frame
with more valid pixels weighs more). Metrics with no valid pixel at all are NaN.
"""
from __future__ import annotations

import math
from typing import Any, Mapping, NamedTuple, Sequence

import numpy as np

from mtl_perception.tasks import DEPTH, IGNORE_INDEX, NORMALS, SEMANTIC, validate_tasks


def to_numpy(array: Any) -> np.ndarray:
    """Return a NumPy view/copy of a NumPy array, torch tensor (any device, with or without grad) or sequence."""
    if isinstance(array, np.ndarray):
        return array
    if hasattr(array, "detach"):  # torch.Tensor, without importing torch here
        import torch

        tensor = array.detach()
        if tensor.dtype in (torch.float16, torch.bfloat16):
            tensor = tensor.float()
        return tensor.cpu().numpy()
    return np.asarray(array)


def _check_state(vector: Any, size: int, owner: str) -> np.ndarray:
    values = np.asarray(to_numpy(vector), dtype=np.float64).reshape(-1)
    if values.size != size:
        raise ValueError(f"{owner}.load_state expects {size} values, got {values.size}; "
                         "the state must come from an accumulator built with the same settings")
    return values


class DepthMetrics:
    """AbsRel, SqRel, RMSE, RMSE log and delta accuracies of metric depth, pooled over valid pixels.

    A ground-truth pixel is valid when finite, > 0 and within [min_depth, max_depth]. Predictions are
    clamped to [min_depth, max_depth] (so that log depth is defined); a non-finite prediction on a valid
    pixel is an error. Deltas are fractions in [0, 1] of pixels with max(pred/gt, gt/pred) < 1.25^k.
    """

    KEYS = ("abs_rel", "sq_rel", "rmse", "rmse_log", "delta1", "delta2", "delta3")
    # count, sum |p-g|/g, sum (p-g)^2/g, sum (p-g)^2, sum (log p - log g)^2, count delta1..3
    STATE_SIZE = 8

    def __init__(self, min_depth: float = 1e-3, max_depth: float = math.inf) -> None:
        if not (min_depth > 0 and max_depth > min_depth):
            raise ValueError(f"need 0 < min_depth < max_depth, got min_depth={min_depth}, max_depth={max_depth}")
        self.min_depth = float(min_depth)
        self.max_depth = float(max_depth)
        self.reset()

    def reset(self) -> None:
        self._stats = np.zeros(self.STATE_SIZE, dtype=np.float64)

    def update(self, pred: Any, gt: Any) -> None:
        """Add a batch: pred and gt in metres with the same shape, e.g. (N, 1, H, W)."""
        pred_np = to_numpy(pred)
        gt_np = to_numpy(gt)
        if pred_np.shape != gt_np.shape:
            raise ValueError(f"depth prediction shape {pred_np.shape} != ground truth shape {gt_np.shape}; "
                             "resize the prediction to the ground-truth resolution first")
        gt_flat = gt_np.reshape(-1).astype(np.float64)
        with np.errstate(invalid="ignore"):
            valid = np.isfinite(gt_flat) & (gt_flat > 0) & (gt_flat >= self.min_depth) & (gt_flat <= self.max_depth)
        target = gt_flat[valid]
        estimate = pred_np.reshape(-1)[valid].astype(np.float64)
        if not np.isfinite(estimate).all():
            bad = int((~np.isfinite(estimate)).sum())
            raise ValueError(f"depth prediction has {bad} non-finite values on valid pixels; "
                             "check the model output (NaN/inf usually means diverged training)")
        np.clip(estimate, self.min_depth, self.max_depth, out=estimate)
        diff = estimate - target
        sq = diff * diff
        log_diff = np.log(estimate) - np.log(target)
        ratio = np.maximum(estimate / target, target / estimate)
        self._stats += (
            target.size,
            np.sum(np.abs(diff) / target),
            np.sum(sq / target),
            np.sum(sq),
            np.sum(log_diff * log_diff),
            np.count_nonzero(ratio < 1.25),
            np.count_nonzero(ratio < 1.25**2),
            np.count_nonzero(ratio < 1.25**3),
        )

    def compute(self) -> dict[str, float]:
        count, abs_rel, sq_rel, sq, sq_log, d1, d2, d3 = self._stats
        if count == 0:
            return {key: math.nan for key in self.KEYS}
        return {
            "abs_rel": abs_rel / count,
            "sq_rel": sq_rel / count,
            "rmse": math.sqrt(sq / count),
            "rmse_log": math.sqrt(sq_log / count),
            "delta1": d1 / count,
            "delta2": d2 / count,
            "delta3": d3 / count,
        }

    def state(self) -> np.ndarray:
        return self._stats.copy()

    def load_state(self, vector: Any) -> None:
        self._stats = _check_state(vector, self.STATE_SIZE, "DepthMetrics").copy()


def _class_ids(pred: Any, gt_ndim: int) -> np.ndarray:
    """Class ids from logits (one more axis than gt, classes on axis 1 or 0) or from ids (same rank)."""
    if hasattr(pred, "detach") and pred.ndim == gt_ndim + 1:
        return to_numpy(pred.detach().argmax(dim=1 if pred.ndim >= 4 else 0))  # argmax before copying to host
    array = to_numpy(pred)
    if array.ndim == gt_ndim + 1:
        return array.argmax(axis=1 if array.ndim >= 4 else 0)
    return array


class SemanticMetrics:
    """mIoU, pixel accuracy and per-class IoU from a confusion matrix accumulated over the dataset.

    Pixels whose ground truth equals ``ignore_index`` are left out. IoU_c = TP / (TP + FP + FN). mIoU is
    the mean IoU over the classes that occur in the ground truth or the prediction of at least one
    counted pixel; a class with zero union (absent from both) is excluded from the mean and its per-class
    IoU is NaN. Keys: ``miou``, ``pixel_acc``, ``iou/<class name>``.
    """

    def __init__(self, num_classes: int, ignore_index: int = IGNORE_INDEX,
                 class_names: Sequence[str] | None = None) -> None:
        if num_classes < 1:
            raise ValueError(f"num_classes must be >= 1, got {num_classes}")
        if class_names is not None and len(class_names) != num_classes:
            raise ValueError(f"got {len(class_names)} class names for {num_classes} classes")
        self.num_classes = int(num_classes)
        self.ignore_index = int(ignore_index)
        self.class_names = list(class_names) if class_names is not None else [str(i) for i in range(num_classes)]
        self.reset()

    def reset(self) -> None:
        self.confusion = np.zeros((self.num_classes, self.num_classes), dtype=np.float64)  # [gt, pred]

    def update(self, pred: Any, gt: Any) -> None:
        """Add a batch: pred logits (N, C, H, W) or ids (N, H, W); gt ids (N, H, W) with the ignore id."""
        gt_np = to_numpy(gt)
        pred_shape = tuple(pred.shape) if hasattr(pred, "shape") else np.shape(pred)
        if len(pred_shape) == gt_np.ndim + 1:
            channels = pred_shape[1 if len(pred_shape) >= 4 else 0]
            if channels != self.num_classes:
                raise ValueError(f"semantic logits have {channels} channels, metrics were built for {self.num_classes} classes")
        ids = _class_ids(pred, gt_np.ndim)
        if ids.shape != gt_np.shape:
            raise ValueError(f"semantic prediction shape {pred_shape} does not match ground truth {gt_np.shape}; "
                             "expected logits (N, C, H, W) or ids (N, H, W) at the ground-truth resolution")
        gt_flat = gt_np.reshape(-1).astype(np.int64)
        pred_flat = ids.reshape(-1).astype(np.int64)
        counted = gt_flat != self.ignore_index
        gt_flat, pred_flat = gt_flat[counted], pred_flat[counted]
        C = self.num_classes
        if gt_flat.size and (gt_flat.min() < 0 or gt_flat.max() >= C):
            raise ValueError(f"ground-truth class ids must lie in [0, {C}) or equal the ignore id {self.ignore_index}, "
                             f"found ids in [{gt_flat.min()}, {gt_flat.max()}]; check num_classes and the label mapping")
        if pred_flat.size and (pred_flat.min() < 0 or pred_flat.max() >= C):
            raise ValueError(f"predicted class ids must lie in [0, {C}), found ids in [{pred_flat.min()}, {pred_flat.max()}]")
        self.confusion += np.bincount(gt_flat * C + pred_flat, minlength=C * C).reshape(C, C)

    def per_class_iou(self) -> np.ndarray:
        """IoU of every class; NaN where the class is absent from both ground truth and prediction."""
        tp = np.diag(self.confusion)
        union = self.confusion.sum(axis=0) + self.confusion.sum(axis=1) - tp
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(union > 0, tp / union, np.nan)

    def compute(self) -> dict[str, float]:
        iou = self.per_class_iou()
        total = self.confusion.sum()
        present = ~np.isnan(iou)
        results = {
            "miou": float(iou[present].mean()) if present.any() else math.nan,
            "pixel_acc": float(np.trace(self.confusion) / total) if total > 0 else math.nan,
        }
        results.update({f"iou/{name}": float(value) for name, value in zip(self.class_names, iou)})
        return results

    def state(self) -> np.ndarray:
        return self.confusion.reshape(-1).copy()

    def load_state(self, vector: Any) -> None:
        C = self.num_classes
        self.confusion = _check_state(vector, C * C, "SemanticMetrics").reshape(C, C).copy()


class NormalsMetrics:
    """Angular error (degrees) between predicted and ground-truth normals over valid pixels.

    A pixel is valid when its ground truth is finite and non-zero. Both vectors are normalised; a zero
    predicted vector counts as 90 degrees. Mean and threshold percentages are exact. The median comes from
    a histogram of 0.01-degree bins over [0, 180] that also keeps each bin's sum of errors: it is exact when
    the middle errors share a bin with equal values and otherwise within one bin width (0.01 degree).
    Keys: ``mean``, ``median`` (degrees), ``within_11_25``, ``within_22_5``, ``within_30`` (percent).
    """

    BIN_WIDTH = 0.01
    NUM_BINS = 18000
    THRESHOLDS = (11.25, 22.5, 30.0)
    _HEAD = 2 + len(THRESHOLDS)  # count, sum of errors, counts under each threshold
    STATE_SIZE = _HEAD + 2 * NUM_BINS

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self._stats = np.zeros(self.STATE_SIZE, dtype=np.float64)

    @staticmethod
    def angular_error(pred: np.ndarray, gt: np.ndarray) -> np.ndarray:
        """Angle in degrees between rows of two (M, 3) arrays (gt rows must be non-zero)."""
        pred_norm = np.linalg.norm(pred, axis=1)
        gt_norm = np.linalg.norm(gt, axis=1)
        cosine = np.einsum("ij,ij->i", pred, gt) / (np.maximum(pred_norm, 1e-12) * gt_norm)
        return np.degrees(np.arccos(np.clip(cosine, -1.0, 1.0)))

    def update(self, pred: Any, gt: Any, channel_axis: int | None = None) -> None:
        """Add a batch: (N, 3, H, W) arrays (or (3, H, W)); ``channel_axis`` overrides, e.g. -1 for HWC."""
        pred_np, gt_np = to_numpy(pred), to_numpy(gt)
        if pred_np.shape != gt_np.shape:
            raise ValueError(f"normals prediction shape {pred_np.shape} != ground truth shape {gt_np.shape}")
        axis = channel_axis if channel_axis is not None else (1 if gt_np.ndim == 4 else 0)
        if gt_np.shape[axis] != 3:
            raise ValueError(f"normals need 3 channels on axis {axis}, got shape {gt_np.shape}; "
                             "pass channel_axis=-1 for (..., 3) arrays")
        gt_rows = np.moveaxis(gt_np, axis, -1).reshape(-1, 3).astype(np.float64)
        pred_rows = np.moveaxis(pred_np, axis, -1).reshape(-1, 3).astype(np.float64)
        valid = np.isfinite(gt_rows).all(axis=1) & (np.abs(gt_rows).sum(axis=1) > 0)
        gt_rows, pred_rows = gt_rows[valid], pred_rows[valid]
        if not np.isfinite(pred_rows).all():
            raise ValueError("normals prediction has non-finite values on valid pixels; check the model output")
        errors = self.angular_error(pred_rows, gt_rows)
        bins = np.minimum((errors / self.BIN_WIDTH).astype(np.int64), self.NUM_BINS - 1)
        head = [errors.size, errors.sum()] + [np.count_nonzero(errors < t) for t in self.THRESHOLDS]
        self._stats[: self._HEAD] += head
        self._stats[self._HEAD: self._HEAD + self.NUM_BINS] += np.bincount(bins, minlength=self.NUM_BINS)
        self._stats[self._HEAD + self.NUM_BINS:] += np.bincount(bins, weights=errors, minlength=self.NUM_BINS)

    def _median(self) -> float:
        count = int(round(self._stats[0]))
        counts = self._stats[self._HEAD: self._HEAD + self.NUM_BINS]
        sums = self._stats[self._HEAD + self.NUM_BINS:]
        cumulative = np.cumsum(counts)

        def value_at(rank: int) -> float:  # estimate of the rank-th smallest error (0-based)
            index = int(np.searchsorted(cumulative, rank, side="right"))
            return float(sums[index] / counts[index])

        return 0.5 * (value_at((count - 1) // 2) + value_at(count // 2))

    def compute(self) -> dict[str, float]:
        count = self._stats[0]
        if count == 0:
            return {"mean": math.nan, "median": math.nan,
                    **{f"within_{_threshold_key(t)}": math.nan for t in self.THRESHOLDS}}
        results = {"mean": float(self._stats[1] / count), "median": self._median()}
        for i, threshold in enumerate(self.THRESHOLDS):
            results[f"within_{_threshold_key(threshold)}"] = float(100.0 * self._stats[2 + i] / count)
        return results

    def state(self) -> np.ndarray:
        return self._stats.copy()

    def load_state(self, vector: Any) -> None:
        self._stats = _check_state(vector, self.STATE_SIZE, "NormalsMetrics").copy()


def _threshold_key(threshold: float) -> str:
    """11.25 -> '11_25', 30.0 -> '30'."""
    return f"{threshold:g}".replace(".", "_")


TaskMetrics = DepthMetrics | SemanticMetrics | NormalsMetrics


def new_accumulator(task: str, num_classes: int = 0, ignore_index: int = IGNORE_INDEX,
                    class_names: Sequence[str] | None = None, min_depth: float = 1e-3,
                    max_depth: float = math.inf) -> TaskMetrics:
    """The metrics accumulator of one task (depth range, semantic class set as given)."""
    if task == DEPTH:
        return DepthMetrics(min_depth, max_depth)
    if task == SEMANTIC:
        return SemanticMetrics(num_classes, ignore_index, class_names)
    if task == NORMALS:
        return NormalsMetrics()
    raise ValueError(f"no metrics for task '{task}'")


class MultiTaskMetrics:
    """One accumulator per enabled task, fed with model outputs and a batch in the package conventions."""

    def __init__(self, tasks: Sequence[str], num_classes: int = 0, ignore_index: int = IGNORE_INDEX,
                 class_names: Sequence[str] | None = None, min_depth: float = 1e-3,
                 max_depth: float = math.inf) -> None:
        self.tasks = validate_tasks(list(tasks))
        self.parts: dict[str, TaskMetrics] = {
            task: new_accumulator(task, num_classes, ignore_index, class_names, min_depth, max_depth) for task in self.tasks
        }

    def update(self, outputs: Mapping[str, Any], batch: Mapping[str, Any]) -> None:
        """Add a batch: ``outputs[task]`` (model forward) against ``batch[task]`` (ground truth)."""
        for task, part in self.parts.items():
            if task not in outputs or task not in batch:
                where = "model outputs" if task not in outputs else "batch"
                raise KeyError(f"task '{task}' is missing from the {where}; metrics were built for {list(self.tasks)}")
            part.update(outputs[task], batch[task])

    def compute(self) -> dict[str, dict[str, float]]:
        return {task: part.compute() for task, part in self.parts.items()}

    def reset(self) -> None:
        for part in self.parts.values():
            part.reset()

    def state(self) -> np.ndarray:
        return np.concatenate([part.state() for part in self.parts.values()])

    def load_state(self, vector: Any) -> None:
        values = np.asarray(to_numpy(vector), dtype=np.float64).reshape(-1)
        sizes = [part.state().size for part in self.parts.values()]
        if values.size != sum(sizes):
            raise ValueError(f"MultiTaskMetrics.load_state expects {sum(sizes)} values, got {values.size}")
        offset = 0
        for part, size in zip(self.parts.values(), sizes):
            part.load_state(values[offset: offset + size])
            offset += size


# The crop of Eigen et al. (NIPS 2014) for NYUv2 at 480x640, as BTS, AdaBins and later depth papers score it:
# rows 45..470, columns 41..600 (the border the Kinect's registration leaves without valid depth).
EIGEN_CROP_480x640 = (45, 471, 41, 601)  # top, bottom (exclusive), left, right (exclusive)
NYU_MAX_DEPTH = 10.0  # metres: NYUv2 depth is scored up to 10 m in the literature (predictions clamped there too)


def eigen_crop_mask(height: int, width: int) -> np.ndarray:
    """Boolean (height, width) mask of the Eigen crop, scaled from 480x640 to this size."""
    top, bottom, left, right = EIGEN_CROP_480x640
    sy, sx = height / 480.0, width / 640.0
    mask = np.zeros((height, width), dtype=bool)
    mask[int(round(top * sy)): int(round(bottom * sy)), int(round(left * sx)): int(round(right * sx))] = True
    return mask


def flatten_metrics(results: Mapping[str, Mapping[str, float]]) -> dict[str, float]:
    """{"depth": {"rmse": x}} -> {"depth/rmse": x}, e.g. for TensorBoard scalars."""
    return {f"{task}/{key}": value for task, values in results.items() for key, value in values.items()}


# The direction of every figure the package reports, by key: these are better when lower (errors, the loss,
# change between consecutive frames, latency); every other figure (delta1, miou, pixel_acc, within_*, iou/*,
# depth coverage) is better when higher. Training's best-checkpoint choice, Δm and the reports all read it.
LOWER_IS_BETTER = frozenset({
    "abs_rel", "sq_rel", "rmse", "rmse_log", "mean", "median", "loss",
    "depth_rel_change", "label_flip_fraction", "normal_change_deg",
    "mean_ms", "std_ms", "min_ms", "p50_ms", "p90_ms", "p99_ms", "max_ms",
})


def lower_is_better(key: str) -> bool:
    """True when a smaller value of the figure ``key`` (e.g. ``rmse``, ``p50_ms``) is better."""
    return key in LOWER_IS_BETTER


class Headline(NamedTuple):
    """The one metric that stands for a task, and its direction."""

    metric: str
    lower_is_better: bool


HEADLINE: dict[str, Headline] = {
    DEPTH: Headline("rmse", lower_is_better("rmse")),
    SEMANTIC: Headline("miou", lower_is_better("miou")),
    NORMALS: Headline("mean", lower_is_better("mean")),
}


def delta_m(mt: Mapping[str, Mapping[str, float]], st: Mapping[str, Mapping[str, float]],
            tasks: Sequence[str] | None = None) -> float:
    """Multi-task gain in percent over single-task baselines (positive = the multi-task model is better).

    Δm = (100 / T) Σ_t (-1)^{l_t} (M_mt,t - M_st,t) / M_st,t, with l_t = 1 where lower is better, over each
    task's headline metric (``HEADLINE``). ``mt`` and ``st`` are ``{task: {metric: value}}`` results, e.g.
    ``MultiTaskMetrics.compute()`` of the multi-task model and of the single-task networks; ``tasks``
    defaults to the tasks of ``mt``.
    """
    chosen = validate_tasks(list(tasks) if tasks is not None else [t for t in mt if t in HEADLINE])
    total = 0.0
    for task in chosen:
        metric, lower_is_better = HEADLINE[task]
        try:
            multi, single = float(mt[task][metric]), float(st[task][metric])
        except KeyError:
            raise KeyError(f"delta_m needs '{task}/{metric}' in both the multi-task and the single-task results") from None
        if single == 0 or not math.isfinite(single):
            raise ValueError(f"single-task {task} {metric} is {single}; Δm needs a finite non-zero baseline")
        sign = -1.0 if lower_is_better else 1.0
        total += sign * (multi - single) / single
    return 100.0 * total / len(chosen)
