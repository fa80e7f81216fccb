"""Furniture built from the renderer's primitives, each with the class id whose meaning fits it.

A design is built in its own frame: footprint centred on the origin, width along x, depth along y, the
back (the side that goes against a wall) toward +y, the floor at z = 0. ``Design.placed`` moves it into
the room. Besides its visible parts a design carries occluders (one or two coarse boxes or cylinders that
cast its shadows and darken the room surfaces next to it) and supports (surfaces clutter can stand on).

Class of every design (the 7 synthetic classes stay as they are; a shape takes the class whose meaning
fits, so that "cabinet" is closed-bodied furniture and "table" is furniture raised on legs):

| design | parts | class |
|---|---|---|
| cabinet (dresser, sideboard, nightstand, drawers) | plinth, body, top, drawer fronts (painted handles) | cabinet |
| wardrobe | plinth, body, doors (painted handles) | cabinet |
| shelf (bookcase with openings) | sides, top, bottom, back, boards | cabinet |
| counter (kitchen base units) | plinth, body, worktop, door fronts (painted handles) | cabinet |
| bed | base, mattress, duvet, headboard, pillows | cabinet |
| sofa, armchair | base, seat cushions, back, arms | cabinet |
| table (dining, coffee) | top, four legs | table |
| round_table | round top, pedestal, foot | table |
| desk | top, side panels or a drawer pedestal and legs, modesty panel | table |
| chair | seat, four legs, back posts, backrest | table |
| stool | round seat, legs | table |
| pillar (round or square column) | floor to ceiling | pillar |

Small objects (books, boxes, bottles, cups, balls, plants) are ``clutter``: class ball. Pictures, posters,
windows and doors are decals on the wall (``decor``): class wall. Ceiling light panels: class ceiling.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace

import numpy as np

from mtl_perception.data.decor import sample_material
from mtl_perception.data.geometry import Box, Cylinder, Primitive
from mtl_perception.data.materials import Decal, Material
from mtl_perception.data.synth_classes import SynthClass

CABINET, TABLE, PILLAR = int(SynthClass.CABINET), int(SynthClass.TABLE), int(SynthClass.PILLAR)
FRONT_M = 0.012  # thickness of drawer and door fronts proud of a carcass
FRONT_GAP_M = 0.006  # gap between neighbouring fronts


@dataclass(frozen=True)
class Support:
    """A horizontal rectangle clutter can stand on: centre (x, y) at height z, half extents, yaw, free height."""

    x: float
    y: float
    z: float
    half_w: float
    half_d: float
    yaw: float = 0.0
    clearance: float = 0.6  # free height above the surface
    shelf: bool = False  # a bookcase board (books stand in rows there)

    def to_world(self, lx: np.ndarray | float, ly: np.ndarray | float) -> tuple:
        """World (x, y) of points given in the support's own frame."""
        c, s = np.cos(self.yaw), np.sin(self.yaw)
        return self.x + c * lx - s * ly, self.y + s * lx + c * ly


@dataclass(frozen=True)
class Design:
    """A piece of furniture in its own frame (see the module docstring)."""

    parts: tuple[Primitive, ...]
    half_w: float
    half_d: float
    occluders: tuple[Primitive, ...]
    supports: tuple[Support, ...] = ()
    against_wall: bool = False

    def placed(self, x: float, y: float, yaw: float) -> "Design":
        """The design rotated by ``yaw`` about z and moved so its footprint centre is at (x, y)."""
        def move(p: Primitive) -> Primitive:
            return place_primitive(p, x, y, yaw)
        supports = tuple(replace(s, x=float(x + np.cos(yaw) * s.x - np.sin(yaw) * s.y),
                                 y=float(y + np.sin(yaw) * s.x + np.cos(yaw) * s.y), yaw=s.yaw + yaw) for s in self.supports)
        return replace(self, parts=tuple(map(move, self.parts)), occluders=tuple(map(move, self.occluders)), supports=supports)


