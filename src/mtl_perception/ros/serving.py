"""The model in service of the node: loading it through the backend contract, the fallback backend, and the
TensorRT engines each camera layout needs (built off the serving thread, ``engine_plan``).

Plain Python (no ROS graph): the node hands in its settings and cameras as getters, a logger (``info`` /
``error``) and a ``wake`` callable that cuts the inference stage's waits short when an engine is built.
"""
from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any, Callable, Sequence

from mtl_perception.fileio import file_sha256
from mtl_perception.inference.camera_info import image_size
from mtl_perception.inference.frame_pipeline import FramePipeline, GraphBuild
from mtl_perception.inference.model_file import ModelFileError
from mtl_perception.ros import engine_plan
from mtl_perception.ros import parameters as params
from mtl_perception.ros.camera_channel import CameraChannel
from mtl_perception.ros.diagnostics import BACKEND_FAILURE, BackendFigures, ProblemLog


class ModelService:
    """The one FramePipeline the node's cameras share (see the module docstring)."""

    def __init__(self, settings: Callable[[], params.Settings | None], cameras: Callable[[], Sequence[CameraChannel]],
                 problems: ProblemLog, log: Any, wake: Callable[[], None]) -> None:
        self._settings = settings
        self._cameras = cameras
        self._problems = problems
        self._log = log
        self._wake = wake
        self._lock = threading.Lock()
        self._pipeline: FramePipeline | None = None
        self._planned: set[tuple[Any, ...]] = set()  # camera layouts whose engines were asked for (engine outputs only)
        self.kind = ""  # "onnxruntime (cpu)", ...; "" while none is loaded
        self.error: str | None = None  # why the model cannot load or run (cleared by the next good graph call)
        self.model_path: Path | None = None
        self.model_sha256 = ""

    @property
    def pipeline(self) -> FramePipeline | None:
        """The pipeline in service (None while no model is loaded)."""
        with self._lock:
            return self._pipeline

    # ------------------------------------------------------------------ loading
    def load(self, settings: params.Settings) -> None:
        """Load ``model.path`` on the configured backend, else on the fallback backend on CPU; raises why it cannot."""
        path = engine_plan.model_file(settings)
        if not path.is_file():
            problem = "is not a regular file" if path.exists() else "not found"
            raise FileNotFoundError(f"model file {problem}: {path}; set model.path to an exported model (mtl-perception export --checkpoint CKPT --out MODEL.onnx)")
        self.model_path = path
        self.model_sha256 = file_sha256(path)
        try:
            self._set_backend(settings, settings.backend, settings.provider)
        except Exception as exc:
            if not settings.fallback_backend or (isinstance(exc, ModelFileError) and settings.fallback_backend == settings.backend):
                raise  # no fallback, or the file itself is bad: the same backend on CPU would fail on it again
            self._log.error(f"backend '{settings.backend}' failed to load ({exc}); falling back to '{settings.fallback_backend}' on CPU")
            self._set_backend(settings, settings.fallback_backend, "cpu")
        self.error = None

    def _set_backend(self, settings: params.Settings, kind: str, provider: str) -> None:
        """Load backend ``kind`` on ``provider`` (``engine_plan.node_pipeline``) and put it in service."""
        assert self.model_path is not None
        pipeline = engine_plan.node_pipeline(settings, self.model_path, kind, provider, len(self._cameras()))
        check_palette(settings, pipeline.metadata)
        if engine_plan.builds_engines(kind, provider):
            pipeline.serve_from(engine_plan.engine_outputs(settings.outputs, pipeline.metadata.tasks), on_built=self._on_graph_built)
        with self._lock:
            old, self._pipeline = self._pipeline, pipeline
            self.kind = f"{kind} ({provider})"
            self._planned.clear()
        if old is not None:
            old.close()
        self.plan_engines()

    def free(self) -> None:
        """Close the pipeline in service (its sessions and engines)."""
        with self._lock:
            pipeline, self._pipeline = self._pipeline, None
        if pipeline is not None:
            pipeline.close()

    def fall_back(self, exc: Exception) -> bool:
        """After a runtime inference failure, switch to the fallback backend on CPU; True if it did."""
        settings = self._settings()
        if settings is None or not settings.fallback_backend or self.kind.startswith(f"{settings.fallback_backend} (cpu)"):
            return False
        failed = self.kind
        self._log.error(f"backend {failed} failed at run time ({type(exc).__name__}: {exc}); switching to '{settings.fallback_backend}' on CPU")
        try:
            self._set_backend(settings, settings.fallback_backend, "cpu")
        except Exception as load_exc:
            self.error = f"fallback backend '{settings.fallback_backend}' failed to load: {load_exc}"
            return False
        self._problems.backend.add("backend_fallbacks")
        # ERROR on /diagnostics for this period, although the fallback serves the frames
        self._problems.backend.problem(BACKEND_FAILURE, f"backend {failed} failed at run time ({type(exc).__name__}: {exc}); now running on {self.kind}")
        return True

    # ------------------------------------------------------------------ engines (backends that compile TensorRT engines)
    def plan_engines(self) -> None:
        """Serve the enabled outputs and ask for the engines of every camera layout known so far (after a new
        pipeline or a parameter change); a no-op on backends that build per subscribed output set."""
        settings, pipeline = self._settings(), self.pipeline
        if settings is None or pipeline is None or pipeline.engine_outputs is None:
            return
        outputs = engine_plan.engine_outputs(settings.outputs, pipeline.metadata.tasks)
        if outputs != pipeline.engine_outputs:
            pipeline.serve_from(outputs)
        for camera in self._cameras():
            if camera.layout is not None:
                shape, encoding = camera.layout
                self.plan_layout(shape[0], shape[1], encoding)

    def plan_layout(self, height: int, width: int, encoding: str) -> None:
        """Start the background builds of one camera layout's engines (``engine_plan.planned_options``), once."""
        settings, pipeline = self._settings(), self.pipeline
        if settings is None or pipeline is None or not pipeline.engine_outputs:
            return
        cameras = sum(1 for c in self._cameras() if camera_size(c) == (height, width)) or 1
        key = (height, width, encoding, cameras, pipeline.engine_outputs, pipeline.settings)
        if key in self._planned:
            return
        self._planned.add(key)
        for options in pipeline.prepare(engine_plan.planned_options(pipeline, settings, height, width, encoding, cameras)):
            self._log.info(f"preparing the deploy engine for {GraphBuild(options, 0.0).describe()} off the serving thread")

    def plan_from_camera_info(self, camera: CameraChannel, info: Any) -> None:
        """A camera info gives the camera's size: prepare its engines for the encoding of its frames, when known
        (a frame seen, or a deploy graph composed for this size before, e.g. by ``build-engine --deploy``)."""
        pipeline = self.pipeline
        if pipeline is None or not pipeline.engine_outputs:
            return
        width, height = image_size(info)
        if camera.layout is not None and tuple(camera.layout[0][:2]) == (height, width):
            self.plan_layout(height, width, camera.layout[1])
            return
        key = ("camera_info", camera.spec.name, height, width, pipeline.engine_outputs, pipeline.settings)
        if key in self._planned:
            return
        self._planned.add(key)
        for encoding in pipeline.graph_files(height, width, pipeline.engine_outputs):
            self.plan_layout(height, width, encoding)
            return

    def _on_graph_built(self, build: GraphBuild) -> None:
        """A background build ended (builder thread): log it, report a failure, wake the serving stage."""
        took = f"{build.seconds or 0.0:.1f} s"
        if build.error:
            self._problems.report(None, "engine_build_failed", f"the deploy engine for {build.describe()} failed after {took}: {build.error}")
        elif build.source == "cache":
            self._log.info(f"deploy engine for {build.describe()}: cache hit, loaded {build.engine} (key {build.key.digest()}) in {took}")
        else:
            o = build.options
            hint = (f"; `mtl-perception build-engine --deploy --camera {o.width}x{o.height} --encoding {o.encoding} --params-file FILE` "
                    "builds it before a mission" if build.source == "built" else "")
            engine = f" {build.engine} (key {build.key.digest()})" if build.key is not None else ""
            self._log.info(f"deploy engine for {build.describe()}: {build.source} in {took}{engine}{hint}")
        self._wake()

    # ------------------------------------------------------------------ figures
    def figures(self) -> BackendFigures:
        """What the diagnostics report of the backend in service."""
        pipeline = self.pipeline
        if pipeline is None:
            return BackendFigures(self.kind, str(self.model_path or ""), self.model_sha256, error=self.error)
        outputs = "per subscribed set" if pipeline.engine_outputs is None else ",".join(pipeline.engine_outputs) or "none enabled"
        now = time.monotonic()
        building = "; ".join(f"{b.describe()} since {now - b.started:.0f} s" for b in pipeline.building())
        return BackendFigures(self.kind, str(self.model_path or ""), self.model_sha256, pipeline.graphs_built, outputs, building, self.error)


def check_palette(settings: params.Settings, meta: Any) -> None:
    """ParameterError when palette.override has fewer colours than the model has classes."""
    if settings.palette_override is not None and len(settings.palette_override) < len(meta.class_names):
        raise params.ParameterError(f"palette.override has {len(settings.palette_override)} colours but the model has {len(meta.class_names)} classes")


def camera_size(camera: CameraChannel) -> tuple[int, int] | None:
    """(height, width) of a camera: its last frame's, else its camera info's."""
    if camera.layout is not None:
        return tuple(camera.layout[0][:2])  # type: ignore[return-value]
    info = camera.infos.latest()
    if info is None:
        return None
    width, height = image_size(info)
    return height, width
