#!/usr/bin/env python3
"""Synthetic renderer speed: frames per second at 240x320 on one CPU core (scene sampling included).

    .venv/bin/python benchmarks/render_speed.py [--frames 40] [--size 240x320]

Prints the figure and writes nothing. Thread pools are pinned to one thread before NumPy loads.
"""
from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "NUMEXPR_NUM_THREADS"):
    os.environ[_var] = "1"

import argparse  # noqa: E402
import statistics  # noqa: E402
import time  # noqa: E402

from mtl_perception.cli.data import parse_size  # noqa: E402
from mtl_perception.data.synthetic import render_frame, render_sequence  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--frames", type=int, default=40, help="frames timed per mode (default 40)")
    parser.add_argument("--size", type=parse_size, default=(240, 320), metavar="HxW", help="render size (default 240x320)")
    parser.add_argument("--repeats", type=int, default=3, help="timed repeats; the median is reported (default 3)")
    args = parser.parse_args()
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})
    height, width = args.size
    render_frame(0, height, width)  # warm-up
    modes = {
        "independent rooms (render_frame)": lambda: [render_frame(seed, height, width) for seed in range(args.frames)],
        "sequence (render_sequence)": lambda: list(render_sequence(0, args.frames, height, width)),
    }
    print(f"synthetic renderer, {height}x{width}, 1 core, {args.frames} frames x {args.repeats} repeats (median)")
    for name, run in modes.items():
        times = []
        for _ in range(args.repeats):
            start = time.perf_counter()
            run()
            times.append(time.perf_counter() - start)
        print(f"  {name:34s} {args.frames / statistics.median(times):7.1f} frames/s")


if __name__ == "__main__":
    main()