def place_primitive(prim: Primitive, x: float, y: float, yaw: float) -> Primitive:
    """A primitive rotated by ``yaw`` about the z axis through the origin, then moved by (x, y)."""
    c, s = np.cos(yaw), np.sin(yaw)
    if isinstance(prim, Box):
        cx, cy, cz = prim.center
        return replace(prim, center=(float(x + c * cx - s * cy), float(y + s * cx + c * cy), cz), yaw=prim.yaw + yaw)
    if isinstance(prim, Cylinder):
        return replace(prim, x=float(x + c * prim.x - s * prim.y), y=float(y + s * prim.x + c * prim.y))
    cx, cy, cz = prim.center
    return replace(prim, center=(float(x + c * cx - s * cy), float(y + s * cx + c * cy), cz))


def slab(x0: float, x1: float, y0: float, y1: float, z0: float, z1: float, label: int, material: Material) -> Box:
    """An axis-aligned box from its extents."""
    return Box(((x0 + x1) / 2, (y0 + y1) / 2, (z0 + z1) / 2), ((x1 - x0) / 2, (y1 - y0) / 2, (z1 - z0) / 2), 0.0, label, material)


def _with_handle(material: Material, handle: Material, width: float, height: float, vertical: bool, right: bool) -> Material:
    """``material`` with a handle painted on a front of (width, height): a bar near its top, or near one edge."""
    if vertical:
        u = width - 0.06 if right else 0.06
        lo, hi = (u - 0.008, height / 2 - 0.06), (u + 0.008, height / 2 + 0.06)
    else:
        v = height - min(0.06, height / 3)
        lo, hi = (width / 2 - 0.06, v - 0.008), (width / 2 + 0.06, v + 0.008)
    return replace(material, decals=(Decal("panel", lo, hi, (handle.color_a,) * 3, 0.0),))


def _fronts(columns: int, rows: int, x0: float, x1: float, z0: float, z1: float, y_front: float, material: Material,
            handles: Material, label: int, vertical_handles: bool) -> list[Primitive]:
    """A grid of drawer or door fronts proud of the carcass face at ``y_front``, each with a painted handle.

    A front's texture coordinates on its face run from its lower left corner, so one decal serves all fronts.
    """
    parts: list[Primitive] = []
    widths, heights = (x1 - x0) / columns, (z1 - z0) / rows
    front_w, front_h = widths - FRONT_GAP_M, heights - FRONT_GAP_M
    looks = [_with_handle(material, handles, front_w, front_h, vertical_handles, right) for right in (True, False)]
    for col in range(columns):
        for row in range(rows):
            fx0, fz0 = x0 + col * widths + FRONT_GAP_M / 2, z0 + row * heights + FRONT_GAP_M / 2
            look = looks[col % 2] if vertical_handles else looks[0]
            parts.append(slab(fx0, fx0 + front_w, y_front - FRONT_M, y_front, fz0, fz0 + front_h, label, look))
    return parts


def _bounding(half_w: float, half_d: float, z0: float, z1: float) -> Box:
    return slab(-half_w, half_w, -half_d, half_d, z0, z1, CABINET, Material())


def cabinet(rng: np.random.Generator, room_height: float) -> Design:
    """A dresser, sideboard or nightstand: plinth, carcass, overhanging top, rows of drawers."""
    w, d, h = rng.uniform(0.4, 1.6), rng.uniform(0.35, 0.6), rng.uniform(0.45, 1.1)
    body, handles = sample_material(rng, str(rng.choice(["wood", "painted"]))), sample_material(rng, "metal")
    hw, hd, plinth, top = w / 2, d / 2, rng.uniform(0.04, 0.1), rng.uniform(0.02, 0.04)
    parts: list[Primitive] = [slab(-hw + 0.02, hw - 0.02, -hd + 0.04, hd, 0.0, plinth, CABINET, body),
                              slab(-hw, hw, -hd, hd, plinth, h - top, CABINET, body),
                              slab(-hw - 0.015, hw + 0.015, -hd - 0.015 - FRONT_M, hd, h - top, h, CABINET, body)]
    columns = 1 if w < 0.9 else 2
    parts += _fronts(columns, int(rng.integers(1, 5)), -hw + 0.01, hw - 0.01, plinth + 0.01, h - top - 0.01, -hd,
                     body, handles, CABINET, vertical_handles=False)
    return Design(tuple(parts), hw, hd, (_bounding(hw, hd, 0.0, h),), (Support(0.0, 0.0, h, hw, hd),), rng.random() < 0.8)


