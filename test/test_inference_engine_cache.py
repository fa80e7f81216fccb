"""TensorRT engine cache keys and invalidation, calibration data (folder and bag), buffer planning; the
parts that need TensorRT itself are skipped where it is not importable."""
from __future__ import annotations

import importlib.util
import json

import cv2
import numpy as np
import pytest

from mtl_perception.inference.calibration import (
    CalibrationCacheFile,
    CalibrationDataError,
    calibration_batches,
    iter_bag_images,
    iter_calibration_images,
    iter_folder_images,
)
from mtl_perception.inference.engine_cache import (
    EngineCache,
    EngineCacheError,
    EngineKey,
    decide,
    mismatch_reasons,
    resolve_engine,
)
from mtl_perception.inference.metadata import OUTPUT_NAMES, ModelMetadata
from mtl_perception.inference.model_file import ModelFileError
from mtl_perception.paths import CACHE_ENV

HAVE_TENSORRT = importlib.util.find_spec("tensorrt") is not None
NO_TENSORRT = "TensorRT is not installable in this environment (its PyPI wheels download from an unreachable host)"


def key(**changes) -> EngineKey:
    values = dict(onnx_sha256="a" * 64, tensorrt_version="10.3.0", gpu_name="Orin", compute_capability="8.7", precision="fp16", input_shape=(1, 3, 64, 64))
    values.update(changes)
    return EngineKey(**values)


def meta(height: int = 32, width: int = 48) -> ModelMetadata:
    return ModelMetadata(tasks=["depth"], output_names={"depth": OUTPUT_NAMES["depth"]}, class_names=[], palette=[], input_height=height, input_width=width)


def test_key_digest_is_stable_and_sensitive_to_every_field():
    base = key()
    assert base.digest() == key().digest() and len(base.digest()) == 16
    assert EngineKey.from_dict(json.loads(json.dumps(base.to_dict()))) == base
    variants = [key(onnx_sha256="b" * 64), key(tensorrt_version="10.4.0"), key(gpu_name="RTX 4090"), key(compute_capability="8.9"), key(precision="int8"), key(input_shape=(1, 3, 64, 96))]
    digests = {v.digest() for v in variants} | {base.digest()}
    assert len(digests) == len(variants) + 1
    assert base.file_stem("my model!") == f"my_model_-fp16-1x3x64x64-{base.digest()}"
    with pytest.raises(ValueError, match="precision"):
        key(precision="fp8")


def test_decide_hit_miss_mismatch():
    current = key()
    assert decide([key(precision="fp32"), current], current) == ("hit", current)
    assert decide([key(onnx_sha256="b" * 64)], current) == ("miss", None)
    assert decide([key(precision="int8")], current) == ("miss", None)  # another precision is another engine
    status, closest = decide([key(tensorrt_version="10.0.1")], current)
    assert status == "mismatch" and closest.tensorrt_version == "10.0.1"
    assert decide([], current) == ("miss", None)


def test_mismatch_reasons_name_what_differs():
    reasons = mismatch_reasons(key(tensorrt_version="10.0.1", gpu_name="Xavier", compute_capability="7.2"), key())
    assert reasons == [
        "TensorRT version 10.0.1 (cached) != 10.3.0 (this machine)",
        "GPU Xavier (cached) != Orin (this machine)",
        "compute capability 7.2 (cached) != 8.7 (this machine)",
    ]
    assert mismatch_reasons(key(), key()) == []


