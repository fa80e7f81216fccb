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
from shared_data import shared_path

import onnxruntime  # noqa: E402

from mtl_perception.inference.precision import int8_runs_right_on  # noqa: E402

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


REALDATA = shared_path("realdata")


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


@pytest.mark.skipif(not int8_runs_right_on(onnxruntime.__version__), reason=f"onnxruntime {onnxruntime.__version__} runs the INT8 file wrong (precision.INT8_ONNXRUNTIME_MIN)")
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


# -- provider checks, the TensorRT provider's caches, and the node's precision plumbing --------------------

def _cpu_only_sessions(monkeypatch, available):
    """onnxruntime reporting ``available`` providers but giving every session the CPU only, as a missing CUDA library does."""
    import onnxruntime as ort

    real = ort.InferenceSession

    def session(path, options=None, providers=None, provider_options=None, **kwargs):
        return real(path, options, providers=["CPUExecutionProvider"])

    monkeypatch.setattr(ort, "get_available_providers", lambda: list(available))
    monkeypatch.setattr(ort, "InferenceSession", session)


def test_a_provider_that_failed_to_load_is_an_error_not_a_silent_cpu_run(exported, monkeypatch, caplog):
    import logging

    _, onnx_path = exported
    _cpu_only_sessions(monkeypatch, ["CUDAExecutionProvider", "CPUExecutionProvider"])
    with pytest.raises(BackendError, match="asked for CUDAExecutionProvider, but the session runs on \\['CPUExecutionProvider'\\]"):
        create_backend("onnxruntime", onnx_path, provider="cuda")
    with caplog.at_level(logging.WARNING):
        backend = create_backend("onnxruntime", onnx_path, provider="auto")
    assert backend.provider_fallback and backend.requested_providers[0] == "CUDAExecutionProvider"
    assert "asked for CUDAExecutionProvider" in caplog.text
    assert create_backend("onnxruntime", onnx_path, provider="cpu").provider_fallback is None


def test_tensorrt_provider_caches_are_keyed_by_the_model_file(exported, tmp_path):
    import shutil

    from mtl_perception.inference.backends.onnxruntime_backend import OnnxRuntimeBackend
    from mtl_perception.inference.precision import make_precision_file

    _, onnx_path = exported
    trt = "TensorrtExecutionProvider"
    assert OnnxRuntimeBackend._provider_options("CUDAExecutionProvider", False, tmp_path, onnx_path) == {}
    first = OnnxRuntimeBackend._provider_options(trt, False, tmp_path / "ort", onnx_path)
    assert first["trt_engine_cache_enable"] == "True" and first["trt_timing_cache_enable"] == "True"
    assert Path(first["trt_timing_cache_path"]) == tmp_path / "ort" / "ort_tensorrt" / "timing"  # ort_tensorrt/ of the cache root
    assert first["trt_fp16_enable"] == "False" and first["trt_int8_enable"] == "False"
    # the same name with other weights (a re-export) gets another engine folder; a copy of the same bytes the same one
    other = tmp_path / "retrained" / onnx_path.name
    other.parent.mkdir()
    import onnx

    model = onnx.load(str(onnx_path))
    model.graph.initializer[0].raw_data = bytes(len(model.graph.initializer[0].raw_data))
    onnx.save(model, str(other))
    assert OnnxRuntimeBackend._provider_options(trt, False, tmp_path / "ort", other)["trt_engine_cache_path"] != first["trt_engine_cache_path"]
    copy = tmp_path / "copy.onnx"
    shutil.copy(onnx_path, copy)
    assert OnnxRuntimeBackend._provider_options(trt, False, tmp_path / "ort", copy)["trt_engine_cache_path"] == first["trt_engine_cache_path"]
    fp16 = make_precision_file(onnx_path, "fp16", tmp_path / "precision").path
    fp16_options = OnnxRuntimeBackend._provider_options(trt, True, tmp_path / "ort", fp16)
    assert fp16_options["trt_fp16_enable"] == fp16_options["trt_int8_enable"] == "False", "a precision file: no weak-typing flags (issue 22, 7)"


def test_node_precision_reaches_the_tensorrt_provider():
    from types import SimpleNamespace

    from mtl_perception.ros.parameters import backend_options

    settings = SimpleNamespace(precision="fp16", threads=2, engine_cache_dir="/tmp/engines")
    options = backend_options(settings, "onnxruntime", "tensorrt")
    assert options["tensorrt_fp16"] is True and options["tensorrt_cache_dir"] == "/tmp/engines"
    assert "tensorrt_fp16" not in backend_options(settings, "onnxruntime", "cuda")
    settings.precision = "default"
    assert "tensorrt_fp16" not in backend_options(settings, "onnxruntime", "tensorrt")
    settings.precision = "int8"
    assert backend_options(settings, "tensorrt", "auto")["precision"] == "int8"
