"""A geometric floor | wall | other reference from a metric depth map and its intrinsics.

For real frames with depth but no semantic annotation (the NYU demo frames): the floor is the room-bounding
plane with most points among near-horizontal ones, the walls room-bounding planes perpendicular to it. A
geometric reference, not an annotation (see ``geometric_floor_wall``); tested against the renderer's labels.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import cv2
import numpy as np

from mtl_perception.data.geometry import camera_rays
from mtl_perception.tasks import IGNORE_INDEX

SURFACES = ("floor", "wall", "other")
FLOOR, WALL, OTHER = 0, 1, 2

PLANE_HYPOTHESES = 400  # point-normal plane hypotheses per search
PLANE_SAMPLE = 4000  # points each hypothesis is scored on
NORMAL_AGREEMENT_DEG = 30.0  # a plane's point has its normal within this of the plane's
FLOOR_CANDIDATE_DEG = 35.0  # floor hypotheses: normals within this of the camera's up (-y)
WALL_CANDIDATE_DEG = 25.0  # wall hypotheses: normals within this of horizontal
MAX_BEYOND = 0.05  # a room boundary plane has at most this share of the points behind it
MIN_PLANE_SHARE = 0.015  # a floor or wall holds at least this share of the frame's valid pixels
MAX_WALLS = 4


def plane_tolerance(z: np.ndarray) -> np.ndarray:
    """Distance (m) within which a point lies on a plane: 2 cm plus 2 % of its depth (sensor noise grows with it)."""
    return 0.02 + 0.02 * z


def back_project(depth: np.ndarray, K: np.ndarray) -> np.ndarray:
    """(H, W, 3) camera-frame points (x right, y down, z forward) of a z-depth map; NaN where depth <= 0."""
    with np.errstate(invalid="ignore"):
        z = np.where(depth > 0, depth, np.nan).astype(np.float64)
    return camera_rays(K, *depth.shape).transpose(1, 2, 0) * z[..., None]


def point_normals(points: np.ndarray) -> np.ndarray:
    """(H, W, 3) unit normals facing the camera, from central differences over a few pixels, box-smoothed; NaN
    where a neighbour has no depth."""
    height, width = points.shape[:2]
    step = max(1, round(min(height, width) / 120))
    dx, dy = np.full_like(points, np.nan), np.full_like(points, np.nan)
    dx[:, step:-step] = points[:, 2 * step:] - points[:, :-2 * step]
    dy[step:-step] = points[2 * step:] - points[:-2 * step]
    normals = np.cross(dx, dy)
    length = np.linalg.norm(normals, axis=-1, keepdims=True)
    known = np.isfinite(length[..., 0]) & (length[..., 0] > 0)
    unit = np.where(known[..., None], normals / np.where(known[..., None], length, 1.0), 0.0)  # unit before smoothing:
    normals = np.stack([cv2.blur(unit[..., i], (5, 5)) for i in range(3)], axis=-1)  # depth jumps must not dominate
    length = np.linalg.norm(normals, axis=-1, keepdims=True)
    normals = np.where(known[..., None] & (length > 0), normals / np.maximum(length, 1e-12), np.nan)
    facing_away = np.einsum("hwc,hwc->hw", np.nan_to_num(normals), np.nan_to_num(points)) > 0
    normals[facing_away] *= -1.0
    return normals


@dataclass(frozen=True)
class Plane:
    """n . p + d = 0 with the unit normal ``n`` facing the camera (d > 0); ``share`` of the sampled points on it."""

    normal: np.ndarray
    offset: float
    share: float


def _unit(vectors: np.ndarray) -> np.ndarray:
    return vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)


def _on_plane(points: np.ndarray, normals: np.ndarray, normal: np.ndarray, offset: np.ndarray | float) -> np.ndarray:
    """Points (rows) within the plane tolerance and normal agreement of one plane (or one column per plane)."""
    distance = points @ normal.T + offset
    agree = normals @ normal.T > np.cos(np.radians(NORMAL_AGREEMENT_DEG))
    tolerance = plane_tolerance(points[:, 2])
    return (np.abs(distance) < (tolerance[:, None] if distance.ndim == 2 else tolerance)) & agree


def find_boundary_plane(points: np.ndarray, normals: np.ndarray, candidates: np.ndarray,
                        constrain: Callable[[np.ndarray], np.ndarray], rng: np.random.Generator) -> Plane | None:
    """The plane with most points among hypotheses through candidate points (normal = the point's, passed through
    ``constrain``) that bound the room: at most MAX_BEYOND of the points behind them. Refined by least squares.

    ``points`` and ``normals``: (M, 3) valid points (normals zero where unknown); ``candidates``: (M,) bool.
    """
    pool = np.flatnonzero(candidates)
    if pool.size < 50:
        return None
    sample = rng.choice(points.shape[0], min(PLANE_SAMPLE, points.shape[0]), replace=False)
    picks = rng.choice(pool, min(PLANE_HYPOTHESES, pool.size), replace=False)
    hyp_normals = constrain(normals[picks])
    hyp_offsets = -np.einsum("ij,ij->i", hyp_normals, points[picks])
    sampled_points, sampled_normals = points[sample], normals[sample]
    distance = sampled_points @ hyp_normals.T + hyp_offsets
    behind = (distance < -plane_tolerance(sampled_points[:, 2])[:, None]).mean(axis=0)
    support = _on_plane(sampled_points, sampled_normals, hyp_normals, hyp_offsets).sum(axis=0)
    score = np.where(behind <= MAX_BEYOND, support, -1)
    best = int(np.argmax(score))
    if score[best] <= 0:
        return None
    members = points[_on_plane(points, normals, hyp_normals[best], hyp_offsets[best])]
    centre = members.mean(axis=0)
    refined = constrain(np.linalg.svd(members - centre, full_matrices=False)[2][2][None])[0]
    refined = refined if refined @ hyp_normals[best] > 0 else -refined
    return Plane(refined, float(-refined @ centre), float(score[best] / sample.size))


def geometric_floor_wall(depth: np.ndarray, K: np.ndarray, seed: int = 0) -> np.ndarray:
    """A floor | wall | other map (uint8; IGNORE_INDEX without depth) from a metric depth map and its intrinsics.

    Floor: the room-bounding plane (little behind it) with most points among planes whose normal lies within
    FLOOR_CANDIDATE_DEG of the camera's up; its normal is then the up direction. Walls: up to MAX_WALLS
    room-bounding planes perpendicular to it, each of at least MIN_PLANE_SHARE of the valid pixels. A point
    belongs to a plane when it is within ``plane_tolerance`` and its normal agrees. A geometric reference,
    not an annotation: a table top with no floor in view counts as floor, a flat door or cabinet in a wall's
    plane as wall, a wall hidden behind clutter as other.
    """
    rng = np.random.default_rng(seed)
    points_map = back_project(depth, K)
    normals_map = point_normals(points_map)
    valid = np.isfinite(points_map).all(axis=-1).reshape(-1)
    labels = np.full(valid.size, IGNORE_INDEX, np.uint8)
    if valid.sum() < 100:
        return labels.reshape(depth.shape)
    points = points_map.reshape(-1, 3)[valid]
    normals = np.nan_to_num(normals_map.reshape(-1, 3)[valid])
    surfaces = np.full(points.shape[0], OTHER, np.uint8)
    up = np.array([0.0, -1.0, 0.0])
    floor_like = normals @ up > np.cos(np.radians(FLOOR_CANDIDATE_DEG))
    floor = find_boundary_plane(points, normals, floor_like, _unit, rng)
    if floor is not None and floor.share >= MIN_PLANE_SHARE:
        up = floor.normal
        surfaces[_on_plane(points, normals, floor.normal, floor.offset)] = FLOOR

    def horizontal(vectors: np.ndarray) -> np.ndarray:
        return _unit(vectors - np.outer(vectors @ up, up))

    for _ in range(MAX_WALLS):
        wall_like = (surfaces == OTHER) & (np.abs(normals @ up) < np.sin(np.radians(WALL_CANDIDATE_DEG))) \
            & (np.abs(normals).sum(axis=1) > 0)
        wall = find_boundary_plane(points, normals, wall_like, horizontal, rng)
        if wall is None or wall.share < MIN_PLANE_SHARE:
            break
        members = _on_plane(points, normals, wall.normal, wall.offset) & (surfaces == OTHER)
        if members.mean() < MIN_PLANE_SHARE:
            break
        surfaces[members] = WALL
    labels[valid] = surfaces
    return labels.reshape(depth.shape)
