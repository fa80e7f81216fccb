"""The backend contract, the same for every inference engine.

- ``infer(batch) -> {task: array}``: the network on a preprocessed float32 batch (evaluation, calibration);
- ``run(feeds, output_names) -> {name: array}``: any graph by tensor name, for backends that run ONNX
  files: the deploy graph (``inference/deploy_graph.py``) that the node and ``bag-eval`` use;
- ``input_names`` / ``output_names``: the opened graph's tensor names, in its order. Every backend has
  them (abstract here), so a caller filters or checks feeds by them, never by probing attributes.
  ``TensorGraphBackend`` gives them to the backends that open a graph by tensor name (ONNX Runtime, TensorRT):
  the names the opened graph lists.

``graph`` selects what a backend opens: ``network`` (an exported model file, its inputs and outputs
checked against its metadata) or ``deploy`` (a deploy graph composed from one: camera image and
runtime inputs in, publishable buffers out; metadata copied from the model file).
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from types import TracebackType
from typing import Mapping, Sequence

import numpy as np

from mtl_perception.inference.metadata import ModelMetadata


GRAPH_KINDS = ("network", "deploy")


def check_graph_kind(graph: str) -> str:
    """``graph`` if it names a graph kind; ValueError listing them otherwise."""
    if graph not in GRAPH_KINDS:
        raise ValueError(f"unknown graph kind '{graph}'; valid: {list(GRAPH_KINDS)}")
    return graph


class BackendError(RuntimeError):
    """A backend cannot be created or run (missing library, device, provider...)."""


class Backend(ABC):
    """An inference engine for one model.

    ``infer`` takes a float32 batch (N, 3, H, W) preprocessed as ``metadata`` describes and returns
    float32 arrays keyed by task name (``depth``, ``semantic``, ``normals``), whatever the graph's
    output names are. ``batch_size`` is the fixed batch the model accepts, or None when any is accepted.
    """

    name: str = "backend"
    metadata: ModelMetadata
    batch_size: int | None = 1

    @property
    @abstractmethod
    def input_names(self) -> list[str]:
        """The opened graph's input tensor names, in the graph's order."""

    @property
    @abstractmethod
    def output_names(self) -> list[str]:
        """The opened graph's output tensor names, in the graph's order."""

    @abstractmethod
    def infer(self, batch: np.ndarray) -> dict[str, np.ndarray]:
        """Run the network on a preprocessed batch."""

    def run(self, feeds: Mapping[str, np.ndarray], output_names: Sequence[str] | None = None) -> dict[str, np.ndarray]:
        """Run the opened graph on named inputs; the named outputs (all when None) by name."""
        raise BackendError(f"backend '{self.name}' runs the network only (infer), not ONNX graphs by tensor name")

    def close(self) -> None:
        """Free the engine's resources; the backend is unusable afterwards."""

    def check_batch(self, batch: np.ndarray) -> np.ndarray:
        """The batch as contiguous float32 (N, 3, H, W), or ValueError saying what is wrong."""
        if not isinstance(batch, np.ndarray):
            raise ValueError(f"{self.name}: batch must be a NumPy array, got {type(batch).__name__}")
        expected = (3, self.metadata.input_height, self.metadata.input_width)
        if batch.ndim != 4 or batch.shape[1:] != expected:
            raise ValueError(
                f"{self.name}: batch has shape {batch.shape}, the model expects (N, {expected[0]}, {expected[1]}, {expected[2]}); "
                "preprocess frames with mtl_perception.inference.processing.preprocess"
            )
        if self.batch_size is not None and batch.shape[0] != self.batch_size:
            raise ValueError(f"{self.name}: the model takes batches of {self.batch_size}, got {batch.shape[0]}; export with --dynamic-batch for other sizes")
        if batch.dtype != np.float32:
            raise ValueError(f"{self.name}: batch must be float32, got {batch.dtype}")
        return np.ascontiguousarray(batch)

    def __enter__(self) -> "Backend":
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.close()

    def __repr__(self) -> str:
        meta = self.metadata
        return f"{type(self).__name__}({self.name}, {meta.architecture}/{meta.encoder}, {meta.input_height}x{meta.input_width}, tasks={meta.tasks})"


class TensorGraphBackend(Backend):
    """A backend that opens a graph whose tensors it runs by name (an ONNX file, a TensorRT engine).

    Its ``__init__`` sets ``_input_names`` / ``_output_names`` to what the opened graph lists, in its order;
    ``input_names`` / ``output_names`` hand out copies of them.
    """

    _input_names: list[str]
    _output_names: list[str]

    @property
    def input_names(self) -> list[str]:
        return list(self._input_names)

    @property
    def output_names(self) -> list[str]:
        return list(self._output_names)
