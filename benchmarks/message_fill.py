"""What rclpy costs to fill (and serialise) the ``data`` field of an image message, by the kind of value assigned.

Usage: .venv/bin/python benchmarks/message_fill.py [--repeats 30]

For 1-4 MB buffers (a 640x480 bgr8 image, 32FC1 depth, 32FC3 normals) it times, side by side in one
run: ``bytes`` (``array.tobytes()``), ``array.array('B')`` (filled with ``frombytes``), a ``memoryview``
and a NumPy array assigned to ``data``, each as fill time (constructing the message and assigning
``data``) plus serialisation time (what ``publish`` does next); and the serialised message written
straight from the buffer (``ros/cdr.py``, which ``publish`` takes as it is: no serialisation step).
The node uses the fastest correct one (``ros/outputs.py``). Every variant is checked to carry the
same message (rclpy deserialises each to the same pixels).
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


ENCODINGS = {"bgr8": 3, "32FC1": 4, "32FC3": 12}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=30, help="fills per variant and buffer (interleaved rounds)")
    args = parser.parse_args()
    from rclpy.serialization import deserialize_message, serialize_message
    from sensor_msgs.msg import Image
    from std_msgs.msg import Header

    from mtl_perception.ros.cdr import image_cdr

    rng = np.random.default_rng(0)
    buffers = {
        "bgr8": rng.integers(0, 256, (480, 640, 3), dtype=np.uint8),
        "32FC1": rng.random((480, 640), dtype=np.float32),
        "32FC3": rng.random((480, 640, 3), dtype=np.float32),
    }
    variants = fill_variants()
    print(f"rclpy message fill, {args.repeats} rounds, variants interleaved; medians in ms")
    print(f"{'buffer':26s} {'variant':20s} {'fill':>8s} {'serialise':>10s} {'total / bytes':>14s}")
    header = Header(frame_id="camera_optical")
    for name, buffer in buffers.items():
        label = f"{name} 640x480 ({buffer.nbytes / 1e6:.1f} MB)"
        expected = buffer.tobytes()
        fill: dict[str, list[float]] = {v: [] for v in [*variants, "serialised (cdr.py)"]}
        serial: dict[str, list[float]] = {v: [] for v in fill}
        repeats = {v: (3 if v in ("memoryview", "numpy") else args.repeats) for v in fill}  # the slow ones: a few rounds
        for round_index in range(args.repeats):
            for variant in fill:
                if round_index >= repeats[variant]:
                    continue
                start = time.perf_counter()
                if variant in variants:
                    msg = Image(header=header, height=buffer.shape[0], width=buffer.shape[1], encoding=name, step=buffer.shape[1] * ENCODINGS[name])
                    msg.data = variants[variant](buffer)
                    filled = time.perf_counter()
                    wire = serialize_message(msg)
                else:
                    wire = image_cdr(buffer, name, header, ENCODINGS[name])
                    filled = time.perf_counter()
                serialised = time.perf_counter()
                if round_index == 0 and bytes(deserialize_message(wire, Image).data) != expected:
                    print(f"{variant}: WRONG bytes", file=sys.stderr)
                    return 1
                fill[variant].append(filled - start)
                serial[variant].append(serialised - filled)
                del wire
        base = float(np.median(fill["bytes"]) + np.median(serial["bytes"]))
        for variant in fill:
            f, s_ = float(np.median(fill[variant])), float(np.median(serial[variant]))
            print(f"{label:26s} {variant:20s} {f * 1e3:8.3f} {s_ * 1e3:10.3f} {(f + s_) / base:14.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
