"""Synthetic indoor dataset with exact ground truth: the public entry points.

``render_frame(seed, h, w)`` renders one random room from a random viewpoint; ``render_sequence`` renders a
smooth camera trajectory through one room (for bags and the demo). Both are deterministic per seed.
Rooms are bedrooms, living rooms, kitchens and offices of real sizes with furniture built from boxes,
cylinders and spheres, clutter, procedural textures, decals (pictures, windows, doors) and 2 to 4 lights
with soft shadows (``scene``, ``furniture``, ``clutter``, ``decor``, ``textures``, ``lighting``, ``raycast``).
The colour image goes through a random camera model (``sensor``: blur, noise, exposure, white balance,
vignetting, JPEG); depth, labels and normals are exact. The camera is a pinhole near NYU Depth V2's
(fx = fy = 519 px at 640x480, scaled to the render size).
"""
from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from mtl_perception.data.frame import Frame
from mtl_perception.data.geometry import Box, Camera, Cylinder, Room, Sphere, synthetic_intrinsics
from mtl_perception.data.lighting import Light
from mtl_perception.data.materials import Material
from mtl_perception.data.raycast import Scene, render_scene
from mtl_perception.data.scene import (
    object_centres,
    sample_camera,
    sample_camera_position,
    sample_room,
    sample_scene,
    sample_trajectory,
)
from mtl_perception.data.sensor import Sensor, sample_sensor
from mtl_perception.data.synth_classes import SYNTH_CLASS_NAMES, SYNTH_PALETTE, SynthClass

__all__ = [
    "SYNTH_CLASS_NAMES", "SYNTH_PALETTE", "SynthClass", "Frame", "Scene", "Camera", "Light", "Room", "Box",
    "Cylinder", "Sphere", "Material", "Sensor", "render_scene", "render_frame", "render_sequence", "synthetic_intrinsics",
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
    return render_scene(scene, camera, height, width, sensor=sample_sensor(rng), rng=rng)


def render_sequence(seed: int, count: int, height: int, width: int) -> Iterator[Frame]:
    """``count`` frames of one random room along a smooth closed camera path (about 3 cm per frame).

    Deterministic per seed; a shorter sequence is a prefix of a longer one with the same seed. One camera
    records the whole sequence: its settings are drawn once, its noise anew for every frame.
    """
    _check_size(height, width)
    if count < 0:
        raise ValueError(f"frame count must be non-negative, got {count}")
    rng = np.random.default_rng(seed)
    room = sample_room(rng)
    path = sample_trajectory(rng, room)
    scene = sample_scene(rng, room, keep_out=path.floor_points())
    sensor = sample_sensor(rng)
    for index in range(count):
        yield render_scene(scene, path.camera(index), height, width, sensor=sensor, rng=rng)
