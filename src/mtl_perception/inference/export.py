"""ONNX export of a checkpoint: a static-shape, self-describing, verified model file.

Exporter choice (torch 2.13): the TorchScript exporter (``dynamo=False``) still works and takes about
a second; its graph computes every resize size from ``Shape`` ops, which the onnxscript optimizer then
folds away because the spatial shape is static, leaving a clean graph (Conv/Relu/Add/Resize...,
BatchNorm folded into Conv) at opset 17. The dynamo exporter gives the same clean graph but only at
opset >= 18 and takes several times longer; it is available with ``exporter="dynamo"``.

Every export is verified before the file is written (atomically): the ONNX checker (full check), the
graph's input/outputs against the metadata, and ONNX Runtime against PyTorch on camera-like frames.
"""
from __future__ import annotations

import io
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import torch
from torch import nn

from mtl_perception.config import ExperimentConfig
from mtl_perception.inference.checkpoint_model import load_for_inference
from mtl_perception.inference.metadata import INPUT_NAME, ModelMetadata
from mtl_perception.inference.model_file import embed_metadata, graph_io_shapes, validate_io
from mtl_perception.inference.sample_images import sample_batch
from mtl_perception.inference.trt_ops import check_tensorrt_compat

EXPORTERS = ("torchscript", "dynamo")
PARITY_TOLERANCE = 1e-3


class ExportError(RuntimeError):
    """The export failed a check; nothing was written."""


@dataclass
class ExportReport:
    """What an export produced and how it was verified."""

    path: Path
    metadata: ModelMetadata
    opset: int
    exporter: str
    dynamic_batch: bool
    max_abs_diff: dict[str, float]  # task -> max |ONNX Runtime - PyTorch| over the parity frames
    parity_frames: int
    node_count: int
    file_bytes: int
    seconds: float
    trt_problems: list[str] = field(default_factory=list)  # TensorRT 10/11 parser compatibility (empty = ok)

    @property
    def worst_diff(self) -> float:
        return max(self.max_abs_diff.values())

    def summary(self) -> str:
        diffs = ", ".join(f"{task} {diff:.2e}" for task, diff in self.max_abs_diff.items())
        trt = "TensorRT 10/11 parsers: compatible" if not self.trt_problems else f"TensorRT 10/11 parsers: {len(self.trt_problems)} problem(s)"
        return (
            f"exported {self.path} ({self.file_bytes / 1e6:.1f} MB, {self.node_count} nodes, opset {self.opset}, "
            f"input {'N' if self.dynamic_batch else 1}x3x{self.metadata.input_height}x{self.metadata.input_width}) in {self.seconds:.1f} s\n"
            f"parity ONNX Runtime vs PyTorch, max abs diff over {self.parity_frames} frames: {diffs} (limit {PARITY_TOLERANCE:g})\n"
            f"{trt}"
        )


class TaskTuple(nn.Module):
    """Wraps a ``{task: tensor}`` network so it returns a tuple in the metadata's task order."""

    def __init__(self, model: nn.Module, tasks: list[str]) -> None:
        super().__init__()
        self.model = model
        self.tasks = list(tasks)

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, ...]:
        outputs = self.model(image)
        return tuple(outputs[t] for t in self.tasks)


