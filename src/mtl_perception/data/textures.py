"""Procedural textures with real-image statistics, evaluated at surface points.

Every pattern maps texture coordinates ``uv`` (M, 2) in metres and the pixel footprint (M,) in metres
(the surface length one pixel covers) to a blend weight in [0, 1] between a material's two colours.
Fine structure is drawn the way a camera sees it: lines thinner than a pixel by their coverage, periodic
detail finer than two pixels faded to its mean, so textures do not alias into moire.

The noise texture has a 1/f amplitude spectrum (a 1/f^2 power spectrum, as natural images have), so one
lookup at a given period carries detail from that period down to 1/NOISE_SIZE of it.

Patterns (``tile`` is the pattern's scale in metres):
plain (paint), plaster (1/f mottle of period tile), carpet (per-pixel pile speckle over a mottle of period
tile), fabric (mottle of period tile plus a fine weave), stripes (wallpaper, stripe width tile), checker
(squares of side tile), spines (a row of book spines tile wide along u, a tone each), tiles (square tiles of side tile with grout lines and a tone per tile: color_b is
the grout), wood (planks of width tile with staggered joints, a tone per plank and streaky grain).
"""
from __future__ import annotations

from collections.abc import Callable

import numpy as np

NOISE_SIZE = 128  # texels along each side of the tileable noise texture
NOISE_SLOPE = 1.0  # amplitude spectrum falls as 1 / f^NOISE_SLOPE
GROUT_HALF_M = 0.004  # half width of the grout lines between tiles
SEAM_HALF_M = 0.0015  # half width of the joints between wooden planks
THREAD_M = 0.004  # period of a fabric's weave
SPECKLE_M = 0.02  # period over which the noise texture spans a carpet's pile speckle
PLANK_LENGTH = 8.0  # plank length in plank widths

Pattern = Callable[[np.ndarray, np.ndarray, np.ndarray, float], np.ndarray]


def make_noise_texture(rng: np.random.Generator, size: int = NOISE_SIZE, slope: float = NOISE_SLOPE) -> np.ndarray:
    """A tileable (size, size) float32 texture in [0, 1] with a 1/f^slope amplitude spectrum.

    Gaussian noise shaped in the Fourier domain (periodic, so it tiles seamlessly), then stretched so its
    1st and 99th percentiles span [0, 1] (the field has zero mean). ``size`` must be a power of two (``sample_noise`` wraps with a mask).
    """
    if size < 2 or size & (size - 1):
        raise ValueError(f"noise texture size must be a power of two, got {size}")
    fy, fx = np.fft.fftfreq(size), np.fft.rfftfreq(size)
    radius = np.hypot(fy[:, None], fx[None, :])
    radius[0, 0] = np.inf  # no DC term: the mean is set by the stretch below
    shape = radius.shape
    spectrum = (rng.standard_normal(shape) + 1j * rng.standard_normal(shape)) / radius ** slope
    field = np.fft.irfft2(spectrum, s=(size, size))
    spread = 2.326 * field.std()  # the field is Gaussian: mean -/+ 2.326 std are its 1st and 99th percentiles
    return np.clip((field + spread) / (2 * spread), 0.0, 1.0).astype(np.float32)


def sample_noise(noise: np.ndarray, coords: np.ndarray) -> np.ndarray:
    """Nearest-texel lookup of a tileable texture of power-of-two side; ``coords`` (M, 2) in texture periods.

    Coordinates are truncated toward zero (a one-texel shift for negative ones, immaterial for noise).
    """
    size = noise.shape[0]
    texel = (coords * np.float32(size)).astype(np.int32) & (size - 1)
    return noise.reshape(-1)[texel[:, 1] * size + texel[:, 0]]


def cell_hash(i: np.ndarray, j: np.ndarray) -> np.ndarray:
    """A pseudo-random value in [0, 1) per integer cell (i, j), the same wherever the cell is seen."""
    h = (i.astype(np.int64) * 73856093) ^ (j.astype(np.int64) * 19349663)
    h = (h ^ (h >> 13)) * 1274126177
    return ((h >> 8) & 0xFFFF).astype(np.float32) * np.float32(1.0 / 65536.0)


def line_coverage(distance: np.ndarray, half_width: float, footprint: np.ndarray) -> np.ndarray:
    """Share of a pixel covered by a line of ``half_width`` metres at ``distance`` from its centre line."""
    return np.clip((np.float32(half_width) - distance) / footprint + np.float32(0.5), 0.0, 1.0)


def detail_fade(period: float, footprint: np.ndarray) -> np.ndarray:
    """Contrast kept by periodic detail of ``period`` metres: 1 when well resolved, 0 below two pixels."""
    return np.clip(np.float32(1.0) - np.float32(2.0 / period) * footprint, 0.0, 1.0)


