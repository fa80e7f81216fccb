"""INT8 quantisation of an exported model: the explicit Q/DQ file TensorRT and ONNX Runtime both run.

One INT8 model, not two: ``quantize_int8`` writes the symmetric signed INT8 Q/DQ file of
``precision.quantize_qdq`` (zero points 0, per-channel weights, per-tensor activations, sensitive layers
kept FP32) that TensorRT's explicit quantization requires, and that ONNX Runtime runs on the CPU. On
x86 CPUs ONNX Runtime's fast INT8 kernels take *unsigned* activations, so this file is not faster than
FP32 there (``benchmarks/backends.py`` prints the ratio); its purpose is the GPU/Jetson engine, whose
accuracy it lets the CPU measure. The file keeps the model metadata, so every backend and tool reads
it like the original.
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
from mtl_perception.inference.precision import CalibrationSpec, calibration_frames, compare_files, quantize_qdq
from mtl_perception.inference.sample_images import sample_batch


@dataclass
class QuantizationReport:
    path: Path
    calibration_frames: int
    agreement: OutputAgreement  # INT8 vs FP32 ONNX Runtime on held-out sample frames
    seconds: float
    fp32_nodes: int = 0  # nodes left without Q/DQ (sensitive layers)

    def summary(self) -> str:
        return (f"quantised {self.path} (explicit Q/DQ, symmetric INT8, {self.calibration_frames} calibration frames, "
                f"{self.fp32_nodes} sensitive nodes kept FP32) in {self.seconds:.1f} s; vs FP32: {self.agreement.summary()}")


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
    model, sensitive = quantize_qdq(model_path, calibration, file_sha256(model_path))
    atomic_write_bytes(out, model.SerializeToString())
    agreement = compare_files(model_path, out, held_out_frames(meta, eval_frames))
    return QuantizationReport(Path(out), len(calibration), agreement, time.perf_counter() - start, len(sensitive))
