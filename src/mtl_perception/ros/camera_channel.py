"""One camera of the node: its topics, its newest frame, its camera info by stamp, its publishers and figures.

The node serves one camera (the default: ``input.*`` topics, outputs under the node's namespace) or the
cameras named in the ``cameras.names`` parameter, each with ``cameras.<name>.image_topic``,
``.camera_info_topic``, ``.compressed`` and ``.namespace`` (outputs under ``<namespace>/``; default the
camera's name). Every camera keeps its own frame mailbox, camera-info buffer, publishers, counters and
latency window, so one camera's bad input or silence stays its own; the model and backend are shared.
"""
from __future__ import annotations

import collections
import re
import threading
from dataclasses import dataclass
from typing import Any

from mtl_perception.ros.frame_slot import Frame, LatestFrameSlot
from mtl_perception.ros.stats import Counters, LatencyWindow, RateMeter

CAMERA_NAMES_PARAMETER = "cameras.names"  # a list beside the cameras.<name>.* keys: one YAML mapping holds both
CAMERA_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_]{0,63}\Z")
CAMERA_INFO_HISTORY = 16  # camera-info messages kept per camera for matching by stamp
CAMERA_PARAMETERS = ("image_topic", "camera_info_topic", "compressed", "namespace")
CAMERA_PARAMETER_HELP = {
    "image_topic": "This camera's image topic (sensor_msgs/Image; <topic>/compressed when compressed)",
    "camera_info_topic": "This camera's camera info topic (matched to its images by stamp)",
    "compressed": "Subscribe to <image_topic>/compressed (JPEG/PNG) instead of raw images",
    "namespace": "Namespace of this camera's outputs (<namespace>/depth, ...); default: the camera's name",
}


class CameraConfigError(ValueError):
    """The ``cameras`` parameters do not describe a usable set of cameras."""


@dataclass(frozen=True)
class CameraSpec:
    """Where one camera's images come from and where its outputs go."""

    name: str  # "" for the node's single default camera
    image_topic: str
    camera_info_topic: str
    compressed: bool
    namespace: str  # outputs are published under it ("" = the node's own namespace)

    @property
    def input_topic(self) -> str:
        return f"{self.image_topic}/compressed" if self.compressed else self.image_topic

    def output_topic(self, relative: str) -> str:
        return f"{self.namespace}/{relative}" if self.namespace else relative

    @property
    def label(self) -> str:
        return self.name or "camera"


def camera_defaults(name: str) -> dict[str, Any]:
    """The per-camera parameter defaults of camera ``name``."""
    return {"image_topic": f"{name}/image", "camera_info_topic": f"{name}/camera_info", "compressed": False, "namespace": name}


def camera_specs(names: list[str], values: dict[str, dict[str, Any]]) -> list[CameraSpec]:
    """CameraSpecs of the named cameras from their parameter values; CameraConfigError naming the problem."""
    if len(set(names)) != len(names):
        raise CameraConfigError(f"cameras {names} name a camera twice; give each camera one unique name")
    specs = []
    for name in names:
        if not CAMERA_NAME.match(name) or name == "names":
            raise CameraConfigError(f"camera name '{name[:64]}' is not a valid name: use letters, digits and '_', starting with a letter")
        value = {**camera_defaults(name), **values.get(name, {})}
        for key in ("image_topic", "camera_info_topic"):
            if not isinstance(value[key], str) or not value[key].strip():
                raise CameraConfigError(f"cameras.{name}.{key} must name a topic")
        specs.append(CameraSpec(name, value["image_topic"], value["camera_info_topic"], bool(value["compressed"]), str(value["namespace"]).strip("/")))
    namespaces = [spec.namespace for spec in specs]
    if len(set(namespaces)) != len(namespaces):
        raise CameraConfigError(f"cameras publish into the same namespace ({namespaces}); give each camera its own cameras.<name>.namespace")
    return specs


class CameraInfoBuffer:
    """The last few valid camera-info messages of one camera, matched to frames by header stamp."""

    def __init__(self, size: int = CAMERA_INFO_HISTORY) -> None:
        self._infos: collections.deque[tuple[int, Any]] = collections.deque(maxlen=size)
        self._lock = threading.Lock()

    def add(self, info: Any) -> None:
        with self._lock:
            self._infos.append((_stamp_ns(info.header.stamp), info))

    def clear(self) -> None:
        with self._lock:
            self._infos.clear()

    def latest(self) -> Any | None:
        with self._lock:
            return self._infos[-1][1] if self._infos else None

    def match(self, stamp: Any, tolerance_s: float) -> tuple[Any | None, bool]:
        """(camera info for a frame stamp, whether it matched within ``tolerance_s``).

        The message with the nearest stamp when it lies within the tolerance; otherwise the newest one
        (drivers that publish camera info once, latched, or more slowly than images), reported unmatched.
        """
        target = _stamp_ns(stamp)
        with self._lock:
            if not self._infos:
                return None, False
            nearest_stamp, nearest = min(self._infos, key=lambda item: abs(item[0] - target))
            if abs(nearest_stamp - target) <= tolerance_s * 1e9:
                return nearest, True
            return self._infos[-1][1], False


def _stamp_ns(stamp: Any) -> int:
    return int(stamp.sec) * 1_000_000_000 + int(stamp.nanosec)


class CameraChannel:
    """Runtime state of one camera (see the module docstring)."""

    def __init__(self, spec: CameraSpec, arrivals: threading.Condition | None = None) -> None:
        self.spec = spec
        self.slot: LatestFrameSlot[Frame] = LatestFrameSlot(arrivals)  # arrivals: the condition the inference stage waits on
        self.infos = CameraInfoBuffer()
        self.publishers: dict[str, Any] = {}
        self.class_publisher: Any = None
        self.counters = Counters()
        self.latency = LatencyWindow()
        self.input_rate = RateMeter()
        self.output_rate = RateMeter()
        self.dropped_before_publishing = 0
        self.layout: tuple[Any, ...] | None = None  # (shape, encoding) of its last frame: cameras of one layout share batches
        self.counts_at_last_tick: dict[str, int] = {}
