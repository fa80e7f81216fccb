"""The CUDA runtime the TensorRT backend needs, through cuda-python's ``cuda.bindings.runtime`` (no torch).

JetPack ships TensorRT and CUDA but no PyTorch, so device memory, pinned host buffers, streams, copies and
the device identity come from the CUDA runtime itself, as TensorRT's own Python samples take them. Every
``cuda.bindings.runtime`` call returns a tuple ``(cudaError_t, *values)``; ``CudaRuntime.call`` turns an
error into a one-line ``BackendError`` naming the call, the error and its text, and returns the values.

The module is looked up with ``importlib.import_module`` (``sys.modules`` first), so a test can stand a
double in for it (``test/cuda_double.py``) in-process or in a node process.
"""
from __future__ import annotations

import contextlib
import ctypes
import importlib
import math
from dataclasses import dataclass
from typing import Any, Iterator

import numpy as np

from mtl_perception.inference.backends.base import BackendError

CUDART_MODULE = "cuda.bindings.runtime"
FALLBACK_HINT = "use backend 'onnxruntime' (the node's fallback_backend) on this machine"
CUDA_MISSING = (
    "the tensorrt backend needs the CUDA runtime bindings of cuda-python (module cuda.bindings.runtime), which are "
    "not importable: `pip install cuda-python` (12.x for CUDA 12 / JetPack 6, 13.x for CUDA 13 / JetPack 7); or " + FALLBACK_HINT
)


@dataclass(frozen=True)
class GpuIdentity:
    """What an engine and a timing cache depend on besides TensorRT."""

    name: str
    capability: str  # "major.minor"
    sm_count: int
    memory_gib: int


def import_cudart() -> Any:
    """The ``cuda.bindings.runtime`` module; BackendError saying how to install it when it is missing."""
    try:
        return importlib.import_module(CUDART_MODULE)
    except ImportError:
        raise BackendError(CUDA_MISSING) from None


def _text(value: Any) -> str:
    return value.decode(errors="replace").rstrip("\x00") if isinstance(value, (bytes, bytearray)) else str(value).rstrip("\x00")


