"""perception_node's memory around one unusually large frame: peak (VmHWM) and held (VmRSS) in a real node process.

Usage: .venv/bin/python benchmarks/node_memory.py [--sizes 4096x4096,3840x2160] [--normal 640x480] [--after 20]
       [--outputs all|depth,semantic,...] [--tree worktree|HEAD] [--budget-mb MB] [--json OUT.json]

For each size, a fresh node (the bundled model on the CPU, every listed output subscribed at input resolution,
reliable QoS, the shipped Fast DDS profile) gets 5 normal frames, one large frame, then ``--after`` normal frames;
a control node gets normal frames only. Each frame is sent once the previous one's outputs arrived (or the
node counted it as refused). Printed per size: the node's RSS before the large frame, its peak (VmHWM) after
it, its RSS after the normal frames that followed, the control node's RSS, and whether the large frame was
served or refused (``processing.memory_budget_mb``). ``--tree HEAD`` runs the node from a copy of the last
commit (``git archive HEAD``), the code before the memory budget; ``--budget-mb`` sets the budget (0 = none).

``--per-pixel`` instead measures the deploy graph's bytes per pixel for each graph output in-process (peak RSS
growth between a 1920x1080 and a 3840x2160 frame, each output set in a fresh process): the figures of
``inference/memory_budget.py``'s table.
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

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))
NODE_OUTPUTS = ("depth", "depth_camera_info", "depth_color", "semantic", "semantic_color", "semantic_overlay", "normals", "points")
IMAGE_TOPICS = {"depth": "depth", "depth_color": "depth/color", "semantic": "semantic", "semantic_color": "semantic/color",
                "semantic_overlay": "semantic/overlay", "normals": "normals"}
WARMUP_FRAMES = 5


def proc_mb(pid: int, key: str) -> float:
    """A /proc/PID/status figure (VmRSS, VmHWM) in MB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1]) / 1024.0
    raise RuntimeError(f"no {key} for pid {pid}")


def largest_mappings(pid: int, count: int = 10) -> list[tuple[float, float, str]]:
    """(resident MB, mapped MB, name) of a process's largest resident mappings (/proc/PID/smaps; '[anon]' unnamed)."""
    found: list[tuple[float, float, str]] = []
    name, size = "", 0.0
    for line in Path(f"/proc/{pid}/smaps").read_text().splitlines():
        fields = line.split()
        if fields and "-" in fields[0] and not fields[0].endswith(":"):
            name = fields[5] if len(fields) > 5 else "[anon]"
        elif fields[:1] == ["Size:"]:
            size = int(fields[1]) / 1024.0
        elif fields[:1] == ["Rss:"]:
            found.append((round(int(fields[1]) / 1024.0, 1), round(size, 1), name))
    return sorted(found, reverse=True)[:count]


def size_of(text: str) -> tuple[int, int]:
    """'WxH' -> (width, height)."""
    width, height = text.lower().split("x")
    return int(width), int(height)


def source_tree(tree: str, workdir: Path) -> Path:
    """The src/ folder the node runs from: this checkout's, or a copy of commit ``tree``'s (git archive)."""
    if tree == "worktree":
        return ROOT / "src"
    target = workdir / "tree"
    target.mkdir()
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", tree, "src", "models", "config"], check=True, capture_output=True).stdout
    subprocess.run(["tar", "-x", "-C", str(target)], input=archive, check=True)
    return target / "src"


class Arrivals:
    """Which subscribed outputs arrived per frame (stamp.sec), and the node's bad_input count (diagnostics)."""

    def __init__(self) -> None:
        self.cond = threading.Condition()
        self.frames: dict[int, set[str]] = {}
        self.bad_input = 0

    def output(self, topic: str, msg: Any) -> None:
        with self.cond:
            self.frames.setdefault(msg.header.stamp.sec, set()).add(topic)
            self.cond.notify_all()

    def diagnostics(self, msg: Any) -> None:
        for status in msg.status:
            values = {pair.key: pair.value for pair in status.values}
            if "bad_input" in values:
                with self.cond:
                    self.bad_input = max(self.bad_input, int(values["bad_input"]))
                    self.cond.notify_all()

    def wait(self, stamp: int, topics: set[str], refused_before: int, timeout: float) -> str:
        """'served' once every topic of frame ``stamp`` arrived, 'refused' once bad_input passed ``refused_before``."""
        with self.cond:
            done = self.cond.wait_for(lambda: topics <= self.frames.get(stamp, set()) or self.bad_input > refused_before, timeout)
            if not done:
                return "timeout"
            return "served" if topics <= self.frames.get(stamp, set()) else "refused"


def camera_info(width: int, height: int, stamp: int) -> Any:
    from sensor_msgs.msg import CameraInfo

    info = CameraInfo()
    info.header.stamp.sec, info.header.frame_id = stamp, "camera_optical"
    info.width, info.height, info.distortion_model = width, height, "plumb_bob"
    f = 0.8 * width
    info.k = [f, 0.0, width / 2, 0.0, f, height / 2, 0.0, 0.0, 1.0]
    info.p = [f, 0.0, width / 2, 0.0, 0.0, f, height / 2, 0.0, 0.0, 0.0, 1.0, 0.0]
    info.r = [1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0]
    info.d = [0.0] * 5
    return info


