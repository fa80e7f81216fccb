"""The node's parameters: one table declares, documents, validates and classifies every one of them.

Each entry becomes a ROS parameter with a ParameterDescriptor (description, range, read-only flag).
``runtime=True`` parameters (output toggles, rate, depth range, ...) may change at any time;
the others are read when the node configures or activates, so a change is accepted only while the
node is unconfigured and otherwise rejected with the reason and the lifecycle steps to follow.
``config/mtl_perception.yaml`` lists the same keys with a comment each (a test keeps them in step).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

import yaml

from mtl_perception.inference.frame_pipeline import FrameSettings

PACKAGE = "mtl_perception"
DEFAULT_MODEL_FILE = "default.onnx"


class ParameterError(ValueError):
    """A parameter value (or a combination of values) is invalid; the message names it and the fix."""


@dataclass(frozen=True)
class ParamSpec:
    """One parameter: name, default, documentation, constraints and when it may change."""

    name: str
    default: Any
    description: str
    runtime: bool = False  # may change while configured or active
    read_only: bool = False  # fixed at start-up (ROS rejects every later set)
    choices: tuple[str, ...] = ()  # allowed string values
    int_range: tuple[int, int] | None = None  # inclusive bounds of an integer
    float_range: tuple[float, float] | None = None  # inclusive bounds of a float
    constraints: str = ""  # free-text constraint shown by `ros2 param describe`


# Output topics (relative names, under the node's namespace) and the toggle of each.
OUTPUT_TOPICS: dict[str, str] = {
    "depth": "depth",
    "depth_camera_info": "depth/camera_info",
    "depth_color": "depth/color",
    "semantic": "semantic",
    "semantic_color": "semantic/color",
    "semantic_overlay": "semantic/overlay",
    "normals": "normals",
    "points": "points",
}
CLASS_TABLE_TOPIC = "semantic/classes"

BACKENDS = ("onnxruntime", "tensorrt", "torch")

SPECS: tuple[ParamSpec, ...] = (
    ParamSpec("autostart", True, "Configure and activate by itself at start-up; false waits for a lifecycle manager", read_only=True),
    ParamSpec("model.path", "", "Model file (.onnx exported by `mtl-perception export`); empty = share/mtl_perception/models/default.onnx"),
    ParamSpec("model.backend", "onnxruntime", "Inference backend", choices=BACKENDS),
    ParamSpec("model.provider", "auto", "Execution provider of the onnxruntime backend (auto = TensorRT/CUDA when present, else CPU); torch uses cuda when not cpu", choices=("auto", "cpu", "cuda", "tensorrt")),
    ParamSpec("model.precision", "default", "Numeric precision: default (the backend's own: fp16 for tensorrt, fp32 otherwise), fp32, fp16 or int8 (tensorrt)", choices=("default", "fp32", "fp16", "int8")),
    ParamSpec("model.threads", 0, "CPU threads inside inference (onnxruntime intra-op, torch); 0 = the backend's default", int_range=(0, 256)),
    ParamSpec("model.engine_cache_dir", "", "Directory of built TensorRT engines; empty = the backend's default cache"),
    ParamSpec("model.fallback_backend", "onnxruntime", "Backend (on CPU) used when the configured one fails to load or run; empty = none", choices=("",) + BACKENDS),
    ParamSpec("input.image_topic", "image", "Camera image topic (sensor_msgs/Image)"),
    ParamSpec("input.compressed", False, "Subscribe to <image_topic>/compressed (sensor_msgs/CompressedImage, JPEG or PNG) instead of the raw image"),
    ParamSpec("input.camera_info_topic", "camera_info", "Camera info topic; needed for the point cloud and depth/camera_info"),
    ParamSpec("input.max_pixels", 4096 * 4096, "Largest accepted image (width x height); bigger frames are rejected before decoding", int_range=(1, 1 << 28)),
    ParamSpec("qos.reliability", "best_effort", "Reliability of the input subscriptions (best_effort = sensor data)", choices=("best_effort", "reliable")),
    ParamSpec("qos.depth", 1, "History depth of the input subscriptions (keep last N; the node processes only the newest)", int_range=(1, 100)),
    ParamSpec("qos.output_depth", 5, "History depth of the outputs (keep last N): room for a slow reliable subscriber such as a recorder", int_range=(1, 100)),
    ParamSpec("qos.output_reliability", "reliable", "Reliability of the outputs; reliable serves both reliable and best-effort subscribers", choices=("best_effort", "reliable")),
    *(ParamSpec(f"output.{key}", True, f"Publish '{topic}' (computed only while someone subscribes)", runtime=True) for key, topic in OUTPUT_TOPICS.items()),
    ParamSpec("output.resolution", "input", "Output image size: input (camera resolution) or model (network resolution)", runtime=True, choices=("input", "model")),
    ParamSpec("output.overlay_alpha", 0.5, "Weight of the class colours in semantic/overlay", runtime=True, float_range=(0.0, 1.0)),
    ParamSpec("processing.max_rate_hz", 0.0, "Most frames processed per second; 0 = as many as the camera and inference allow", runtime=True, float_range=(0.0, 1000.0)),
    ParamSpec("processing.resize_mode", "letterbox", "How frames fit the network input: letterbox (keeps aspect ratio) or stretch", runtime=True, choices=("letterbox", "stretch")),
    ParamSpec("depth.min", 0.0, "Depth below this (metres) is published as NaN; 0 = the model's own minimum", runtime=True, float_range=(0.0, 1000.0)),
    ParamSpec("depth.max", 0.0, "Depth above this (metres) is published as NaN; 0 = the model's own maximum", runtime=True, float_range=(0.0, 1000.0), constraints="depth.min < depth.max when both are set"),
    ParamSpec("depth.rescale_for_camera", True, "Scale depth by the camera's focal length over the training camera's (needs camera_info)", runtime=True),
    ParamSpec("points.stride", 4, "Use every N-th pixel along both axes for the point cloud", runtime=True, int_range=(1, 64)),
    ParamSpec("points.organized", False, "Organised cloud (one point per strided pixel, NaN where no depth) instead of valid points only", runtime=True),
    ParamSpec("palette.override", "", "Class colours instead of the model's: a YAML/JSON list of [R, G, B] per class, inline or a file path; empty = model palette", runtime=True),
    ParamSpec("diagnostics.stall_timeout_s", 2.0, "Seconds without an input frame (while active) before diagnostics report WARN", runtime=True, float_range=(0.1, 3600.0)),
)
SPEC_BY_NAME: dict[str, ParamSpec] = {spec.name: spec for spec in SPECS}


@dataclass
class Settings:
    """Typed, validated parameter values (what the node works with)."""

    autostart: bool
    model_path: str
    backend: str
    provider: str
    precision: str
    threads: int
    engine_cache_dir: str
    fallback_backend: str
    image_topic: str
    compressed: bool
    camera_info_topic: str
    max_pixels: int
    reliability: str
    qos_depth: int
    output_qos_depth: int
    output_reliability: str
    outputs: dict[str, bool]
    resolution: str
    overlay_alpha: float
    max_rate_hz: float
    resize_mode: str
    depth_min: float
    depth_max: float
    rescale_for_camera: bool
    points_stride: int
    points_organized: bool
    palette_override: list[list[int]] | None
    stall_timeout_s: float
    raw: dict[str, Any] = field(default_factory=dict)


def package_file(folder: str, name: str) -> Path:
    """share/mtl_perception/FOLDER/NAME from the ament index, else the source tree's FOLDER/NAME."""
    try:
        from ament_index_python.packages import get_package_share_directory

        share = Path(get_package_share_directory(PACKAGE)) / folder / name
        if share.is_file():
            return share
    except (ImportError, LookupError, ValueError, OSError):  # no ament index (e.g. a plain pip install)
        pass
    return Path(__file__).resolve().parents[3] / folder / name


