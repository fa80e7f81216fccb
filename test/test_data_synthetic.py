"""Synthetic renderer: analytic depth, normals consistent with depth, labels of the object hit, determinism."""
from __future__ import annotations

import numpy as np
import pytest

from mtl_perception.data.geometry import camera_rotation
from mtl_perception.data.synthetic import (
    SYNTH_CLASS_NAMES,
    SYNTH_PALETTE,
    Box,
    Camera,
    Cylinder,
    Room,
    Scene,
    Sphere,
    SynthClass,
    render_frame,
    render_scene,
    render_sequence,
    synthetic_intrinsics,
)
from mtl_perception.tasks import IGNORE_INDEX


def _pixel_grid(K: np.ndarray, height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
    """Normalised image coordinates (x_n, y_n) of every pixel centre."""
    u, v = np.meshgrid(np.arange(width, dtype=np.float64), np.arange(height, dtype=np.float64))
    return (u - K[0, 2]) / K[0, 0], (v - K[1, 2]) / K[1, 1]


@pytest.mark.parametrize("pitch_deg,roll_deg,yaw", [(60.0, 0.0, 0.7), (55.0, 10.0, -2.0)])
def test_floor_depth_matches_closed_form(pitch_deg: float, roll_deg: float, yaw: float) -> None:
    height, width, cam_height = 48, 64, 1.3
    pitch, roll = np.deg2rad(pitch_deg), np.deg2rad(roll_deg)
    scene = Scene(room=Room((100.0, 100.0, 50.0)))
    camera = Camera.from_angles((50.0, 50.0, cam_height), yaw, pitch, roll)
    frame = render_scene(scene, camera, height, width)
    K = synthetic_intrinsics(height, width)
    x_n, y_n = _pixel_grid(K, height, width)
    # World z of the ray (x_n, y_n, 1) for a camera pitched down by `pitch` then rolled by `roll`:
    # -(sin p + cos p (x_n sin r + y_n cos r)); the floor lies cam_height below the camera.
    expected = cam_height / (np.sin(pitch) + np.cos(pitch) * (x_n * np.sin(roll) + y_n * np.cos(roll)))
    assert np.all(frame.labels == SynthClass.FLOOR)
    np.testing.assert_allclose(frame.depth, expected, rtol=1e-4)
    # The floor normal (world up) seen from the camera.
    up_cam = np.array([np.sin(roll) * -np.cos(pitch), np.cos(roll) * -np.cos(pitch), -np.sin(pitch)])
    np.testing.assert_allclose(frame.normals.reshape(-1, 3), np.broadcast_to(up_cam, (height * width, 3)), atol=1e-5)
    np.testing.assert_allclose(frame.K, K)


def test_camera_rotation_is_proper_and_pitch_looks_down() -> None:
    R = camera_rotation(0.4, np.deg2rad(20.0), np.deg2rad(5.0))
    np.testing.assert_allclose(R.T @ R, np.eye(3), atol=1e-12)
    assert np.isclose(np.linalg.det(R), 1.0)
    assert R[2, 2] < 0  # optical axis points below the horizon
    level = camera_rotation(0.0, 0.0, 0.0)
    np.testing.assert_allclose(level, [[0, 0, 1], [-1, 0, 0], [0, -1, 0]], atol=1e-12)


def test_sphere_in_front_of_camera_gives_ball_label_and_analytic_depth() -> None:
    height, width = 33, 41  # odd sizes put the principal point on the centre pixel
    center, radius = np.array([3.0, 0.0, 1.0]), 0.5
    scene = Scene(objects=(Sphere(tuple(center), radius, int(SynthClass.BALL)),))
    camera = Camera.from_angles((0.0, 0.0, 1.0), 0.0, 0.0, 0.0)
    frame = render_scene(scene, camera, height, width)
    cy, cx = height // 2, width // 2
    assert frame.labels[cy, cx] == SynthClass.BALL
    assert frame.depth[cy, cx] == pytest.approx(3.0 - radius, rel=1e-5)
    np.testing.assert_allclose(frame.normals[cy, cx], [0.0, 0.0, -1.0], atol=1e-5)
    # Every pixel: solve the ray-sphere quadratic in float64, in the camera frame.
    K = synthetic_intrinsics(height, width)
    x_n, y_n = _pixel_grid(K, height, width)
    rays = np.stack([x_n, y_n, np.ones_like(x_n)], axis=-1)
    c_cam = camera.world_to_camera(center[None])[0]
    a, b = np.sum(rays * rays, -1), np.sum(rays * c_cam, -1)
    disc = b * b - a * (c_cam @ c_cam - radius ** 2)
    clear = np.abs(disc) > 1e-3 * a  # skip pixels grazing the silhouette
    hit = disc > 0
    t = (b - np.sqrt(np.maximum(disc, 0.0))) / a
    assert np.array_equal((frame.labels == SynthClass.BALL)[clear], hit[clear])
    np.testing.assert_allclose(frame.depth[hit & clear], t[hit & clear], rtol=1e-4)
    # Rays that miss everything are invalid in every task.
    miss = ~hit & clear
    assert miss.any()
    assert np.all(frame.labels[miss] == IGNORE_INDEX)
    assert np.all(frame.depth[miss] == 0)
    assert np.all(frame.normals[miss] == 0)


def test_nearest_object_wins_and_labels_match_objects() -> None:
    height, width = 33, 41
    camera = Camera.from_angles((0.0, 0.0, 1.0), 0.0, 0.0, 0.0)
    wall_box = Box((4.0, 0.0, 1.0), (0.5, 3.0, 3.0), 0.0, int(SynthClass.CABINET))
    pillar = Cylinder(3.0, 0.0, 0.2, 0.0, 3.0, int(SynthClass.PILLAR))
    frame = render_scene(Scene(objects=(wall_box, pillar)), camera, height, width)
    cy, cx = height // 2, width // 2
    assert frame.labels[cy, cx] == SynthClass.PILLAR
    assert frame.depth[cy, cx] == pytest.approx(3.0 - 0.2, rel=1e-5)
    np.testing.assert_allclose(frame.normals[cy, cx], [0.0, 0.0, -1.0], atol=1e-5)
    # The box's front face (x = 3.5) fills the rest; z-depth equals the x distance for every pixel on it.
    on_box = frame.labels == SynthClass.CABINET
    assert on_box[cy, 0] and on_box[0, 0]
    np.testing.assert_allclose(frame.depth[on_box], 3.5, rtol=1e-5)
    np.testing.assert_allclose(frame.normals[on_box], np.broadcast_to([0.0, 0.0, -1.0], (on_box.sum(), 3)), atol=1e-5)
    # Seen from above, the pillar's top cap faces up (camera y is world down when looking straight down).
    top_view = Camera.from_angles((3.0, 0.0, 5.0), 0.0, np.pi / 2, 0.0)
    frame = render_scene(Scene(objects=(pillar,)), top_view, height, width)
    assert frame.labels[cy, cx] == SynthClass.PILLAR
    assert frame.depth[cy, cx] == pytest.approx(2.0, rel=1e-5)
    np.testing.assert_allclose(frame.normals[cy, cx], [0.0, 0.0, -1.0], atol=1e-5)


def _normals_from_depth(depth: np.ndarray, K: np.ndarray) -> np.ndarray:
    """Normals (H-1, W-1, 3) from back-projected neighbours: cross(P[v, u+1] - P, P[v+1, u] - P), facing the camera."""
    height, width = depth.shape
    x_n, y_n = _pixel_grid(K, height, width)
    points = np.stack([x_n * depth, y_n * depth, depth], axis=-1)
    du = points[:-1, 1:] - points[:-1, :-1]
    dv = points[1:, :-1] - points[:-1, :-1]
    normals = np.cross(du, dv)
    normals /= np.maximum(np.linalg.norm(normals, axis=-1, keepdims=True), 1e-12)
    facing_away = np.sum(normals * points[:-1, :-1], axis=-1) > 0
    normals[facing_away] *= -1
    return normals


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_normals_agree_with_depth_on_planar_regions(seed: int) -> None:
    frame = render_frame(seed, 96, 128)
    derived = _normals_from_depth(frame.depth.astype(np.float64), frame.K)
    n = frame.normals
    planar = np.array([SynthClass.FLOOR, SynthClass.WALL, SynthClass.CEILING, SynthClass.CABINET, SynthClass.TABLE])
    # A 2x2 block lies on one plane when all its ground-truth normals and labels agree.
    same_normal = (np.abs(n[:-1, :-1] - n[:-1, 1:]).max(-1) < 1e-5) & (np.abs(n[:-1, :-1] - n[1:, :-1]).max(-1) < 1e-5)
    mask = same_normal & np.isin(frame.labels[:-1, :-1], planar) & (frame.labels[:-1, :-1] == frame.labels[:-1, 1:]) \
        & (frame.labels[:-1, :-1] == frame.labels[1:, :-1])
    assert mask.mean() > 0.5
    cos = np.clip(np.sum(derived[mask] * n[:-1, :-1][mask], axis=-1), -1.0, 1.0)
    assert np.median(np.degrees(np.arccos(cos))) < 2.0


@pytest.mark.parametrize("seed", [3, 4])
def test_frame_contract(seed: int) -> None:
    frame = render_frame(seed, 48, 64)
    assert frame.rgb.shape == (48, 64, 3) and frame.rgb.dtype == np.uint8
    assert frame.depth.shape == (48, 64) and frame.depth.dtype == np.float32
    assert frame.labels.shape == (48, 64) and frame.labels.dtype == np.uint8
    assert frame.normals.shape == (48, 64, 3) and frame.normals.dtype == np.float32
    assert frame.K.dtype == np.float64
    np.testing.assert_allclose(frame.K, synthetic_intrinsics(48, 64))
    assert frame.K[0, 0] == pytest.approx(519.0 * 64 / 640)
    # Closed rooms: every pixel has a surface, a class in 0..6, a unit normal facing the camera.
    assert np.all(frame.depth > 0) and np.all(frame.depth < 15)
    assert frame.labels.max() < len(SYNTH_CLASS_NAMES)
    np.testing.assert_allclose(np.linalg.norm(frame.normals, axis=-1), 1.0, atol=1e-5)
    x_n, y_n = _pixel_grid(frame.K, 48, 64)
    rays = np.stack([x_n, y_n, np.ones_like(x_n)], axis=-1)
    assert np.all(np.sum(frame.normals * rays, axis=-1) < 0)


def test_classes_and_palette_agree() -> None:
    assert SYNTH_CLASS_NAMES == ["floor", "wall", "ceiling", "cabinet", "table", "pillar", "ball"]
    assert len(SYNTH_PALETTE) == len(SYNTH_CLASS_NAMES)
    assert all(len(c) == 3 and all(0 <= x <= 255 for x in c) for c in SYNTH_PALETTE)


def test_same_seed_gives_identical_arrays() -> None:
    a, b, other = render_frame(11, 40, 48), render_frame(11, 40, 48), render_frame(12, 40, 48)
    for name in ("rgb", "depth", "labels", "normals", "K"):
        assert np.array_equal(getattr(a, name), getattr(b, name)), name
    assert not np.array_equal(a.depth, other.depth)


def test_many_seeds_show_every_class() -> None:
    seen = set()
    for seed in range(40):
        seen |= set(np.unique(render_frame(seed, 32, 40).labels).tolist())
    assert seen == set(range(len(SYNTH_CLASS_NAMES)))


def test_sequence_is_deterministic_smooth_prefix() -> None:
    frames = list(render_sequence(7, 6, 40, 48))
    again = list(render_sequence(7, 3, 40, 48))
    assert len(frames) == 6 and len(again) == 3
    for a, b in zip(frames, again):
        assert np.array_equal(a.rgb, b.rgb) and np.array_equal(a.depth, b.depth)
    # Consecutive frames differ a little (the camera moves ~3 cm), unrelated rooms differ a lot.
    step = [np.median(np.abs(frames[i + 1].depth - frames[i].depth) / frames[i].depth) for i in range(5)]
    assert 0 < max(step) < 0.05
    unrelated = render_frame(99, 40, 48)
    assert np.median(np.abs(unrelated.depth - frames[0].depth) / frames[0].depth) > 0.1


def test_bad_size_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="render size"):
        render_frame(0, 0, 10)
