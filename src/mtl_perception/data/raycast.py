"""Vectorised NumPy ray caster: one primary ray per pixel, exact depth, labels and normals.

``render_scene`` casts the rays of a pinhole camera into a ``Scene`` (an optional room plus object
primitives from ``geometry``). The room is intersected over the whole image; each object only over the
screen rectangle its convex hull projects to, so small objects cost little. The nearest hit per pixel
gives z-depth, class id and normal exactly; the image is the material albedo under Lambertian shading
from a point light, a directional fill light and ambient light, gamma-encoded to sRGB, with optional sensor noise.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from mtl_perception.data.frame import Frame
from mtl_perception.data.geometry import (
    ROOM_FACES,
    Camera,
    Primitive,
    Room,
    camera_rays,
    synthetic_intrinsics,
)
from mtl_perception.tasks import IGNORE_INDEX

NEAR_PLANE_M = 0.01  # hull points closer than this disable screen-space culling for that object
BACKGROUND_RGB = np.array([0.0, 0.0, 0.0], np.float32)  # linear colour of rays that hit nothing


@dataclass(frozen=True)
class Light:
    """A point light with a soft distance falloff, a directional fill light and ambient light (linear RGB)."""

    position: tuple[float, float, float] = (0.0, 0.0, 3.0)
    color: tuple[float, float, float] = (1.0, 1.0, 1.0)
    intensity: float = 0.9  # diffuse irradiance at distance 0 for a surface facing the point light
    falloff: float = 3.0  # metres at which the point light's diffuse irradiance halves
    ambient: float = 0.3  # irradiance reaching every surface
    fill_direction: tuple[float, float, float] = (0.0, 0.0, 1.0)  # world direction toward the fill light
    fill: float = 0.0  # diffuse irradiance of the directional fill light on a surface facing it


@dataclass(frozen=True, eq=False)
class Scene:
    """Everything the renderer draws: an optional room, objects, a light and texture noise."""

    room: Room | None = None
    objects: tuple[Primitive, ...] = ()
    light: Light = field(default_factory=Light)
    noise_texture: np.ndarray | None = None  # tileable (S, S) texture from materials.make_noise_texture
    sensor_noise: float = 0.0  # standard deviation of additive image noise, in 8-bit grey levels


def screen_rect(points_world: np.ndarray, camera: Camera, K: np.ndarray, height: int, width: int) -> tuple[int, int, int, int] | None:
    """Pixel rectangle (v0, v1, u0, u1) containing the projection of a convex hull; None if off-screen."""
    pts = camera.world_to_camera(points_world.astype(np.float64))
    z = pts[:, 2]
    if np.all(z <= NEAR_PLANE_M):
        return None
    if np.any(z <= NEAR_PLANE_M):
        return 0, height, 0, width
    u = K[0, 0] * pts[:, 0] / z + K[0, 2]
    v = K[1, 1] * pts[:, 1] / z + K[1, 2]
    u0, u1 = max(0, int(np.floor(u.min()))), min(width, int(np.ceil(u.max())) + 1)
    v0, v1 = max(0, int(np.floor(v.min()))), min(height, int(np.ceil(v.max())) + 1)
    if u0 >= u1 or v0 >= v1:
        return None
    return v0, v1, u0, u1


def _cast(scene: Scene, camera: Camera, rays_world: np.ndarray, K: np.ndarray) -> tuple[np.ndarray, np.ndarray, list]:
    """Nearest-hit ray parameter (H, W) and primitive id (H, W) per pixel; also the object rectangles.

    Primitive ids: 0..5 room faces, ROOM_FACES + i object i, -1 no hit.
    """
    height, width = rays_world.shape[:2]
    origin = camera.position.astype(np.float32)
    if scene.room is not None:
        t, face = scene.room.intersect(origin, rays_world)
        prim = face.astype(np.int32)
    else:
        t = np.full((height, width), np.inf, np.float32)
        prim = np.full((height, width), -1, np.int32)
    rects: list = []
    for index, obj in enumerate(scene.objects):
        rect = screen_rect(obj.hull_points(), camera, K, height, width)
        rects.append(rect)
        if rect is None:
            continue
        v0, v1, u0, u1 = rect
        t_obj = obj.intersect(origin, rays_world[v0:v1, u0:u1])
        t_view, prim_view = t[v0:v1, u0:u1], prim[v0:v1, u0:u1]
        closer = t_obj < t_view
        t_view[closer] = t_obj[closer]
        prim_view[closer] = ROOM_FACES + index
    return t, prim, rects


def _pixels_of(prim: np.ndarray, prim_id: int, rect: tuple[int, int, int, int] | None) -> np.ndarray:
    """Flat indices of the pixels whose nearest hit is primitive ``prim_id`` (searched within ``rect``)."""
    width = prim.shape[1]
    v0, v1, u0, u1 = rect if rect is not None else (0, prim.shape[0], 0, width)
    vs, us = np.nonzero(prim[v0:v1, u0:u1] == prim_id)
    return (vs + v0) * width + (us + u0)


def render_scene(scene: Scene, camera: Camera, height: int, width: int, K: np.ndarray | None = None,
                 noise_rng: np.random.Generator | None = None) -> Frame:
    """Render ``scene`` seen by ``camera`` at (height, width); K defaults to the synthetic camera.

    Sensor noise (``scene.sensor_noise``) is added only when ``noise_rng`` is given.
    """
    if height < 1 or width < 1:
        raise ValueError(f"render size must be positive, got {height}x{width}")
    K = synthetic_intrinsics(height, width) if K is None else np.asarray(K, np.float64)
    rays_cam = camera_rays(K, height, width)
    rotation = camera.rotation.astype(np.float32)
    rays_world = rays_cam @ rotation.T
    t, prim, rects = _cast(scene, camera, rays_world, K)

    n_pix = height * width
    flat_t, flat_rays = t.reshape(-1), rays_world.reshape(-1, 3)
    normals_world = np.zeros((n_pix, 3), np.float32)
    albedo = np.tile(BACKGROUND_RGB, (n_pix, 1))
    labels = np.full(n_pix, IGNORE_INDEX, np.uint8)
    origin = camera.position.astype(np.float32)

    def shade_surface(idx: np.ndarray, surface, material, label: int) -> None:
        if idx.size == 0:
            return
        points = origin + flat_t[idx, None] * flat_rays[idx]
        normals, uv = surface(points)
        normals_world[idx] = normals
        albedo[idx] = material.albedo(uv, scene.noise_texture)
        labels[idx] = label

    if scene.room is not None:
        for face in range(ROOM_FACES):
            idx = np.flatnonzero(prim.reshape(-1) == face)
            shade_surface(idx, lambda p, f=face: Room.face_surface(f, p), scene.room.face_material(face),
                          Room.face_label(face))
    for index, obj in enumerate(scene.objects):
        if rects[index] is not None:
            shade_surface(_pixels_of(prim, ROOM_FACES + index, rects[index]), obj.surface, obj.material, obj.label)

    hit = prim.reshape(-1) >= 0
    rgb_linear = albedo * _irradiance(scene, origin, flat_t, flat_rays, normals_world, hit)
    rgb = _encode_srgb(rgb_linear, scene.sensor_noise, noise_rng).reshape(height, width, 3)

    normals_cam = normals_world @ rotation
    facing_away = np.einsum("ij,ij->i", normals_cam, rays_cam.reshape(-1, 3)) > 0
    normals_cam[facing_away] *= -1.0
    depth = np.where(hit, flat_t, np.float32(0.0)).astype(np.float32)
    return Frame(rgb=rgb, depth=depth.reshape(height, width), labels=labels.reshape(height, width),
                 normals=normals_cam.reshape(height, width, 3), K=K)


def _irradiance(scene: Scene, origin: np.ndarray, t: np.ndarray, rays: np.ndarray, normals: np.ndarray,
                hit: np.ndarray) -> np.ndarray:
    """Lambertian irradiance (N, 3): ambient, a point light with soft distance falloff and a directional fill."""
    light = scene.light
    points = origin + np.where(hit, t, np.float32(0.0))[:, None] * rays
    to_light = np.asarray(light.position, np.float32) - points
    dist2 = np.einsum("ij,ij->i", to_light, to_light)
    cos = np.einsum("ij,ij->i", normals, to_light) / np.sqrt(np.maximum(dist2, np.float32(1e-12)))
    diffuse = np.float32(light.intensity) * np.maximum(cos, np.float32(0.0)) / (np.float32(1.0) + dist2 / np.float32(light.falloff ** 2))
    if light.fill > 0:
        fill_dir = np.asarray(light.fill_direction, np.float32)
        fill_dir = fill_dir / np.linalg.norm(fill_dir)
        diffuse += np.float32(light.fill) * np.maximum(normals @ fill_dir, np.float32(0.0))
    level = np.where(hit, np.float32(light.ambient) + diffuse, np.float32(1.0))
    return level[:, None] * np.asarray(light.color, np.float32)


def _encode_srgb(rgb_linear: np.ndarray, noise_std: float, rng: np.random.Generator | None) -> np.ndarray:
    """Gamma-encode linear RGB in [0, 1] to uint8, adding Gaussian noise in grey levels if asked."""
    encoded = np.power(np.clip(rgb_linear, 0.0, 1.0), np.float32(1.0 / 2.2)) * np.float32(255.0)
    if noise_std > 0 and rng is not None:
        encoded += rng.standard_normal(encoded.shape, dtype=np.float32) * np.float32(noise_std)
    return np.clip(encoded + np.float32(0.5), 0.0, 255.0).astype(np.uint8)