def wardrobe(rng: np.random.Generator, room_height: float) -> Design:
    """A tall cupboard with two or three doors."""
    w, d = rng.uniform(0.8, 2.0), rng.uniform(0.5, 0.65)
    h = min(rng.uniform(1.8, 2.3), room_height - 0.1)
    body, handles = sample_material(rng, str(rng.choice(["wood", "painted"]))), sample_material(rng, "metal")
    hw, hd, plinth = w / 2, d / 2, 0.08
    parts: list[Primitive] = [slab(-hw + 0.02, hw - 0.02, -hd + 0.04, hd, 0.0, plinth, CABINET, body),
                              slab(-hw, hw, -hd, hd, plinth, h, CABINET, body)]
    parts += _fronts(2 if w < 1.3 else 3, 1, -hw + 0.01, hw - 0.01, plinth + 0.01, h - 0.02, -hd, body, handles,
                     CABINET, vertical_handles=True)
    return Design(tuple(parts), hw, hd, (_bounding(hw, hd, 0.0, h),), (), True)


def shelf(rng: np.random.Generator, room_height: float) -> Design:
    """A bookcase: two sides, top, bottom, back panel and boards, open at the front."""
    w, d = rng.uniform(0.6, 1.6), rng.uniform(0.25, 0.4)
    h = min(rng.uniform(0.8, 2.1), room_height - 0.2)
    material = sample_material(rng, str(rng.choice(["wood", "painted"])))
    hw, hd, t = w / 2, d / 2, rng.uniform(0.018, 0.03)
    base = rng.uniform(0.04, 0.1)
    parts: list[Primitive] = [slab(-hw, -hw + t, -hd, hd, 0.0, h, CABINET, material),
                              slab(hw - t, hw, -hd, hd, 0.0, h, CABINET, material),
                              slab(-hw + t, hw - t, -hd, hd, h - t, h, CABINET, material),
                              slab(-hw + t, hw - t, -hd, hd, 0.0, base, CABINET, material),
                              slab(-hw + t, hw - t, hd - 0.01, hd, base, h - t, CABINET, material)]
    count = max(1, int(round((h - base - t) / rng.uniform(0.3, 0.4))))
    spacing = (h - base - t) / count
    supports = []
    for level in range(count):
        z = base + level * spacing
        if level > 0:
            parts.append(slab(-hw + t, hw - t, -hd, hd - 0.01, z - t, z, CABINET, material))
        supports.append(Support(0.0, -0.005, z, hw - t, hd - 0.01, 0.0, spacing - t - 0.01, shelf=True))
    supports.append(Support(0.0, 0.0, h, hw, hd))
    return Design(tuple(parts), hw, hd, (_bounding(hw, hd, 0.0, h),), tuple(supports), True)


def counter(rng: np.random.Generator, room_height: float) -> Design:
    """Kitchen base units: plinth, carcass, a worktop with an overhang, door fronts with handles."""
    w, d, h = rng.uniform(1.0, 3.0), rng.uniform(0.55, 0.65), rng.uniform(0.86, 0.92)
    body, handles = sample_material(rng, str(rng.choice(["wood", "painted"]))), sample_material(rng, "metal")
    worktop = sample_material(rng, str(rng.choice(["stone", "wood"])))
    hw, hd, plinth, top = w / 2, d / 2, 0.1, rng.uniform(0.03, 0.045)
    parts: list[Primitive] = [slab(-hw + 0.01, hw - 0.01, -hd + 0.06, hd, 0.0, plinth, CABINET, body),
                              slab(-hw, hw, -hd, hd, plinth, h - top, CABINET, body),
                              slab(-hw, hw, -hd - 0.03, hd, h - top, h, CABINET, worktop)]
    parts += _fronts(max(1, int(round(w / 0.5))), 1, -hw + 0.005, hw - 0.005, plinth + 0.005, h - top - 0.005, -hd,
                     body, handles, CABINET, vertical_handles=True)
    return Design(tuple(parts), hw, hd + 0.015, (_bounding(hw, hd, 0.0, h),), (Support(0.0, -0.015, h, hw, hd),), True)


