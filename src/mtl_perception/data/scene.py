"""Random indoor scenes for the synthetic dataset: rooms, furniture, lights, cameras and trajectories.

All sampling draws from one ``numpy.random.Generator``, so a scene is a pure function of its seed.
The camera's floor position is chosen before the objects, and objects keep a clearance from it
(or from the whole trajectory of a sequence), so the camera never starts inside or against furniture.
"""
from __future__ import annotations

import colorsys
from dataclasses import dataclass

import numpy as np

from mtl_perception.data.geometry import Box, Camera, Cylinder, Primitive, Room, Sphere
from mtl_perception.data.materials import Material, make_noise_texture
from mtl_perception.data.raycast import Light, Scene
from mtl_perception.data.synth_classes import SynthClass

ROOM_LENGTH_M = (3.5, 8.0)  # room extent along x
ROOM_WIDTH_M = (3.0, 7.0)  # room extent along y
ROOM_HEIGHT_M = (2.4, 3.2)
CAMERA_HEIGHT_M = (0.6, 1.8)
CAMERA_PITCH_DEG = (-5.0, 30.0)  # positive looks down
CAMERA_ROLL_DEG = (-8.0, 8.0)
WALL_MARGIN_M = 0.5  # smallest distance from the camera to a wall
CLEARANCE_M = 0.45  # smallest distance from the camera to an object's footprint
WALL_GAP_M = 0.01  # gap between wall-standing cabinets and their wall (avoids coincident faces)
SEQUENCE_SPEED_M = 0.03  # camera travel per frame in sequences (about 0.9 m/s at 30 frames/s)
PLACEMENT_TRIES = 30
AIM_AT_OBJECT_PROB = 0.6  # share of single-frame cameras that look at an object rather than anywhere


@dataclass(frozen=True)
class _Disc:
    """A conservative circular floor footprint."""

    x: float
    y: float
    radius: float


def _linear(rgb: tuple[float, float, float]) -> tuple[float, float, float]:
    """sRGB components in [0, 1] to linear RGB."""
    return tuple(float(c) ** 2.2 for c in rgb)  # type: ignore[return-value]


def _color(rng: np.random.Generator, hue: tuple[float, float], sat: tuple[float, float], val: tuple[float, float]) -> tuple[float, float, float]:
    """A random colour (linear RGB) with hue, saturation and value drawn from the given ranges."""
    h = rng.uniform(*hue) % 1.0
    return _linear(colorsys.hsv_to_rgb(h, rng.uniform(*sat), rng.uniform(*val)))


def _pair(rng: np.random.Generator, base: tuple[float, float, float], contrast: tuple[float, float]) -> tuple[float, float, float]:
    """A second pattern colour: ``base`` darkened or lightened by a random factor."""
    factor = rng.uniform(*contrast)
    if rng.random() < 0.5:
        factor = 1.0 / factor
    return tuple(float(min(1.0, c * factor)) for c in base)  # type: ignore[return-value]


