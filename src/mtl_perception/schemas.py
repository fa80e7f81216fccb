"""Schemas of the data that enters the package, validated with pydantic v2, and their one-line errors.

Why pydantic (v2, pydantic-core) rather than msgspec or more hand-written checks: its errors carry the
location (``loc``) and kind of every problem, which turns into one line that names the field; it validates
the package's existing dataclasses in place (``TypeAdapter``: the config stays the documented dataclasses of
``config.py``, with the constraints written next to each field); ``Strict`` and ``allow_inf_nan=False`` say
"an integer, not '120'" and "finite" per field; and it is on every ROS 2 developer's machine already
(Ubuntu 24.04 ships pydantic for many tools; here it is pinned from PyPI, v2 required). msgspec is faster
but validates its own Struct types only and has no per-field finiteness, and speed does not matter at
these boundaries (each is crossed once per file or message).

Where the schemas are used (each boundary validates once; nothing downstream re-checks):
- ``MetadataSchema``: the model file's metadata (``inference/metadata.py``), with ``MAX_CLASSES`` etc.
- the training config dataclasses (``config.py``) carry their constraints as ``Annotated`` fields, built from the
  field types below.
- ``PaletteSchema``: ``palette.override`` (``ros/parameters.py``).
- ``CameraInfoSchema``: sensor_msgs/CameraInfo (``inference/camera_info.py``).
- ``flag``: argparse types for every numeric command-line flag (finite, in range).
"""
from __future__ import annotations

import argparse
import math
from typing import Annotated, Any, Callable, Literal, Sequence

from pydantic import BaseModel, ConfigDict, Field, Strict, TypeAdapter, ValidationError, field_validator, model_validator

from mtl_perception.safeload import shorten

# ---------------------------------------------------------------------------------------------- limits
MAX_CLASSES = 1024  # semantic classes a model file may declare (NYUv2 has 40, ADE20K 150, COCO-stuff 182)
# Largest network input side (pixels): what a training config may ask for (``config.py``, ``Side``) and what a model
# file may declare (``MetadataSchema``). One bound for both, because every model file is exported from a config (and
# ``export --height/--width`` stop there too): a file declaring more did not come from this package. It is also
# the bound on what a model file can make the node allocate: the deploy graph's buffers grow with the side squared
# (4096 x 4096 x 3 float32 is 201 MB before the network runs).
MAX_INPUT_SIDE = 4096


# ---------------------------------------------------------------------------------------------- field types
# The package's one set of constrained field types (the config dataclasses, the model metadata, the folder
# dataset's class file); ``Strict``: an integer is not '120' nor 120.0, a bool is not 1.
StrictStr = Annotated[str, Strict()]
StrictBool = Annotated[bool, Strict()]
PositiveInt = Annotated[int, Strict(), Field(ge=1)]
NonNegativeInt = Annotated[int, Strict(), Field(ge=0)]
NonNegativeFloat = Annotated[float, Strict(), Field(ge=0, allow_inf_nan=False)]
Seed = Annotated[int, Strict(), Field(ge=0, le=2**32 - 1)]
Side = Annotated[int, Strict(), Field(ge=32, le=MAX_INPUT_SIDE)]  # a network input side a config asks for
Depth = Annotated[float, Strict(), Field(gt=0, le=1e4, allow_inf_nan=False)]  # metres
Text = Annotated[str, Strict(), Field(max_length=4096)]
Word = Annotated[str, Strict(), Field(max_length=64)]
Weights = Annotated[dict[Word, NonNegativeFloat], Field(max_length=16)]
Options = Annotated[dict[Word, Any], Field(max_length=64)]
Channel = Annotated[int, Strict(), Field(ge=0, le=255)]
Colour = Annotated[list[Channel], Field(min_length=3, max_length=3)]
Name = Annotated[str, Strict(), Field(min_length=1, max_length=128)]


