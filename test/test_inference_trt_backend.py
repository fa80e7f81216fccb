"""The TensorRT backend's build and run paths against a test double of TensorRT 10.3, 10.13 and 11.4.

The double (``trt_double.py``) is generated from the real bindings' name table, so every TensorRT name
the backend touches must exist in that version (else AttributeError), and the tests assert that none
it touches is deprecated there. CUDA memory is replaced by CPU tensors (``CpuCuda``): the copies,
bindings and dtype handling are the backend's own code; only ``execute_async_v3`` is the double's.
"""
from __future__ import annotations

import contextlib
import json
import logging

import numpy as np
import onnx
import pytest
import torch
from onnx import TensorProto, helper, numpy_helper

from mtl_perception.fileio import file_sha256
from mtl_perception.inference.backends import tensorrt_backend as trt_backend
from mtl_perception.inference.backends.base import BackendError
from mtl_perception.inference.engine_cache import EngineCache, timing_cache_name
from mtl_perception.inference.metadata import OUTPUT_NAMES, ModelMetadata
from mtl_perception.inference.model_file import embed_metadata
from mtl_perception.inference.precision import PRECISION_KEY, precision_of
from trt_double import FakeObject, FakeTensorRT, host_memory, table_versions

VERSIONS = table_versions()
GPU = trt_backend.GpuIdentity("Orin", "8.7", 16, 32)


def meta(tasks=("depth", "semantic")) -> ModelMetadata:
    return ModelMetadata(tasks=list(tasks), output_names={t: OUTPUT_NAMES[t] for t in tasks}, class_names=["a", "b"],
                         palette=[[0, 0, 0], [255, 0, 0]], input_height=8, input_width=12)


def network_file(path, batch=1):
    """A two-task network (depth: 1x1 conv + exp; semantic: 1x1 conv) with real metadata."""
    rng = np.random.default_rng(0)
    w_depth = numpy_helper.from_array(rng.normal(0, 0.1, (1, 3, 1, 1)).astype(np.float32), "w_depth")
    w_sem = numpy_helper.from_array(rng.normal(0, 0.1, (2, 3, 1, 1)).astype(np.float32), "w_sem")
    nodes = [helper.make_node("Conv", ["image", "w_depth"], ["d"], name="depth_conv"), helper.make_node("Exp", ["d"], ["depth"], name="depth_exp"),
             helper.make_node("Conv", ["image", "w_sem"], ["semantic_logits"], name="sem_conv")]
    n = batch if batch else "N"
    graph = helper.make_graph(nodes, "net", [helper.make_tensor_value_info("image", TensorProto.FLOAT, [n, 3, 8, 12])],
                              [helper.make_tensor_value_info("depth", TensorProto.FLOAT, [n, 1, 8, 12]),
                               helper.make_tensor_value_info("semantic_logits", TensorProto.FLOAT, [n, 2, 8, 12])], [w_depth, w_sem])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=9)
    embed_metadata(model, meta())
    onnx.save(model, str(path))
    return path


