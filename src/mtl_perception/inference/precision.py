"""Precision-specific ONNX files: mixed-precision FP16 and explicit Q/DQ INT8, made from the FP32 model file.

TensorRT 11 removed the builder's precision flags (``BuilderFlag.FP16/INT8``) and implicit INT8
calibration; TensorRT 10 deprecated them (10.12, 10.1). The portable path is a *strongly typed*
network whose precision is written in the ONNX file itself. This module writes those files; every
backend (native TensorRT, ONNX Runtime's TensorRT provider, ONNX Runtime on the CPU) reads the same file.

FP16 (``onnxconverter-common``'s ``float16`` converter, the one NVIDIA ModelOpt's AutoCast builds on):
every node runs in FP16 except the ones ``fp16_keep_list`` names, whose reasons are:
- the *output tails* (the nodes after each head's last convolution): depth's resize -> sigmoid -> scale
  -> exp, whose exp turns FP16's relative rounding (2^-11) of the log-depth into a depth error of the
  same relative size and overflows FP16 above exp(11); the normals' L2 normalisation, whose sum of
  squares overflows FP16 (65504) as soon as a component exceeds 147, and whose epsilon clamp (below
  FP16's smallest subnormal, 6e-8) would become a division by zero; the semantic logits' final resize
  (kept FP32 so the arg-max sees the same logits as FP32).
- operators that overflow or lose accuracy in FP16 wherever they are (``FP16_UNSAFE_OPS``).
Graph inputs and outputs stay float32, so the file is a drop-in replacement.

INT8 (ONNX Runtime's static quantizer, already a dependency, in QDQ format): symmetric signed INT8 with
zero point 0 for weights (per output channel) and activations (per tensor), the only form TensorRT's
explicit quantization accepts; percentile (99.999) calibration on frames from an image folder or a bag
(``calibration.py``), or the synthetic renderer; Q/DQ pairs on the inputs of weighted operations and of
residual additions (TensorRT's placement recommendation), and none on the sensitive layers
``int8_sensitive_nodes`` names (the heads' last convolutions and the output tails), which stay FP32.
The result is checked against TensorRT's Q/DQ rules (``trt_ops.check_qdq_placement``) before it is
written; the same file is the ONNX Runtime CPU INT8 model (one INT8 model, not two).

Files are cached by the source file's hash (and, for INT8, the calibration frames' hash) under the
project's cache directory; ``precision_model_file`` returns the FP32 file itself for ``fp32``.
"""
from __future__ import annotations

import contextlib
import hashlib
import io
import logging
import os
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
import onnx

from mtl_perception.inference.metadata import INPUT_NAME, ModelMetadata
from mtl_perception.inference.model_file import PLAIN_KEY_PREFIX, ModelFileError, describe_onnx, load_onnx_file

LOG = logging.getLogger(__name__)

PRECISIONS = ("fp32", "fp16", "int8")
PRECISION_KEY = PLAIN_KEY_PREFIX + "precision"  # fp16 | int8 on files written here; absent = fp32
SOURCE_KEY = PLAIN_KEY_PREFIX + "precision_source_sha256"  # hash of the FP32 file a precision file came from
RECIPE_KEY = PLAIN_KEY_PREFIX + "precision_recipe"
FP32_NODES_KEY = PLAIN_KEY_PREFIX + "precision_fp32_nodes"  # names of the nodes kept in FP32
RECIPES = {"fp16": "fp16-mixed/1 (onnxconverter-common float16, output tails and unsafe ops kept FP32)",
           "int8": "int8-qdq/1 (onnxruntime quantize_static QDQ, symmetric s8 per-channel weights, s8 per-tensor activations, float biases, percentile 99.999)"}
CACHE_ENV = "MTL_PERCEPTION_PRECISION_CACHE"
DEFAULT_CACHE_DIR = Path("~/.cache/mtl_perception/precision")

# Ops whose FP16 result overflows or loses accuracy wherever they appear (kept FP32 by the FP16 file).
FP16_UNSAFE_OPS = {
    "Exp": "exp overflows FP16 above 11 and turns the input's FP16 rounding into the same relative output error",
    "Log": "log of FP16 values near 0 underflows; its input rounding is an absolute output error",
    "Pow": "powers overflow FP16's range (65504)",
    "Sqrt": "its input is often a sum of squares, which overflows FP16",
    "Reciprocal": "1/x overflows FP16 for |x| < 1.5e-5",
    "ReduceL2": "the sum of squares overflows FP16 once a component exceeds 147",
    "ReduceSumSquare": "the sum of squares overflows FP16",
    "ReduceLogSumExp": "exp inside the reduction overflows FP16",
    "Softplus": "log(1 + exp(x)) overflows FP16 in exp",
}
# Ops that compute (end an output tail); everything between one of them and a graph output is the tail.
TAIL_STOP_OPS = {"Conv", "ConvTranspose", "Gemm", "MatMul"}
# Ops with Q/DQ on their inputs in the INT8 file: weighted operations and (residual) additions.
INT8_OP_TYPES = ["Conv", "ConvTranspose", "Gemm", "MatMul", "Add"]
CALIBRATION_SEED = 1000  # synthetic calibration frames: seeds from here (validation seeds start at 10,000,000)


