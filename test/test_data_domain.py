"""The wider synthetic domain: every randomisation has its effect, geometry stays exact, classes of new shapes."""
from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from mtl_perception.data import scene as scenes
from mtl_perception.data.clutter import item, on_support
from mtl_perception.data.furniture import DESIGN_CLASS, DESIGNS, Support
from mtl_perception.data.geometry import Box, Camera, Room, camera_rays, synthetic_intrinsics
from mtl_perception.data.lighting import Light, ambient_occlusion, kelvin_color
from mtl_perception.data.materials import Decal, Material
from mtl_perception.data.raycast import Scene, render_scene
from mtl_perception.data.sensor import Sensor, expose, sample_sensor
from mtl_perception.data.synth_classes import SynthClass
from mtl_perception.data.synthetic import render_frame, render_sequence
from mtl_perception.data.textures import TEXTURES, make_noise_texture


def _sampled(seed: int) -> tuple[Scene, Camera]:
    rng = np.random.default_rng(seed)
    room = scenes.sample_room(rng)
    xy = scenes.sample_camera_position(rng, room)
    scene = scenes.sample_scene(rng, room, keep_out=xy[None])
    return scene, scenes.sample_camera(rng, room, xy, targets=scenes.object_centres(scene))


def test_rooms_lights_and_cameras_span_real_homes_and_offices() -> None:
    sizes, kinds, light_counts, heights, clutter, blues = [], set(), [], [], [], []
    for seed in range(40):
        scene, camera = _sampled(seed)
        sizes.append(scene.room.size)
        kinds.add(scene.room.kind)
        light_counts.append(len(scene.lights))
        heights.append(camera.position[2])
        clutter.append(sum(obj.label == SynthClass.BALL for obj in scene.objects))
        blues.extend(light.color[2] for light in scene.lights)
    sizes = np.array(sizes)
    assert kinds == set(scenes.ROOM_TYPES)
    assert sizes[:, :2].min() < 3.0 and sizes[:, :2].max() > 8.0  # small bedrooms to open offices
    assert sizes[:, 2].min() < 2.5 and sizes[:, 2].max() > 3.2 and np.all((sizes[:, 2] >= 2.3) & (sizes[:, 2] <= 3.5))
    assert min(light_counts) >= 2 and max(light_counts) <= 4 and sum(c >= 3 for c in light_counts) >= 5
    assert min(blues) < 0.3 and max(blues) > 0.9  # warm and daylight colour temperatures
    assert min(heights) < 0.5 and max(heights) > 1.2  # wheeled robots to hand-held cameras
    assert np.median(clutter) >= 5  # many small objects per room


def test_colour_temperature_runs_from_warm_to_cool() -> None:
    warm, cool = np.array(kelvin_color(2700.0)), np.array(kelvin_color(8000.0))
    assert warm[0] == 1.0 and warm[2] < 0.2
    assert cool[2] == 1.0 and cool[0] < 1.0


def test_depth_spread_is_that_of_real_rooms() -> None:
    depths = np.concatenate([render_frame(seed, 48, 64).depth.ravel() for seed in range(24)])
    share = np.mean((depths >= 1.0) & (depths <= 6.0))
    assert share > 0.6, share  # NYUv2 rooms: mostly 1-6 m
    assert np.percentile(depths, 99) > 5.0 and np.percentile(depths, 1) < 1.2


@pytest.mark.parametrize("pattern", [p for p in TEXTURES if p != "plain"])
def test_textures_are_not_flat_and_fade_below_the_pixel(pattern: str) -> None:
    noise = make_noise_texture(np.random.default_rng(0))
    material = Material((0.2, 0.3, 0.4), (0.6, 0.5, 0.3), pattern, 0.2)
    u, v = np.meshgrid(np.linspace(0.0, 2.0, 200), np.linspace(0.0, 2.0, 200))
    uv = np.stack([u.ravel(), v.ravel()], axis=1).astype(np.float32)
    sharp = material.albedo(uv, noise, np.full(len(uv), 1e-3, np.float32))
    assert sharp.std(axis=0).max() > 0.02, "pattern shows no structure"
    assert np.all(sharp >= 0) and np.all(np.isfinite(sharp))


