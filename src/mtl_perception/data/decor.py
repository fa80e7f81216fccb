"""Random looks for the synthetic rooms: materials per kind of surface, and decals on walls and ceilings.

Colours are drawn in HSV within ranges typical of each kind (pale walls and ceilings, brown woods, muted
fabrics, saturated clutter) and converted to linear RGB. Decals: pictures and posters (bright,
high-contrast rectangles), windows (blown-out sky), doors (on the floor line), ceiling light panels.
"""
from __future__ import annotations

import colorsys
from typing import Literal

import numpy as np

from mtl_perception.data.materials import RGB, Decal, Material

Surface = Literal["floor", "wall", "ceiling", "wood", "painted", "fabric", "metal", "stone", "clutter", "cardboard"]
DECAL_GAP_M = 0.15  # smallest gap between decals on one wall, and between a decal and a wall's edge


def _linear(rgb: tuple[float, float, float]) -> RGB:
    """sRGB components in [0, 1] to linear RGB."""
    return tuple(float(c) ** 2.2 for c in rgb)  # type: ignore[return-value]


def random_color(rng: np.random.Generator, hue: tuple[float, float], sat: tuple[float, float], val: tuple[float, float]) -> RGB:
    """A random colour (linear RGB) with hue, saturation and value drawn from the given ranges."""
    h = rng.uniform(*hue) % 1.0
    return _linear(colorsys.hsv_to_rgb(h, rng.uniform(*sat), rng.uniform(*val)))


def _pair(rng: np.random.Generator, base: RGB, contrast: tuple[float, float]) -> RGB:
    """A second pattern colour: ``base`` darkened or lightened by a random factor."""
    factor = rng.uniform(*contrast)
    if rng.random() < 0.5:
        factor = 1.0 / factor
    return tuple(float(min(1.0, c * factor)) for c in base)  # type: ignore[return-value]


def _material(rng: np.random.Generator, base: RGB, other: RGB, pattern: str, tile: float, grain: float) -> Material:
    return Material(base, other, pattern, tile, grain, offset=(float(rng.uniform(0, 50)), float(rng.uniform(0, 50))))


