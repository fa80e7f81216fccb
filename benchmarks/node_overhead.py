"""What the ROS node costs on top of the bare pipeline, and how it behaves when the camera outruns it.

Usage: .venv/bin/python benchmarks/node_overhead.py [--model MODEL.onnx] [--frames 30] [--duration 60] [--rate 30]

Without --model the default network (hard sharing, ResNet-18, three tasks) is exported with random
weights at 240x320 (latency does not depend on training). perception_node runs in its own process;
this script is the camera and the subscriber (depth, semantic and normals by default, reliable QoS,
history depth 5). Both processes use config/fastdds_large_images.xml (64 MiB shared-memory segments)
unless --transport says otherwise.

Part 1, overhead: 640x480 rgb8 frames one at a time (the next frame is published after the last output
of the previous one arrived). For each frame, side by side: the bare pipeline in this process
(decode -> preprocess -> backend.infer -> postprocess, same model, same settings) and the node end to
end (publish -> last output received). Prints the medians and their ratio (target <= 1.10).

Part 2, sustained: frames at --rate Hz for --duration seconds. Prints output latency median and p99
(publish -> output received), inference time, dropped frames counted here and by the node's
diagnostics, and the node's resident memory (RSS) after warm-up and at the end.
"""
from __future__ import annotations

import argparse
import dataclasses
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
from ros_bench_common import rss_mb, use_transport



def export_random_model(folder: Path, height: int, width: int) -> Path:
    """The default network with random weights, exported to ONNX at height x width."""
    import torch

    from mtl_perception.config import ExperimentConfig
    from mtl_perception.inference.export import export_onnx
    from mtl_perception.model.network import build_model
    from mtl_perception.training.checkpoint import save_checkpoint

    torch.manual_seed(0)
    config = ExperimentConfig()
    config.data.height, config.data.width = height, width
    config.validate()
    checkpoint = folder / "random_default.pt"
    save_checkpoint(checkpoint, {"config": config.to_dict(), "model": build_model(config.model).state_dict(), "step": 0})
    out = folder / f"random_default_{height}x{width}.onnx"
    export_onnx(checkpoint, out, parity_frames=1)
    return out