class PrecisionError(ValueError):
    """A precision file cannot be made (unknown precision, no calibration frames, a converter failure)."""


@dataclass
class CalibrationSpec:
    """Where INT8 calibration frames come from and how they are fitted to the network input."""

    source: str | Path | None = None  # image folder or rosbag2; None = the synthetic renderer's frames
    topic: str | None = None  # image topic of a bag (default: its only one)
    frames: int = 64  # number of calibration frames
    resize_mode: str = "letterbox"  # as at inference (the node's default)

    def describe(self) -> str:
        where = f"{self.source}" + (f" topic {self.topic}" if self.topic else "") if self.source else "synthetic renderer"
        return f"{self.frames} frames from {where}, {self.resize_mode}"


@dataclass
class OutputAgreement:
    """How far a model's outputs are from a reference model's on the same frames."""

    depth_abs_rel: float | None = None  # mean |d - d_ref| / d_ref
    depth_max_abs: float | None = None  # metres
    label_agreement: float | None = None  # fraction of pixels with the same argmax class
    normals_mean_angle_deg: float | None = None  # mean angle between normals
    frames: int = 0

    def summary(self) -> str:
        parts = []
        if self.depth_abs_rel is not None:
            parts.append(f"depth AbsRel {self.depth_abs_rel:.4f} (max abs {self.depth_max_abs:.3f} m)")
        if self.label_agreement is not None:
            parts.append(f"semantic label agreement {100 * self.label_agreement:.2f}%")
        if self.normals_mean_angle_deg is not None:
            parts.append(f"normals mean angle {self.normals_mean_angle_deg:.2f} deg")
        return ", ".join(parts)


def output_agreement(outputs: Sequence[dict[str, np.ndarray]], references: Sequence[dict[str, np.ndarray]]) -> OutputAgreement:
    """Agreement of per-frame outputs (keyed by task) with reference outputs of the same frames."""
    if not outputs or len(outputs) != len(references):
        raise ValueError(f"need the same non-zero number of outputs and references, got {len(outputs)} and {len(references)}")
    result = OutputAgreement(frames=len(outputs))
    tasks = set(outputs[0]) & set(references[0])
    if "depth" in tasks:
        rel = [np.mean(np.abs(o["depth"] - r["depth"]) / np.maximum(r["depth"], 1e-6)) for o, r in zip(outputs, references)]
        result.depth_abs_rel = float(np.mean(rel))
        result.depth_max_abs = float(max(np.max(np.abs(o["depth"] - r["depth"])) for o, r in zip(outputs, references)))
    if "semantic" in tasks:
        same = [np.mean(o["semantic"].argmax(1) == r["semantic"].argmax(1)) for o, r in zip(outputs, references)]
        result.label_agreement = float(np.mean(same))
    if "normals" in tasks:
        cosines = [np.clip(np.sum(o["normals"] * r["normals"], axis=1), -1.0, 1.0) for o, r in zip(outputs, references)]
        result.normals_mean_angle_deg = float(np.degrees(np.mean([np.mean(np.arccos(c)) for c in cosines])))
    return result


# -- graph analysis --------------------------------------------------------------------------------

def _producers(model: onnx.ModelProto) -> dict[str, onnx.NodeProto]:
    return {out: node for node in model.graph.node for out in node.output if out}


def output_tail_nodes(model: onnx.ModelProto) -> dict[str, list[str]]:
    """Per graph output, the names of the nodes between the last computing node (Conv, Gemm...) and it.

    Walks back from each output through non-computing nodes; a Conv/Gemm/MatMul stops the walk (it is
    the head's last convolution, returned as the last element of the list).
    """
    producers = _producers(model)
    constants = {init.name for init in model.graph.initializer}
    tails: dict[str, list[str]] = {}
    for output in model.graph.output:
        seen: list[str] = []
        last_compute: list[str] = []
        stack = [output.name]
        visited: set[str] = set()
        while stack:
            tensor = stack.pop()
            node = producers.get(tensor)
            if node is None or tensor in constants or node.name in visited:
                continue
            visited.add(node.name)
            if node.op_type in TAIL_STOP_OPS:
                last_compute.append(node.name)
                continue
            if node.op_type == "Constant":
                continue
            seen.append(node.name)
            stack.extend(i for i in node.input if i)
        tails[output.name] = seen + last_compute
    return tails


