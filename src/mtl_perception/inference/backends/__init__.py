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


# File suffixes each backend accepts: what `mtl-perception export` writes (.onnx) or training writes (.pt).
MODEL_SUFFIXES: dict[str, tuple[str, ...]] = {"onnxruntime": (".onnx",), "tensorrt": (".onnx",), "torch": (".pt", ".pth")}


def validate_model_path(kind: str, model_path: str | Path) -> Path:
    """The model path if it names an existing, non-empty regular file with a suffix ``kind`` reads; else ModelFileError.

    Rejects directories, FIFOs and devices (which would block or stream forever) before any backend opens them.
    """
    from mtl_perception.inference.model_file import REEXPORT_HINT, ModelFileError

    path = Path(model_path).expanduser()
    if not path.exists():
        raise ModelFileError(f"model file not found: {path}; {REEXPORT_HINT}, or point the setting at an existing file")
    if not path.is_file():
        raise ModelFileError(f"model path {path} is not a regular file (a directory, FIFO or device); give the exported model file")
    suffixes = MODEL_SUFFIXES.get(kind, ())
    if suffixes and path.suffix.lower() not in suffixes:
        hint = "export a checkpoint with `mtl-perception export`" if kind != "torch" else "the torch backend reads training checkpoints"
        raise ModelFileError(f"backend '{kind}' reads {' or '.join(suffixes)} files, not '{path.name}'; {hint} (or pick the backend that reads this file)")
    if path.stat().st_size == 0:
        raise ModelFileError(f"model file {path} is empty; {REEXPORT_HINT}")
    return path


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
    return cls(validate_model_path(kind, model_path), **options)


__all__ = ["Backend", "BackendError", "BACKENDS", "MODEL_SUFFIXES", "backend_class", "create_backend", "validate_model_path"]