def sample_material(rng: np.random.Generator, surface: SynthClass) -> Material:
    """A plausible random material for one kind of surface."""
    if surface == SynthClass.FLOOR:
        kind = rng.choice(["tiles", "planks", "carpet"])
        if kind == "tiles":
            base = _color(rng, (0.0, 1.0), (0.0, 0.3), (0.35, 0.9))
            return Material(base, _pair(rng, base, (1.3, 2.5)), "checker", rng.uniform(0.3, 0.6), rng.uniform(0.05, 0.2))
        if kind == "planks":
            base = _color(rng, (0.05, 0.12), (0.3, 0.7), (0.3, 0.8))
            return Material(base, _pair(rng, base, (1.1, 1.6)), "stripes", rng.uniform(0.1, 0.25), rng.uniform(0.2, 0.4))
        base = _color(rng, (0.0, 1.0), (0.1, 0.5), (0.2, 0.7))
        return Material(base, _pair(rng, base, (1.2, 1.8)), "noise", rng.uniform(0.4, 1.5), rng.uniform(0.2, 0.4))
    if surface == SynthClass.WALL:
        base = _color(rng, (0.0, 1.0), (0.0, 0.35), (0.55, 0.95))
        pattern = rng.choice(["plain", "stripes", "noise"], p=[0.5, 0.25, 0.25])
        tile = rng.uniform(0.05, 0.3) if pattern == "stripes" else rng.uniform(0.8, 2.0)
        return Material(base, _pair(rng, base, (1.1, 1.4)), str(pattern), tile, rng.uniform(0.05, 0.15))
    if surface == SynthClass.CEILING:
        base = _color(rng, (0.0, 1.0), (0.0, 0.1), (0.8, 1.0))
        pattern = "checker" if rng.random() < 0.3 else "plain"
        return Material(base, _pair(rng, base, (1.05, 1.2)), pattern, 0.6, rng.uniform(0.02, 0.08))
    if surface == SynthClass.BALL:
        base = _color(rng, (0.0, 1.0), (0.5, 1.0), (0.5, 1.0))
        other = _color(rng, (0.0, 1.0), (0.0, 1.0), (0.6, 1.0))
        pattern = rng.choice(["plain", "stripes", "checker"])
        return Material(base, other, str(pattern), rng.uniform(0.05, 0.2), rng.uniform(0.0, 0.1))
    # Furniture and pillars: painted, panelled or wooden.
    base = _color(rng, (0.0, 1.0), (0.0, 0.7), (0.2, 0.9))
    pattern = rng.choice(["plain", "stripes", "noise"])
    tile = rng.uniform(0.15, 0.5) if pattern == "stripes" else rng.uniform(0.2, 0.8)
    return Material(base, _pair(rng, base, (1.1, 1.5)), str(pattern), tile, rng.uniform(0.05, 0.3))


def sample_room(rng: np.random.Generator) -> Room:
    """A room with random extent and surface materials (one material for all walls, sometimes an accent wall)."""
    size = (rng.uniform(*ROOM_LENGTH_M), rng.uniform(*ROOM_WIDTH_M), rng.uniform(*ROOM_HEIGHT_M))
    wall = sample_material(rng, SynthClass.WALL)
    walls = [wall] * 4
    if rng.random() < 0.3:
        walls[int(rng.integers(4))] = sample_material(rng, SynthClass.WALL)
    return Room(size, sample_material(rng, SynthClass.FLOOR), tuple(walls), sample_material(rng, SynthClass.CEILING))  # type: ignore[arg-type]


class _Placer:
    """Rejection sampling of object footprints that avoid each other and the camera's keep-out points."""

    def __init__(self, room: Room, keep_out: np.ndarray, clearance: float) -> None:
        self.room = room
        self.keep_out = np.asarray(keep_out, np.float64).reshape(-1, 2)
        self.clearance = clearance
        self.discs: list[_Disc] = []

    def fits(self, disc: _Disc, inside_room: bool) -> bool:
        length, width, _ = self.room.size
        if inside_room and not (disc.radius <= disc.x <= length - disc.radius and disc.radius <= disc.y <= width - disc.radius):
            return False
        if len(self.keep_out):
            gaps = np.hypot(self.keep_out[:, 0] - disc.x, self.keep_out[:, 1] - disc.y) - disc.radius
            if gaps.min() < self.clearance:
                return False
        return all(np.hypot(d.x - disc.x, d.y - disc.y) >= d.radius + disc.radius for d in self.discs)

    def accept(self, disc: _Disc, inside_room: bool = True) -> bool:
        """Keep ``disc`` if it fits; ``inside_room=False`` skips the wall test (for objects placed against a wall)."""
        if self.fits(disc, inside_room):
            self.discs.append(disc)
            return True
        return False