class Receiver:
    """Arrival times of the node's outputs, per frame index (stamp.sec - 10000) and topic."""

    def __init__(self, topics: list[str]) -> None:
        self.topics = topics
        self.arrivals: dict[int, dict[str, float]] = {}
        self.cond = threading.Condition()
        self.diagnostics: dict[str, str] = {}

    def on_output(self, topic: str, msg) -> None:
        now = time.monotonic()
        with self.cond:
            self.arrivals.setdefault(msg.header.stamp.sec - 10000, {})[topic] = now
            self.cond.notify_all()

    def on_diagnostics(self, msg) -> None:
        for status in msg.status:
            if status.name.endswith("perception"):
                with self.cond:
                    self.diagnostics = {kv.key: kv.value for kv in status.values}
                    self.cond.notify_all()

    def complete(self, index: int) -> float | None:
        """Arrival of the last output of frame ``index``, or None while some are missing."""
        got = self.arrivals.get(index, {})
        return max(got.values()) if len(got) == len(self.topics) else None

    def wait_complete(self, index: int, timeout: float) -> float | None:
        with self.cond:
            self.cond.wait_for(lambda: self.complete(index) is not None, timeout)
            return self.complete(index)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, help="exported .onnx model; default: export the default network (random weights) at --model-size")
    parser.add_argument("--model-size", default="240x320", help="HxW of the exported default model (ignored with --model)")
    parser.add_argument("--width", type=int, default=640, help="camera frame width")
    parser.add_argument("--height", type=int, default=480, help="camera frame height")
    parser.add_argument("--frames", type=int, default=30, help="frames timed one at a time in part 1 (after 3 warm-up frames)")
    parser.add_argument("--duration", type=float, default=60.0, help="seconds of sustained input in part 2; 0 skips part 2")
    parser.add_argument("--rate", type=float, default=30.0, help="frames per second of the sustained input")
    parser.add_argument("--threads", type=int, default=0, help="inference threads (model.threads / intra_op_threads); 0 = onnxruntime default")
    parser.add_argument("--outputs", nargs="+", default=["depth", "semantic", "normals"], choices=["depth", "semantic", "normals"], help="node outputs to subscribe to (the bare pipeline post-processes the same tasks)")
    parser.add_argument("--transport", choices=("profile", "large_data", "default"), default="profile", help="Fast DDS set-up of both processes: config/fastdds_large_images.xml, FASTDDS_BUILTIN_TRANSPORTS=LARGE_DATA, or Fast DDS defaults")
    parser.add_argument("--resolution", choices=("input", "model"), default="input", help="output.resolution of the node (and of the bare pipeline)")
    args = parser.parse_args()

    os.environ.setdefault("ROS_DOMAIN_ID", str(1 + os.getpid() % 100))
    os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
    # Fast DDS's default shared-memory segment is too small for multi-MB images: they fall back to
    # fragmented UDP, and reliable QoS then waits ~3 s for lost fragments (see docs/node.md).
    use_transport(args.transport)
    import rclpy
    from diagnostic_msgs.msg import DiagnosticArray
    from rclpy.executors import SingleThreadedExecutor
    from rclpy.qos import QoSProfile, ReliabilityPolicy
    from sensor_msgs.msg import Image

    from mtl_perception.inference.backends import create_backend
    from mtl_perception.inference.processing import postprocess, preprocess, to_rgb
    from mtl_perception.inference.sample_images import sample_image
    from mtl_perception.ros.image_codec import array_to_image_msg, image_msg_to_array

    workdir = Path(tempfile.mkdtemp(prefix="node_overhead_"))
    model = args.model
    if model is None:
        height, width = (int(v) for v in args.model_size.lower().split("x"))
        print(f"exporting the default network (random weights) at {height}x{width} ...", flush=True)
        model = export_random_model(workdir, height, width)

    node_cmd = [
        sys.executable, "-m", "mtl_perception.ros.node", "--ros-args", "-r", "__ns:=/bench",
        "-p", f"model.path:={model}", "-p", "model.provider:=cpu", "-p", f"model.threads:={args.threads}",
        "-p", "qos.reliability:=reliable", "-p", "qos.depth:=5", "-p", "processing.resize_mode:=letterbox", "-p", f"output.resolution:={args.resolution}",
    ]
    node_log = open(workdir / "node.log", "w")
    node = subprocess.Popen(node_cmd, stdout=node_log, stderr=subprocess.STDOUT, env=dict(os.environ))

    rclpy.init()
    bench = rclpy.create_node("node_overhead_bench")
    reliable = QoSProfile(depth=5, reliability=ReliabilityPolicy.RELIABLE)
    topics = list(args.outputs)
    receiver = Receiver(topics)
    for topic in topics:
        bench.create_subscription(Image, f"/bench/{topic}", lambda msg, t=topic: receiver.on_output(t, msg), reliable)
    bench.create_subscription(DiagnosticArray, "/diagnostics", receiver.on_diagnostics, 10)
    publisher = bench.create_publisher(Image, "/bench/image", reliable)
    executor = SingleThreadedExecutor()
    executor.add_node(bench)
    spinner = threading.Thread(target=executor.spin, daemon=True)
    spinner.start()

    try:
        deadline = time.monotonic() + 120
        while publisher.get_subscription_count() == 0 or any(bench.count_publishers(f"/bench/{t}") == 0 for t in topics):
            if time.monotonic() > deadline or node.poll() is not None:
                raise RuntimeError(f"the node did not come up; see {workdir / 'node.log'}")
            time.sleep(0.1)
        time.sleep(1.0)

        backend = create_backend("onnxruntime", str(model), provider="cpu", intra_op_threads=args.threads)
        meta = backend.metadata
        bare_meta = dataclasses.replace(meta, tasks=[t for t in meta.tasks if t in topics])  # post-process what the node computes
        frames = [sample_image(args.height, args.width, seed=i) for i in range(8)]
        messages = [array_to_image_msg(f, "rgb8") for f in frames]
        print(
            f"model {model.name}: input {meta.input_height}x{meta.input_width}, tasks {meta.tasks}; camera {args.width}x{args.height} rgb8; "
            f"node outputs subscribed: {topics} at {args.resolution} resolution; Fast DDS transport: {args.transport}; onnxruntime cpu, threads {args.threads or 'default'}; {os.cpu_count()} CPU cores",
            flush=True,
        )

        def publish(index: int) -> float:
            msg = messages[index % len(messages)]
            msg.header.stamp.sec, msg.header.frame_id = 10000 + index, "camera_optical"
            sent = time.monotonic()
            publisher.publish(msg)
            return sent

        def bare(index: int) -> tuple[float, float]:
            start = time.perf_counter()
            rgb = to_rgb(image_msg_to_array(messages[index % len(messages)]), "rgb8")
            batch, transform = preprocess(rgb, meta, "letterbox")
            infer_start = time.perf_counter()
            outputs = backend.infer(batch)
            infer_end = time.perf_counter()
            postprocess(outputs, bare_meta, transform, args.resolution)
            return time.perf_counter() - start, infer_end - infer_start

        # ---------------- part 1: overhead, one frame in flight, side by side
        bare_s, infer_s, node_s = [], [], []
        for i in range(args.frames + 3):
            total, infer = bare(i)
            time.sleep(0.2)  # let onnxruntime's worker threads stop spinning before the node's turn
            sent = publish(i)
            arrived = receiver.wait_complete(i, 30.0)
            if arrived is None:
                raise RuntimeError(f"frame {i}: outputs missing after 30 s; see {workdir / 'node.log'}")
            time.sleep(0.2)  # and the node's before the next bare frame
            if i >= 3:
                bare_s.append(total)
                infer_s.append(infer)
                node_s.append(arrived - sent)
        ms = lambda values, q=50: float(np.percentile(values, q)) * 1e3  # noqa: E731
        ratio = ms(node_s) / ms(bare_s)
        print(f"\n[1] overhead, {args.frames} frames one at a time, measured side by side")
        print(f"    bare pipeline (decode+preprocess+infer+postprocess): median {ms(bare_s):.1f} ms, p95 {ms(bare_s, 95):.1f} ms")
        print(f"      of which backend.infer:                          median {ms(infer_s):.1f} ms, p95 {ms(infer_s, 95):.1f} ms")
        print(f"    node end to end (publish -> last output received):  median {ms(node_s):.1f} ms, p95 {ms(node_s, 95):.1f} ms")
        time.sleep(1.2)  # one diagnostics period
        with receiver.cond:
            stages = {k: v for k, v in receiver.diagnostics.items() if k.startswith("latency_") and k.endswith("median_ms")}
        print("    node stages (diagnostics medians, ms): " + ", ".join(f"{k[len('latency_'):-len('_median_ms')]} {float(v):.1f}" for k, v in stages.items() if v != "n/a"))
        print(f"    ratio node / bare pipeline = {ratio:.3f} (target <= 1.10: {'met' if ratio <= 1.10 else 'NOT met'}); node / infer only = {ms(node_s) / ms(infer_s):.3f}")

        # ---------------- part 2: sustained input faster than inference
        if args.duration > 0:
            time.sleep(1.5)
            with receiver.cond:
                before = dict(receiver.diagnostics)
            sent_at: dict[int, float] = {}
            first = args.frames + 3
            period = 1.0 / args.rate
            rss_start = None
            start = time.monotonic()
            index = first
            while time.monotonic() - start < args.duration:
                target = start + (index - first) * period
                time.sleep(max(0.0, target - time.monotonic()))
                sent_at[index] = publish(index)
                index += 1
                if rss_start is None and time.monotonic() - start > min(5.0, args.duration / 4):
                    rss_start = rss_mb(node.pid)
            rss_end_publishing = rss_mb(node.pid)
            rss_start = rss_start if rss_start is not None else rss_end_publishing
            time.sleep(3.0)  # let the last frame through and one more diagnostics period pass
            with receiver.cond:
                after = dict(receiver.diagnostics)
                latencies = [receiver.complete(i) - sent for i, sent in sent_at.items() if receiver.complete(i) is not None]
            published = len(sent_at)
            received_outputs = len(latencies)
            node_received = int(after["frames_received"]) - int(before["frames_received"])
            node_dropped = int(after["frames_dropped"]) - int(before["frames_dropped"])
            node_processed = int(after["frames_processed"]) - int(before["frames_processed"])
            infer_ms = float(after["latency_infer_median_ms"])
            processing_ms = sum(float(after[f"latency_{stage}_median_ms"]) for stage in ("decode", "preprocess", "infer", "postprocess", "publish"))
            p99_limit = infer_ms + period * 1e3
            rate_achieved = published / args.duration
            print(f"\n[2] sustained input: {published} frames at {rate_achieved:.1f} Hz for {args.duration:.0f} s")
            print(f"    inference (node diagnostics): median {infer_ms:.1f} ms -> at most {1e3 / infer_ms:.1f} frames/s: {'slower' if infer_ms > period * 1e3 else 'NOT slower'} than the input")
            print(f"    outputs received for {received_outputs} frames; node received {node_received}, processed {node_processed}, dropped {node_dropped}")
            print(f"    dropped frames counted here (published - outputs received) = {published - received_outputs}; node diagnostics = {node_dropped} + lost before the node {published - node_received}: {'equal' if published - received_outputs == node_dropped + (published - node_received) else 'DIFFERENT'}")
            print(f"    output latency (publish -> last output received): median {ms(latencies):.1f} ms, p99 {ms(latencies, 99):.1f} ms; limit inference + one frame period = {p99_limit:.1f} ms: {'met' if ms(latencies, 99) <= p99_limit else 'NOT met'}")
            print(f"    (the node's whole per-frame processing, decode..publish, takes {processing_ms:.1f} ms; + one frame period = {processing_ms + period * 1e3:.1f} ms: {'met' if ms(latencies, 99) <= processing_ms + period * 1e3 else 'NOT met'})")
            growth = (rss_end_publishing - rss_start) / rss_start * 100.0
            print(f"    node RSS after warm-up {rss_start:.1f} MB -> end {rss_end_publishing:.1f} MB ({growth:+.1f} %; target <= 5 %: {'met' if growth <= 5.0 else 'NOT met'})")
    finally:
        node.send_signal(signal.SIGINT)
        try:
            node.wait(20)
        except subprocess.TimeoutExpired:
            node.kill()
        executor.shutdown()
        bench.destroy_node()
        rclpy.try_shutdown()
        node_log.close()
    print(f"\nnode exit code {node.returncode}; node log: {workdir / 'node.log'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
