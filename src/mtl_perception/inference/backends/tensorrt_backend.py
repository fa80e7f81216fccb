"""Native TensorRT 10 backend: engine build (FP32/FP16/INT8), engine cache, and asynchronous inference.

Written against the TensorRT 10 Python API (``tensorrt``): ``Builder`` + ``OnnxParser`` build a
serialised engine with a workspace limit (``set_memory_pool_limit``), a timing cache and, for INT8, an
``IInt8EntropyCalibrator2`` fed from an image folder or a bag (implicit quantisation: deprecated since
TensorRT 10.1 in favour of Q/DQ graphs, still available throughout TensorRT 10). Engines live in the ``EngineCache``
(see ``engine_cache.py``): a matching engine is loaded and never rebuilt.

Device memory and the CUDA stream come from PyTorch CUDA tensors (torch is already a dependency and
ships with JetPack), imported lazily: buffers are allocated once for the largest batch, bound with
``set_tensor_address``, and every ``infer`` is host->device copy, ``execute_async_v3``, device->host
copy on one stream, then a single synchronise.
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Mapping, Sequence

import numpy as np

from mtl_perception.inference.backends.base import Backend, BackendError
from mtl_perception.inference.calibration import CalibrationCacheFile, calibration_batches, iter_calibration_images
from mtl_perception.inference.engine_cache import EngineCache, EngineKey, resolve_engine
from mtl_perception.inference.metadata import INPUT_NAME, ModelMetadata
from mtl_perception.inference.model_file import ModelFileError, describe_onnx, graph_io_shapes, load_onnx_file, static_batch_size, validate_io

LOG = logging.getLogger(__name__)
TENSORRT_MAJOR = 10  # TensorRT 11 removed the precision flags and implicit INT8 calibration used here
TENSORRT_MISSING = (
    "the TensorRT Python package is not importable; on a Jetson it comes with JetPack (python3-libnvinfer), "
    "on x86 install `tensorrt` from NVIDIA's package index; or use backend 'onnxruntime'"
)


def import_tensorrt() -> Any:
    """The ``tensorrt`` module, checked to be a TensorRT 10 release."""
    try:
        import tensorrt as trt
    except ImportError:
        raise BackendError(TENSORRT_MISSING) from None
    major = int(str(trt.__version__).split(".")[0])
    if major != TENSORRT_MAJOR:
        raise BackendError(f"TensorRT {trt.__version__} found; this backend is written for TensorRT {TENSORRT_MAJOR}.x (use backend 'onnxruntime' otherwise)")
    return trt


def gpu_identity(device: int = 0) -> tuple[str, str]:
    """(GPU name, compute capability 'major.minor') of a CUDA device, through torch."""
    import torch

    if not torch.cuda.is_available():
        raise BackendError(f"the tensorrt backend needs a CUDA GPU, and torch {torch.__version__} sees none")
    major, minor = torch.cuda.get_device_capability(device)
    return torch.cuda.get_device_name(device), f"{major}.{minor}"


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

    precision: str = "fp16"  # fp32 | fp16 | int8
    workspace_mb: int = 1024  # builder workspace limit (MiB)
    max_batch: int = 1  # largest batch of a dynamic-batch model
    calibration_source: str | Path | None = None  # INT8: image folder or bag
    calibration_topic: str | None = None  # INT8 from a bag: image topic (default: the only one)
    calibration_images: int = 256  # INT8: frames used for calibration
    calibration_batch: int = 8  # INT8: frames per calibration batch of a dynamic-batch model (else its fixed batch)
    resize_mode: str = "stretch"  # how calibration frames are fitted to the input (as at inference)


def _make_entropy_calibrator(trt: Any, batches: Iterator[np.ndarray], batch_size: int, cache_file: CalibrationCacheFile) -> Any:
    """An IInt8EntropyCalibrator2 that feeds preprocessed batches and keeps TensorRT's calibration table."""
    import torch

    class EntropyCalibrator(trt.IInt8EntropyCalibrator2):
        def __init__(self) -> None:
            trt.IInt8EntropyCalibrator2.__init__(self)
            self.device_batch: torch.Tensor | None = None  # kept alive while TensorRT reads it
            self.seen = 0

        def get_batch_size(self) -> int:
            return batch_size

        def get_batch(self, names: list[str]) -> list[int] | None:
            try:
                batch = next(batches)
            except StopIteration:
                return None
            self.device_batch = torch.from_numpy(batch).cuda()
            self.seen += batch.shape[0]
            return [int(self.device_batch.data_ptr())]

        def read_calibration_cache(self) -> bytes | None:
            return cache_file.read()

        def write_calibration_cache(self, cache: Any) -> None:
            cache_file.write(bytes(cache))

    return EntropyCalibrator()


