"""A stand-in for cuda-python's ``cuda.bindings.runtime`` on a machine without a GPU.

Built from the real module (cuda-python must be installed): its ``cudaError_t``, ``cudaMemcpyKind``,
``cudaStream_t``, ``cudaStreamNonBlocking`` and error names/texts are the real ones, and every function
the stand-in provides must exist in the real module with the same parameter names (checked when it is
made). Calls return ``(cudaError_t, *values)`` tuples as the real ones do; anything else is absent
(AttributeError), so code that calls a function the stand-in lacks fails here.

Device memory is host memory the stand-in allocates and tracks. A copy checks its direction (device
pointer one side, page-locked host memory the other), bounds and liveness; the work queued on a stream
(copies, and the kernels the TensorRT double queues with ``enqueue``) runs in order only at
``cudaStreamSynchronize`` (or ``cudaStreamDestroy``), so reading a result before synchronising reads
stale memory, as on a GPU. ``fail(name, error)`` makes a function return that error from then on.
"""
from __future__ import annotations

import ctypes
import importlib
import inspect
import threading
import types
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

REAL_MODULE = "cuda.bindings.runtime"
FUNCTIONS = ("cudaGetDeviceCount", "cudaGetDeviceProperties", "cudaGetDevice", "cudaSetDevice", "cudaMalloc", "cudaFree",
             "cudaMallocHost", "cudaFreeHost", "cudaStreamCreateWithFlags", "cudaStreamSynchronize", "cudaStreamDestroy",
             "cudaMemcpyAsync")
PROPERTIES = ("name", "major", "minor", "multiProcessorCount", "totalGlobalMem")  # the cudaDeviceProp fields it fills


@dataclass(frozen=True)
class FakeDevice:
    """A device as ``cudaGetDeviceProperties`` describes it (defaults: a Jetson AGX Orin with 32 GiB)."""

    name: str = "Orin"
    major: int = 8
    minor: int = 7
    sm_count: int = 16
    total_memory: int = 32 * 2**30


@dataclass
class Allocation:
    buffer: np.ndarray
    kind: str  # "device" | "host"

    @property
    def address(self) -> int:
        return int(self.buffer.ctypes.data)


@dataclass
class Stream:
    handle: int
    flags: int
    pending: list[Callable[[], None]] = field(default_factory=list)