def bed(rng: np.random.Generator, room_height: float) -> Design:
    """A single or double bed with its headboard against a wall."""
    w = rng.uniform(0.9, 1.0) if rng.random() < 0.4 else rng.uniform(1.4, 1.8)
    length = rng.uniform(1.95, 2.15)
    frame, linen = sample_material(rng, str(rng.choice(["wood", "fabric"]))), sample_material(rng, "fabric")
    duvet, pillow = sample_material(rng, "fabric"), sample_material(rng, "fabric")
    hw, hl = w / 2, length / 2
    base, mattress = rng.uniform(0.2, 0.35), rng.uniform(0.18, 0.26)
    head_t, head_h = rng.uniform(0.04, 0.08), rng.uniform(0.8, 1.2)
    top = base + mattress
    parts: list[Primitive] = [slab(-hw, hw, -hl, hl - head_t, 0.0, base, CABINET, frame),
                              slab(-hw + 0.02, hw - 0.02, -hl + 0.02, hl - head_t, base, top, CABINET, linen),
                              slab(-hw - 0.03, hw + 0.03, -hl - 0.03, hl * 0.35, top - 0.12, top + 0.04, CABINET, duvet),
                              slab(-hw - 0.02, hw + 0.02, hl - head_t, hl, 0.0, head_h, CABINET, frame)]
    pillows = 1 if w < 1.2 else 2
    pillow_w = (w - 0.1) / pillows
    for index in range(pillows):
        x0 = -hw + 0.05 + index * pillow_w
        parts.append(slab(x0 + 0.02, x0 + pillow_w - 0.02, hl - head_t - 0.4, hl - head_t - 0.02, top, top + 0.12, CABINET, pillow))
    return Design(tuple(parts), hw + 0.03, hl + 0.015, (_bounding(hw, hl, 0.0, top),), (), True)


def sofa(rng: np.random.Generator, room_height: float) -> Design:
    """A sofa (two or three seats) or an armchair: base, seat cushions, back and arms."""
    seats = int(rng.choice([1, 2, 3], p=[0.3, 0.35, 0.35]))
    arm = rng.uniform(0.1, 0.25)
    w, d = seats * rng.uniform(0.55, 0.7) + 2 * arm, rng.uniform(0.8, 0.95)
    cover = sample_material(rng, "fabric")
    hw, hd = w / 2, d / 2
    base, seat, back_t, back_h, arm_h = rng.uniform(0.18, 0.28), rng.uniform(0.4, 0.46), rng.uniform(0.15, 0.25), rng.uniform(0.75, 0.9), rng.uniform(0.55, 0.65)
    parts: list[Primitive] = [slab(-hw + arm, hw - arm, -hd, hd - back_t, 0.0, base, CABINET, cover),
                              slab(-hw, hw, hd - back_t, hd, 0.0, back_h, CABINET, cover),
                              slab(-hw, -hw + arm, -hd, hd - back_t, 0.0, arm_h, CABINET, cover),
                              slab(hw - arm, hw, -hd, hd - back_t, 0.0, arm_h, CABINET, cover)]
    cushion = (w - 2 * arm) / seats
    for index in range(seats):
        x0 = -hw + arm + index * cushion
        parts.append(slab(x0 + 0.005, x0 + cushion - 0.005, -hd - 0.01, hd - back_t, base, seat, CABINET, cover))
    occluders = (_bounding(hw, hd, 0.0, seat), slab(-hw, hw, hd - back_t, hd, seat, back_h, CABINET, cover))
    return Design(tuple(parts), hw, hd, occluders, (), rng.random() < 0.7)


def _legs(half_w: float, half_d: float, inset: float, leg: float, height: float, label: int, material: Material) -> list[Primitive]:
    """Four square legs under the corners of a rectangle."""
    return [slab(sx * (half_w - inset) - leg / 2, sx * (half_w - inset) + leg / 2,
                 sy * (half_d - inset) - leg / 2, sy * (half_d - inset) + leg / 2, 0.0, height, label, material)
            for sx in (-1, 1) for sy in (-1, 1)]


