"""``FramePipeline``: one camera frame -> ready-to-publish buffers, the same for the node and ``bag-eval``.

Built once (at node activation, or per evaluated bag) from the model file, the backend and the output
settings; it holds everything that does not change per frame: the deploy graph and its session per
camera layout (a bounded cache of a few sizes and output sets), the resolved depth range, the palette,
and the camera geometry cached per camera-info message. Per frame it only wraps the camera buffer and
calls the graph:

    pixels (H, W, C) uint8 view -> deploy graph (resize, normalise, network, resize back, argmax,
    colours, points) -> {output name: array} (see ``inference/deploy_graph.py``)

Runtime settings (depth range, overlay alpha, palette, focal-length rescale, intrinsics) are graph
inputs: changing them never rebuilds. Resize mode, output size, points stride, the output set and a
new camera size select another graph (built once, then cached).

The torch backend runs a checkpoint, not an ONNX file: there the pre- and post-processing graphs run in
ONNX Runtime around the torch network (the same graphs, split where the network sits).
"""
from __future__ import annotations

import time
from collections import OrderedDict
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Collection, Mapping

import numpy as np

from mtl_perception.colorize import palette_from_sequence
from mtl_perception.inference.camera_info import CameraInfoError, image_size, scale_camera_info
from mtl_perception.inference.deploy_graph import (
    ENCODING_LAYOUT,
    GRAPH_OUTPUTS,
    IMAGE_INPUT,
    DeployLayout,
    DeployOptions,
    compose_deploy_parts,
    deploy_graph_file,
    layout_for,
)
from mtl_perception.inference.metadata import ModelMetadata

DEFAULT_CACHE_DIR = Path.home() / ".cache" / "mtl_perception" / "deploy"
DEFAULT_MAX_GRAPHS = 4
OUT_OF_RANGE = {"nan": (np.nan, np.nan), "inf": (-np.inf, np.inf)}  # depth below / above the range


class CameraInfoMismatch(CameraInfoError):
    """The camera info describes another image size than the frame's."""


@dataclass(frozen=True)
class FrameSettings:
    """The output settings a pipeline serves (node parameters, bag-eval flags)."""

    resize_mode: str = "letterbox"  # letterbox | stretch
    out_size: str = "input"  # input (camera resolution) | model (network resolution)
    points_stride: int = 4
    points_organized: bool = False
    depth_min: float = 0.0  # metres; 0 = the model's own minimum
    depth_max: float = 0.0  # metres; 0 = the model's own maximum
    rescale_for_camera: bool = True  # depth follows the camera's focal length (needs camera info)
    out_of_range: str = "nan"  # depth outside the range: nan (REP-118, no estimate) | inf (REP-117: -Inf too near, +Inf too far)
    overlay_alpha: float = 0.5
    palette: tuple[tuple[int, int, int], ...] | None = None  # RGB per class; None = the model's


@dataclass
class CameraGeometry:
    """A camera info message at one frame size, resolved once: what the graph and the messages need."""

    info_at_output: Any  # CameraInfo scaled to the output resolution (published on depth/camera_info)
    intrinsics: np.ndarray  # float32 (5,): fx, fy, cx, cy, skew at the output resolution
    depth_scale: np.ndarray  # float32 (1,): camera focal / training focal at the network input


@dataclass
class FrameOutputs:
    """The buffers of one frame and how long the graph took."""

    arrays: dict[str, np.ndarray]
    geometry: CameraGeometry | None
    out_size: tuple[int, int]  # (height, width) of the output images
    seconds: dict[str, float] = field(default_factory=dict)  # build (a new graph), prepare (wrap the inputs), graph (the call)


