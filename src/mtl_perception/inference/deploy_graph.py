"""The deploy graph: camera pixels in, ready-to-publish buffers out, as ONE ONNX graph around the network.

Composed from the self-describing model file alone (no checkpoint, no torch) with ONNX's own tooling:
the pre- and post-processing graphs are written in the ONNX text format (``onnx.parser``) for the
camera size and output options at hand, and joined to the network with ``onnx.compose``; the network
heads no requested output needs are cut away (``onnx.utils.Extractor``). Every backend that runs an
ONNX file runs it: ONNX Runtime (CPU, CUDA, TensorRT execution provider) and native TensorRT.

A graph serves a batch of B frames of one camera layout (cameras of the same size and encoding):
every per-frame input and output below has B as its first dimension; the network's batch is set to B
(``rebatch_network``). One graph per batch size keeps every shape static, which TensorRT builds best
and ONNX Runtime plans memory for once.

Inputs (the runtime ones change without a rebuild):
- ``camera_image`` uint8 (B, H, W, C): the cameras' pixels as they arrive (C = 1 mono, 3 rgb/bgr, 4 rgba/bgra);
- ``depth_scale`` float32 (B,): each camera's focal length over the training camera's (1 = no rescale);
- ``depth_range`` float32 (2,): metres outside [min, max] have no estimate;
- ``out_of_range`` float32 (2,): what ``depth`` holds below min and above max: NaN, NaN (REP-118, no
  estimate) or -Inf, +Inf (REP-117: too near, too far); NaN where the network gave no finite depth;
- ``intrinsics`` float32 (B, 5): fx, fy, cx, cy, skew at the output resolution (point cloud only);
- ``palette_bgr`` uint8 (K, 3): the class colours, BGR (semantic colour, overlay, point colours);
- ``overlay_alpha`` float32 (1,): weight of the class colours in the overlay.

Outputs (only those asked for are in the graph), per frame at the output size (Ho, Wo), each in its
message's layout:
``depth`` float32 (Ho, Wo) metres; ``labels`` uint8 (Ho, Wo); ``confidence`` float32 (Ho, Wo) softmax
probability of the label; ``normals`` float32 (Ho, Wo, 3) unit vectors; ``depth_color``,
``semantic_color``, ``semantic_overlay`` uint8 (Ho, Wo, 3) BGR; ``points_xyz`` float32 (Hs, Ws, 3) and
``points_extra`` uint8 (Hs, Ws, 8) on the strided grid: the bytes 12..19 of each PointCloud2 point
(B, G, R, 0 = the packed ``rgb`` field, then the label, then padding), so a point record is the two
side by side.

Resizing is bilinear with half-pixel centres (what ``cv2.resize`` INTER_LINEAR does) on float data:
the image to the network's content size (letterbox padding = normalised zeros), and every output map
from the content region back to the output size. Labels are the argmax of the resized logits.

Element types follow TensorRT's ONNX parser (``trt_ops.check_tensorrt_compat`` checks them): uint8 only
at the graph's inputs and outputs, each uint8 input read by one Cast to float at once, each uint8
output a Cast from float; labels, colour tables and point bytes are float32 until that last Cast
(argmax INT64 -> float -> uint8), so no Gather, Concat or constant ever holds uint8.
"""
from __future__ import annotations

import copy
import hashlib
import json
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import onnx
import onnx.compose
import onnx.parser
import onnx.utils
import onnx.version_converter
from onnx import numpy_helper

from mtl_perception.colorize import depth_lut_bgr
from mtl_perception.fileio import ensure_cache_file
from mtl_perception.inference.metadata import INPUT_NAME, ModelMetadata
from mtl_perception.inference.model_file import load_onnx_file, metadata_from_props
from mtl_perception.inference.processing import Transform, make_transform

OPSET = 17
DEPLOY_KEY = "mtl_perception.deploy"  # metadata prop: the DeployOptions the graph was built for (JSON)
NET_PREFIX = "net_"
IMAGE_INPUT = "camera_image"
RUNTIME_INPUTS = ("depth_scale", "depth_range", "out_of_range", "intrinsics", "palette_bgr", "overlay_alpha")
# requested output -> graph outputs; and which network task each needs
GRAPH_OUTPUTS: dict[str, tuple[str, ...]] = {
    "depth": ("depth",),
    "labels": ("labels",),
    "confidence": ("confidence",),
    "normals": ("normals",),
    "depth_color": ("depth_color",),
    "semantic_color": ("semantic_color",),
    "semantic_overlay": ("semantic_overlay",),
    "points": ("points_xyz", "points_extra"),
}
OUTPUT_TASKS: dict[str, tuple[str, ...]] = {
    "depth": ("depth",), "depth_color": ("depth",), "labels": ("semantic",), "confidence": ("semantic",),
    "semantic_color": ("semantic",), "semantic_overlay": ("semantic",), "normals": ("normals",), "points": ("depth",),
}
CAMERA_ORDERS = ("rgb", "bgr", "mono")
NO_LABEL = 255
MAX_BATCH = 16


