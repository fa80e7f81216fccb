"""Soak test: perception_node under a steady 60 Hz stream of 640x480 frames for a long time.

Usage: .venv/bin/python benchmarks/node_soak.py [--duration 600] [--rate 60] [--model models/default.onnx] [--json OUT.json]

perception_node runs in its own process (reliable QoS in and out, the shipped Fast DDS profile unless
--transport says otherwise); this script is the camera and the subscriber (depth, semantic, normals
by default). It checks and prints:

- no crash: the node is alive at the end and exits 0 on SIGINT;
- memory: the node's resident memory (RSS), sampled every --sample-every seconds: the floor (min) and the
  peak (max) of the first fifth of the run after --warmup seconds against those of the last fifth
  (target <= +5 % for both; single samples swing by the frame buffers in flight);
- latency: output latency (publish -> last subscribed output received) p99 against the node's
  inference time (diagnostics p95) + one frame period, the issue's bound, and against the node's whole
  per-frame processing (decode..publish, p95) + one frame period, which is what "latest frame wins"
  guarantees when post-processing at camera resolution is not negligible;
- drops: frames published minus frames whose outputs arrived, against the node's diagnostics
  (frames_dropped + frames_failed + frames lost before the node): they must be equal.

Exit code 0 when every criterion is met, 1 otherwise; --json writes every figure.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
from ros_bench_common import rss_mb, stop_nodes, use_transport

ROOT = Path(__file__).resolve().parents[1]
STAGES = ("decode", "graph", "messages", "publish")  # the node's diagnostics stages


class Outputs:
    """Arrival time of each subscribed output per frame (stamp.sec), and the node's latest diagnostics."""

    def __init__(self, topics: list[str]) -> None:
        self.topics = topics
        self.arrivals: dict[int, dict[str, float]] = {}
        self.lock = threading.Lock()
        self.diagnostics: dict[str, str] = {}
        self.diagnostics_level = 0
        self.diagnostics_seen = 0

    def on_output(self, topic: str, msg: Any) -> None:
        now = time.monotonic()
        with self.lock:
            self.arrivals.setdefault(msg.header.stamp.sec, {})[topic] = now

    def on_diagnostics(self, msg: Any) -> None:
        for status in msg.status:
            if status.name.endswith(": perception"):
                with self.lock:
                    self.diagnostics = {kv.key: kv.value for kv in status.values}
                    self.diagnostics_level = status.level[0] if isinstance(status.level, bytes) else int(status.level)
                    self.diagnostics_seen += 1

    def completed(self) -> dict[int, float]:
        """frame -> arrival of its last subscribed output, for frames with every output."""
        with self.lock:
            return {frame: max(got.values()) for frame, got in self.arrivals.items() if len(got) == len(self.topics)}

    def snapshot(self) -> dict[str, str]:
        with self.lock:
            return dict(self.diagnostics)