def _export_graph(module: nn.Module, example: torch.Tensor, output_names: list[str], opset: int, dynamic_batch: bool, exporter: str) -> onnx.ModelProto:
    """Run torch.onnx.export and return the optimised graph."""
    if exporter == "torchscript":
        import onnxscript.optimizer

        buffer = io.BytesIO()
        dynamic_axes = {name: {0: "batch"} for name in [INPUT_NAME, *output_names]} if dynamic_batch else None
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", category=DeprecationWarning)  # the TorchScript exporter is deprecated, not removed
            torch.onnx.export(
                module, (example,), buffer, dynamo=False, opset_version=opset, input_names=[INPUT_NAME],
                output_names=output_names, do_constant_folding=True, dynamic_axes=dynamic_axes,
            )
        return _annotate_output_shapes(onnxscript.optimizer.optimize(onnx.load_from_string(buffer.getvalue())))
    if exporter == "dynamo":
        if opset < 18:
            raise ExportError(f"the dynamo exporter writes opset 18 or newer, got --opset {opset}; use opset >= 18 or the torchscript exporter")
        dynamic_shapes = ({0: torch.export.Dim("batch", min=1, max=64)},) if dynamic_batch else None
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            program = torch.onnx.export(
                module, (example,), dynamo=True, opset_version=opset, input_names=[INPUT_NAME], output_names=output_names,
                dynamic_shapes=dynamic_shapes, optimize=True, verbose=False,
            )
        return program.model_proto
    raise ValueError(f"unknown exporter '{exporter}'; valid: {list(EXPORTERS)}")


def _annotate_output_shapes(graph: onnx.ModelProto) -> onnx.ModelProto:
    """Give graph outputs the shapes ONNX shape inference derives (with data propagation).

    With a dynamic batch the TorchScript exporter leaves the outputs' spatial sizes symbolic, because
    the resize sizes are computed from ``Shape`` ops; data propagation resolves them to the static
    input size, so consumers (and ``validate_io``) see (batch, C, H, W).
    """
    inferred = onnx.shape_inference.infer_shapes(graph, data_prop=True)
    by_name = {o.name: o for o in inferred.graph.output}
    for output in graph.graph.output:
        if output.name in by_name:
            output.type.CopyFrom(by_name[output.name].type)
    return graph


def onnxruntime_parity(model_bytes: bytes, module: nn.Module, batch: np.ndarray, meta: ModelMetadata, whole_batch: bool = False) -> dict[str, float]:
    """Max abs difference per task between ONNX Runtime (CPU) and PyTorch on ``batch``.

    ONNX Runtime runs one frame at a time, or the whole batch at once with ``whole_batch`` (dynamic-batch
    graphs); PyTorch runs the whole batch.
    """
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3
    session = ort.InferenceSession(model_bytes, options, providers=["CPUExecutionProvider"])
    names = [meta.output_names[t] for t in meta.tasks]
    chunks = [batch] if whole_batch else [frame[None] for frame in batch]
    runs = [session.run(names, {INPUT_NAME: chunk}) for chunk in chunks]
    with torch.inference_mode():
        torch_outputs = module(torch.from_numpy(batch))
    diffs: dict[str, float] = {}
    for i, task in enumerate(meta.tasks):
        ort_out = np.concatenate([run[i] for run in runs], axis=0)
        ref = torch_outputs[i].numpy()
        if ort_out.shape != ref.shape:
            raise ExportError(f"ONNX output '{names[i]}' has shape {ort_out.shape}, PyTorch gives {ref.shape}")
        diffs[task] = float(np.max(np.abs(ort_out - ref)))
    return diffs


def export_model(
    model: nn.Module,
    meta: ModelMetadata,
    out: str | Path,
    opset: int = 17,
    dynamic_batch: bool = False,
    exporter: str = "torchscript",
    parity_frames: int = 2,
    tolerance: float = PARITY_TOLERANCE,
) -> ExportReport:
    """Export an in-memory network described by ``meta``; see ``export_onnx``."""
    from mtl_perception.fileio import atomic_write_bytes

    start = time.perf_counter()
    module = TaskTuple(model, meta.tasks).eval()
    batch = sample_batch(meta, count=max(parity_frames, 1))
    output_names = [meta.output_names[t] for t in meta.tasks]
    graph = _export_graph(module, torch.from_numpy(batch[:1]), output_names, opset, dynamic_batch, exporter)
    module.eval()  # the exporter restores the mode it found; make sure nothing switched to training
    embed_metadata(graph, meta)
    try:
        onnx.checker.check_model(graph, full_check=True)
    except onnx.checker.ValidationError as exc:
        raise ExportError(f"the exported graph fails the ONNX checker: {str(exc).splitlines()[0]}") from None
    validate_io(graph_io_shapes(graph.graph.input), graph_io_shapes(graph.graph.output), meta, "exported graph")
    data = graph.SerializeToString()
    diffs = onnxruntime_parity(data, module, batch, meta, whole_batch=dynamic_batch)
    worst = max(diffs.values())
    if not np.isfinite(worst) or worst > tolerance:
        raise ExportError(f"ONNX Runtime differs from PyTorch by {worst:.3g} (limit {tolerance:g}; per task {diffs}); the model file was not written")
    out = Path(out)
    atomic_write_bytes(out, data)
    opset_used = next(o.version for o in graph.opset_import if o.domain in ("", "ai.onnx"))
    return ExportReport(
        path=out, metadata=meta, opset=opset_used, exporter=exporter, dynamic_batch=dynamic_batch, max_abs_diff=diffs,
        parity_frames=len(batch), node_count=len(graph.graph.node), file_bytes=len(data),
        seconds=time.perf_counter() - start, trt_problems=check_tensorrt_compat(graph),
    )