def deploy_file(path, precision=None):
    """A deploy-style graph: uint8 (8, 12, 3) camera image in; float32 depth and uint8 labels out."""
    nodes = [helper.make_node("Cast", ["camera"], ["f"], to=TensorProto.FLOAT),
             helper.make_node("Identity", ["f"], ["depth_m"]),
             helper.make_node("Cast", ["camera"], ["labels"], to=TensorProto.UINT8)]
    graph = helper.make_graph(nodes, "deploy", [helper.make_tensor_value_info("camera", TensorProto.UINT8, [8, 12, 3])],
                              [helper.make_tensor_value_info("depth_m", TensorProto.FLOAT, [8, 12, 3]),
                               helper.make_tensor_value_info("labels", TensorProto.UINT8, [8, 12, 3])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=9)
    embed_metadata(model, meta())
    if precision:
        model.metadata_props.add(key=PRECISION_KEY, value=precision)
    onnx.save(model, str(path))
    return path


class CpuStream:
    def __init__(self) -> None:
        self.synchronized = 0

    def synchronize(self) -> None:
        self.synchronized += 1


class CpuCuda:
    """The backend's CUDA helper on CPU tensors; records the devices made current."""

    def __init__(self) -> None:
        self.guards: list[int] = []
        self.tensors: dict[int, torch.Tensor] = {}
        self.streams: list[CpuStream] = []

    def device_guard(self, device):
        self.guards.append(device)
        return contextlib.nullcontext()

    def stream(self, device):
        self.streams.append(CpuStream())
        return self.streams[-1]

    def stream_guard(self, stream):
        return contextlib.nullcontext()

    def stream_handle(self, stream):
        return 4242

    def empty(self, shape, dtype, device):
        tensor = torch.zeros(shape, dtype=trt_backend.torch_dtype(dtype))
        self.tensors[tensor.data_ptr()] = tensor
        return tensor

    def pinned(self, shape, dtype):
        return torch.zeros(shape, dtype=trt_backend.torch_dtype(dtype))

    def pointer(self, tensor):
        return tensor.data_ptr()


def fake_tensorrt(version: str, cuda: CpuCuda, engine_io: dict[str, tuple[tuple[int, ...], str, bool]] | None = None,
                  execute=None) -> FakeTensorRT:
    """The double with the behaviours of a successful build and of an engine with ``engine_io`` tensors."""
    trt = FakeTensorRT(version)
    trt.behave("OnnxParser", "parse_from_file", lambda parser, path: True)
    trt.behave("Builder", "build_serialized_network", lambda builder, network, config: host_memory(trt, b"engine:" + version.encode()))
    trt.behave("IBuilderConfig", "add_optimization_profile", lambda config, profile: 0)
    timing = FakeObject(trt, "ITimingCache")
    trt.behave("IBuilderConfig", "get_timing_cache", lambda config: timing)
    trt.behave("ITimingCache", "serialize", lambda cache: host_memory(trt, b"timing-cache"))
    if engine_io is not None:
        names = list(engine_io)
        engine = FakeObject(trt, "ICudaEngine")
        context = FakeObject(trt, "IExecutionContext")
        addresses: dict[str, int] = {}
        trt.behave("Runtime", "deserialize_cuda_engine", lambda runtime, data: engine)
        trt.behave("ICudaEngine", "num_io_tensors", lambda e: len(names))
        trt.behave("ICudaEngine", "get_tensor_name", lambda e, i: names[i])
        trt.behave("ICudaEngine", "get_tensor_shape", lambda e, n: engine_io[n][0])
        trt.behave("ICudaEngine", "get_tensor_dtype", lambda e, n: trt.DataType.__getattr__(engine_io[n][1]))
        trt.behave("ICudaEngine", "get_tensor_mode", lambda e, n: trt.TensorIOMode.INPUT if engine_io[n][2] else trt.TensorIOMode.OUTPUT)
        trt.behave("ICudaEngine", "create_execution_context", lambda e: context)
        trt.behave("IExecutionContext", "set_tensor_address", lambda c, n, p: addresses.__setitem__(n, p) or True)
        trt.behave("IExecutionContext", "set_input_shape", lambda c, n, s: True)
        trt.behave("IExecutionContext", "execute_async_v3", lambda c, stream: execute({n: cuda.tensors[p] for n, p in addresses.items()}) or True)
    return trt


@pytest.fixture
def cuda(monkeypatch, tmp_path):
    from mtl_perception.inference.precision import CACHE_ENV

    monkeypatch.setenv(CACHE_ENV, str(tmp_path / "precision"))
    helper_ = CpuCuda()
    monkeypatch.setattr(trt_backend, "CUDA", helper_)
    monkeypatch.setattr(trt_backend, "gpu_identity", lambda device=0: GPU)
    monkeypatch.setattr(trt_backend, "_LOGGERS", {})
    return helper_


def use(monkeypatch, trt):
    monkeypatch.setattr(trt_backend, "import_tensorrt", lambda: trt)


@pytest.mark.parametrize("version", VERSIONS)
def test_build_path_is_strongly_typed_and_uses_no_removed_api(version, tmp_path, monkeypatch, cuda):
    trt = fake_tensorrt(version, cuda)
    use(monkeypatch, trt)
    model = network_file(tmp_path / "net.onnx")
    options = trt_backend.BuildOptions(precision="fp16", workspace_mb=512)
    path, key, source, _ = trt_backend.prepare_engine(model, options, tmp_path / "engines", device=1)
    assert source == "built" and path.read_bytes() == b"engine:" + version.encode()
    record = trt.record
    assert record.deprecated() == [], f"deprecated in TensorRT {version}: {record.deprecated()}"
    (flags,) = record.calls_to("Builder", "create_network")[0].args
    if version.startswith("10."):
        assert flags == 1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED) and flags != 0
    else:
        assert flags == 0, "TensorRT 11 networks are always strongly typed; the flag is deprecated there"
    assert not any(a.owner == "BuilderFlag" and a.name in ("FP16", "INT8", "BF16") for a in record.accesses)
    assert not record.calls_to("IBuilderConfig", "set_flag"), "no builder precision flag: the file's types decide"
    (pool, limit) = record.calls_to("IBuilderConfig", "set_memory_pool_limit")[0].args
    assert pool == trt.MemoryPoolType.WORKSPACE and limit == 512 << 20
    assert record.calls_to("IBuilderConfig", "create_timing_cache")[0].args == (b"",)
    assert record.calls_to("IBuilderConfig", "set_timing_cache")[0].args[1] is False
    assert (tmp_path / "engines" / timing_cache_name(key)).read_bytes() == b"timing-cache"
    assert "16sm-32g" in timing_cache_name(key), "the timing cache is keyed by SM count and memory too"
    assert not record.calls_to("IBuilderConfig", "clear_flag"), "TF32 stays allowed for fp16"
    # the key holds the precision file's hash, the TensorRT version and the GPU's SM count and memory
    (fp16_file,) = list((tmp_path / "precision").glob("net-fp16-*.onnx"))  # the shared precision cache
    assert key.onnx_sha256 == file_sha256(fp16_file) != file_sha256(model) and precision_of(fp16_file) == "fp16"
    assert (key.tensorrt_version, key.sm_count, key.memory_gib, key.precision) == (version, 16, 32, "fp16")
    assert cuda.guards == [1], "the build runs with the requested device current"
    # a second start loads the engine: no builder at all
    builds = len(record.calls_to("Builder", "__init__"))
    _, _, source2, _ = trt_backend.prepare_engine(model, options, tmp_path / "engines", allow_build=False, device=1)
    assert source2 == "cache" and len(record.calls_to("Builder", "__init__")) == builds


