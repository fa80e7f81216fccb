"""Native TensorRT backend for TensorRT 10.x (10.3 or newer) and 11.x: one strongly typed build path.

TensorRT 11 removed the builder's precision flags (``BuilderFlag.FP16/BF16/INT8``), INT8 calibrators,
calibration profiles and precision constraints; TensorRT 10 deprecated them (calibrators in 10.1, weak
typing and the flags in 10.12). So this backend never uses them: it parses a *precision-specific* ONNX
file (``precision.py``: the FP32 file, the mixed-precision FP16 file, or the explicit Q/DQ INT8 file)
into a strongly typed network, whose precision is the file's own, and builds it with a workspace limit
and a timing cache. A deploy graph (``graph="deploy"``: camera bytes in, publishable buffers out) is
built the same way from its own file. The names this module uses are checked against the real
bindings of TensorRT 10.3, 10.13 and 11.4 by ``test/test_inference_trt_api.py``.

Version-specific calls live in ``network_creation_flags`` only (see there). Engines live in the
``EngineCache`` (``engine_cache.py``), keyed by the parsed file's hash, the TensorRT version and the
GPU (name, compute capability, SM count, memory): a matching engine is loaded and never rebuilt.

Device memory, pinned host memory, the stream and the GPU's identity come from the CUDA runtime through
cuda-python (``cuda_runtime.py``; JetPack has no PyTorch, and this module never imports it): buffers are
allocated once per I/O tensor with the engine's shape and dtype (``trt.nptype(engine.get_tensor_dtype(name))``),
bound with ``set_tensor_address``, and every ``run`` is host->device copies, ``execute_async_v3`` and
device->host copies on one stream, then a single synchronise. Build, deserialisation and every run happen
with ``device`` current.
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from mtl_perception.inference.backends.base import BackendError, TensorGraphBackend, check_graph_kind
from mtl_perception.inference.backends.cuda_runtime import FALLBACK_HINT, CudaRuntime, GpuIdentity, TensorBuffers, allocate, release
from mtl_perception.inference.engine_cache import EngineCache, EngineKey, resolve_engine, timing_cache_name
from mtl_perception.inference.metadata import INPUT_NAME, ModelMetadata
from mtl_perception.inference.model_file import (
    ModelFileError,
    describe_onnx,
    graph_io_shapes,
    load_onnx_file,
    metadata_from_props,
    static_batch_size,
    validate_io,
)

LOG = logging.getLogger(__name__)
TENSORRT_MIN = (10, 3)  # JetPack 6.1+ (Jetson Orin) ships TensorRT 10.3 (6.0 ships 8.6); JetPack 7.2.2+ ships 11.4
TENSORRT_MAJORS = (10, 11)
TENSORRT_MISSING = (
    "the TensorRT Python package is not importable; on a Jetson it comes with JetPack (python3-libnvinfer), "
    "on x86 install `tensorrt` from NVIDIA's package index; or " + FALLBACK_HINT
)


def trt_version(trt: Any) -> tuple[int, int]:
    """(major, minor) of a tensorrt module."""
    parts = str(trt.__version__).split(".")
    return int(parts[0]), int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else 0


def import_tensorrt() -> Any:
    """The ``tensorrt`` module, checked to be TensorRT 10.3+ or 11.x."""
    try:
        import tensorrt as trt
    except ImportError:
        raise BackendError(TENSORRT_MISSING) from None
    version = trt_version(trt)
    if version[0] == 8:
        raise BackendError(
            f"TensorRT {trt.__version__} found (JetPack 6.0 ships TensorRT 8.6): the tensorrt backend needs TensorRT "
            f"{TENSORRT_MIN[0]}.{TENSORRT_MIN[1]}+, which comes with JetPack 6.1 and later (or 11.x); upgrade JetPack or {FALLBACK_HINT}"
        )
    if version[0] not in TENSORRT_MAJORS or version < TENSORRT_MIN:
        raise BackendError(
            f"TensorRT {trt.__version__} found; this backend supports TensorRT 10.x from {TENSORRT_MIN[0]}.{TENSORRT_MIN[1]} "
            f"and 11.x; {FALLBACK_HINT}"
        )
    return trt


# -- the one version-specific place ----------------------------------------------------------------

def network_creation_flags(trt: Any) -> int:
    """Flags of ``Builder.create_network`` for a strongly typed network.

    TensorRT 10.x: weak typing is the default (deprecated in 10.12), so STRONGLY_TYPED is asked for.
    TensorRT 11.x: networks are always strongly typed; STRONGLY_TYPED is deprecated (11.0) and
    ignored, so no flag is passed.
    """
    if trt_version(trt)[0] >= 11:
        return 0
    return 1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED)


_LOGGERS: dict[int, Any] = {}


def trt_logger(trt: Any) -> Any:
    """The process's one TensorRT logger (builder, parser and runtime share it, as TensorRT asks)."""
    logger = _LOGGERS.get(id(trt))
    if logger is None:
        logger = _LOGGERS[id(trt)] = trt.Logger(trt.Logger.WARNING)
    return logger