def _plain(uv: np.ndarray, footprint: np.ndarray, noise: np.ndarray, tile: float) -> np.ndarray:
    return np.zeros(len(uv), np.float32)


def _plaster(uv: np.ndarray, footprint: np.ndarray, noise: np.ndarray, tile: float) -> np.ndarray:
    return sample_noise(noise, uv * np.float32(1.0 / tile))


def _carpet(uv: np.ndarray, footprint: np.ndarray, noise: np.ndarray, tile: float) -> np.ndarray:
    speckle = sample_noise(noise, uv * np.float32(1.0 / SPECKLE_M))
    mottle = sample_noise(noise, uv * np.float32(1.0 / tile) + np.float32(0.37))
    return np.float32(0.45) * speckle + np.float32(0.55) * mottle


def _fabric(uv: np.ndarray, footprint: np.ndarray, noise: np.ndarray, tile: float) -> np.ndarray:
    mottle = sample_noise(noise, uv * np.float32(1.0 / tile))
    phase = uv * np.float32(2.0 * np.pi / THREAD_M)
    weave = np.sin(phase[:, 0]) * np.sin(phase[:, 1]) * detail_fade(THREAD_M, footprint)
    return np.clip(np.float32(0.8) * mottle + np.float32(0.2) * weave, 0.0, 1.0)


def _stripes(uv: np.ndarray, footprint: np.ndarray, noise: np.ndarray, tile: float) -> np.ndarray:
    square = np.mod(np.floor(uv[:, 0] * np.float32(1.0 / tile)), 2.0).astype(np.float32)
    return np.float32(0.5) + (square - np.float32(0.5)) * detail_fade(2.0 * tile, footprint)


def _checker(uv: np.ndarray, footprint: np.ndarray, noise: np.ndarray, tile: float) -> np.ndarray:
    cells = np.floor(uv * np.float32(1.0 / tile))
    square = np.mod(cells[:, 0] + cells[:, 1], 2.0).astype(np.float32)
    return np.float32(0.5) + (square - np.float32(0.5)) * detail_fade(2.0 * tile, footprint)


def _spines(uv: np.ndarray, footprint: np.ndarray, noise: np.ndarray, tile: float) -> np.ndarray:
    spine = np.floor(uv[:, 0] * np.float32(1.0 / tile))
    return cell_hash(spine, spine + 7)


def _tiles(uv: np.ndarray, footprint: np.ndarray, noise: np.ndarray, tile: float) -> np.ndarray:
    cells = uv * np.float32(1.0 / tile)
    index = np.floor(cells)
    frac = cells - index
    to_grout = np.minimum(frac, np.float32(1.0) - frac).min(axis=1) * np.float32(tile)
    grout = line_coverage(to_grout, GROUT_HALF_M, footprint)
    tone = np.float32(0.12) * cell_hash(index[:, 0], index[:, 1]) + np.float32(0.08) * sample_noise(noise, cells * np.float32(0.5))
    return np.maximum(grout, tone)


def _wood(uv: np.ndarray, footprint: np.ndarray, noise: np.ndarray, tile: float) -> np.ndarray:
    across = uv[:, 1] * np.float32(1.0 / tile)
    row = np.floor(across)
    along = uv[:, 0] * np.float32(1.0 / (PLANK_LENGTH * tile)) + cell_hash(row, row)
    col = np.floor(along)
    tone = cell_hash(row, col)
    to_seam = np.minimum(np.minimum(across - row, row + 1 - across) * np.float32(tile),
                         np.minimum(along - col, col + 1 - along) * np.float32(PLANK_LENGTH * tile))
    seam = line_coverage(to_seam, SEAM_HALF_M, footprint)
    # Grain: noise stretched 20:1 along the plank, shifted per plank so neighbours differ.
    streak = sample_noise(noise, np.stack([uv[:, 0] * np.float32(0.25 / tile) + tone, across * np.float32(0.5)], axis=1))
    grain = np.float32(0.6) * streak + np.float32(0.3) * tone
    return np.maximum(grain, seam)


TEXTURES: dict[str, Pattern] = {
    "plain": _plain, "plaster": _plaster, "carpet": _carpet, "fabric": _fabric, "stripes": _stripes,
    "checker": _checker, "spines": _spines, "tiles": _tiles, "wood": _wood,
}


def pattern_weight(pattern: str, uv: np.ndarray, footprint: np.ndarray, noise: np.ndarray, tile: float) -> np.ndarray:
    """Blend weight (M,) float32 of ``pattern`` between a material's colour a (0) and colour b (1)."""
    return TEXTURES[pattern](uv, footprint, noise, tile).astype(np.float32, copy=False)