def export_onnx(
    checkpoint: str | Path,
    out: str | Path,
    height: int | None = None,
    width: int | None = None,
    opset: int = 17,
    dynamic_batch: bool = False,
    exporter: str = "torchscript",
    parity_frames: int = 2,
) -> ExportReport:
    """Export a checkpoint to a self-describing ONNX file and verify it.

    The input is ``image`` (float32 NCHW, normalised RGB) with a static spatial shape (the training size
    unless ``height``/``width`` are given) and batch 1 (or dynamic with ``dynamic_batch``); outputs are
    named per ``OUTPUT_NAMES`` in the metadata's task order. Raises ExportError (nothing written) when
    the checker fails or ONNX Runtime and PyTorch differ by more than 1e-3.
    """
    if exporter not in EXPORTERS:
        raise ValueError(f"unknown exporter '{exporter}'; valid: {list(EXPORTERS)}")
    model, meta = load_for_inference(checkpoint, height, width)
    return export_model(model, meta, out, opset, dynamic_batch, exporter, parity_frames)


def save_untrained_checkpoint(path: str | Path, config: ExperimentConfig | None = None,
                              dataset: dict[str, Any] | None = None, seed: int = 0) -> Path:
    """A checkpoint of a randomly initialised network (``torch.manual_seed(seed)``) at ``path``.

    ``config`` defaults to ``ExperimentConfig()``, ``dataset`` (the checkpoint's dataset entry: class names,
    palette) to the synthetic class set. For the demo's fallback, tests and benchmarks (latency does not
    depend on training).
    """
    from mtl_perception.data.synth_classes import SYNTH_CLASS_NAMES, SYNTH_PALETTE
    from mtl_perception.model.network import build_model
    from mtl_perception.training.checkpoint import save_checkpoint

    config = (config or ExperimentConfig()).validate()
    if dataset is None:
        dataset = {"class_names": list(SYNTH_CLASS_NAMES), "palette": [list(c) for c in SYNTH_PALETTE]}
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    model = build_model(config.model).eval()
    save_checkpoint(path, {"config": config.to_dict(), "model": model.state_dict(), "dataset": dataset})
    return path


def export_untrained(out: str | Path, config: ExperimentConfig | None = None, dataset: dict[str, Any] | None = None,
                     seed: int = 0, keep_checkpoint: bool = False, parity_frames: int = 1) -> ExportReport:
    """Export a randomly initialised network (``save_untrained_checkpoint``) to ``out``, verified as ``export_onnx``
    does. The checkpoint is written next to ``out`` (same stem, ``.pt``) and kept only with ``keep_checkpoint``."""
    out = Path(out)
    checkpoint = save_untrained_checkpoint(out.with_suffix(".pt"), config, dataset, seed)
    try:
        return export_onnx(checkpoint, out, parity_frames=parity_frames)
    finally:
        if not keep_checkpoint:
            checkpoint.unlink(missing_ok=True)
