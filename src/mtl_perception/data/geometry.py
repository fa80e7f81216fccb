"""Geometry of the synthetic renderer: the camera, the room and the object primitives.

World frame: x and y horizontal, z up; the floor is the plane z = 0. Camera frame: the optical frame
of REP-103 (x right, y down, z forward). Rays are cast with camera-frame directions
``((u - cx) / fx, (v - cy) / fy, 1)``, so the ray parameter ``t`` of a hit *is* its z-depth.

Every primitive answers three questions, all vectorised over rays or points:
``hull_points()`` (world points whose convex hull contains it, for screen-space culling),
``intersect(origin, dirs)`` (ray parameter of the nearest hit in front of the origin, ``inf`` on a miss;
rays are given component-first: ``dirs`` (3, ...) and ``origin`` (3,) or (3, ...), which keeps every
NumPy operation on contiguous planes)
and ``surface(points)`` (outward world normals and 2-D texture coordinates in metres at hit points) and
``distance(points)`` (distance from world points to the solid, 0 inside; the renderer's ambient occlusion).
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from mtl_perception.data.materials import Material
from mtl_perception.data.synth_classes import SynthClass

HIT_EPS = 1e-4  # smallest ray parameter accepted as a hit (rejects self-hits at the origin)

# NYU Depth V2 (Kinect v1) colour-camera intrinsics at 640x480.
NYU_WIDTH, NYU_HEIGHT = 640, 480
NYU_FX, NYU_FY, NYU_CX, NYU_CY = 518.8579, 519.4696, 325.5825, 253.7362
SYNTH_FOCAL_640 = 519.0  # focal length of the synthetic camera at 640x480, in pixels


def scale_intrinsics(K: np.ndarray, sx: float, sy: float) -> np.ndarray:
    """Intrinsics after resizing an image by (sx, sy), with pixel centres at integer coordinates."""
    out = np.array(K, dtype=np.float64, copy=True)
    out[0, 0] *= sx
    out[1, 1] *= sy
    out[0, 2] = (K[0, 2] + 0.5) * sx - 0.5
    out[1, 2] = (K[1, 2] + 0.5) * sy - 0.5
    return out


def synthetic_intrinsics(height: int, width: int) -> np.ndarray:
    """The synthetic camera: fx = fy = 519 px at 640x480 (near NYU's), scaled to (height, width), centred."""
    base = np.array([[SYNTH_FOCAL_640, 0.0, (NYU_WIDTH - 1) / 2.0],
                     [0.0, SYNTH_FOCAL_640, (NYU_HEIGHT - 1) / 2.0],
                     [0.0, 0.0, 1.0]])
    return scale_intrinsics(base, width / NYU_WIDTH, height / NYU_HEIGHT)


def camera_rotation(yaw: float, pitch: float, roll: float) -> np.ndarray:
    """World-from-optical rotation (3, 3): columns are the optical x, y, z axes in world coordinates.

    yaw: heading of the optical axis about world z (0 looks along +x, pi/2 along +y);
    pitch: positive tilts the optical axis down toward the floor; roll: positive turns the image
    clockwise about the optical axis (the x axis tips toward world down). Angles in radians.
    """
    forward = np.array([np.cos(yaw), np.sin(yaw), 0.0])
    down = np.array([0.0, 0.0, -1.0])
    right = np.cross(forward, -down)
    z_axis = np.cos(pitch) * forward + np.sin(pitch) * down
    y_pitched = np.cos(pitch) * down - np.sin(pitch) * forward
    x_axis = np.cos(roll) * right + np.sin(roll) * y_pitched
    y_axis = np.cross(z_axis, x_axis)
    return np.stack([x_axis, y_axis, z_axis], axis=1)


@dataclass
class Camera:
    """A posed pinhole camera: optical centre in world metres and the world-from-optical rotation."""

    position: np.ndarray  # (3,) world coordinates of the optical centre
    rotation: np.ndarray  # (3, 3) world-from-optical rotation

    @classmethod
    def from_angles(cls, position: Sequence[float] | np.ndarray, yaw: float, pitch: float, roll: float = 0.0) -> "Camera":
        """A camera at ``position`` oriented by ``camera_rotation(yaw, pitch, roll)``."""
        return cls(np.asarray(position, np.float64), camera_rotation(yaw, pitch, roll))

    def world_to_camera(self, points: np.ndarray) -> np.ndarray:
        """Optical-frame coordinates (N, 3) of world points (N, 3)."""
        return (points - self.position) @ self.rotation


def camera_rays(K: np.ndarray, height: int, width: int) -> np.ndarray:
    """Camera-frame ray directions, component-first (3, H, W) float32, with unit z component."""
    u = (np.arange(width, dtype=np.float64) - K[0, 2]) / K[0, 0]
    v = (np.arange(height, dtype=np.float64) - K[1, 2]) / K[1, 1]
    rays = np.empty((3, height, width), np.float32)
    rays[0] = u[None, :]
    rays[1] = v[:, None]
    rays[2] = 1.0
    return rays


def _rotate_z(vectors: np.ndarray, angle: float) -> np.ndarray:
    """Rotate vectors (..., 3) by ``angle`` about the z axis."""
    c, s = np.float32(np.cos(angle)), np.float32(np.sin(angle))
    out = np.empty(np.broadcast_shapes(vectors.shape), np.float32)
    out[..., 0] = c * vectors[..., 0] - s * vectors[..., 1]
    out[..., 1] = s * vectors[..., 0] + c * vectors[..., 1]
    out[..., 2] = vectors[..., 2]
    return out


def _planes(origin: np.ndarray, center: Sequence[float], like: np.ndarray) -> np.ndarray:
    """``origin - center`` component-first, shaped to broadcast against ray planes like ``like`` (3, ...)."""
    o = np.asarray(origin, np.float32)
    c = np.asarray(center, np.float32).reshape((3,) + (1,) * (o.ndim - 1))
    return (o - c).reshape((3,) + (1,) * (like.ndim - 1)) if o.ndim == 1 else o - c


def _first_positive(*candidates: np.ndarray) -> np.ndarray:
    """Elementwise minimum of candidate ray parameters, ``inf`` where none exceeds HIT_EPS."""
    best = np.full(np.broadcast_shapes(*(c.shape for c in candidates)), np.inf, np.float32)
    for t in candidates:
        np.minimum(best, np.where(t > HIT_EPS, t, np.inf), out=best)
    return best


@dataclass(frozen=True)
class Box:
    """A box with a vertical yaw axis: ``center`` and ``half_size`` (x, y, z) in its own frame, metres."""

    center: tuple[float, float, float]
    half_size: tuple[float, float, float]
    yaw: float = 0.0
    label: int = 0
    material: Material = field(default_factory=Material)

    def hull_points(self) -> np.ndarray:
        signs = np.array([[sx, sy, sz] for sx in (-1, 1) for sy in (-1, 1) for sz in (-1, 1)], np.float32)
        return _rotate_z(signs * np.asarray(self.half_size, np.float32), self.yaw) + np.asarray(self.center, np.float32)

    def intersect(self, origin: np.ndarray, dirs: np.ndarray) -> np.ndarray:
        o = _planes(origin, self.center, dirs)
        c, s = np.float32(np.cos(self.yaw)), np.float32(np.sin(self.yaw))
        local_o = (c * o[0] + s * o[1], c * o[1] - s * o[0], o[2])
        local_d = (c * dirs[0] + s * dirs[1], c * dirs[1] - s * dirs[0], dirs[2])
        t_near = t_far = None
        with np.errstate(divide="ignore", invalid="ignore"):
            for axis, half in enumerate(self.half_size):
                inv = np.float32(1.0) / local_d[axis]
                t_lo = (np.float32(-half) - local_o[axis]) * inv
                t_hi = (np.float32(half) - local_o[axis]) * inv
                near, far = np.minimum(t_lo, t_hi), np.maximum(t_lo, t_hi)
                t_near = near if t_near is None else np.maximum(t_near, near, out=near)
                t_far = far if t_far is None else np.minimum(t_far, far, out=far)
        hit = (t_near <= t_far) & (t_near > HIT_EPS)
        return np.where(hit, t_near, np.float32(np.inf)).astype(np.float32, copy=False)

    def surface(self, points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        half = np.asarray(self.half_size, np.float32)
        local = _rotate_z(points - np.asarray(self.center, np.float32), -self.yaw)
        axis = np.argmax(np.abs(local) / half, axis=1)
        rows = np.arange(len(local))
        normals = np.zeros_like(local)
        normals[rows, axis] = np.sign(local[rows, axis])
        in_plane = np.array([[1, 2], [0, 2], [0, 1]])[axis]
        uv = np.take_along_axis(local + half, in_plane, axis=1)
        return _rotate_z(normals, self.yaw), uv

    def distance(self, points: np.ndarray) -> np.ndarray:
        local = _rotate_z(points - np.asarray(self.center, np.float32), -self.yaw)
        outside = np.maximum(np.abs(local) - np.asarray(self.half_size, np.float32), np.float32(0.0))
        return np.sqrt(np.einsum("ij,ij->i", outside, outside))


@dataclass(frozen=True)
class Sphere:
    """A sphere: ``center`` in world metres and ``radius``."""

    center: tuple[float, float, float]
    radius: float
    label: int = 0
    material: Material = field(default_factory=Material)

    def hull_points(self) -> np.ndarray:
        signs = np.array([[sx, sy, sz] for sx in (-1, 1) for sy in (-1, 1) for sz in (-1, 1)], np.float32)
        return signs * np.float32(self.radius) + np.asarray(self.center, np.float32)

    def intersect(self, origin: np.ndarray, dirs: np.ndarray) -> np.ndarray:
        oc = _planes(origin, self.center, dirs)
        a = dirs[0] * dirs[0] + dirs[1] * dirs[1] + dirs[2] * dirs[2]
        b = dirs[0] * oc[0] + dirs[1] * oc[1] + dirs[2] * oc[2]
        c = oc[0] * oc[0] + oc[1] * oc[1] + oc[2] * oc[2] - np.float32(self.radius) ** 2
        disc = b * b - a * c
        with np.errstate(invalid="ignore"):
            root = np.sqrt(disc)
            t_in = (-b - root) / a
        return _first_positive(np.where(disc >= 0, t_in, np.float32(np.inf)))

    def surface(self, points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        normals = (points - np.asarray(self.center, np.float32)) / np.float32(self.radius)
        normals /= np.linalg.norm(normals, axis=1, keepdims=True)
        lon = np.arctan2(normals[:, 1], normals[:, 0]) * np.float32(self.radius)
        lat = np.arcsin(np.clip(normals[:, 2], -1.0, 1.0)) * np.float32(self.radius)
        return normals, np.stack([lon, lat], axis=1).astype(np.float32)

    def distance(self, points: np.ndarray) -> np.ndarray:
        gap = np.linalg.norm(points - np.asarray(self.center, np.float32), axis=1) - np.float32(self.radius)
        return np.maximum(gap, np.float32(0.0))


@dataclass(frozen=True)
class Cylinder:
    """A vertical capped cylinder: axis at (x, y), ``radius``, from height ``z_min`` to ``z_max``."""

    x: float
    y: float
    radius: float
    z_min: float
    z_max: float
    label: int = 0
    material: Material = field(default_factory=Material)

    def hull_points(self) -> np.ndarray:
        r = self.radius
        return np.array([[self.x + sx * r, self.y + sy * r, z] for sx in (-1, 1) for sy in (-1, 1)
                         for z in (self.z_min, self.z_max)], np.float32)

    def intersect(self, origin: np.ndarray, dirs: np.ndarray) -> np.ndarray:
        ox, oy, oz = _planes(origin, (self.x, self.y, 0.0), dirs)
        dx, dy, dz = dirs[0], dirs[1], dirs[2]
        r2 = np.float32(self.radius) ** 2
        a = dx * dx + dy * dy
        b = ox * dx + oy * dy
        disc = b * b - a * (ox * ox + oy * oy - r2)
        with np.errstate(divide="ignore", invalid="ignore"):
            t_side = (-b - np.sqrt(disc)) / a
            z_side = oz + t_side * dz
            side_ok = (disc >= 0) & (a > 0) & (z_side >= self.z_min) & (z_side <= self.z_max)
            caps = []
            for z_cap in (self.z_min, self.z_max):
                t_cap = (np.float32(z_cap) - oz) / dz
                px, py = ox + t_cap * dx, oy + t_cap * dy
                caps.append(np.where(px * px + py * py <= r2, t_cap, np.float32(np.inf)))
        return _first_positive(np.where(side_ok, t_side, np.float32(np.inf)), *caps)

    def surface(self, points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        rel = points - np.array([self.x, self.y, 0.0], np.float32)
        rho = np.hypot(rel[:, 0], rel[:, 1])
        dist_side = np.abs(rho - np.float32(self.radius))
        dist_top = np.abs(rel[:, 2] - np.float32(self.z_max))
        dist_bottom = np.abs(rel[:, 2] - np.float32(self.z_min))
        on_top = (dist_top < dist_side) & (dist_top <= dist_bottom)
        on_bottom = (dist_bottom < dist_side) & ~on_top
        normals = np.zeros_like(rel)
        safe_rho = np.maximum(rho, np.float32(1e-12))
        normals[:, 0] = rel[:, 0] / safe_rho
        normals[:, 1] = rel[:, 1] / safe_rho
        cap = on_top | on_bottom
        normals[cap] = 0.0
        normals[on_top, 2] = 1.0
        normals[on_bottom, 2] = -1.0
        angle = np.arctan2(rel[:, 1], rel[:, 0]) * np.float32(self.radius)
        uv = np.stack([np.where(cap, rel[:, 0], angle), np.where(cap, rel[:, 1], rel[:, 2])], axis=1)
        return normals, uv.astype(np.float32)

    def distance(self, points: np.ndarray) -> np.ndarray:
        radial = np.maximum(np.hypot(points[:, 0] - np.float32(self.x), points[:, 1] - np.float32(self.y))
                            - np.float32(self.radius), np.float32(0.0))
        axial = np.maximum(np.maximum(np.float32(self.z_min) - points[:, 2], points[:, 2] - np.float32(self.z_max)), np.float32(0.0))
        return np.hypot(radial, axial)


Primitive = Box | Sphere | Cylinder

ROOM_FACES = 6  # face ids 0..5: x=0, x=Lx, y=0, y=Ly, floor (z=0), ceiling (z=Lz)
FLOOR_FACE, CEILING_FACE = 4, 5


@dataclass(frozen=True)
class Room:
    """The inside of an axis-aligned box [0, Lx] x [0, Ly] x [0, Lz] (metres): floor, 4 walls, ceiling.

    Wall texture coordinates are (position along the wall, height above the floor), floor and ceiling (x, y).
    """

    size: tuple[float, float, float]
    floor: Material = field(default_factory=Material)
    walls: tuple[Material, Material, Material, Material] = (Material(),) * 4  # faces x=0, x=Lx, y=0, y=Ly
    ceiling: Material = field(default_factory=Material)
    kind: str = "room"  # what the room is used as (the scene sampler furnishes it accordingly)

    def contains(self, point: np.ndarray, margin: float = 0.0) -> bool:
        p = np.asarray(point, np.float64)
        return bool(np.all(p >= margin) and np.all(p <= np.asarray(self.size) - margin))

    def intersect(self, origin: np.ndarray, dirs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Exit parameter (...) and face id (...) of rays (3, ...) starting inside the room at ``origin`` (3,)."""
        o = np.asarray(origin, np.float32)
        t = np.full(dirs.shape[1:], np.inf, np.float32)
        face = np.zeros(dirs.shape[1:], np.int16)
        with np.errstate(divide="ignore", invalid="ignore"):
            for axis in range(3):
                d = dirs[axis]
                positive = d > 0
                t_axis = np.where(positive, (np.float32(self.size[axis]) - o[axis]) / d, -o[axis] / d)
                closer = (t_axis < t) & (d != 0)
                t = np.where(closer, t_axis, t)
                face = np.where(closer, (2 * axis + positive).astype(np.int16), face)
        return t, face

    def face_material(self, face: int) -> Material:
        if face == FLOOR_FACE:
            return self.floor
        if face == CEILING_FACE:
            return self.ceiling
        return self.walls[face]

    @staticmethod
    def face_label(face: int) -> int:
        if face == FLOOR_FACE:
            return int(SynthClass.FLOOR)
        return int(SynthClass.CEILING if face == CEILING_FACE else SynthClass.WALL)

    @staticmethod
    def face_surface(face: int, points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Inward normals and texture coordinates of hit points on one face."""
        axis, positive = divmod(face, 2)
        normals = np.zeros_like(points)
        normals[:, axis] = -1.0 if positive else 1.0
        in_plane = [(1, 2), (0, 2), (0, 1)][axis]
        return normals, points[:, in_plane]
