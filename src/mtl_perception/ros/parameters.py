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

from mtl_perception.inference.backends import BACKENDS as BACKEND_MODULES
from mtl_perception.inference.frame_pipeline import FrameSettings


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
    # String choices that ROS's YAML typing reads as numbers (unquoted nan / inf in a file, `-p`, `ros2 param set`):
    # declared with dynamic typing, the numbers are accepted and normalised to the string they spell.
    number_spellings: bool = False


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

BACKENDS = tuple(sorted(BACKEND_MODULES))

SPECS: tuple[ParamSpec, ...] = (
    ParamSpec("autostart", True, "Configure and activate by itself at start-up; false waits for a lifecycle manager", read_only=True),
    ParamSpec("model.path", "", "Model file (.onnx exported by `mtl-perception export`); empty = share/mtl_perception/models/default.onnx"),
    ParamSpec("model.backend", "onnxruntime", "Inference backend", choices=BACKENDS),
    ParamSpec("model.provider", "auto", "Execution provider of the onnxruntime backend (auto = TensorRT/CUDA when present, else CPU); torch uses cuda when not cpu", choices=("auto", "cpu", "cuda", "tensorrt")),
    ParamSpec("model.precision", "default", "Numeric precision: default (the backend's own: fp16 for tensorrt, fp32 otherwise), fp32, fp16 or int8 (tensorrt)", choices=("default", "fp32", "fp16", "int8")),
    ParamSpec("model.threads", 0, "CPU threads inside inference (onnxruntime intra-op, torch); 0 = the backend's default", int_range=(0, 256)),
    ParamSpec("model.engine_cache_dir", "", "Cache root of every compiled artefact (deploy/, precision/, engines/, ort_tensorrt/ below it); empty = $MTL_PERCEPTION_CACHE, else ~/.cache/mtl_perception"),
    ParamSpec("model.fallback_backend", "onnxruntime", "Backend (on CPU) used when the configured one fails to load or run; empty = none", choices=("",) + BACKENDS),
    ParamSpec("input.image_topic", "image", "Camera image topic (sensor_msgs/Image)"),
    ParamSpec("input.compressed", False, "Subscribe to <image_topic>/compressed (sensor_msgs/CompressedImage, JPEG or PNG) instead of the raw image"),
    ParamSpec("input.camera_info_topic", "camera_info", "Camera info topic; needed for the point cloud and depth/camera_info"),
    ParamSpec("input.camera_info_tolerance_s", 0.01, "Camera info is matched to each image by stamp: the nearest within this many seconds, else the newest (counted as camera_info_unmatched)", runtime=True, float_range=(0.0, 10.0)),
    ParamSpec("input.max_pixels", 4096 * 4096, "Largest accepted image (width x height); bigger frames are rejected before decoding", int_range=(1, 1 << 28)),
    ParamSpec("qos.reliability", "best_effort", "Reliability of the input subscriptions (best_effort = sensor data)", choices=("best_effort", "reliable")),
    ParamSpec("qos.depth", 1, "History depth of the input subscriptions (keep last N; the node processes only the newest)", int_range=(1, 100)),
    ParamSpec("qos.output_depth", 5, "History depth of the outputs (keep last N): room for a slow reliable subscriber such as a recorder", int_range=(1, 100)),
    ParamSpec("qos.output_reliability", "reliable", "Reliability of the outputs; reliable serves both reliable and best-effort subscribers", choices=("best_effort", "reliable")),
    *(ParamSpec(f"output.{key}", True, f"Publish '{topic}' (computed only while someone subscribes)", runtime=True) for key, topic in OUTPUT_TOPICS.items()),
    ParamSpec("output.resolution", "input", "Output image size: input (camera resolution) or model (network resolution)", runtime=True, choices=("input", "model")),
    ParamSpec("output.overlay_alpha", 0.5, "Weight of the class colours in semantic/overlay", runtime=True, float_range=(0.0, 1.0)),
    ParamSpec("processing.max_rate_hz", 0.0, "Most frames processed per second; 0 = as many as the camera and inference allow", runtime=True, float_range=(0.0, 1000.0)),
    ParamSpec("processing.batch_wait_ms", 5.0, "With several cameras: how long the newest frame of one camera waits for the other live cameras' frames to share a batch", runtime=True, float_range=(0.0, 100.0)),
    ParamSpec("processing.max_batch", 4, "With several cameras: most frames of one camera size in one call of the deploy graph (one graph per batch size)", runtime=True, int_range=(1, 16)),
    ParamSpec("processing.memory_budget_mb", 1536, "Most working memory (MB) one frame may take (deploy graph at camera resolution and "
              "its messages, estimated from its pixels and the outputs computed for it: inference/memory_budget.py); a frame above "
              "it is refused with the reason; 0 = no budget. The default leaves an 8 GB Jetson (memory shared by CPU and GPU) "
              "room for the OS, the engine and the robot's other nodes, and admits 3840x2160 with every output", runtime=True,
              int_range=(0, 1 << 20)),
    ParamSpec("processing.resize_mode", "letterbox", "How frames fit the network input: letterbox (keeps aspect ratio) or stretch", runtime=True, choices=("letterbox", "stretch")),
    ParamSpec("depth.min", 0.0, "Depth below this (metres) is published as NaN; 0 = the model's own minimum", runtime=True, float_range=(0.0, 1000.0)),
    ParamSpec("depth.max", 0.0, "Depth above this (metres) is published as NaN; 0 = the model's own maximum", runtime=True, float_range=(0.0, 1000.0), constraints="depth.min < depth.max when both are set"),
    ParamSpec("depth.out_of_range", "nan", "Depth outside [depth.min, depth.max]: nan (REP-118 'no estimate'; RViz and depth_image_proc skip it) or inf (REP-117: -Inf too near, +Inf too far)", runtime=True, choices=("nan", "inf"),
              number_spellings=True),
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
    camera_info_tolerance_s: float
    max_pixels: int
    reliability: str
    qos_depth: int
    output_qos_depth: int
    output_reliability: str
    outputs: dict[str, bool]
    resolution: str
    overlay_alpha: float
    max_rate_hz: float
    batch_wait_ms: float
    max_batch: int
    memory_budget_mb: int
    resize_mode: str
    depth_min: float
    depth_max: float
    rescale_for_camera: bool
    out_of_range: str
    points_stride: int
    points_organized: bool
    palette_override: list[list[int]] | None
    stall_timeout_s: float
    raw: dict[str, Any] = field(default_factory=dict)


PALETTE_FILE_MAX_BYTES = 1 << 20  # a palette of 256 classes is a few KiB


def parse_palette(text: str) -> list[list[int]] | None:
    """Parse ``palette.override``: empty -> None; an inline YAML/JSON list or a file holding one.

    Bounded and safe: the file at most PALETTE_FILE_MAX_BYTES, the text parsed by ``safeload.yaml_loads``
    (nesting at most 32 levels, no aliases), the value validated by ``schemas.PALETTE_ADAPTER`` (1 to 1024
    [R, G, B] triples in 0..255). Raises nothing but ParameterError (a file that vanishes or cannot be read
    included), so a caller may call it on every parameter change.
    """
    try:
        return _parse_palette(text)
    except ParameterError:
        raise
    except Exception as exc:  # noqa: BLE001 - the contract: a bad palette is a ParameterError, never a crash
        raise ParameterError(f"palette.override cannot be read ({type(exc).__name__}: {str(exc)[:120]}); "
                             "give a list of [R, G, B] triples inline or a readable YAML file") from None


def _parse_palette(text: str) -> list[list[int]] | None:
    from pydantic import ValidationError

    from mtl_perception.safeload import LoadError, read_text_bounded, shorten, yaml_loads
    from mtl_perception.schemas import PALETTE_ADAPTER, describe_errors

    if not isinstance(text, str):
        raise ParameterError(f"palette.override must be a string, got {type(text).__name__}")
    text = text.strip()
    if not text:
        return None
    if text.startswith("["):
        source, raw_text = "inline value", text
        if len(raw_text) > PALETTE_FILE_MAX_BYTES:
            raise ParameterError(f"palette.override (inline value) has {len(raw_text)} characters, more than a palette needs "
                                 f"({PALETTE_FILE_MAX_BYTES} at most); give the list of [R, G, B] colours")
    else:
        path = Path(text).expanduser()
        try:
            is_file = path.is_file()
        except (OSError, ValueError):  # a name too long for the file system, a NUL byte
            is_file = False
        if not is_file:
            raise ParameterError(f"palette.override: file '{shorten(text, 80)}' not found; give a path to a YAML list of [R, G, B] or an inline list")
        source = shorten(str(path), 80)
        size = path.stat().st_size
        if size > PALETTE_FILE_MAX_BYTES:
            raise ParameterError(f"palette.override: file '{shorten(text, 80)}' has {size} B, more than a palette needs "
                                 f"({PALETTE_FILE_MAX_BYTES} B at most); give the YAML list of [R, G, B] colours")
        try:
            raw_text = read_text_bounded(path, PALETTE_FILE_MAX_BYTES, "palette.override file")
        except LoadError as exc:
            raise ParameterError(f"palette.override: {exc}") from None
        except FileNotFoundError:
            raise ParameterError(f"palette.override: file '{shorten(text, 80)}' not found (it disappeared); give an existing file") from None
    try:
        value = yaml_loads(raw_text, f"palette.override ({source})", "palette")
    except LoadError as exc:
        message = str(exc).replace("is not valid YAML", "is not valid YAML/JSON")
        raise ParameterError(f"{message}; give a list of [R, G, B] triples") from None
    if isinstance(value, dict) and "palette" in value:
        value = value["palette"]
    try:
        colours = PALETTE_ADAPTER.validate_python(value)
    except ValidationError as exc:
        raise ParameterError(f"palette.override ({source}) must be a non-empty list of [R, G, B] integer triples in 0..255: "
                             f"{describe_errors(exc, label='entry ')}") from None
    return [list(c) for c in colours]


TOPIC_PARAMETERS = ("input.image_topic", "input.camera_info_topic")


def check_topic_name(name: str, value: str) -> None:
    """ParameterError unless ``value`` is a valid ROS 2 topic name (relative, absolute or ~private), naming ``name``.

    rclpy's ``validate_topic_name`` and, after expansion, ``validate_full_topic_name`` (rcl's rules:
    alphanumerics, '_' and '/', no '//', no trailing '/', no leading digit in a token, '~' only first,
    balanced {substitutions}) where rclpy imports; the same rules by hand otherwise.
    """
    from mtl_perception.safeload import shorten

    if not value.strip():
        raise ParameterError(f"parameter '{name}' must name a topic")
    shown = shorten(value, 80)
    try:
        from rclpy.exceptions import InvalidTopicNameException
        from rclpy.validate_topic_name import validate_topic_name
    except ImportError:  # no rclpy (e.g. offline tools): rcl's rules for plain names
        import re

        if len(value) > 1024 or not re.fullmatch(r"~?/?[A-Za-z_][A-Za-z0-9_]*(/[A-Za-z_][A-Za-z0-9_]*)*", value):
            raise ParameterError(f"parameter '{name}' = '{shown}' is not a valid ROS topic name: use letters, digits, '_' and '/' "
                                 "(e.g. 'image' or '/camera/color/image_raw')") from None
        return
    try:
        from rclpy.expand_topic_name import expand_topic_name
        from rclpy.validate_full_topic_name import validate_full_topic_name

        validate_topic_name(value)
        validate_full_topic_name(expand_topic_name(value, "perception_node", "/"))  # e.g. repeated '/', a trailing '/'
    except (InvalidTopicNameException, ValueError) as exc:
        reason = str(exc).splitlines()[0]
        reason = (reason.split(": ", 1)[-1] if ": " in reason else reason).split(", at /")[0].rstrip(": ")
        raise ParameterError(f"parameter '{name}' = '{shown}' is not a valid ROS topic name ({shorten(reason, 120)}); "
                             "use letters, digits, '_' and '/' (e.g. 'image' or '/camera/color/image_raw')") from None


def normalise(name: str, value: Any) -> Any:
    """The value a parameter means: for ``number_spellings`` parameters a double NaN or +Inf (what ROS's YAML typing
    makes of an unquoted ``nan`` / ``inf``) becomes the string "nan" / "inf"; every other value is returned as it is."""
    spec = SPEC_BY_NAME.get(name)
    if spec is not None and spec.number_spellings and isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if value == math.inf:
            return "inf"
    return value


def check_value(name: str, value: Any) -> None:
    """Raise ParameterError if ``value`` breaks the constraints of parameter ``name`` taken alone."""
    spec = SPEC_BY_NAME.get(name)
    if spec is None:
        raise ParameterError(f"unknown parameter '{name}'; valid parameters: {sorted(SPEC_BY_NAME)}")
    value = normalise(name, value)
    if not isinstance(value, type(spec.default)) or (isinstance(value, bool) and not isinstance(spec.default, bool)):
        raise ParameterError(f"parameter '{name}' must be a {type(spec.default).__name__}, got {str(value)[:80]!r}")
    if spec.choices and value not in spec.choices:
        raise ParameterError(f"parameter '{name}' is '{str(value)[:80]}'; valid values: {list(spec.choices)}")
    if spec.int_range and not spec.int_range[0] <= value <= spec.int_range[1]:
        raise ParameterError(f"parameter '{name}' = {value} is outside [{spec.int_range[0]}, {spec.int_range[1]}]")
    if spec.float_range and not (math.isfinite(value) and spec.float_range[0] <= value <= spec.float_range[1]):
        raise ParameterError(f"parameter '{name}' = {value} is outside [{spec.float_range[0]}, {spec.float_range[1]}]")
    if name == "palette.override":
        parse_palette(value)
    if name in TOPIC_PARAMETERS:
        check_topic_name(name, value)


def settings_from_values(values: dict[str, Any], previous: Settings | None = None) -> Settings:
    """Validate a full set of parameter values (single and cross-parameter checks) into Settings.

    With ``previous`` (the settings in force), values equal to those it was made from are trusted as
    they are and not read again: a palette file deleted since it was loaded does not make an unrelated
    change fail, and the palette in force stays.
    """
    merged = {spec.name: spec.default for spec in SPECS}
    merged.update({name: normalise(name, value) for name, value in values.items()})
    trusted = {name for name, value in merged.items() if previous is not None and name in previous.raw and previous.raw[name] == value}
    for name, value in merged.items():
        if name not in trusted:
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
        camera_info_tolerance_s=merged["input.camera_info_tolerance_s"],
        max_pixels=merged["input.max_pixels"],
        reliability=merged["qos.reliability"],
        qos_depth=merged["qos.depth"],
        output_qos_depth=merged["qos.output_depth"],
        output_reliability=merged["qos.output_reliability"],
        outputs={key: merged[f"output.{key}"] for key in OUTPUT_TOPICS},
        resolution=merged["output.resolution"],
        overlay_alpha=merged["output.overlay_alpha"],
        max_rate_hz=merged["processing.max_rate_hz"],
        batch_wait_ms=merged["processing.batch_wait_ms"],
        max_batch=merged["processing.max_batch"],
        memory_budget_mb=merged["processing.memory_budget_mb"],
        resize_mode=merged["processing.resize_mode"],
        depth_min=merged["depth.min"],
        depth_max=merged["depth.max"],
        rescale_for_camera=merged["depth.rescale_for_camera"],
        out_of_range=merged["depth.out_of_range"],
        points_stride=merged["points.stride"],
        points_organized=merged["points.organized"],
        palette_override=previous.palette_override if previous is not None and "palette.override" in trusted else parse_palette(merged["palette.override"]),
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
        rescale_for_camera=settings.rescale_for_camera, out_of_range=settings.out_of_range, overlay_alpha=settings.overlay_alpha,
        palette=palette,
    )