@pytest.mark.parametrize("version", [VERSIONS[0], VERSIONS[-1]])
def test_fp32_clears_tf32_and_a_foreign_timing_cache_is_replaced(version, tmp_path, monkeypatch, cuda, caplog):
    trt = fake_tensorrt(version, cuda)
    answers = iter([False, True])
    trt.behave("IBuilderConfig", "set_timing_cache", lambda config, cache, ignore: next(answers))
    use(monkeypatch, trt)
    model = network_file(tmp_path / "net.onnx")
    with caplog.at_level(logging.WARNING):
        _, key, _, _ = trt_backend.prepare_engine(model, trt_backend.BuildOptions(precision="fp32"), tmp_path / "engines")
    assert key.onnx_sha256 == file_sha256(model), "fp32 builds the model file itself"
    (flag,) = trt.record.calls_to("IBuilderConfig", "clear_flag")[0].args
    assert flag == trt.BuilderFlag.TF32
    assert [c.args for c in trt.record.calls_to("IBuilderConfig", "create_timing_cache")] == [(b"",), (b"",)]
    assert "another device" in caplog.text
    trt.behave("IBuilderConfig", "set_timing_cache", lambda config, cache, ignore: False)
    with pytest.raises(BackendError, match="timing cache"):
        trt_backend.prepare_engine(model, trt_backend.BuildOptions(precision="fp32", workspace_mb=256), tmp_path / "other")


def test_dynamic_batch_gets_one_profile_up_to_max_batch(tmp_path, monkeypatch, cuda):
    trt = fake_tensorrt(VERSIONS[-1], cuda)
    use(monkeypatch, trt)
    model = network_file(tmp_path / "net.onnx", batch=None)
    _, key, _, _ = trt_backend.prepare_engine(model, trt_backend.BuildOptions(precision="fp32", max_batch=4), tmp_path / "engines")
    assert key.input_shape == (4, 3, 8, 12)
    (call,) = trt.record.calls_to("IOptimizationProfile", "set_shape")
    assert call.args == ("image", (1, 3, 8, 12), (4, 3, 8, 12), (4, 3, 8, 12))
    trt.behave("IBuilderConfig", "add_optimization_profile", lambda config, profile: -1)
    with pytest.raises(BackendError, match="optimisation profile"):
        trt_backend.prepare_engine(model, trt_backend.BuildOptions(precision="fp32", max_batch=2), tmp_path / "engines")


