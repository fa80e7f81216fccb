"""Helpers shared by the ROS benchmarks: process memory, Fast DDS transport set-ups, the node in its own process,
and this process as its camera and the subscriber of its outputs (``BenchCamera``)."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from mtl_perception.paths import FASTDDS_PROFILE_VARIABLES, fastdds_profile_env

PROFILE = Path(__file__).resolve().parents[1] / "config" / "fastdds_large_images.xml"
TRANSPORT_VARIABLES = (*FASTDDS_PROFILE_VARIABLES.values(), "FASTDDS_BUILTIN_TRANSPORTS")
STAMP_BASE = 10000  # frame index i is published with header stamp.sec STAMP_BASE + i
NAMESPACE = "/bench"


def rss_mb(pid: int) -> float:
    """Resident set size of a process in MB (Linux /proc)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024.0
    raise RuntimeError(f"no VmRSS for pid {pid}")


def transport_env(transport: str, drop: tuple[str, ...] = ()) -> dict[str, str]:
    """This process's environment set up for a Fast DDS transport: profile | large_data | default.

    ``profile`` is the shipped config/fastdds_large_images.xml (what the launch file sets, under the variable name
    the installed Fast DDS major reads),
    ``large_data`` is FASTDDS_BUILTIN_TRANSPORTS=LARGE_DATA, ``default`` is Fast DDS's own defaults.
    Variables in ``drop`` are removed too.
    """
    env = {k: v for k, v in os.environ.items() if k not in TRANSPORT_VARIABLES + drop}
    if transport == "profile":
        env.update(fastdds_profile_env(PROFILE))  # FASTRTPS_... for Fast DDS 2.x (Jazzy), FASTDDS_... for 3.x
    elif transport == "large_data":
        env["FASTDDS_BUILTIN_TRANSPORTS"] = "LARGE_DATA"
    return env


def use_transport(transport: str) -> None:
    """Set this process's own environment (read by rclpy at init) to a Fast DDS transport set-up."""
    env = transport_env(transport)
    for name in TRANSPORT_VARIABLES:
        os.environ.pop(name, None)
    os.environ.update(env)


def stop_nodes(processes: list[subprocess.Popen], timeout_s: float = 20.0) -> None:
    """SIGINT every node process (what Ctrl-C does), then wait for each; kill one that outlives ``timeout_s``."""
    for process in processes:
        process.send_signal(signal.SIGINT)
    for process in processes:
        try:
            process.wait(timeout_s)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def start_node(model: str | Path, log_path: Path, *extra: str) -> subprocess.Popen:
    """perception_node in its own process under ``NAMESPACE`` (this Python: the ROS wheels' library path is inherited):
    onnxruntime on the CPU, reliable QoS with history 5, letterbox resize, then the ``extra`` ROS arguments;
    its output goes to ``log_path``."""
    command = [sys.executable, "-m", "mtl_perception.ros.node", "--ros-args", "-r", f"__ns:={NAMESPACE}", "-p", f"model.path:={model}",
               "-p", "model.provider:=cpu", "-p", "qos.reliability:=reliable", "-p", "qos.depth:=5", "-p", "processing.resize_mode:=letterbox", *extra]
    with log_path.open("w") as log:
        return subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=dict(os.environ))


def camera_info(width: int, height: int, focal: float = 525.0) -> Any:
    """The benchmarks' pinhole camera: ``focal`` pixels, principal point at the image centre, frame camera_optical."""
    from sensor_msgs.msg import CameraInfo

    info = CameraInfo(width=width, height=height, distortion_model="plumb_bob")
    info.k = [focal, 0.0, width / 2 - 0.5, 0.0, focal, height / 2 - 0.5, 0.0, 0.0, 1.0]
    info.p = [focal, 0.0, width / 2 - 0.5, 0.0, 0.0, focal, height / 2 - 0.5, 0.0, 0.0, 0.0, 1.0, 0.0]
    info.header.frame_id = "camera_optical"
    return info


