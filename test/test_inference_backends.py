"""Backends behind one contract: factory, ONNX Runtime vs PyTorch parity through the contract, input checks,
provider selection, INT8 quantisation, and the full pre -> infer -> post chain."""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from mtl_perception.config import ExperimentConfig
from mtl_perception.inference.backends import BACKENDS, create_backend
from mtl_perception.inference.backends.base import BackendError
from mtl_perception.inference.backends.onnxruntime_backend import resolve_providers
from mtl_perception.inference.export import export_onnx
from mtl_perception.inference.processing import preprocess, to_rgb
from numpy_oracle import postprocess
from mtl_perception.inference.sample_images import sample_batch, sample_image
from mtl_perception.model.network import build_model
from mtl_perception.training.checkpoint import save_checkpoint

SIZE = 64
DATASET = {"class_names": [f"c{i}" for i in range(7)], "palette": [[i, 0, 0] for i in range(7)], "focal_length_px": 50.0}


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """(checkpoint, onnx) of a small random-weight default model at 64x64."""
    torch.set_num_threads(1)
    torch.manual_seed(0)
    cfg = ExperimentConfig()
    cfg.data.height = cfg.data.width = SIZE
    cfg.validate()
    folder = tmp_path_factory.mktemp("backends")
    checkpoint = folder / "model.pt"
    save_checkpoint(checkpoint, {"config": cfg.to_dict(), "model": build_model(cfg.model).state_dict(), "step": 0, "dataset": DATASET})
    export_onnx(checkpoint, folder / "model.onnx")
    return checkpoint, folder / "model.onnx"


def test_factory_lists_valid_kinds_and_options(exported):
    _, onnx_path = exported
    with pytest.raises(ValueError, match=r"unknown backend 'openvino'; valid: \['onnxruntime', 'tensorrt', 'torch'\]"):
        create_backend("openvino", onnx_path)
    with pytest.raises(TypeError, match="no option"):
        create_backend("onnxruntime", onnx_path, precision="fp16")
    assert set(BACKENDS) == {"onnxruntime", "torch", "tensorrt"}


def test_onnxruntime_and_torch_agree_through_the_contract(exported):
    checkpoint, onnx_path = exported
    ort_backend = create_backend("onnxruntime", onnx_path, provider="cpu", intra_op_threads=1, graph_optimization="all")
    torch_backend = create_backend("torch", checkpoint, device="cpu")
    assert ort_backend.metadata == torch_backend.metadata
    batch = sample_batch(ort_backend.metadata, count=1, seed=7)
    a, b = ort_backend.infer(batch), torch_backend.infer(batch)
    assert set(a) == set(b) == {"depth", "semantic", "normals"}
    for task in a:
        assert a[task].dtype == np.float32 and a[task].shape == b[task].shape
        assert np.max(np.abs(a[task] - b[task])) < 1e-3, task
    # torch accepts any batch size; the static ONNX graph accepts batch 1 only
    assert torch_backend.infer(np.concatenate([batch, batch]))["depth"].shape == (2, 1, SIZE, SIZE)
    with pytest.raises(ValueError, match="batches of 1"):
        ort_backend.infer(np.concatenate([batch, batch]))
    ort_backend.close()
    with pytest.raises(BackendError, match="closed"):
        ort_backend.infer(batch)


def test_batch_checks_name_the_problem(exported):
    _, onnx_path = exported
    with create_backend("onnxruntime", onnx_path, provider="cpu") as backend:
        with pytest.raises(ValueError, match=r"expects \(N, 3, 64, 64\)"):
            backend.infer(np.zeros((1, 3, 32, 32), np.float32))
        with pytest.raises(ValueError, match="float32"):
            backend.infer(np.zeros((1, 3, SIZE, SIZE), np.float64))
        with pytest.raises(ValueError, match="NumPy array"):
            backend.infer([[0.0]])


def test_full_chain_gives_predictions_at_input_resolution(exported):
    _, onnx_path = exported
    with create_backend("onnxruntime", onnx_path, provider="cpu") as backend:
        image = sample_image(90, 120, seed=3)
        batch, transform = preprocess(image, backend.metadata, "letterbox")
        pred = postprocess(backend.infer(batch), backend.metadata, transform, "input")
    assert pred.depth.shape == (90, 120) and pred.depth.dtype == np.float32
    meta = backend.metadata
    assert np.all(pred.depth >= meta.depth_min * 0.999) and np.all(pred.depth <= meta.depth_max * 1.001)
    assert pred.labels.shape == (90, 120) and pred.labels.max() < len(meta.class_names)
    assert np.all(pred.confidence >= 1.0 / len(meta.class_names) - 1e-6) and np.all(pred.confidence <= 1.0)
    np.testing.assert_allclose(np.linalg.norm(pred.normals, axis=2), 1.0, atol=1e-4)


