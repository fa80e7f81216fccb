"""The backend contract: ``infer(batch) -> {task: array}``, the same for every inference engine."""
from __future__ import annotations

from abc import ABC, abstractmethod
from types import TracebackType

import numpy as np

from mtl_perception.inference.metadata import ModelMetadata


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

    @abstractmethod
    def infer(self, batch: np.ndarray) -> dict[str, np.ndarray]:
        """Run the network on a preprocessed batch."""

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