class DeployGraphError(ValueError):
    """The deploy graph cannot be built for these options; the message says what to change."""


@dataclass(frozen=True)
class DeployOptions:
    """What one deploy graph is built for: the camera image layout and the outputs wanted."""

    height: int
    width: int
    encoding: str = "rgb8"  # rgb8 | bgr8 | rgba8 | bgra8 | mono8 (others are converted before the graph)
    resize_mode: str = "letterbox"  # letterbox | stretch
    out_size: str = "input"  # input (camera resolution) | model (network resolution, padding removed)
    outputs: tuple[str, ...] = ("depth", "labels", "normals")  # keys of GRAPH_OUTPUTS
    points_stride: int = 4
    batch: int = 1  # frames of this layout in one call (cameras of the same size): one graph per batch size

    def __post_init__(self) -> None:
        object.__setattr__(self, "outputs", tuple(sorted(set(self.outputs))))
        unknown = [o for o in self.outputs if o not in GRAPH_OUTPUTS]
        if unknown:
            raise DeployGraphError(f"unknown deploy graph output(s) {unknown}; valid: {sorted(GRAPH_OUTPUTS)}")
        if not self.outputs:
            raise DeployGraphError("a deploy graph needs at least one output")
        if self.height <= 0 or self.width <= 0:
            raise DeployGraphError(f"camera size {self.height}x{self.width} is not positive")
        if self.encoding not in ENCODING_LAYOUT:
            raise DeployGraphError(f"the deploy graph takes {sorted(ENCODING_LAYOUT)} images, not '{self.encoding}'")
        if self.resize_mode not in ("letterbox", "stretch"):
            raise DeployGraphError(f"unknown resize mode '{self.resize_mode}'; valid: letterbox, stretch")
        if self.out_size not in ("input", "model"):
            raise DeployGraphError(f"unknown output size '{self.out_size}'; valid: input, model")
        if self.points_stride < 1:
            raise DeployGraphError(f"points stride must be >= 1, got {self.points_stride}")
        if not 1 <= self.batch <= MAX_BATCH:
            raise DeployGraphError(f"batch must lie in [1, {MAX_BATCH}], got {self.batch}")

    @property
    def channels(self) -> int:
        return ENCODING_LAYOUT[self.encoding][0]

    @property
    def order(self) -> str:
        return ENCODING_LAYOUT[self.encoding][1]

    def key(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)


# encoding -> (channels, channel order) of the images the graph takes as they are
ENCODING_LAYOUT: dict[str, tuple[int, str]] = {
    "rgb8": (3, "rgb"), "bgr8": (3, "bgr"), "rgba8": (4, "rgb"), "bgra8": (4, "bgr"), "mono8": (1, "mono"), "8UC1": (1, "mono"),
    "8UC3": (3, "rgb"),
}


@dataclass(frozen=True)
class DeployLayout:
    """Sizes the graph is built for (derived from the options and the model metadata)."""

    transform: Transform
    out_height: int
    out_width: int
    classes: int


def layout_for(meta: ModelMetadata, options: DeployOptions) -> DeployLayout:
    """The transform and output size of a camera under these options."""
    transform = make_transform(options.height, options.width, meta, options.resize_mode)  # type: ignore[arg-type]
    if options.out_size == "input":
        out_h, out_w = options.height, options.width
    else:
        out_h, out_w = transform.content_height, transform.content_width
    return DeployLayout(transform, out_h, out_w, len(meta.class_names))


def _floats(values: list[float] | np.ndarray) -> str:
    return ", ".join(repr(float(v)) for v in np.asarray(values, dtype=np.float32).tolist())


def _header(ir_version: int) -> str:
    return f'<ir_version: {ir_version}, opset_import: ["" : {OPSET}]>'