# ---------------------------------------------------------------------------------------------- errors
def _phrase(error: dict[str, Any]) -> str:
    kind, ctx = error["type"], error.get("ctx") or {}
    words = {
        "int_type": "must be an integer", "int_from_float": "must be an integer", "int_parsing": "must be an integer",
        "float_type": "must be a number", "float_parsing": "must be a number", "finite_number": "must be a finite number (not NaN or infinity)",
        "bool_type": "must be true or false", "bool_parsing": "must be true or false", "string_type": "must be a string",
        "list_type": "must be a list", "dict_type": "must be a mapping of key: value", "dataclass_type": "must be a mapping of key: value",
        "model_type": "must be a mapping of key: value", "model_attributes_type": "must be a mapping of key: value",
        "missing": "is missing", "missing_argument": "is missing", "unexpected_keyword_argument": "is not a known key",
        "extra_forbidden": "is not a known key", "invalid_key": "has a key that is not a string",
        "recursion_loop": "is nested too deeply",
    }
    if kind in words:
        return words[kind]
    if kind == "greater_than":
        return "must be positive" if ctx.get("gt") == 0 else f"must be greater than {ctx.get('gt')}"
    if kind == "greater_than_equal":
        return f"must be at least {ctx.get('ge')}"
    if kind == "less_than":
        return f"must be below {ctx.get('lt')}"
    if kind == "less_than_equal":
        return f"must be at most {ctx.get('le')}"
    if kind == "literal_error":
        return f"must be one of {ctx.get('expected')}"
    if kind in ("too_short", "too_long"):
        field = ctx.get("field_type", "Value").lower()
        bound = "at least" if kind == "too_short" else "at most"
        count = ctx.get("min_length") if kind == "too_short" else ctx.get("max_length")
        return f"must have {bound} {count} item(s) ({field})" if field in ("list", "tuple", "set", "dictionary") else f"must have {bound} {count} item(s)"
    if kind in ("string_too_short", "string_too_long"):
        bound = "at least" if kind == "string_too_short" else "at most"
        count = ctx.get("min_length") if kind == "string_too_short" else ctx.get("max_length")
        return f"must be {bound} {count} character(s) long"
    if kind == "string_pattern_mismatch":
        return f"must match {ctx.get('pattern')}"
    if kind in ("value_error", "assertion_error"):
        message = str(ctx.get("error", error["msg"]))
        return message.removeprefix("Value error, ").removeprefix("Assertion failed, ")
    return error["msg"][:1].lower() + error["msg"][1:]


def dotted(loc: Sequence[Any], prefix: Sequence[str] = ()) -> str:
    """('train', 'steps') -> 'train.steps'; list indices as [i]."""
    text = ""
    for part in (*prefix, *loc):
        if isinstance(part, int):
            text += f"[{part}]"
        else:
            text += ("." if text else "") + str(part)
    return text or "value"


def describe_errors(exc: ValidationError, prefix: Sequence[str] = (), label: str = "", show_input: bool = True) -> str:
    """One line for a ValidationError: the first problem (field, what it must be, what it got) and how many more."""
    errors = exc.errors(include_url=False)
    first = errors[0]
    field = dotted(first["loc"], prefix)
    phrase = _phrase(first)
    got = ""
    if show_input and first["type"] not in ("missing", "missing_argument", "unexpected_keyword_argument", "extra_forbidden", "value_error"):
        value = first.get("input")
        got = f", got {shorten(repr(value), 60)}" + (f" ({type(value).__name__})" if not isinstance(value, (dict, list)) else "")
    more = f" (and {len(errors) - 1} more problem(s))" if len(errors) > 1 else ""
    name = f"{label}{field}" if label else field
    if first["type"] == "value_error" and not first["loc"]:  # a whole-object rule (model_validator)
        context = label.strip().removesuffix("field").strip(" .:")
        if not context or phrase.startswith(context.split()[0]):
            return f"{phrase}{more}"
        return f"{context}: {phrase}{more}"
    return f"{name} {phrase}{got}{more}"