def memory_budget_note(settings: Settings) -> str:
    """One line for configure: the largest frame ``processing.memory_budget_mb`` admits with every enabled output, and
    how it relates to ``input.max_pixels`` (the limit checked before decoding, whatever the outputs)."""
    from mtl_perception.inference.memory_budget import example_size, largest_frame
    from mtl_perception.ros.outputs import graph_outputs

    if settings.memory_budget_mb <= 0:
        return f"no memory budget (processing.memory_budget_mb = 0): frames up to input.max_pixels = {settings.max_pixels} pixels are served"
    enabled = graph_outputs({key for key, on in settings.outputs.items() if on})
    if settings.resolution == "model" or not enabled:
        return (f"memory budget {settings.memory_budget_mb} MB: outputs at the network's resolution need little per camera pixel; "
                f"input.max_pixels = {settings.max_pixels} bounds the frames")
    limit = largest_frame(settings.memory_budget_mb, enabled, points_stride=settings.points_stride)
    if limit >= settings.max_pixels:
        return (f"memory budget {settings.memory_budget_mb} MB admits every frame input.max_pixels = {settings.max_pixels} allows "
                f"with every enabled output ({limit} pixels, about {example_size(limit)})")
    return (f"memory budget {settings.memory_budget_mb} MB admits frames up to {limit} pixels (about {example_size(limit)}) with every "
            f"enabled output at input resolution, below input.max_pixels = {settings.max_pixels}: larger frames are refused per frame "
            "unless fewer outputs are subscribed (or output.resolution: model)")


