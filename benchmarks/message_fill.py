"""What rclpy costs to fill (and serialise) the ``data`` field of an image message, by the kind of value assigned.

Usage: .venv/bin/python benchmarks/message_fill.py [--repeats 30]

For 1-4 MB buffers (a 640x480 bgr8 image, 32FC1 depth, 32FC3 normals, a point cloud) it times, side by
side in one run: ``bytes`` (``array.tobytes()``), ``array.array('B')`` (filled with ``frombytes``), a
``memoryview`` and a NumPy array assigned directly; each as fill time (constructing the message and
assigning ``data``) and serialisation time (what ``publish`` does next). The node uses the fastest
correct one (``ros/outputs.py``: bytes). Every variant is checked to carry the same bytes.
"""
from __future__ import annotations

import argparse
import array
import sys
import time

import numpy as np


def fill_variants() -> dict[str, object]:
    def as_bytes(a: np.ndarray) -> object:
        return a.tobytes()

    def as_array(a: np.ndarray) -> object:
        data = array.array("B")
        data.frombytes(memoryview(np.ascontiguousarray(a)).cast("B"))
        return data

    def as_memoryview(a: np.ndarray) -> object:
        return memoryview(np.ascontiguousarray(a)).cast("B")

    def as_numpy(a: np.ndarray) -> object:
        return np.ascontiguousarray(a).reshape(-1).view(np.uint8)

    return {"bytes": as_bytes, "array.array": as_array, "memoryview": as_memoryview, "numpy": as_numpy}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=30, help="fills per variant and buffer (interleaved rounds)")
    args = parser.parse_args()
    from rclpy.serialization import serialize_message
    from sensor_msgs.msg import Image

    rng = np.random.default_rng(0)
    buffers = {
        "bgr8 640x480 (0.9 MB)": rng.integers(0, 256, (480, 640, 3), dtype=np.uint8),
        "32FC1 640x480 (1.2 MB)": rng.random((480, 640), dtype=np.float32),
        "32FC3 640x480 (3.7 MB)": rng.random((480, 640, 3), dtype=np.float32),
    }
    variants = fill_variants()
    print(f"rclpy message fill, {args.repeats} rounds, variants interleaved; medians in ms")
    print(f"{'buffer':26s} {'variant':12s} {'fill':>8s} {'serialise':>10s} {'fill / bytes':>13s}")
    for name, buffer in buffers.items():
        expected = buffer.tobytes()
        fill: dict[str, list[float]] = {v: [] for v in variants}
        serial: dict[str, list[float]] = {v: [] for v in variants}
        repeats = {v: (3 if v in ("memoryview", "numpy") else args.repeats) for v in variants}  # the slow ones: a few rounds
        for round_index in range(args.repeats):
            for variant, make in variants.items():
                if round_index >= repeats[variant]:
                    continue
                start = time.perf_counter()
                msg = Image(height=buffer.shape[0], width=buffer.shape[1], encoding="bgr8")
                msg.data = make(buffer)
                filled = time.perf_counter()
                wire = serialize_message(msg)
                serialised = time.perf_counter()
                if round_index == 0 and bytes(msg.data) != expected:
                    print(f"{variant}: WRONG bytes", file=sys.stderr)
                    return 1
                fill[variant].append(filled - start)
                serial[variant].append(serialised - filled)
                del wire
        base = float(np.median(fill["bytes"]))
        for variant in variants:
            f, s = float(np.median(fill[variant])), float(np.median(serial[variant]))
            print(f"{name:26s} {variant:12s} {f * 1e3:8.3f} {s * 1e3:10.3f} {f / base:13.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