def build_engine(trt: Any, onnx_path: Path, meta: ModelMetadata, key: EngineKey, options: BuildOptions, cache_dir: Path) -> bytes:
    """Parse the ONNX file and build a serialised engine for ``key`` (workspace limit, timing cache, precision)."""
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    network = builder.create_network(0)  # TensorRT 10 networks are always explicit-batch
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_path)):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise BackendError(f"TensorRT could not parse {onnx_path}: {errors}; run `mtl-perception check-trt --model {onnx_path}`")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(options.workspace_mb) << 20)

    timing_path = cache_dir / f"timing-{key.tensorrt_version}-{key.compute_capability}.cache"
    timing_cache = config.create_timing_cache(timing_path.read_bytes() if timing_path.is_file() else b"")
    config.set_timing_cache(timing_cache, ignore_mismatch=False)

    shape = key.input_shape
    profile = None
    if network.get_input(0).shape[0] < 0:  # dynamic-batch model: one profile from 1 to the largest batch
        profile = builder.create_optimization_profile()
        profile.set_shape(INPUT_NAME, (1, *shape[1:]), shape, shape)
        config.add_optimization_profile(profile)

    if key.precision in ("fp16", "int8"):
        config.set_flag(trt.BuilderFlag.FP16)  # INT8 builds fall back to FP16 for layers without INT8 kernels
    if key.precision == "int8":
        cache_file = CalibrationCacheFile(cache_dir, key.onnx_sha256)
        if cache_file.read() is None and options.calibration_source is None:
            raise BackendError("an INT8 build needs calibration frames (--calib-dir: an image folder or a bag) or an existing calibration cache")
        batch = shape[0] if profile is None else min(options.calibration_batch, shape[0])  # a fixed batch is fixed
        images = iter_calibration_images(options.calibration_source, options.calibration_topic, options.calibration_images) if options.calibration_source else iter(())
        config.set_flag(trt.BuilderFlag.INT8)
        config.int8_calibrator = _make_entropy_calibrator(trt, calibration_batches(images, meta, batch, options.resize_mode), batch, cache_file)
        if profile is not None:
            config.set_calibration_profile(profile)

    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise BackendError(f"TensorRT failed to build an engine for {onnx_path} ({key.precision}); see the TensorRT log above, or raise --workspace-mb")
    from mtl_perception.fileio import atomic_write_bytes

    atomic_write_bytes(timing_path, bytes(config.get_timing_cache().serialize()))
    return bytes(serialized)


def prepare_engine(
    onnx_path: str | Path,
    options: BuildOptions | None = None,
    cache_dir: str | Path | None = None,
    on_mismatch: str = "rebuild",
    allow_build: bool = True,
    device: int = 0,
) -> tuple[Path, EngineKey, str, ModelMetadata]:
    """Find or build the engine of an ONNX model on this machine: (engine path, key, 'cache' | 'built', metadata)."""
    from mtl_perception.fileio import file_sha256

    options = options or BuildOptions()
    trt = import_tensorrt()
    onnx_path = Path(onnx_path)
    graph = load_onnx_file(onnx_path)
    meta = describe_onnx(graph, str(onnx_path))
    fixed_batch = static_batch_size(graph_io_shapes(graph.graph.input))
    del graph
    gpu_name, capability = gpu_identity(device)
    key = EngineKey(file_sha256(onnx_path), str(trt.__version__), gpu_name, capability, options.precision, engine_input_shape(meta, fixed_batch, options.max_batch))
    cache = EngineCache(cache_dir)
    decision = resolve_engine(cache, key, on_mismatch, allow_build)
    if decision.status == "hit" and decision.engine_path is not None:
        return decision.engine_path, key, "cache", meta
    if decision.reasons:
        LOG.warning("building a TensorRT engine: %s", decision.message(key))
    start = time.perf_counter()
    cache.root.mkdir(parents=True, exist_ok=True)
    engine = build_engine(trt, onnx_path, meta, key, options, cache.root)
    extra = {"metadata": meta.to_json(), "onnx_file": onnx_path.name, "workspace_mb": options.workspace_mb, "build_seconds": round(time.perf_counter() - start, 1)}
    return cache.store(key, onnx_path.stem, engine, extra), key, "built", meta


