"""Random indoor scenes for the synthetic dataset: rooms, furnishing, lights, cameras and trajectories.

All sampling draws from one ``numpy.random.Generator``, so a scene is a pure function of its seed.
Rooms are bedrooms, living rooms, kitchens or offices with the sizes of real homes and offices (from a
2.5 x 3 m bedroom to a 10 m open office; ceilings 2.3 to 3.5 m), furnished with that room's furniture
(``furniture``), clutter on the floor and on furniture (``clutter``), pictures, windows and doors on the
walls (``decor``), and 2 to 4 lights of different colour temperatures. Cameras ride one of three
platforms: a low wheeled robot (0.25-0.5 m), a taller robot (0.5-1.2 m) or a hand-held or humanoid camera
(1.2-1.7 m, more pitch and roll). The camera's floor position is chosen before the furniture, which keeps
a clearance from it (or from the whole trajectory of a sequence), so the camera never starts inside or
against an object.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from functools import cached_property

import numpy as np

from mtl_perception.data.clutter import item, on_support
from mtl_perception.data.decor import sample_ceiling_panels, sample_material, sample_wall_decals
from mtl_perception.data.furniture import DESIGNS, Design
from mtl_perception.data.geometry import Camera, Primitive, Room
from mtl_perception.data.lighting import Light, kelvin_color
from mtl_perception.data.raycast import Scene
from mtl_perception.data.textures import make_noise_texture


@dataclass(frozen=True)
class RoomType:
    """Sizes (x, y, z ranges in metres), share of rooms, and furniture counts (design name -> [low, high])."""

    size: tuple[tuple[float, float], tuple[float, float], tuple[float, float]]
    share: float
    furniture: tuple[tuple[str, int, int], ...]  # in placement order: pieces against walls first
    pillar_prob: float


ROOM_TYPES: dict[str, RoomType] = {
    "bedroom": RoomType(((2.5, 4.2), (3.0, 4.8), (2.3, 2.8)), 0.3,
                        (("bed", 1, 1), ("wardrobe", 0, 1), ("cabinet", 1, 2), ("shelf", 0, 1), ("desk", 0, 1), ("chair", 0, 1)), 0.1),
    "living": RoomType(((3.5, 7.0), (3.5, 6.0), (2.4, 3.0)), 0.3,
                       (("sofa", 1, 2), ("shelf", 0, 2), ("cabinet", 0, 2), ("table", 1, 2), ("round_table", 0, 1), ("chair", 0, 3)), 0.15),
    "kitchen": RoomType(((2.5, 5.0), (2.5, 4.5), (2.3, 2.9)), 0.15,
                        (("counter", 1, 3), ("cabinet", 0, 1), ("shelf", 0, 1), ("table", 0, 1), ("round_table", 0, 1), ("chair", 0, 4), ("stool", 0, 2)), 0.1),
    "office": RoomType(((5.0, 10.0), (4.0, 9.0), (2.6, 3.5)), 0.25,
                       (("shelf", 0, 3), ("cabinet", 1, 3), ("sofa", 0, 1), ("desk", 2, 5), ("table", 0, 1), ("round_table", 0, 1), ("chair", 1, 5)), 0.5),
}
PLATFORMS = {  # camera height (m), pitch (deg, positive looks down) and roll (deg) ranges, share of cameras
    "wheeled robot": ((0.25, 0.5), (-10.0, 15.0), (-2.0, 2.0), 0.25),
    "tall robot": ((0.5, 1.2), (-5.0, 30.0), (-3.0, 3.0), 0.25),
    "hand-held": ((1.2, 1.7), (-5.0, 40.0), (-10.0, 10.0), 0.5),
}
CEILING_GAP_M = 0.3  # smallest distance from the camera to the ceiling
WALL_MARGIN_M = 0.5  # smallest distance from the camera to a wall
CLEARANCE_M = 0.45  # smallest distance from the camera to an object's footprint
WALL_GAP_M = 0.01  # gap between wall-standing furniture and its wall (avoids coincident faces)
FURNITURE_GAP_M = 0.05  # smallest gap between footprints
SEQUENCE_SPEED_M = 0.03  # camera travel per frame in sequences (about 0.9 m/s at 30 frames/s)
PLACEMENT_TRIES = 30
SUPPORT_CLUTTER_PROB = 0.7  # share of furniture surfaces that get clutter
AIM_AT_OBJECT_PROB = 0.6  # share of single-frame cameras that look at a piece of furniture rather than anywhere
MAX_LIGHTS = 4


@dataclass(frozen=True)
class _Footprint:
    """A rotated rectangle on the floor plan."""

    x: float
    y: float
    half_w: float
    half_d: float
    yaw: float

    @cached_property
    def corners(self) -> np.ndarray:
        c, s = np.cos(self.yaw), np.sin(self.yaw)
        local = np.array([[-1, -1], [1, -1], [1, 1], [-1, 1]]) * (self.half_w, self.half_d)
        return local @ np.array([[c, s], [-s, c]]) + (self.x, self.y)

    def gap_to(self, points: np.ndarray) -> np.ndarray:
        """Distance (M,) from floor points (M, 2) to the rectangle (0 inside)."""
        c, s = np.cos(self.yaw), np.sin(self.yaw)
        dx, dy = points[:, 0] - self.x, points[:, 1] - self.y
        out_x = np.maximum(np.abs(c * dx + s * dy) - self.half_w, 0.0)
        out_y = np.maximum(np.abs(-s * dx + c * dy) - self.half_d, 0.0)
        return np.hypot(out_x, out_y)


def _separated(a: _Footprint, b: _Footprint, gap: float) -> bool:
    """Whether two rectangles are at least ``gap`` apart along one of their edge normals (separating axes)."""
    if np.hypot(a.x - b.x, a.y - b.y) >= np.hypot(a.half_w, a.half_d) + np.hypot(b.half_w, b.half_d) + gap:
        return True  # their circumcircles are apart
    ca, cb = a.corners, b.corners
    for yaw in (a.yaw, b.yaw):
        for axis in (np.array([np.cos(yaw), np.sin(yaw)]), np.array([-np.sin(yaw), np.cos(yaw)])):
            pa, pb = ca @ axis, cb @ axis
            if pa.max() + gap <= pb.min() or pb.max() + gap <= pa.min():
                return True
    return False


class _Placer:
    """Rejection sampling of footprints that stay in the room, apart from each other and from the camera."""

    def __init__(self, room: Room, keep_out: np.ndarray, clearance: float) -> None:
        self.size = np.asarray(room.size[:2])
        self.keep_out = np.asarray(keep_out, np.float64).reshape(-1, 2)
        self.clearance = clearance
        self.taken: list[_Footprint] = []

    def accept(self, footprint: _Footprint) -> bool:
        """Keep ``footprint`` if it fits."""
        corners = footprint.corners
        if np.any(corners < -1e-9) or np.any(corners > self.size + 1e-9):
            return False
        if len(self.keep_out) and footprint.gap_to(self.keep_out).min() < self.clearance:
            return False
        if not all(_separated(footprint, other, FURNITURE_GAP_M) for other in self.taken):
            return False
        self.taken.append(footprint)
        return True


def sample_room(rng: np.random.Generator) -> Room:
    """A room of a random type and size, with floor, wall and ceiling materials and decals on each wall."""
    names = list(ROOM_TYPES)
    kind = names[int(rng.choice(len(names), p=[ROOM_TYPES[n].share for n in names]))]
    size = tuple(float(rng.uniform(*span)) for span in ROOM_TYPES[kind].size)
    wall = sample_material(rng, "wall")
    walls = [wall] * 4
    if rng.random() < 0.3:
        walls[int(rng.integers(4))] = sample_material(rng, "wall")
    lengths = (size[1], size[1], size[0], size[0])  # faces x=0, x=Lx run along y; faces y=0, y=Ly along x
    walls = [replace(m, decals=sample_wall_decals(rng, lengths[i], size[2])) for i, m in enumerate(walls)]
    ceiling = sample_material(rng, "ceiling")
    ceiling = replace(ceiling, decals=sample_ceiling_panels(rng, size[0], size[1]))
    return Room(size, sample_material(rng, "floor"), tuple(walls), ceiling, kind)  # type: ignore[arg-type]


def _place(rng: np.random.Generator, design: Design, room: Room, placer: _Placer) -> Design | None:
    """``design`` moved to a free spot (back to a wall if it stands against one), or None."""
    length, width, _ = room.size
    hw, hd = design.half_w, design.half_d
    for _ in range(PLACEMENT_TRIES):
        if design.against_wall:
            wall = int(rng.integers(4))
            along = (width if wall < 2 else length) - 2 * (hw + WALL_GAP_M)
            if along < 0:
                continue
            u = hw + WALL_GAP_M + rng.uniform(0.0, along)
            off = hd + WALL_GAP_M
            x, y, yaw = [(off, u, np.pi / 2), (length - off, u, -np.pi / 2), (u, off, np.pi), (u, width - off, 0.0)][wall]
        else:
            reach = float(np.hypot(hw, hd))
            if 2 * reach > min(length, width):
                return None
            x, y, yaw = rng.uniform(reach, length - reach), rng.uniform(reach, width - reach), rng.uniform(0.0, 2 * np.pi)
        if placer.accept(_Footprint(float(x), float(y), hw, hd, float(yaw))):
            return design.placed(float(x), float(y), float(yaw))
    return None


def _floor_clutter(rng: np.random.Generator, room: Room, placer: _Placer) -> list[Primitive]:
    length, width, _ = room.size
    parts: list[Primitive] = []
    for _ in range(int(rng.integers(1, 4 + int(length * width / 8)))):
        for _ in range(PLACEMENT_TRIES // 3):
            x, y = rng.uniform(0.1, length - 0.1), rng.uniform(0.1, width - 0.1)
            new, radius = item(rng, float(x), float(y), 0.0, 0.4, on_floor=True)
            if placer.accept(_Footprint(float(x), float(y), radius, radius, 0.0)):
                parts += new
                break
    return parts


def sample_lights(rng: np.random.Generator, room: Room) -> tuple[Light, ...]:
    """2 to 4 lights: ceiling lamps (at light panels where the ceiling has them), daylight from windows, a lamp."""
    length, width, height = room.size
    panels = room.ceiling.decals
    kelvin = rng.uniform(2700.0, 6500.0)  # most rooms have one kind of bulb
    lights: list[Light] = []
    for _ in range(int(rng.integers(1, 4))):
        if panels:
            panel = panels[int(rng.integers(len(panels)))]
            x, y, z = (panel.lo[0] + panel.hi[0]) / 2, (panel.lo[1] + panel.hi[1]) / 2, height - 0.05
        else:
            x, y, z = rng.uniform(0.5, length - 0.5), rng.uniform(0.5, width - 0.5), height - rng.uniform(0.05, 0.5)
        temperature = kelvin if rng.random() < 0.7 else rng.uniform(2700.0, 6500.0)
        lights.append(Light((float(x), float(y), float(z)), kelvin_color(temperature), float(rng.uniform(0.5, 1.2)),
                            float(rng.uniform(2.0, 5.0)), float(rng.uniform(0.05, 0.4))))
    for face, wall in enumerate(room.walls):
        for decal in wall.decals:
            if decal.kind != "window":
                continue
            u, v = (decal.lo[0] + decal.hi[0]) / 2, (decal.lo[1] + decal.hi[1]) / 2
            position = [(0.4, u, v), (length - 0.4, u, v), (u, 0.4, v), (u, width - 0.4, v)][face]
            lights.append(Light(tuple(float(c) for c in position), kelvin_color(rng.uniform(5500.0, 8000.0)),  # type: ignore[arg-type]
                                float(rng.uniform(0.6, 1.5)), float(rng.uniform(2.5, 6.0)),
                                0.5 * min(decal.hi[0] - decal.lo[0], decal.hi[1] - decal.lo[1])))
    if rng.random() < 0.3:
        lights.append(Light((float(rng.uniform(0.3, length - 0.3)), float(rng.uniform(0.3, width - 0.3)), float(rng.uniform(0.4, 1.7))),
                            kelvin_color(rng.uniform(2700.0, 3300.0)), float(rng.uniform(0.3, 0.7)), float(rng.uniform(1.5, 3.0)), 0.1))
    order = rng.permutation(len(lights))
    chosen = [lights[i] for i in order[:MAX_LIGHTS]]
    if len(chosen) < 2:
        chosen.append(Light((float(rng.uniform(0.5, length - 0.5)), float(rng.uniform(0.5, width - 0.5)), height - 0.1),
                            kelvin_color(kelvin), float(rng.uniform(0.4, 0.9)), float(rng.uniform(2.0, 5.0)), 0.2))
    return tuple(chosen)


def sample_scene(rng: np.random.Generator, room: Room, keep_out: np.ndarray, clearance: float = CLEARANCE_M) -> Scene:
    """Furnish ``room`` for its kind, keeping ``clearance`` metres from the (M, 2) keep-out points; add lights."""
    spec = ROOM_TYPES.get(room.kind, ROOM_TYPES["living"])
    placer = _Placer(room, keep_out, clearance)
    objects: list[Primitive] = []
    occluders: list[Primitive] = []
    furniture = list(spec.furniture)
    if rng.random() < spec.pillar_prob:
        furniture.insert(0, ("pillar", 1, 3))
    for name, low, high in furniture:
        for _ in range(int(rng.integers(low, high + 1))):
            piece = _place(rng, DESIGNS[name](rng, room.size[2]), room, placer)
            if piece is None:
                continue
            objects += piece.parts
            occluders += piece.occluders
            for support in piece.supports:
                if rng.random() < SUPPORT_CLUTTER_PROB:
                    objects += on_support(rng, support)
    objects += _floor_clutter(rng, room, placer)
    ambient = rng.uniform(0.12, 0.35) * np.asarray(kelvin_color(rng.uniform(4000.0, 8000.0)))
    return Scene(room=room, objects=tuple(objects), lights=sample_lights(rng, room),
                 ambient=tuple(float(a) for a in ambient), occluders=tuple(occluders),  # type: ignore[arg-type]
                 noise_texture=make_noise_texture(rng))


def sample_camera_position(rng: np.random.Generator, room: Room) -> np.ndarray:
    """A floor position (x, y) at least WALL_MARGIN_M from every wall."""
    length, width, _ = room.size
    return np.array([rng.uniform(WALL_MARGIN_M, length - WALL_MARGIN_M), rng.uniform(WALL_MARGIN_M, width - WALL_MARGIN_M)])


def object_centres(scene: Scene) -> np.ndarray:
    """World centres (M, 3) of the scene's furniture (its occluders), or of its objects when it has none."""
    shapes = scene.occluders or scene.objects
    return np.array([obj.hull_points().mean(axis=0) for obj in shapes], np.float64).reshape(-1, 3)