def table(rng: np.random.Generator, room_height: float) -> Design:
    """A dining table or a low coffee table: a top on four legs."""
    coffee = rng.random() < 0.3
    w, d = (rng.uniform(0.7, 1.3), rng.uniform(0.45, 0.7)) if coffee else (rng.uniform(0.8, 1.8), rng.uniform(0.6, 1.0))
    h = rng.uniform(0.35, 0.5) if coffee else rng.uniform(0.7, 0.78)
    material = sample_material(rng, str(rng.choice(["wood", "painted", "stone"], p=[0.6, 0.3, 0.1])))
    hw, hd, thick = w / 2, d / 2, rng.uniform(0.025, 0.06)
    top = slab(-hw, hw, -hd, hd, h - thick, h, TABLE, material)
    parts = [top] + _legs(hw, hd, rng.uniform(0.03, 0.1), rng.uniform(0.035, 0.08), h - thick, TABLE, material)
    return Design(tuple(parts), hw, hd, (top,), (Support(0.0, 0.0, h, hw, hd),))


def round_table(rng: np.random.Generator, room_height: float) -> Design:
    """A round table on a central pedestal and foot."""
    radius, h = rng.uniform(0.35, 0.6), rng.uniform(0.7, 0.76)
    material = sample_material(rng, str(rng.choice(["wood", "painted", "stone"])))
    foot = sample_material(rng, "metal")
    top = Cylinder(0.0, 0.0, radius, h - rng.uniform(0.025, 0.05), h, TABLE, material)
    parts = (top, Cylinder(0.0, 0.0, rng.uniform(0.03, 0.06), 0.02, h - 0.02, TABLE, foot),
             Cylinder(0.0, 0.0, rng.uniform(0.22, 0.32), 0.0, 0.02, TABLE, foot))
    half = radius / np.sqrt(2.0)
    return Design(parts, radius, radius, (top,), (Support(0.0, 0.0, h, half, half),))


def desk(rng: np.random.Generator, room_height: float) -> Design:
    """A desk: a top on two side panels, or on a drawer pedestal and two legs; a modesty panel at the back."""
    w, d, h = rng.uniform(1.0, 1.8), rng.uniform(0.6, 0.8), rng.uniform(0.72, 0.76)
    material, handles = sample_material(rng, str(rng.choice(["wood", "painted"]))), sample_material(rng, "metal")
    hw, hd, thick, t = w / 2, d / 2, rng.uniform(0.025, 0.04), rng.uniform(0.02, 0.03)
    top = slab(-hw, hw, -hd, hd, h - thick, h, TABLE, material)
    parts: list[Primitive] = [top, slab(-hw + 0.05, hw - 0.05, hd - 0.1, hd - 0.1 + t, h * 0.4, h - thick, TABLE, material)]
    if rng.random() < 0.5:
        parts += [slab(-hw + 0.02, -hw + 0.02 + t, -hd + 0.03, hd - 0.03, 0.0, h - thick, TABLE, material),
                  slab(hw - 0.02 - t, hw - 0.02, -hd + 0.03, hd - 0.03, 0.0, h - thick, TABLE, material)]
    else:
        pedestal_w = rng.uniform(0.35, 0.45)
        x0 = hw - 0.02 - pedestal_w
        parts.append(slab(x0, hw - 0.02, -hd + 0.05, hd - 0.05, 0.0, h - thick, TABLE, material))
        parts += _fronts(1, 3, x0 + 0.01, hw - 0.03, 0.02, h - thick - 0.01, -hd + 0.05, material, handles, TABLE, False)
        leg = rng.uniform(0.035, 0.06)
        parts += [slab(-hw + 0.04, -hw + 0.04 + leg, sy * (hd - 0.04) - leg / 2, sy * (hd - 0.04) + leg / 2, 0.0, h - thick,
                       TABLE, material) for sy in (-1, 1)]
    return Design(tuple(parts), hw, hd, (top,), (Support(0.0, 0.0, h, hw, hd),), rng.random() < 0.6)


