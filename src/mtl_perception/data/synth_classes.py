"""Semantic classes of the synthetic indoor dataset (ids 0..6) and their display colours."""
from __future__ import annotations

from enum import IntEnum


class SynthClass(IntEnum):
    """Class id of every surface the synthetic renderer draws."""

    FLOOR = 0
    WALL = 1
    CEILING = 2
    CABINET = 3
    TABLE = 4
    PILLAR = 5
    BALL = 6


SYNTH_CLASS_NAMES: list[str] = [c.name.lower() for c in SynthClass]

# RGB display colour per class, index = class id.
SYNTH_PALETTE: list[list[int]] = [
    [152, 110, 62],  # floor
    [174, 199, 232],  # wall
    [240, 240, 190],  # ceiling
    [31, 119, 180],  # cabinet
    [255, 127, 14],  # table
    [148, 103, 189],  # pillar
    [214, 39, 40],  # ball
]
