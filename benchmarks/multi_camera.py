"""Several cameras: one node with N cameras against N single-camera nodes, and batched against unbatched inference.

Usage: .venv/bin/python benchmarks/multi_camera.py [--model models/default.onnx] [--cameras 2 4] [--rate 15] [--duration 20]

Part 1, in this process: the deploy graph on N frames of 640x480 cameras, one batched call
(``FramePipeline.run_batch``) against N calls of one frame (``FramePipeline.run``), interleaved; prints the
ratio unbatched / batched for each N.

Part 2, real processes: N cameras publishing 640x480 rgb8 frames at --rate Hz each for --duration seconds
(with camera info), served either by one perception_node with ``cameras.names: [cam0 ... camN-1]`` or by N
perception_nodes with one camera each, side by side in one run (same model, CPU onnxruntime, outputs
depth, semantic and normals subscribed, reliable QoS). Prints, for each set-up: outputs received per
second in total and per camera, output latency p50/p99 per camera (publish -> last output received),
and the resident memory of the node process(es) (target: one node with 4 cameras <= 0.4 x four nodes).
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
from ros_bench_common import rss_mb, stop_nodes, use_transport

ROOT = Path(__file__).resolve().parents[1]
TOPICS = ("depth", "semantic", "normals")


def batched_vs_unbatched(model: Path, counts: list[int], repeats: int) -> None:
    from mtl_perception.inference.frame_pipeline import FramePipeline
    from mtl_perception.inference.sample_images import sample_image

    pipeline = FramePipeline(model, "onnxruntime", {"provider": "cpu"}, cache_dir=Path(tempfile.mkdtemp(prefix="multi_camera_")))
    outputs = ("depth", "labels", "normals")
    frames = [(sample_image(480, 640, seed=i), "rgb8", None) for i in range(max(counts))]
    print("[1] deploy graph, 640x480 frames, medians of interleaved runs")
    for count in counts:
        batch = frames[:count]
        pipeline.run_batch(batch, outputs)
        for pixels, encoding, _ in batch:
            pipeline.run(pixels, encoding, outputs)
        together, apart = [], []
        for _ in range(repeats):
            start = time.perf_counter()
            pipeline.run_batch(batch, outputs)
            middle = time.perf_counter()
            for pixels, encoding, _ in batch:
                pipeline.run(pixels, encoding, outputs)
            together.append(middle - start)
            apart.append(time.perf_counter() - middle)
        t, a = float(np.median(together)) * 1e3, float(np.median(apart)) * 1e3
        print(f"    N={count}: one batched call {t:.1f} ms, {count} single calls {a:.1f} ms; unbatched / batched = {a / t:.2f}")
    pipeline.close()


class Receiver:
    """Arrival times of every camera's outputs (raw subscriptions: the stamp read from the CDR header)."""

    def __init__(self) -> None:
        self.arrivals: dict[tuple[str, int], dict[str, float]] = {}
        self.lock = threading.Lock()

    def on_output(self, camera: str, topic: str, raw: bytes) -> None:
        now = time.monotonic()
        stamp = int.from_bytes(raw[4:8], "little", signed=True)
        with self.lock:
            self.arrivals.setdefault((camera, stamp), {})[topic] = now

    def complete(self, camera: str, stamp: int) -> float | None:
        got = self.arrivals.get((camera, stamp), {})
        return max(got.values()) if len(got) == len(TOPICS) else None


def node_command(model: Path, namespace: str, cameras: list[str] | None) -> list[str]:
    command = [sys.executable, "-m", "mtl_perception.ros.node", "--ros-args", "-r", f"__ns:={namespace}", "-p", f"model.path:={model}",
               "-p", "model.provider:=cpu", "-p", "qos.reliability:=reliable", "-p", "qos.depth:=2"]
    if cameras is not None:
        command += ["-p", f"cameras.names:=[{','.join(cameras)}]"]
    return command