def _model_channels(options: DeployOptions, meta: ModelMetadata) -> list[int]:
    """Which camera channel feeds each of the network's three input channels (its order: rgb or bgr)."""
    if meta.channel_order not in ("rgb", "bgr"):
        raise DeployGraphError(f"model metadata names channel order '{meta.channel_order}'; supported: rgb, bgr")
    rgb = {"rgb": [0, 1, 2], "bgr": [2, 1, 0], "mono": [0, 0, 0]}[options.order]
    return rgb if meta.channel_order == "rgb" else rgb[::-1]


def view_to_bgr(options: DeployOptions) -> np.ndarray:
    """(C, 3) 0/1 matrix taking a camera pixel (its C channels in its order) to B, G, R: ``view @ matrix``.

    A MatMul with it reorders, drops alpha or repeats grey in one pass, and each output is one input times
    1 (or times the overlay weight) plus exact zeros, so the values are those of a Gather of the channels.
    """
    matrix = np.zeros((options.channels, 3), np.float32)
    for out, source in enumerate({"rgb": [2, 1, 0], "bgr": [0, 1, 2], "mono": [0, 0, 0]}[options.order]):
        matrix[source, out] = 1.0
    return matrix


def pre_graph_text(meta: ModelMetadata, options: DeployOptions, layout: DeployLayout, ir_version: int) -> str:
    """camera_image uint8 (B, H, W, C) -> pre_net_input (the network input) and pre_view (float (B, Ho, Wo, C), the
    camera's own channels and order: the post graph maps them to BGR where it needs the image).

    The only full-resolution passes are the Cast and the Resize down to the network size (all C channels, channels
    last); picking, reordering or repeating channels, the transpose and the normalisation run on the small image.
    """
    t = layout.transform
    b, h, w, c = options.batch, options.height, options.width, options.channels
    lines = ["pre_nhwc = Cast <to = 1> (camera_image)"]
    content = "pre_nhwc"
    if (t.content_height, t.content_width) != (h, w):
        lines.append(f"pre_content_size = Constant <value_ints = [{b}, {t.content_height}, {t.content_width}, {c}]> ()")
        lines.append(f'pre_content = Resize <mode = "linear", coordinate_transformation_mode = "half_pixel"> (pre_nhwc, , , pre_content_size)')
        content = "pre_content"
    lines.append(f"pre_planes = Transpose <perm = [0, 3, 1, 2]> ({content})")
    planes = "pre_planes"
    channels = _model_channels(options, meta)
    if channels != list(range(c)):  # bgr / rgba / bgra / mono cameras: a Gather of whole small planes
        lines += [f"pre_channels = Constant <value_ints = [{', '.join(map(str, channels))}]> ()",
                  "pre_model_order = Gather <axis = 1> (pre_planes, pre_channels)"]
        planes = "pre_model_order"
    std = np.asarray(meta.std, dtype=np.float64)
    mean = np.asarray(meta.mean, dtype=np.float64)
    # per-channel (1, 3, 1, 1) constants over whole planes: ONNX Runtime's fast broadcast
    lines += [
        f"pre_scale = Constant <value = float[1, 3, 1, 1] {{{_floats(1.0 / (255.0 * std))}}}> ()",
        f"pre_shift = Constant <value = float[1, 3, 1, 1] {{{_floats(mean / std)}}}> ()",
        f"pre_scaled = Mul ({planes}, pre_scale)",
        "pre_normalised = Sub (pre_scaled, pre_shift)",
    ]
    if (t.pad_top, t.pad_left, t.pad_bottom, t.pad_right) != (0, 0, 0, 0):
        # a tensor-valued constant: onnx 1.17 (the floor) gives a `value_ints` Constant no shape Pad can read
        lines.append(f"pre_pads = Constant <value = int64[8] {{0, 0, {t.pad_top}, {t.pad_left}, 0, 0, {t.pad_bottom}, {t.pad_right}}}> ()")
        lines.append("pre_net_input = Pad (pre_normalised, pre_pads)")
    else:
        lines.append("pre_net_input = Identity (pre_normalised)")
    view = "pre_nhwc" if options.out_size == "input" else content
    lines.append(f"pre_view = Identity ({view})")
    body = "\n  ".join(lines)
    return (f"{_header(ir_version)}\npre (uint8[{b}, {h}, {w}, {c}] camera_image) => "
            f"(float[{b}, 3, {meta.input_height}, {meta.input_width}] pre_net_input, float[{b}, {layout.out_height}, {layout.out_width}, {c}] pre_view) {{\n  {body}\n}}\n")