def network_precision(settings: Settings, kind: str, provider: str) -> str:
    """The precision of the network file the deploy graph is composed from (``FramePipeline(precision=...)``).

    ``model.precision: default`` is the backend's own: fp16 for tensorrt (native, or onnxruntime's TensorRT
    provider), fp32 otherwise; torch runs its checkpoint in its own precision (fp32 here).
    """
    if kind == "torch":
        return "fp32"
    if settings.precision != "default":
        return settings.precision
    return "fp16" if kind == "tensorrt" or provider == "tensorrt" else "fp32"


def backend_options(settings: Settings, kind: str, provider: str) -> dict[str, Any]:
    """Keyword options of ``create_backend`` for ``kind`` from the node's settings.

    ``provider`` (auto | cpu | cuda | tensorrt) is the onnxruntime execution provider; for torch it
    picks the device (tensorrt -> cuda); the native tensorrt backend always runs on the GPU.
    """
    precision = None if settings.precision == "default" else settings.precision
    if kind == "onnxruntime":
        # fp16 / int8 on onnxruntime run the precision file (inference/precision.py ``precision_model_file``), which
        # the caller opens instead of the model file; the TensorRT provider's FP16 flag set here applies to an FP32
        # file only: for a precision file ``tensorrt_precision_flags`` (onnxruntime_backend.py) leaves it off.
        options: dict[str, Any] = {"provider": provider, "intra_op_threads": settings.threads}
        if provider == "tensorrt":
            if settings.engine_cache_dir:
                options["tensorrt_cache_dir"] = settings.engine_cache_dir
            if precision == "fp16":
                options["tensorrt_fp16"] = True
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
    if spec.number_spellings:
        notes.append("unquoted nan / inf (numbers to ROS's YAML typing) are accepted as the strings")
    notes.append("changes at run time" if spec.runtime else ("fixed at start-up" if spec.read_only else "changes only while unconfigured"))
    desc = ParameterDescriptor(
        name=spec.name,
        type=types[type(spec.default)],
        description=spec.description,
        additional_constraints="; ".join(notes),
        read_only=spec.read_only,
        dynamic_typing=spec.number_spellings,
    )
    if spec.int_range:
        desc.integer_range = [IntegerRange(from_value=spec.int_range[0], to_value=spec.int_range[1], step=0)]
    if spec.float_range:
        desc.floating_point_range = [FloatingPointRange(from_value=spec.float_range[0], to_value=spec.float_range[1], step=0.0)]
    return desc


