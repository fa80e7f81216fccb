"""One cache root (``paths.cache_dir``): every compiled artefact (deploy graphs, precision files, TensorRT
engines, timing caches and calibration tables, ONNX Runtime's TensorRT provider caches) lands under the root
given (``model.engine_cache_dir``, ``--cache-dir``), else under $MTL_PERCEPTION_CACHE, else ~/.cache/mtl_perception;
the retired variables are ignored."""
from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from mtl_perception import paths
from mtl_perception.inference.calibration import CalibrationCacheFile
from mtl_perception.inference.frame_pipeline import FramePipeline

RETIRED = ("MTL_PERCEPTION_ENGINE_CACHE", "MTL_PERCEPTION_PRECISION_CACHE")


@pytest.fixture
def places(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> dict[str, Path]:
    """A private home (the default root's ``~``), the retired variables pointing elsewhere, no $MTL_PERCEPTION_CACHE."""
    found = {name: tmp_path / name for name in ("home", "root", "environment", *RETIRED)}
    monkeypatch.setenv("HOME", str(found["home"]))
    monkeypatch.delenv(paths.CACHE_ENV, raising=False)
    for name in RETIRED:
        monkeypatch.setenv(name, str(found[name]))
    return found


def files_under(folder: Path) -> set[Path]:
    return {p for p in folder.rglob("*") if p.is_file()}


def test_the_root_is_the_argument_else_the_variable_else_the_home_cache(places: dict[str, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    assert paths.cache_dir("engines") == places["home"] / ".cache" / "mtl_perception" / "engines"
    monkeypatch.setenv(paths.CACHE_ENV, str(places["environment"]))
    assert paths.cache_dir("deploy") == places["environment"] / "deploy"
    assert paths.cache_dir("precision", places["root"]) == places["root"] / "precision"
    assert paths.cache_root("~/elsewhere") == places["home"] / "elsewhere"
    assert {paths.cache_dir(kind).parent for kind in paths.CACHE_KINDS} == {places["environment"]}
    with pytest.raises(ValueError, match=r"unknown cache kind 'engine'; valid: \['deploy', 'engines', 'ort_tensorrt', 'precision'\]"):
        paths.cache_dir("engine")


def make_every_artefact(model: Path, root: Path | None, monkeypatch: pytest.MonkeyPatch) -> None:
    """A deploy graph of the FP16 file, a TensorRT engine (stand-in build) with its timing cache, a calibration
    table and the TensorRT provider's folders, each given ``root`` (None: the default root)."""
    pytest.importorskip("cuda.bindings.runtime", reason="cuda-python (requirements.txt) is not installed")
    from cuda_double import FakeCudart, install

    from mtl_perception.fileio import file_sha256
    from mtl_perception.inference.backends import tensorrt_backend
    from mtl_perception.inference.backends.onnxruntime_backend import PROVIDERS, OnnxRuntimeBackend

    pipeline = FramePipeline(model, "onnxruntime", {"provider": "cpu", "intra_op_threads": 1}, cache_dir=root, precision="fp16")
    try:
        out = pipeline.run(np.zeros((48, 64, 3), np.uint8), "rgb8", ["depth"])
        assert out.arrays["depth"].shape == (48, 64)
    finally:
        pipeline.close()

    install(monkeypatch, FakeCudart())
    monkeypatch.setattr(tensorrt_backend, "import_tensorrt", lambda: SimpleNamespace(__version__="10.3.0"))
    monkeypatch.setattr(tensorrt_backend, "gpu_identity", lambda device=0: tensorrt_backend.GpuIdentity("Orin", "8.7", 16, 32))

    def build(trt: object, onnx_path: Path, meta: object, key: tensorrt_backend.EngineKey, options: object, folder: Path) -> bytes:
        (folder / tensorrt_backend.timing_cache_name(key)).write_bytes(b"timing")  # where the real build keeps it
        return b"engine"

    monkeypatch.setattr(tensorrt_backend, "build_engine", build)
    engine, _, source, _ = tensorrt_backend.prepare_engine(model, tensorrt_backend.BuildOptions(precision="fp16"), root)
    assert source == "built" and engine.is_file()
    CalibrationCacheFile(root, file_sha256(model)).write(b"TRT-1000-EntropyCalibration2\n")
    options = OnnxRuntimeBackend._provider_options(PROVIDERS["tensorrt"], False, root, model)
    for key in ("trt_engine_cache_path", "trt_timing_cache_path"):
        (Path(options[key]) / "probe").write_bytes(b"")  # the folders the provider writes into


@pytest.mark.parametrize("given", ["argument", "environment"])
def test_every_artefact_lands_under_the_one_root(places: dict[str, Path], monkeypatch: pytest.MonkeyPatch,
                                                tiny_model: Path, given: str) -> None:
    if given == "environment":
        monkeypatch.setenv(paths.CACHE_ENV, str(places["environment"]))
    root = places["root"] if given == "argument" else places["environment"]
    make_every_artefact(tiny_model, root if given == "argument" else None, monkeypatch)
    written = files_under(root)
    kinds = {p.relative_to(root).parts[0] for p in written}
    assert kinds == set(paths.CACHE_KINDS)
    names = {p.name for p in written}
    assert any(n.startswith("deploy-") and n.endswith(".onnx") for n in names)  # the deploy graph
    assert any("-fp16-" in n and n.endswith(".onnx") for n in {p.name for p in written if p.parent.name == "precision"})
    assert {p.suffix for p in written if p.parent.name == "engines"} >= {".engine", ".json", ".cache", ".sha256"}
    for other in ("home", *RETIRED, "environment" if given == "argument" else "root"):
        assert files_under(places[other]) == set(), f"{other} got {sorted(files_under(places[other]))}"


def test_node_engine_cache_dir_is_the_root_of_every_artefact(places: dict[str, Path], tiny_model: Path) -> None:
    from mtl_perception.ros import engine_plan
    from mtl_perception.ros import parameters as params

    root = places["root"]
    settings = params.settings_from_values({"model.engine_cache_dir": str(root), "model.precision": "fp16",
                                            "model.provider": "cpu"})
    assert params.backend_options(settings, "tensorrt", "auto")["cache_dir"] == str(root)
    assert params.backend_options(settings, "onnxruntime", "tensorrt")["tensorrt_cache_dir"] == str(root)
    pipeline = engine_plan.node_pipeline(settings, tiny_model, "onnxruntime", "cpu", 1)
    try:
        pipeline.run(np.zeros((48, 64, 3), np.uint8), "rgb8", ["depth", "labels"])
    finally:
        pipeline.close()
    written = files_under(root)
    assert {p.relative_to(root).parts[0] for p in written} == {"deploy", "precision"}
    assert files_under(places["home"]) == set()