REALDATA = Path(__file__).resolve().parents[2] / "shared" / "realdata"


@pytest.mark.skipif(not (REALDATA / "euroc_mono" / "ir0").is_dir(), reason="../shared/realdata/euroc_mono is absent (real camera frames)")
def test_parity_on_a_real_mono_camera_frame(exported):
    """A real 752x480 mono8 frame: replicated to RGB, letterboxed, run by both backends, mapped back."""
    checkpoint, onnx_path = exported
    path = sorted((REALDATA / "euroc_mono" / "ir0").glob("*.png"))[0]
    mono = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    ort_backend = create_backend("onnxruntime", onnx_path, provider="cpu")
    torch_backend = create_backend("torch", checkpoint, device="cpu")
    batch, transform = preprocess(to_rgb(mono, "mono8"), ort_backend.metadata, "letterbox")
    a, b = ort_backend.infer(batch), torch_backend.infer(batch)
    for task in a:
        assert np.max(np.abs(a[task] - b[task])) < 1e-3, task
    pred = postprocess(a, ort_backend.metadata, transform, "input")
    assert pred.depth.shape == mono.shape and pred.labels.shape == mono.shape


def test_provider_resolution():
    cpu, cuda, trt = "CPUExecutionProvider", "CUDAExecutionProvider", "TensorrtExecutionProvider"
    assert resolve_providers("auto", [cpu]) == [cpu]
    assert resolve_providers("auto", [trt, cuda, cpu]) == [cuda, cpu]
    assert resolve_providers("cpu", [cuda, cpu]) == [cpu]
    assert resolve_providers("tensorrt", [trt, cuda, cpu]) == [trt, cuda, cpu]
    with pytest.raises(BackendError, match="not available"):
        resolve_providers("cuda", [cpu])
    with pytest.raises(ValueError, match="valid"):
        resolve_providers("gpu", [cpu])


def test_torch_backend_device_errors(exported):
    checkpoint, _ = exported
    with pytest.raises(ValueError, match="unknown device"):
        create_backend("torch", checkpoint, device="tpu")
    if not torch.cuda.is_available():
        with pytest.raises(BackendError, match="no CUDA device"):
            create_backend("torch", checkpoint, device="cuda")
        with pytest.raises(BackendError, match="fp16 needs a CUDA device"):
            create_backend("torch", checkpoint, device="cpu", precision="fp16")


def test_int8_quantisation_keeps_metadata_and_stays_close(exported, tmp_path):
    from mtl_perception.inference.quantize import quantize_int8

    _, onnx_path = exported
    report = quantize_int8(onnx_path, tmp_path / "int8.onnx", frames=4, eval_frames=2)
    with create_backend("onnxruntime", tmp_path / "int8.onnx", provider="cpu") as backend:
        reference = create_backend("onnxruntime", onnx_path, provider="cpu")
        assert backend.metadata == reference.metadata
        batch = sample_batch(backend.metadata, 1, seed=11)
        assert backend.infer(batch)["depth"].shape == reference.infer(batch)["depth"].shape
    agreement = report.agreement
    assert 0.0 <= agreement.depth_abs_rel < 0.05 and 0.0 <= agreement.normals_mean_angle_deg < 10.0
    assert 0.0 <= agreement.label_agreement <= 1.0 and "vs FP32" in report.summary()


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_torch_cuda_matches_cpu(exported):
    checkpoint, _ = exported
    cpu = create_backend("torch", checkpoint, device="cpu")
    batch = sample_batch(cpu.metadata, 1)
    reference = cpu.infer(batch)
    for precision, tolerance in (("fp32", 1e-3), ("fp16", 5e-2)):
        gpu = create_backend("torch", checkpoint, device="cuda", precision=precision)
        outputs = gpu.infer(batch)
        assert np.max(np.abs(outputs["depth"] - reference["depth"])) < tolerance * 10  # metres, up to 10 m
        gpu.close()