YAML_TYPE_NAMES = {"DOUBLE": "a number", "INTEGER": "a number", "BOOL": "a boolean", "STRING": "a string",
                   "BYTE_ARRAY": "a list", "BOOL_ARRAY": "a list", "INTEGER_ARRAY": "a list", "DOUBLE_ARRAY": "a list", "STRING_ARRAY": "a list"}


def declare_all(node: Any) -> None:
    """Declare every parameter of the table on ``node`` (values from launch/YAML overrides apply).

    A ``number_spellings`` value given as a number is stored as the string it means. An override of the wrong type
    raises ParameterError, one line naming the parameter, what ROS read and the fix (quote a string value).
    """
    from rclpy.exceptions import InvalidParameterTypeException
    from rclpy.parameter import Parameter

    for spec in SPECS:
        try:
            value = node.declare_parameter(spec.name, spec.default, descriptor(spec)).value
        except InvalidParameterTypeException as exc:
            raise ParameterError(type_error_message(spec, str(exc))) from None
        if spec.number_spellings:
            meant = normalise(spec.name, value)
            if not isinstance(meant, str):
                raise ParameterError(f"parameter '{spec.name}' must be one of {list(spec.choices)}, but ROS read {value!r} as "
                                     f"{YAML_TYPE_NAMES.get(Parameter.Type.from_parameter_value(value).name, 'another type')}: write one of those")
            if meant is not value:
                node.set_parameters([Parameter(spec.name, Parameter.Type.STRING, meant)])


def type_error_message(spec: ParamSpec, rclpy_message: str) -> str:
    """One line for an override of ``spec`` that rclpy refused for its type (``rclpy_message`` says what it read)."""
    import re

    read = re.search(r"to '(.*?)' of type '(\w+)'", rclpy_message)
    given, kind = (read.group(1), read.group(2)) if read else ("?", "?")
    wanted = {bool: "true or false", int: "an integer", float: "a number", str: "a string"}[type(spec.default)]
    if isinstance(spec.default, str):
        key = spec.name.rsplit(".", 1)[-1]
        return (f"parameter '{spec.name}' must be a string, but ROS read the unquoted value as {YAML_TYPE_NAMES.get(kind, kind)} ({kind} {given}): "
                f"quote it as written (in a parameter file {key}: \"...\", on the command line -p '{spec.name}:=\"...\"')")
    return f"parameter '{spec.name}' must be {wanted}, but ROS read {given!r} as {YAML_TYPE_NAMES.get(kind, kind)} ({kind}): give {wanted}"


def read_values(node: Any, names: Iterable[str] | None = None) -> dict[str, Any]:
    """Current values of the declared parameters, by name."""
    return {name: node.get_parameter(name).value for name in (names or SPEC_BY_NAME)}
