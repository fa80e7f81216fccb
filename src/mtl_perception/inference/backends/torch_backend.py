"""PyTorch backend: runs a checkpoint directly (CPU or CUDA), described exactly as its export would be."""
from __future__ import annotations

import contextlib
from pathlib import Path

import numpy as np

from mtl_perception.inference.backends.base import Backend, BackendError
from mtl_perception.inference.metadata import INPUT_NAME

DEVICES = ("auto", "cpu", "cuda")
PRECISIONS = ("fp32", "fp16")


def resolve_device(device: str) -> str:
    """'auto' -> 'cuda' when available else 'cpu'; 'cuda' and 'cuda:N' need a CUDA build and device."""
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cpu":
        return device
    if device == "cuda" or device.startswith("cuda:"):
        if not torch.cuda.is_available():
            raise BackendError(f"device '{device}' requested but torch {torch.__version__} sees no CUDA device; use device 'cpu'")
        return device
    raise ValueError(f"unknown device '{device}'; valid: {list(DEVICES)} or cuda:N")


class TorchBackend(Backend):
    """Eager PyTorch inference from a checkpoint.

    height/width: the input size (default: the training size), as for export. precision fp16 runs the
    network under CUDA autocast (CUDA only). threads: torch intra-op threads on CPU (0 keeps the default).
    """

    name = "torch"

    def __init__(self, checkpoint: str | Path, device: str = "auto", precision: str = "fp32", height: int | None = None, width: int | None = None, threads: int = 0) -> None:
        import torch

        from mtl_perception.inference.checkpoint_model import load_for_inference

        if precision not in PRECISIONS:
            raise ValueError(f"unknown precision '{precision}'; valid: {list(PRECISIONS)}")
        self.device = resolve_device(device)
        if precision == "fp16" and not self.device.startswith("cuda"):
            raise BackendError("precision fp16 needs a CUDA device for the torch backend; use fp32 on CPU")
        if threads > 0:
            torch.set_num_threads(threads)
        model, self.metadata = load_for_inference(checkpoint, height, width)
        self.model = model.to(self.device).eval()
        self.precision = precision
        self.batch_size = None
        self.name = f"torch-{self.device.split(':')[0]}-{precision}"

    @property
    def input_names(self) -> list[str]:
        return [INPUT_NAME]  # the network's input, as its export names it

    @property
    def output_names(self) -> list[str]:
        return [self.metadata.output_names[t] for t in self.metadata.tasks]

    def infer(self, batch: np.ndarray) -> dict[str, np.ndarray]:
        import torch

        if self.model is None:
            raise BackendError("torch backend is closed")
        inputs = torch.from_numpy(self.check_batch(batch)).to(self.device, non_blocking=True)
        autocast = torch.autocast("cuda", dtype=torch.float16) if self.precision == "fp16" else contextlib.nullcontext()
        with torch.inference_mode(), autocast:
            outputs = self.model(inputs)
        return {t: outputs[t].float().cpu().numpy() for t in self.metadata.tasks}

    def close(self) -> None:
        self.model = None
        if self.device.startswith("cuda"):
            import torch

            torch.cuda.empty_cache()