# -- the GPU ----------------------------------------------------------------------------------------

def gpu_identity(device: int = 0) -> GpuIdentity:
    """Name, compute capability, SM count and memory (GiB, rounded) of a CUDA device, from the CUDA runtime.

    BackendError (one line, naming the backend and the fallback) when cuda-python is missing or no device is seen.
    """
    return CudaRuntime().identity(device)


# -- build -------------------------------------------------------------------------------------------

def engine_input_shape(meta: ModelMetadata, batch_size: int | None, max_batch: int) -> tuple[int, int, int, int]:
    """The input shape an engine is built for: the model's fixed batch, else ``max_batch``."""
    if max_batch < 1:
        raise ValueError(f"max_batch must be >= 1, got {max_batch}")
    return (batch_size or max_batch, 3, meta.input_height, meta.input_width)


def plan_buffers(shapes: Mapping[str, Sequence[int]], max_batch: int) -> dict[str, tuple[int, ...]]:
    """Allocation shape of every I/O tensor: a dynamic (-1) batch becomes ``max_batch``.

    Any other dynamic dimension is an error: the model file promises a static spatial shape.
    """
    planned = {}
    for name, shape in shapes.items():
        dims = list(shape)
        if dims and dims[0] < 0:
            dims[0] = max_batch
        if any(d < 0 for d in dims):
            raise ModelFileError(f"engine tensor '{name}' has dynamic dimensions {list(shape)} beyond the batch; re-export with a static input size")
        planned[name] = tuple(int(d) for d in dims)
    return planned


@dataclass
class BuildOptions:
    """How to build an engine when the cache has none."""

    precision: str | None = "fp16"  # fp32 | fp16 | int8; None = a deploy graph's own precision
    workspace_mb: int = 1024  # builder workspace limit (MiB)
    max_batch: int = 1  # largest batch of a dynamic-batch model
    calibration_source: str | Path | None = None  # INT8: image folder or bag (else an INT8 file made earlier)
    calibration_topic: str | None = None  # INT8 from a bag: image topic (default: the only one)
    calibration_images: int = 256  # INT8: frames used for calibration
    resize_mode: str = "letterbox"  # how calibration frames are fitted to the input (as at inference; the node's default)


def _dynamic_inputs(onnx_path: Path) -> dict[str, list[int]]:
    """Inputs of an ONNX file whose batch dimension is dynamic, with their shapes (-1 for the batch)."""
    shapes = graph_io_shapes(load_onnx_file(onnx_path).graph.input)
    dynamic = {}
    for name, dims in shapes.items():
        values = [d if isinstance(d, int) and d > 0 else -1 for d in dims]
        if values and values[0] < 0:
            dynamic[name] = values
    return dynamic


def _attach_timing_cache(trt: Any, config: Any, path: Path) -> Any:
    """Give the builder config the timing cache at ``path``, or a fresh one when TensorRT cannot use it.

    The file is read only when its bytes match the content hash beside it (``fileio.sound_cache_file``): a
    damaged one is reported once and removed, never handed to TensorRT. ``create_timing_cache`` returns None
    for a blob it cannot read (another TensorRT build) and ``set_timing_cache`` returns False for one of another
    device: both start a fresh cache. The build writes the cache back (``_store_timing_cache``).
    """
    from mtl_perception.fileio import sound_cache_file

    data = path.read_bytes() if path.is_file() and sound_cache_file(path, "starting a fresh timing cache") else b""
    if data:
        cache = config.create_timing_cache(data)
        if cache is not None and config.set_timing_cache(cache, False):
            return cache
        LOG.warning("timing cache %s was written for another device or TensorRT build; starting a fresh one", path)
    cache = config.create_timing_cache(b"")
    if cache is None or not config.set_timing_cache(cache, False):
        raise BackendError("TensorRT refused an empty timing cache; see the TensorRT log above")
    return cache


