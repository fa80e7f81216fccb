#!/usr/bin/env python3
"""Synthetic renderer speed: frames per second at 240x320 on one CPU core (scene sampling included).

    .venv/bin/python benchmarks/render_speed.py [--frames 40] [--size 240x320] [--repeats 3]

Prints frames/s per mode from wall time and from the process's CPU time (on a shared machine the CPU
figure is the steadier one: it leaves out time spent waiting for the core), then where a frame's time
goes: one more profiled pass of render_frame, each component's share of the profiled time and the
matching milliseconds of an unprofiled frame. Writes nothing. Thread pools are pinned to one thread
before NumPy loads.
"""
from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "NUMEXPR_NUM_THREADS"):
    os.environ[_var] = "1"

import argparse  # noqa: E402
import cProfile  # noqa: E402
import pstats  # noqa: E402
import statistics  # noqa: E402
import time  # noqa: E402

import cv2  # noqa: E402

from mtl_perception.cli.data import parse_size  # noqa: E402
from mtl_perception.data.synthetic import render_frame, render_sequence  # noqa: E402

COMPONENTS = {  # label -> (module file suffix, function name); cumulative times of these functions
    "scene sampling (room, furniture, clutter, lights)": ("data/scene.py", "sample_scene"),
    "primary rays (room and objects)": ("data/raycast.py", "_cast"),
    "surfaces (normals, texture coordinates)": ("data/geometry.py", "surface"),
    "textures and decals (albedo)": ("data/materials.py", "albedo"),
    "lighting (all lights, shadows, occlusion)": ("data/lighting.py", "irradiance"),
    "  of which shadow rays": ("data/lighting.py", "shadow_visibility"),
    "  of which ambient occlusion": ("data/lighting.py", "ambient_occlusion"),
    "sensor (blur, noise, exposure, JPEG)": ("data/sensor.py", "expose"),
}


def _timed(run, repeats: int) -> tuple[float, float]:
    """Median wall and CPU seconds of ``repeats`` runs."""
    walls, cpus = [], []
    for _ in range(repeats):
        wall, cpu = time.perf_counter(), time.process_time()
        run()
        walls.append(time.perf_counter() - wall)
        cpus.append(time.process_time() - cpu)
    return statistics.median(walls), statistics.median(cpus)


def _components(frames: int, height: int, width: int, frame_ms: float) -> None:
    profile = cProfile.Profile()
    profile.enable()
    for seed in range(frames):
        render_frame(seed, height, width)
    profile.disable()
    stats = pstats.Stats(profile).stats  # type: ignore[attr-defined]
    total = sum(entry[3] for key, entry in stats.items() if key[2] == "render_frame")
    print(f"where a render_frame goes (profiled pass; ms scaled to an unprofiled {frame_ms:.1f} ms frame)")
    for label, (suffix, name) in COMPONENTS.items():
        cumulative = sum(entry[3] for key, entry in stats.items() if key[0].endswith(suffix) and key[2] == name)
        share = cumulative / total if total else 0.0
        print(f"  {label:52s} {100 * share:5.1f} %  {share * frame_ms:6.1f} ms")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--frames", type=int, default=40, help="frames timed per mode (default 40)")
    parser.add_argument("--size", type=parse_size, default=(240, 320), metavar="HxW", help="render size (default 240x320)")
    parser.add_argument("--repeats", type=int, default=3, help="timed repeats; the median is reported (default 3)")
    args = parser.parse_args()
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})
    cv2.setNumThreads(1)
    height, width = args.size
    render_frame(0, height, width)  # warm-up
    modes = {
        "independent rooms (render_frame)": lambda: [render_frame(seed, height, width) for seed in range(args.frames)],
        "sequence (render_sequence)": lambda: list(render_sequence(0, args.frames, height, width)),
    }
    print(f"synthetic renderer, {height}x{width}, 1 core, {args.frames} frames x {args.repeats} repeats (median)")
    frame_ms = 0.0
    for name, run in modes.items():
        wall, cpu = _timed(run, args.repeats)
        frame_ms = frame_ms or 1000.0 * cpu / args.frames
        print(f"  {name:34s} {args.frames / wall:7.1f} frames/s (wall)  {args.frames / cpu:7.1f} frames/s (CPU time)")
    _components(args.frames, height, width, frame_ms)


if __name__ == "__main__":
    main()
