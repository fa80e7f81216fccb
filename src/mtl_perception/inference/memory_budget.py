"""The memory one camera frame takes through the deploy graph and its messages, and the largest frame a budget admits.

A frame's working memory grows with its pixels: the graph's activations at camera resolution (the heads resized
back, the colour maps, the point cloud) and the output messages. Measured on the CPU (ONNX Runtime, the bundled
model; ``benchmarks/node_memory.py --per-pixel``: peak RSS growth between a 1920x1080 and a 3840x2160 frame, each
output alone: depth 27-45 B/px over three runs, depth_color 28, labels 36, semantic_color, semantic_overlay and
points 47, normals 23; all of them 80; all at model resolution 12 per camera pixel):

- every frame pays ``INPUT_BYTES_PER_PIXEL`` per camera pixel (its pixels, the resize to the network input);
- each output pays its graph bytes per *output* pixel; outputs of one task share their resized head, so a task
  group costs its most expensive member (``GRAPH_GROUPS``), not the sum;
- each image output's message holds its encoding's bytes per output pixel once more (``MESSAGE_BYTES_PER_PIXEL``).

The table is rounded up so that the estimate of every node output at input resolution, 129 B/px, covers what a
real node process took through a 3840x2160 frame (peak RSS growth 107-125 B/px over runs).
"""
from __future__ import annotations

import ctypes
import ctypes.util
import math
from typing import Collection

INPUT_BYTES_PER_PIXEL = 12.0
# graph bytes per output pixel beyond the input's (see the module docstring for the measured figures)
GRAPH_BYTES_PER_PIXEL: dict[str, float] = {
    "depth": 20.0, "depth_color": 24.0, "labels": 32.0, "confidence": 32.0, "semantic_color": 44.0,
    "semantic_overlay": 46.0, "points": 46.0, "normals": 20.0,
}
GRAPH_GROUPS: tuple[frozenset[str], ...] = (  # outputs that share one resized head (points take depth and labels)
    frozenset({"depth", "depth_color"}),
    frozenset({"labels", "confidence", "semantic_color", "semantic_overlay", "points"}),
    frozenset({"normals"}),
)
MESSAGE_BYTES_PER_PIXEL: dict[str, float] = {
    "depth": 4.0, "depth_color": 3.0, "labels": 1.0, "confidence": 4.0, "semantic_color": 3.0, "semantic_overlay": 3.0,
    "normals": 12.0,
}
# A frame of more pixels than this is unusually large (above 1280x1024, below 1920x1080): its graph runs without the
# shared arena on the CPU (backends/onnxruntime_backend.py) and the node gives the C heap's free pages back after
# publishing it (``release_freed_memory``).
LARGE_FRAME_PIXELS = 1_500_000
POINT_BYTES = 16.0  # PointCloud2 x, y, z, rgb (+ label) per point: one point per stride x stride pixels


class FrameOverBudget(ValueError):
    """A frame needs more working memory than ``processing.memory_budget_mb`` allows; the message says how to fit."""


def bytes_per_output_pixel(outputs: Collection[str], points_stride: int = 4) -> float:
    """Estimated working bytes per output pixel of the deploy graph ``outputs`` (keys of deploy_graph.GRAPH_OUTPUTS)."""
    wanted = set(outputs)
    unknown = wanted - set(GRAPH_BYTES_PER_PIXEL)
    if unknown:
        raise ValueError(f"unknown deploy graph output(s) {sorted(unknown)}; valid: {sorted(GRAPH_BYTES_PER_PIXEL)}")
    graph = sum(max((GRAPH_BYTES_PER_PIXEL[name] for name in group & wanted), default=0.0) for group in GRAPH_GROUPS)
    messages = sum(MESSAGE_BYTES_PER_PIXEL.get(name, 0.0) for name in wanted)
    if "points" in wanted:
        messages += POINT_BYTES / max(1, points_stride) ** 2
    return graph + messages


def frame_bytes(in_pixels: int, out_pixels: int, outputs: Collection[str], points_stride: int = 4) -> float:
    """Estimated working memory (bytes) of one frame of ``in_pixels`` camera pixels and ``out_pixels`` output pixels."""
    if not outputs:
        return 0.0
    return in_pixels * INPUT_BYTES_PER_PIXEL + out_pixels * bytes_per_output_pixel(outputs, points_stride)


def largest_frame(budget_mb: int, outputs: Collection[str], model_pixels: int | None = None, points_stride: int = 4) -> int:
    """The most camera pixels whose frame fits ``budget_mb`` (0 = no budget: unbounded, returned as 2**62).

    ``model_pixels``: outputs at the network's resolution (``output.resolution: model``) of that many pixels;
    None: outputs at camera resolution.
    """
    if budget_mb <= 0 or not outputs:
        return 1 << 62
    budget = budget_mb * float(1 << 20)
    per_output = bytes_per_output_pixel(outputs, points_stride)
    if model_pixels is None:
        return max(0, int(budget // (INPUT_BYTES_PER_PIXEL + per_output)))
    return max(0, int((budget - model_pixels * per_output) // INPUT_BYTES_PER_PIXEL))


def example_size(pixels: int) -> str:
    """A 16:9 width x height of about ``pixels`` pixels (for messages)."""
    width = int(math.sqrt(max(pixels, 0) * 16 / 9))
    return f"{width}x{width * 9 // 16}"


def check_frame(height: int, width: int, outputs: Collection[str], budget_mb: int, model_pixels: int | None = None,
                points_stride: int = 4) -> None:
    """FrameOverBudget when a height x width frame computing ``outputs`` needs more than ``budget_mb`` (0: no check)."""
    if budget_mb <= 0 or not outputs:
        return
    pixels = height * width
    need = frame_bytes(pixels, model_pixels if model_pixels is not None else pixels, outputs, points_stride)
    if need <= budget_mb * float(1 << 20):
        return
    limit = largest_frame(budget_mb, outputs, model_pixels, points_stride)
    hint = ("publish smaller frames or subscribe to fewer outputs" if model_pixels is not None else
            "set output.resolution to model (outputs at the network's size), subscribe to fewer outputs, or publish smaller frames")
    raise FrameOverBudget(
        f"frame of {width}x{height} would need about {need / (1 << 20):.0f} MB for outputs {sorted(outputs)}, more than "
        f"processing.memory_budget_mb = {budget_mb} (it admits up to {limit} pixels, about {example_size(limit)}, for these outputs); "
        f"{hint}, or raise processing.memory_budget_mb")


def release_freed_memory() -> bool:
    """Give the C heap's free pages back to the system (glibc ``malloc_trim``); False where there is no glibc.

    After an unusually large frame its buffers are freed, but glibc keeps the heap they grew (its mmap threshold
    rises to the largest block freed, so later blocks of that size come from the heap).
    """
    name = ctypes.util.find_library("c")
    try:
        trim = ctypes.CDLL(name).malloc_trim if name else None
    except (OSError, AttributeError):
        return False
    if trim is None:
        return False
    trim(0)
    return True