# ---------------------------------------------------------------------------------------------- model metadata
Task = Literal["depth", "semantic", "normals"]
TASK_ORDER = ("depth", "semantic", "normals")


class MetadataSchema(BaseModel):
    """The model file's metadata (``inference/metadata.py`` ``ModelMetadata``): types, ranges, lengths, consistency."""

    model_config = ConfigDict(extra="ignore", strict=True)

    tasks: Annotated[list[Task], Field(min_length=1, max_length=3)]
    output_names: Annotated[dict[StrictStr, Annotated[str, Field(min_length=1, max_length=128)]], Field(max_length=8)]
    class_names: Annotated[list[Name], Field(max_length=MAX_CLASSES)]
    palette: Annotated[list[Colour], Field(max_length=MAX_CLASSES)]
    input_height: Annotated[int, Field(ge=8, le=MAX_INPUT_SIDE)]
    input_width: Annotated[int, Field(ge=8, le=MAX_INPUT_SIDE)]
    channel_order: Literal["rgb", "bgr"] = "rgb"
    mean: Annotated[list[Annotated[float, Field(ge=-1.0, le=2.0, allow_inf_nan=False)]], Field(min_length=3, max_length=3)] = [0.485, 0.456, 0.406]
    std: Annotated[list[Annotated[float, Field(gt=0.0, le=10.0, allow_inf_nan=False)]], Field(min_length=3, max_length=3)] = [0.229, 0.224, 0.225]
    depth_units: Literal["m"] = "m"
    depth_min: Annotated[float, Field(ge=0.0, le=1e4, allow_inf_nan=False)] = 0.1
    depth_max: Annotated[float, Field(gt=0.0, le=1e4, allow_inf_nan=False)] = 10.0
    focal_length_px: Annotated[float, Field(ge=0.0, le=1e7, allow_inf_nan=False)] = 0.0
    depth_scaling: Literal["focal", "none"] = "focal"
    architecture: Annotated[str, Field(max_length=64)] = "hard"
    encoder: Annotated[str, Field(max_length=64)] = "resnet18"
    checkpoint_sha256: Annotated[str, Field(max_length=64, pattern=r"^[0-9a-f]*$")] = ""
    config_hash: Annotated[str, Field(max_length=64, pattern=r"^[0-9a-f]*$")] = ""
    ignore_index: Annotated[int, Field(ge=0, le=255)] = 255
    version: Annotated[int, Field(ge=1)] = 1

    @field_validator("tasks")
    @classmethod
    def _unique_tasks(cls, tasks: list[str]) -> list[str]:
        if len(set(tasks)) != len(tasks):
            raise ValueError(f"lists a task twice ({tasks})")
        return tasks

    @model_validator(mode="after")
    def _consistent(self) -> "MetadataSchema":
        missing = [t for t in self.tasks if t not in self.output_names]
        if missing:
            raise ValueError(f"output_names lacks the output of task(s) {missing}")
        if not self.depth_min < self.depth_max:
            raise ValueError(f"depth_min ({self.depth_min}) must be below depth_max ({self.depth_max})")
        if "semantic" in self.tasks:
            if len(self.class_names) < 2:
                raise ValueError(f"a semantic model needs at least 2 class names, got {len(self.class_names)}")
            if len(self.palette) != len(self.class_names):
                raise ValueError(f"model has {len(self.class_names)} class names but {len(self.palette)} palette colours")
        return self


# ---------------------------------------------------------------------------------------------- palette
PALETTE_ADAPTER: TypeAdapter = TypeAdapter(Annotated[list[Colour], Field(min_length=1, max_length=MAX_CLASSES)])