def test_cache_store_lookup_and_invalidation(tmp_path):
    cache = EngineCache(tmp_path / "engines")
    current = key()
    assert cache.lookup(current).status == "miss"
    path = cache.store(current, "model", b"engine-bytes", {"metadata": "{}"})
    assert path.read_bytes() == b"engine-bytes" and path.with_suffix(".json").is_file()
    hit = cache.lookup(current)
    assert hit.status == "hit" and hit.engine_path == path
    assert cache.read_sidecar(path)["key"] == current.to_dict()
    # a new TensorRT or another GPU: mismatch naming which, never a hit
    upgraded = cache.lookup(key(tensorrt_version="10.5.0"))
    assert upgraded.status == "mismatch" and "TensorRT version 10.3.0 (cached) != 10.5.0" in upgraded.message(key(tensorrt_version="10.5.0"))
    assert cache.lookup(key(gpu_name="RTX 4090")).reasons == ["GPU Orin (cached) != RTX 4090 (this machine)"]
    # a new ONNX file (re-export) is simply a miss
    assert cache.lookup(key(onnx_sha256="c" * 64)).status == "miss"
    # a damaged engine is never loaded
    path.write_bytes(b"engine-byte")
    damaged = cache.lookup(current)
    assert damaged.status == "miss" and "damaged" in damaged.reasons[0]
    cache.remove(current, "model")
    assert cache.lookup(current).status == "miss" and not path.exists()


def test_stray_files_in_the_cache_are_ignored(tmp_path):
    cache = EngineCache(tmp_path)
    (tmp_path / "notes.json").write_text("not json {")
    (tmp_path / "other.json").write_text(json.dumps({"something": 1}))
    assert cache.entries() == [] and cache.lookup(key()).status == "miss"


def test_resolve_engine_policies(tmp_path):
    cache = EngineCache(tmp_path)
    cache.store(key(), "model", b"x")
    assert resolve_engine(cache, key(), "fail", allow_build=False).status == "hit"
    with pytest.raises(EngineCacheError, match=r"TensorRT version 10.3.0 \(cached\) != 11.0.0 \(this machine\)"):
        resolve_engine(cache, key(tensorrt_version="11.0.0"), on_mismatch="fail")
    assert resolve_engine(cache, key(tensorrt_version="11.0.0"), on_mismatch="rebuild").status == "mismatch"
    with pytest.raises(EngineCacheError, match="mtl-perception build-engine"):
        resolve_engine(cache, key(precision="int8"), allow_build=False)
    with pytest.raises(ValueError, match="on_mismatch"):
        resolve_engine(cache, key(), on_mismatch="ignore")


def test_cache_dir_resolution(monkeypatch, tmp_path):
    monkeypatch.delenv(CACHE_ENV, raising=False)
    assert str(EngineCache().root).endswith(".cache/mtl_perception/engines") and "~" not in str(EngineCache().root)
    monkeypatch.setenv(CACHE_ENV, str(tmp_path / "env"))
    assert EngineCache().root == tmp_path / "env" / "engines"
    assert EngineCache(tmp_path / "arg").root == tmp_path / "arg" / "engines"


def test_buffer_planning_and_binding_checks():
    from mtl_perception.inference.backends.tensorrt_backend import engine_input_shape, plan_buffers

    assert plan_buffers({"image": [-1, 3, 32, 48], "depth": [-1, 1, 32, 48]}, 4) == {"image": (4, 3, 32, 48), "depth": (4, 1, 32, 48)}
    assert plan_buffers({"image": [1, 3, 32, 48]}, 4) == {"image": (1, 3, 32, 48)}
    with pytest.raises(ModelFileError, match="dynamic dimensions"):
        plan_buffers({"image": [1, 3, -1, 48]}, 1)
    assert engine_input_shape(meta(), 1, 8) == (1, 3, 32, 48)
    assert engine_input_shape(meta(), None, 8) == (8, 3, 32, 48)


def write_images(folder, count):
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(count):
        cv2.imwrite(str(folder / f"{i:03d}.png"), np.full((40, 60, 3), (10 * i, 100, 200), np.uint8))  # BGR on disk