def serve(model: Path, count: int, single_nodes: bool, rate: float, duration: float, workdir: Path) -> dict:
    """Run one set-up; returns its figures."""
    import rclpy
    from rclpy.executors import SingleThreadedExecutor
    from rclpy.qos import QoSProfile, ReliabilityPolicy
    from sensor_msgs.msg import CameraInfo, Image

    from mtl_perception.inference.sample_images import sample_image
    from mtl_perception.inference.image_codec import array_to_image_msg

    names = [f"cam{i}" for i in range(count)]
    if single_nodes:  # node i serves /bench/cam<i>/... (its namespace), image topic "image" -> /bench/cam<i>/image
        commands = [node_command(model, f"/bench/{name}", None) for name in names]
        prefix = {name: f"/bench/{name}" for name in names}
    else:
        commands = [node_command(model, "/bench", names)]
        prefix = {name: f"/bench/{name}" for name in names}
    logs = [open(workdir / f"node_{single_nodes}_{count}_{i}.log", "w") for i in range(len(commands))]
    nodes = [subprocess.Popen(c, stdout=log, stderr=subprocess.STDOUT, env=dict(os.environ)) for c, log in zip(commands, logs)]
    context = rclpy.Context()
    rclpy.init(context=context)
    bench = rclpy.create_node("multi_camera_bench", context=context)
    reliable = QoSProfile(depth=5, reliability=ReliabilityPolicy.RELIABLE)
    receiver = Receiver()
    for name in names:
        for topic in TOPICS:
            bench.create_subscription(Image, f"{prefix[name]}/{topic}", lambda raw, c=name, t=topic: receiver.on_output(c, t, raw), reliable, raw=True)
    images = {name: bench.create_publisher(Image, f"{prefix[name]}/image", reliable) for name in names}
    infos = {name: bench.create_publisher(CameraInfo, f"{prefix[name]}/camera_info", reliable) for name in names}
    executor = SingleThreadedExecutor(context=context)
    executor.add_node(bench)
    spinner = threading.Thread(target=executor.spin, daemon=True)
    spinner.start()
    messages = [array_to_image_msg(sample_image(480, 640, seed=i), "rgb8") for i in range(4)]
    info = CameraInfo(width=640, height=480)
    info.k = [525.0, 0.0, 319.5, 0.0, 525.0, 239.5, 0.0, 0.0, 1.0]
    info.p = [525.0, 0.0, 319.5, 0.0, 0.0, 525.0, 239.5, 0.0, 0.0, 0.0, 1.0, 0.0]
    sent: dict[tuple[str, int], float] = {}
    try:
        deadline = time.monotonic() + 120
        while any(p.get_subscription_count() == 0 for p in images.values()) or any(
                bench.count_publishers(f"{prefix[n]}/{t}") == 0 for n in names for t in TOPICS):
            if time.monotonic() > deadline or any(n.poll() is not None for n in nodes):
                raise RuntimeError(f"the node(s) did not come up; see {workdir}")
            time.sleep(0.1)
        time.sleep(1.0)
        for warm in range(3):  # build the graphs (each camera layout, batch sizes) before timing
            for name in names:
                msg = messages[warm % len(messages)]
                msg.header.stamp.sec, msg.header.frame_id = 1 + warm, name
                images[name].publish(msg)
            time.sleep(1.5)
        period = 1.0 / rate
        start = time.monotonic()
        tick = 0
        rss_peak = 0.0
        while time.monotonic() - start < duration:
            target = start + tick * period
            time.sleep(max(0.0, target - time.monotonic()))
            stamp = 1000 + tick
            for index, name in enumerate(names):
                msg = messages[(tick + index) % len(messages)]
                msg.header.stamp.sec, msg.header.frame_id = stamp, name
                info.header = msg.header
                infos[name].publish(info)
                sent[(name, stamp)] = time.monotonic()
                images[name].publish(msg)
            tick += 1
            if tick % int(rate) == 0:
                rss_peak = max(rss_peak, sum(rss_mb(n.pid) for n in nodes))
        time.sleep(3.0)
    finally:
        stop_nodes(nodes)
        executor.shutdown()
        bench.destroy_node()
        rclpy.try_shutdown(context=context)
        for log in logs:
            log.close()
    with receiver.lock:
        latency = {name: [receiver.complete(name, s) - t for (c, s), t in sent.items() if c == name and receiver.complete(name, s) is not None]
                   for name in names}
    served = {name: len(values) / duration for name, values in latency.items()}
    return {"served": served, "latency": latency, "rss": rss_peak, "processes": len(nodes)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, default=ROOT / "models" / "default.onnx", help="exported .onnx model (default: the bundled one)")
    parser.add_argument("--cameras", type=int, nargs="+", default=[2, 4], help="camera counts to compare")
    parser.add_argument("--rate", type=float, default=15.0, help="frames per second of each camera")
    parser.add_argument("--duration", type=float, default=20.0, help="seconds of input per set-up")
    parser.add_argument("--repeats", type=int, default=10, help="interleaved repeats of part 1")
    parser.add_argument("--skip-nodes", action="store_true", help="part 1 only")
    args = parser.parse_args()
    os.environ.setdefault("ROS_DOMAIN_ID", str(1 + os.getpid() % 100))
    os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
    use_transport("profile")
    print(f"model {args.model.name}; {os.cpu_count()} CPU cores; onnxruntime cpu")
    batched_vs_unbatched(args.model, args.cameras, args.repeats)
    if args.skip_nodes:
        return 0
    workdir = Path(tempfile.mkdtemp(prefix="multi_camera_nodes_"))
    ms = lambda values, q: float(np.percentile(values, q)) * 1e3 if values else float("nan")  # noqa: E731
    print(f"\n[2] {args.rate:.0f} Hz per 640x480 camera for {args.duration:.0f} s, outputs {list(TOPICS)}")
    for count in args.cameras:
        one = serve(args.model, count, False, args.rate, args.duration, workdir)
        many = serve(args.model, count, True, args.rate, args.duration, workdir)
        for label, figures in (("one node", one), (f"{count} nodes", many)):
            per_camera = ", ".join(f"{name} {figures['served'][name]:.1f}/s p50 {ms(figures['latency'][name], 50):.0f} ms p99 {ms(figures['latency'][name], 99):.0f} ms"
                                   for name in figures["served"])
            print(f"    N={count}, {label:8s}: {sum(figures['served'].values()):.1f} frames/s served in total; RSS {figures['rss']:.0f} MB "
                  f"in {figures['processes']} process(es); {per_camera}")
        ratio = sum(one["served"].values()) / max(sum(many["served"].values()), 1e-9)
        memory = one["rss"] / many["rss"] if many["rss"] else float("nan")
        target = " (target <= 0.4: " + ("met" if memory <= 0.4 else "NOT met") + ")" if count == 4 else ""
        print(f"    N={count}: frames served one node / {count} nodes = {ratio:.2f}; resident memory one node / {count} nodes = {memory:.2f}{target}")
    print(f"logs: {workdir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
