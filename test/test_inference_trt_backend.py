"""The TensorRT backend's build and run paths against doubles of TensorRT 10.3, 10.13 and 11.4 and of the CUDA runtime.

The TensorRT double (``trt_double.py``) is generated from the real bindings' name table: every TensorRT name
the backend touches must exist in that version (else AttributeError), enum values are the wheels' own, and
the tests assert that none it touches is deprecated there. ``program_onnx_engines`` makes it parse the ONNX
file, build a plan holding it and execute that plan in ONNX Runtime; the CUDA runtime is ``cuda_double.py``
(built from cuda-python's real module): device memory, pinned buffers, streams and copies are the backend's
own calls, and queued work runs only at the stream's synchronise. No torch anywhere.
"""
from __future__ import annotations

import json
import logging
import sys

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

pytest.importorskip("cuda.bindings.runtime", reason="cuda-python (requirements.txt) is not installed")

from cuda_double import FakeCudart, FakeDevice, install  # noqa: E402
from mtl_perception.fileio import file_sha256, write_cache_file  # noqa: E402
from mtl_perception.inference.backends import tensorrt_backend as trt_backend  # noqa: E402
from mtl_perception.inference.backends.base import BackendError  # noqa: E402
from mtl_perception.inference.engine_cache import EngineCache, timing_cache_name  # noqa: E402
from mtl_perception.inference.metadata import OUTPUT_NAMES, ModelMetadata  # noqa: E402
from mtl_perception.inference.model_file import embed_metadata  # noqa: E402
from mtl_perception.inference.precision import PRECISION_KEY, precision_of  # noqa: E402
from trt_double import PLAN_MAGIC, TIMING_MAGIC, FakeTensorRT, program_onnx_engines, table_versions  # noqa: E402

VERSIONS = table_versions()
GPU = trt_backend.GpuIdentity("Orin", "8.7", 16, 32)  # what FakeDevice() reports


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


@pytest.fixture
def cudart(monkeypatch, tmp_path):
    """The CUDA stand-in in sys.modules (two devices), a private precision cache and a fresh TensorRT logger table."""
    from mtl_perception.paths import CACHE_ENV

    monkeypatch.setenv(CACHE_ENV, str(tmp_path / "precision"))
    monkeypatch.setattr(trt_backend, "_LOGGERS", {})
    return install(monkeypatch, FakeCudart((FakeDevice(), FakeDevice())))


def use(monkeypatch, version: str, cudart: FakeCudart, **kwargs) -> FakeTensorRT:
    """A working TensorRT double of ``version`` as the ``tensorrt`` module."""
    trt = program_onnx_engines(FakeTensorRT(version, **kwargs), cudart)
    monkeypatch.setitem(sys.modules, "tensorrt", trt)
    return trt


def ort_run(path, feeds):
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return dict(zip([o.name for o in session.get_outputs()], session.run(None, feeds)))