def _to_output_size(lines: list[str], name: str, source: str, channels: int, layout: DeployLayout, batch: int, channels_last: bool = False) -> str:
    """Lines taking a network output (B, C, h, w) to (B, C, Ho, Wo), or to (B, Ho, Wo, C) with ``channels_last``: crop to
    the content, resize.

    Measured per output (``benchmarks/deploy_profile.py``): ONNX Runtime resizes depth and normals fastest as planes
    (normals are transposed after resizing), the class logits fastest channels-last (transposed at the network size),
    where the ArgMax over each pixel's classes reads one contiguous row.
    """
    t = layout.transform
    x = source
    axes = (2, 3)
    if channels_last:
        lines.append(f"{name}_nhwc = Transpose <perm = [0, 2, 3, 1]> ({x})")
        x, axes = f"{name}_nhwc", (1, 2)
    if (t.content_height, t.content_width) != (t.model_height, t.model_width):
        lines += [
            f"{name}_starts = Constant <value_ints = [{t.pad_top}, {t.pad_left}]> ()",
            f"{name}_ends = Constant <value_ints = [{t.pad_top + t.content_height}, {t.pad_left + t.content_width}]> ()",
            f"{name}_axes = Constant <value_ints = [{axes[0]}, {axes[1]}]> ()",
            f"{name}_crop = Slice ({x}, {name}_starts, {name}_ends, {name}_axes)",
        ]
        x = f"{name}_crop"
    if (layout.out_height, layout.out_width) != (t.content_height, t.content_width):
        size = [batch, layout.out_height, layout.out_width, channels] if channels_last else [batch, channels, layout.out_height, layout.out_width]
        lines.append(f"{name}_size = Constant <value_ints = [{', '.join(map(str, size))}]> ()")
        lines.append(f'{name}_resized = Resize <mode = "linear", coordinate_transformation_mode = "half_pixel"> ({x}, , , {name}_size)')
        x = f"{name}_resized"
    return x


def _depth_lines(wanted: set[str], layout: DeployLayout, batch: int, h: int, w: int) -> tuple[list[str], list[str], list[str]]:
    """(inputs, lines, outputs) of depth, its colour image, and ``post_d``/``post_lo``/``post_hi`` for the points.

    ``post_d`` is the rescaled depth with NaN where it is 0 and the range starts at 0 (the one in-range depth that is
    not positive: the range never starts below 0); then too near = d < min, too far = d > max, and NaN compares false
    to both, so two Wheres give the output: the same values as testing range, sign and NaN one by one.
    """
    ho, wo = layout.out_height, layout.out_width
    inputs = [f"float[{batch}, 1, {h}, {w}] net_depth", f"float[{batch}] depth_scale", "float[2] depth_range"]
    lines: list[str] = []
    outputs: list[str] = []
    d = _to_output_size(lines, "post_depth", "net_depth", 1, layout, batch)
    lines += [
        f"post_plane = Constant <value_ints = [{batch}, {ho}, {wo}]> ()",
        f"post_depth_raw = Reshape ({d}, post_plane)",
        f"post_scale_shape = Constant <value_ints = [{batch}, 1, 1]> ()",
        "post_scale = Reshape (depth_scale, post_scale_shape)",
        "post_depth_scaled = Mul (post_depth_raw, post_scale)",
        "post_i0 = Constant <value_int = 0> ()",
        "post_i1 = Constant <value_int = 1> ()",
        "post_lo = Gather <axis = 0> (depth_range, post_i0)",
        "post_hi = Gather <axis = 0> (depth_range, post_i1)",
        "post_zero = Constant <value_float = 0.0> ()",
        "post_nan = Div (post_zero, post_zero)",
        "post_lo_is_zero = Equal (post_lo, post_zero)",
        "post_zero_value = Where (post_lo_is_zero, post_zero, post_nan)",  # 0 when the range starts at 0, else nothing
        "post_is_zero = Equal (post_depth_scaled, post_zero_value)",
        "post_d = Where (post_is_zero, post_nan, post_depth_scaled)",
    ]
    if wanted & {"depth", "depth_color"}:
        lines += ["post_too_near = Less (post_d, post_lo)", "post_too_far = Greater (post_d, post_hi)"]
    if "depth" in wanted:
        inputs.append("float[2] out_of_range")
        lines += [
            "post_below = Gather <axis = 0> (out_of_range, post_i0)",
            "post_above = Gather <axis = 0> (out_of_range, post_i1)",
            "post_far_fill = Where (post_too_far, post_above, post_d)",
            "depth = Where (post_too_near, post_below, post_far_fill)",
        ]
        outputs.append(f"float[{batch}, {ho}, {wo}] depth")
    if "depth_color" in wanted:
        lut = _floats(depth_lut_bgr().reshape(-1))
        lines += [
            "post_outside = Or (post_too_near, post_too_far)",
            "post_depth_nan = Where (post_outside, post_nan, post_d)",
            "post_span = Sub (post_hi, post_lo)",
            "post_254 = Constant <value_float = 254.0> ()",
            "post_step = Div (post_254, post_span)",
            "post_offset = Sub (post_depth_nan, post_lo)",
            "post_unit = Mul (post_offset, post_step)",
            "post_clipped = Clip (post_unit, post_zero, post_254)",
            "post_half = Constant <value_float = 1.5> ()",
            "post_index_f = Add (post_clipped, post_half)",
            "post_no_estimate = IsNaN (post_depth_nan)",
            "post_index_v = Where (post_no_estimate, post_zero, post_index_f)",  # entry 0: no estimate
            "post_index = Cast <to = 6> (post_index_v)",
            f"post_lut = Constant <value = float[256, 3] {{{lut}}}> ()",
            "post_depth_bgr = Gather <axis = 0> (post_lut, post_index)",
            "depth_color = Cast <to = 2> (post_depth_bgr)",
        ]
        outputs.append(f"uint8[{batch}, {ho}, {wo}, 3] depth_color")
    return inputs, lines, outputs