def _cabinet(rng: np.random.Generator, room: Room, placer: _Placer) -> list[Primitive]:
    length, width, height = room.size
    material = sample_material(rng, SynthClass.CABINET)
    for _ in range(PLACEMENT_TRIES):
        w, d = rng.uniform(0.4, 1.6), rng.uniform(0.35, 0.7)
        h = rng.uniform(0.5, min(2.0, height - 0.2))
        against_wall = rng.random() < 0.7  # back against a wall, facing into the room
        if against_wall:
            wall = int(rng.integers(4))
            if wall < 2:
                yaw = np.pi / 2
                x = d / 2 + WALL_GAP_M if wall == 0 else length - d / 2 - WALL_GAP_M
                y = rng.uniform(w / 2 + WALL_GAP_M, width - w / 2 - WALL_GAP_M)
            else:
                yaw = 0.0
                x = rng.uniform(w / 2 + WALL_GAP_M, length - w / 2 - WALL_GAP_M)
                y = d / 2 + WALL_GAP_M if wall == 2 else width - d / 2 - WALL_GAP_M
        else:
            yaw = rng.uniform(0.0, np.pi)
            x, y = rng.uniform(0.5, length - 0.5), rng.uniform(0.5, width - 0.5)
        if placer.accept(_Disc(x, y, float(np.hypot(w, d)) / 2), inside_room=not against_wall):
            return [Box((x, y, h / 2), (w / 2, d / 2, h / 2), yaw, int(SynthClass.CABINET), material)]
    return []


def _table(rng: np.random.Generator, room: Room, placer: _Placer) -> tuple[list[Primitive], tuple | None]:
    """A table (slab on four legs); also returns (x, y, top height, half w, half d, yaw) for balls on top."""
    length, width, _ = room.size
    material = sample_material(rng, SynthClass.TABLE)
    for _ in range(PLACEMENT_TRIES):
        w, d = rng.uniform(0.8, 1.8), rng.uniform(0.6, 1.0)
        h, thick, leg, inset = rng.uniform(0.6, 0.8), rng.uniform(0.03, 0.06), rng.uniform(0.04, 0.08), rng.uniform(0.03, 0.1)
        x, y, yaw = rng.uniform(0.6, length - 0.6), rng.uniform(0.6, width - 0.6), rng.uniform(0.0, np.pi)
        if not placer.accept(_Disc(x, y, float(np.hypot(w, d)) / 2)):
            continue
        label = int(SynthClass.TABLE)
        parts: list[Primitive] = [Box((x, y, h - thick / 2), (w / 2, d / 2, thick / 2), yaw, label, material)]
        c, s = np.cos(yaw), np.sin(yaw)
        leg_half_height = (h - thick) / 2
        for sx in (-1, 1):
            for sy in (-1, 1):
                lx, ly = sx * (w / 2 - inset - leg / 2), sy * (d / 2 - inset - leg / 2)
                parts.append(Box((x + c * lx - s * ly, y + s * lx + c * ly, leg_half_height),
                                 (leg / 2, leg / 2, leg_half_height), yaw, label, material))
        return parts, (x, y, h, w / 2, d / 2, yaw)
    return [], None


def _pillar(rng: np.random.Generator, room: Room, placer: _Placer) -> list[Primitive]:
    length, width, height = room.size
    material = sample_material(rng, SynthClass.PILLAR)
    for _ in range(PLACEMENT_TRIES):
        radius = rng.uniform(0.12, 0.35)
        x, y = rng.uniform(radius + 0.3, length - radius - 0.3), rng.uniform(radius + 0.3, width - radius - 0.3)
        if placer.accept(_Disc(x, y, radius)):
            return [Cylinder(x, y, radius, 0.0, height, int(SynthClass.PILLAR), material)]
    return []


def _ball(rng: np.random.Generator, room: Room, placer: _Placer, tops: list[tuple]) -> list[Primitive]:
    length, width, _ = room.size
    material = sample_material(rng, SynthClass.BALL)
    label = int(SynthClass.BALL)
    if tops and rng.random() < 0.35:  # resting on a table top
        x, y, h, half_w, half_d, yaw = tops[int(rng.integers(len(tops)))]
        radius = rng.uniform(0.06, min(0.2, half_w, half_d))
        lx, ly = rng.uniform(-half_w + radius, half_w - radius), rng.uniform(-half_d + radius, half_d - radius)
        c, s = np.cos(yaw), np.sin(yaw)
        return [Sphere((x + c * lx - s * ly, y + s * lx + c * ly, h + radius), radius, label, material)]
    for _ in range(PLACEMENT_TRIES):
        radius = rng.uniform(0.08, 0.35)
        x, y = rng.uniform(radius, length - radius), rng.uniform(radius, width - radius)
        if placer.accept(_Disc(x, y, radius)):
            return [Sphere((x, y, radius), radius, label, material)]
    return []


