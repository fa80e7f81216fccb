"""Surface materials: a procedural pattern between two colours, fine grain, and flat decals.

Surfaces give each hit point 2-D texture coordinates ``uv`` in metres (see ``geometry``); a material turns
them into a linear-RGB albedo with a pattern from ``textures``. Decals are rectangles painted flat onto a
surface (pictures, posters, windows and doors on walls; light panels on ceilings): they change the colour
only, never the geometry, so a poster is labelled as the wall it hangs on. A window's albedo is far above 1,
a stand-in for emission: after shading it saturates like a blown-out window in a photograph.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from mtl_perception.data.textures import TEXTURES, pattern_weight, sample_noise

RGB = tuple[float, float, float]
GRAIN_PERIOD_M = 0.2  # metres covered by one period of the noise texture when used as grain
DECAL_KINDS = ("picture", "poster", "window", "door", "panel")
MULLION_M = 0.03  # width of a window's glazing bars


@dataclass(frozen=True)
class Decal:
    """A flat rectangle painted on a surface, from ``lo`` to ``hi`` in the surface's texture coordinates (m).

    picture: a smooth 1/f image blending colors[0..2]; poster: the same posterised into three flat colours;
    window: sky colors[0] above an outside band colors[1] with glazing bars; door: a panel colors[0] with a
    handle colors[1]; panel: a light panel colors[0]. Every kind has a border ``frame`` metres wide.
    """

    kind: str
    lo: tuple[float, float]
    hi: tuple[float, float]
    colors: tuple[RGB, RGB, RGB]
    frame: float = 0.03
    frame_color: RGB = (0.05, 0.05, 0.05)

    def __post_init__(self) -> None:
        if self.kind not in DECAL_KINDS:
            raise ValueError(f"unknown decal kind '{self.kind}'; valid kinds: {list(DECAL_KINDS)}")

    def paint(self, rgb: np.ndarray, uv: np.ndarray, noise: np.ndarray | None) -> None:
        """Overwrite the albedo ``rgb`` (M, 3) at the points of ``uv`` (M, 2) that the decal covers."""
        lo, hi = np.asarray(self.lo, np.float32), np.asarray(self.hi, np.float32)
        inside = np.all((uv >= lo) & (uv <= hi), axis=1)
        if not inside.any():
            return
        local = uv[inside] - lo
        size = hi - lo
        rel = local / size
        colors = np.asarray(self.colors, np.float32)
        content = self._content(local, rel, colors, noise)
        to_edge = np.minimum(local, size - local).min(axis=1)
        content[to_edge < self.frame] = np.asarray(self.frame_color, np.float32)
        rgb[inside] = content

    def _content(self, local: np.ndarray, rel: np.ndarray, colors: np.ndarray, noise: np.ndarray | None) -> np.ndarray:
        level = sample_noise(noise, local * np.float32(0.8)) if noise is not None else rel[:, 0]
        if self.kind in ("picture", "poster"):
            if self.kind == "poster":
                level = np.digitize(level, [0.4, 0.6]).astype(np.float32) * np.float32(0.5)
            low = colors[0] + (2 * level[:, None]) * (colors[1] - colors[0])
            high = colors[1] + (2 * level[:, None] - 1) * (colors[2] - colors[1])
            return np.where(level[:, None] < 0.5, low, high)
        if self.kind == "window":
            horizon = np.float32(0.25) + np.float32(0.35) * level
            out = np.where((rel[:, 1] < horizon)[:, None], colors[1], colors[0] * (1.0 - 0.3 * rel[:, 1:2]))
            bar = (np.abs(rel[:, 0] - 0.5) * (self.hi[0] - self.lo[0]) < MULLION_M / 2) \
                | (np.abs(rel[:, 1] - 0.6) * (self.hi[1] - self.lo[1]) < MULLION_M / 2)
            out[bar] = np.asarray(self.frame_color, np.float32)
            return out
        if self.kind == "door":
            out = np.repeat(colors[0][None], len(rel), axis=0) * (0.9 + 0.2 * level[:, None])
            handle = (np.abs(rel[:, 0] - 0.88) < 0.04) & (np.abs(local[:, 1] - 1.0) < 0.02)
            out[handle] = colors[1]
            return out
        return np.repeat(colors[0][None], len(rel), axis=0)


@dataclass(frozen=True)
class Material:
    """A two-colour procedural pattern in linear RGB (components in [0, 1]) plus decals."""

    color_a: RGB = (0.6, 0.6, 0.6)
    color_b: RGB = (0.3, 0.3, 0.3)
    pattern: str = "plain"  # a name in textures.TEXTURES
    tile: float = 0.5  # the pattern's scale in metres (see textures)
    grain: float = 0.0  # amplitude of the fine multiplicative grain, 0 disables it
    offset: tuple[float, float] = (0.0, 0.0)  # texture shift in metres, so surfaces sharing the noise differ
    decals: tuple[Decal, ...] = field(default=())

    def __post_init__(self) -> None:
        if self.pattern not in TEXTURES:
            raise ValueError(f"unknown material pattern '{self.pattern}'; valid patterns: {list(TEXTURES)}")
        if self.tile <= 0:
            raise ValueError(f"material tile must be positive, got {self.tile}")

    def albedo(self, uv: np.ndarray, noise: np.ndarray | None, footprint: np.ndarray | None = None) -> np.ndarray:
        """Linear-RGB albedo (M, 3) float32 at texture coordinates ``uv`` (M, 2) in metres.

        ``footprint`` (M,) is the surface length one pixel covers (metres); it anti-aliases fine detail.
        Without a noise texture the pattern is left out (colour a everywhere).
        """
        color_a = np.asarray(self.color_a, np.float32)
        rgb = np.repeat(color_a[None], len(uv), axis=0)
        shifted = uv + np.asarray(self.offset, np.float32)
        if noise is not None and self.pattern != "plain":
            pixel = footprint if footprint is not None else np.full(len(uv), 1e-3, np.float32)
            weight = pattern_weight(self.pattern, shifted, pixel, noise, self.tile)
            rgb += weight[:, None] * (np.asarray(self.color_b, np.float32) - color_a)
        if self.grain > 0 and noise is not None:
            grain = sample_noise(noise, shifted * np.float32(1.0 / GRAIN_PERIOD_M))
            rgb *= (1.0 + np.float32(2.0 * self.grain) * (grain - np.float32(0.5)))[:, None]
        for decal in self.decals:
            decal.paint(rgb, uv, noise)
        return rgb