def test_periodic_detail_and_lines_fade_to_their_mean_when_smaller_than_a_pixel() -> None:
    noise = make_noise_texture(np.random.default_rng(0))
    uv = np.random.default_rng(1).uniform(0.0, 3.0, (5000, 2)).astype(np.float32)
    stripes = Material((0.0, 0.0, 0.0), (1.0, 1.0, 1.0), "stripes", 0.01)
    assert stripes.albedo(uv, noise, np.full(len(uv), 1e-4, np.float32)).std() > 0.4
    np.testing.assert_allclose(stripes.albedo(uv, noise, np.full(len(uv), 0.05, np.float32)), 0.5)
    tiles = Material((0.0, 0.0, 0.0), (1.0, 1.0, 1.0), "tiles", 0.3)
    fine = tiles.albedo(uv, noise, np.full(len(uv), 1e-4, np.float32))[:, 0]
    coarse = tiles.albedo(uv, noise, np.full(len(uv), 0.05, np.float32))[:, 0]
    grout_share = np.mean(fine > 0.9)
    assert 0.01 < grout_share < 0.1  # 8 mm grout on 30 cm tiles
    assert np.mean(coarse > 0.9) < grout_share and coarse.mean() > fine.mean()  # grout blends into the pixel


def test_noise_texture_has_a_natural_image_spectrum() -> None:
    texture = make_noise_texture(np.random.default_rng(3), size=128)
    power = np.abs(np.fft.fft2(texture - texture.mean())) ** 2
    freq = np.hypot(*np.meshgrid(np.fft.fftfreq(128), np.fft.fftfreq(128)))
    band = (freq > 0.02) & (freq < 0.3)
    slope = np.polyfit(np.log(freq[band]), np.log(power[band]), 1)[0]
    assert -2.6 < slope < -1.5, slope  # natural images: power ~ 1/f^2


def test_sensor_effects_change_rgb_only() -> None:
    scene, camera = _sampled(5)
    clean = render_scene(scene, camera, 60, 80)
    for sensor in [sample_sensor(np.random.default_rng(s)) for s in range(3)] + [Sensor(jpeg_quality=40), Sensor(read_noise=0.01)]:
        frame = render_scene(scene, camera, 60, 80, sensor=sensor, rng=np.random.default_rng(0))
        assert not np.array_equal(frame.rgb, clean.rgb)
        for name in ("depth", "labels", "normals", "K"):
            assert np.array_equal(getattr(frame, name), getattr(clean, name)), name
    with pytest.raises(ValueError, match="random generator"):
        render_scene(scene, camera, 8, 8, sensor=Sensor())


@pytest.mark.parametrize("field,value", [
    ("exposure_ev", 1.0), ("awb_strength", 1.0), ("white_balance", (1.2, 1.0, 0.8)), ("vignetting", 0.4),
    ("defocus_px", 1.5), ("motion_px", 6.0), ("shot_noise", 0.005), ("read_noise", 0.01), ("jpeg_quality", 30),
])
def test_every_sensor_setting_has_its_effect(field: str, value: object) -> None:
    base = np.full((48, 64, 3), 0.2, np.float32) * np.array([1.0, 0.8, 0.5], np.float32)
    base[:, ::8] *= 2.0  # vertical lines, so blur and compression have edges to act on
    neutral = expose(base, Sensor(), np.random.default_rng(1))
    changed = expose(base, replace(Sensor(), **{field: value}), np.random.default_rng(1))
    assert not np.array_equal(neutral, changed)
    if field == "vignetting":
        assert changed[0, 1].mean() < changed[24, 33].mean() - 5  # corners darker than the centre
    if field in ("defocus_px", "motion_px"):
        assert np.abs(np.diff(changed.astype(float), axis=1)).mean() < np.abs(np.diff(neutral.astype(float), axis=1)).mean()