def test_parse_and_build_failures_are_clear(tmp_path, monkeypatch, cuda):
    trt = fake_tensorrt(VERSIONS[0], cuda)
    trt.behave("OnnxParser", "parse_from_file", lambda parser, path: False)
    trt.behave("OnnxParser", "num_errors", lambda parser: 1)
    trt.behave("OnnxParser", "get_error", lambda parser, i: "node 3: unsupported")
    use(monkeypatch, trt)
    model = network_file(tmp_path / "net.onnx")
    with pytest.raises(BackendError, match="could not parse.*node 3: unsupported.*check-trt"):
        trt_backend.prepare_engine(model, trt_backend.BuildOptions(precision="fp32"), tmp_path / "engines")
    trt.behave("OnnxParser", "parse_from_file", lambda parser, path: True)
    trt.behave("Builder", "build_serialized_network", lambda builder, network, config: None)
    with pytest.raises(BackendError, match="failed to build"):
        trt_backend.prepare_engine(model, trt_backend.BuildOptions(precision="fp32"), tmp_path / "engines")


NETWORK_IO = {"image": ((1, 3, 8, 12), "FLOAT", True), "depth": ((1, 1, 8, 12), "FLOAT", False), "semantic_logits": ((1, 2, 8, 12), "HALF", False)}


def network_execute(buffers):
    """What the fake engine computes: depth = channel sum, logits = first two channels (in FP16)."""
    image = buffers["image"]
    buffers["depth"].copy_(image.sum(dim=1, keepdim=True))
    buffers["semantic_logits"].copy_(image[:, :2].half())


@pytest.mark.parametrize("version", [VERSIONS[0], VERSIONS[-1]])
def test_infer_is_a_thin_run_with_engine_typed_buffers(version, tmp_path, monkeypatch, cuda):
    trt = fake_tensorrt(version, cuda, NETWORK_IO, network_execute)
    use(monkeypatch, trt)
    backend = trt_backend.TensorRTBackend(network_file(tmp_path / "net.onnx"), precision="fp16", cache_dir=tmp_path / "engines", device=2)
    assert backend.name == "tensorrt-fp16" and backend.batch_size == 1 and backend.inputs == ["image"]
    assert backend.specs["semantic_logits"].dtype == np.float16 and backend._device_buffers["semantic_logits"].dtype == torch.float16
    batch = np.random.default_rng(1).normal(size=(1, 3, 8, 12)).astype(np.float32)
    out = backend.infer(batch)
    assert set(out) == {"depth", "semantic"} and out["semantic"].dtype == np.float32
    np.testing.assert_allclose(out["depth"], batch.sum(axis=1, keepdims=True), rtol=1e-6)
    np.testing.assert_allclose(out["semantic"], batch[:, :2], atol=1e-2)
    raw = backend.run({"image": batch})
    assert set(raw) == {"depth", "semantic_logits"} and raw["semantic_logits"].dtype == np.float16
    assert trt.record.deprecated() == []
    assert set(cuda.guards) == {2}, "build, deserialisation and every run happen on the backend's device"
    with pytest.raises(ValueError, match="float32"):
        backend.run({"image": batch.astype(np.float64)})
    with pytest.raises(ValueError, match="missing"):
        backend.run({})
    with pytest.raises(ValueError, match="no output"):
        backend.run({"image": batch}, ["normals"])
    stream = cuda.streams[-1]
    before = stream.synchronized
    backend.close()
    assert stream.synchronized == before + 1, "close() waits for the stream before freeing the buffers"
    with pytest.raises(BackendError, match="closed"):
        backend.infer(batch)


DEPLOY_IO = {"camera": ((8, 12, 3), "UINT8", True), "depth_m": ((8, 12, 3), "FLOAT", False), "labels": ((8, 12, 3), "UINT8", False)}


