"""Per-frame latency of every available inference backend, side by side, with parity figures.

Usage: .venv/bin/python benchmarks/backends.py [--checkpoint CKPT] [--sizes 240x320 480x640] [--iters 20] [--threads 1]

Without --checkpoint the default model (hard sharing, ResNet-18, depth + semantic + normals) is built
with random weights: latency does not depend on training. For each resolution the script exports the
model to ONNX, makes its INT8 file (explicit Q/DQ, symmetric signed INT8: the file TensorRT builds, which
ONNX Runtime's x86 kernels run no faster than FP32 because they are fast for unsigned activations only),
and times each backend on the same camera-like frames,
round robin (one frame per backend in turn), so machine noise hits all backends alike. It prints the
median and p95 per-frame latency of ``infer`` (batch 1), the ratio PyTorch eager / ONNX Runtime, and
parity figures: ONNX Runtime vs PyTorch max abs difference, INT8 vs FP32 agreement. On a CUDA machine
PyTorch CUDA FP32/FP16 (and ONNX Runtime CUDA when installed) join the table.
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from mtl_perception.inference.backends import Backend, create_backend
from mtl_perception.inference.export import export_onnx, save_untrained_checkpoint
from mtl_perception.inference.quantize import quantize_int8
from mtl_perception.inference.sample_images import sample_batch


def parse_size(text: str) -> tuple[int, int]:
    height, width = (int(v) for v in text.lower().split("x"))
    return height, width


def random_checkpoint(folder: Path) -> Path:
    """The default model with random weights, saved as a checkpoint."""
    return save_untrained_checkpoint(folder / "random_default.pt")


def make_backends(checkpoint: Path, onnx_path: Path, int8_path: Path | None, height: int, width: int, threads: int) -> dict[str, Backend]:
    """Every backend this machine can run, keyed by a display name; the first is the PyTorch CPU reference."""
    backends: dict[str, Backend] = {
        "torch eager cpu fp32": create_backend("torch", checkpoint, device="cpu", height=height, width=width, threads=threads),
        "onnxruntime cpu fp32": create_backend("onnxruntime", onnx_path, provider="cpu", intra_op_threads=threads),
    }
    if int8_path is not None:
        backends["onnxruntime cpu int8"] = create_backend("onnxruntime", int8_path, provider="cpu", intra_op_threads=threads)
    if torch.cuda.is_available():
        for precision in ("fp32", "fp16"):
            backends[f"torch cuda {precision}"] = create_backend("torch", checkpoint, device="cuda", precision=precision, height=height, width=width)
        import onnxruntime as ort

        if "CUDAExecutionProvider" in ort.get_available_providers():
            backends["onnxruntime cuda fp32"] = create_backend("onnxruntime", onnx_path, provider="cuda")
    return backends


def time_round_robin(backends: dict[str, Backend], frames: np.ndarray, iters: int, warmup: int) -> dict[str, list[float]]:
    """Per-frame latency (ms) of each backend, interleaved frame by frame."""
    times: dict[str, list[float]] = {name: [] for name in backends}
    for i in range(warmup + iters):
        frame = frames[i % len(frames)][None]
        for name, backend in backends.items():
            start = time.perf_counter()
            backend.infer(frame)
            if i >= warmup:
                times[name].append((time.perf_counter() - start) * 1000.0)
    return times


def parity(backends: dict[str, Backend], frames: np.ndarray) -> dict[str, dict[str, float]]:
    """Max abs difference of every backend's outputs from the PyTorch CPU reference, per task."""
    reference_name = next(iter(backends))
    references = [backends[reference_name].infer(f[None]) for f in frames]
    result = {}
    for name, backend in list(backends.items())[1:]:
        outputs = [backend.infer(f[None]) for f in frames]
        result[name] = {task: float(max(np.max(np.abs(o[task] - r[task])) for o, r in zip(outputs, references))) for task in references[0]}
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkpoint", default=None, help="checkpoint to benchmark (default: the default model with random weights)")
    parser.add_argument("--sizes", nargs="+", default=["240x320", "480x640"], help="input sizes HxW (at least 32 each)")
    parser.add_argument("--iters", type=int, default=20, help="timed frames per backend and size")
    parser.add_argument("--warmup", type=int, default=3, help="untimed frames per backend first")
    parser.add_argument("--threads", type=int, default=1, help="CPU threads for both torch and onnxruntime (same for both; 0 = library defaults)")
    parser.add_argument("--no-int8", action="store_true", help="skip the INT8 quantised ONNX Runtime model")
    parser.add_argument("--json", default=None, help="also write the figures to this JSON file")
    args = parser.parse_args()

    if args.threads > 0:
        torch.set_num_threads(args.threads)
    figures: dict[str, dict] = {}
    with tempfile.TemporaryDirectory(prefix="mtl_bench_") as tmp:
        folder = Path(tmp)
        checkpoint = Path(args.checkpoint) if args.checkpoint else random_checkpoint(folder)
        weights = "trained weights" if args.checkpoint else "random weights"
        print(f"checkpoint: {checkpoint.name} ({weights}); CPU threads per backend: {args.threads or 'library default'}; "
              f"torch {torch.__version__}; {args.iters} frames per backend, round robin after {args.warmup} warm-up")
        for size in args.sizes:
            height, width = parse_size(size)
            onnx_path, int8_path = folder / f"model_{size}.onnx", folder / f"model_{size}_int8.onnx"
            export = export_onnx(checkpoint, onnx_path, height, width)
            quant = None if args.no_int8 else quantize_int8(onnx_path, int8_path, frames=16, eval_frames=4)
            backends = make_backends(checkpoint, onnx_path, None if quant is None else int8_path, height, width, args.threads)
            meta = backends["onnxruntime cpu fp32"].metadata
            frames = sample_batch(meta, count=4, seed=321)
            times = time_round_robin(backends, frames, args.iters, args.warmup)
            diffs = parity(backends, frames[:2])
            torch_median = float(np.median(times["torch eager cpu fp32"]))
            print(f"\n{height}x{width}  ({meta.architecture}/{meta.encoder}, tasks {','.join(meta.tasks)})")
            print(f"  {'backend':<24}{'median ms':>10}{'p95 ms':>10}{'torch eager / this':>20}")
            rows = {}
            for name, samples in times.items():
                median, p95 = float(np.median(samples)), float(np.percentile(samples, 95))
                rows[name] = {"median_ms": median, "p95_ms": p95, "speedup_vs_torch_eager_cpu": torch_median / median}
                print(f"  {name:<24}{median:>10.1f}{p95:>10.1f}{torch_median / median:>19.2f}x")
            print(f"  export parity (ONNX Runtime vs PyTorch, max abs): {', '.join(f'{t} {d:.1e}' for t, d in export.max_abs_diff.items())}")
            for name, per_task in diffs.items():
                print(f"  parity {name} vs torch eager cpu (max abs): {', '.join(f'{t} {d:.1e}' for t, d in per_task.items())}")
            if quant is not None:
                print(f"  INT8 vs FP32 (ONNX Runtime, {quant.calibration_frames} calibration frames): {quant.agreement.summary()}")
            ratio = rows["onnxruntime cpu fp32"]["speedup_vs_torch_eager_cpu"]
            print(f"  ratio ONNX Runtime FP32 / PyTorch eager (CPU): {ratio:.2f}x faster")
            if "onnxruntime cpu int8" in rows:
                print(f"  ratio ONNX Runtime INT8 / PyTorch eager (CPU): {rows['onnxruntime cpu int8']['speedup_vs_torch_eager_cpu']:.2f}x faster")
                int8_vs_fp32 = rows["onnxruntime cpu fp32"]["median_ms"] / rows["onnxruntime cpu int8"]["median_ms"]
                print(f"  ratio ONNX Runtime FP32 / INT8 latency (CPU): {int8_vs_fp32:.2f}x (> 1 = INT8 faster)")
            figures[size] = {
                "latency": rows, "export_parity": export.max_abs_diff, "parity_vs_torch": diffs,
                "int8_vs_fp32": None if quant is None else quant.agreement.__dict__,
            }
            for backend in backends.values():
                backend.close()
    if args.json:
        Path(args.json).write_text(json.dumps(figures, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