def _wait(predicate, timeout: float, what: str, node: subprocess.Popen, log: Path) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if node.poll() is not None:
            raise RuntimeError(f"the node exited with code {node.returncode} while waiting for {what}; see {log}")
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out waiting for {what}; see {log}")
        time.sleep(0.1)


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Run the soak; returns every figure (see the module docstring)."""
    use_transport(args.transport)
    os.environ.setdefault("ROS_DOMAIN_ID", str(1 + os.getpid() % 100))
    os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
    import rclpy
    from diagnostic_msgs.msg import DiagnosticArray
    from rclpy.executors import SingleThreadedExecutor
    from rclpy.qos import QoSProfile, ReliabilityPolicy
    from sensor_msgs.msg import Image

    from mtl_perception.inference.sample_images import sample_image
    from mtl_perception.inference.image_codec import array_to_image_msg

    workdir = Path(tempfile.mkdtemp(prefix="node_soak_"))
    log_path = workdir / "node.log"
    node_cmd = [
        sys.executable, "-m", "mtl_perception.ros.node", "--ros-args", "-r", "__ns:=/soak",
        "-p", f"model.path:={args.model}", "-p", "model.provider:=cpu", "-p", f"model.threads:={args.threads}",
        "-p", "qos.reliability:=reliable", "-p", f"qos.depth:={args.qos_depth}", "-p", f"output.resolution:={args.resolution}",
        *[item for key in ("depth", "depth_camera_info", "depth_color", "semantic", "semantic_color", "semantic_overlay", "normals", "points")
          for item in ("-p", f"output.{key}:={'true' if key in args.outputs else 'false'}")],
    ]
    log = open(log_path, "w")
    node = subprocess.Popen(node_cmd, stdout=log, stderr=subprocess.STDOUT, env=dict(os.environ))

    rclpy.init()
    camera = rclpy.create_node("node_soak_camera")
    reliable = QoSProfile(depth=args.qos_depth, reliability=ReliabilityPolicy.RELIABLE)
    outputs = Outputs(list(args.outputs))
    subscriptions = [camera.create_subscription(Image, f"/soak/{t}", lambda m, t=t: outputs.on_output(t, m), reliable) for t in args.outputs]
    camera.create_subscription(DiagnosticArray, "/diagnostics", outputs.on_diagnostics, 10)
    publisher = camera.create_publisher(Image, "/soak/image", reliable)
    executor = SingleThreadedExecutor()
    executor.add_node(camera)
    spinner = threading.Thread(target=executor.spin, daemon=True)
    spinner.start()
    figures: dict[str, Any] = {"duration_s": args.duration, "rate_hz": args.rate, "frame": f"{args.width}x{args.height} rgb8",
                               "model": str(args.model), "outputs": list(args.outputs), "resolution": args.resolution,
                               "transport": args.transport, "node_log": str(log_path)}
    try:
        _wait(lambda: publisher.get_subscription_count() > 0 and all(camera.count_publishers(f"/soak/{t}") > 0 for t in args.outputs)
              and outputs.diagnostics_seen > 0, 120, "the node's subscription and outputs", node, log_path)
        assert subscriptions
        messages = [array_to_image_msg(sample_image(args.height, args.width, seed=i), "rgb8") for i in range(8)]
        for msg in messages:
            msg.header.frame_id = "camera_optical"
        time.sleep(1.5)  # one diagnostics period, so that 'before' is current
        before = outputs.snapshot()
        sent_at: dict[int, float] = {}
        rss_samples: list[tuple[float, float]] = []
        period = 1.0 / args.rate
        start = time.monotonic()
        next_sample = start
        index = 0
        while time.monotonic() - start < args.duration:
            target = start + index * period
            delay = target - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            msg = messages[index % len(messages)]
            msg.header.stamp.sec, msg.header.stamp.nanosec = 100000 + index, 0
            sent_at[100000 + index] = time.monotonic()
            publisher.publish(msg)
            index += 1
            now = time.monotonic()
            if now >= next_sample:
                if node.poll() is not None:
                    raise RuntimeError(f"the node died (exit {node.returncode}) after {now - start:.0f} s; see {log_path}")
                rss_samples.append((round(now - start, 1), rss_mb(node.pid)))
                next_sample += args.sample_every
        publish_seconds = time.monotonic() - start
        rss_samples.append((round(time.monotonic() - start, 1), rss_mb(node.pid)))
        time.sleep(max(3.0, 2 * args.settle))  # the last frame through, and a diagnostics period after it
        alive = node.poll() is None
        after = outputs.snapshot()
        completed = outputs.completed()
    finally:
        stop_nodes([node], 30.0)
        executor.shutdown()
        camera.destroy_node()
        rclpy.try_shutdown()
        log.close()

    count = lambda key: int(after[key]) - int(before.get(key, 0))  # noqa: E731
    latencies = np.array([completed[s] - t for s, t in sent_at.items() if s in completed]) * 1e3
    published = len(sent_at)
    arrived = len(latencies)
    node_received, node_dropped, node_failed = count("frames_received"), count("frames_dropped"), count("frames_failed")
    node_processed, node_skipped = count("frames_processed"), count("frames_skipped_no_subscribers")
    lost_before_node = published - node_received
    infer_p95 = float(after["latency_graph_p95_ms"])
    processing_p95 = sum(float(after[f"latency_{stage}_p95_ms"]) for stage in STAGES)
    # RSS swings by the frame buffers in flight (tens of MB at 640x480); growth compares the floor (min) and
    # the peak (max) of the first and last windows after warm-up, each a fifth of the run
    window = max((args.duration - args.warmup) / 5.0, args.sample_every)
    first = [r for t, r in rss_samples if args.warmup <= t < args.warmup + window] or [rss_samples[0][1]]
    last = [r for t, r in rss_samples if t >= args.duration - window] or [rss_samples[-1][1]]
    floor_growth = (min(last) - min(first)) / min(first) * 100.0
    peak_growth = (max(last) - max(first)) / max(first) * 100.0
    figures.update({
        "published": published, "achieved_rate_hz": round(published / publish_seconds, 2), "outputs_arrived": arrived,
        "node_received": node_received, "node_processed": node_processed, "node_dropped": node_dropped, "node_failed": node_failed,
        "node_skipped_no_subscribers": node_skipped, "lost_before_node": lost_before_node,
        "dropped_counted_here": published - arrived, "dropped_by_diagnostics": node_dropped + node_failed + node_skipped + lost_before_node,
        "latency_ms": {"median": float(np.median(latencies)), "p99": float(np.percentile(latencies, 99)), "max": float(latencies.max())} if arrived else None,
        "infer_ms": {"median": float(after["latency_graph_median_ms"]), "p95": infer_p95},
        "processing_p95_ms": processing_p95, "frame_period_ms": period * 1e3,
        "node_stage_ms": {stage: {"median": float(after[f"latency_{stage}_median_ms"]), "p95": float(after[f"latency_{stage}_p95_ms"])}
                          for stage in (*STAGES, "total") if after.get(f"latency_{stage}_median_ms", "n/a") != "n/a"},
        "rss_mb": {"first_window_min_max": [min(first), max(first)], "last_window_min_max": [min(last), max(last)], "window_s": window,
                   "floor_growth_percent": floor_growth, "peak_growth_percent": peak_growth, "growth_percent": max(floor_growth, peak_growth),
                   "max": max(r for _, r in rss_samples), "samples": rss_samples},
        "node_alive_at_end": alive, "node_exit_code": node.returncode,
    })
    p99 = figures["latency_ms"]["p99"] if arrived else float("inf")
    figures["checks"] = {
        "no_crash": alive and node.returncode == 0,
        "rss_growth_at_most_5_percent": figures["rss_mb"]["growth_percent"] <= 5.0,
        "p99_within_inference_plus_one_period": p99 <= infer_p95 + period * 1e3,
        "p99_within_processing_plus_one_period": p99 <= processing_p95 + period * 1e3,
        "node_latency_p95_within_processing_plus_one_period": figures["node_stage_ms"]["total"]["p95"] <= processing_p95 + period * 1e3,
        "drops_equal_diagnostics": figures["dropped_counted_here"] == figures["dropped_by_diagnostics"],
        "every_processed_frame_arrived": arrived == node_processed,
    }
    return figures


def report(figures: dict[str, Any]) -> str:
    lat = figures["latency_ms"] or {"median": float("nan"), "p99": float("nan"), "max": float("nan")}
    rss = figures["rss_mb"]
    lines = [
        f"soak: {figures['duration_s']:.0f} s of {figures['frame']} at {figures['rate_hz']:.0f} Hz (achieved {figures['achieved_rate_hz']} Hz), "
        f"model {Path(figures['model']).name}, outputs {figures['outputs']} at {figures['resolution']} resolution, Fast DDS {figures['transport']}",
        f"  frames: published {figures['published']}, node received {figures['node_received']}, processed {figures['node_processed']}, "
        f"dropped {figures['node_dropped']}, failed {figures['node_failed']}; outputs arrived for {figures['outputs_arrived']}",
        f"  drops: counted here (published - arrived) {figures['dropped_counted_here']}; diagnostics (dropped + failed + skipped + lost before the node "
        f"{figures['lost_before_node']}) {figures['dropped_by_diagnostics']}",
        f"  latency publish -> outputs: median {lat['median']:.1f} ms, p99 {lat['p99']:.1f} ms, max {lat['max']:.1f} ms; "
        f"inference p95 {figures['infer_ms']['p95']:.1f} ms (median {figures['infer_ms']['median']:.1f}); whole processing p95 {figures['processing_p95_ms']:.1f} ms; "
        f"frame period {figures['frame_period_ms']:.1f} ms",
        "  node stages median/p95 (ms): " + ", ".join(f"{k} {v['median']:.1f}/{v['p95']:.1f}" for k, v in figures["node_stage_ms"].items()),
        f"  bounds: inference + period = {figures['infer_ms']['p95'] + figures['frame_period_ms']:.1f} ms; processing + period = "
        f"{figures['processing_p95_ms'] + figures['frame_period_ms']:.1f} ms",
        f"  node RSS (min-max over {rss['window_s']:.0f} s windows): first after warm-up {rss['first_window_min_max'][0]:.1f}-{rss['first_window_min_max'][1]:.1f} MB, "
        f"last {rss['last_window_min_max'][0]:.1f}-{rss['last_window_min_max'][1]:.1f} MB: floor {rss['floor_growth_percent']:+.2f} %, "
        f"peak {rss['peak_growth_percent']:+.2f} %; max {rss['max']:.1f} MB",
        f"  node alive at the end: {figures['node_alive_at_end']}, exit code after SIGINT: {figures['node_exit_code']}",
    ]
    lines += [f"  {'PASS' if ok else 'FAIL'} {name}" for name, ok in figures["checks"].items()]
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duration", type=float, default=600.0, help="seconds of 60 Hz input")
    parser.add_argument("--rate", type=float, default=60.0, help="camera frames per second")
    parser.add_argument("--width", type=int, default=640, help="camera frame width")
    parser.add_argument("--height", type=int, default=480, help="camera frame height")
    parser.add_argument("--model", type=Path, default=ROOT / "models" / "default.onnx", help="exported .onnx model the node runs")
    parser.add_argument("--outputs", nargs="+", default=["depth", "semantic", "normals"], choices=["depth", "semantic", "normals"],
                        help="outputs the node publishes and this script subscribes to (the others are switched off)")
    parser.add_argument("--resolution", choices=("input", "model"), default="input", help="output.resolution of the node")
    parser.add_argument("--threads", type=int, default=0, help="model.threads of the node; 0 = onnxruntime's default")
    parser.add_argument("--qos-depth", type=int, default=5, help="keep-last depth of every topic (reliable QoS)")
    parser.add_argument("--transport", choices=("profile", "large_data", "default"), default="profile",
                        help="Fast DDS set-up of both processes: the shipped profile, FASTDDS_BUILTIN_TRANSPORTS=LARGE_DATA, or defaults")
    parser.add_argument("--warmup", type=float, default=10.0, help="seconds before the RSS baseline is taken")
    parser.add_argument("--sample-every", type=float, default=1.0, help="seconds between RSS samples")
    parser.add_argument("--settle", type=float, default=1.5, help="seconds to wait for the last outputs after the input stops")
    parser.add_argument("--json", type=Path, help="also write every figure to this JSON file")
    args = parser.parse_args()
    if not args.model.is_file():
        parser.error(f"--model {args.model}: no such file (export one with `mtl-perception export`)")
    args.warmup = min(args.warmup, args.duration / 3)
    figures = run(args)
    print(report(figures), flush=True)
    if args.json:
        args.json.write_text(json.dumps(figures, indent=1))
    return 0 if all(figures["checks"].values()) else 1


if __name__ == "__main__":
    sys.exit(main())
