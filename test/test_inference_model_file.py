"""The self-describing model file: metadata round trip, and clear errors for missing, truncated or mismatched files."""
from __future__ import annotations

import json

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from mtl_perception.config import ExperimentConfig
from mtl_perception.inference.backends.onnxruntime_backend import OnnxRuntimeBackend
from mtl_perception.inference.checkpoint_model import build_metadata, default_palette
from mtl_perception.inference.metadata import METADATA_KEY, ModelMetadata
from mtl_perception.inference.model_file import ModelFileError, embed_metadata, read_onnx_metadata, validate_io

DATASET = {"class_names": ["floor", "wall", "object"], "palette": [[1, 2, 3], [4, 5, 6], [7, 8, 9]], "focal_length_px": 100.0}


def make_config(height: int = 64, width: int = 64) -> ExperimentConfig:
    cfg = ExperimentConfig()
    cfg.model.num_classes = 3
    cfg.data.height, cfg.data.width = height, width
    return cfg.validate()


def tiny_graph(height: int = 64, width: int = 64) -> onnx.ModelProto:
    """A 1x1-conv stand-in with the real input/output names and shapes (fast to build and run)."""
    rng = np.random.default_rng(0)
    nodes, inits, outputs = [], [], []
    for name, channels in (("depth", 1), ("semantic_logits", 3), ("normals", 3)):
        weight = numpy_helper.from_array(rng.normal(size=(channels, 3, 1, 1)).astype(np.float32), f"w_{name}")
        inits.append(weight)
        nodes.append(helper.make_node("Conv", ["image", weight.name], [name]))
        outputs.append(helper.make_tensor_value_info(name, TensorProto.FLOAT, [1, channels, height, width]))
    graph = helper.make_graph(nodes, "tiny", [helper.make_tensor_value_info("image", TensorProto.FLOAT, [1, 3, height, width])], outputs, inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=9)


def write_model(path, meta: ModelMetadata | None, height: int = 64, width: int = 64):
    model = tiny_graph(height, width)
    if meta is not None:
        embed_metadata(model, meta)
    onnx.save(model, str(path))
    return path


def test_metadata_round_trip(tmp_path):
    meta = build_metadata(make_config(), DATASET, "ab" * 32)
    path = write_model(tmp_path / "m.onnx", meta)
    loaded = read_onnx_metadata(path)
    assert loaded == meta
    assert loaded.class_names == DATASET["class_names"] and loaded.palette == DATASET["palette"]
    assert (loaded.input_height, loaded.input_width, loaded.checkpoint_sha256) == (64, 64, "ab" * 32)
    props = {p.key: p.value for p in onnx.load(str(path)).metadata_props}
    assert props[f"{METADATA_KEY}.tasks"] == "depth,semantic,normals" and props[f"{METADATA_KEY}.input_size"] == "64x64"
    # embedding twice replaces, never duplicates
    model = onnx.load(str(path))
    embed_metadata(model, meta)
    assert sum(p.key == METADATA_KEY for p in model.metadata_props) == 1
    backend = OnnxRuntimeBackend(path, provider="cpu")
    assert backend.metadata == meta and backend.batch_size == 1


def test_build_metadata_scales_focal_length_to_export_size():
    meta = build_metadata(make_config(64, 64), DATASET, "", 128, 128)
    assert meta.focal_length_px == pytest.approx(200.0) and meta.depth_scaling == "focal"
    assert build_metadata(make_config(), {"class_names": DATASET["class_names"]}, "").depth_scaling == "none"
    defaults = build_metadata(make_config(), None, "")
    assert defaults.class_names == ["class_0", "class_1", "class_2"] and defaults.palette == default_palette(3).tolist()
    with pytest.raises(ValueError, match="class names"):
        build_metadata(make_config(), {"class_names": ["only_one"]}, "")


def test_missing_model_file(tmp_path):
    with pytest.raises(ModelFileError, match="not found"):
        OnnxRuntimeBackend(tmp_path / "absent.onnx")
    with pytest.raises(ModelFileError, match="not found"):
        read_onnx_metadata(tmp_path / "absent.onnx")


def test_truncated_model_file(tmp_path):
    good = write_model(tmp_path / "good.onnx", build_metadata(make_config(), DATASET, ""))
    data = good.read_bytes()
    bad = tmp_path / "half.onnx"
    bad.write_bytes(data[: len(data) // 2])
    with pytest.raises(ModelFileError, match="truncated or corrupt"):
        OnnxRuntimeBackend(bad, provider="cpu")
    with pytest.raises(ModelFileError, match="truncated or corrupt"):
        read_onnx_metadata(bad)
    empty = tmp_path / "empty.onnx"
    empty.write_bytes(b"")
    with pytest.raises(ModelFileError, match="empty|truncated"):
        read_onnx_metadata(empty)


def test_metadata_contradicting_the_graph(tmp_path):
    meta = build_metadata(make_config(96, 128), DATASET, "")  # says 96x128
    path = write_model(tmp_path / "mismatch.onnx", meta, 64, 64)  # graph is 64x64
    with pytest.raises(ModelFileError, match=r"shape \[1, 3, 64, 64\] but the metadata says \(N, 3, 96, 128\)"):
        OnnxRuntimeBackend(path, provider="cpu")
    with pytest.raises(ModelFileError, match="metadata says"):
        read_onnx_metadata(path)


def test_missing_or_bad_metadata(tmp_path):
    with pytest.raises(ModelFileError, match="has no 'mtl_perception' metadata"):
        OnnxRuntimeBackend(write_model(tmp_path / "plain.onnx", None), provider="cpu")
    model = tiny_graph()
    raw = json.loads(build_metadata(make_config(), DATASET, "").to_json())
    raw["version"] = 99
    model.metadata_props.add(key=METADATA_KEY, value=json.dumps(raw))
    onnx.save(model, str(tmp_path / "future.onnx"))
    with pytest.raises(ModelFileError, match="newer than this package"):
        read_onnx_metadata(tmp_path / "future.onnx")


def test_validate_io_names_missing_outputs():
    meta = build_metadata(make_config(), DATASET, "")
    inputs = {"image": [1, 3, 64, 64]}
    with pytest.raises(ModelFileError, match="task 'normals' with output 'normals'"):
        validate_io(inputs, {"depth": [1, 1, 64, 64], "semantic_logits": [1, 3, 64, 64]}, meta, "m")
    with pytest.raises(ModelFileError, match="graph input 'image' missing"):
        validate_io({"input": [1, 3, 64, 64]}, {}, meta, "m")
    # dynamic batch (symbolic or -1 as TensorRT reports it) is fine
    outputs = {"depth": [-1, 1, 64, 64], "semantic_logits": ["batch", 3, 64, 64], "normals": [-1, 3, 64, 64]}
    validate_io({"image": ["batch", 3, 64, 64]}, outputs, meta, "m")