def _store_timing_cache(path: Path, blob: bytes) -> None:
    """Write the builder's timing cache and its content hash (one writer at a time across processes)."""
    from mtl_perception.fileio import cache_lock, write_cache_file

    with cache_lock(path):
        write_cache_file(path, blob)


def build_engine(trt: Any, onnx_path: Path, meta: ModelMetadata, key: EngineKey, options: BuildOptions, cache_dir: Path) -> bytes:
    """Parse the precision (or deploy) file into a strongly typed network and build a serialised engine for ``key``."""
    logger = trt_logger(trt)
    builder = trt.Builder(logger)
    network = builder.create_network(network_creation_flags(trt))
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_path)):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise BackendError(f"TensorRT could not parse {onnx_path}: {errors}; run `mtl-perception check-trt --model {onnx_path}`")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(options.workspace_mb) << 20)
    # TF32 is on by default and rounds FP32 matmul inputs to 10-bit mantissas: off for every precision, since the
    # FP16 and INT8 files keep their sensitive layers in FP32 on purpose
    config.clear_flag(trt.BuilderFlag.TF32)
    timing_path = cache_dir / timing_cache_name(key)
    _attach_timing_cache(trt, config, timing_path)

    dynamic = _dynamic_inputs(onnx_path)
    if dynamic:  # dynamic-batch model: one profile from 1 to the largest batch
        profile = builder.create_optimization_profile()
        largest = key.input_shape[0]
        for name, dims in dynamic.items():
            profile.set_shape(name, (1, *dims[1:]), (largest, *dims[1:]), (largest, *dims[1:]))
        if config.add_optimization_profile(profile) < 0:
            raise BackendError(f"TensorRT rejected the optimisation profile for inputs {sorted(dynamic)} of {onnx_path}")

    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise BackendError(f"TensorRT failed to build an engine for {onnx_path} ({key.precision}); see the TensorRT log above, or raise --workspace-mb")
    timing = config.get_timing_cache()
    if timing is not None:
        _store_timing_cache(timing_path, bytes(timing.serialize()))
    return bytes(serialized)


def _deploy_input_shape(model: Any, source: str) -> tuple[int, ...]:
    shapes = graph_io_shapes(model.graph.input)
    if not shapes:
        raise ModelFileError(f"deploy graph {source} has no inputs")
    first = next(iter(shapes.values()))
    if any(not isinstance(d, int) or d <= 0 for d in first):
        raise ModelFileError(f"deploy graph {source} has a dynamic input shape {first}; deploy graphs are static")
    return tuple(first)


