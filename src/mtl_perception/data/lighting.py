"""Lighting of the ray caster: point and area lights, soft shadows and ambient occlusion.

Irradiance at a surface point is ambient light darkened by ambient occlusion plus, per light, a Lambertian
term with a soft distance falloff times the light's visibility. Visibility and occlusion vary slowly over
the image, so they are computed on every SHADOW_STRIDE-th pixel of every SHADOW_STRIDE-th row and
upsampled bilinearly:
- shadows: one shadow ray per low-resolution pixel and light toward a point jittered over the light's disc
  (an area light), tested against the scene's occluders (simple proxies of the furniture); averaging
  neighbouring jittered rays gives penumbrae;
- ambient occlusion: darkening near the room's edges and corners (from the distance to each room plane the
  surface is not parallel to) and near the occluders on the floor, walls and ceiling (contact shadows).
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np

from mtl_perception.data.geometry import Primitive, Room
from mtl_perception.data.textures import cell_hash

SHADOW_STRIDE = 8  # low-resolution grid of the shadow and occlusion pass, in pixels
SHADOW_OFFSET_M = 0.01  # shadow rays start this far off the surface (no self-shadowing)
CORNER_STRENGTH = 0.45  # ambient lost right at a room edge
CORNER_RADIUS_M = 0.35  # distance over which the edge darkening fades (e-folding)
CONTACT_STRENGTH = 0.5  # ambient lost right next to an occluder
CONTACT_RADIUS_M = 0.25
KELVIN_SRGB = (  # blackbody colour (sRGB, 0..255) by colour temperature: a common lighting table
    (2700.0, (255, 169, 87)), (3000.0, (255, 180, 107)), (4000.0, (255, 209, 163)),
    (5000.0, (255, 228, 206)), (6500.0, (255, 249, 253)), (8000.0, (227, 233, 255)),
)


@dataclass(frozen=True)
class Light:
    """A point light (``radius`` 0) or a spherical area light, with a soft distance falloff (linear RGB)."""

    position: tuple[float, float, float] = (0.0, 0.0, 3.0)
    color: tuple[float, float, float] = (1.0, 1.0, 1.0)
    intensity: float = 0.9  # diffuse irradiance at distance 0 for a surface facing the light
    falloff: float = 3.0  # metres at which the diffuse irradiance halves
    radius: float = 0.0  # radius of the emitting disc in metres (soft shadows); 0 = point light


def kelvin_color(kelvin: float) -> tuple[float, float, float]:
    """Linear-RGB colour of a light of colour temperature ``kelvin`` (2700..8000 K), brightest channel 1."""
    temps = np.array([t for t, _ in KELVIN_SRGB])
    srgb = np.array([c for _, c in KELVIN_SRGB], np.float64) / 255.0
    rgb = np.array([np.interp(kelvin, temps, srgb[:, channel]) for channel in range(3)]) ** 2.2
    return tuple(float(c) for c in rgb / rgb.max())  # type: ignore[return-value]


def _upsample(low: np.ndarray, height: int, width: int) -> np.ndarray:
    """Bilinear upsampling of a low-resolution map (h, w) to (height * width,) after a 3x3 box blur."""
    if low.shape == (height, width):
        return low.reshape(-1)
    smooth = cv2.blur(low, (3, 3), borderType=cv2.BORDER_REPLICATE)
    return cv2.resize(smooth, (width, height), interpolation=cv2.INTER_LINEAR).reshape(-1)


def shadow_visibility(points: np.ndarray, normals: np.ndarray, light: Light, light_index: int,
                      occluders: Sequence[Primitive]) -> np.ndarray:
    """Visibility in {0, 1} (N,) of ``light`` from surface points (3, N) with world normals (3, N)."""
    origins = points + np.float32(SHADOW_OFFSET_M) * normals
    target = np.repeat(np.asarray(light.position, np.float32)[:, None], points.shape[1], axis=1)
    if light.radius > 0:
        index = np.arange(points.shape[1])
        angle = np.float32(2.0 * np.pi) * cell_hash(index, np.full_like(index, 2 * light_index))
        radius = np.float32(light.radius) * np.sqrt(cell_hash(index, np.full_like(index, 2 * light_index + 1)))
        target[0] += radius * np.cos(angle)
        target[1] += radius * np.sin(angle)
    dirs = target - origins
    visible = np.ones(points.shape[1], np.float32)
    for occluder in occluders:
        visible[occluder.intersect(origins, dirs) < 1.0] = 0.0
    return visible


def ambient_occlusion(points: np.ndarray, normals: np.ndarray, room: Room | None, on_room: np.ndarray,
                      occluders: Sequence[Primitive]) -> np.ndarray:
    """Share of ambient light (N,) reaching surface points: room edges and occluder contact darkening."""
    ao = np.ones(len(points), np.float32)
    if room is None:
        return ao
    size = np.asarray(room.size, np.float32)
    for axis in range(3):
        facing = np.float32(1.0) - np.abs(normals[:, axis])  # parallel planes do not occlude
        for distance in (points[:, axis], size[axis] - points[:, axis]):
            ao *= np.float32(1.0) - np.float32(CORNER_STRENGTH) * facing * np.exp(-np.maximum(distance, 0.0) / np.float32(CORNER_RADIUS_M))
    room_points = points[on_room]
    contact = np.ones(len(room_points), np.float32)
    for occluder in occluders:
        contact *= np.float32(1.0) - np.float32(CONTACT_STRENGTH) * np.exp(-occluder.distance(room_points) / np.float32(CONTACT_RADIUS_M))
    ao[on_room] *= contact
    return ao


def irradiance(points: np.ndarray, normals: np.ndarray, hit: np.ndarray, on_room: np.ndarray, shape: tuple[int, int],
               lights: Sequence[Light], ambient: tuple[float, float, float], room: Room | None,
               occluders: Sequence[Primitive]) -> np.ndarray:
    """Linear irradiance (3, N) at the pixels' surface points (3, N) with world normals (N, 3).

    N = H * W pixels in row-major order; pixels whose ray hit nothing get 1.
    """
    height, width = shape
    normal_planes = np.ascontiguousarray(normals.T)
    stride = SHADOW_STRIDE if min(height, width) >= 4 * SHADOW_STRIDE else 1
    grid = np.arange(stride // 2, height, stride)[:, None] * width + np.arange(stride // 2, width, stride)[None, :]
    low = grid.reshape(-1)  # misses are included: their values are overwritten at the end
    low_points, low_normals = points[:, low], normal_planes[:, low]

    def upsampled(values: np.ndarray) -> np.ndarray:
        return _upsample(values.reshape(grid.shape), height, width)

    ao = upsampled(ambient_occlusion(low_points.T, low_normals.T, room, on_room[low], occluders))
    total = np.asarray(ambient, np.float32)[:, None] * ao[None, :]
    for index, light in enumerate(lights):
        lx, ly, lz = (np.float32(c) for c in light.position)
        dx, dy, dz = lx - points[0], ly - points[1], lz - points[2]
        dist2 = dx * dx + dy * dy + dz * dz
        facing = normal_planes[0] * dx + normal_planes[1] * dy + normal_planes[2] * dz
        diffuse = np.float32(light.intensity) * np.maximum(facing, np.float32(0.0)) / (
            np.sqrt(np.maximum(dist2, np.float32(1e-12))) * (np.float32(1.0) + dist2 * np.float32(1.0 / light.falloff ** 2)))
        if occluders:
            diffuse *= upsampled(shadow_visibility(low_points, low_normals, light, index, occluders))
        total += np.asarray(light.color, np.float32)[:, None] * diffuse[None, :]
    total[:, ~hit] = 1.0
    return total
