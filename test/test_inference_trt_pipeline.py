"""``FramePipeline(backend="tensorrt")`` end to end with the TensorRT and CUDA stand-ins, against onnxruntime.

The TensorRT double parses each deploy graph file the pipeline writes (its I/O names and types become the
engine's), builds and caches an engine for it, and the engine executes the file in ONNX Runtime on the
device buffers the backend allocated through the CUDA stand-in: so everything of the backend and of the
pipeline's contract with it runs here (feeds filtered by ``Backend.input_names``, dtypes, batching,
copies, stream order). Each output alone and all together, at batch 1 and 4, must equal the onnxruntime
backend's outputs through the same pipeline, byte for byte.
"""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Iterator

import numpy as np
import pytest

pytest.importorskip("cuda.bindings.runtime", reason="cuda-python (requirements.txt) is not installed")

from cuda_double import FakeCudart  # noqa: E402
from mtl_perception.inference.backends import BackendError  # noqa: E402
from mtl_perception.inference.deploy_graph import GRAPH_OUTPUTS, IMAGE_INPUT  # noqa: E402
from mtl_perception.inference.frame_pipeline import FramePipeline  # noqa: E402
from mtl_perception.inference.sample_images import sample_image  # noqa: E402
from ros_fixtures import pinhole_info  # noqa: E402
from trt_double import FakeTensorRT, program_onnx_engines  # noqa: E402

HEIGHT, WIDTH = 48, 64
OUTPUT_SETS = [(name,) for name in GRAPH_OUTPUTS] + [tuple(GRAPH_OUTPUTS)]
TRT_VERSION = "10.13.0.35"


def camera_info():
    """A pinhole CameraInfo of the test frames (a plain message object: no ROS graph needed)."""
    return pinhole_info(WIDTH, HEIGHT, 60.0)


@pytest.fixture(scope="module")
def standins() -> Iterator[tuple[FakeTensorRT, FakeCudart]]:
    """The stand-ins as ``tensorrt`` and ``cuda.bindings.runtime`` for this module's tests."""
    cudart = FakeCudart()
    trt = program_onnx_engines(FakeTensorRT(TRT_VERSION), cudart)
    saved = {name: sys.modules.get(name) for name in ("tensorrt", "cuda.bindings.runtime")}
    sys.modules["tensorrt"], sys.modules["cuda.bindings.runtime"] = trt, cudart
    yield trt, cudart
    for name, module in saved.items():
        if module is None:
            sys.modules.pop(name, None)
        else:
            sys.modules[name] = module


@pytest.fixture(scope="module")
def pipelines(standins, tiny_model: Path, tmp_path_factory) -> Iterator[tuple[FramePipeline, FramePipeline]]:
    folder = tmp_path_factory.mktemp("trt_pipeline")
    deploy = folder / "deploy"  # both backends open the same deploy graph files
    tensorrt = FramePipeline(tiny_model, "tensorrt", {"cache_dir": str(folder / "engines")}, cache_dir=deploy, max_graphs=64)
    reference = FramePipeline(tiny_model, "onnxruntime", {"provider": "cpu", "intra_op_threads": 1}, cache_dir=deploy, max_graphs=64)
    yield tensorrt, reference
    tensorrt.close()
    reference.close()


def frames(count: int) -> list[tuple[np.ndarray, str, object]]:
    info = camera_info()
    return [(np.ascontiguousarray(sample_image(HEIGHT, WIDTH, seed=seed)), "rgb8", info) for seed in range(count)]


@pytest.mark.parametrize("batch", [1, 4])
@pytest.mark.parametrize("outputs", OUTPUT_SETS, ids=["+".join(s) if len(s) < 3 else "all" for s in OUTPUT_SETS])
def test_tensorrt_pipeline_equals_onnxruntime(pipelines, standins, outputs, batch):
    tensorrt, reference = pipelines
    batch_frames = frames(batch)
    got = tensorrt.run_batch(batch_frames, outputs)
    expected = reference.run_batch(batch_frames, outputs)
    assert len(got) == len(expected) == batch
    wanted = {name for output in outputs for name in GRAPH_OUTPUTS[output]}
    for mine, theirs in zip(got, expected):
        assert set(mine.arrays) == set(theirs.arrays) == wanted
        for name in wanted:
            a, b = mine.arrays[name], theirs.arrays[name]
            assert a.dtype == b.dtype and a.shape == b.shape, name
            np.testing.assert_array_equal(a, b, err_msg=name)
        assert mine.out_size == theirs.out_size
    _, cudart = standins
    assert cudart.violations == []


def test_the_engine_takes_only_the_inputs_its_graph_has(pipelines, standins):
    """The deploy graph of `depth` alone has fewer inputs than the pipeline prepares (issue 22, 3)."""
    tensorrt, _ = pipelines
    runner, _ = tensorrt.graph_for(HEIGHT, WIDTH, "rgb8", ["depth"], 1)
    backend = runner.backend
    prepared = {IMAGE_INPUT, "depth_scale", "intrinsics", *tensorrt._runtime}  # what run_batch feeds every graph
    assert backend.name.startswith("tensorrt") and IMAGE_INPUT in backend.input_names and set(backend.input_names) < prepared
    assert "palette_bgr" not in backend.input_names and backend.output_names == ["depth"]
    trt, _ = standins
    assert trt.record.deprecated() == [], trt.record.deprecated()


def test_no_cuda_device_fails_at_activation_in_one_line(standins, tiny_model: Path, monkeypatch):
    monkeypatch.setitem(sys.modules, "cuda.bindings.runtime", FakeCudart(devices=()))
    with pytest.raises(BackendError) as caught:
        FramePipeline(tiny_model, "tensorrt")
    message = str(caught.value)
    assert "\n" not in message and "backend 'tensorrt' needs a CUDA GPU" in message and "cudaErrorNoDevice" in message
    assert "use backend 'onnxruntime'" in message


def test_a_graph_the_real_parser_refuses_is_refused_here_naming_its_node(pipelines, standins, tmp_path):
    """The stand-in's parser applies TensorRT's type rules: a uint8 tensor between two nodes (what every colour
    output of the old deploy graph had) fails to parse, and the backend's error names the node."""
    import onnx
    from mtl_perception.inference.backends.tensorrt_backend import TensorRTBackend

    tensorrt, _ = pipelines
    tensorrt.graph_for(HEIGHT, WIDTH, "rgb8", ["semantic_color"], 1)  # writes its deploy graph file (cached)
    graphs = (onnx.load(str(path)) for path in sorted(tensorrt.cache_dir.glob("deploy-*.onnx")))
    graph = next(g for g in graphs if "palette_bgr" in {i.name for i in g.graph.input})
    cast = next(node for node in graph.graph.node if "palette_bgr" in node.input)
    cast.input[list(cast.input).index("palette_bgr")] = "planted_palette"
    graph.graph.node.insert(0, onnx.helper.make_node("Identity", ["palette_bgr"], ["planted_palette"], name="planted_identity"))
    planted = tmp_path / "planted.onnx"
    onnx.save(graph, str(planted))
    with pytest.raises(BackendError) as caught:
        TensorRTBackend(planted, graph="deploy", cache_dir=str(tmp_path / "engines"))
    message = str(caught.value)
    assert "could not parse" in message and "planted_identity" in message and "UINT8" in message