def fp16_keep_list(model: onnx.ModelProto) -> dict[str, str]:
    """Node name -> why it stays FP32 in the FP16 file."""
    keep: dict[str, str] = {}
    compute = {n.name for n in model.graph.node if n.op_type in TAIL_STOP_OPS}
    for output, nodes in output_tail_nodes(model).items():
        for name in nodes:
            if name not in compute:
                keep[name] = f"output tail of '{output}' (after its head's last convolution)"
    for node in model.graph.node:
        if node.op_type in FP16_UNSAFE_OPS:
            keep.setdefault(node.name, FP16_UNSAFE_OPS[node.op_type])
    return keep


def int8_sensitive_nodes(model: onnx.ModelProto) -> dict[str, str]:
    """Node name -> why it gets no Q/DQ in the INT8 file (it runs in FP32)."""
    sensitive: dict[str, str] = {}
    compute = {n.name for n in model.graph.node if n.op_type in TAIL_STOP_OPS}
    for output, nodes in output_tail_nodes(model).items():
        for name in nodes:
            if name in compute:
                sensitive[name] = f"last convolution of the '{output}' head: its output is the prediction itself"
            else:
                sensitive[name] = f"output tail of '{output}' (exp / sigmoid / normalisation / final resize)"
    return sensitive


def precision_of(model: onnx.ModelProto | str | Path) -> str:
    """The precision a file was written in: its PRECISION_KEY tag, fp32 when it has none."""
    proto = model if isinstance(model, onnx.ModelProto) else load_onnx_file(model)
    props = {p.key: p.value for p in proto.metadata_props}
    return props.get(PRECISION_KEY, "fp32")


def _tag(model: onnx.ModelProto, source: onnx.ModelProto, precision: str, source_sha256: str, fp32_nodes: Iterable[str]) -> None:
    """Copy the source's metadata props and add the precision tags."""
    added = {PRECISION_KEY: precision, SOURCE_KEY: source_sha256, RECIPE_KEY: RECIPES[precision], FP32_NODES_KEY: ",".join(sorted(fp32_nodes))}
    del model.metadata_props[:]
    for prop in source.metadata_props:
        if prop.key not in added:
            model.metadata_props.add(key=prop.key, value=prop.value)
    for key, value in added.items():
        model.metadata_props.add(key=key, value=value)


# -- FP16 ------------------------------------------------------------------------------------------

def _keep_io_float32(model: onnx.ModelProto) -> None:
    """Make every float graph output float32.

    ``convert_float_to_float16(keep_io_types=True)`` leaves an output FP16 when the node producing it is
    blocked (kept FP32): it casts the FP32 result down and types the output FP16. Such a final Cast
    to FP16 becomes a Cast to FP32 (an identity); any other FP16 output gets a Cast to FP32.
    """
    float16, float32 = onnx.TensorProto.FLOAT16, onnx.TensorProto.FLOAT
    producers = _producers(model)
    for output in model.graph.output:
        if output.type.tensor_type.elem_type != float16:
            continue
        node = producers.get(output.name)
        if node is not None and node.op_type == "Cast":
            for attr in node.attribute:
                if attr.name == "to":
                    attr.i = float32
        else:
            inner = output.name + "_fp16"
            for n in model.graph.node:
                n.output[:] = [inner if o == output.name else o for o in n.output]
                n.input[:] = [inner if i == output.name else i for i in n.input]
            model.graph.node.append(onnx.helper.make_node("Cast", [inner], [output.name], to=float32, name=f"{output.name}_to_fp32"))
        output.type.tensor_type.elem_type = float32


def convert_fp16(source: onnx.ModelProto, source_sha256: str = "") -> tuple[onnx.ModelProto, dict[str, str]]:
    """The mixed-precision FP16 model of an FP32 model and the nodes it keeps FP32 (with reasons)."""
    from onnxconverter_common.float16 import convert_float_to_float16

    keep = fp16_keep_list(source)
    working = onnx.ModelProto()
    working.CopyFrom(source)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # "the float32 number ... will be truncated to 1e-07" per tiny weight
        converted = convert_float_to_float16(working, keep_io_types=True, op_block_list=[], node_block_list=sorted(keep))
    _keep_io_float32(converted)
    _tag(converted, source, "fp16", source_sha256, keep)
    onnx.checker.check_model(converted)
    return converted, keep