def graph_input(pixels: np.ndarray, encoding: str) -> tuple[np.ndarray, str]:
    """Camera pixels as the deploy graph takes them: a uint8 (H, W, C) view and its graph encoding.

    8-bit encodings pass as they are (no copy when the buffer is contiguous); 16-bit images keep their
    top 8 bits (one conversion). ValueError names what is unsupported.
    """
    enc = encoding.strip()
    array = np.asarray(pixels)
    if enc in ("mono16", "16UC1", "bgr16", "rgb16", "bgra16", "rgba16"):
        if array.dtype != np.uint16:
            raise ValueError(f"{enc} image must be uint16, got {array.dtype}")
        array = (array >> 8).astype(np.uint8)
        enc = {"mono16": "mono8", "16UC1": "mono8", "bgr16": "bgr8", "rgb16": "rgb8", "bgra16": "bgra8", "rgba16": "rgba8"}[enc]
    if enc not in ENCODING_LAYOUT:
        raise ValueError(f"unsupported image encoding '{encoding[:40]}'; supported: {sorted(ENCODING_LAYOUT) + ['mono16', '16UC1']}")
    channels = ENCODING_LAYOUT[enc][0]
    if array.dtype != np.uint8:
        raise ValueError(f"{enc} image must be uint8, got {array.dtype}")
    if array.ndim == 2 and channels == 1:
        array = array[:, :, None]
    if array.ndim != 3 or array.shape[2] != channels:
        raise ValueError(f"{enc} image must have shape (H, W{'' if channels == 1 else f', {channels}'}), got {array.shape}")
    return np.ascontiguousarray(array), enc


class _OnnxRunner:
    """A backend that runs the whole deploy graph file (onnxruntime, tensorrt)."""

    def __init__(self, backend: Any) -> None:
        self.backend = backend
        self.input_names = set(getattr(backend, "input_names", ()) or ())

    def run(self, feeds: Mapping[str, np.ndarray], outputs: list[str]) -> dict[str, np.ndarray]:
        used = {k: v for k, v in feeds.items() if not self.input_names or k in self.input_names}
        return self.backend.run(used, outputs)

    def close(self) -> None:
        self.backend.close()


class _SplitRunner:
    """Pre- and post-processing graphs in ONNX Runtime around a backend that runs only the network (torch)."""

    def __init__(self, network: Any, pre: Any, post: Any) -> None:
        import onnxruntime as ort

        self.network = network
        self.pre = ort.InferenceSession(pre.SerializeToString(), providers=["CPUExecutionProvider"])
        self.post = ort.InferenceSession(post.SerializeToString(), providers=["CPUExecutionProvider"])
        self.post_inputs = [i.name for i in self.post.get_inputs()]

    def run(self, feeds: Mapping[str, np.ndarray], outputs: list[str]) -> dict[str, np.ndarray]:
        net_input, view = self.pre.run(["pre_net_input", "pre_view"], {IMAGE_INPUT: feeds[IMAGE_INPUT]})
        meta = self.network.metadata
        values = {f"net_{meta.output_names[task]}": value for task, value in self.network.infer(net_input).items()}
        values["pre_view"] = view
        values.update(feeds)
        return dict(zip(outputs, self.post.run(outputs, {name: values[name] for name in self.post_inputs})))

    def close(self) -> None:
        self.network.close()


def probe_backend(kind: str, options: Mapping[str, Any]) -> None:
    """Fail now (BackendError) when ``kind`` cannot run here: its library, provider or GPU is missing.

    Graphs are built per camera layout on the first frame; this makes a backend that can never load
    fail at activation instead, where the node falls back.
    """
    from mtl_perception.inference.backends import backend_class

    if kind == "onnxruntime":
        import onnxruntime as ort

        from mtl_perception.inference.backends.onnxruntime_backend import resolve_providers

        resolve_providers(str(options.get("provider", "auto")), ort.get_available_providers())
    elif kind == "tensorrt":
        from mtl_perception.inference.backends.tensorrt_backend import gpu_identity, import_tensorrt

        import_tensorrt()
        gpu_identity(int(options.get("device", 0) or 0))
    else:
        backend_class(kind)