# ---------------------------------------------------------------------------------------------- camera info
# A pinhole focal length f (pixels) gives a horizontal field of view 2 atan(W / 2f): f = W / 100 is a 177.7°
# view (beyond any pinhole lens; fisheyes publish their own model) and f = 1000 W is 0.06° (beyond any
# telescope lens on a robot). Outside that the calibration is broken (often 1e-30 or 1e30 from a bad driver).
FOCAL_MIN_PER_PIXEL = 1e-2
FOCAL_MAX_PER_PIXEL = 1e3


class CameraInfoSchema(BaseModel):
    """The fields of sensor_msgs/CameraInfo the package reads: size, K, P (``inference/camera_info.py``)."""

    model_config = ConfigDict(extra="ignore")

    width: Annotated[int, Field(ge=1, le=1 << 16)]
    height: Annotated[int, Field(ge=1, le=1 << 16)]
    k: Annotated[list[float], Field(min_length=9, max_length=9)]
    p: Annotated[list[float], Field(min_length=12, max_length=12)]

    @model_validator(mode="after")
    def _intrinsics(self) -> "CameraInfoSchema":
        if not all(math.isfinite(v) for v in self.k):
            raise ValueError(f"camera_info K contains NaN or infinity ({self.k}); recalibrate the camera")
        if not all(math.isfinite(v) for v in self.p):
            raise ValueError(f"camera_info P contains NaN or infinity ({self.p}); recalibrate the camera")
        fx, fy = self.k[0], self.k[4]
        if fx <= 0.0 or fy <= 0.0:
            raise ValueError(f"camera_info has focal length fx={fx}, fy={fy}; an uncalibrated camera publishes zeros: "
                             "calibrate it (camera_calibration) or disable output.points")
        for name, value, side in (("K fx", fx, self.width), ("K fy", fy, self.height), ("P fx", self.p[0], self.width), ("P fy", self.p[5], self.height)):
            if name.startswith("P") and value == 0.0:  # no rectified projection: K is used
                continue
            low, high = FOCAL_MIN_PER_PIXEL * side, FOCAL_MAX_PER_PIXEL * side
            if not low <= value <= high:
                raise ValueError(f"camera_info focal length {name}={value:.6g} px is outside the sane range [{low:.6g}, {high:.6g}] px "
                                 f"for {self.width}x{self.height} images (field of view between 0.06 and 178 degrees); recalibrate the camera")
        return self


# ---------------------------------------------------------------------------------------------- CLI flags
def flag(kind: type, *, ge: float | None = None, gt: float | None = None, le: float | None = None, lt: float | None = None,
         allow_inf: bool = False, none_word: str | None = None) -> Callable[[str], Any]:
    """An argparse ``type=`` for a numeric flag: parsed by pydantic, finite (unless ``allow_inf``: +-inf pass, NaN never), in range.

    ``none_word`` (e.g. 'none') parses to None. The error names the constraint; argparse names the flag.
    """
    constraints = {k: v for k, v in (("ge", ge), ("gt", gt), ("le", le), ("lt", lt)) if v is not None}
    if kind is float:
        adapter: TypeAdapter = TypeAdapter(Annotated[float, Field(allow_inf_nan=allow_inf, **constraints)])
    else:
        adapter = TypeAdapter(Annotated[int, Field(**constraints)])

    def parse(text: str) -> Any:
        if none_word is not None and text.strip().lower() == none_word:
            return None
        try:
            if kind is float and allow_inf and math.isnan(float(text)):
                raise argparse.ArgumentTypeError(f"must be a number (not NaN), got '{shorten(text, 40)}'")
            value = adapter.validate_python(text.strip()) if kind is int else adapter.validate_python(float(text))
        except ValueError as exc:
            if isinstance(exc, ValidationError):
                raise argparse.ArgumentTypeError(f"{_phrase(exc.errors()[0])}, got '{shorten(text, 40)}'") from None
            raise argparse.ArgumentTypeError(f"must be a number, got '{shorten(text, 40)}'") from None
        return value

    parse.__name__ = kind.__name__  # argparse's "invalid <name> value" message
    return parse