def test_calibration_from_a_folder(tmp_path):
    write_images(tmp_path / "imgs" / "sub", 5)
    (tmp_path / "imgs" / "readme.txt").write_text("not an image")
    images = list(iter_folder_images(tmp_path / "imgs"))
    assert len(images) == 5 and images[0].shape == (40, 60, 3)
    assert images[1][0, 0].tolist() == [200, 100, 10], "converted to RGB"
    batches = list(calibration_batches(iter_calibration_images(tmp_path / "imgs", limit=5), meta(), batch_size=2))
    assert len(batches) == 2 and batches[0].shape == (2, 3, 32, 48) and batches[0].dtype == np.float32
    (tmp_path / "empty").mkdir()
    with pytest.raises(CalibrationDataError, match="no images"):
        list(iter_folder_images(tmp_path / "empty"))
    with pytest.raises(CalibrationDataError, match="not found"):
        list(iter_folder_images(tmp_path / "missing"))


def test_calibration_from_a_bag(tmp_path):
    from rosbags.rosbag2 import Writer
    from rosbags.typesys import Stores, get_typestore

    store = get_typestore(Stores.ROS2_KILTED)
    Image, Header, Time = store.types["sensor_msgs/msg/Image"], store.types["std_msgs/msg/Header"], store.types["builtin_interfaces/msg/Time"]
    bag = tmp_path / "bag"
    with Writer(bag, version=9) as writer:
        connection = writer.add_connection("/camera/image_raw", Image.__msgtype__, typestore=store)
        for i in range(3):
            pixels = np.zeros((4, 6), np.uint8) + i * 50
            step = 8  # rows padded to 8 bytes, as some drivers do
            data = np.zeros((4, step), np.uint8)
            data[:, :6] = pixels
            msg = Image(Header(Time(i, 0), "cam"), 4, 6, "mono8", 0, step, data.reshape(-1))
            writer.write(connection, i * 1000, store.serialize_cdr(msg, Image.__msgtype__))
    frames = list(iter_calibration_images(bag))
    assert len(frames) == 3 and frames[2].shape == (4, 6, 3) and np.all(frames[2] == 100)
    assert len(list(iter_bag_images(bag, "/camera/image_raw", limit=2))) == 2
    with pytest.raises(CalibrationDataError, match=r"image topics: \['/camera/image_raw'\]"):
        list(iter_bag_images(bag, "/other"))


def test_calibration_cache_file(tmp_path):
    cache = CalibrationCacheFile(tmp_path, "f" * 64)
    assert cache.read() is None
    cache.write(b"TRT-1000-EntropyCalibration2\nimage: 3c010a14\n")
    assert cache.read().startswith(b"TRT-") and cache.path.name == f"calibration-{'f' * 16}.cache"


@pytest.mark.skipif(HAVE_TENSORRT, reason="TensorRT is importable here")
def test_tensorrt_backend_without_tensorrt_is_a_clear_error(tmp_path):
    from mtl_perception.inference.backends import BackendError, create_backend

    (tmp_path / "model.onnx").write_bytes(b"placeholder")  # create_backend checks the path exists first
    with pytest.raises(BackendError, match="TensorRT Python package is not importable"):
        create_backend("tensorrt", tmp_path / "model.onnx")


@pytest.mark.skipif(not HAVE_TENSORRT, reason=NO_TENSORRT)
def test_tensorrt_engine_build_cache_and_parity(tmp_path):  # pragma: no cover - needs TensorRT and a GPU
    import torch

    from mtl_perception.config import ExperimentConfig
    from mtl_perception.inference.backends import create_backend
    from mtl_perception.inference.export import export_onnx
    from mtl_perception.inference.sample_images import sample_batch
    from mtl_perception.model.network import build_model
    from mtl_perception.training.checkpoint import save_checkpoint

    cfg = ExperimentConfig()
    cfg.data.height = cfg.data.width = 64
    cfg.validate()
    save_checkpoint(tmp_path / "m.pt", {"config": cfg.to_dict(), "model": build_model(cfg.model).state_dict(), "step": 0})
    export_onnx(tmp_path / "m.pt", tmp_path / "m.onnx")
    first = create_backend("tensorrt", tmp_path / "m.onnx", precision="fp32", cache_dir=tmp_path / "engines")
    assert first.engine_source == "built"
    second = create_backend("tensorrt", tmp_path / "m.onnx", precision="fp32", cache_dir=tmp_path / "engines", allow_build=False)
    assert second.engine_source == "cache"
    reference = create_backend("onnxruntime", tmp_path / "m.onnx", provider="cpu")
    batch = sample_batch(reference.metadata, 1)
    out, ref = second.infer(batch), reference.infer(batch)
    for task in ref:
        assert np.max(np.abs(out[task] - ref[task])) < 1e-2
    assert torch.cuda.is_available()


