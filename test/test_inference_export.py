"""ONNX export: ONNX Runtime vs PyTorch parity and TensorRT 10 compatibility for every encoder and every
registered architecture, plus the checkpoint export path (metadata, atomic write, dynamic batch)."""
from __future__ import annotations

import numpy as np
import onnx
import pytest
import torch
from network_support import EXPORT_DATASET, EXPORT_SIZE, network_config

from mtl_perception.inference.checkpoint_model import build_metadata
from mtl_perception.inference.export import PARITY_TOLERANCE, ExportError, export_model, export_onnx
from mtl_perception.inference.metadata import METADATA_KEY, OUTPUT_NAMES
from mtl_perception.inference.model_file import read_onnx_metadata
from mtl_perception.model.encoders import ENCODERS
from mtl_perception.fileio import file_sha256
from mtl_perception.model.network import ARCHITECTURES, build_model
from mtl_perception.training.checkpoint import save_checkpoint

SIZE = EXPORT_SIZE
DATASET = EXPORT_DATASET
CASES = [(encoder, "hard") for encoder in sorted(ENCODERS)] + [("resnet18", arch) for arch in sorted(ARCHITECTURES) if arch != "hard"]
make_config = network_config


@pytest.fixture(autouse=True)
def one_thread():
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.mark.parametrize(("encoder", "architecture"), CASES, ids=[f"{e}-{a}" for e, a in CASES])
def test_parity_and_tensorrt_compat(exported_network, encoder, architecture):
    exported = exported_network(encoder, architecture)  # conftest: one export per architecture and session
    cfg, report = exported.config, exported.report
    assert set(report.max_abs_diff) == set(cfg.model.tasks)
    assert report.worst_diff <= PARITY_TOLERANCE, report.max_abs_diff
    assert report.trt_problems == [], report.trt_problems
    graph = onnx.load(str(report.path))
    assert [o.name for o in graph.graph.output] == [OUTPUT_NAMES[t] for t in cfg.model.tasks]
    assert not {n.op_type for n in graph.graph.node} & {"BatchNormalization", "Shape", "Gather"}, "static export must fold BN and shape arithmetic"


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    torch.manual_seed(0)
    cfg = make_config()
    cfg.model.tasks = ["depth", "semantic"]
    path = tmp_path_factory.mktemp("ckpt") / "model.pt"
    save_checkpoint(path, {"config": cfg.to_dict(), "model": build_model(cfg.model).state_dict(), "step": 0, "dataset": DATASET})
    return path


def test_export_from_checkpoint_is_self_describing(tmp_path, checkpoint):
    out = tmp_path / "model.onnx"
    report = export_onnx(checkpoint, out, height=80, width=112)  # not multiples of 32: the decoder resizes to each level
    assert report.opset == 17 and report.worst_diff <= PARITY_TOLERANCE and "parity" in report.summary()
    meta = read_onnx_metadata(out)
    assert meta.tasks == ["depth", "semantic"] and meta.output_names == {"depth": "depth", "semantic": "semantic_logits"}
    assert (meta.input_height, meta.input_width) == (80, 112)
    assert meta.checkpoint_sha256 == file_sha256(checkpoint)
    assert meta.class_names == DATASET["class_names"] and meta.palette == DATASET["palette"]
    assert meta.focal_length_px == pytest.approx(50.0 * np.sqrt(80 / 64 * 112 / 64))
    graph = onnx.load(str(out))
    onnx.checker.check_model(graph, full_check=True)
    assert [d.dim_value for d in graph.graph.input[0].type.tensor_type.shape.dim] == [1, 3, 80, 112]
    assert any(p.key == METADATA_KEY for p in graph.metadata_props)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.onnx"], "no external-data or temporary files"


def test_dynamic_batch_export_runs_any_batch(tmp_path, checkpoint):
    import onnxruntime as ort

    report = export_onnx(checkpoint, tmp_path / "dyn.onnx", dynamic_batch=True)
    assert report.dynamic_batch and report.worst_diff <= PARITY_TOLERANCE
    session = ort.InferenceSession(str(tmp_path / "dyn.onnx"), providers=["CPUExecutionProvider"])
    outputs = session.run(None, {"image": np.zeros((3, 3, SIZE, SIZE), np.float32)})
    assert [o.shape for o in outputs] == [(3, 1, SIZE, SIZE), (3, 7, SIZE, SIZE)]


def test_failed_check_writes_nothing(tmp_path):
    cfg = make_config()
    model = build_model(cfg.model).eval()
    out = tmp_path / "model.onnx"
    out.write_bytes(b"previous model")
    with pytest.raises(ExportError, match="not written"):
        export_model(model, build_metadata(cfg, DATASET, ""), out, tolerance=-1.0)  # a limit no export can meet
    assert out.read_bytes() == b"previous model"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.onnx"]


def test_bad_export_arguments(tmp_path, checkpoint):
    with pytest.raises(ValueError, match="at least 32"):
        export_onnx(checkpoint, tmp_path / "m.onnx", height=16)
    with pytest.raises(ValueError, match="exporter"):
        export_onnx(checkpoint, tmp_path / "m.onnx", exporter="tflite")