@pytest.mark.parametrize("version", VERSIONS)
def test_build_path_is_strongly_typed_and_uses_no_removed_api(version, tmp_path, monkeypatch, cudart):
    trt = use(monkeypatch, version, cudart)
    model = network_file(tmp_path / "net.onnx")
    options = trt_backend.BuildOptions(precision="fp16", workspace_mb=512)
    path, key, source, _ = trt_backend.prepare_engine(model, options, tmp_path, device=1)  # the cache root
    assert source == "built" and path.read_bytes().startswith(PLAN_MAGIC)
    record = trt.record
    assert record.deprecated() == [], f"deprecated in TensorRT {version}: {record.deprecated()}"
    (flags,) = record.calls_to("Builder", "create_network")[0].args
    if version.startswith("10."):
        assert flags == 0b10, "STRONGLY_TYPED is member 1 of NetworkDefinitionCreationFlag in the 10.x wheels"
    else:
        assert flags == 0, "TensorRT 11 networks are always strongly typed; the flag is deprecated there"
    assert not any(a.owner == "BuilderFlag" and a.name in ("FP16", "INT8", "BF16") for a in record.accesses)
    assert not record.calls_to("IBuilderConfig", "set_flag"), "no builder precision flag: the file's types decide"
    (pool, limit) = record.calls_to("IBuilderConfig", "set_memory_pool_limit")[0].args
    assert pool == trt.MemoryPoolType.WORKSPACE and limit == 512 << 20
    assert record.calls_to("IBuilderConfig", "create_timing_cache")[0].args == (b"",)
    assert record.calls_to("IBuilderConfig", "set_timing_cache")[0].args[1] is False
    assert (tmp_path / "engines" / timing_cache_name(key)).read_bytes() == TIMING_MAGIC + version.encode()
    assert "16sm-32g" in timing_cache_name(key), "the timing cache is keyed by SM count and memory too"
    (flag,) = record.calls_to("IBuilderConfig", "clear_flag")[0].args
    assert flag == trt.BuilderFlag.TF32 and int(flag) == 6, "TF32 off for fp16 too: the file's FP32 layers stay FP32 (issue 22, 9)"
    # the key holds the precision file's hash, the TensorRT version and the GPU's SM count and memory
    (fp16_file,) = list((tmp_path / "precision").glob("net-fp16-*.onnx"))  # precision/ of the same cache root
    assert key.onnx_sha256 == file_sha256(fp16_file) != file_sha256(model) and precision_of(fp16_file) == "fp16"
    assert (key.tensorrt_version, key.gpu_name, key.sm_count, key.memory_gib, key.precision) == (version, "Orin", 16, 32, "fp16")
    assert [args for args in cudart.calls_to("cudaSetDevice")] == [(1,), (0,)], "the build runs with device 1 current, then restores it"
    # a second start loads the engine: no builder at all
    builds = len(record.calls_to("Builder", "__init__"))
    _, _, source2, _ = trt_backend.prepare_engine(model, options, tmp_path, allow_build=False, device=1)
    assert source2 == "cache" and len(record.calls_to("Builder", "__init__")) == builds


@pytest.mark.parametrize("version", [VERSIONS[0], VERSIONS[-1]])
def test_timing_caches_that_tensorrt_cannot_use_start_fresh(version, tmp_path, monkeypatch, cudart, caplog):
    """create_timing_cache returns None for another build's blob (issue 22, 8); set_timing_cache False for another device."""
    trt = use(monkeypatch, version, cudart)
    model = network_file(tmp_path / "net.onnx")
    engines = tmp_path / "engines"
    _, key, _, _ = trt_backend.prepare_engine(model, trt_backend.BuildOptions(precision="fp32"), engines)
    assert key.onnx_sha256 == file_sha256(model), "fp32 builds the model file itself"
    timing = engines / "engines" / timing_cache_name(key)  # engines/ of the cache root
    write_cache_file(timing, TIMING_MAGIC + b"9.9.9")  # a sound file (its hash beside it) the installed TensorRT cannot read
    with caplog.at_level(logging.WARNING):  # another build on this platform (the fp16 file) reads the shared cache
        trt_backend.prepare_engine(model, trt_backend.BuildOptions(precision="fp16"), engines)
    calls = trt.record.calls_to("IBuilderConfig", "create_timing_cache")
    assert [c.args for c in calls[-2:]] == [(TIMING_MAGIC + b"9.9.9",), (b"",)], "a None cache is replaced by a fresh one, never passed on"
    assert "starting a fresh one" in caplog.text and timing.read_bytes() == TIMING_MAGIC + version.encode()
    answers = iter([False, True])  # a cache of another device: refused, then the fresh one is taken
    trt.behave("IBuilderConfig", "set_timing_cache", lambda config, cache, ignore: next(answers))
    other = network_file(tmp_path / "dynamic.onnx", batch=None)
    trt_backend.prepare_engine(other, trt_backend.BuildOptions(precision="fp32"), engines)
    assert next(answers, "used up") == "used up"
    trt.behave("IBuilderConfig", "create_timing_cache", lambda config, blob: None)
    with pytest.raises(BackendError, match="refused an empty timing cache"):
        trt_backend.prepare_engine(other, trt_backend.BuildOptions(precision="fp16"), engines)