def post_graph_text(meta: ModelMetadata, options: DeployOptions, layout: DeployLayout, ir_version: int) -> str:
    """Network outputs (prefixed ``net_``) + pre_view + runtime inputs -> the requested output buffers.

    Full-resolution work is one pass per produced value wherever ONNX has one op for it: depth and normals are
    resized as planes, the logits channels-last for the ArgMax, the view is mapped to BGR and
    weighted in one MatMul, and the points are computed on their strided grid only.
    """
    wanted = set(options.outputs)
    b, ho, wo = options.batch, layout.out_height, layout.out_width
    h, w = meta.input_height, meta.input_width
    k, c = layout.classes, options.channels
    has_semantic = "semantic" in meta.tasks
    need_depth = bool(wanted & {"depth", "depth_color", "points"})
    need_semantic = bool(wanted & {"labels", "confidence", "semantic_color", "semantic_overlay"}) or ("points" in wanted and has_semantic)
    need_colour = bool(wanted & {"semantic_color", "semantic_overlay"}) or ("points" in wanted and has_semantic)
    need_view = "semantic_overlay" in wanted or ("points" in wanted and not has_semantic)
    inputs: list[str] = []
    lines: list[str] = []
    outputs: list[str] = []
    if need_depth:
        depth_inputs, depth_lines, depth_outputs = _depth_lines(wanted, layout, b, h, w)
        inputs += depth_inputs
        lines += depth_lines
        outputs += depth_outputs
    if need_semantic:
        inputs.append(f"float[{b}, {k}, {h}, {w}] net_semantic_logits")
        logits = _to_output_size(lines, "post_logits", "net_semantic_logits", k, layout, b, channels_last=True)
        lines += [
            f"post_label_ids = ArgMax <axis = 3, keepdims = 0> ({logits})",
            "post_label_f = Cast <to = 1> (post_label_ids)",  # INT64 -> float -> uint8: TensorRT casts uint8 only from/to float
        ]
        if "labels" in wanted:
            lines.append("labels = Cast <to = 2> (post_label_f)")
            outputs.append(f"uint8[{b}, {ho}, {wo}] labels")
        if "confidence" in wanted:
            lines += [  # softmax probability of the top class = 1 / sum(exp(l - l_max))
                f"post_lmax = ReduceMax <axes = [3], keepdims = 1> ({logits})",
                f"post_lshift = Sub ({logits}, post_lmax)",
                "post_lexp = Exp (post_lshift)",
                "post_axis3 = Constant <value_ints = [3]> ()",
                "post_lsum = ReduceSum <keepdims = 0> (post_lexp, post_axis3)",
                "confidence = Reciprocal (post_lsum)",
            ]
            outputs.append(f"float[{b}, {ho}, {wo}] confidence")
    if need_colour:
        inputs.append(f"uint8[{k}, 3] palette_bgr")
        lines += ["post_palette = Cast <to = 1> (palette_bgr)",  # a uint8 input feeds a Cast at once; the LUT works in float
                  "post_label_bgr = Gather <axis = 0> (post_palette, post_label_ids)"]
        if "semantic_color" in wanted:
            lines.append("semantic_color = Cast <to = 2> (post_label_bgr)")
            outputs.append(f"uint8[{b}, {ho}, {wo}, 3] semantic_color")
    bgr_view = bool(np.array_equal(view_to_bgr(options), np.eye(3, dtype=np.float32)))
    if need_view:
        inputs.append(f"float[{b}, {ho}, {wo}, {c}] pre_view")
        lines.append(f"post_to_bgr = Constant <value = float[{c}, 3] {{{_floats(view_to_bgr(options).reshape(-1))}}}> ()")
    if "semantic_overlay" in wanted:
        inputs.append("float[1] overlay_alpha")
        lines += [
            "post_one = Constant <value_float = 1.0> ()",
            "post_keep = Sub (post_one, overlay_alpha)",
            *(["post_image_part = Mul (pre_view, post_keep)"] if bgr_view else  # a bgr8 camera: weighted as it is
              ["post_keep_bgr = Mul (post_to_bgr, post_keep)", "post_image_part = MatMul (pre_view, post_keep_bgr)"]),  # to BGR and weighted
            "post_colour_part = Mul (post_label_bgr, overlay_alpha)",
            "post_blend = Add (post_image_part, post_colour_part)",
            "post_blend_round = Round (post_blend)",  # in [0, 255]: a weighted mean of two colours (alpha in [0, 1])
            "semantic_overlay = Cast <to = 2> (post_blend_round)",
        ]
        outputs.append(f"uint8[{b}, {ho}, {wo}, 3] semantic_overlay")
    if "normals" in wanted:
        inputs.append(f"float[{b}, 3, {h}, {w}] net_normals")
        n = _to_output_size(lines, "post_normals", "net_normals", 3, layout, b)
        lines += [
            f"post_normals_hwc = Transpose <perm = [0, 2, 3, 1]> ({n})",
            "normals = LpNormalization <axis = 3, p = 2> (post_normals_hwc)",
        ]
        outputs.append(f"float[{b}, {ho}, {wo}, 3] normals")
    if "points" in wanted:
        inputs.append(f"float[{b}, 5] intrinsics")
        lines += _points_lines(options, layout, has_semantic)
        s = options.points_stride
        hs, ws = -(-ho // s), -(-wo // s)
        outputs += [f"float[{b}, {hs}, {ws}, 3] points_xyz", f"uint8[{b}, {hs}, {ws}, 8] points_extra"]
    body = "\n  ".join(lines)
    return f"{_header(ir_version)}\npost ({', '.join(inputs)}) => ({', '.join(outputs)}) {{\n  {body}\n}}\n"


def _points_lines(options: DeployOptions, layout: DeployLayout, has_semantic: bool) -> list[str]:
    """The point buffers, every step on the strided grid (depth, range test, colours and labels sliced first)."""
    b, ho, wo, s = options.batch, layout.out_height, layout.out_width, options.points_stride
    hs, ws = -(-ho // s), -(-wo // s)
    lines = [
        "post_grid_start = Constant <value_ints = [0, 0]> ()",
        f"post_grid_end = Constant <value_ints = [{ho}, {wo}]> ()",
        "post_grid_axes = Constant <value_ints = [1, 2]> ()",
        f"post_grid_steps = Constant <value_ints = [{s}, {s}]> ()",
        "post_zd = Slice (post_d, post_grid_start, post_grid_end, post_grid_axes, post_grid_steps)",
        "post_z_near = Less (post_zd, post_lo)",
        "post_z_far = Greater (post_zd, post_hi)",
        "post_z_out = Or (post_z_near, post_z_far)",
        "post_z = Where (post_z_out, post_nan, post_zd)",
        f"post_u = Constant <value = float[1, 1, {ws}] {{{_floats(np.arange(0, wo, s))}}}> ()",
        f"post_v = Constant <value = float[1, {hs}, 1] {{{_floats(np.arange(0, ho, s))}}}> ()",
        f"post_k_shape = Constant <value_ints = [{b}, 5, 1, 1]> ()",
        "post_k = Reshape (intrinsics, post_k_shape)",  # per camera, broadcast over its pixels
        *[f"post_k{i} = Constant <value_int = {i}> ()" for i in range(5)],
        *[f"post_{name} = Gather <axis = 1> (post_k, post_k{i})" for i, name in enumerate(("fx", "fy", "cx", "cy", "skew"))],
        "post_vc = Sub (post_v, post_cy)",
        "post_yn = Div (post_vc, post_fy)",
        "post_uc = Sub (post_u, post_cx)",
        "post_sk = Mul (post_skew, post_yn)",
        "post_usk = Sub (post_uc, post_sk)",
        "post_xn = Div (post_usk, post_fx)",
        "post_x = Mul (post_xn, post_z)",
        "post_y = Mul (post_yn, post_z)",
        "post_last = Constant <value_ints = [-1]> ()",
        "post_x1 = Unsqueeze (post_x, post_last)",
        "post_y1 = Unsqueeze (post_y, post_last)",
        "post_z1 = Unsqueeze (post_z, post_last)",
        "points_xyz = Concat <axis = -1> (post_x1, post_y1, post_z1)",
    ]
    if has_semantic:
        lines += [
            "post_pc_colour = Slice (post_label_bgr, post_grid_start, post_grid_end, post_grid_axes, post_grid_steps)",
            "post_pc_ids = Slice (post_label_f, post_grid_start, post_grid_end, post_grid_axes, post_grid_steps)",
            "post_pc_label = Unsqueeze (post_pc_ids, post_last)",
        ]
    else:
        lines += [
            "post_pc_view = Slice (pre_view, post_grid_start, post_grid_end, post_grid_axes, post_grid_steps)",
            "post_pc_bgr = MatMul (post_pc_view, post_to_bgr)",
            "post_pc_colour = Round (post_pc_bgr)",
            f"post_pc_label_shape = Constant <value_ints = [{b}, {hs}, {ws}, 1]> ()",
            f"post_pc_label = ConstantOfShape <value = float[1] {{{float(NO_LABEL)!r}}}> (post_pc_label_shape)",
        ]
    lines += [
        f"post_pc_shape1 = Constant <value_ints = [{b}, {hs}, {ws}, 1]> ()",
        f"post_pc_shape3 = Constant <value_ints = [{b}, {hs}, {ws}, 3]> ()",
        "post_pc_zero1 = ConstantOfShape <value = float[1] {0.0}> (post_pc_shape1)",
        "post_pc_zero3 = ConstantOfShape <value = float[1] {0.0}> (post_pc_shape3)",
        "post_pc_extra = Concat <axis = -1> (post_pc_colour, post_pc_zero1, post_pc_label, post_pc_zero3)",
        "points_extra = Cast <to = 2> (post_pc_extra)",
    ]
    return lines


SHAPE_INPUTS = {"Resize": 3, "Reshape": 1, "Expand": 1}  # op -> index of its shape-like input


def rebatch_network(model: onnx.ModelProto, batch: int) -> onnx.ModelProto:
    """A copy of an exported network whose batch dimension is ``batch`` (static).

    Exporters fold the batch of the example input into constant shapes (Resize ``sizes``, Reshape and
    Expand shapes of ``[1, ...]``): those constants get ``batch`` as their first element, the graph's
    inputs and outputs get it as their first dimension, and the stale intermediate shapes are dropped.
    The tests check every architecture's rebatched network against the same network frame by frame.
    """
    model = copy.deepcopy(model)
    graph = model.graph
    for value in [*graph.input, *graph.output]:
        dim = value.type.tensor_type.shape.dim[0]
        dim.Clear()
        dim.dim_value = batch
    del graph.value_info[:]
    shape_names = {node.input[index] for node in graph.node for op, index in SHAPE_INPUTS.items() if node.op_type == op and len(node.input) > index}
    for initializer in graph.initializer:
        if initializer.name in shape_names and initializer.data_type == onnx.TensorProto.INT64:
            values = numpy_helper.to_array(initializer).copy()
            if values.ndim == 1 and values.size >= 1 and values[0] == 1:
                values[0] = batch
                initializer.CopyFrom(numpy_helper.from_array(values, initializer.name))
    for node in graph.node:
        if node.op_type == "Constant" and node.output[0] in shape_names:
            for attribute in node.attribute:
                if attribute.name == "value" and attribute.t.data_type == onnx.TensorProto.INT64:
                    values = numpy_helper.to_array(attribute.t).copy()
                    if values.ndim == 1 and values.size >= 1 and values[0] == 1:
                        values[0] = batch
                        attribute.t.CopyFrom(numpy_helper.from_array(values))
    return model


def _network(model: onnx.ModelProto, batch: int) -> onnx.ModelProto:
    """The network at the deploy graph's opset (or its own, when higher) and batch with every name prefixed ``net_``
    (no clash with the wrappers). A higher opset is kept: the INT8 file needs opset 19 for its FP16 Q/DQ scales."""
    if _opset(model) < OPSET:
        model = onnx.version_converter.convert_version(model, OPSET)
    return onnx.compose.add_prefix(rebatch_network(model, batch), NET_PREFIX)


def _opset(model: onnx.ModelProto) -> int:
    return next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), OPSET)


