"""What fraction of 640x480 images arrives between two processes with Fast DDS, per transport and QoS.

Usage: .venv/bin/python benchmarks/qos_delivery.py [--count 90] [--rate 30] [--depth 5] [--json OUT.json]

For every Fast DDS set-up (both processes alike) and both reliabilities, a publisher process sends
--count messages at --rate Hz on three topics at once, the sizes the node handles at 640x480:
``image`` (rgb8 camera frame, 0.9 MB), ``depth`` (32FC1 output, 1.2 MB) and ``normals`` (32FC3 output,
3.7 MB); a subscriber process with the same QoS (keep last --depth) counts what arrives and the delivery
latency (receive time - the header stamp, one clock). The set-ups:

- ``default``: Fast DDS's defaults (shared memory with 512 KiB segments, UDP for larger samples),
- ``large_data``: ``FASTDDS_BUILTIN_TRANSPORTS=LARGE_DATA`` (ignored under ``ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST``:
  rmw_fastrtps then installs its own localhost transports; compare with ``--discovery-range LOCALHOST``),
- ``profile``: ``FASTDDS_DEFAULT_PROFILES_FILE=config/fastdds_large_images.xml`` (what the launch file sets).

The node's outputs and the camera's frames travel the same way, so the table is the before (defaults)
and after (the shipped profile or LARGE_DATA) for both.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
from ros_bench_common import transport_env

TOPICS = {"image": ("rgb8", 3, np.uint8), "depth": ("32FC1", 1, np.float32), "normals": ("32FC3", 3, np.float32)}
TRANSPORTS = ("default", "large_data", "profile")
RELIABILITIES = ("best_effort", "reliable")


def delivery_env(transport: str, domain: int, discovery_range: str) -> dict[str, str]:
    """Environment of both processes: the transport set-up plus an isolated domain and discovery range."""
    env = transport_env(transport, drop=("ROS_LOCALHOST_ONLY",))
    env.update(ROS_DOMAIN_ID=str(domain), ROS_AUTOMATIC_DISCOVERY_RANGE=discovery_range, RMW_IMPLEMENTATION="rmw_fastrtps_cpp")
    return env


def _qos(reliability: str, depth: int) -> Any:
    from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy

    policy = ReliabilityPolicy.RELIABLE if reliability == "reliable" else ReliabilityPolicy.BEST_EFFORT
    return QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=depth, reliability=policy)


def publisher_role(args: argparse.Namespace) -> int:
    """Wait for the subscriber, then publish --count messages per topic at --rate Hz."""
    import rclpy
    from sensor_msgs.msg import Image

    from mtl_perception.inference.image_codec import array_to_image_msg

    rclpy.init()
    node = rclpy.create_node("qos_delivery_publisher")
    publishers = {name: node.create_publisher(Image, f"/delivery/{name}", _qos(args.reliability, args.depth)) for name in TOPICS}
    rng = np.random.default_rng(0)
    messages = {}
    for name, (encoding, channels, dtype) in TOPICS.items():
        shape = (480, 640) if channels == 1 else (480, 640, channels)
        pixels = rng.integers(0, 255, shape).astype(dtype) if dtype == np.uint8 else rng.random(shape, dtype=np.float32)
        messages[name] = array_to_image_msg(pixels, encoding)
    deadline = time.monotonic() + 30
    while any(p.get_subscription_count() == 0 for p in publishers.values()) and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(1.0)  # discovery of the remaining endpoints settles
    start = time.monotonic()
    for index in range(args.count):
        delay = start + index / args.rate - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        now = time.time_ns()
        for name, msg in messages.items():
            msg.header.stamp.sec, msg.header.stamp.nanosec = now // 1_000_000_000, now % 1_000_000_000
            msg.header.frame_id = str(index)
            publishers[name].publish(msg)
    time.sleep(args.linger)  # reliable QoS: stay to answer NACKs until the subscriber has everything
    node.destroy_node()
    rclpy.try_shutdown()
    return 0


def subscriber_role(args: argparse.Namespace) -> int:
    """Count distinct messages per topic and their latency until --listen seconds pass; print JSON."""
    import rclpy
    from rclpy.executors import SingleThreadedExecutor
    from sensor_msgs.msg import Image

    rclpy.init()
    node = rclpy.create_node("qos_delivery_subscriber")
    seen: dict[str, dict[int, float]] = {name: {} for name in TOPICS}

    def on_message(name: str, msg: Image) -> None:
        sent = msg.header.stamp.sec + msg.header.stamp.nanosec * 1e-9
        seen[name][int(msg.header.frame_id)] = time.time() - sent

    for name in TOPICS:
        node.create_subscription(Image, f"/delivery/{name}", lambda m, n=name: on_message(n, m), _qos(args.reliability, args.depth))
    executor = SingleThreadedExecutor()
    executor.add_node(node)
    deadline = time.monotonic() + args.listen
    while time.monotonic() < deadline and any(len(v) < args.count for v in seen.values()):
        executor.spin_once(timeout_sec=0.1)
    result = {name: {"received": len(v), "latency_median_ms": float(np.median(list(v.values())) * 1e3) if v else None,
                     "latency_p95_ms": float(np.percentile(list(v.values()), 95) * 1e3) if v else None} for name, v in seen.items()}
    print(json.dumps(result), flush=True)
    node.destroy_node()
    rclpy.try_shutdown()
    return 0


def measure(transport: str, reliability: str, args: argparse.Namespace, domain: int) -> dict[str, Any]:
    """One publisher/subscriber pair; the subscriber's counts."""
    env = delivery_env(transport, domain, args.discovery_range)
    common = ["--reliability", reliability, "--count", str(args.count), "--rate", str(args.rate), "--depth", str(args.depth)]
    listen = args.count / args.rate + 12.0
    subscriber = subprocess.Popen([sys.executable, __file__, "--role", "sub", *common, "--listen", str(listen)], env=env,
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    time.sleep(0.5)
    publisher = subprocess.Popen([sys.executable, __file__, "--role", "pub", *common, "--linger", "6"], env=env,
                                 stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    out, err = subscriber.communicate(timeout=listen + 60)
    publisher.wait(timeout=60)
    publisher.stderr.close()
    if subscriber.returncode != 0 or not out.strip():
        raise RuntimeError(f"subscriber failed ({transport}, {reliability}): {err[-2000:]}")
    return json.loads(out.strip().splitlines()[-1])


def table(results: dict[str, dict[str, dict[str, Any]]], count: int) -> str:
    lines = ["| transport (both processes) | QoS | " + " | ".join(f"{n} arrived (median / p95 latency)" for n in TOPICS) + " |",
             "|---|---|" + "---|" * len(TOPICS)]
    for transport in TRANSPORTS:
        for reliability in RELIABILITIES:
            got = results.get(transport, {}).get(reliability)
            if got is None:
                continue
            cells = []
            for name in TOPICS:
                row = got[name]
                latency = f"{row['latency_median_ms']:.0f} / {row['latency_p95_ms']:.0f} ms" if row["received"] else "-"
                cells.append(f"{row['received']}/{count} = {100.0 * row['received'] / count:.0f} % ({latency})")
            lines.append(f"| `{transport}` | {reliability} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--count", type=int, default=90, help="messages per topic")
    parser.add_argument("--rate", type=float, default=30.0, help="messages per second on each topic")
    parser.add_argument("--depth", type=int, default=5, help="keep-last history depth of both sides")
    parser.add_argument("--transports", nargs="+", choices=TRANSPORTS, default=list(TRANSPORTS), help="Fast DDS set-ups to measure")
    parser.add_argument("--discovery-range", choices=("SUBNET", "LOCALHOST"), default="SUBNET",
                        help="ROS_AUTOMATIC_DISCOVERY_RANGE of both processes (SUBNET is ROS's default; with LOCALHOST, rmw_fastrtps "
                             "sets its own transports and FASTDDS_BUILTIN_TRANSPORTS has no effect)")
    parser.add_argument("--json", type=Path, help="also write the counts to this JSON file")
    parser.add_argument("--role", choices=("pub", "sub"), help=argparse.SUPPRESS)
    parser.add_argument("--reliability", choices=RELIABILITIES, help=argparse.SUPPRESS)
    parser.add_argument("--listen", type=float, default=10.0, help=argparse.SUPPRESS)
    parser.add_argument("--linger", type=float, default=6.0, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.role == "pub":
        return publisher_role(args)
    if args.role == "sub":
        return subscriber_role(args)
    results: dict[str, dict[str, dict[str, Any]]] = {}
    domain = 1 + (os.getpid() * 13) % 100
    print(f"{args.count} messages per topic at {args.rate:g} Hz, keep last {args.depth}, 640x480; publisher and subscriber in two processes; "
          f"ROS_AUTOMATIC_DISCOVERY_RANGE={args.discovery_range}, ROS_DOMAIN_ID={domain}", flush=True)
    for transport in args.transports:
        for reliability in RELIABILITIES:
            started = time.monotonic()
            results.setdefault(transport, {})[reliability] = got = measure(transport, reliability, args, domain)
            print(f"  {transport:10s} {reliability:11s}: " + ", ".join(f"{n} {got[n]['received']}/{args.count}" for n in TOPICS)
                  + f"  ({time.monotonic() - started:.0f} s)", flush=True)
    print()
    print(table(results, args.count))
    if args.json:
        args.json.write_text(json.dumps({"count": args.count, "rate_hz": args.rate, "depth": args.depth, "discovery_range": args.discovery_range,
                                         "results": results}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