def _platform(rng: np.random.Generator, room: Room) -> tuple[float, tuple[float, float], tuple[float, float]]:
    """A camera height and the pitch and roll ranges (degrees) of a random platform."""
    names = list(PLATFORMS)
    heights, pitch, roll, _ = PLATFORMS[names[int(rng.choice(len(names), p=[PLATFORMS[n][3] for n in names]))]]
    top = min(heights[1], room.size[2] - CEILING_GAP_M)
    return float(rng.uniform(min(heights[0], top), top)), pitch, roll


def sample_camera(rng: np.random.Generator, room: Room, xy: np.ndarray, targets: np.ndarray | None = None) -> Camera:
    """A camera at floor position ``xy`` on a random platform (height, pitch and roll ranges).

    With probability AIM_AT_OBJECT_PROB it looks at one of ``targets`` (M, 3) (pitch within the platform's
    range, jittered); otherwise toward a random point of the room at least 1.5 m away with a random pitch.
    """
    length, width, _ = room.size
    cam_height, pitch_range, roll_range = _platform(rng, room)
    yaw = rng.uniform(-np.pi, np.pi)
    pitch_deg = rng.uniform(*pitch_range)
    if targets is not None and len(targets) and rng.random() < AIM_AT_OBJECT_PROB:
        target = targets[int(rng.integers(len(targets)))]
        offset = target[:2] - xy
        yaw = float(np.arctan2(offset[1], offset[0])) + np.deg2rad(rng.uniform(-15.0, 15.0))
        look_down = np.degrees(np.arctan2(cam_height - target[2], max(float(np.hypot(*offset)), 1e-3)))
        pitch_deg = float(np.clip(look_down + rng.uniform(-8.0, 8.0), *pitch_range))
    else:
        for _ in range(PLACEMENT_TRIES):  # aim at a point at least 1.5 m away so views are not wall close-ups
            target = np.array([rng.uniform(0.0, length), rng.uniform(0.0, width)])
            if np.hypot(*(target - xy)) >= 1.5:
                yaw = float(np.arctan2(target[1] - xy[1], target[0] - xy[0]))
                break
    roll = np.deg2rad(rng.uniform(*roll_range))
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
    """A random elliptic path that stays WALL_MARGIN_M + 0.3 m away from the walls, at a platform's height."""
    length, width, _ = room.size
    margin = WALL_MARGIN_M + 0.3
    a = rng.uniform(0.4, max(0.45, length / 2 - margin))
    b = rng.uniform(0.4, max(0.45, width / 2 - margin))
    cam_height, pitch_range, roll_range = _platform(rng, room)
    return Trajectory(
        center=(length / 2, width / 2),
        semi_axes=(a, b),
        height=min(cam_height, room.size[2] - CEILING_GAP_M - 0.05),
        phase=rng.uniform(0.0, 2.0 * np.pi),
        direction=int(rng.choice([-1, 1])),
        step=SEQUENCE_SPEED_M / ((a + b) / 2),
        look_inward=rng.uniform(0.4, 1.0),
        pitch=np.deg2rad(rng.uniform(max(pitch_range[0], 0.0), min(pitch_range[1], 20.0))),
        pitch_sway=np.deg2rad(rng.uniform(1.0, 5.0)),
        roll_sway=np.deg2rad(rng.uniform(0.5, max(0.6, min(4.0, roll_range[1])))),
    )