def sample_material(rng: np.random.Generator, surface: Surface) -> Material:
    """A plausible random material for one kind of surface."""
    if surface == "floor":
        kind = rng.choice(["tiles", "wood", "carpet", "plaster", "checker"], p=[0.25, 0.35, 0.25, 0.1, 0.05])
        if kind == "tiles":
            base = random_color(rng, (0.0, 1.0), (0.0, 0.25), (0.4, 0.95))
            grout = _pair(rng, base, (1.3, 2.5))
            return _material(rng, base, grout, "tiles", rng.uniform(0.2, 0.6), rng.uniform(0.02, 0.1))
        if kind == "wood":
            return sample_material(rng, "wood")
        if kind == "carpet":
            base = random_color(rng, (0.0, 1.0), (0.05, 0.45), (0.2, 0.7))
            return _material(rng, base, _pair(rng, base, (1.2, 1.8)), "carpet", rng.uniform(0.3, 1.5), rng.uniform(0.1, 0.3))
        if kind == "checker":
            base = random_color(rng, (0.0, 1.0), (0.0, 0.3), (0.3, 0.9))
            return _material(rng, base, _pair(rng, base, (1.5, 3.0)), "checker", rng.uniform(0.25, 0.5), rng.uniform(0.02, 0.1))
        base = random_color(rng, (0.0, 1.0), (0.0, 0.15), (0.35, 0.75))  # concrete, linoleum
        return _material(rng, base, _pair(rng, base, (1.1, 1.4)), "plaster", rng.uniform(0.5, 3.0), rng.uniform(0.05, 0.2))
    if surface == "wall":
        base = random_color(rng, (0.0, 1.0), (0.0, 0.3), (0.55, 0.97))
        pattern = str(rng.choice(["plain", "plaster", "stripes", "tiles", "wood"], p=[0.4, 0.35, 0.1, 0.1, 0.05]))
        if pattern == "wood":
            return sample_material(rng, "wood")
        tile = {"plain": 1.0, "plaster": rng.uniform(1.0, 4.0), "stripes": rng.uniform(0.05, 0.3), "tiles": rng.uniform(0.1, 0.3)}[pattern]
        contrast = (1.3, 2.0) if pattern == "tiles" else (1.05, 1.3)
        return _material(rng, base, _pair(rng, base, contrast), pattern, tile, rng.uniform(0.02, 0.1))
    if surface == "ceiling":
        base = random_color(rng, (0.0, 1.0), (0.0, 0.08), (0.8, 1.0))
        if rng.random() < 0.3:  # office grid ceiling
            return _material(rng, base, _pair(rng, base, (1.3, 1.8)), "tiles", 0.6, rng.uniform(0.02, 0.08))
        return _material(rng, base, _pair(rng, base, (1.03, 1.15)), "plaster", rng.uniform(1.0, 3.0), rng.uniform(0.01, 0.05))
    if surface == "wood":
        base = random_color(rng, (0.03, 0.12), (0.25, 0.75), (0.25, 0.85))
        return _material(rng, base, _pair(rng, base, (1.2, 1.9)), "wood", rng.uniform(0.08, 0.3), rng.uniform(0.05, 0.2))
    if surface == "painted":
        base = random_color(rng, (0.0, 1.0), (0.0, 0.6), (0.15, 0.95))
        return _material(rng, base, _pair(rng, base, (1.02, 1.15)), "plaster", rng.uniform(0.5, 2.0), rng.uniform(0.0, 0.08))
    if surface == "fabric":
        base = random_color(rng, (0.0, 1.0), (0.05, 0.6), (0.15, 0.85))
        pattern = "stripes" if rng.random() < 0.15 else "fabric"
        tile = rng.uniform(0.03, 0.15) if pattern == "stripes" else rng.uniform(0.3, 1.0)
        return _material(rng, base, _pair(rng, base, (1.15, 1.6)), pattern, tile, rng.uniform(0.05, 0.2))
    if surface == "metal":
        base = random_color(rng, (0.0, 1.0), (0.0, 0.1), (0.1, 0.8))
        return _material(rng, base, _pair(rng, base, (1.05, 1.2)), "plain", 1.0, rng.uniform(0.0, 0.05))
    if surface == "stone":
        base = random_color(rng, (0.0, 1.0), (0.0, 0.2), (0.1, 0.95))
        return _material(rng, base, _pair(rng, base, (1.2, 1.8)), "plaster", rng.uniform(0.1, 0.4), rng.uniform(0.05, 0.2))
    if surface == "cardboard":
        base = random_color(rng, (0.07, 0.11), (0.35, 0.6), (0.45, 0.8))
        return _material(rng, base, _pair(rng, base, (1.05, 1.2)), "plaster", rng.uniform(0.2, 0.6), rng.uniform(0.05, 0.15))
    base = random_color(rng, (0.0, 1.0), (0.3, 1.0), (0.3, 1.0))  # clutter: books, balls, bottles, toys
    pattern = str(rng.choice(["plain", "stripes", "checker", "plaster"], p=[0.55, 0.15, 0.1, 0.2]))
    other = random_color(rng, (0.0, 1.0), (0.0, 1.0), (0.5, 1.0))
    return _material(rng, base, other, pattern, rng.uniform(0.03, 0.15), rng.uniform(0.0, 0.1))


def _picture(rng: np.random.Generator, lo: tuple[float, float], hi: tuple[float, float]) -> Decal:
    colors = tuple(random_color(rng, (0.0, 1.0), (0.2, 1.0), (0.1, 1.0)) for _ in range(3))
    frame_color = random_color(rng, (0.0, 1.0), (0.0, 0.5), (0.02, 0.95))
    kind = "poster" if rng.random() < 0.5 else "picture"
    return Decal(kind, lo, hi, colors, float(rng.uniform(0.0, 0.05)), frame_color)  # type: ignore[arg-type]