class FakeCudart(types.ModuleType):
    """The stand-in module (see the module docstring); put it in ``sys.modules['cuda.bindings.runtime']``."""

    def __init__(self, devices: tuple[FakeDevice, ...] = (FakeDevice(),), real: Any | None = None) -> None:
        super().__init__(REAL_MODULE)
        real = real if real is not None else real_runtime()
        self.real = real
        self.cudaError_t = real.cudaError_t
        self.cudaMemcpyKind = real.cudaMemcpyKind
        self.cudaStream_t = real.cudaStream_t
        self.cudaStreamNonBlocking = real.cudaStreamNonBlocking
        self.cudaGetErrorName = real.cudaGetErrorName
        self.cudaGetErrorString = real.cudaGetErrorString
        self.devices = tuple(devices)
        self.allocations: dict[int, Allocation] = {}
        self.streams: dict[int, Stream] = {}
        self.calls: list[tuple[str, tuple]] = []
        self.violations: list[str] = []  # misuse the real runtime would not report at once (freed while in flight)
        self._failures: dict[str, Any] = {}
        self._thread = threading.local()
        self._lock = threading.RLock()
        self._next_stream = 0x5000
        prop_fields = set(dir(real.cudaDeviceProp()))
        assert set(PROPERTIES) <= prop_fields, f"cudaDeviceProp lacks {set(PROPERTIES) - prop_fields}"
        for name in FUNCTIONS:
            assert hasattr(real, name), f"{REAL_MODULE} has no {name}"
            ours = list(inspect.signature(getattr(self, name)).parameters)
            theirs = list(inspect.signature(getattr(real, name)).parameters)
            assert ours == theirs, f"{name}: the stand-in takes {ours}, the real one {theirs}"

    # programming ---------------------------------------------------------------------------------------
    def fail(self, name: str, error: Any) -> None:
        """Make ``name`` return ``error`` (a ``cudaError_t``) from now on."""
        assert name in FUNCTIONS
        self._failures[name] = error

    def _record(self, name: str, *args: Any) -> Any | None:
        self.calls.append((name, args))
        return self._failures.get(name)

    def calls_to(self, name: str) -> list[tuple]:
        return [args for called, args in self.calls if called == name]

    @property
    def ok(self) -> Any:
        return self.cudaError_t.cudaSuccess

    @property
    def current_device(self) -> int:
        return getattr(self._thread, "device", 0)

    def live(self) -> dict[str, int]:
        """How many device buffers, host buffers and streams are still allocated (leak checks)."""
        kinds = [a.kind for a in self.allocations.values()]
        return {"device": kinds.count("device"), "host": kinds.count("host"), "streams": len(self.streams)}

    # devices -------------------------------------------------------------------------------------------
    def cudaGetDeviceCount(self) -> tuple:
        error = self._record("cudaGetDeviceCount")
        if error is not None:
            return error, 0
        if not self.devices:
            return self.cudaError_t.cudaErrorNoDevice, 0
        return self.ok, len(self.devices)

    def cudaGetDeviceProperties(self, device: int) -> tuple:
        error = self._record("cudaGetDeviceProperties", device)
        if error is not None:
            return error, None
        if not 0 <= device < len(self.devices):
            return self.cudaError_t.cudaErrorInvalidDevice, None
        d = self.devices[device]
        props = types.SimpleNamespace(name=d.name.encode(), major=d.major, minor=d.minor, multiProcessorCount=d.sm_count, totalGlobalMem=d.total_memory)
        return self.ok, props

    def cudaGetDevice(self) -> tuple:
        error = self._record("cudaGetDevice")
        return (error, 0) if error is not None else (self.ok, self.current_device)

    def cudaSetDevice(self, device: int) -> tuple:
        error = self._record("cudaSetDevice", device)
        if error is not None:
            return (error,)
        if not 0 <= device < len(self.devices):
            return (self.cudaError_t.cudaErrorInvalidDevice,)
        self._thread.device = device
        return (self.ok,)

    # memory --------------------------------------------------------------------------------------------
    def _allocate(self, name: str, size: int, kind: str) -> tuple:
        error = self._record(name, size)
        if error is not None:
            return error, None
        if size <= 0:
            return self.cudaError_t.cudaErrorInvalidValue, None
        allocation = Allocation(np.zeros(int(size), np.uint8), kind)
        with self._lock:
            self.allocations[allocation.address] = allocation
        return self.ok, allocation.address

    def _free(self, name: str, pointer: int, kind: str) -> tuple:
        error = self._record(name, pointer)
        if error is not None:
            return (error,)
        with self._lock:
            allocation = self.allocations.get(int(pointer))
            if allocation is None or allocation.kind != kind:
                return (self.cudaError_t.cudaErrorInvalidValue,)
            if any(s.pending for s in self.streams.values()):
                self.violations.append(f"{name}({pointer:#x}) while a stream still had queued work")
            del self.allocations[int(pointer)]
        return (self.ok,)

    def cudaMalloc(self, size: int) -> tuple:
        return self._allocate("cudaMalloc", size, "device")

    def cudaFree(self, devPtr: int) -> tuple:  # noqa: N803 - the real parameter name
        return self._free("cudaFree", devPtr, "device")

    def cudaMallocHost(self, size: int) -> tuple:
        return self._allocate("cudaMallocHost", size, "host")

    def cudaFreeHost(self, ptr: int) -> tuple:
        return self._free("cudaFreeHost", ptr, "host")

    def region(self, pointer: int, nbytes: int, kind: str) -> np.ndarray:
        """The bytes [pointer, pointer + nbytes) of a live allocation of ``kind``; ValueError otherwise."""
        with self._lock:
            for allocation in self.allocations.values():
                start = allocation.address
                if allocation.kind == kind and start <= pointer and pointer + nbytes <= start + allocation.buffer.size:
                    return allocation.buffer[pointer - start:pointer - start + nbytes]
        raise ValueError(f"{nbytes} bytes at {pointer:#x} are not inside one live {kind} allocation")

    # streams -------------------------------------------------------------------------------------------
    def _stream(self, stream: Any) -> Stream | None:
        return self.streams.get(int(stream))

    def cudaStreamCreateWithFlags(self, flags: int) -> tuple:
        error = self._record("cudaStreamCreateWithFlags", flags)
        if error is not None:
            return error, None
        with self._lock:
            self._next_stream += 0x10
            stream = Stream(self._next_stream, int(flags))
            self.streams[stream.handle] = stream
        return self.ok, self.cudaStream_t(stream.handle)

    def enqueue(self, stream: Any, work: Callable[[], None]) -> bool:
        """Queue ``work`` on a stream (what a kernel launch does); False for a stream that does not exist."""
        target = self._stream(stream)
        if target is None:
            return False
        target.pending.append(work)
        return True

    def _drain(self, stream: Stream) -> Any:
        """Run a stream's queued work in order; a failing kernel is cudaErrorLaunchFailure (recorded in violations)."""
        while stream.pending:
            work = stream.pending.pop(0)
            try:
                work()
            except Exception as exc:  # a kernel that faults: the runtime reports it at the next synchronise
                self.violations.append(f"work on stream {stream.handle:#x} failed: {type(exc).__name__}: {exc}")
                stream.pending.clear()
                return self.cudaError_t.cudaErrorLaunchFailure
        return self.ok

    def cudaStreamSynchronize(self, stream: Any) -> tuple:
        error = self._record("cudaStreamSynchronize", int(stream))
        if error is not None:
            return (error,)
        target = self._stream(stream)
        if target is None:
            return (self.cudaError_t.cudaErrorInvalidResourceHandle,)
        return (self._drain(target),)

    def cudaStreamDestroy(self, stream: Any) -> tuple:
        error = self._record("cudaStreamDestroy", int(stream))
        if error is not None:
            return (error,)
        target = self._stream(stream)
        if target is None:
            return (self.cudaError_t.cudaErrorInvalidResourceHandle,)
        self._drain(target)  # the runtime finishes queued work before releasing the stream
        del self.streams[target.handle]
        return (self.ok,)

    def cudaMemcpyAsync(self, dst: int, src: int, count: int, kind: Any, stream: Any) -> tuple:
        error = self._record("cudaMemcpyAsync", dst, src, count, kind, int(stream))
        if error is not None:
            return (error,)
        kinds = {self.cudaMemcpyKind.cudaMemcpyHostToDevice: ("device", "host"), self.cudaMemcpyKind.cudaMemcpyDeviceToHost: ("host", "device")}
        target = self._stream(stream)
        if kind not in kinds or target is None:
            return (self.cudaError_t.cudaErrorInvalidValue if target is not None else self.cudaError_t.cudaErrorInvalidResourceHandle,)
        to_kind, from_kind = kinds[kind]
        try:
            destination, source = self.region(int(dst), int(count), to_kind), self.region(int(src), int(count), from_kind)
        except ValueError:
            return (self.cudaError_t.cudaErrorInvalidValue,)
        target.pending.append(lambda: ctypes.memmove(destination.ctypes.data, source.ctypes.data, int(count)))
        return (self.ok,)


def real_runtime() -> Any:
    """cuda-python's own runtime module, also while a stand-in occupies its place in ``sys.modules``."""
    import sys

    module = sys.modules.get(REAL_MODULE)
    return module.real if isinstance(module, FakeCudart) else importlib.import_module(REAL_MODULE)


def install(monkeypatch: Any, cudart: FakeCudart) -> FakeCudart:
    """Put ``cudart`` in ``sys.modules`` for one test (``monkeypatch``: pytest's fixture)."""
    import sys

    monkeypatch.setitem(sys.modules, REAL_MODULE, cudart)
    return cudart
