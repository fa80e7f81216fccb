"""Small objects and clutter, all of class ball: books, boxes, bottles, cups and cans, balls, potted plants.

``on_support`` fills a furniture surface (rows of books on bookcase boards; a few mixed items on tops);
``floor_item`` makes one item standing on the floor at a given spot (the caller keeps it clear of the camera).
"""
from __future__ import annotations

from dataclasses import replace

import numpy as np

from mtl_perception.data.decor import sample_material
from mtl_perception.data.furniture import Support
from mtl_perception.data.geometry import Box, Cylinder, Primitive, Sphere
from mtl_perception.data.synth_classes import SynthClass

BALL = int(SynthClass.BALL)
ITEM_TRIES = 8
MAX_BOOK_BLOCKS = 5  # boxes of books per bookcase board
TOP_ITEMS = (0, 4)  # items on a table or cabinet top: [low, high)


def _book_row(rng: np.random.Generator, support: Support) -> list[Primitive]:
    """Books standing side by side from one end of a board, in blocks of equal height with a few gaps.

    A block is one box whose ``spines`` texture draws its books (one tone per spine): few primitives per row.
    """
    books: list[Primitive] = []
    height_cap = min(0.33, support.clearance - 0.01)
    if height_cap < 0.12:
        return books
    lx = -support.half_w + rng.uniform(0.0, 0.1)
    end = support.half_w * rng.uniform(-0.2, 1.0)
    while lx < end and len(books) < MAX_BOOK_BLOCKS:
        spine = rng.uniform(0.018, 0.05)
        width = spine * int(rng.integers(1, 8))
        if lx + width > support.half_w:
            break
        height = rng.uniform(0.12, height_cap)
        depth = rng.uniform(0.6, 1.0) * 2 * support.half_d
        x, y = support.to_world(lx + width / 2, -support.half_d + depth / 2)
        look = sample_material(rng, "clutter")
        material = replace(look, color_b=sample_material(rng, "clutter").color_a, pattern="spines", tile=spine,
                           offset=(float(lx + support.half_w + support.x), 0.0))
        books.append(Box((float(x), float(y), support.z + height / 2), (width / 2, depth / 2, height / 2), support.yaw, BALL, material))
        lx += width + (rng.uniform(0.02, 0.15) if rng.random() < 0.2 else 0.0)
    return books


def item(rng: np.random.Generator, x: float, y: float, z: float, room_for: float, on_floor: bool) -> tuple[list[Primitive], float]:
    """One random item standing at (x, y, z) within a radius ``room_for``; returns its parts and footprint radius."""
    kind = str(rng.choice(["box", "bottle", "cup", "ball", "books", "plant"] if not on_floor else ["box", "ball", "bin", "plant", "books"]))
    size = 2.5 if on_floor else 1.0
    if kind == "box":
        half = (rng.uniform(0.04, 0.15) * size, rng.uniform(0.04, 0.15) * size, rng.uniform(0.03, 0.12) * size)
        half = tuple(min(h, room_for / 1.5) for h in half[:2]) + (half[2],)
        parts: list[Primitive] = [Box((x, y, z + half[2]), half, float(rng.uniform(0, np.pi)), BALL, sample_material(rng, "cardboard"))]
        return parts, float(np.hypot(half[0], half[1]))
    if kind == "bottle":
        radius, height, neck = rng.uniform(0.025, 0.045), rng.uniform(0.15, 0.28), rng.uniform(0.04, 0.08)
        material = sample_material(rng, "clutter")
        return [Cylinder(x, y, radius, z, z + height, BALL, material),
                Cylinder(x, y, radius * 0.35, z + height, z + height + neck, BALL, material)], radius
    if kind in ("cup", "bin"):
        radius = rng.uniform(0.035, 0.06) if kind == "cup" else rng.uniform(0.12, 0.2)
        height = rng.uniform(0.07, 0.14) if kind == "cup" else rng.uniform(0.25, 0.45)
        return [Cylinder(x, y, radius, z, z + height, BALL, sample_material(rng, "clutter"))], radius
    if kind == "ball":
        radius = min(rng.uniform(0.08, 0.35) if on_floor else rng.uniform(0.03, 0.1), room_for)
        return [Sphere((x, y, z + radius), radius, BALL, sample_material(rng, "clutter"))], radius
    if kind == "books":
        parts, z_top, yaw = [], z, rng.uniform(0.0, np.pi)
        w, d = rng.uniform(0.12, 0.2), rng.uniform(0.17, 0.28)
        for _ in range(int(rng.integers(1, 5))):
            t = rng.uniform(0.015, 0.05)
            parts.append(Box((x, y, z_top + t / 2), (w / 2, d / 2, t / 2), float(yaw + rng.uniform(-0.2, 0.2)), BALL, sample_material(rng, "clutter")))
            z_top += t
        return parts, float(np.hypot(w, d)) / 2
    pot_r = rng.uniform(0.06, 0.12) * (1.6 if on_floor else 1.0)  # plant: a pot and a round crown
    pot_h = pot_r * rng.uniform(1.0, 1.6)
    crown = pot_r * rng.uniform(1.2, 2.2)
    foliage = sample_material(rng, "fabric")
    leaves = replace(foliage, color_a=tuple(c * f for c, f in zip(foliage.color_a, (0.3, 0.9, 0.3))), pattern="plaster", tile=0.1, grain=0.3)
    return [Cylinder(x, y, pot_r, z, z + pot_h, BALL, sample_material(rng, "clutter")),
            Sphere((x, y, z + pot_h + crown * 0.8), crown, BALL, leaves)], crown


def on_support(rng: np.random.Generator, support: Support) -> list[Primitive]:
    """Clutter on a furniture surface: a row of books on a board, a few items elsewhere."""
    if support.shelf:
        parts = _book_row(rng, support) if rng.random() < 0.8 else []
        if rng.random() < 0.3 and support.clearance > 0.12:
            x, y = support.to_world(support.half_w * rng.uniform(0.3, 0.8), 0.0)
            parts += item(rng, float(x), float(y), support.z, min(support.half_d, 0.1), on_floor=False)[0]
        return parts
    parts: list[Primitive] = []
    taken: list[tuple[float, float, float]] = []
    for _ in range(int(rng.integers(*TOP_ITEMS))):
        for _ in range(ITEM_TRIES):
            margin = 0.05
            if support.half_w <= margin or support.half_d <= margin:
                return parts
            lx, ly = rng.uniform(-support.half_w + margin, support.half_w - margin), rng.uniform(-support.half_d + margin, support.half_d - margin)
            room_for = min(support.half_w - abs(lx), support.half_d - abs(ly))
            if any(np.hypot(lx - ox, ly - oy) < r + 0.1 for ox, oy, r in taken):
                continue
            x, y = support.to_world(lx, ly)
            new, radius = item(rng, float(x), float(y), support.z, room_for, on_floor=False)
            if radius > room_for or max(p.hull_points()[:, 2].max() for p in new) > support.z + support.clearance:
                continue
            parts += new
            taken.append((lx, ly, radius))
            break
    return parts