class TensorRTBackend(Backend):
    """Runs a TensorRT engine built from (or cached for) an exported ONNX model.

    precision: fp32 | fp16 | int8. cache_dir: engine cache (default ~/.cache/mtl_perception/engines or
    $MTL_PERCEPTION_ENGINE_CACHE). on_mismatch: 'rebuild' or 'fail' when the cached engine was built by
    another TensorRT version or GPU. allow_build=False never builds (engines prepared with build-engine).
    """

    name = "tensorrt"

    def __init__(
        self,
        model_path: str | Path,
        precision: str = "fp16",
        cache_dir: str | Path | None = None,
        workspace_mb: int = 1024,
        on_mismatch: str = "rebuild",
        allow_build: bool = True,
        calibration_source: str | Path | None = None,
        calibration_topic: str | None = None,
        max_batch: int = 1,
        device: int = 0,
    ) -> None:
        import torch

        options = BuildOptions(precision, workspace_mb, max_batch, calibration_source, calibration_topic)
        self.engine_path, self.key, self.engine_source, self.metadata = prepare_engine(model_path, options, cache_dir, on_mismatch, allow_build, device)
        trt = import_tensorrt()
        self.device = torch.device("cuda", device)
        self._logger = trt.Logger(trt.Logger.WARNING)
        self._runtime = trt.Runtime(self._logger)
        self.engine = self._runtime.deserialize_cuda_engine(self.engine_path.read_bytes())
        if self.engine is None:
            raise BackendError(f"TensorRT could not deserialise {self.engine_path}; delete it and its .json sidecar to rebuild")
        self.context = self.engine.create_execution_context()
        inputs, outputs, dtypes = self._engine_io(trt)
        validate_io(inputs, outputs, self.metadata, f"TensorRT engine {self.engine_path.name}")
        self.dynamic_batch = inputs[INPUT_NAME][0] < 0
        self.batch_size = None if self.dynamic_batch else inputs[INPUT_NAME][0]
        self.max_batch = self.key.input_shape[0]
        shapes = plan_buffers({**inputs, **outputs}, self.max_batch)
        self.stream = torch.cuda.Stream(self.device)
        self._device_buffers: dict[str, torch.Tensor] = {}
        self._host_buffers: dict[str, torch.Tensor] = {}
        for name, shape in shapes.items():
            dtype = getattr(torch, np.dtype(dtypes[name]).name)
            self._device_buffers[name] = torch.empty(shape, dtype=dtype, device=self.device)
            self._host_buffers[name] = torch.empty(shape, dtype=dtype).pin_memory()
            self.context.set_tensor_address(name, int(self._device_buffers[name].data_ptr()))
        if not self.dynamic_batch:
            self.context.set_input_shape(INPUT_NAME, shapes[INPUT_NAME])
        self._outputs = {t: self.metadata.output_names[t] for t in self.metadata.tasks}
        self.name = f"tensorrt-{self.key.precision}"

    def _engine_io(self, trt: Any) -> tuple[dict[str, list[int]], dict[str, list[int]], dict[str, Any]]:
        inputs: dict[str, list[int]] = {}
        outputs: dict[str, list[int]] = {}
        dtypes: dict[str, Any] = {}
        for index in range(self.engine.num_io_tensors):
            name = self.engine.get_tensor_name(index)
            shape = list(self.engine.get_tensor_shape(name))
            dtypes[name] = trt.nptype(self.engine.get_tensor_dtype(name))
            (inputs if self.engine.get_tensor_mode(name) == trt.TensorIOMode.INPUT else outputs)[name] = shape
        return inputs, outputs, dtypes

    def infer(self, batch: np.ndarray) -> dict[str, np.ndarray]:
        import torch

        if self.context is None:
            raise BackendError("tensorrt backend is closed")
        batch = self.check_batch(batch)
        count = batch.shape[0]
        if count > self.max_batch:
            raise ValueError(f"{self.name}: batch of {count} exceeds the engine's largest batch {self.max_batch}; rebuild with a larger max_batch")
        if self.dynamic_batch:
            self.context.set_input_shape(INPUT_NAME, (count, *batch.shape[1:]))
        host_in = self._host_buffers[INPUT_NAME][:count]
        host_in.copy_(torch.from_numpy(batch))
        with torch.cuda.stream(self.stream):
            self._device_buffers[INPUT_NAME][:count].copy_(host_in, non_blocking=True)
            if not self.context.execute_async_v3(self.stream.cuda_stream):
                raise BackendError(f"{self.name}: execute_async_v3 failed; see the TensorRT log")
            for name in self._outputs.values():
                self._host_buffers[name][:count].copy_(self._device_buffers[name][:count], non_blocking=True)
        self.stream.synchronize()
        return {task: self._host_buffers[name][:count].numpy().astype(np.float32, copy=True) for task, name in self._outputs.items()}

    def close(self) -> None:
        self.context = None
        self.engine = None
        self._device_buffers = {}
        self._host_buffers = {}
