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
``int8_sensitive_nodes`` names (the heads' last convolutions and the output tails). The Q/DQ graph is then
made mixed-precision FP16 exactly as the FP16 file (opset 19, where Q/DQ take FP16 scales and give FP16):
what runs between and around the INT8 layers, the heads' last convolutions included, is FP16, and only
the FP16 file's FP32 nodes (output tails, ``FP16_UNSAFE_OPS``) stay FP32; a strongly typed TensorRT build
of an FP32 Q/DQ file would run every layer without Q/DQ in FP32, slower than the FP16 engine. This is the
route of TensorRT's migration guide (ModelOpt's ONNX PTQ with ``high_precision_dtype="fp16"``: ONNX
Runtime's quantizer, then FP16 conversion); ModelOpt itself is not used: its ONNX extra pins onnx 1.21 and
onnxruntime-gpu on x86 Linux, which would replace this project's onnx and onnxruntime.
The result is checked against TensorRT's Q/DQ rules (``trt_ops.check_qdq_placement``) and ONNX's full
check before it is written; the same file is the ONNX Runtime CPU INT8 model (one INT8 model, not two),
run there with ``ORT_CPU_DISABLED_OPTIMIZERS`` off.

Files are cached by the source file's hash (and, for INT8, the calibration frames' hash) in ``precision/`` of
the cache root (``paths.cache_dir``); ``precision_model_file`` returns the FP32 file itself for ``fp32``.
"""
from __future__ import annotations

import contextlib
import hashlib
import io
import logging
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
import onnx

from mtl_perception.inference.metadata import INPUT_NAME, ModelMetadata
from mtl_perception.inference.model_file import PLAIN_KEY_PREFIX, ModelFileError, describe_onnx, load_onnx_file
from mtl_perception.paths import cache_dir

LOG = logging.getLogger(__name__)

PRECISIONS = ("fp32", "fp16", "int8")
PRECISION_KEY = PLAIN_KEY_PREFIX + "precision"  # fp16 | int8 on files written here; absent = fp32
SOURCE_KEY = PLAIN_KEY_PREFIX + "precision_source_sha256"  # hash of the FP32 file a precision file came from
RECIPE_KEY = PLAIN_KEY_PREFIX + "precision_recipe"
FP32_NODES_KEY = PLAIN_KEY_PREFIX + "precision_fp32_nodes"  # names of the nodes kept in FP32
RECIPES = {"fp16": "fp16-mixed/2 (onnxconverter-common float16, output tails and unsafe ops kept FP32, Resize scales float32)",
           "int8": "int8-qdq-fp16/2 (onnxruntime quantize_static QDQ, symmetric s8 per-channel weights, s8 per-tensor activations, "
                   "float biases, percentile 99.999; then fp16-mixed/2 at opset 19: FP16 scales)"}
QDQ_FP16_OPSET = 19  # the first opset whose QuantizeLinear / DequantizeLinear take FP16 scales and give FP16
# ONNX Runtime CPU optimizers that change what an FP16 Q/DQ file computes: WeightBiasQuantization turns a float
# bias into INT32 at the scale activation scale x weight scale, a product that is subnormal in FP16 (6e-3 x 1e-4),
# so the biases are lost (4 synthetic frames: depth AbsRel vs FP32 0.049 instead of 0.019). TensorRT keeps float biases.
ORT_CPU_DISABLED_OPTIMIZERS = ("WeightBiasQuantization",)
# ONNX Runtime releases that run the INT8 file (Q/DQ with FP16 scales) right: 1.30 on. Measured on the bundled
# model's INT8 file (the same file in each; outputs against FP32): 1.17.0, 1.20.1, 1.23.2, 1.27.0 and 1.29.0 give
# depth AbsRel 0.61 and 33 % label agreement; 1.30.0, 1.31.0 and 1.31.1 give 0.016 and 98 %. TensorRT builds the
# file itself and is not affected.
INT8_ONNXRUNTIME_MIN = (1, 30)

# Operands the ONNX spec types float32 whatever the data's type: onnxconverter-common with an empty op
# block list converts them to FP16 too, which ONNX Runtime refuses and only a full check catches.
FLOAT32_OPERANDS = {"Resize": (1, 2), "Upsample": (1,)}  # Resize roi and scales (T2 / float), Upsample scales (float)
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


def _restore_float32_operands(model: onnx.ModelProto, source: onnx.ModelProto) -> None:
    """Give the operands of ``FLOAT32_OPERANDS`` their float32 type back.

    A constant operand gets the source's float32 initializer again (its exact value, under a new name when
    other nodes read the FP16 one); any other FP16 operand gets a Cast to float32 in front of the node.
    """
    float16, float32 = onnx.TensorProto.FLOAT16, onnx.TensorProto.FLOAT
    originals = {init.name: init for init in source.graph.initializer}
    inits = {init.name: init for init in model.graph.initializer}
    types = {v.name: v.type.tensor_type.elem_type for v in list(model.graph.value_info) + list(model.graph.input) + list(model.graph.output)}
    types.update({name: init.data_type for name, init in inits.items()})
    for node in model.graph.node:
        if node.op_type == "Constant":
            types.update({out: attr.t.data_type for out in node.output for attr in node.attribute if attr.name == "value"})
    readers: dict[str, int] = {}
    for node in model.graph.node:
        for name in node.input:
            readers[name] = readers.get(name, 0) + 1
    casts = []
    for node in model.graph.node:
        for index in FLOAT32_OPERANDS.get(node.op_type, ()):
            if index >= len(node.input) or not node.input[index] or types.get(node.input[index]) != float16:
                continue
            name = node.input[index]
            if name in inits and name in originals:
                if readers[name] == 1:
                    inits[name].CopyFrom(originals[name])
                else:
                    copy = onnx.TensorProto()
                    copy.CopyFrom(originals[name])
                    copy.name = f"{name}_fp32"
                    if copy.name not in inits:
                        model.graph.initializer.append(copy)
                        inits[copy.name] = copy
                    node.input[index] = copy.name
            else:
                cast = f"{node.name or node.op_type}_operand{index}_fp32"
                casts.append((node, onnx.helper.make_node("Cast", [name], [cast], to=float32, name=cast)))
                node.input[index] = cast
    for node, cast in casts:  # each Cast right before the node that reads it (the graph stays sorted)
        nodes = list(model.graph.node)
        nodes.insert(nodes.index(node), cast)
        del model.graph.node[:]
        model.graph.node.extend(nodes)


def check_runnable(model: onnx.ModelProto) -> None:
    """PrecisionError unless ``model`` passes ONNX's full check (strict type and shape inference), which an
    operand of the wrong type fails where the plain check lets it through."""
    try:
        onnx.checker.check_model(model, full_check=True)
    except (onnx.checker.ValidationError, onnx.shape_inference.InferenceError) as exc:
        raise PrecisionError(f"the precision file is not a valid ONNX model: {str(exc).strip().splitlines()[0][:300]}") from None


def convert_fp16(source: onnx.ModelProto, source_sha256: str = "") -> tuple[onnx.ModelProto, dict[str, str]]:
    """The mixed-precision FP16 model of an FP32 model and the nodes it keeps FP32 (with reasons)."""
    from onnxconverter_common.float16 import convert_float_to_float16

    keep = fp16_keep_list(source)
    working = onnx.ModelProto()
    working.CopyFrom(source)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # "the float32 number ... will be truncated to 1e-07" per tiny weight
        converted = convert_float_to_float16(working, keep_io_types=True, op_block_list=[], node_block_list=sorted(keep))
    _restore_float32_operands(converted, source)
    _keep_io_float32(converted)
    _tag(converted, source, "fp16", source_sha256, keep)
    check_runnable(converted)
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


@dataclass
class QuantizedModel:
    """An INT8 Q/DQ model and the nodes it leaves out of INT8."""

    model: onnx.ModelProto
    fp32_nodes: dict[str, str]  # node -> why it runs in FP32 (the FP16 file's FP32 nodes)
    unquantized: dict[str, str]  # node -> why it has no Q/DQ (it runs FP16, or FP32 when in fp32_nodes)


def qdq_on_fp16(qdq: onnx.ModelProto) -> tuple[onnx.ModelProto, dict[str, str]]:
    """The mixed-precision FP16 form of an FP32 Q/DQ model (opset raised to ``QDQ_FP16_OPSET``) and its FP32 nodes."""
    opset = next((o.version for o in qdq.opset_import if o.domain in ("", "ai.onnx")), 0)
    upgraded = onnx.version_converter.convert_version(qdq, QDQ_FP16_OPSET) if opset < QDQ_FP16_OPSET else qdq
    return convert_fp16(upgraded)


def quantize_qdq(source_path: Path, frames: Sequence[np.ndarray], source_sha256: str = "") -> QuantizedModel:
    """The explicit Q/DQ INT8 model (on FP16, see the module docstring) of an FP32 model file, calibrated on ``frames``."""
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
        model, fp32_nodes = qdq_on_fp16(onnx.load(str(quantized)))
    problems = check_qdq_placement(model)
    if problems:
        raise PrecisionError("the INT8 file breaks TensorRT's Q/DQ rules: " + "; ".join(problems[:5]))
    _tag(model, source, "int8", source_sha256, fp32_nodes)
    return QuantizedModel(model, fp32_nodes, sensitive)


# -- cached files ------------------------------------------------------------------------------------

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
    cache_root: str | Path | None = None,
    calibration: CalibrationSpec | None = None,
) -> PrecisionFile:
    """Find or write the ``precision`` file of an FP32 model file (see ``precision_model_file``), in ``precision/``
    of the cache root (``paths.cache_dir``: ``cache_root``, else $MTL_PERCEPTION_CACHE, else ~/.cache/mtl_perception).

    A cached file is used only when its bytes match the content hash beside it (``fileio.ensure_cache_file``);
    a damaged one is reported once and made again. An INT8 file asked for without calibration frames cannot be
    made again: a damaged one is reported and removed, and the newest sound one made earlier is used.
    """
    from mtl_perception.fileio import ensure_cache_file, file_sha256, sound_cache_file

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
    folder = cache_dir("precision", cache_root)
    recipe = hashlib.sha256(RECIPES[precision].encode()).hexdigest()[:6]  # a new recipe never reuses an old file
    stem = f"{_safe_stem(model_path)}-{precision}-{source_sha[:12]}-{recipe}"
    start = time.perf_counter()
    made: dict[str, dict[str, str]] = {}  # the FP32 nodes of a file made now

    def made_file(path: Path, reused: bool, description: str = "") -> PrecisionFile:
        if reused:
            return PrecisionFile(path, precision, source_sha, cached=True, calibration=description)
        return PrecisionFile(path, precision, source_sha, made["fp32_nodes"], False, time.perf_counter() - start, description)

    if precision == "fp16":
        def build_fp16() -> bytes:
            model, made["fp32_nodes"] = convert_fp16(source, source_sha)
            return model.SerializeToString()

        path = folder / f"{stem}.onnx"
        return made_file(path, ensure_cache_file(path, build_fp16))
    if calibration is None:  # no frames given: the newest sound INT8 file made earlier for this model, if any
        existing = sorted(folder.glob(f"{stem}-*.onnx"), key=lambda p: p.stat().st_mtime)
        unmakeable = "removed: an INT8 file is made again only from calibration frames (`mtl-perception build-engine --calib-dir DIR`)"
        sound = [candidate for candidate in existing if sound_cache_file(candidate, unmakeable)]
        if sound:
            if len(sound) > 1:
                LOG.info("%d INT8 files for %s; using the newest, %s", len(sound), model_path.name, sound[-1].name)
            return PrecisionFile(sound[-1], precision, source_sha, cached=True)
        raise PrecisionError(
            f"an INT8 file of {model_path.name} needs calibration frames: give an image folder or a bag "
            "(--calib-dir), or make one first with `mtl-perception quantize`"
        )
    frames = calibration_frames(meta, calibration)

    def build_int8() -> bytes:
        quantized = quantize_qdq(model_path, frames, source_sha)
        made["fp32_nodes"] = quantized.fp32_nodes
        return quantized.model.SerializeToString()

    path = folder / f"{stem}-{frames_sha256(frames)[:12]}.onnx"
    return made_file(path, ensure_cache_file(path, build_int8), calibration.describe())


def precision_model_file(
    model_path: Path,
    precision: str,
    cache_root: str | Path | None = None,
    calibration: CalibrationSpec | None = None,
) -> Path:
    """The ONNX file to build or run for ``precision``.

    fp32: the model file itself. fp16: the mixed-precision file, made once per source file (cached by its
    SHA-256). int8: the explicit Q/DQ file, made once per source file and calibration frames; without
    ``calibration`` the newest INT8 file made earlier for this model, else PrecisionError. A file that
    already is of ``precision`` (a precision file passed again) is returned as it is.
    """
    return make_precision_file(model_path, precision, cache_root, calibration).path


def int8_runs_right_on(onnxruntime_version: str) -> bool:
    """Whether this ONNX Runtime release runs the INT8 file right (``INT8_ONNXRUNTIME_MIN``)."""
    return tuple(int(p) if p.isdigit() else 0 for p in onnxruntime_version.split(".")[:2]) >= INT8_ONNXRUNTIME_MIN


def check_int8_onnxruntime(version: str, what: str) -> None:
    """PrecisionError (one line) when ONNX Runtime ``version`` would run the INT8 file ``what`` wrong (``INT8_ONNXRUNTIME_MIN``)."""
    if not int8_runs_right_on(version):
        low = ".".join(map(str, INT8_ONNXRUNTIME_MIN))
        raise PrecisionError(f"onnxruntime {version} runs the INT8 file {what} wrong (its FP16-scale Q/DQ: outputs far from FP32); "
                             f"upgrade onnxruntime to {low} or newer, or use precision fp16 or fp32 on onnxruntime (TensorRT is not affected)")


def run_onnx_cpu(model_path: str | Path, frames: Sequence[np.ndarray], threads: int = 0) -> list[dict[str, np.ndarray]]:
    """Per-frame outputs {task: array} of a network file on ONNX Runtime's CPU provider."""
    import onnxruntime as ort

    if precision_of(model_path) == "int8":
        check_int8_onnxruntime(ort.__version__, str(model_path))

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.log_severity_level = 3
    session = ort.InferenceSession(str(model_path), options, providers=["CPUExecutionProvider"], disabled_optimizers=list(ORT_CPU_DISABLED_OPTIMIZERS))
    meta = describe_onnx(load_onnx_file(model_path), str(model_path))
    names = [meta.output_names[t] for t in meta.tasks]
    return [dict(zip(meta.tasks, session.run(names, {INPUT_NAME: np.ascontiguousarray(f)}))) for f in frames]


def compare_files(reference: str | Path, candidate: str | Path, frames: Sequence[np.ndarray], threads: int = 0) -> OutputAgreement:
    """Agreement of ``candidate``'s outputs with ``reference``'s on ``frames`` (ONNX Runtime CPU)."""
    if not frames:
        raise ModelFileError("no frames to compare on")
    return output_agreement(run_onnx_cpu(candidate, frames, threads), run_onnx_cpu(reference, frames, threads))