class Receiver:
    """Arrival times of the node's outputs, per frame index (stamp.sec - STAMP_BASE) and topic."""

    def __init__(self, topics: list[str]) -> None:
        self.topics = topics
        self.arrivals: dict[int, dict[str, float]] = {}
        self.cond = threading.Condition()
        self.diagnostics: dict[str, str] = {}

    def on_output(self, topic: str, raw: bytes) -> None:
        """A serialised output (raw subscription: this process does not deserialise megabytes per frame).

        CDR: 4 bytes of encapsulation header, then the header's stamp.sec as a little-endian int32.
        """
        now = time.monotonic()
        stamp_sec = int.from_bytes(raw[4:8], "little", signed=True)
        with self.cond:
            self.arrivals.setdefault(stamp_sec - STAMP_BASE, {})[topic] = now
            self.cond.notify_all()

    def on_diagnostics(self, msg: Any) -> None:
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


class BenchCamera:
    """This process as the camera of the node under ``NAMESPACE`` (image + camera info) and the subscriber of its
    ``topics`` (raw, into ``receiver``) and of /diagnostics; reliable QoS with history 5, spun in a background
    thread. It initialises rclpy; ``close`` shuts it down."""

    def __init__(self, name: str, topics: list[str]) -> None:
        import rclpy
        from diagnostic_msgs.msg import DiagnosticArray
        from rclpy.executors import SingleThreadedExecutor
        from rclpy.qos import QoSProfile, ReliabilityPolicy
        from sensor_msgs.msg import CameraInfo, Image, PointCloud2

        rclpy.init()
        self.node = rclpy.create_node(name)
        self.topics = topics
        self.receiver = Receiver(topics)
        reliable = QoSProfile(depth=5, reliability=ReliabilityPolicy.RELIABLE)
        for topic in topics:
            kind = PointCloud2 if topic == "points" else Image
            self.node.create_subscription(kind, f"{NAMESPACE}/{topic}", lambda raw, t=topic: self.receiver.on_output(t, raw), reliable, raw=True)
        self.node.create_subscription(DiagnosticArray, "/diagnostics", self.receiver.on_diagnostics, 10)
        self.images = self.node.create_publisher(Image, f"{NAMESPACE}/image", reliable)
        self.infos = self.node.create_publisher(CameraInfo, f"{NAMESPACE}/camera_info", reliable)
        self.executor = SingleThreadedExecutor()
        self.executor.add_node(self.node)
        self.spinner = threading.Thread(target=self.executor.spin, daemon=True)
        self.spinner.start()

    def wait_for_node(self, process: subprocess.Popen, log_path: Path, timeout_s: float = 120.0) -> None:
        """Until the node takes the images and publishes every subscribed topic (RuntimeError if it exits or
        ``timeout_s`` pass), then one more second for discovery to settle."""
        deadline = time.monotonic() + timeout_s
        while self.images.get_subscription_count() == 0 or any(self.node.count_publishers(f"{NAMESPACE}/{t}") == 0 for t in self.topics):
            if time.monotonic() > deadline or process.poll() is not None:
                raise RuntimeError(f"the node did not come up; see {log_path}")
            time.sleep(0.1)
        time.sleep(1.0)

    def prime(self, info: Any) -> None:
        """The camera info three times before the first frame (reliable): the node holds it when frames come."""
        for _ in range(3):
            self.infos.publish(info)
            time.sleep(0.1)

    def publish(self, msg: Any, info: Any, index: int) -> float:
        """Frame ``index``: ``msg`` and ``info`` stamped STAMP_BASE + index (camera_optical), info first; the image's send time."""
        msg.header.stamp.sec, msg.header.frame_id = STAMP_BASE + index, "camera_optical"
        info.header.stamp, info.header.frame_id = msg.header.stamp, "camera_optical"
        self.infos.publish(info)
        sent = time.monotonic()
        self.images.publish(msg)
        return sent

    def close(self) -> None:
        import rclpy

        self.executor.shutdown()
        self.spinner.join(10.0)
        self.node.destroy_node()
        rclpy.try_shutdown()