def prepare_engine(
    onnx_path: str | Path,
    options: BuildOptions | None = None,
    cache_dir: str | Path | None = None,
    on_mismatch: str = "rebuild",
    allow_build: bool = True,
    device: int = 0,
    graph: str = "network",
) -> tuple[Path, EngineKey, str, ModelMetadata]:
    """Find or build the engine of an ONNX file on this machine: (engine path, key, 'cache' | 'built', metadata).

    graph='network': ``onnx_path`` is the exported FP32 model file; the file parsed is its precision file
    for ``options.precision``. graph='deploy': ``onnx_path`` is a deploy graph, parsed as it is, in its
    own precision (``options.precision``, when given, must be that precision).
    """
    from mtl_perception.fileio import cache_lock, file_sha256, report_damaged
    from mtl_perception.inference.precision import CalibrationSpec, precision_model_file, precision_of

    options = options or BuildOptions()
    check_graph_kind(graph)
    trt = import_tensorrt()
    onnx_path = Path(onnx_path)
    cache = EngineCache(cache_dir)
    model = load_onnx_file(onnx_path)
    if graph == "network":
        meta = describe_onnx(model, str(onnx_path))
        precision = options.precision or "fp16"
        fixed_batch = static_batch_size(graph_io_shapes(model.graph.input))
        input_shape: tuple[int, ...] = engine_input_shape(meta, fixed_batch, options.max_batch)
        del model
        calibration = None
        if precision == "int8" and options.calibration_source is not None:
            calibration = CalibrationSpec(options.calibration_source, options.calibration_topic, options.calibration_images, options.resize_mode)
        build_path = precision_model_file(onnx_path, precision, cache_dir, calibration)  # precision/ of the same cache root
    else:
        meta = metadata_from_props({p.key: p.value for p in model.metadata_props}, str(onnx_path))
        precision = precision_of(model)
        if options.precision is not None and options.precision != precision:
            raise BackendError(
                f"deploy graph {onnx_path.name} is {precision}, not {options.precision}: compose it from "
                f"precision_model_file(model, '{options.precision}') or leave precision unset"
            )
        input_shape = _deploy_input_shape(model, str(onnx_path))
        del model
        build_path = onnx_path
    gpu = gpu_identity(device)
    key = EngineKey(file_sha256(build_path), str(trt.__version__), gpu.name, gpu.capability, precision, input_shape, gpu.sm_count, gpu.memory_gib)
    decision = resolve_engine(cache, key, on_mismatch, allow_build)
    if decision.status == "hit" and decision.engine_path is not None:
        return decision.engine_path, key, "cache", meta
    cache.root.mkdir(mode=0o700, parents=True, exist_ok=True)
    with cache_lock(cache.paths(key, onnx_path.stem)[0]):  # one build per engine across processes; the others wait and load it
        decision = resolve_engine(cache, key, on_mismatch, allow_build)
        if decision.status == "hit" and decision.engine_path is not None:
            return decision.engine_path, key, "cache", meta
        if decision.damaged is not None:
            report_damaged(decision.damaged, "; ".join(decision.reasons), "building the engine again")
        elif decision.reasons:
            LOG.warning("building a TensorRT engine: %s", decision.message(key))
        start = time.perf_counter()
        with CudaRuntime().device_guard(device):
            engine = build_engine(trt, build_path, meta, key, options, cache.root)
        extra = {"metadata": meta.to_json(), "onnx_file": build_path.name, "source_file": onnx_path.name, "graph": graph,
                 "workspace_mb": options.workspace_mb, "build_seconds": round(time.perf_counter() - start, 1)}
        return cache.store(key, onnx_path.stem, engine, extra), key, "built", meta


# -- run ---------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class TensorSpec:
    """One engine I/O tensor: its engine shape (-1 = dynamic batch), NumPy dtype and direction."""

    shape: tuple[int, ...]
    dtype: np.dtype
    is_input: bool


def engine_io(trt: Any, engine: Any) -> dict[str, TensorSpec]:
    """Every I/O tensor of an engine, in the engine's order."""
    specs: dict[str, TensorSpec] = {}
    for index in range(engine.num_io_tensors):
        name = engine.get_tensor_name(index)
        shape = tuple(int(d) for d in engine.get_tensor_shape(name))
        trt_type = engine.get_tensor_dtype(name)
        try:
            dtype = np.dtype(trt.nptype(trt_type))
        except TypeError:
            raise BackendError(f"engine tensor '{name}' has TensorRT type {trt_type}, which has no NumPy type; "
                               "keep the graph's inputs and outputs in float32, float16, int8, uint8, int32, int64 or bool") from None
        specs[name] = TensorSpec(shape, dtype, engine.get_tensor_mode(name) == trt.TensorIOMode.INPUT)
    return specs


