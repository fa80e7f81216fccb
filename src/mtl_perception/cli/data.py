"""``mtl-perception synth``: render synthetic frames to disk in the folder format (docs/data_format.md)."""
from __future__ import annotations

import argparse
import shutil
from pathlib import Path

from tqdm import tqdm

from mtl_perception.cli.errors import command
from mtl_perception.data.folder import write_dataset_meta, write_frame
from mtl_perception.data.geometry import synthetic_intrinsics
from mtl_perception.data.synth_classes import SYNTH_CLASS_NAMES, SYNTH_PALETTE
from mtl_perception.data.synthetic import render_frame, render_sequence
from mtl_perception.safeload import check_allocation, check_path
from mtl_perception.schemas import flag

MAX_SIDE = 8192  # largest rendered side (pixels)
RENDER_BYTES_PER_PIXEL = 320  # peak memory of the ray caster per pixel (measured: about 128 B at 240x320), with margin


def parse_size(text: str) -> tuple[int, int]:
    """Parse ``HxW`` (e.g. 240x320) into (height, width), each 1..MAX_SIDE."""
    parts = text.lower().split("x")
    try:
        height, width = (int(p) for p in parts)
    except ValueError:
        raise argparse.ArgumentTypeError(f"size must look like HxW, e.g. 240x320, got '{text[:40]}'") from None
    if not (1 <= height <= MAX_SIDE and 1 <= width <= MAX_SIDE):
        raise argparse.ArgumentTypeError(f"size must be 1 to {MAX_SIDE} pixels per side, got '{text[:40]}'")
    return height, width


_positive_int = flag(int, ge=1, le=10**7)


def add_synth_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the ``synth`` flags to a (sub)parser."""
    parser.add_argument("--out", type=Path, required=True,
                        help="output folder (created; camera.yaml plus rgb/, depth/, labels/, normals/)")
    parser.add_argument("--count", type=_positive_int, default=100, help="number of frames to render (default 100)")
    parser.add_argument("--size", type=parse_size, default=(240, 320), metavar="HxW",
                        help="image height x width in pixels (default 240x320)")
    parser.add_argument("--sequence", action="store_true",
                        help="render one room along a smooth camera path (for bags and the demo) instead of "
                             "independent random rooms")
    parser.add_argument("--seed", type=flag(int, ge=0, le=2**32 - 1), default=0,
                        help="base seed: frame i of independent rooms uses seed+i; a sequence uses this seed (default "
                             "0)")
    parser.add_argument("--depth-format", choices=("png", "npy"), default="png",
                        help="depth as 16-bit PNG in millimetres (png, default) or float32 metres (npy)")
    parser.add_argument("--normals-format", choices=("npy", "png"), default="npy",
                        help="normals as float32 arrays (npy, default) or 16-bit encoded PNG (png)")
    parser.add_argument("--overwrite", action="store_true", help="replace frames already in --out")


@command
def synth_main(args: argparse.Namespace) -> int:
    """Render ``args.count`` frames into ``args.out``; returns the process exit code."""
    out: Path = check_path(args.out, "--out")
    height, width = args.size
    check_allocation(height * width * RENDER_BYTES_PER_PIXEL, f"rendering {height}x{width} frames",
                     "give a smaller --size")
    if (out / "rgb").is_dir() and any((out / "rgb").iterdir()):
        if not args.overwrite:
            raise SystemExit(f"error: {out} already holds frames; choose another --out or pass --overwrite")
        for sub in ("rgb", "depth", "labels", "normals"):
            shutil.rmtree(out / sub, ignore_errors=True)
    write_dataset_meta(out, synthetic_intrinsics(height, width), SYNTH_CLASS_NAMES, SYNTH_PALETTE,
                       height=height, width=width)
    if args.sequence:
        frames = render_sequence(args.seed, args.count, height, width)
    else:
        frames = (render_frame(args.seed + i, height, width) for i in range(args.count))
    kind = "sequence" if args.sequence else "frames"
    for index, frame in enumerate(tqdm(frames, total=args.count, desc=f"synth {kind} {height}x{width}", unit="frame")):
        write_frame(out, index, frame, depth_format=args.depth_format, normals_format=args.normals_format)
    print(f"wrote {args.count} synthetic {kind} at {height}x{width} to {out}")
    return 0