def test_shadows_and_ambient_occlusion_darken() -> None:
    room = Room((6.0, 6.0, 3.0))
    table_top = Box((3.0, 3.0, 0.75), (0.5, 0.5, 0.02))
    camera = Camera.from_angles((3.0, 1.0, 1.5), np.pi / 2, np.deg2rad(45.0))
    lights = (Light((3.0, 3.0, 2.9), intensity=1.0, radius=0.1),)
    lit = render_scene(Scene(room=room, lights=lights, ambient=(0.1, 0.1, 0.1)), camera, 96, 128)
    shadowed = render_scene(Scene(room=room, lights=lights, ambient=(0.1, 0.1, 0.1), occluders=(table_top,)), camera, 96, 128)
    assert np.array_equal(lit.depth, shadowed.depth)
    floor = lit.labels == SynthClass.FLOOR
    darker = shadowed.rgb[..., 0].astype(int) < lit.rgb[..., 0].astype(int) - 10
    assert darker[floor].mean() > 0.05  # the shadow of the (invisible) table top on the floor
    points = np.array([[3.0, 3.0, 0.0], [0.05, 3.0, 0.0], [0.05, 0.05, 0.0]], np.float32)
    up = np.tile(np.array([0.0, 0.0, 1.0], np.float32), (3, 1))
    ao = ambient_occlusion(points, up, room, np.ones(3, bool), ())
    assert ao[0] > 0.99 and ao[1] < 0.7 and ao[2] < ao[1]  # open floor, next to a wall, in a corner


def test_exact_floor_depth_with_every_randomisation_on() -> None:
    scene, _ = _sampled(2)
    assert scene.occluders and scene.room.walls[0].decals is not None
    bare = replace(scene, objects=())  # lights, shadows, occlusion, textures, decals stay on
    height, width, cam_height, pitch, roll = 48, 64, 1.1, np.deg2rad(70.0), np.deg2rad(6.0)
    length, breadth, _ = scene.room.size
    camera = Camera.from_angles((length / 2, breadth / 2, cam_height), 0.4, pitch, roll)
    frame = render_scene(bare, camera, height, width, sensor=sample_sensor(np.random.default_rng(1)), rng=np.random.default_rng(2))
    K = synthetic_intrinsics(height, width)
    u, v = np.meshgrid(np.arange(width, dtype=np.float64), np.arange(height, dtype=np.float64))
    x_n, y_n = (u - K[0, 2]) / K[0, 0], (v - K[1, 2]) / K[1, 1]
    expected = cam_height / (np.sin(pitch) + np.cos(pitch) * (x_n * np.sin(roll) + y_n * np.cos(roll)))
    assert np.all(frame.labels == SynthClass.FLOOR)
    np.testing.assert_allclose(frame.depth, expected, rtol=1e-4)
    up_cam = np.array([np.sin(roll) * -np.cos(pitch), np.cos(roll) * -np.cos(pitch), -np.sin(pitch)])
    np.testing.assert_allclose(frame.normals.reshape(-1, 3), np.broadcast_to(up_cam, (height * width, 3)), atol=1e-5)


@pytest.mark.parametrize("seed", [0, 9])
def test_depth_and_labels_are_the_nearest_hit_of_all_primitives(seed: int) -> None:
    """With every randomisation on, each pixel shows the nearest of all primitives (no culling error)."""
    scene, camera = _sampled(seed)
    height, width = 60, 80
    frame = render_scene(scene, camera, height, width, sensor=sample_sensor(np.random.default_rng(seed)), rng=np.random.default_rng(seed))
    K = synthetic_intrinsics(height, width)
    rays = np.einsum("ij,jhw->ihw", camera.rotation.astype(np.float32), camera_rays(K, height, width))
    origin = camera.position.astype(np.float32)
    best, face = scene.room.intersect(origin, rays)
    label = np.where(face == 4, int(SynthClass.FLOOR), np.where(face == 5, int(SynthClass.CEILING), int(SynthClass.WALL)))
    for obj in scene.objects:
        t = obj.intersect(origin, rays)
        closer = t < best
        best, label = np.where(closer, t, best), np.where(closer, obj.label, label)
    np.testing.assert_allclose(frame.depth, best, rtol=1e-6)
    assert np.mean(frame.labels == label) > 0.999


