"""The CUDA runtime layer of the TensorRT backend (``backends/cuda_runtime.py``, cuda-python, no torch).

Here there is no GPU (and no driver): the real ``cuda.bindings.runtime`` answers its own errors, which
must become one line at activation that names the backend and the fallback. The calls that need a device
run against ``cuda_double.py``, built from the real module (its error codes, memcpy kinds, stream type
and the functions' parameter names).
"""
from __future__ import annotations

import inspect
import sys

import numpy as np
import pytest

rt = pytest.importorskip("cuda.bindings.runtime", reason="cuda-python (requirements.txt) is not installed")

from cuda_double import FUNCTIONS, FakeCudart, FakeDevice, install  # noqa: E402
from mtl_perception.inference.backends import BackendError  # noqa: E402
from mtl_perception.inference.backends import cuda_runtime  # noqa: E402
from mtl_perception.inference.backends.cuda_runtime import CUDA_MISSING, CudaRuntime, allocate, release  # noqa: E402


def real_has_a_device() -> bool:
    err, *values = rt.cudaGetDeviceCount()
    return err == rt.cudaError_t.cudaSuccess and bool(values and values[0])


@pytest.mark.skipif(real_has_a_device(), reason="this machine has a CUDA device: the no-device path cannot be seen here")
def test_without_a_device_the_real_runtime_error_becomes_one_line_naming_backend_and_fallback():
    from mtl_perception.inference.backends.tensorrt_backend import gpu_identity

    with pytest.raises(BackendError) as caught:
        gpu_identity(0)
    message = str(caught.value)
    assert "\n" not in message and message.startswith("backend 'tensorrt' needs a CUDA GPU and finds none")
    err = rt.cudaGetDeviceCount()[0]
    assert rt.cudaGetErrorName(err)[1].decode() in message, "the CUDA runtime's own error is named"
    assert "use backend 'onnxruntime'" in message


@pytest.mark.skipif(real_has_a_device(), reason="this machine has a CUDA device")
def test_tensorrt_pipeline_activation_fails_on_the_real_runtime(tiny_model, monkeypatch):
    """TensorRT importable (the stand-in) but no GPU: FramePipeline (the node's activation) fails at once."""
    from mtl_perception.inference.frame_pipeline import FramePipeline
    from trt_double import FakeTensorRT

    monkeypatch.setitem(sys.modules, "tensorrt", FakeTensorRT("10.13.0.35"))
    with pytest.raises(BackendError, match=r"^backend 'tensorrt' needs a CUDA GPU and finds none \(cudaGetDeviceCount: cudaError"):
        FramePipeline(tiny_model, "tensorrt")


def test_missing_cuda_python_says_what_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, cuda_runtime.CUDART_MODULE, None)  # what `import` sees when it is not installed
    with pytest.raises(BackendError, match="pip install cuda-python") as caught:
        CudaRuntime()
    assert str(caught.value) == CUDA_MISSING and "onnxruntime" in CUDA_MISSING


def test_the_stand_in_matches_the_real_module():
    fake = FakeCudart()
    for name in FUNCTIONS:
        assert list(inspect.signature(getattr(fake, name)).parameters) == list(inspect.signature(getattr(rt, name)).parameters)
    assert fake.cudaError_t is rt.cudaError_t and fake.cudaMemcpyKind is rt.cudaMemcpyKind
    with pytest.raises(AttributeError):
        fake.cudaMemcpy  # not provided: code calling it fails here as well  # noqa: B018


def test_identity_guard_and_errors_through_checked_calls(monkeypatch):
    cudart = install(monkeypatch, FakeCudart((FakeDevice(), FakeDevice("Orin Nano", 8, 7, 8, 8 * 2**30))))
    cuda = CudaRuntime()
    assert cuda.identity(1) == cuda_runtime.GpuIdentity("Orin Nano", "8.7", 8, 8)
    with pytest.raises(BackendError, match=r"CUDA device 2 does not exist \(2 device\(s\): 0\.\.1\)"):
        cuda.identity(2)
    with cuda.device_guard(1):
        assert cudart.current_device == 1
    assert cudart.current_device == 0
    cudart.fail("cudaMalloc", rt.cudaError_t.cudaErrorMemoryAllocation)
    with pytest.raises(BackendError, match=r"^CUDA cudaMalloc\(64\) failed: cudaErrorMemoryAllocation \(out of memory\)$"):
        cuda.malloc(64)


def test_copies_run_in_stream_order_and_only_at_synchronise(monkeypatch):
    cudart = install(monkeypatch, FakeCudart())
    cuda = CudaRuntime()
    stream = cuda.create_stream()
    a, b = allocate(cuda, (4,), np.float32), allocate(cuda, (4,), np.float32)
    a.array[:] = [1, 2, 3, 4]
    cuda.copy_to_device(a.device, a.host, a.rows_nbytes(None), stream)
    cuda.copy_to_host(b.host, a.device, b.rows_nbytes(2), stream)
    assert b.array.tolist() == [0, 0, 0, 0], "nothing has run before the synchronise"
    cuda.synchronize(stream)
    assert b.array.tolist() == [1, 2, 0, 0], "two rows came back"
    with pytest.raises(BackendError, match="host to device.*cudaErrorInvalidValue"):
        cuda.copy_to_device(a.host, a.device, 16, stream)  # pointers the wrong way round
    release(cuda, a)
    release(cuda, b)
    cuda.destroy_stream(stream)
    assert cudart.live() == {"device": 0, "host": 0, "streams": 0} and cudart.violations == []


@pytest.mark.skipif(real_has_a_device(), reason="this machine has a CUDA device")
def test_creating_the_tensorrt_backend_directly_fails_the_same_way(tiny_model, monkeypatch):
    from mtl_perception.inference.backends import create_backend
    from trt_double import FakeTensorRT

    monkeypatch.setitem(sys.modules, "tensorrt", FakeTensorRT("11.4.0.106"))
    with pytest.raises(BackendError, match=r"^backend 'tensorrt' needs a CUDA GPU and finds none .*use backend 'onnxruntime'"):
        create_backend("tensorrt", tiny_model)
