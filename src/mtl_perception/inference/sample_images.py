"""Camera-like test images for parity checks and benchmarks (no dataset needed).

A frame is a room-like composition: a lit wall gradient, a darker floor with perspective stripes, a
few boxes and a disc with shading, then sensor noise. Its statistics (smooth regions, edges, texture,
values spread over 0-255) look like a camera frame to a network, unlike uniform random noise, so
parity figures measured on it reflect what the deployed model sees.
"""
from __future__ import annotations

import numpy as np

from mtl_perception.inference.metadata import ModelMetadata
from mtl_perception.inference.processing import preprocess


def sample_image(height: int, width: int, seed: int = 0) -> np.ndarray:
    """A uint8 RGB (height, width, 3) room-like frame, deterministic for a seed."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    v, u = yy / max(height - 1, 1), xx / max(width - 1, 1)
    horizon = rng.uniform(0.45, 0.65)
    wall_tint = rng.uniform(0.5, 1.0, size=3)
    floor_tint = rng.uniform(0.3, 0.7, size=3)
    wall = (0.55 + 0.35 * np.cos(2.5 * (u - 0.5)))[..., None] * wall_tint * (1.0 - 0.3 * v[..., None])
    stripes = 0.85 + 0.15 * np.sign(np.sin(40.0 * (u - 0.5) / np.maximum(v - horizon + 0.05, 0.05)))
    floor = (0.4 + 0.5 * v)[..., None] * floor_tint * stripes[..., None]
    image = np.where((v < horizon)[..., None], wall, floor)
    for _ in range(3):  # boxes standing on the floor
        x0, x1 = sorted(rng.uniform(0.05, 0.95, size=2))
        top = rng.uniform(0.2, horizon)
        bottom = rng.uniform(horizon, 0.95)
        colour = rng.uniform(0.1, 0.9, size=3)
        shade = (0.7 + 0.3 * (u - x0) / max(x1 - x0, 1e-3))[..., None]
        inside = (u >= x0) & (u <= x1) & (v >= top) & (v <= bottom)
        image = np.where(inside[..., None], colour * shade, image)
    cx, cy, radius = rng.uniform(0.2, 0.8), rng.uniform(0.55, 0.85), rng.uniform(0.05, 0.12)
    dist = np.sqrt(((u - cx) * width / height) ** 2 + (v - cy) ** 2)
    disc_shade = np.clip(1.0 - dist / radius, 0.0, 1.0) ** 0.5
    image = np.where((dist < radius)[..., None], rng.uniform(0.3, 1.0, size=3) * (0.4 + 0.6 * disc_shade[..., None]), image)
    image = image + rng.normal(0.0, 0.02, size=image.shape)
    return np.clip(image * 255.0, 0, 255).astype(np.uint8)


def sample_batch(meta: ModelMetadata, count: int = 2, seed: int = 0) -> np.ndarray:
    """``count`` preprocessed sample frames (count, 3, H, W) for the model's input size.

    Frames are rendered at 1.5x the model size with a 4:3 aspect ratio and go through the real
    ``preprocess`` (resize + normalisation), as camera frames do.
    """
    height = round(meta.input_height * 1.5)
    width = max(round(height * 4 / 3), 8)
    frames = [preprocess(sample_image(height, width, seed + i), meta, "stretch")[0] for i in range(count)]
    return np.concatenate(frames, axis=0)