class CudaRuntime:
    """Checked calls into the CUDA runtime: devices, streams, device and pinned host memory, async copies."""

    def __init__(self, rt: Any | None = None) -> None:
        self.rt = rt if rt is not None else import_cudart()
        self._success = self.rt.cudaError_t.cudaSuccess

    def describe(self, err: Any) -> str:
        """``cudaErrorX (its text)`` for an error code."""
        name = self.rt.cudaGetErrorName(err)
        text = self.rt.cudaGetErrorString(err)
        return f"{_text(name[1]) if name[0] == self._success else err} ({_text(text[1]) if text[0] == self._success else 'no text'})"

    def call(self, what: str, result: tuple) -> Any:
        """The value(s) of a runtime call's ``(err, *values)`` result; BackendError when ``err`` is not success."""
        err, *values = result
        if err != self._success:
            raise BackendError(f"CUDA {what} failed: {self.describe(err)}")
        return values[0] if len(values) == 1 else tuple(values) if values else None

    # devices ------------------------------------------------------------------------------------------
    def device_count(self) -> int:
        """The number of CUDA devices; BackendError (one line, the fallback named) when there is none."""
        err, *values = self.rt.cudaGetDeviceCount()
        if err != self._success or not values or not values[0]:
            reason = f"cudaGetDeviceCount: {self.describe(err)}" if err != self._success else "cudaGetDeviceCount found 0 devices"
            raise BackendError(f"backend 'tensorrt' needs a CUDA GPU and finds none ({reason}); {FALLBACK_HINT}")
        return int(values[0])

    def identity(self, device: int = 0) -> GpuIdentity:
        """Name, compute capability, SM count and memory (GiB, rounded) of device ``device``."""
        count = self.device_count()
        if not 0 <= device < count:
            raise BackendError(f"backend 'tensorrt': CUDA device {device} does not exist ({count} device(s): 0..{count - 1}); set the device option, or {FALLBACK_HINT}")
        props = self.call(f"cudaGetDeviceProperties({device})", self.rt.cudaGetDeviceProperties(device))
        return GpuIdentity(_text(props.name), f"{props.major}.{props.minor}", int(props.multiProcessorCount), int(round(props.totalGlobalMem / 2**30)))

    @contextlib.contextmanager
    def device_guard(self, device: int) -> Iterator[None]:
        """Make ``device`` current on this thread for the block, then restore the previous one."""
        previous = self.call("cudaGetDevice", self.rt.cudaGetDevice())
        if previous != device:
            self.call(f"cudaSetDevice({device})", self.rt.cudaSetDevice(device))
        try:
            yield
        finally:
            if previous != device:
                self.call(f"cudaSetDevice({previous})", self.rt.cudaSetDevice(previous))

    # streams ------------------------------------------------------------------------------------------
    def create_stream(self) -> Any:
        """A non-blocking stream (it does not wait for work on the legacy default stream)."""
        return self.call("cudaStreamCreateWithFlags", self.rt.cudaStreamCreateWithFlags(self.rt.cudaStreamNonBlocking))

    def synchronize(self, stream: Any) -> None:
        self.call("cudaStreamSynchronize", self.rt.cudaStreamSynchronize(stream))

    def destroy_stream(self, stream: Any) -> None:
        self.call("cudaStreamDestroy", self.rt.cudaStreamDestroy(stream))

    @staticmethod
    def handle(stream: Any) -> int:
        """The stream as the integer TensorRT's ``execute_async_v3`` takes."""
        return int(stream)

    # memory -------------------------------------------------------------------------------------------
    def malloc(self, nbytes: int) -> int:
        """Device memory of ``nbytes`` (at least one byte); its address."""
        return int(self.call(f"cudaMalloc({nbytes})", self.rt.cudaMalloc(max(1, int(nbytes)))))

    def free(self, pointer: int) -> None:
        self.call("cudaFree", self.rt.cudaFree(pointer))

    def malloc_host(self, nbytes: int) -> int:
        """Page-locked host memory of ``nbytes`` (at least one byte): asynchronous copies need it."""
        return int(self.call(f"cudaMallocHost({nbytes})", self.rt.cudaMallocHost(max(1, int(nbytes)))))

    def free_host(self, pointer: int) -> None:
        self.call("cudaFreeHost", self.rt.cudaFreeHost(pointer))

    @staticmethod
    def host_array(pointer: int, shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
        """A NumPy view of host memory at ``pointer`` (it does not own the memory)."""
        dtype = np.dtype(dtype)
        nbytes = math.prod(shape) * dtype.itemsize
        raw = (ctypes.c_uint8 * max(1, nbytes)).from_address(pointer)
        return np.frombuffer(raw, dtype=np.uint8, count=nbytes).view(dtype).reshape(shape)

    def copy_to_device(self, device_pointer: int, host_pointer: int, nbytes: int, stream: Any) -> None:
        kind = self.rt.cudaMemcpyKind.cudaMemcpyHostToDevice
        self.call("cudaMemcpyAsync (host to device)", self.rt.cudaMemcpyAsync(device_pointer, host_pointer, nbytes, kind, stream))

    def copy_to_host(self, host_pointer: int, device_pointer: int, nbytes: int, stream: Any) -> None:
        kind = self.rt.cudaMemcpyKind.cudaMemcpyDeviceToHost
        self.call("cudaMemcpyAsync (device to host)", self.rt.cudaMemcpyAsync(host_pointer, device_pointer, nbytes, kind, stream))


@dataclass
class TensorBuffers:
    """One engine I/O tensor's memory: device buffer, pinned host buffer and a NumPy view of the latter."""

    device: int
    host: int
    array: np.ndarray  # (the planned shape, the engine's dtype) over ``host``

    def rows_nbytes(self, rows: int | None) -> int:
        """Bytes of the first ``rows`` rows (the whole buffer when None)."""
        if rows is None or self.array.ndim == 0:
            return int(self.array.nbytes)
        return int(self.array[:rows].nbytes)


def allocate(cuda: CudaRuntime, shape: tuple[int, ...], dtype: np.dtype) -> TensorBuffers:
    """Device and pinned host memory for one tensor of ``shape`` and ``dtype``."""
    nbytes = math.prod(shape) * np.dtype(dtype).itemsize
    device = cuda.malloc(nbytes)
    try:
        host = cuda.malloc_host(nbytes)
    except BackendError:
        cuda.free(device)
        raise
    return TensorBuffers(device, host, cuda.host_array(host, shape, dtype))


def release(cuda: CudaRuntime, buffers: TensorBuffers) -> None:
    """Free both buffers of a tensor."""
    cuda.free(buffers.device)
    cuda.free_host(buffers.host)