def test_dynamic_batch_gets_one_profile_up_to_max_batch(tmp_path, monkeypatch, cudart):
    trt = use(monkeypatch, VERSIONS[-1], cudart)
    model = network_file(tmp_path / "net.onnx", batch=None)
    _, key, _, _ = trt_backend.prepare_engine(model, trt_backend.BuildOptions(precision="fp32", max_batch=4), tmp_path / "engines")
    assert key.input_shape == (4, 3, 8, 12)
    (call,) = trt.record.calls_to("IOptimizationProfile", "set_shape")
    assert call.args == ("image", (1, 3, 8, 12), (4, 3, 8, 12), (4, 3, 8, 12))
    trt.behave("IBuilderConfig", "add_optimization_profile", lambda config, profile: -1)
    with pytest.raises(BackendError, match="optimisation profile"):
        trt_backend.prepare_engine(model, trt_backend.BuildOptions(precision="fp32", max_batch=2), tmp_path / "engines")


def test_parse_and_build_failures_are_clear(tmp_path, monkeypatch, cudart):
    trt = use(monkeypatch, VERSIONS[0], cudart)
    model = network_file(tmp_path / "net.onnx")
    bad = onnx.load(str(model))
    bad.graph.output[0].type.tensor_type.elem_type = TensorProto.DOUBLE  # not a TensorRT I/O type
    onnx.save(bad, str(tmp_path / "double.onnx"))
    with pytest.raises(BackendError, match=r"could not parse.*depth: ONNX element type 11.*check-trt"):
        trt_backend.prepare_engine(tmp_path / "double.onnx", trt_backend.BuildOptions(precision="fp32"), tmp_path / "engines")
    trt.behave("Builder", "build_serialized_network", lambda builder, network, config: None)
    with pytest.raises(BackendError, match="failed to build"):
        trt_backend.prepare_engine(model, trt_backend.BuildOptions(precision="fp32"), tmp_path / "engines")


@pytest.mark.parametrize("version", [VERSIONS[0], VERSIONS[-1]])
def test_infer_and_run_copy_through_device_buffers(version, tmp_path, monkeypatch, cudart):
    use(monkeypatch, version, cudart)
    model = network_file(tmp_path / "net.onnx")
    backend = trt_backend.TensorRTBackend(model, precision="fp32", cache_dir=tmp_path / "engines", device=1)
    assert backend.name == "tensorrt-fp32" and backend.batch_size == 1
    assert backend.input_names == ["image"] and backend.output_names == ["depth", "semantic_logits"]
    assert cudart.live() == {"device": 3, "host": 3, "streams": 1}, "one device and one pinned buffer per I/O tensor, one stream"
    batch = np.random.default_rng(1).normal(size=(1, 3, 8, 12)).astype(np.float32)
    reference = ort_run(model, {"image": batch})
    out = backend.infer(batch)
    assert set(out) == {"depth", "semantic"} and out["semantic"].dtype == np.float32
    np.testing.assert_array_equal(out["depth"], reference["depth"])
    np.testing.assert_array_equal(out["semantic"], reference["semantic_logits"])
    raw = backend.run({"image": batch * 2})
    assert set(raw) == {"depth", "semantic_logits"}
    np.testing.assert_array_equal(raw["depth"], ort_run(model, {"image": batch * 2})["depth"])
    copies = cudart.calls_to("cudaMemcpyAsync")
    assert [c[2] for c in copies[-3:]] == [1 * 3 * 8 * 12 * 4, 1 * 1 * 8 * 12 * 4, 1 * 2 * 8 * 12 * 4], "input in, both outputs back, byte counts"
    assert {int(c[3]) for c in copies} == {1, 2} and len({c[4] for c in copies}) == 1, "host->device and device->host on the backend's one stream"
    assert all(c[0] == 1 for c in cudart.calls_to("cudaSetDevice")[::2]), "build, deserialisation and every run happen on the backend's device"
    with pytest.raises(ValueError, match="float32"):
        backend.run({"image": batch.astype(np.float64)})
    with pytest.raises(ValueError, match="missing"):
        backend.run({})
    with pytest.raises(ValueError, match="no output"):
        backend.run({"image": batch}, ["normals"])
    syncs = len(cudart.calls_to("cudaStreamSynchronize"))
    backend.close()
    assert len(cudart.calls_to("cudaStreamSynchronize")) == syncs + 1, "close() waits for the stream before freeing the buffers"
    assert cudart.live() == {"device": 0, "host": 0, "streams": 0} and cudart.violations == []
    with pytest.raises(BackendError, match="closed"):
        backend.infer(batch)