# -- INT8 ------------------------------------------------------------------------------------------

def calibration_frames(meta: ModelMetadata, spec: CalibrationSpec) -> list[np.ndarray]:
    """Preprocessed (1, 3, H, W) float32 calibration frames; errors of the source surface here."""
    from mtl_perception.inference.calibration import CalibrationDataError, calibration_batches, iter_calibration_images
    from mtl_perception.inference.processing import preprocess

    if spec.frames < 1:
        raise PrecisionError(f"INT8 calibration needs at least 1 frame, got {spec.frames}")
    if spec.source is None:
        from mtl_perception.inference.sample_images import sample_image

        height = round(meta.input_height * 1.5)
        width = max(round(height * 4 / 3), 8)  # a 4:3 camera frame larger than the network input, as cameras give
        return [preprocess(sample_image(height, width, CALIBRATION_SEED + i), meta, spec.resize_mode)[0] for i in range(spec.frames)]
    frames = list(calibration_batches(iter_calibration_images(spec.source, spec.topic, spec.frames), meta, 1, spec.resize_mode))
    if not frames:
        raise CalibrationDataError(f"no calibration frames from {spec.source}")
    if len(frames) < spec.frames:
        LOG.warning("INT8 calibration: %s gave %d frames, fewer than the %d asked for", spec.source, len(frames), spec.frames)
    return frames


def frames_sha256(frames: Sequence[np.ndarray]) -> str:
    digest = hashlib.sha256()
    for frame in frames:
        digest.update(np.ascontiguousarray(frame, dtype=np.float32).tobytes())
    return digest.hexdigest()


def quantize_qdq(source_path: Path, frames: Sequence[np.ndarray], source_sha256: str = "") -> tuple[onnx.ModelProto, dict[str, str]]:
    """The explicit Q/DQ INT8 model of an FP32 model file, calibrated on ``frames``; and its FP32 nodes."""
    import tempfile

    from onnxruntime.quantization import CalibrationDataReader, CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    from mtl_perception.inference.trt_ops import check_qdq_placement

    source = load_onnx_file(source_path)

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self._feeds = iter({INPUT_NAME: np.ascontiguousarray(f, dtype=np.float32)} for f in frames)

        def get_next(self) -> dict[str, np.ndarray] | None:
            return next(self._feeds, None)

    with tempfile.TemporaryDirectory(prefix="mtl_int8_") as tmp:
        prepared, quantized = Path(tmp) / "prepared.onnx", Path(tmp) / "int8.onnx"
        quant_pre_process(str(source_path), str(prepared), skip_symbolic_shape=True)
        sensitive = int8_sensitive_nodes(onnx.load(str(prepared)))  # names after pre-processing
        with contextlib.redirect_stdout(io.StringIO()):  # the calibrator prints its progress
            quantize_static(
                str(prepared), str(quantized), Reader(), quant_format=QuantFormat.QDQ, per_channel=True,
                activation_type=QuantType.QInt8, weight_type=QuantType.QInt8, calibrate_method=CalibrationMethod.Percentile,
                op_types_to_quantize=INT8_OP_TYPES, nodes_to_exclude=sorted(sensitive),
                extra_options={"ActivationSymmetric": True, "WeightSymmetric": True, "CalibPercentile": 99.999,
                               "QuantizeBias": False},  # TensorRT takes no INT32 biases: they stay float
            )
        model = onnx.load(str(quantized))
    problems = check_qdq_placement(model)
    if problems:
        raise PrecisionError("the INT8 file breaks TensorRT's Q/DQ rules: " + "; ".join(problems[:5]))
    _tag(model, source, "int8", source_sha256, sensitive)
    return model, sensitive


# -- cached files ------------------------------------------------------------------------------------

def resolve_precision_cache(cache_dir: str | Path | None = None) -> Path:
    """Where precision files live: the argument, else $MTL_PERCEPTION_PRECISION_CACHE, else ~/.cache/mtl_perception/precision."""
    return Path(cache_dir or os.environ.get(CACHE_ENV) or DEFAULT_CACHE_DIR).expanduser()


def _safe_stem(path: Path) -> str:
    return "".join(c if c.isalnum() or c in "-_" else "_" for c in path.stem)[:40] or "model"


@dataclass
class PrecisionFile:
    """A precision file and how it was made."""

    path: Path
    precision: str
    source_sha256: str
    fp32_nodes: dict[str, str] = field(default_factory=dict)
    cached: bool = False
    seconds: float = 0.0
    calibration: str = ""