def tiny_onnx(path, height=32, width=48):
    """A 1x1-conv depth model with real metadata (no TensorRT or export needed)."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    from mtl_perception.inference.model_file import embed_metadata

    weight = numpy_helper.from_array(np.ones((1, 3, 1, 1), np.float32), "w")
    graph = helper.make_graph(
        [helper.make_node("Conv", ["image", "w"], ["depth"])], "tiny",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, [1, 3, height, width])],
        [helper.make_tensor_value_info("depth", TensorProto.FLOAT, [1, 1, height, width])], [weight],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=9)
    embed_metadata(model, meta(height, width))
    onnx.save(model, str(path))
    return path


def test_prepare_engine_builds_once_then_loads_from_cache(tmp_path, monkeypatch):
    """The build/load policy of the TensorRT backend with the TensorRT calls replaced by recorders."""
    from types import SimpleNamespace

    from mtl_perception.inference.backends import tensorrt_backend as trt_backend
    platform = {"version": "10.3.0", "gpu": trt_backend.GpuIdentity("Orin", "8.7", 16, 32)}
    builds = []
    monkeypatch.setattr(trt_backend, "import_tensorrt", lambda: SimpleNamespace(__version__=platform["version"]))
    monkeypatch.setattr(trt_backend, "gpu_identity", lambda device=0: platform["gpu"])
    pytest.importorskip("cuda.bindings.runtime", reason="cuda-python (requirements.txt) is not installed")
    from cuda_double import FakeCudart, install

    install(monkeypatch, FakeCudart())  # a build runs with its device made current through the CUDA runtime

    def fake_build(trt, onnx_path, model_meta, engine_key, options, cache_dir):
        builds.append(engine_key)
        return f"engine for {engine_key.digest()}".encode()

    monkeypatch.setattr(trt_backend, "build_engine", fake_build)
    model = tiny_onnx(tmp_path / "m.onnx")
    cache_dir = tmp_path / "cache"  # the cache root: engines in its engines/
    options = trt_backend.BuildOptions(precision="fp16")

    path, engine_key, source, model_meta = trt_backend.prepare_engine(model, options, cache_dir)
    assert source == "built" and len(builds) == 1 and engine_key.input_shape == (1, 3, 32, 48)
    assert model_meta.input_width == 48 and path.parent == cache_dir / "engines"
    path2, _, source2, _ = trt_backend.prepare_engine(model, options, cache_dir, allow_build=False)
    assert (path2, source2, len(builds)) == (path, "cache", 1), "a matching engine is never rebuilt"
    # another precision is another engine
    trt_backend.prepare_engine(model, trt_backend.BuildOptions(precision="fp32"), cache_dir)
    assert len(builds) == 2
    # a TensorRT upgrade: fail names it, or rebuild
    platform["version"] = "10.4.0"
    with pytest.raises(EngineCacheError, match=r"TensorRT version 10.3.0 \(cached\) != 10.4.0"):
        trt_backend.prepare_engine(model, options, cache_dir, on_mismatch="fail")
    _, upgraded_key, source3, _ = trt_backend.prepare_engine(model, options, cache_dir, on_mismatch="rebuild")
    assert source3 == "built" and upgraded_key.tensorrt_version == "10.4.0" and len(builds) == 3
    # re-exporting the model (new bytes) is a new key; with building disabled it is a clear error
    tiny_onnx(model, 32, 64)
    with pytest.raises(EngineCacheError, match="build-engine"):
        trt_backend.prepare_engine(model, options, cache_dir, allow_build=False)