def test_dynamic_batch_runs_the_rows_it_is_given(tmp_path, monkeypatch, cudart):
    use(monkeypatch, VERSIONS[1], cudart)
    model = network_file(tmp_path / "net.onnx", batch=None)
    backend = trt_backend.TensorRTBackend(model, precision="fp32", cache_dir=tmp_path / "engines", max_batch=4)
    assert backend.batch_size is None and backend.max_batch == 4
    for rows in (1, 3, 4):
        batch = np.random.default_rng(rows).normal(size=(rows, 3, 8, 12)).astype(np.float32)
        out = backend.infer(batch)
        assert out["depth"].shape == (rows, 1, 8, 12)
        np.testing.assert_array_equal(out["depth"], ort_run(model, {"image": batch})["depth"])
    with pytest.raises(ValueError, match="exceeds the engine's largest batch 4"):
        backend.infer(np.zeros((5, 3, 8, 12), np.float32))
    backend.close()


def test_deploy_graph_runs_by_tensor_name_with_mixed_dtypes(tmp_path, monkeypatch, cudart):
    trt = use(monkeypatch, VERSIONS[-1], cudart)
    graph = deploy_file(tmp_path / "deploy.onnx")
    backend = trt_backend.TensorRTBackend(graph, cache_dir=tmp_path / "engines", graph="deploy")
    assert backend.key.precision == "fp32" and backend.key.input_shape == (8, 12, 3) and backend.key.onnx_sha256 == file_sha256(graph)
    assert backend.specs["camera"].dtype == np.uint8 and backend.specs["labels"].dtype == np.uint8 and backend.specs["depth_m"].dtype == np.float32
    (flag,) = trt.record.calls_to("IBuilderConfig", "clear_flag")[0].args
    assert flag == trt.BuilderFlag.TF32
    camera = np.arange(8 * 12 * 3, dtype=np.uint8).reshape(8, 12, 3)
    out = backend.run({"camera": camera})
    assert out["labels"].dtype == np.uint8 and out["depth_m"].dtype == np.float32
    np.testing.assert_array_equal(out["labels"], camera)
    np.testing.assert_array_equal(out["depth_m"], camera.astype(np.float32))
    with pytest.raises(BackendError, match="deploy graph"):
        backend.infer(np.zeros((1, 3, 8, 12), np.float32))
    with pytest.raises(ValueError, match="shape"):
        backend.run({"camera": camera[:4]})
    # a deploy graph is keyed by its own file: another camera size or output option is another engine
    other = deploy_file(tmp_path / "deploy_fp16.onnx", precision="fp16")
    with pytest.raises(BackendError, match="is fp16, not fp32"):
        trt_backend.TensorRTBackend(other, precision="fp32", cache_dir=tmp_path / "engines", graph="deploy")
    assert backend.key != trt_backend.TensorRTBackend(other, cache_dir=tmp_path / "engines", graph="deploy").key


def test_failure_returns_are_errors_and_free_what_was_allocated(tmp_path, monkeypatch, cudart):
    trt = use(monkeypatch, VERSIONS[0], cudart)
    model = network_file(tmp_path / "net.onnx")
    trt.behave("IExecutionContext", "set_tensor_address", lambda c, n, p: n != "depth")
    with pytest.raises(BackendError, match="refused the buffer of tensor 'depth'"):
        trt_backend.TensorRTBackend(model, precision="fp32", cache_dir=tmp_path / "engines")
    assert cudart.live() == {"device": 0, "host": 0, "streams": 0}, "a failed start frees its buffers and stream"
    trt.behave("ICudaEngine", "create_execution_context", lambda e: None)
    with pytest.raises(BackendError, match="execution context"):
        trt_backend.TensorRTBackend(model, precision="fp32", cache_dir=tmp_path / "engines")
    trt.behave("Runtime", "deserialize_cuda_engine", lambda r, data: None)
    with pytest.raises(BackendError, match="deserialise"):
        trt_backend.TensorRTBackend(model, precision="fp32", cache_dir=tmp_path / "engines")