def _check_tasks(meta: ModelMetadata, options: DeployOptions) -> None:
    needed_tasks = {task for output in options.outputs for task in OUTPUT_TASKS[output]}
    missing = sorted(needed_tasks - set(meta.tasks))
    if missing:
        raise DeployGraphError(f"outputs {list(options.outputs)} need task(s) {missing}, which the model ({meta.tasks}) does not predict")


def compose_deploy_parts(meta: ModelMetadata, options: DeployOptions, layout: DeployLayout,
                         ir_version: int = 8) -> tuple[onnx.ModelProto, onnx.ModelProto]:
    """The pre- and post-processing graphs alone, for a backend that runs the network itself (torch)."""
    _check_tasks(meta, options)
    pre = onnx.parser.parse_model(pre_graph_text(meta, options, layout, ir_version))
    post = onnx.parser.parse_model(post_graph_text(meta, options, layout, ir_version))
    return pre, post


def compose_deploy_graph(model: onnx.ModelProto, options: DeployOptions) -> onnx.ModelProto:
    """The deploy graph (see the module docstring) of a loaded model file for one camera and output set."""
    meta = metadata_from_props({p.key: p.value for p in model.metadata_props}, "model file")
    layout = layout_for(meta, options)
    ir_version = model.ir_version
    pre, post = compose_deploy_parts(meta, options, layout, ir_version)
    net = _network(model, options.batch)
    if _opset(net) > OPSET:  # the wrappers follow the network's opset (merge_models needs one opset)
        pre, post = (onnx.version_converter.convert_version(part, _opset(net)) for part in (pre, post))
    net_input = NET_PREFIX + INPUT_NAME
    net_outputs = [o.name for o in net.graph.output]
    joined = onnx.compose.merge_models(pre, net, io_map=[("pre_net_input", net_input)], outputs=[*net_outputs, "pre_view"])
    post_inputs = {i.name for i in post.graph.input}
    io_map = [(name, name) for name in [*net_outputs, "pre_view"] if name in post_inputs]
    full = onnx.compose.merge_models(joined, post, io_map=io_map)
    wanted_outputs = [name for output in options.outputs for name in GRAPH_OUTPUTS[output]]
    graph_inputs = [IMAGE_INPUT, *[i.name for i in full.graph.input if i.name in RUNTIME_INPUTS]]
    full = onnx.utils.Extractor(full).extract_model(graph_inputs, wanted_outputs)  # drops the heads nobody needs
    full.ir_version = ir_version
    del full.metadata_props[:]
    for prop in model.metadata_props:
        full.metadata_props.add(key=prop.key, value=prop.value)
    full.metadata_props.add(key=DEPLOY_KEY, value=options.key())
    full.graph.name = "mtl_perception_deploy"
    onnx.checker.check_model(full)
    return full