def run_node(src: Path, large: tuple[int, int] | None, args: argparse.Namespace, namespace: str, workdir: Path) -> dict[str, Any]:
    """One node process through warm-up, the large frame (None: a control node) and the normal frames after it."""
    import rclpy
    from diagnostic_msgs.msg import DiagnosticArray
    from rclpy.executors import SingleThreadedExecutor
    from rclpy.qos import QoSProfile, ReliabilityPolicy
    from sensor_msgs.msg import CameraInfo, Image, PointCloud2

    from mtl_perception.inference.image_codec import array_to_image_msg
    from mtl_perception.inference.sample_images import sample_image

    outputs = [o for o in NODE_OUTPUTS if o in args.outputs]
    flags = [item for key in NODE_OUTPUTS for item in ("-p", f"output.{key}:={'true' if key in outputs else 'false'}")]
    budget = ["-p", f"processing.memory_budget_mb:={args.budget_mb}"] if args.budget_mb is not None else []
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(src), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep)}
    log_path = workdir / f"{namespace.strip('/')}.log"
    command = [sys.executable, "-m", "mtl_perception.ros.node", "--ros-args", "-r", f"__ns:={namespace}",
               "-p", f"model.path:={src.parent / 'models' / 'default.onnx'}", "-p", "model.provider:=cpu", "-p", "qos.reliability:=reliable",
               "-p", "qos.depth:=2", "-p", "input.max_pixels:=16777216", "-p", f"model.engine_cache_dir:={workdir / 'cache'}", *flags, *budget]
    with open(log_path, "w") as log:
        node = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env)
    helper = rclpy.create_node("node_memory_camera", namespace=namespace.strip("/"))
    reliable = QoSProfile(depth=2, reliability=ReliabilityPolicy.RELIABLE)
    arrivals = Arrivals()
    topics = {t for key, t in IMAGE_TOPICS.items() if key in outputs} | ({"points"} if "points" in outputs else set())
    kinds = {t: Image for t in topics} | {"points": PointCloud2}
    subscriptions = [helper.create_subscription(kinds[t], f"{namespace}/{t}", lambda m, t=t: arrivals.output(t, m), reliable) for t in topics]
    helper.create_subscription(DiagnosticArray, "/diagnostics", arrivals.diagnostics, 10)
    images = helper.create_publisher(Image, f"{namespace}/image", reliable)
    infos = helper.create_publisher(CameraInfo, f"{namespace}/camera_info", reliable)
    executor = SingleThreadedExecutor()
    executor.add_node(helper)
    spinner = threading.Thread(target=executor.spin, daemon=True)
    spinner.start()
    result: dict[str, Any] = {"large": f"{large[0]}x{large[1]}" if large else "none", "log": str(log_path)}
    stamp = 0

    def send(width: int, height: int) -> str:
        nonlocal stamp
        stamp += 1
        msg = array_to_image_msg(sample_image(height, width, seed=stamp % 4), "rgb8")
        msg.header.stamp.sec, msg.header.frame_id = stamp, "camera_optical"
        refused = arrivals.bad_input
        infos.publish(camera_info(width, height, stamp))
        images.publish(msg)
        return arrivals.wait(stamp, topics, refused, args.timeout)

    try:
        deadline = time.monotonic() + 120
        while images.get_subscription_count() == 0 or any(helper.count_publishers(f"{namespace}/{t}") == 0 for t in topics):
            if node.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the node did not come up; see {log_path}")
            time.sleep(0.1)
        assert subscriptions
        normal = size_of(args.normal)
        warm = [send(*normal) for _ in range(WARMUP_FRAMES)]
        if warm[-1] != "served":
            raise RuntimeError(f"normal frames not served ({warm}); see {log_path}")
        result["rss_before_mb"] = proc_mb(node.pid, "VmRSS")
        result["large_frame"] = send(*large) if large else "none"
        result["peak_mb"] = proc_mb(node.pid, "VmHWM")
        result["rss_after_large_mb"] = proc_mb(node.pid, "VmRSS")
        after = [send(*normal) for _ in range(args.after)]
        result["normal_after"] = {kind: after.count(kind) for kind in set(after)}
        result["held_mb"] = proc_mb(node.pid, "VmRSS")
        result["held_parts_mb"] = {key: proc_mb(node.pid, key) for key in ("RssAnon", "RssFile", "RssShmem")}
        result["largest_mappings"] = largest_mappings(node.pid)
    finally:
        from ros_bench_common import stop_nodes

        stop_nodes([node])
        executor.shutdown()
        spinner.join(5)
        helper.destroy_node()
    return result