def _window(rng: np.random.Generator, lo: tuple[float, float], hi: tuple[float, float]) -> Decal:
    gain = rng.uniform(4.0, 12.0)  # far above any albedo: a blown-out window once shaded
    sky = tuple(gain * c for c in random_color(rng, (0.5, 0.65), (0.0, 0.35), (0.8, 1.0)))
    outside = tuple(gain * c for c in random_color(rng, (0.1, 0.4), (0.1, 0.5), (0.2, 0.6)))
    frame_color = random_color(rng, (0.0, 1.0), (0.0, 0.1), (0.5, 1.0))
    return Decal("window", lo, hi, (sky, outside, sky), float(rng.uniform(0.04, 0.08)), frame_color)  # type: ignore[arg-type]


def _door(rng: np.random.Generator, lo: tuple[float, float], hi: tuple[float, float]) -> Decal:
    panel = sample_material(rng, "wood" if rng.random() < 0.5 else "painted").color_a
    handle = random_color(rng, (0.0, 1.0), (0.0, 0.1), (0.3, 0.9))
    frame_color = random_color(rng, (0.0, 1.0), (0.0, 0.2), (0.4, 1.0))
    return Decal("door", lo, hi, (panel, handle, panel), 0.05, frame_color)


def sample_wall_decals(rng: np.random.Generator, wall_length: float, wall_height: float) -> tuple[Decal, ...]:
    """Pictures, posters, a window or a door for one wall (u along the wall, v the height above the floor)."""
    decals: list[Decal] = []
    spans: list[tuple[float, float]] = []
    wanted = ["door"] * int(rng.random() < 0.2) + ["window"] * int(rng.integers(0, 3) if rng.random() < 0.5 else 0) \
        + ["picture"] * int(rng.integers(0, 4))
    for kind in wanted:
        for _ in range(10):
            if kind == "door":
                w, h, bottom = rng.uniform(0.75, 0.95), min(rng.uniform(1.95, 2.15), wall_height - 0.1), 0.0
            elif kind == "window":
                w, h = rng.uniform(0.6, 2.2), rng.uniform(0.8, min(1.8, wall_height - 1.1))
                bottom = rng.uniform(0.6, max(0.65, wall_height - h - 0.25))
            else:
                w, h = rng.uniform(0.25, 1.2), rng.uniform(0.25, 1.0)
                bottom = rng.uniform(0.9, max(0.95, min(1.8, wall_height - h - 0.2)))
            if w + 2 * DECAL_GAP_M > wall_length or h <= 0.2:
                break
            u0 = rng.uniform(DECAL_GAP_M, wall_length - w - DECAL_GAP_M)
            if all(u0 + w + DECAL_GAP_M <= a or u0 >= b + DECAL_GAP_M for a, b in spans):
                spans.append((u0, u0 + w))
                lo, hi = (float(u0), float(bottom)), (float(u0 + w), float(bottom + h))
                decals.append({"door": _door, "window": _window, "picture": _picture}[kind](rng, lo, hi))
                break
    return tuple(decals)


def sample_ceiling_panels(rng: np.random.Generator, length: float, width: float) -> tuple[Decal, ...]:
    """Office light panels (0.6 x 0.6 or 0.6 x 1.2 m) on a regular grid of the ceiling, or none."""
    if rng.random() < 0.6 or min(length, width) < 3.0:
        return ()
    glow = tuple(rng.uniform(5.0, 10.0) * c for c in random_color(rng, (0.1, 0.6), (0.0, 0.08), (0.9, 1.0)))
    panel_w, panel_d = 0.6, 0.6 if rng.random() < 0.5 else 1.2
    pitch = rng.uniform(2.0, 3.0)
    panels = []
    for x in np.arange(pitch / 2, length - panel_w, pitch):
        for y in np.arange(pitch / 2, width - panel_d, pitch):
            panels.append(Decal("panel", (float(x), float(y)), (float(x + panel_w), float(y + panel_d)),
                                (glow, glow, glow), 0.02, (0.6, 0.6, 0.6)))  # type: ignore[arg-type]
    return tuple(panels)
