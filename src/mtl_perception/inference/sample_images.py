"""Camera frames for parity checks, quantisation and benchmarks, with no dataset on disk.

Frames come from the package's synthetic indoor renderer (textured rooms, lighting, sensor noise):
the images the default model is trained on, so parity figures measured on them reflect what the
deployed model sees, unlike uniform random input.
"""
from __future__ import annotations

import numpy as np

from mtl_perception.inference.metadata import ModelMetadata
from mtl_perception.inference.processing import preprocess


def sample_image(height: int, width: int, seed: int = 0) -> np.ndarray:
    """A uint8 RGB (height, width, 3) synthetic room frame, deterministic for a seed."""
    from mtl_perception.data.synthetic import render_frame

    return render_frame(seed, height, width).rgb


def sample_batch(meta: ModelMetadata, count: int = 2, seed: int = 0) -> np.ndarray:
    """``count`` preprocessed frames (count, 3, H, W) for the model's input size.

    Frames are rendered at 1.5x the model size with a 4:3 aspect ratio and go through the real
    ``preprocess`` (resize + normalisation), as camera frames do.
    """
    height = round(meta.input_height * 1.5)
    width = max(round(height * 4 / 3), 8)
    frames = [preprocess(sample_image(height, width, seed + i), meta, "stretch")[0] for i in range(count)]
    return np.concatenate(frames, axis=0)
