"""Procedural surface materials: two-colour patterns plus fine grain, evaluated on surface coordinates.

Surfaces give each hit point 2-D texture coordinates ``uv`` in metres (see ``geometry``); a material turns
them into a linear-RGB albedo. Patterns give the network texture cues (tiles shrink with distance,
stripes bend with the surface orientation); the grain adds high-frequency detail.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

PATTERNS = ("plain", "checker", "stripes", "noise")
NOISE_SIZE = 64  # texels along each side of the tileable noise texture
GRAIN_PERIOD_M = 0.2  # metres covered by one period of the noise texture when used as grain


@dataclass(frozen=True)
class Material:
    """A two-colour procedural pattern in linear RGB (components in [0, 1])."""

    color_a: tuple[float, float, float] = (0.6, 0.6, 0.6)
    color_b: tuple[float, float, float] = (0.3, 0.3, 0.3)
    pattern: str = "plain"  # plain | checker | stripes | noise
    tile: float = 0.5  # metres per checker square, per stripe, or per noise period
    grain: float = 0.0  # amplitude of the fine multiplicative grain, 0 disables it

    def __post_init__(self) -> None:
        if self.pattern not in PATTERNS:
            raise ValueError(f"unknown material pattern '{self.pattern}'; valid patterns: {list(PATTERNS)}")
        if self.tile <= 0:
            raise ValueError(f"material tile must be positive, got {self.tile}")

    def albedo(self, uv: np.ndarray, noise: np.ndarray | None) -> np.ndarray:
        """Linear-RGB albedo (M, 3) float32 at texture coordinates ``uv`` (M, 2) in metres."""
        weight = self._pattern_weight(uv, noise)
        color_a = np.asarray(self.color_a, np.float32)
        color_b = np.asarray(self.color_b, np.float32)
        rgb = color_a + weight[:, None] * (color_b - color_a)
        if self.grain > 0 and noise is not None:
            grain = sample_noise(noise, uv * np.float32(1.0 / GRAIN_PERIOD_M))
            rgb = rgb * (1.0 + np.float32(2.0 * self.grain) * (grain - np.float32(0.5)))[:, None]
        return rgb.astype(np.float32, copy=False)

    def _pattern_weight(self, uv: np.ndarray, noise: np.ndarray | None) -> np.ndarray:
        if self.pattern == "plain" or (self.pattern == "noise" and noise is None):
            return np.zeros(len(uv), np.float32)
        cells = np.floor(uv * np.float32(1.0 / self.tile))
        if self.pattern == "checker":
            return np.mod(cells[:, 0] + cells[:, 1], 2.0).astype(np.float32)
        if self.pattern == "stripes":
            return np.mod(cells[:, 0], 2.0).astype(np.float32)
        return sample_noise(noise, uv * np.float32(1.0 / self.tile))


def make_noise_texture(rng: np.random.Generator, size: int = NOISE_SIZE, blur_texels: float = 1.5) -> np.ndarray:
    """A tileable smooth noise texture (size, size) float32 with values in [0, 1].

    White noise low-pass filtered with a Gaussian in the Fourier domain (periodic, so it tiles seamlessly).
    """
    white = rng.random((size, size))
    freq = np.fft.fftfreq(size)
    gauss = np.exp(-2.0 * (np.pi * blur_texels) ** 2 * (freq[:, None] ** 2 + freq[None, :] ** 2))
    smooth = np.real(np.fft.ifft2(np.fft.fft2(white) * gauss))
    smooth -= smooth.min()
    span = smooth.max()
    return (smooth / span if span > 0 else smooth).astype(np.float32)


def sample_noise(noise: np.ndarray, coords: np.ndarray) -> np.ndarray:
    """Nearest-texel lookup of a tileable texture; ``coords`` (M, 2) in texture periods."""
    size = noise.shape[0]
    idx = np.floor(coords * np.float32(size)).astype(np.int64) % size
    return noise[idx[:, 1], idx[:, 0]]
