"""Inference backends behind one contract; ``create_backend(kind, model_path, **options)`` picks one.

kinds: ``onnxruntime`` (an exported .onnx file), ``torch`` (a training checkpoint), ``tensorrt`` (an
exported .onnx file, built into a cached engine). Backend modules are imported only when chosen, so
a machine without TensorRT or CUDA can use the others.
"""
from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

from mtl_perception.inference.backends.base import Backend, BackendError

BACKENDS: dict[str, tuple[str, str]] = {
    "onnxruntime": ("mtl_perception.inference.backends.onnxruntime_backend", "OnnxRuntimeBackend"),
    "torch": ("mtl_perception.inference.backends.torch_backend", "TorchBackend"),
    "tensorrt": ("mtl_perception.inference.backends.tensorrt_backend", "TensorRTBackend"),
}


def backend_class(kind: str) -> type[Backend]:
    """The Backend subclass of a kind; ValueError listing the valid kinds."""
    if kind not in BACKENDS:
        raise ValueError(f"unknown backend '{kind}'; valid: {sorted(BACKENDS)}")
    module_name, class_name = BACKENDS[kind]
    return getattr(importlib.import_module(module_name), class_name)


def create_backend(kind: str, model_path: str | Path, **options: Any) -> Backend:
    """Create a backend: ``model_path`` is an .onnx file (onnxruntime, tensorrt) or a checkpoint (torch).

    ``options`` are the chosen backend's keyword arguments (e.g. provider/intra_op_threads for
    onnxruntime, device/precision for torch, precision/cache_dir for tensorrt); an unknown option is a
    TypeError naming the valid ones.
    """
    cls = backend_class(kind)
    import inspect

    valid = [p for p in inspect.signature(cls.__init__).parameters if p not in ("self", "model_path", "checkpoint")]
    unknown = sorted(set(options) - set(valid))
    if unknown:
        raise TypeError(f"backend '{kind}' has no option(s) {unknown}; valid: {valid}")
    return cls(model_path, **options)


__all__ = ["Backend", "BackendError", "BACKENDS", "backend_class", "create_backend"]
