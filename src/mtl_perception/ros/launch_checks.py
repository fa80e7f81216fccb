"""Checks of ``launch/mtl_perception.launch.py``'s arguments, made before the launch starts any process.

Plain Python (standard library and PyYAML; ``ament_index_python`` only to look for rviz2), so that ``ros2
launch`` can import it with the distribution's interpreter and the tests can run it without ROS installed.
Each bad value raises ``LaunchArgumentError`` with one line that names the argument, the value and the fix.
"""
from __future__ import annotations

import difflib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

LOG_LEVELS = ("debug", "info", "warn", "error", "fatal")
# "" keeps the parameter file's value; the rest are the node's own choices (ros/parameters.py, test-checked)
CHOICES = {
    "backend": ("", "onnxruntime", "tensorrt", "torch"),
    "provider": ("", "auto", "cpu", "cuda", "tensorrt"),
    "precision": ("", "default", "fp32", "fp16", "int8"),
}
# the files each backend reads (inference/backends MODEL_SUFFIXES, test-checked; not imported: that
# package needs NumPy and the backends' libraries, which the launch process does not)
MODEL_SUFFIXES = {"onnxruntime": (".onnx",), "tensorrt": (".onnx",), "torch": (".pt", ".pth")}
DEFAULT_BACKEND = "onnxruntime"
DEFAULT_MODEL = "default.onnx"  # the node's model when model.path is empty (share/mtl_perception/models/)
# what launch's IfCondition accepts, case-insensitively
BOOLEANS = {"true": True, "1": True, "false": False, "0": False}


class LaunchArgumentError(ValueError):
    """A launch argument that would make the node fail or silently do something else."""


@dataclass(frozen=True)
class NodeLaunch:
    """What the launch file starts: the node's parameter file, overrides and log level, and whether RViz too."""

    params_file: str
    parameters: dict[str, Any]
    log_level: str
    rviz: bool  # start rviz2
    rviz_missing: bool = False  # rviz:=true, but rviz2 is not installed: the node starts alone, with a warning


def boolean(name: str, value: str) -> bool:
    try:
        return BOOLEANS[value.strip().lower()]
    except KeyError:
        raise LaunchArgumentError(f"{name}:={value!r} is not a boolean: use true or false") from None


def read_params_file(path: str) -> dict[str, Any]:
    """The node parameters of a ROS 2 parameter YAML, flattened to dotted names (``model.path``)."""
    if not path:
        raise LaunchArgumentError("params_file:='' is empty: pass a parameter YAML (the shipped one is share/mtl_perception/config/mtl_perception.yaml)")
    file = Path(path).expanduser()
    if not file.is_file():
        raise LaunchArgumentError(f"params_file:={path} does not exist or is not a file")
    try:
        document = yaml.safe_load(file.read_text())
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise LaunchArgumentError(f"params_file:={path} is not readable YAML ({reason})") from None
    sections = [v["ros__parameters"] for v in document.values() if isinstance(v, dict) and isinstance(v.get("ros__parameters"), dict)] if isinstance(document, dict) else []
    if not sections:
        raise LaunchArgumentError(f"params_file:={path} has no '<node name or /**>: ros__parameters:' section, so the node would run on its built-in defaults")
    flat: dict[str, Any] = {}

    def walk(prefix: str, node: Mapping[str, Any]) -> None:
        for key, value in node.items():
            name = f"{prefix}{key}"
            if isinstance(value, Mapping):
                walk(f"{name}.", value)
            else:
                flat[name] = value

    for section in sections:
        walk("", section)
    return flat


def check_arguments(values: Mapping[str, str], rviz_installed: bool | None = None) -> NodeLaunch:
    """Validate the launch arguments (name -> performed string) and turn them into what the launch starts.

    ``rviz_installed``: whether rviz2 can be started; None looks it up (``rviz2_installed``).
    """
    log_level = values["log_level"].strip().lower()
    if log_level not in LOG_LEVELS:
        raise LaunchArgumentError(f"log_level:={values['log_level']!r} is not one of {', '.join(LOG_LEVELS)}")
    for name, choices in CHOICES.items():
        if values[name] not in choices:
            raise LaunchArgumentError(f"{name}:={values[name]!r} is not one of {', '.join(c for c in choices if c)} (or empty: the parameter file's)")
    file_parameters = read_params_file(values["params_file"])
    backend = values["backend"] or str(file_parameters.get("model.backend") or DEFAULT_BACKEND)
    model = values["model"] or str(file_parameters.get("model.path") or "")
    suffixes = MODEL_SUFFIXES.get(backend)  # an unknown backend in the file is the node's to report
    if suffixes and not (model or DEFAULT_MODEL).endswith(suffixes):
        shown = model or f"the default model ({DEFAULT_MODEL})"
        raise LaunchArgumentError(
            f"backend {backend} reads {' or '.join(suffixes)} files, but the model is {shown}: "
            f"pass model:=<a {suffixes[0]} file> or a backend for that file"
        )
    if model and not Path(model).expanduser().is_file():
        source = "model:=" if values["model"] else f"model.path in {values['params_file']}: "
        raise LaunchArgumentError(f"{source}{model} does not exist or is not a file")
    profile = values["fastdds_profile"]
    if profile and not Path(profile).expanduser().is_file():
        raise LaunchArgumentError(f"fastdds_profile:={profile} does not exist or is not a file (empty keeps the environment's)")
    overrides: dict[str, Any] = {"input.compressed": boolean("compressed", values["compressed"])}
    for name in ("autostart", "use_sim_time"):
        if values[name]:
            overrides[name] = boolean(name, values[name])
    for argument, parameter in (("model", "model.path"), ("backend", "model.backend"), ("provider", "model.provider"), ("precision", "model.precision")):
        if values[argument]:
            overrides[parameter] = values[argument]
    rviz = boolean("rviz", values["rviz"])
    start_rviz = rviz and (rviz2_installed() if rviz_installed is None else rviz_installed)
    if start_rviz and not Path(values["rviz_config"]).expanduser().is_file():
        raise LaunchArgumentError(f"rviz_config:={values['rviz_config']} does not exist or is not a file")
    return NodeLaunch(values["params_file"], overrides, log_level, start_rviz, rviz_missing=rviz and not start_rviz)


def misspelt_arguments(given: Iterable[str], declared: Iterable[str]) -> list[str]:
    """A warning for each given launch argument that is not declared but close to one that is.

    ``ros2 launch`` keeps undeclared ``name:=value`` pairs without a word (so ``autostrat:=false`` would be
    ignored). Only near misses are reported: a parent launch file's own arguments are not errors.
    """
    declared = list(declared)
    hints = []
    for name in given:
        close = difflib.get_close_matches(name, declared, n=1, cutoff=0.75) if name not in declared else []
        if close:
            hints.append(f"launch argument {name!r} is not declared by this launch file and is ignored: did you mean {close[0]!r}? (--show-args lists them)")
    return hints


def rviz2_installed() -> bool:
    """Whether launch_ros can start rviz2: the package in the ament index and its executable in lib/rviz2."""
    try:
        from ament_index_python.packages import get_package_prefix
    except ImportError:
        return False
    try:
        prefix = get_package_prefix("rviz2")
    except (LookupError, ValueError):  # PackageNotFoundError is a KeyError
        return False
    return (Path(prefix) / "lib" / "rviz2" / "rviz2").is_file()