def deploy_graph_path(model_sha256: str, options: DeployOptions, out_dir: Path) -> Path:
    """Where the deploy graph of this model file and these options is cached."""
    digest = hashlib.sha256(f"{model_sha256}|{options.key()}".encode()).hexdigest()[:20]
    return Path(out_dir) / f"deploy-{digest}.onnx"


def deploy_graph_file(model: onnx.ModelProto, model_sha256: str, options: DeployOptions, out_dir: Path, rebuild: bool = False) -> Path:
    """The deploy graph of a loaded model file for ``options``, as a file in ``out_dir`` (built once, then reused).

    The file name is keyed by the model file's SHA-256 and the options, so a retrained model or another
    camera size never reuses a stale graph; backends that key their own caches by file hash (TensorRT
    engines) inherit that. The file is reused only when its bytes match the content hash written beside it
    (``fileio.ensure_cache_file``): a damaged one is reported once and composed again; ``rebuild=True``
    composes it again whatever its hash says (a backend refused it).
    """
    path = deploy_graph_path(model_sha256, options, out_dir)
    ensure_cache_file(path, lambda: compose_deploy_graph(model, options).SerializeToString(), rebuild)
    return path


def build_deploy_graph(model_path: Path, options: DeployOptions, out_dir: Path) -> Path:
    """``deploy_graph_file`` of the model file at ``model_path`` (tools and benchmarks)."""
    from mtl_perception.fileio import file_sha256

    return deploy_graph_file(load_onnx_file(model_path), file_sha256(model_path), options, out_dir)