def test_same_seed_same_frame_with_every_randomisation_on() -> None:
    a, b = render_frame(21, 96, 128), render_frame(21, 96, 128)
    for name in ("rgb", "depth", "labels", "normals", "K"):
        assert np.array_equal(getattr(a, name), getattr(b, name)), name
    first, again = list(render_sequence(4, 2, 48, 64)), list(render_sequence(4, 2, 48, 64))
    assert all(np.array_equal(x.rgb, y.rgb) for x, y in zip(first, again))
    assert not np.array_equal(first[0].rgb, first[1].rgb)


@pytest.mark.parametrize("name", sorted(DESIGNS))
def test_every_design_has_its_class_and_stands_in_its_footprint(name: str) -> None:
    for seed in range(4):
        design = DESIGNS[name](np.random.default_rng(seed), 2.6)
        assert {part.label for part in design.parts} == {int(DESIGN_CLASS[name])}
        hull = np.concatenate([part.hull_points() for part in design.parts])
        assert hull[:, 2].min() >= -1e-6 and hull[:, 2].max() <= 2.6 + 1e-6
        assert np.all(np.abs(hull[:, 0]) <= design.half_w + 0.05) and np.all(np.abs(hull[:, 1]) <= design.half_d + 0.05)
        assert design.occluders
        placed = design.placed(2.0, 3.0, 0.7)
        assert len(placed.parts) == len(design.parts) and {p.label for p in placed.parts} == {int(DESIGN_CLASS[name])}


def test_furniture_classes_follow_the_documented_mapping() -> None:
    cabinets = {"cabinet", "wardrobe", "shelf", "counter", "bed", "sofa"}
    tables = {"table", "round_table", "desk", "chair", "stool"}
    assert {n for n, c in DESIGN_CLASS.items() if c == SynthClass.CABINET} == cabinets
    assert {n for n, c in DESIGN_CLASS.items() if c == SynthClass.TABLE} == tables
    assert {n for n, c in DESIGN_CLASS.items() if c == SynthClass.PILLAR} == {"pillar"}


def test_clutter_is_class_ball_and_stays_on_its_support() -> None:
    rng = np.random.default_rng(0)
    board = Support(1.0, 1.0, 0.8, 0.5, 0.15, 0.3, clearance=0.3, shelf=True)
    top = Support(2.0, 2.0, 0.75, 0.6, 0.4)
    parts = [p for _ in range(10) for s in (board, top) for p in on_support(rng, s)]
    parts += [p for _ in range(20) for p in item(rng, 0.0, 0.0, 0.0, 0.4, on_floor=True)[0]]
    assert len(parts) > 20 and {p.label for p in parts} == {int(SynthClass.BALL)}
    on_board = [p for p in parts if abs(p.hull_points()[:, 2].min() - 0.8) < 1e-5]
    assert on_board and all(p.hull_points()[:, 2].max() <= 0.8 + 0.3 + 1e-5 for p in on_board)


def test_decals_are_painted_on_the_wall_and_keep_its_label() -> None:
    window = Decal("window", (1.0, 0.8), (3.0, 2.2), ((5.0, 5.0, 5.0), (2.0, 3.0, 2.0), (5.0, 5.0, 5.0)))
    poster = Decal("poster", (3.5, 1.0), (4.5, 2.0), ((0.9, 0.1, 0.1), (0.1, 0.1, 0.9), (0.9, 0.9, 0.1)))
    plain = Room((6.0, 6.0, 3.0))
    decorated = replace(plain, walls=(Material(),) * 3 + (Material(decals=(window, poster)),))
    camera = Camera.from_angles((3.0, 1.5, 1.5), np.pi / 2, 0.0)
    noise = make_noise_texture(np.random.default_rng(0))
    a = render_scene(Scene(room=plain, noise_texture=noise), camera, 60, 80)
    b = render_scene(Scene(room=decorated, noise_texture=noise), camera, 60, 80)
    assert np.array_equal(a.labels, b.labels) and np.array_equal(a.depth, b.depth)
    changed = np.any(a.rgb != b.rgb, axis=-1)
    assert changed.mean() > 0.1 and np.all(b.labels[changed] == SynthClass.WALL)
    assert b.rgb[changed].max() == 255  # the window is blown out
