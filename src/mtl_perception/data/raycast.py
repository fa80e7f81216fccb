"""Vectorised NumPy ray caster: one primary ray per pixel, exact depth, labels and normals.

``render_scene`` casts the rays of a pinhole camera into a ``Scene`` (an optional room plus object
primitives from ``geometry``). The room is intersected over the whole image; each object only over the
screen rectangle its convex hull projects to, so small objects cost little. The nearest hit per pixel
gives z-depth, class id and normal exactly; the colour is the material albedo (``materials``) under the
scene's lights with soft shadows and ambient occlusion (``lighting``), recorded by an optional camera
model (``sensor``: blur, noise, exposure, white balance, vignetting, JPEG) that touches the colour only.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

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
from mtl_perception.data.lighting import Light, irradiance
from mtl_perception.data.sensor import Sensor, encode_srgb, expose
from mtl_perception.tasks import IGNORE_INDEX

NEAR_PLANE_M = 0.01  # hull points closer than this disable screen-space culling for that object
BACKGROUND_RGB = np.array([0.0, 0.0, 0.0], np.float32)  # linear colour of rays that hit nothing
GRAZING_COS = 0.2  # texture footprints stop growing beyond this obliquity (cosine to the surface normal)


@dataclass(frozen=True, eq=False)
class Scene:
    """Everything the renderer draws: an optional room, objects, lights, occluders and texture noise."""

    room: Room | None = None
    objects: tuple[Primitive, ...] = ()
    lights: tuple[Light, ...] = (Light(),)
    ambient: tuple[float, float, float] = (0.3, 0.3, 0.3)  # irradiance reaching every surface (linear RGB)
    occluders: tuple[Primitive, ...] = ()  # simple proxies of the objects: they cast shadows and darken nearby room surfaces
    noise_texture: np.ndarray | None = None  # tileable (S, S) texture from textures.make_noise_texture

    @cached_property
    def hulls(self) -> np.ndarray:
        """Hull points (n_objects, 8, 3) of the objects, for screen-space culling (computed once per scene)."""
        return np.array([obj.hull_points() for obj in self.objects], np.float32).reshape(-1, 8, 3)


def screen_rects(hulls: np.ndarray, camera: Camera, K: np.ndarray, height: int, width: int) -> list[tuple[int, int, int, int] | None]:
    """Per object, the pixel rectangle (v0, v1, u0, u1) holding the projection of its hull points
    ``hulls`` (n, 8, 3); None if it is off-screen; the whole image if a hull point is near or behind the camera."""
    if len(hulls) == 0:
        return []
    pts = camera.world_to_camera(hulls.reshape(-1, 3).astype(np.float64)).reshape(hulls.shape)
    z = pts[..., 2]
    with np.errstate(divide="ignore", invalid="ignore"):
        u = K[0, 0] * pts[..., 0] / z + K[0, 2]
        v = K[1, 1] * pts[..., 1] / z + K[1, 2]
    u0 = np.maximum(np.floor(u.min(axis=1)), 0).astype(np.int64)
    u1 = np.minimum(np.ceil(u.max(axis=1)) + 1, width).astype(np.int64)
    v0 = np.maximum(np.floor(v.min(axis=1)), 0).astype(np.int64)
    v1 = np.minimum(np.ceil(v.max(axis=1)) + 1, height).astype(np.int64)
    near = z <= NEAR_PLANE_M
    rects: list[tuple[int, int, int, int] | None] = []
    for i in range(len(hulls)):
        if near[i].all():
            rects.append(None)
        elif near[i].any():
            rects.append((0, height, 0, width))
        elif u0[i] >= u1[i] or v0[i] >= v1[i]:
            rects.append(None)
        else:
            rects.append((int(v0[i]), int(v1[i]), int(u0[i]), int(u1[i])))
    return rects


def _cast(scene: Scene, camera: Camera, rays_world: np.ndarray, K: np.ndarray) -> tuple[np.ndarray, np.ndarray, list]:
    """Nearest-hit ray parameter (H, W) and primitive id (H, W) per pixel; also the object rectangles.

    ``rays_world`` is component-first (3, H, W). Primitive ids: 0..5 room faces, ROOM_FACES + i object i, -1 no hit.
    """
    height, width = rays_world.shape[1:]
    origin = camera.position.astype(np.float32)
    if scene.room is not None:
        t, face = scene.room.intersect(origin, rays_world)
        prim = face.astype(np.int32)
    else:
        t = np.full((height, width), np.inf, np.float32)
        prim = np.full((height, width), -1, np.int32)
    rects = screen_rects(scene.hulls, camera, K, height, width)
    for index, (obj, rect) in enumerate(zip(scene.objects, rects)):
        if rect is None:
            continue
        v0, v1, u0, u1 = rect
        t_obj = obj.intersect(origin, rays_world[:, v0:v1, u0:u1])
        t_view, prim_view = t[v0:v1, u0:u1], prim[v0:v1, u0:u1]
        closer = t_obj < t_view
        t_view[closer] = t_obj[closer]
        prim_view[closer] = ROOM_FACES + index
    return t, prim, rects


def _pixels_by_primitive(prim: np.ndarray, count: int) -> list[np.ndarray]:
    """Flat pixel indices hit by each primitive id 0..count-1 (one stable sort instead of a search per id)."""
    flat = prim.reshape(-1)
    order = np.argsort(flat.astype(np.int16) if count < 2 ** 15 else flat, kind="stable")
    bounds = np.searchsorted(flat[order], np.arange(count + 1))
    return [order[bounds[i]:bounds[i + 1]] for i in range(count)]


def render_scene(scene: Scene, camera: Camera, height: int, width: int, K: np.ndarray | None = None,
                 sensor: Sensor | None = None, rng: np.random.Generator | None = None) -> Frame:
    """Render ``scene`` seen by ``camera`` at (height, width); K defaults to the synthetic camera.

    With ``sensor`` the colour image goes through that camera model (its noise drawn from ``rng``);
    without it the linear colour is only gamma-encoded. Depth, labels and normals never depend on either.
    """
    if height < 1 or width < 1:
        raise ValueError(f"render size must be positive, got {height}x{width}")
    if sensor is not None and rng is None:
        raise ValueError("render_scene needs a random generator for the sensor noise")
    K = synthetic_intrinsics(height, width) if K is None else np.asarray(K, np.float64)
    rays_cam = camera_rays(K, height, width)
    rotation = camera.rotation.astype(np.float32)
    rays_world = np.einsum("ij,jhw->ihw", rotation, rays_cam)
    t, prim, rects = _cast(scene, camera, rays_world, K)

    n_pix = height * width
    flat_t, flat_prim = t.reshape(-1), prim.reshape(-1)
    hit = flat_prim >= 0
    origin = camera.position.astype(np.float32)
    ray_planes = rays_world.reshape(3, -1)
    point_planes = origin[:, None] + np.where(hit, flat_t, np.float32(0.0)) * ray_planes
    points = np.ascontiguousarray(point_planes.T)
    flat_rays = np.ascontiguousarray(ray_planes.T)
    ray_len = np.sqrt(np.einsum("ij,ij->j", ray_planes, ray_planes))
    normals_world = np.zeros((n_pix, 3), np.float32)
    albedo = np.tile(BACKGROUND_RGB, (n_pix, 1))
    labels = np.full(n_pix, IGNORE_INDEX, np.uint8)
    # Surface length one pixel covers at a hit (before obliquity): distance along the ray times the pixel angle.
    reach = np.where(hit, flat_t, np.float32(0.0)) * ray_len * np.float32(2.0 / (K[0, 0] + K[1, 1]))

    def shade_surface(idx: np.ndarray, surface, material, label: int) -> None:
        if idx.size == 0:
            return
        normals, uv = surface(points[idx])
        rays = flat_rays[idx]
        facing = np.abs(normals[:, 0] * rays[:, 0] + normals[:, 1] * rays[:, 1] + normals[:, 2] * rays[:, 2]) / ray_len[idx]
        footprint = reach[idx] / np.maximum(facing, np.float32(GRAZING_COS))
        normals_world[idx] = normals
        albedo[idx] = material.albedo(uv, scene.noise_texture, footprint)
        labels[idx] = label

    pixels = _pixels_by_primitive(prim, ROOM_FACES + len(scene.objects))
    if scene.room is not None:
        for face in range(ROOM_FACES):
            shade_surface(pixels[face], lambda p, f=face: Room.face_surface(f, p), scene.room.face_material(face),
                          Room.face_label(face))
    for index, obj in enumerate(scene.objects):
        shade_surface(pixels[ROOM_FACES + index], obj.surface, obj.material, obj.label)

    on_room = hit & (flat_prim < ROOM_FACES)
    light = irradiance(point_planes, normals_world, hit, on_room, (height, width), scene.lights, scene.ambient,
                       scene.room, scene.occluders)
    rgb_linear = (albedo * light.T).reshape(height, width, 3)
    rgb = expose(rgb_linear, sensor, rng) if sensor is not None else encode_srgb(rgb_linear)  # type: ignore[arg-type]

    normals_cam = normals_world @ rotation
    facing_away = np.einsum("ij,ji->i", normals_cam, rays_cam.reshape(3, -1)) > 0
    normals_cam[facing_away] *= -1.0
    depth = np.where(hit, flat_t, np.float32(0.0)).astype(np.float32)
    return Frame(rgb=rgb, depth=depth.reshape(height, width), labels=labels.reshape(height, width),
                 normals=normals_cam.reshape(height, width, 3), K=K)