def sample_light(rng: np.random.Generator, room: Room) -> Light:
    """A ceiling light at a random spot with a random tint and strength, a directional fill light and ambient light."""
    length, width, height = room.size
    tint = (1.0, rng.uniform(0.85, 1.0), rng.uniform(0.7, 1.0))
    if rng.random() < 0.3:
        tint = tint[::-1]  # a cool light instead of a warm one
    azimuth, elevation = rng.uniform(-np.pi, np.pi), np.deg2rad(rng.uniform(20.0, 70.0))
    return Light(
        position=(rng.uniform(0.5, length - 0.5), rng.uniform(0.5, width - 0.5), height - rng.uniform(0.05, 0.3)),
        color=tint,
        intensity=rng.uniform(0.6, 1.2),
        falloff=rng.uniform(2.0, 5.0),
        ambient=rng.uniform(0.1, 0.3),
        fill_direction=(np.cos(azimuth) * np.cos(elevation), np.sin(azimuth) * np.cos(elevation), np.sin(elevation)),
        fill=rng.uniform(0.2, 0.5),
    )


def sample_scene(rng: np.random.Generator, room: Room, keep_out: np.ndarray, clearance: float = CLEARANCE_M) -> Scene:
    """Furnish ``room`` (cabinets, tables, pillars, balls), keeping ``clearance`` metres from the (M, 2) keep-out points."""
    placer = _Placer(room, keep_out, clearance)
    objects: list[Primitive] = []
    tops: list[tuple] = []
    for _ in range(int(rng.integers(1, 5))):
        objects += _cabinet(rng, room, placer)
    for _ in range(int(rng.integers(0, 3))):
        parts, top = _table(rng, room, placer)
        objects += parts
        if top is not None:
            tops.append(top)
    for _ in range(int(rng.integers(0, 3))):
        objects += _pillar(rng, room, placer)
    for _ in range(int(rng.integers(1, 5))):
        objects += _ball(rng, room, placer, tops)
    return Scene(room=room, objects=tuple(objects), light=sample_light(rng, room),
                 noise_texture=make_noise_texture(rng), sensor_noise=float(rng.uniform(0.0, 3.0)))


def sample_camera_position(rng: np.random.Generator, room: Room) -> np.ndarray:
    """A floor position (x, y) at least WALL_MARGIN_M from every wall."""
    length, width, _ = room.size
    return np.array([rng.uniform(WALL_MARGIN_M, length - WALL_MARGIN_M), rng.uniform(WALL_MARGIN_M, width - WALL_MARGIN_M)])


def object_centres(scene: Scene) -> np.ndarray:
    """World centres (M, 3) of the scene's objects (of each table part, so tables draw the eye a little more)."""
    return np.array([obj.hull_points().mean(axis=0) for obj in scene.objects], np.float64).reshape(-1, 3)


