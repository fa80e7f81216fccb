"""Helpers shared by the ROS benchmarks: process memory and Fast DDS transport set-ups."""
from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path

PROFILE = Path(__file__).resolve().parents[1] / "config" / "fastdds_large_images.xml"
TRANSPORT_VARIABLES = ("FASTDDS_DEFAULT_PROFILES_FILE", "FASTDDS_BUILTIN_TRANSPORTS")


def rss_mb(pid: int) -> float:
    """Resident set size of a process in MB (Linux /proc)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024.0
    raise RuntimeError(f"no VmRSS for pid {pid}")


def transport_env(transport: str, drop: tuple[str, ...] = ()) -> dict[str, str]:
    """This process's environment set up for a Fast DDS transport: profile | large_data | default.

    ``profile`` is the shipped config/fastdds_large_images.xml (what the launch file sets),
    ``large_data`` is FASTDDS_BUILTIN_TRANSPORTS=LARGE_DATA, ``default`` is Fast DDS's own defaults.
    Variables in ``drop`` are removed too.
    """
    env = {k: v for k, v in os.environ.items() if k not in TRANSPORT_VARIABLES + drop}
    if transport == "profile":
        env["FASTDDS_DEFAULT_PROFILES_FILE"] = str(PROFILE)
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
