"""INT8 quantisation of an exported model: the explicit Q/DQ file TensorRT and ONNX Runtime both run.

One INT8 model, not two: ``quantize_int8`` writes the symmetric signed INT8 Q/DQ file of
``precision.quantize_qdq`` (zero points 0, per-channel weights, per-tensor activations, on the mixed-precision
FP16 graph: sensitive layers without Q/DQ in FP16, the output tails in FP32) that TensorRT's explicit
quantization requires, and that ONNX Runtime runs on the CPU. There ONNX Runtime has no INT8 kernels for FP16
Q/DQ graphs and runs them as written (dequantize, then float convolution): 0.22x FP32's speed on this x86 CPU
(``benchmarks/precision_files.py``: FP32 5.7 ms, INT8 25.7 ms, one thread; the FP32 Q/DQ file before was 0.48x).
Its purpose is the GPU/Jetson engine, whose accuracy it lets the CPU measure. The file keeps the model
metadata, so every backend and tool reads it like the original.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mtl_perception.inference.metadata import ModelMetadata
from mtl_perception.inference.model_file import read_onnx_metadata
from mtl_perception.inference.precision import RECIPE_KEY as QUANTIZATION_KEY  # noqa: F401  (re-exported: the tag a precision file carries)
from mtl_perception.inference.precision import OutputAgreement, output_agreement  # noqa: F401  (re-exported)
from mtl_perception.inference.precision import CalibrationSpec, PrecisionError, calibration_frames, compare_files, quantize_qdq
from mtl_perception.inference.sample_images import sample_batch


@dataclass
class QuantizationReport:
    path: Path
    calibration_frames: int
    agreement: OutputAgreement | None  # INT8 vs FP32 ONNX Runtime on held-out sample frames; None: not measurable here
    seconds: float
    unquantized: int = 0  # sensitive nodes left without Q/DQ
    fp32_nodes: int = 0  # nodes that run in FP32 (the output tails); the rest of the unquantized run FP16
    not_measured: str = ""  # why ``agreement`` is None (an onnxruntime that runs the file wrong)

    def summary(self) -> str:
        return (f"quantised {self.path} (explicit Q/DQ on FP16, symmetric INT8, {self.calibration_frames} calibration frames, "
                f"{self.unquantized} sensitive nodes without Q/DQ, {self.fp32_nodes} nodes FP32) in {self.seconds:.1f} s; "
                f"vs FP32: {self.agreement.summary() if self.agreement else 'not measured: ' + self.not_measured}")


def held_out_frames(meta: ModelMetadata, count: int) -> list[np.ndarray]:
    """Camera-like frames (1, 3, H, W) disjoint from the synthetic calibration frames."""
    return [frame[None] for frame in sample_batch(meta, count=count, seed=2000)]


def quantize_int8(model_path: str | Path, out: str | Path, calibration_source: str | Path | None = None, calibration_topic: str | None = None,
                  frames: int = 16, eval_frames: int = 4, resize_mode: str = "letterbox") -> QuantizationReport:
    """Write the INT8 Q/DQ copy of an exported FP32 model (metadata kept) and measure it against FP32.

    Calibration frames: an image folder or a bag (``calibration_source``), else the synthetic renderer.
    """
    from mtl_perception.fileio import atomic_write_bytes, file_sha256

    start = time.perf_counter()
    model_path = Path(model_path)
    meta = read_onnx_metadata(model_path)
    spec = CalibrationSpec(calibration_source, calibration_topic, frames, resize_mode)
    calibration = calibration_frames(meta, spec)
    quantized = quantize_qdq(model_path, calibration, file_sha256(model_path))
    atomic_write_bytes(out, quantized.model.SerializeToString())
    try:
        agreement, not_measured = compare_files(model_path, out, held_out_frames(meta, eval_frames)), ""
    except PrecisionError as exc:  # this onnxruntime runs the file wrong: the file is still what TensorRT builds
        agreement, not_measured = None, str(exc)
    return QuantizationReport(Path(out), len(calibration), agreement, time.perf_counter() - start,
                              len(quantized.unquantized), len(quantized.fp32_nodes), not_measured)