def sample_camera(rng: np.random.Generator, room: Room, xy: np.ndarray, targets: np.ndarray | None = None) -> Camera:
    """A camera at floor position ``xy`` with random height and roll.

    With probability AIM_AT_OBJECT_PROB it looks at one of ``targets`` (M, 3) (pitch within the usual range,
    jittered); otherwise toward a random point of the room at least 1.5 m away with a random pitch.
    """
    length, width, height = room.size
    cam_height = rng.uniform(CAMERA_HEIGHT_M[0], min(CAMERA_HEIGHT_M[1], height - 0.4))
    yaw = rng.uniform(-np.pi, np.pi)
    pitch_deg = rng.uniform(*CAMERA_PITCH_DEG)
    if targets is not None and len(targets) and rng.random() < AIM_AT_OBJECT_PROB:
        target = targets[int(rng.integers(len(targets)))]
        offset = target[:2] - xy
        yaw = float(np.arctan2(offset[1], offset[0])) + np.deg2rad(rng.uniform(-15.0, 15.0))
        look_down = np.degrees(np.arctan2(cam_height - target[2], max(float(np.hypot(*offset)), 1e-3)))
        pitch_deg = float(np.clip(look_down + rng.uniform(-8.0, 8.0), *CAMERA_PITCH_DEG))
    else:
        for _ in range(PLACEMENT_TRIES):  # aim at a point at least 1.5 m away so views are not wall close-ups
            target = np.array([rng.uniform(0.0, length), rng.uniform(0.0, width)])
            if np.hypot(*(target - xy)) >= 1.5:
                yaw = float(np.arctan2(target[1] - xy[1], target[0] - xy[0]))
                break
    roll = np.deg2rad(rng.uniform(*CAMERA_ROLL_DEG))
    return Camera.from_angles((xy[0], xy[1], cam_height), yaw, np.deg2rad(pitch_deg), roll)


@dataclass(frozen=True)
class Trajectory:
    """A smooth closed camera path: an ellipse on the floor plan with gentle height, pitch and roll sway."""

    center: tuple[float, float]
    semi_axes: tuple[float, float]
    height: float
    phase: float  # ellipse angle at frame 0
    direction: int  # +1 counter-clockwise (seen from above), -1 clockwise
    step: float  # ellipse angle advanced per frame
    look_inward: float  # radians the camera turns from its heading toward the ellipse centre
    pitch: float
    pitch_sway: float
    roll_sway: float

    def camera(self, index: int) -> Camera:
        angle = self.phase + self.direction * self.step * index
        (cx, cy), (a, b) = self.center, self.semi_axes
        heading = np.arctan2(self.direction * b * np.cos(angle), -self.direction * a * np.sin(angle))
        sway = self.step * index
        position = (cx + a * np.cos(angle), cy + b * np.sin(angle), self.height + 0.04 * np.sin(2.0 * sway))
        return Camera.from_angles(position, heading + self.direction * self.look_inward,
                                  self.pitch + self.pitch_sway * np.sin(0.7 * sway), self.roll_sway * np.sin(1.3 * sway + 1.0))

    def floor_points(self, count: int = 72) -> np.ndarray:
        """Points (count, 2) along the whole path, used as keep-out points when placing objects."""
        angles = np.linspace(0.0, 2.0 * np.pi, count, endpoint=False)
        return np.stack([self.center[0] + self.semi_axes[0] * np.cos(angles),
                         self.center[1] + self.semi_axes[1] * np.sin(angles)], axis=1)


def sample_trajectory(rng: np.random.Generator, room: Room) -> Trajectory:
    """A random elliptic path that stays WALL_MARGIN_M + 0.3 m away from the walls."""
    length, width, height = room.size
    margin = WALL_MARGIN_M + 0.3
    a = rng.uniform(0.4, max(0.45, length / 2 - margin))
    b = rng.uniform(0.4, max(0.45, width / 2 - margin))
    return Trajectory(
        center=(length / 2, width / 2),
        semi_axes=(a, b),
        height=rng.uniform(CAMERA_HEIGHT_M[0] + 0.1, min(CAMERA_HEIGHT_M[1], height - 0.5)),
        phase=rng.uniform(0.0, 2.0 * np.pi),
        direction=int(rng.choice([-1, 1])),
        step=SEQUENCE_SPEED_M / ((a + b) / 2),
        look_inward=rng.uniform(0.4, 1.0),
        pitch=np.deg2rad(rng.uniform(0.0, 20.0)),
        pitch_sway=np.deg2rad(rng.uniform(1.0, 5.0)),
        roll_sway=np.deg2rad(rng.uniform(0.5, 4.0)),
    )