def node_table(args: argparse.Namespace) -> dict[str, Any]:
    from ros_bench_common import use_transport

    use_transport("profile")
    os.environ.setdefault("ROS_DOMAIN_ID", str(1 + os.getpid() % 100))
    os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
    import rclpy

    workdir = Path(tempfile.mkdtemp(prefix="node_memory_"))
    src = source_tree(args.tree, workdir)
    rclpy.init()
    figures: dict[str, Any] = {"tree": args.tree, "outputs": list(args.outputs), "normal": args.normal, "after": args.after,
                               "budget_mb": args.budget_mb, "runs": []}
    try:
        figures["control"] = run_node(src, None, args, "/mem_control", workdir)
        for i, text in enumerate(args.sizes.split(",")):
            figures["runs"].append(run_node(src, size_of(text), args, f"/mem_{i}", workdir))
    finally:
        rclpy.try_shutdown()
    return figures


def node_report(figures: dict[str, Any]) -> str:
    control = figures["control"]["held_mb"]
    lines = [f"node memory ({figures['tree']} tree, budget {figures['budget_mb'] if figures['budget_mb'] is not None else 'default'} MB, "
             f"outputs {','.join(figures['outputs'])}, normal frames {figures['normal']}, {figures['after']} after the large one)",
             f"  control node (normal frames only): RSS {control:.0f} MB, peak {figures['control']['peak_mb']:.0f} MB"]
    for run in figures["runs"]:
        lines.append(f"  {run['large']:>9}: {run['large_frame']:>7}; RSS before {run['rss_before_mb']:.0f} MB, peak (VmHWM) {run['peak_mb']:.0f} MB, "
                     f"held after {figures['after']} normal frames {run['held_mb']:.0f} MB = {run['held_mb'] / control:.2f} x control")
    return "\n".join(lines)


PER_PIXEL_PROBE = """
import sys, numpy as np
from pathlib import Path
from mtl_perception.inference.frame_pipeline import FramePipeline, FrameSettings
from mtl_perception.paths import default_model_path
sys.path.insert(0, sys.argv[3])
from node_memory import camera_info, proc_mb
outputs, resolution = sys.argv[1].split(","), sys.argv[2]
pipeline = FramePipeline(default_model_path(), "onnxruntime", {"provider": "cpu"}, settings=FrameSettings(out_size=resolution), cache_dir=sys.argv[4])
small = np.zeros((480, 640, 3), np.uint8)
for _ in range(2):
    pipeline.run(small, "rgb8", outputs, camera_info(640, 480, 0))
grown = []
for width, height in ((1920, 1080), (3840, 2160)):
    frame = np.random.default_rng(0).integers(0, 255, (height, width, 3), np.uint8)
    base = proc_mb("self", "VmRSS")
    Path("/proc/self/clear_refs").write_text("5")  # reset VmHWM
    result = pipeline.run(frame, "rgb8", outputs, camera_info(width, height, 0))
    del result
    grown.append((width * height, proc_mb("self", "VmHWM") - base))
print((grown[1][1] - grown[0][1]) * 2**20 / (grown[1][0] - grown[0][0]))
"""


def per_pixel(args: argparse.Namespace) -> dict[str, float]:
    """Deploy-graph bytes per pixel of each graph output alone and of them all (fresh process each)."""
    from mtl_perception.inference.deploy_graph import GRAPH_OUTPUTS

    sets = [[name] for name in GRAPH_OUTPUTS if name != "confidence"] + [[n for n in GRAPH_OUTPUTS if n != "confidence"]]
    cache = tempfile.mkdtemp(prefix="node_memory_graphs_")
    table = {}
    for outputs in sets:
        for resolution in ("input", "model") if len(outputs) > 1 else ("input",):
            probe = subprocess.run([sys.executable, "-c", PER_PIXEL_PROBE, ",".join(outputs), resolution, str(Path(__file__).parent), cache],
                                   capture_output=True, text=True, check=True)
            name = ("all" if len(outputs) > 1 else outputs[0]) + ("" if resolution == "input" else " (output.resolution model)")
            table[name] = round(float(probe.stdout.strip().splitlines()[-1]), 1)
            print(f"  {name:>34}: {table[name]:6.1f} B/px", flush=True)
    return table


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="4096x4096,3840x2160", help="large frames, one fresh node each")
    parser.add_argument("--normal", default="640x480", help="the normal frame size")
    parser.add_argument("--after", type=int, default=20, help="normal frames after the large one")
    parser.add_argument("--outputs", default="all", help="subscribed node outputs: all or a comma-separated list")
    parser.add_argument("--tree", default="worktree", help="worktree (this checkout) or a commit to run the node from (git archive)")
    parser.add_argument("--budget-mb", type=int, default=None, help="processing.memory_budget_mb (default: the node's own)")
    parser.add_argument("--timeout", type=float, default=120.0, help="seconds to wait for one frame's outputs")
    parser.add_argument("--per-pixel", action="store_true", help="measure the deploy graph's bytes per pixel instead")
    parser.add_argument("--json", type=Path, default=None, help="write every figure to this file")
    args = parser.parse_args()
    args.outputs = NODE_OUTPUTS if args.outputs == "all" else tuple(args.outputs.split(","))
    if args.per_pixel:
        print("deploy graph peak bytes per pixel (peak RSS growth, 1920x1080 -> 3840x2160):")
        figures: dict[str, Any] = per_pixel(args)
    else:
        figures = node_table(args)
        print(node_report(figures))
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
