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

Two ways to pick the output set a graph is built for:
- per call (the default; ONNX Runtime, torch): each call's own output set, built on the serving thread
  when first asked for (a graph builds in under a second there, and one cut to the outputs asked for runs
  2-5x faster than the full one: ONNX Runtime computes every output of a graph whatever is asked;
  ``benchmarks/engine_outputs.py``);
- engine outputs (``serve_from``; TensorRT, where a build takes minutes): one graph per camera layout
  and batch, for a fixed output set (the node's enabled outputs), built off the serving thread
  (``prepare``, or the first call that needs it); any subset is served from it. A new output set is
  built in the background while the graph in service keeps serving what it has; until a camera
  layout has any graph, calls raise ``GraphPending``.

The torch backend runs a checkpoint, not an ONNX file: there the pre- and post-processing graphs run in
ONNX Runtime around the torch network (the same graphs, split where the network sits).
"""
from __future__ import annotations

import threading
import time
from collections import OrderedDict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Collection, Mapping, Sequence

import numpy as np

from mtl_perception import paths
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
    deploy_graph_path,
    layout_for,
)
from mtl_perception.inference.backends.base import Backend
from mtl_perception.inference.metadata import ModelMetadata

DEFAULT_MAX_GRAPHS = 4
MAX_GEOMETRIES = 32  # camera-info messages resolved and kept (a few per camera)
OUT_OF_RANGE = {"nan": (np.nan, np.nan), "inf": (-np.inf, np.inf)}  # depth below / above the range


class CameraInfoMismatch(CameraInfoError):
    """The camera info describes another image size than the frame's."""


class GraphPending(RuntimeError):
    """No graph can serve this camera layout yet: one is being built off the serving thread."""

    def __init__(self, options: DeployOptions) -> None:
        super().__init__(f"the deploy graph for {options.width}x{options.height} {options.encoding} (batch {options.batch}) "
                         f"is being built; outputs {list(options.outputs)}")
        self.options = options


@dataclass(frozen=True)
class GraphBuild:
    """One deploy graph built (or loaded) off the serving thread, or being built (``seconds`` None)."""

    options: DeployOptions
    started: float  # time.monotonic() when the build began
    seconds: float | None = None  # None while it runs
    source: str = ""  # TensorRT: 'cache' (engine loaded from the engine cache) | 'built'; other backends: 'composed'
    engine: str = ""  # TensorRT: the engine file
    key: Any = None  # TensorRT: its EngineKey (engine_cache.py)
    error: str = ""  # why it failed ('' when it did not)

    def describe(self) -> str:
        o = self.options
        return f"{','.join(o.outputs)} for {o.width}x{o.height} {o.encoding} batch {o.batch}"


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


def graph_batch_sizes(capacity: int) -> list[int]:
    """The batch sizes graphs are built for when at most ``capacity`` frames share a call: the powers of two
    below it, and ``capacity`` itself (4 -> [1, 2, 4]; 6 -> [1, 2, 4, 6]).

    Each batch size is its own graph, session and memory (about 20-40 MB each for a 640x480 camera on the
    CPU, beside the shared activation arena): a batch of another size is padded to the next one, so a full
    batch (every camera of a layout) never is, and a node with N cameras holds about log2(N) + 1 graphs
    per camera layout instead of N.
    """
    capacity = max(1, int(capacity))
    return sorted({1 << k for k in range(capacity.bit_length()) if 1 << k < capacity} | {capacity})


def graph_batch_size(count: int, capacity: int | None) -> int:
    """The graph batch size ``count`` frames run in (``graph_batch_sizes``; ``count`` itself without a capacity)."""
    if capacity is None or count >= capacity:
        return count
    return next(size for size in graph_batch_sizes(capacity) if size >= count)


def graph_input(pixels: np.ndarray, encoding: str) -> tuple[np.ndarray, str]:
    """Camera pixels as the deploy graph takes them: a uint8 (H, W, C) array and its graph encoding.

    The conversion table is ``inference/encodings.py`` (shared with ``processing.to_rgb``): 8-bit rgb8, bgr8,
    rgba8, bgra8, mono8 pass as they are (a view when the buffer is contiguous); 8UC1/8UC3/8UC4 pass as
    mono8/bgr8/bgra8 (OpenCV's order); 16-bit ones are scaled by 255/65535; Bayer and YUV 4:2:2 are
    converted to rgb8 by OpenCV. ValueError names what is unsupported.
    """
    from mtl_perception.inference.encodings import to_graph_pixels

    image, graph_encoding = to_graph_pixels(pixels, encoding)
    assert graph_encoding in ENCODING_LAYOUT
    return image, graph_encoding


class _OnnxRunner:
    """A backend that runs the whole deploy graph file (onnxruntime, tensorrt).

    The pipeline prepares every runtime input; a graph takes those its outputs need (``Backend.input_names``).
    """

    def __init__(self, backend: Backend) -> None:
        self.backend = backend
        self.input_names = frozenset(backend.input_names)

    def run(self, feeds: Mapping[str, np.ndarray], outputs: list[str]) -> dict[str, np.ndarray]:
        return self.backend.run({k: v for k, v in feeds.items() if k in self.input_names}, outputs)

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
                 settings: FrameSettings | None = None, cache_dir: str | Path | None = None, max_graphs: int = DEFAULT_MAX_GRAPHS,
                 precision: str = "fp32") -> None:
        """``precision`` (fp32 | fp16 | int8) selects the network file the deploy graphs are composed from: the
        model file, or its mixed-precision FP16 / explicit Q/DQ INT8 file (``inference/precision.py``; an INT8
        file must have been made before, by ``quantize`` or ``build-engine --calib-dir``). torch ignores it.
        ``cache_dir`` is the cache root (``paths.cache_root``: None = $MTL_PERCEPTION_CACHE or ~/.cache/mtl_perception)."""
        from mtl_perception.inference.backends import create_backend, validate_model_path

        self.model_path = validate_model_path(backend, model_path)
        probe_backend(backend, backend_options or {})
        self.backend_kind = backend
        self.backend_options = dict(backend_options or {})
        self.cache_root = cache_dir  # deploy graphs in its deploy/, precision files in its precision/ (paths.cache_dir)
        self.cache_dir = paths.cache_dir("deploy", cache_dir)
        self.max_graphs = max(1, int(max_graphs))
        self._network: Any = None
        self._model: Any = None
        if backend == "torch":  # the network stays in torch; metadata as its export would write it
            self._network = create_backend(backend, self.model_path, **self.backend_options)
            self.metadata: ModelMetadata = self._network.metadata
        else:  # held in memory: a file changed on disk later does not reach graphs built later
            from mtl_perception.fileio import file_sha256
            from mtl_perception.inference.model_file import describe_onnx, load_onnx_file

            network_file = self.model_path
            if precision != "fp32":
                from mtl_perception.inference.precision import precision_model_file

                describe_onnx(load_onnx_file(self.model_path), str(self.model_path))  # the model file itself first: its errors are the user's
                network_file = precision_model_file(self.model_path, precision, self.cache_root)
            self._model_sha256 = file_sha256(network_file)
            self._model = load_onnx_file(network_file)
            self.metadata = describe_onnx(self._model, str(network_file))
        self.precision = precision
        self._create_backend = create_backend
        self._graphs: OrderedDict[DeployOptions, tuple[Any, DeployLayout]] = OrderedDict()
        self._geometries: dict[tuple[Any, ...], tuple[Any, CameraGeometry]] = {}  # per camera-info message: (it, its geometry)
        self.graphs_built = 0
        # engine outputs (serve_from): graphs built off the serving thread, adopted by it
        self._engine_outputs: tuple[str, ...] | None = None
        self._on_built: Callable[[GraphBuild], None] | None = None
        self._builder: ThreadPoolExecutor | None = None
        self._lock = threading.Lock()  # guards the four below (the builder thread writes them)
        self._building: dict[DeployOptions, float] = {}  # options -> time.monotonic() the build began
        self._finished: list[tuple[DeployOptions, Any, DeployLayout]] = []  # built, not yet adopted by the serving thread
        self._failed: dict[DeployOptions, Exception] = {}
        self.builds: list[GraphBuild] = []  # every finished background build, oldest first (bounded)
        self._serving: dict[tuple[int, int, str, int], DeployOptions] = {}  # camera layout and batch -> the graph in service
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
        self._geometries.clear()

    @property
    def depth_range(self) -> tuple[float, float]:
        low, high = self._runtime["depth_range"]
        return float(low), float(high)

    @property
    def palette_rgb(self) -> np.ndarray:
        return np.ascontiguousarray(self._runtime["palette_bgr"][:, ::-1])

    # ------------------------------------------------------------------ graphs
    def deploy_options(self, height: int, width: int, encoding: str, outputs: Collection[str], batch: int = 1) -> DeployOptions:
        """The DeployOptions of a camera layout, output set and batch under the current settings."""
        s = self.settings
        return DeployOptions(height, width, encoding, s.resize_mode, s.out_size, tuple(outputs), s.points_stride, batch)

    def graph_for(self, height: int, width: int, encoding: str, outputs: Collection[str], batch: int = 1) -> tuple[Any, DeployLayout]:
        """The runner and layout for a camera layout, output set and batch size (built now on first use, then cached)."""
        return self.build(self.deploy_options(height, width, encoding, outputs, batch))

    def build(self, options: DeployOptions) -> tuple[Any, DeployLayout]:
        """The runner and layout of ``options``, built (or loaded) on the calling thread unless cached."""
        with self._lock:
            if options in self._graphs:
                self._graphs.move_to_end(options)
                return self._graphs[options]
        runner, layout = self._make(options)
        with self._lock:
            self.graphs_built += 1
        self._insert(options, runner, layout)
        return runner, layout

    def is_built(self, height: int, width: int, encoding: str, outputs: Collection[str], batch: int = 1) -> bool:
        return self.deploy_options(height, width, encoding, outputs, batch) in self._graphs

    def _make(self, options: DeployOptions) -> tuple[Any, DeployLayout]:
        layout = layout_for(self.metadata, options)
        if self._network is not None:
            pre, post = compose_deploy_parts(self.metadata, options, layout)
            return _SplitRunner(self._network, pre, post), layout
        return _OnnxRunner(self._deploy_backend(options)), layout

    def _deploy_backend(self, options: DeployOptions) -> Backend:
        """The backend running the deploy graph file of ``options``. A file the backend cannot load although its hash
        is sound is reported, composed again and loaded once more; a second refusal is a BackendError (the backend's
        fault, not the frame's: the node falls back)."""
        from mtl_perception.fileio import report_damaged
        from mtl_perception.inference.backends import BackendError
        from mtl_perception.inference.model_file import ModelFileError

        path = deploy_graph_file(self._model, self._model_sha256, options, self.cache_dir)
        try:
            return self._create_backend(self.backend_kind, path, graph="deploy", **self.backend_options)
        except ModelFileError as exc:
            report_damaged(path, f"{self.backend_kind} cannot load it ({str(exc)[:200]})")
        path = deploy_graph_file(self._model, self._model_sha256, options, self.cache_dir, rebuild=True)
        try:
            return self._create_backend(self.backend_kind, path, graph="deploy", **self.backend_options)
        except ModelFileError as exc:
            raise BackendError(f"{self.backend_kind} cannot load the deploy graph {path} even after composing it again: {exc}") from exc

    def _insert(self, options: DeployOptions, runner: Any, layout: DeployLayout) -> None:
        """Cache a graph (serving thread only: an evicted graph is closed here, never while in use; the lock keeps
        ``_graphs`` whole for the threads that ask what is built)."""
        evicted = []
        with self._lock:
            self._graphs[options] = (runner, layout)
            while len(self._graphs) > self.max_graphs:
                dropped, (old, _) = self._graphs.popitem(last=False)
                self._serving = {key: o for key, o in self._serving.items() if o != dropped}
                if old is not runner and self._network is None:
                    evicted.append(old)
        for old in evicted:
            old.close()

    def graph_files(self, height: int, width: int, outputs: Collection[str], batch: int = 1) -> dict[str, Path]:
        """Graph encoding -> the deploy graph file already composed for it (cache only, nothing built)."""
        if self._network is not None:
            return {}
        found = {}
        for encoding in ENCODING_LAYOUT:
            path = deploy_graph_path(self._model_sha256, self.deploy_options(height, width, encoding, outputs, batch), self.cache_dir)
            if path.is_file():
                found[encoding] = path
        return found

    # ------------------------------------------------------------------ engine outputs (graphs built off the serving thread)
    def serve_from(self, outputs: Collection[str], on_built: Callable[[GraphBuild], None] | None = None) -> None:
        """Build every graph for ``outputs`` (deploy graph output names) from now on and serve any subset of them.

        ``on_built(build)`` is called on the builder thread after each background build (or failure).
        """
        unknown = sorted(set(outputs) - set(GRAPH_OUTPUTS))
        if unknown:
            raise ValueError(f"unknown engine output(s) {unknown}; valid: {sorted(GRAPH_OUTPUTS)}")
        self._engine_outputs = tuple(sorted(set(outputs)))
        if on_built is not None:
            self._on_built = on_built
        if self._builder is None:
            self._builder = ThreadPoolExecutor(max_workers=1, thread_name_prefix="deploy_graph_builder")  # one build at a time

    @property
    def engine_outputs(self) -> tuple[str, ...] | None:
        """The output set graphs are built for (``serve_from``); None: each call's own."""
        return self._engine_outputs

    def prepare_now(self, planned: Collection[DeployOptions]) -> list[GraphBuild]:
        """Build (or load) ``planned`` on the calling thread, as ``prepare`` would in the background (``build-engine``)."""
        records = []
        for options in planned:
            started = time.monotonic()
            runner, _ = self.build(options)
            records.append(self._record(options, runner, started))
        return records

    def _record(self, options: DeployOptions, runner: Any, started: float) -> GraphBuild:
        if self.backend_kind == "tensorrt" and isinstance(runner, _OnnxRunner):
            backend = runner.backend
            return GraphBuild(options, started, time.monotonic() - started, backend.engine_source, str(backend.engine_path), backend.key)
        return GraphBuild(options, started, time.monotonic() - started, "composed")

    def prepare(self, planned: Collection[DeployOptions]) -> list[DeployOptions]:
        """Start building, off the calling thread, those of ``planned`` that no graph built or building covers."""
        if self._engine_outputs is None:
            raise RuntimeError("prepare() needs serve_from(outputs) first")
        return [options for options in planned if self._submit(options)]

    def building(self) -> list[GraphBuild]:
        """The background builds in progress (what, since when)."""
        with self._lock:
            return [GraphBuild(options, started) for options, started in self._building.items()]

    def pending(self, height: int, width: int, encoding: str) -> bool:
        """True while a graph for this camera size and encoding is being built and none of its graphs serves yet."""
        with self._lock:
            busy = any((o.height, o.width, o.encoding) == (height, width, encoding) for o in self._building)
            done = any((o.height, o.width, o.encoding) == (height, width, encoding) for o, _, _ in self._finished)
        return busy and not done and not any(key[:3] == (height, width, encoding) for key in self._serving)

    def _covered(self, options: DeployOptions) -> bool:
        """A graph built, finished or being built serves every output of ``options`` (all else equal)."""
        def covers(other: DeployOptions) -> bool:
            return set(options.outputs) <= set(other.outputs) and replace(other, outputs=options.outputs) == options
        return any(covers(o) for o in [*self._graphs, *self._building, *(o for o, _, _ in self._finished)])

    def _submit(self, options: DeployOptions) -> bool:
        with self._lock:
            builder = self._builder
            if self._covered(options) or options in self._failed or builder is None:
                return False
            self._building[options] = time.monotonic()
            builder.submit(self._build_in_background, options)
        return True

    def _build_in_background(self, options: DeployOptions) -> None:
        with self._lock:
            started = self._building.get(options, time.monotonic())
        try:
            runner, layout = self._make(options)
        except Exception as exc:  # kept and raised to the serving thread by the next call for this layout
            record = GraphBuild(options, started, time.monotonic() - started, error=f"{type(exc).__name__}: {exc}")
            with self._lock:
                self._failed[options] = exc
                self._building.pop(options, None)
                self.builds = [*self.builds[-31:], record]
        else:
            record = self._record(options, runner, started)
            with self._lock:
                closed = self._builder is None
                if not closed:
                    self._finished.append((options, runner, layout))
                self._building.pop(options, None)
                self.graphs_built += 1
                self.builds = [*self.builds[-31:], record]
            if closed:  # the pipeline was closed while this built
                runner.close()
                return
        if self._on_built is not None:
            self._on_built(record)

    def _adopt(self) -> None:
        """Take the graphs the builder finished into service (serving thread): each replaces the graph of its layout."""
        with self._lock:
            finished, self._finished = self._finished, []
        for options, runner, layout in finished:
            key = (options.height, options.width, options.encoding, options.batch)
            old = self._serving.get(key)
            self._serving[key] = options
            self._insert(options, runner, layout)
            with self._lock:
                stale = self._graphs.pop(old)[0] if old is not None and old != options and old in self._graphs else None
            if stale is not None:
                stale.close()

    def _engine_graph(self, height: int, width: int, encoding: str, wanted: Collection[str], batch: int) -> tuple[Any, DeployLayout, set[str]] | None:
        """The graph that serves ``wanted`` for this layout and batch now, and which of ``wanted`` it computes;
        starts the build of the engine-output graph when none covers it; None when nothing serves this layout and batch."""
        assert self._engine_outputs is not None
        self._adopt()
        key = (height, width, encoding, batch)
        target = self.deploy_options(height, width, encoding, set(self._engine_outputs) | set(wanted), batch)
        with self._lock:
            failure = self._failed.get(target)
            cover = target if target in self._graphs else next(
                (o for o in reversed(self._graphs) if set(target.outputs) <= set(o.outputs) and replace(o, outputs=target.outputs) == target), None)
        if cover is not None:
            self._serving[key] = cover
        elif failure is None:
            self._submit(target)
        current = self._serving.get(key)
        if current is None or current not in self._graphs:
            if failure is not None:  # nothing else serves this layout: the caller falls back
                raise failure
            return None
        with self._lock:
            self._graphs.move_to_end(current)
            runner, layout = self._graphs[current]
        return runner, layout, set(wanted) & set(current.outputs)

    # ------------------------------------------------------------------ camera geometry
    @staticmethod
    def check_camera_info(info: Any, height: int, width: int) -> None:
        """CameraInfoMismatch when ``info`` describes images of another size than height x width."""
        described = image_size(info)
        if described != (width, height):
            raise CameraInfoMismatch(
                f"camera_info describes {described[0]}x{described[1]} images but the frame is {width}x{height}; "
                "publish the camera info of this image stream (points and depth/camera_info skipped)"
            )

    def geometry(self, info: Any, height: int, width: int, layout: DeployLayout) -> CameraGeometry:
        """Camera info resolved for a frame size (cached per message object); CameraInfoMismatch for another size."""
        key = (id(info), height, width, layout, self.settings.rescale_for_camera)
        cached = self._geometries.get(key)
        if cached is not None and cached[0] is info:  # the same message object (an id is reused only after it is freed)
            return cached[1]
        self.check_camera_info(info, height, width)
        at_frame = scale_camera_info(info, width, height)
        at_output = scale_camera_info(at_frame, layout.out_width, layout.out_height)
        k = np.asarray(at_output.k, dtype=np.float64).reshape(3, 3)
        meta = self.metadata
        scale = 1.0
        if self.settings.rescale_for_camera and meta.depth_scaling == "focal" and meta.focal_length_px > 0:
            scale = layout.transform.focal_at_model_input(at_frame.k[0], at_frame.k[4]) / meta.focal_length_px
        geometry = CameraGeometry(at_output, np.array([k[0, 0], k[1, 1], k[0, 2], k[1, 2], k[0, 1]], dtype=np.float32),
                                  np.array([scale], dtype=np.float32))
        self._geometries[key] = (info, geometry)
        while len(self._geometries) > MAX_GEOMETRIES:
            self._geometries.pop(next(iter(self._geometries)))
        return geometry

    # ------------------------------------------------------------------ frames
    def run(self, pixels: np.ndarray, encoding: str, outputs: Collection[str], camera_info: Any | None = None) -> FrameOutputs:
        """The wanted outputs (keys of ``deploy_graph.GRAPH_OUTPUTS``) of one frame.

        ``camera_info`` (a CameraInfo of this camera, or None) sets the focal-length rescale and the
        point cloud's intrinsics; ``points`` is dropped from ``outputs`` without it. Raises ValueError
        for pixels the graph cannot take and CameraInfoMismatch for camera info of another size (the
        caller may retry without it).
        """
        return self.run_batch([(pixels, encoding, camera_info)], outputs)[0]

    def run_batch(self, frames: Sequence[tuple[np.ndarray, str, Any | None]], outputs: Collection[str],
                  capacity: int | None = None) -> list[FrameOutputs]:
        """The wanted outputs of several frames of one camera layout (same size and encoding) in one graph call.

        ``frames`` are (pixels, encoding, camera info or None); ``points`` is computed when every frame
        has camera info. The returned buffers of frame i are views of the batch's (no copy). With a
        ``capacity`` (the most frames this layout will batch), the call runs in the graph of
        ``graph_batch_size(len(frames), capacity)``, padded with copies of the last frame.

        With engine outputs (``serve_from``) the frames run in the graph in service for their layout, which
        may lack some wanted outputs while a graph with them builds (their buffers are then absent), in chunks
        of a smaller batch size while that one builds; GraphPending when the layout has no graph yet.
        """
        start = time.perf_counter()
        images, encodings = zip(*(graph_input(pixels, encoding) for pixels, encoding, _ in frames))
        layouts = {(image.shape, encoding) for image, encoding in zip(images, encodings)}
        if len(layouts) != 1:
            raise ValueError(f"a batch takes frames of one size and encoding, got {sorted((s[:2], e) for s, e in layouts)}")
        height, width = images[0].shape[:2]
        infos = [info for _, _, info in frames]
        wanted = {o for o in outputs if o != "points" or all(info is not None for info in infos)}
        size = graph_batch_size(len(frames), capacity)
        built = time.perf_counter()
        if self._engine_outputs is None:
            runner, layout = self.graph_for(height, width, encodings[0], wanted, size)
            served = wanted
        else:
            runner, layout, served, size = self._engine_batch(height, width, encodings[0], wanted, size)
        build = time.perf_counter() - built  # 0 but on the first frame of a camera layout, output set and batch size (per call)
        results: list[FrameOutputs] = []
        for offset in range(0, len(frames), size):
            chunk = list(images[offset:offset + size]), infos[offset:offset + size]
            results += self._run_chunk(runner, layout, *chunk, served, size, (build, built - start) if offset == 0 else (0.0, 0.0))
        return results

    def _engine_batch(self, height: int, width: int, encoding: str, wanted: set[str], size: int) -> tuple[Any, DeployLayout, set[str], int]:
        """The engine-output graph serving this batch size, else another batch size in service while this one builds
        (the largest smaller one, frames in chunks of it; else the smallest larger one, padded); GraphPending when
        this camera layout has none yet."""
        found = self._engine_graph(height, width, encoding, wanted, size)
        if found is None:  # smaller batch sizes in service first (chunks), then larger ones (padded)
            sizes = {key[3] for key in self._serving if key[:3] == (height, width, encoding) and key[3] != size}
            for batch in sorted(b for b in sizes if b < size)[::-1] + sorted(b for b in sizes if b > size):
                found = self._engine_graph(height, width, encoding, wanted, batch)
                if found is not None:
                    size = batch
                    break
        if found is None:
            assert self._engine_outputs is not None
            raise GraphPending(self.deploy_options(height, width, encoding, set(self._engine_outputs) | wanted, size))
        return (*found, size)

    def _run_chunk(self, runner: Any, layout: DeployLayout, images: list[np.ndarray], infos: list[Any], served: set[str],
                   size: int, times: tuple[float, float]) -> list[FrameOutputs]:
        """One graph call on up to ``size`` frames (padded with copies of the last one to ``size``)."""
        start = time.perf_counter()
        count = len(images)
        height, width = images[0].shape[:2]
        images, infos = [*images, *[images[-1]] * (size - count)], [*infos, *[infos[-1]] * (size - count)]
        geometries = [self.geometry(info, height, width, layout) if info is not None else None for info in infos]
        batch = images[0][None] if len(images) == 1 else np.stack(images)
        feeds = {IMAGE_INPUT: batch, **self._runtime,
                 "depth_scale": np.array([g.depth_scale[0] if g is not None else 1.0 for g in geometries], dtype=np.float32),
                 "intrinsics": np.stack([g.intrinsics if g is not None else np.zeros(5, np.float32) for g in geometries])}
        names = [name for output in sorted(served) for name in GRAPH_OUTPUTS[output]]
        ready = time.perf_counter()
        arrays = runner.run(feeds, names) if names else {}
        done = time.perf_counter()
        build, before = times
        seconds = {"build": build, "prepare": before + ready - start, "graph": done - ready}
        return [FrameOutputs({name: value[i] for name, value in arrays.items()}, geometry, (layout.out_height, layout.out_width), dict(seconds))
                for i, geometry in enumerate(geometries[:count])]

    def close(self) -> None:
        """Free every graph session (the pipeline is unusable afterwards). A background build in progress is not
        waited for (a TensorRT build cannot be stopped): its graph is freed by the builder when it ends."""
        with self._lock:
            builder, self._builder = self._builder, None
        if builder is not None:
            builder.shutdown(wait=False, cancel_futures=True)
        self._adopt()
        for runner, _ in self._graphs.values():
            if self._network is None:
                runner.close()
        self._graphs.clear()
        self._serving.clear()
        if self._network is not None:
            self._network.close()
            self._network = None

    def with_settings(self, **changes: Any) -> FrameSettings:
        """The current settings with some fields changed (for ``configure``)."""
        return replace(self.settings, **changes)
