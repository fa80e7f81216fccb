"""The typed backend contract: every backend names its graph's inputs and outputs (``Backend.input_names`` /
``output_names``, abstract; ``TensorGraphBackend`` gives the opened graph's for ONNX Runtime and TensorRT), and ``FramePipeline`` feeds a graph exactly the inputs it names (issue 22, 3)."""
from __future__ import annotations

import inspect
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest

from mtl_perception.inference.backends import BACKENDS, backend_class, create_backend
from mtl_perception.inference.backends.base import Backend
from mtl_perception.inference.metadata import INPUT_NAME


def test_the_names_are_abstract_so_every_backend_must_give_them():
    class Partial(Backend):
        def infer(self, batch: np.ndarray) -> dict[str, np.ndarray]:
            return {}

    with pytest.raises(TypeError, match="input_names"):
        Partial()
    for kind in BACKENDS:
        cls = backend_class(kind)
        assert not getattr(cls, "__abstractmethods__", None), f"{cls.__name__} leaves {sorted(cls.__abstractmethods__)} abstract"
        assert all(isinstance(inspect.getattr_static(cls, name), property) for name in ("input_names", "output_names")), cls.__name__


def test_onnxruntime_names_are_the_sessions(tiny_model: Path):
    backend = create_backend("onnxruntime", tiny_model, provider="cpu")
    session = ort.InferenceSession(str(tiny_model), providers=["CPUExecutionProvider"])
    assert backend.input_names == [i.name for i in session.get_inputs()] == [INPUT_NAME]
    assert backend.output_names == [o.name for o in session.get_outputs()]
    assert set(backend.output_names) == set(backend.metadata.output_names.values())
    backend.close()


def test_torch_names_are_what_its_export_names(tiny_checkpoint: Path, tiny_model: Path):
    torch_backend = create_backend("torch", tiny_checkpoint, device="cpu")
    onnx_backend = create_backend("onnxruntime", tiny_model, provider="cpu")
    assert torch_backend.input_names == onnx_backend.input_names
    assert torch_backend.output_names == onnx_backend.output_names


def test_the_pipeline_feeds_a_deploy_graph_only_the_inputs_it_names(tiny_model: Path, tmp_path):
    """A deploy graph of `depth` alone takes fewer inputs than the pipeline prepares; its backend must get only those."""
    from mtl_perception.inference.frame_pipeline import FramePipeline
    from mtl_perception.inference.sample_images import sample_image

    pipeline = FramePipeline(tiny_model, "onnxruntime", {"provider": "cpu"}, cache_dir=tmp_path)
    runner, _ = pipeline.graph_for(48, 64, "rgb8", ["depth"], 1)
    seen: list[set[str]] = []
    run = runner.backend.run
    runner.backend.run = lambda feeds, outputs=None: seen.append(set(feeds)) or run(feeds, outputs)
    out = pipeline.run(np.ascontiguousarray(sample_image(48, 64, seed=1)), "rgb8", ["depth"])
    assert out.arrays["depth"].shape == (48, 64)
    assert seen == [set(runner.backend.input_names)] and "palette_bgr" not in seen[0]
    pipeline.close()
