"""Synthetic indoor dataset with exact ground truth: the public entry points.

``render_frame(seed, h, w)`` renders one random room from a random viewpoint; ``render_sequence`` renders a
smooth camera trajectory through one room (for bags and the demo). Both are deterministic per seed.
Rooms hold a floor, four walls, a ceiling, cabinets, tables, pillars and balls with procedural
textures, lit by a point light plus ambient light (see ``scene``, ``raycast`` and ``geometry``).
The camera is a pinhole near NYU Depth V2's (fx = fy = 519 px at 640x480, scaled to the render size).
"""
from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from mtl_perception.data.frame import Frame
from mtl_perception.data.geometry import Box, Camera, Cylinder, Room, Sphere, synthetic_intrinsics
from mtl_perception.data.materials import Material
from mtl_perception.data.raycast import Light, Scene, render_scene
from mtl_perception.data.scene import (
    object_centres,
    sample_camera,
    sample_camera_position,
    sample_room,
    sample_scene,
    sample_trajectory,
)
from mtl_perception.data.synth_classes import SYNTH_CLASS_NAMES, SYNTH_PALETTE, SynthClass

__all__ = [
    "SYNTH_CLASS_NAMES", "SYNTH_PALETTE", "SynthClass", "Frame", "Scene", "Camera", "Light", "Room", "Box",
    "Cylinder", "Sphere", "Material", "render_scene", "render_frame", "render_sequence", "synthetic_intrinsics",
]


def _check_size(height: int, width: int) -> None:
    if height < 1 or width < 1:
        raise ValueError(f"render size must be positive, got {height}x{width}")


def render_frame(seed: int, height: int, width: int) -> Frame:
    """One random room seen from one random viewpoint; the same seed always gives the same frame."""
    _check_size(height, width)
    rng = np.random.default_rng(seed)
    room = sample_room(rng)
    xy = sample_camera_position(rng, room)
    scene = sample_scene(rng, room, keep_out=xy[None])
    camera = sample_camera(rng, room, xy, targets=object_centres(scene))
    return render_scene(scene, camera, height, width, noise_rng=rng)


def render_sequence(seed: int, count: int, height: int, width: int) -> Iterator[Frame]:
    """``count`` frames of one random room along a smooth closed camera path (about 3 cm per frame).

    Deterministic per seed; a shorter sequence is a prefix of a longer one with the same seed.
    """
    _check_size(height, width)
    if count < 0:
        raise ValueError(f"frame count must be non-negative, got {count}")
    rng = np.random.default_rng(seed)
    room = sample_room(rng)
    path = sample_trajectory(rng, room)
    scene = sample_scene(rng, room, keep_out=path.floor_points())
    for index in range(count):
        yield render_scene(scene, path.camera(index), height, width, noise_rng=rng)