def make_precision_file(
    model_path: str | Path,
    precision: str,
    cache_dir: str | Path | None = None,
    calibration: CalibrationSpec | None = None,
) -> PrecisionFile:
    """Find or write the ``precision`` file of an FP32 model file (see ``precision_model_file``)."""
    from mtl_perception.fileio import atomic_write_bytes, file_sha256

    if precision not in PRECISIONS:
        raise PrecisionError(f"unknown precision '{precision}'; valid: {list(PRECISIONS)}")
    model_path = Path(model_path)
    source = load_onnx_file(model_path)
    meta = describe_onnx(source, str(model_path))
    own = precision_of(source)
    source_sha = file_sha256(model_path)
    if own == precision:
        return PrecisionFile(model_path, precision, source_sha, cached=True)  # already this precision: used as it is
    if own != "fp32":
        raise PrecisionError(f"{model_path} is already a {own} file; make the {precision} file from the FP32 model file")
    if precision == "fp32":
        return PrecisionFile(model_path, "fp32", source_sha, cached=True)
    folder = resolve_precision_cache(cache_dir)
    stem = f"{_safe_stem(model_path)}-{precision}-{source_sha[:12]}"
    start = time.perf_counter()
    if precision == "fp16":
        path = folder / f"{stem}.onnx"
        if path.is_file():
            return PrecisionFile(path, precision, source_sha, cached=True)
        model, keep = convert_fp16(source, source_sha)
        atomic_write_bytes(path, model.SerializeToString())
        return PrecisionFile(path, precision, source_sha, keep, False, time.perf_counter() - start)
    if calibration is None:  # no frames given: an INT8 file made earlier for this model, if any
        existing = sorted(folder.glob(f"{stem}-*.onnx"), key=lambda p: p.stat().st_mtime)
        if existing:
            if len(existing) > 1:
                LOG.info("%d INT8 files for %s; using the newest, %s", len(existing), model_path.name, existing[-1].name)
            return PrecisionFile(existing[-1], precision, source_sha, cached=True)
        raise PrecisionError(
            f"an INT8 file of {model_path.name} needs calibration frames: give an image folder or a bag "
            "(--calib-dir), or make one first with `mtl-perception quantize`"
        )
    frames = calibration_frames(meta, calibration)
    path = folder / f"{stem}-{frames_sha256(frames)[:12]}.onnx"
    if path.is_file():
        return PrecisionFile(path, precision, source_sha, cached=True, calibration=calibration.describe())
    model, sensitive = quantize_qdq(model_path, frames, source_sha)
    atomic_write_bytes(path, model.SerializeToString())
    return PrecisionFile(path, precision, source_sha, sensitive, False, time.perf_counter() - start, calibration.describe())


def precision_model_file(
    model_path: Path,
    precision: str,
    cache_dir: Path | None = None,
    calibration: CalibrationSpec | None = None,
) -> Path:
    """The ONNX file to build or run for ``precision``.

    fp32: the model file itself. fp16: the mixed-precision file, made once per source file (cached by its
    SHA-256). int8: the explicit Q/DQ file, made once per source file and calibration frames; without
    ``calibration`` the newest INT8 file made earlier for this model, else PrecisionError. A file that
    already is of ``precision`` (a precision file passed again) is returned as it is.
    """
    return make_precision_file(model_path, precision, cache_dir, calibration).path


def run_onnx_cpu(model_path: str | Path, frames: Sequence[np.ndarray], threads: int = 0) -> list[dict[str, np.ndarray]]:
    """Per-frame outputs {task: array} of a network file on ONNX Runtime's CPU provider."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.log_severity_level = 3
    session = ort.InferenceSession(str(model_path), options, providers=["CPUExecutionProvider"])
    meta = describe_onnx(load_onnx_file(model_path), str(model_path))
    names = [meta.output_names[t] for t in meta.tasks]
    return [dict(zip(meta.tasks, session.run(names, {INPUT_NAME: np.ascontiguousarray(f)}))) for f in frames]


def compare_files(reference: str | Path, candidate: str | Path, frames: Sequence[np.ndarray], threads: int = 0) -> OutputAgreement:
    """Agreement of ``candidate``'s outputs with ``reference``'s on ``frames`` (ONNX Runtime CPU)."""
    if not frames:
        raise ModelFileError("no frames to compare on")
    return output_agreement(run_onnx_cpu(candidate, frames, threads), run_onnx_cpu(reference, frames, threads))