class FramePipeline:
    """Camera frames -> output buffers through the deploy graph (see the module docstring)."""

    def __init__(self, model_path: str | Path, backend: str = "onnxruntime", backend_options: Mapping[str, Any] | None = None,
                 settings: FrameSettings | None = None, cache_dir: str | Path | None = None, max_graphs: int = DEFAULT_MAX_GRAPHS) -> None:
        from mtl_perception.inference.backends import create_backend, validate_model_path

        self.model_path = validate_model_path(backend, model_path)
        probe_backend(backend, backend_options or {})
        self.backend_kind = backend
        self.backend_options = dict(backend_options or {})
        self.cache_dir = Path(cache_dir) if cache_dir else DEFAULT_CACHE_DIR
        self.max_graphs = max(1, int(max_graphs))
        self._network: Any = None
        self._model: Any = None
        if backend == "torch":  # the network stays in torch; metadata as its export would write it
            self._network = create_backend(backend, self.model_path, **self.backend_options)
            self.metadata: ModelMetadata = self._network.metadata
        else:  # held in memory: a file changed on disk later does not reach graphs built later
            from mtl_perception.fileio import file_sha256
            from mtl_perception.inference.model_file import describe_onnx, load_onnx_file

            self._model_sha256 = file_sha256(self.model_path)
            self._model = load_onnx_file(self.model_path)
            self.metadata = describe_onnx(self._model, str(self.model_path))
        self._create_backend = create_backend
        self._graphs: OrderedDict[DeployOptions, tuple[Any, DeployLayout]] = OrderedDict()
        self._geometry_info: Any = None  # the message the cached geometry was resolved from
        self._geometry_key: tuple[Any, ...] | None = None
        self._geometry: CameraGeometry | None = None
        self.graphs_built = 0
        self.settings = FrameSettings()
        self._runtime: dict[str, np.ndarray] = {}
        self.configure(settings or FrameSettings())

    # ------------------------------------------------------------------ settings
    def configure(self, settings: FrameSettings) -> None:
        """Apply output settings (ValueError, nothing changed, when they do not fit the model)."""
        meta = self.metadata
        depth_min = settings.depth_min or meta.depth_min
        depth_max = settings.depth_max or meta.depth_max
        if not 0.0 <= depth_min < depth_max:
            raise ValueError(f"depth range [{depth_min}, {depth_max}] m is empty; the model covers [{meta.depth_min}, {meta.depth_max}] m")
        classes = max(len(meta.class_names), 1)
        palette = palette_from_sequence(settings.palette or meta.palette or None, classes)[:classes]
        if settings.out_of_range not in OUT_OF_RANGE:
            raise ValueError(f"unknown out-of-range depth value '{settings.out_of_range}'; valid: {sorted(OUT_OF_RANGE)}")
        if not 0.0 <= settings.overlay_alpha <= 1.0:
            raise ValueError(f"overlay alpha must lie in [0, 1], got {settings.overlay_alpha}")
        self._runtime = {
            "depth_range": np.array([depth_min, depth_max], dtype=np.float32),
            "out_of_range": np.array(OUT_OF_RANGE[settings.out_of_range], dtype=np.float32),
            "palette_bgr": np.ascontiguousarray(palette[:, ::-1]),
            "overlay_alpha": np.array([settings.overlay_alpha], dtype=np.float32),
        }
        self.settings = settings
        self._geometry_key = None

    @property
    def depth_range(self) -> tuple[float, float]:
        low, high = self._runtime["depth_range"]
        return float(low), float(high)

    @property
    def palette_rgb(self) -> np.ndarray:
        return np.ascontiguousarray(self._runtime["palette_bgr"][:, ::-1])

    # ------------------------------------------------------------------ graphs
    def graph_for(self, height: int, width: int, encoding: str, outputs: Collection[str]) -> tuple[Any, DeployLayout]:
        """The runner and layout for a camera layout and output set (built on first use, then cached)."""
        s = self.settings
        options = DeployOptions(height, width, encoding, s.resize_mode, s.out_size, tuple(outputs), s.points_stride)
        if options in self._graphs:
            self._graphs.move_to_end(options)
            return self._graphs[options]
        layout = layout_for(self.metadata, options)
        if self._network is not None:
            pre, post = compose_deploy_parts(self.metadata, options, layout)
            runner: Any = _SplitRunner(self._network, pre, post)
        else:
            path = deploy_graph_file(self._model, self._model_sha256, options, self.cache_dir)
            runner = _OnnxRunner(self._create_backend(self.backend_kind, path, graph="deploy", **self.backend_options))
        self.graphs_built += 1
        self._graphs[options] = (runner, layout)
        while len(self._graphs) > self.max_graphs:
            _, (old, _) = self._graphs.popitem(last=False)
            if old is not runner and self._network is None:
                old.close()
        return runner, layout

    def is_built(self, height: int, width: int, encoding: str, outputs: Collection[str]) -> bool:
        s = self.settings
        return DeployOptions(height, width, encoding, s.resize_mode, s.out_size, tuple(outputs), s.points_stride) in self._graphs

    # ------------------------------------------------------------------ camera geometry
    def geometry(self, info: Any, height: int, width: int, layout: DeployLayout) -> CameraGeometry:
        """Camera info resolved for a frame size (cached per message); CameraInfoMismatch for another size."""
        key = (height, width, layout, self.settings.rescale_for_camera)
        if self._geometry is not None and self._geometry_info is info and self._geometry_key == key:
            return self._geometry
        described = image_size(info)
        if described != (width, height):
            raise CameraInfoMismatch(
                f"camera_info describes {described[0]}x{described[1]} images but the frame is {width}x{height}; "
                "publish the camera info of this image stream (points and depth/camera_info skipped)"
            )
        at_frame = scale_camera_info(info, width, height)
        at_output = scale_camera_info(at_frame, layout.out_width, layout.out_height)
        k = np.asarray(at_output.k, dtype=np.float64).reshape(3, 3)
        meta = self.metadata
        scale = 1.0
        if self.settings.rescale_for_camera and meta.depth_scaling == "focal" and meta.focal_length_px > 0:
            scale = layout.transform.focal_at_model_input(at_frame.k[0], at_frame.k[4]) / meta.focal_length_px
        geometry = CameraGeometry(at_output, np.array([k[0, 0], k[1, 1], k[0, 2], k[1, 2], k[0, 1]], dtype=np.float32),
                                  np.array([scale], dtype=np.float32))
        self._geometry_info, self._geometry_key, self._geometry = info, key, geometry
        return geometry

    # ------------------------------------------------------------------ frames
    def run(self, pixels: np.ndarray, encoding: str, outputs: Collection[str], camera_info: Any | None = None) -> FrameOutputs:
        """The wanted outputs (keys of ``deploy_graph.GRAPH_OUTPUTS``) of one frame.

        ``camera_info`` (a CameraInfo of this camera, or None) sets the focal-length rescale and the
        point cloud's intrinsics; ``points`` is dropped from ``outputs`` without it. Raises ValueError
        for pixels the graph cannot take and CameraInfoMismatch for camera info of another size (the
        caller may retry without it).
        """
        start = time.perf_counter()
        image, graph_encoding = graph_input(pixels, encoding)
        height, width = image.shape[:2]
        wanted = {o for o in outputs if camera_info is not None or o != "points"}
        built = time.perf_counter()
        runner, layout = self.graph_for(height, width, graph_encoding, wanted)
        build = time.perf_counter() - built  # 0 but on the first frame of a camera layout and output set
        geometry = self.geometry(camera_info, height, width, layout) if camera_info is not None else None
        feeds = {IMAGE_INPUT: image, **self._runtime,
                 "depth_scale": geometry.depth_scale if geometry is not None else np.ones(1, np.float32),
                 "intrinsics": geometry.intrinsics if geometry is not None else np.zeros(5, np.float32)}
        names = [name for output in sorted(wanted) for name in GRAPH_OUTPUTS[output]]
        ready = time.perf_counter()
        arrays = runner.run(feeds, names)
        done = time.perf_counter()
        return FrameOutputs(arrays, geometry, (layout.out_height, layout.out_width), {"build": build, "prepare": ready - start - build, "graph": done - ready})

    def close(self) -> None:
        """Free every graph session (the pipeline is unusable afterwards)."""
        for runner, _ in self._graphs.values():
            if self._network is None:
                runner.close()
        self._graphs.clear()
        if self._network is not None:
            self._network.close()
            self._network = None

    def with_settings(self, **changes: Any) -> FrameSettings:
        """The current settings with some fields changed (for ``configure``)."""
        return replace(self.settings, **changes)