def chair(rng: np.random.Generator, room_height: float) -> Design:
    """A four-legged chair with a backrest, or an office chair on a column and a round foot."""
    w, d, seat_h = rng.uniform(0.4, 0.5), rng.uniform(0.4, 0.5), rng.uniform(0.42, 0.48)
    frame = sample_material(rng, str(rng.choice(["wood", "metal", "painted"])))
    cover = sample_material(rng, "fabric") if rng.random() < 0.6 else frame
    hw, hd, thick = w / 2, d / 2, rng.uniform(0.03, 0.07)
    back_top = seat_h + rng.uniform(0.35, 0.5)
    seat = slab(-hw, hw, -hd, hd, seat_h - thick, seat_h, TABLE, cover)
    parts: list[Primitive] = [seat, slab(-hw + 0.01, hw - 0.01, hd - 0.04, hd - 0.01, back_top - rng.uniform(0.15, 0.35), back_top, TABLE, cover)]
    if rng.random() < 0.35:  # office chair
        parts += [Cylinder(0.0, 0.0, 0.025, 0.05, seat_h - thick, TABLE, frame), Cylinder(0.0, 0.0, rng.uniform(0.25, 0.32), 0.0, 0.05, TABLE, frame),
                  slab(-0.02, 0.02, hd - 0.05, hd - 0.02, seat_h, back_top - 0.15, TABLE, frame)]
    else:
        leg = rng.uniform(0.025, 0.045)
        parts += _legs(hw, hd, leg / 2 + 0.005, leg, seat_h - thick, TABLE, frame)
        parts += [slab(sx * (hw - 0.005) - leg / 2, sx * (hw - 0.005) + leg / 2, hd - 0.045, hd - 0.045 + leg, seat_h, back_top,
                       TABLE, frame) for sx in (-1, 1)]
    return Design(tuple(parts), hw, hd, (seat,), ())


def stool(rng: np.random.Generator, room_height: float) -> Design:
    """A round stool or bar stool on three or four legs."""
    radius, h = rng.uniform(0.15, 0.2), rng.uniform(0.45, 0.78)
    material, legs = sample_material(rng, str(rng.choice(["wood", "fabric", "painted"]))), sample_material(rng, "metal")
    seat = Cylinder(0.0, 0.0, radius, h - rng.uniform(0.03, 0.06), h, TABLE, material)
    count = int(rng.integers(3, 5))
    angles = rng.uniform(0.0, 2 * np.pi) + np.arange(count) * 2 * np.pi / count
    parts = [seat] + [Cylinder(float(0.75 * radius * np.cos(a)), float(0.75 * radius * np.sin(a)), 0.014, 0.0, seat.z_min, TABLE, legs)
                      for a in angles]
    return Design(tuple(parts), radius, radius, (seat,), (Support(0.0, 0.0, h, radius * 0.6, radius * 0.6),))


def pillar(rng: np.random.Generator, room_height: float) -> Design:
    """A structural column from floor to ceiling, round or square."""
    material = sample_material(rng, str(rng.choice(["painted", "stone"])))
    size = rng.uniform(0.12, 0.35)
    column: Primitive = (Cylinder(0.0, 0.0, size, 0.0, room_height, PILLAR, material) if rng.random() < 0.6
                         else slab(-size, size, -size, size, 0.0, room_height, PILLAR, material))
    return Design((column,), size, size, (column,), ())


DESIGNS: dict[str, Callable[[np.random.Generator, float], Design]] = {
    "cabinet": cabinet, "wardrobe": wardrobe, "shelf": shelf, "counter": counter, "bed": bed, "sofa": sofa,
    "table": table, "round_table": round_table, "desk": desk, "chair": chair, "stool": stool, "pillar": pillar,
}
DESIGN_CLASS: dict[str, SynthClass] = {
    "cabinet": SynthClass.CABINET, "wardrobe": SynthClass.CABINET, "shelf": SynthClass.CABINET,
    "counter": SynthClass.CABINET, "bed": SynthClass.CABINET, "sofa": SynthClass.CABINET,
    "table": SynthClass.TABLE, "round_table": SynthClass.TABLE, "desk": SynthClass.TABLE,
    "chair": SynthClass.TABLE, "stool": SynthClass.TABLE, "pillar": SynthClass.PILLAR,
}