def test_an_engine_of_another_tensorrt_is_not_deserialised(tmp_path, monkeypatch, cudart):
    """A plan copied from another TensorRT: the cache rebuilds it; with on_mismatch='fail' it says why."""
    use(monkeypatch, VERSIONS[0], cudart)
    model = network_file(tmp_path / "net.onnx")
    trt_backend.TensorRTBackend(model, precision="fp32", cache_dir=tmp_path / "engines").close()
    use(monkeypatch, VERSIONS[-1], cudart)
    with pytest.raises(Exception, match=rf"TensorRT version {VERSIONS[0]} \(cached\) != {VERSIONS[-1]}"):
        trt_backend.TensorRTBackend(model, precision="fp32", cache_dir=tmp_path / "engines", on_mismatch="fail")
    backend = trt_backend.TensorRTBackend(model, precision="fp32", cache_dir=tmp_path / "engines")
    assert backend.engine_source == "built"
    backend.close()


def test_an_engine_type_without_a_numpy_type_is_a_clear_error(tmp_path, monkeypatch, cudart):
    trt = use(monkeypatch, VERSIONS[-1], cudart)
    with pytest.raises(TypeError):
        trt.nptype(trt.DataType.BF16)  # as the wheel's nptype: no NumPy bfloat16
    assert trt.nptype(trt.DataType.HALF) is np.float16
    trt.behave("ICudaEngine", "get_tensor_dtype", lambda e, name: trt.DataType.BF16 if name == "depth" else trt.DataType.FLOAT)
    with pytest.raises(BackendError, match="tensor 'depth' has TensorRT type DataType.BF16, which has no NumPy type"):
        trt_backend.TensorRTBackend(network_file(tmp_path / "net.onnx"), precision="fp32", cache_dir=tmp_path / "engines")


def test_one_logger_per_process(tmp_path, monkeypatch, cudart):
    trt = use(monkeypatch, VERSIONS[-1], cudart)
    trt_backend.TensorRTBackend(network_file(tmp_path / "net.onnx"), precision="fp32", cache_dir=tmp_path / "engines").close()
    assert len(trt.record.calls_to("Logger", "__init__")) == 1, "builder, parser and runtime share one logger"


def test_int8_without_frames_or_an_earlier_file_is_a_clear_error(tmp_path, monkeypatch, cudart):
    use(monkeypatch, VERSIONS[-1], cudart)
    from mtl_perception.inference.precision import PrecisionError

    with pytest.raises(PrecisionError, match="calibration frames"):
        trt_backend.prepare_engine(network_file(tmp_path / "net.onnx"), trt_backend.BuildOptions(precision="int8"), tmp_path / "engines")


def test_version_gate(monkeypatch):
    for version, ok in (("10.2.1", False), ("10.3.0", True), ("10.13.0.35", True), ("11.4.0.106", True), ("12.0.0", False)):
        monkeypatch.setitem(sys.modules, "tensorrt", FakeTensorRT(VERSIONS[0], reported_version=version))
        if ok:
            assert trt_backend.import_tensorrt().__version__ == version
        else:
            with pytest.raises(BackendError, match="supports TensorRT 10.x from 10.3 and 11.x; use backend 'onnxruntime'"):
                trt_backend.import_tensorrt()


def test_jetpack_6_0_tensorrt_8_6_is_refused_naming_the_version_jetpack_and_fallback(monkeypatch, tmp_path):
    """JetPack 6.0 ships TensorRT 8.6 (issue 27, 6): refused at activation, before CUDA is touched."""
    from mtl_perception.inference.frame_pipeline import FramePipeline

    monkeypatch.setitem(sys.modules, "tensorrt", FakeTensorRT(VERSIONS[0], reported_version="8.6.2"))
    with pytest.raises(BackendError) as caught:
        FramePipeline(network_file(tmp_path / "net.onnx"), backend="tensorrt")
    message = str(caught.value)
    assert "\n" not in message and "TensorRT 8.6.2" in message and "JetPack 6.1" in message and "'onnxruntime'" in message


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