def default_model_path() -> Path:
    """The bundled default model (models/default.onnx)."""
    return package_file("models", DEFAULT_MODEL_FILE)


def fastdds_profile_path() -> Path:
    """The Fast DDS profile that delivers large images between processes (config/fastdds_large_images.xml)."""
    return package_file("config", "fastdds_large_images.xml")


PALETTE_FILE_MAX_BYTES = 1 << 20  # a palette of 256 classes is a few KiB


def parse_palette(text: str) -> list[list[int]] | None:
    """Parse ``palette.override``: empty -> None; inline YAML/JSON list or a file holding one."""
    text = text.strip()
    if not text:
        return None
    if text.startswith("["):
        source, raw_text = "inline value", text
    else:
        path = Path(text).expanduser()
        if not path.is_file():
            raise ParameterError(f"palette.override: file '{text}' not found; give a path to a YAML list of [R, G, B] or an inline list")
        if path.stat().st_size > PALETTE_FILE_MAX_BYTES:
            raise ParameterError(f"palette.override: file '{text}' has {path.stat().st_size} B, more than a palette needs "
                                 f"({PALETTE_FILE_MAX_BYTES} B at most); give the YAML list of [R, G, B] colours")
        source, raw_text = str(path), path.read_text(errors="replace")
    try:
        value = yaml.safe_load(raw_text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ParameterError(f"palette.override ({source}) is not valid YAML/JSON{where}: {problem}; give a list of [R, G, B] triples") from None
    if isinstance(value, dict) and "palette" in value:
        value = value["palette"]
    ok = isinstance(value, list) and value and all(
        isinstance(c, list) and len(c) == 3 and all(isinstance(v, int) and not isinstance(v, bool) and 0 <= v <= 255 for v in c) for c in value
    )
    if not ok:
        raise ParameterError(f"palette.override ({source}) must be a non-empty list of [R, G, B] integer triples in 0..255")
    return [list(c) for c in value]


def check_value(name: str, value: Any) -> None:
    """Raise ParameterError if ``value`` breaks the constraints of parameter ``name`` taken alone."""
    spec = SPEC_BY_NAME.get(name)
    if spec is None:
        raise ParameterError(f"unknown parameter '{name}'; valid parameters: {sorted(SPEC_BY_NAME)}")
    if not isinstance(value, type(spec.default)) or (isinstance(value, bool) and not isinstance(spec.default, bool)):
        raise ParameterError(f"parameter '{name}' must be a {type(spec.default).__name__}, got {value!r}")
    if spec.choices and value not in spec.choices:
        raise ParameterError(f"parameter '{name}' is '{value}'; valid values: {list(spec.choices)}")
    if spec.int_range and not spec.int_range[0] <= value <= spec.int_range[1]:
        raise ParameterError(f"parameter '{name}' = {value} is outside [{spec.int_range[0]}, {spec.int_range[1]}]")
    if spec.float_range and not (math.isfinite(value) and spec.float_range[0] <= value <= spec.float_range[1]):
        raise ParameterError(f"parameter '{name}' = {value} is outside [{spec.float_range[0]}, {spec.float_range[1]}]")
    if name == "palette.override":
        parse_palette(value)
    if name in ("input.image_topic", "input.camera_info_topic") and not value.strip():
        raise ParameterError(f"parameter '{name}' must name a topic")


def settings_from_values(values: dict[str, Any]) -> Settings:
    """Validate a full set of parameter values (single and cross-parameter checks) into Settings."""
    merged = {spec.name: spec.default for spec in SPECS}
    merged.update(values)
    for name, value in merged.items():
        check_value(name, value)
    if merged["depth.min"] > 0 and merged["depth.max"] > 0 and merged["depth.min"] >= merged["depth.max"]:
        raise ParameterError(f"depth.min ({merged['depth.min']}) must be below depth.max ({merged['depth.max']})")
    return Settings(
        autostart=merged["autostart"],
        model_path=merged["model.path"],
        backend=merged["model.backend"],
        provider=merged["model.provider"],
        precision=merged["model.precision"],
        threads=merged["model.threads"],
        engine_cache_dir=merged["model.engine_cache_dir"],
        fallback_backend=merged["model.fallback_backend"],
        image_topic=merged["input.image_topic"],
        compressed=merged["input.compressed"],
        camera_info_topic=merged["input.camera_info_topic"],
        max_pixels=merged["input.max_pixels"],
        reliability=merged["qos.reliability"],
        qos_depth=merged["qos.depth"],
        output_qos_depth=merged["qos.output_depth"],
        output_reliability=merged["qos.output_reliability"],
        outputs={key: merged[f"output.{key}"] for key in OUTPUT_TOPICS},
        resolution=merged["output.resolution"],
        overlay_alpha=merged["output.overlay_alpha"],
        max_rate_hz=merged["processing.max_rate_hz"],
        resize_mode=merged["processing.resize_mode"],
        depth_min=merged["depth.min"],
        depth_max=merged["depth.max"],
        rescale_for_camera=merged["depth.rescale_for_camera"],
        points_stride=merged["points.stride"],
        points_organized=merged["points.organized"],
        palette_override=parse_palette(merged["palette.override"]),
        stall_timeout_s=merged["diagnostics.stall_timeout_s"],
        raw=merged,
    )


def depth_range(settings: Settings, model_min: float, model_max: float) -> tuple[float, float]:
    """The published depth range: depth.min/depth.max, each 0 meaning the model's own; ParameterError if empty."""
    low = settings.depth_min or model_min
    high = settings.depth_max or model_max
    if not low < high:
        raise ParameterError(
            f"depth range [{low}, {high}] m is empty (depth.min={settings.depth_min}, depth.max={settings.depth_max}, "
            f"model range [{model_min}, {model_max}] m); set depth.min below depth.max"
        )
    return low, high


def frame_settings(settings: Settings) -> FrameSettings:
    """The per-frame pipeline's settings from the node's (``inference.frame_pipeline.FrameSettings``)."""
    palette = tuple(tuple(int(v) for v in colour) for colour in settings.palette_override) if settings.palette_override else None
    return FrameSettings(
        resize_mode=settings.resize_mode, out_size=settings.resolution, points_stride=settings.points_stride,
        points_organized=settings.points_organized, depth_min=settings.depth_min, depth_max=settings.depth_max,
        rescale_for_camera=settings.rescale_for_camera, overlay_alpha=settings.overlay_alpha, palette=palette,
    )


def backend_options(settings: Settings, kind: str, provider: str) -> dict[str, Any]:
    """Keyword options of ``create_backend`` for ``kind`` from the node's settings.

    ``provider`` (auto | cpu | cuda | tensorrt) is the onnxruntime execution provider; for torch it
    picks the device (tensorrt -> cuda); the native tensorrt backend always runs on the GPU.
    """
    precision = None if settings.precision == "default" else settings.precision
    if kind == "onnxruntime":
        options: dict[str, Any] = {"provider": provider, "intra_op_threads": settings.threads}
        if settings.engine_cache_dir and provider == "tensorrt":
            options["tensorrt_cache_dir"] = settings.engine_cache_dir
        return options
    if kind == "torch":
        options = {"device": {"tensorrt": "cuda"}.get(provider, provider), "threads": settings.threads}
        if precision:
            options["precision"] = precision
        return options
    if kind == "tensorrt":
        options = {"cache_dir": settings.engine_cache_dir or None}
        if precision:
            options["precision"] = precision
        return options
    raise ParameterError(f"unknown backend '{kind}'; valid: {list(BACKENDS)}")


def change_rejection(name: str, configured: bool) -> str | None:
    """Why a run-time change of ``name`` is refused (None when it may change now)."""
    spec = SPEC_BY_NAME.get(name)
    if spec is None:
        return f"unknown parameter '{name}'"
    if spec.read_only:
        return f"'{name}' is read-only: it is read once at start-up; restart the node with the new value"
    if spec.runtime or not configured:
        return None
    return (
        f"'{name}' is read when the node configures or activates and cannot change while it is configured; "
        "deactivate and clean up the node (ros2 lifecycle set <node> deactivate, then cleanup), set it, then configure and activate"
    )


def descriptor(spec: ParamSpec) -> Any:
    """The rcl_interfaces ParameterDescriptor of one parameter."""
    from rcl_interfaces.msg import FloatingPointRange, IntegerRange, ParameterDescriptor, ParameterType

    types = {bool: ParameterType.PARAMETER_BOOL, int: ParameterType.PARAMETER_INTEGER, float: ParameterType.PARAMETER_DOUBLE, str: ParameterType.PARAMETER_STRING}
    notes = [spec.constraints] if spec.constraints else []
    if spec.choices:
        notes.append("one of: " + ", ".join(repr(c) for c in spec.choices))
    notes.append("changes at run time" if spec.runtime else ("fixed at start-up" if spec.read_only else "changes only while unconfigured"))
    desc = ParameterDescriptor(
        name=spec.name,
        type=types[type(spec.default)],
        description=spec.description,
        additional_constraints="; ".join(notes),
        read_only=spec.read_only,
    )
    if spec.int_range:
        desc.integer_range = [IntegerRange(from_value=spec.int_range[0], to_value=spec.int_range[1], step=0)]
    if spec.float_range:
        desc.floating_point_range = [FloatingPointRange(from_value=spec.float_range[0], to_value=spec.float_range[1], step=0.0)]
    return desc


def declare_all(node: Any) -> None:
    """Declare every parameter of the table on ``node`` (values from launch/YAML overrides apply)."""
    for spec in SPECS:
        node.declare_parameter(spec.name, spec.default, descriptor(spec))


def read_values(node: Any, names: Iterable[str] | None = None) -> dict[str, Any]:
    """Current values of the declared parameters, by name."""
    return {name: node.get_parameter(name).value for name in (names or SPEC_BY_NAME)}