class TensorRTBackend(TensorGraphBackend):
    """Runs a TensorRT engine built from (or cached for) an ONNX network file or deploy graph.

    precision: fp32 | fp16 | int8 (default fp16 for a network; a deploy graph's own for graph='deploy').
    cache_dir: the cache root (``paths.cache_dir``; None = $MTL_PERCEPTION_CACHE or ~/.cache/mtl_perception): engines
    in its engines/, precision files in its precision/, where a frame pipeline on the same root finds the same files
    for its deploy graphs. on_mismatch: 'rebuild' or 'fail' when the cached engine was built by
    another TensorRT version or GPU. allow_build=False never builds (engines prepared with build-engine).
    calibration_source / calibration_topic: INT8 calibration frames (image folder or bag); without them an INT8
    file made earlier (``mtl-perception quantize`` / ``build-engine --calib-dir``) is used. graph: network | deploy.
    """

    name = "tensorrt"

    def __init__(
        self,
        model_path: str | Path,
        precision: str | None = None,
        cache_dir: str | Path | None = None,
        workspace_mb: int = 1024,
        on_mismatch: str = "rebuild",
        allow_build: bool = True,
        calibration_source: str | Path | None = None,
        calibration_topic: str | None = None,
        max_batch: int = 1,
        device: int = 0,
        graph: str = "network",
        resize_mode: str = "letterbox",
    ) -> None:
        self.context = None
        self.stream = None
        self._buffers: dict[str, TensorBuffers] = {}
        self._input_names: list[str] = []
        self._output_names: list[str] = []
        self.graph = check_graph_kind(graph)
        if precision is None and graph == "network":
            precision = "fp16"
        trt = import_tensorrt()
        self._cuda = CudaRuntime()
        self.device_index = int(device)
        self._cuda.identity(self.device_index)  # no GPU, or no such device: one line naming the fallback, before anything else
        options = BuildOptions(precision, workspace_mb, max_batch, calibration_source, calibration_topic, resize_mode=resize_mode)
        with self._cuda.device_guard(self.device_index):
            self.engine_path, self.key, self.engine_source, self.metadata = prepare_engine(
                model_path, options, cache_dir, on_mismatch, allow_build, self.device_index, graph)
            self._runtime = trt.Runtime(trt_logger(trt))
            self.engine = self._runtime.deserialize_cuda_engine(self.engine_path.read_bytes())
            if self.engine is None and self.engine_source == "cache":  # a cached engine TensorRT refuses: built again, once
                from mtl_perception.fileio import report_damaged

                report_damaged(self.engine_path, "TensorRT could not deserialise it", "building the engine again")
                EngineCache.discard(self.engine_path)
                self.engine_path, self.key, self.engine_source, self.metadata = prepare_engine(
                    model_path, options, cache_dir, on_mismatch, allow_build, self.device_index, graph)
                self.engine = self._runtime.deserialize_cuda_engine(self.engine_path.read_bytes())
            if self.engine is None:
                raise BackendError(f"TensorRT could not deserialise {self.engine_path}, which it just built; see the TensorRT log above")
            context = self.engine.create_execution_context()
            if context is None:
                raise BackendError(f"TensorRT could not create an execution context for {self.engine_path.name} (out of GPU memory?)")
            self.specs = engine_io(trt, self.engine)
            self._input_names = [n for n, s in self.specs.items() if s.is_input]
            self._output_names = [n for n, s in self.specs.items() if not s.is_input]
            if self.graph == "network":
                validate_io({n: list(self.specs[n].shape) for n in self._input_names}, {n: list(self.specs[n].shape) for n in self._output_names},
                            self.metadata, f"TensorRT engine {self.engine_path.name}")
            self.dynamic_batch = any(self.specs[n].shape and self.specs[n].shape[0] < 0 for n in self._input_names)
            self.max_batch = int(self.key.input_shape[0]) if self.dynamic_batch else 1
            first = self.specs[self._input_names[0]].shape if self._input_names else ()
            self.batch_size = None if self.dynamic_batch else (first[0] if self.graph == "network" and first else None)
            try:
                self._bind(context, plan_buffers({n: s.shape for n, s in self.specs.items()}, self.max_batch))
            except BaseException:
                self._free()
                raise
            self.context = context
        self._outputs = {t: self.metadata.output_names[t] for t in self.metadata.tasks} if self.graph == "network" else {}
        self.name = f"tensorrt-{self.key.precision}"

    def _bind(self, context: Any, shapes: Mapping[str, tuple[int, ...]]) -> None:
        """Allocate the stream and every tensor's device and pinned host buffers; bind the device ones."""
        self.stream = self._cuda.create_stream()
        for name, shape in shapes.items():
            self._buffers[name] = buffers = allocate(self._cuda, shape, self.specs[name].dtype)
            if not context.set_tensor_address(name, buffers.device):
                raise BackendError(f"TensorRT refused the buffer of tensor '{name}' of {self.engine_path.name}")

    # the contract ------------------------------------------------------------------------------
    def run(self, feeds: Mapping[str, np.ndarray], output_names: Sequence[str] | None = None) -> dict[str, np.ndarray]:
        """Run the engine on named inputs; the named outputs (all when None), by name, with the engine's dtypes."""
        if self.context is None:
            raise BackendError("tensorrt backend is closed")
        names = list(output_names) if output_names is not None else list(self._output_names)
        unknown = [n for n in names if n not in self._output_names]
        if unknown:
            raise ValueError(f"{self.name}: no output(s) {unknown}; outputs: {self._output_names}")
        arrays, count = self._check_feeds(feeds)
        cuda, stream = self._cuda, self.stream
        with cuda.device_guard(self.device_index):
            for name, array in arrays.items():
                rows = self._rows(name, count)
                if rows is not None and not self.context.set_input_shape(name, array.shape):
                    raise BackendError(f"{self.name}: TensorRT refused input shape {array.shape} for '{name}'")
                buffers = self._buffers[name]
                np.copyto(buffers.array[:rows] if rows is not None else buffers.array, array)
                cuda.copy_to_device(buffers.device, buffers.host, buffers.rows_nbytes(rows), stream)
            if not self.context.execute_async_v3(cuda.handle(stream)):
                raise BackendError(f"{self.name}: execute_async_v3 failed; see the TensorRT log")
            for name in names:
                buffers = self._buffers[name]
                cuda.copy_to_host(buffers.host, buffers.device, buffers.rows_nbytes(self._rows(name, count)), stream)
            cuda.synchronize(stream)
        return {name: self._host_rows(name, count).copy() for name in names}

    def infer(self, batch: np.ndarray) -> dict[str, np.ndarray]:
        if self.graph != "network":
            raise BackendError("this tensorrt backend holds a deploy graph; infer() runs a network (use run())")
        if self.context is None:
            raise BackendError("tensorrt backend is closed")
        batch = self.check_batch(batch)
        if batch.shape[0] > self.max_batch and self.dynamic_batch:
            raise ValueError(f"{self.name}: batch of {batch.shape[0]} exceeds the engine's largest batch {self.max_batch}; rebuild with a larger max_batch")
        outputs = self.run({INPUT_NAME: batch}, list(self._outputs.values()))
        return {task: outputs[name].astype(np.float32, copy=False) for task, name in self._outputs.items()}

    def close(self) -> None:
        """Wait for the stream (no copy or kernel may still use the buffers), then free buffers and stream."""
        self.context = None
        self._free()
        self.engine = None

    def _free(self) -> None:
        if self.stream is None and not self._buffers:
            return
        with self._cuda.device_guard(self.device_index):
            if self.stream is not None:
                self._cuda.synchronize(self.stream)
            buffers, self._buffers = self._buffers, {}
            for item in buffers.values():
                release(self._cuda, item)
            if self.stream is not None:
                stream, self.stream = self.stream, None
                self._cuda.destroy_stream(stream)

    # helpers -----------------------------------------------------------------------------------
    def _check_feeds(self, feeds: Mapping[str, np.ndarray]) -> tuple[dict[str, np.ndarray], int]:
        """The inputs as contiguous arrays of the engine's dtypes and shapes, and the batch (rows) they hold."""
        missing = [n for n in self._input_names if n not in feeds]
        extra = [n for n in feeds if n not in self._input_names]
        if missing or extra:
            raise ValueError(f"{self.name}: inputs are {self._input_names}; missing {missing}, unknown {extra}")
        arrays: dict[str, np.ndarray] = {}
        count = self.max_batch
        for name in self._input_names:
            array = np.asarray(feeds[name])
            spec = self.specs[name]
            if array.dtype != spec.dtype:
                raise ValueError(f"{self.name}: input '{name}' must be {spec.dtype}, got {array.dtype}")
            dynamic = bool(spec.shape) and spec.shape[0] < 0
            expected = spec.shape[1:] if dynamic else spec.shape
            got = array.shape[1:] if dynamic else array.shape
            if tuple(got) != tuple(expected) or (dynamic and not 1 <= array.shape[0] <= self.max_batch):
                shown = ["N" if dynamic and i == 0 else d for i, d in enumerate(spec.shape)]
                raise ValueError(f"{self.name}: input '{name}' has shape {array.shape}, the engine takes {shown} (N <= {self.max_batch})")
            if dynamic:
                count = array.shape[0]
            arrays[name] = np.ascontiguousarray(array)
        return arrays, count

    def _rows(self, name: str, count: int) -> int | None:
        """``count`` for a dynamic-batch tensor (its first rows are used); None for a static one (all of it)."""
        shape = self.specs[name].shape
        return count if shape and shape[0] < 0 else None

    def _host_rows(self, name: str, count: int) -> np.ndarray:
        rows = self._rows(name, count)
        array = self._buffers[name].array
        return array[:rows] if rows is not None else array