def deploy_execute(buffers):
    buffers["depth_m"].copy_(buffers["camera"].float() / 10)
    buffers["labels"].copy_(buffers["camera"] // 2)


def test_deploy_graph_runs_by_tensor_name_with_mixed_dtypes(tmp_path, monkeypatch, cuda):
    trt = fake_tensorrt(VERSIONS[-1], cuda, DEPLOY_IO, deploy_execute)
    use(monkeypatch, trt)
    graph = deploy_file(tmp_path / "deploy.onnx")
    backend = trt_backend.TensorRTBackend(graph, cache_dir=tmp_path / "engines", graph="deploy")
    assert backend.key.precision == "fp32" and backend.key.input_shape == (8, 12, 3) and backend.key.onnx_sha256 == file_sha256(graph)
    (flag,) = trt.record.calls_to("IBuilderConfig", "clear_flag")[0].args
    assert flag == trt.BuilderFlag.TF32
    camera = np.arange(8 * 12 * 3, dtype=np.uint8).reshape(8, 12, 3)
    out = backend.run({"camera": camera})
    assert out["labels"].dtype == np.uint8 and out["depth_m"].dtype == np.float32
    np.testing.assert_array_equal(out["labels"], camera // 2)
    np.testing.assert_allclose(out["depth_m"], camera / 10, rtol=1e-6)
    with pytest.raises(BackendError, match="deploy graph"):
        backend.infer(np.zeros((1, 3, 8, 12), np.float32))
    with pytest.raises(ValueError, match="shape"):
        backend.run({"camera": camera[:4]})
    # a deploy graph is keyed by its own file: another camera size or output option is another engine
    other = deploy_file(tmp_path / "deploy_fp16.onnx", precision="fp16")
    with pytest.raises(BackendError, match="is fp16, not fp32"):
        trt_backend.TensorRTBackend(other, precision="fp32", cache_dir=tmp_path / "engines", graph="deploy")
    assert backend.key != trt_backend.TensorRTBackend(other, cache_dir=tmp_path / "engines", graph="deploy").key


def test_unchecked_returns_are_now_errors(tmp_path, monkeypatch, cuda):
    trt = fake_tensorrt(VERSIONS[0], cuda, NETWORK_IO, network_execute)
    use(monkeypatch, trt)
    model = network_file(tmp_path / "net.onnx")
    trt.behave("IExecutionContext", "set_tensor_address", lambda c, n, p: False)
    with pytest.raises(BackendError, match="refused the buffer"):
        trt_backend.TensorRTBackend(model, precision="fp32", cache_dir=tmp_path / "engines")
    trt.behave("ICudaEngine", "create_execution_context", lambda e: None)
    with pytest.raises(BackendError, match="execution context"):
        trt_backend.TensorRTBackend(model, precision="fp32", cache_dir=tmp_path / "engines")
    trt.behave("Runtime", "deserialize_cuda_engine", lambda r, data: None)
    with pytest.raises(BackendError, match="deserialise"):
        trt_backend.TensorRTBackend(model, precision="fp32", cache_dir=tmp_path / "engines")


def test_one_logger_per_process(tmp_path, monkeypatch, cuda):
    trt = fake_tensorrt(VERSIONS[-1], cuda, NETWORK_IO, network_execute)
    use(monkeypatch, trt)
    trt_backend.TensorRTBackend(network_file(tmp_path / "net.onnx"), precision="fp32", cache_dir=tmp_path / "engines")
    assert len(trt.record.calls_to("Logger", "__init__")) == 1, "builder, parser and runtime share one logger"


def test_int8_without_frames_or_an_earlier_file_is_a_clear_error(tmp_path, monkeypatch, cuda):
    use(monkeypatch, fake_tensorrt(VERSIONS[-1], cuda))
    from mtl_perception.inference.precision import PrecisionError

    with pytest.raises(PrecisionError, match="calibration frames"):
        trt_backend.prepare_engine(network_file(tmp_path / "net.onnx"), trt_backend.BuildOptions(precision="int8"), tmp_path / "engines")


def test_version_gate(monkeypatch):
    import sys
    import types

    for version, ok in (("10.2.1", False), ("10.3.0", True), ("10.13.0.35", True), ("11.4.0.106", True), ("12.0.0", False), ("8.6.1", False)):
        monkeypatch.setitem(sys.modules, "tensorrt", types.SimpleNamespace(__version__=version))
        if ok:
            assert trt_backend.import_tensorrt().__version__ == version
        else:
            with pytest.raises(BackendError, match="supports TensorRT 10.x from 10.3 and 11.x"):
                trt_backend.import_tensorrt()


def test_old_sidecars_stay_readable_and_differ_by_platform(tmp_path):
    cache = EngineCache(tmp_path)
    key = trt_backend.EngineKey("a" * 64, "10.3.0", "Orin", "8.7", "fp16", (1, 3, 8, 12), 16, 32)
    path = cache.store(key, "m", b"x")
    info = cache.read_sidecar(path)
    del info["key"]["sm_count"], info["key"]["memory_gib"]  # a sidecar written before SM count and memory were keyed
    path.with_suffix(".json").write_text(json.dumps(info))
    decision = cache.lookup(key)
    assert decision.status == "mismatch" and decision.reasons == ["SM count 0 (cached) != 16 (this machine)", "GPU memory (GiB) 0 (cached) != 32 (this machine)"]
    nano = trt_backend.EngineKey("a" * 64, "10.3.0", "Orin", "8.7", "fp16", (1, 3, 8, 12), 8, 8)
    assert cache.lookup(nano).status == "mismatch", "an Orin Nano does not load an Orin AGX engine"
