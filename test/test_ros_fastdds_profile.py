"""The shipped Fast DDS profile is loaded on every Fast DDS major: 2.x (Humble, Jazzy) and 3.x (Kilted).

Fast DDS 2.x reads the profile's path only from FASTRTPS_DEFAULT_PROFILES_FILE, 3.x from
FASTDDS_DEFAULT_PROFILES_FILE; a profile under the other name is ignored without a word, and the multi-MB
outputs then leave the 512 KiB default shared-memory segment for fragmented UDP (seconds per frame under
reliable QoS). ``paths.fastdds_profile_env`` names the variable of the installed major. The live test reads
the segment a real participant maps (its size in /proc/<pid>/maps), in whichever ROS wheels run the suite
(``make test`` on Kilted's, ``make test-jazzy`` on Jazzy's).
"""
from __future__ import annotations

import importlib.metadata
import json
import os
import subprocess
import sys
import xml.etree.ElementTree as ElementTree
from pathlib import Path

import pytest

from mtl_perception import paths
from mtl_perception.ros.domain import isolate_ros_domain

PROFILE = Path(__file__).resolve().parents[1] / "config" / "fastdds_large_images.xml"
DEFAULT_SEGMENT = 512 * 1024  # Fast DDS's own shared-memory segment size (both majors)
# A child process: one participant with one publisher; prints its own shared-memory segment (name prefix, bytes).
PROBE = """
import json, os, rclpy
from std_msgs.msg import String
rclpy.init()
node = rclpy.create_node("fastdds_profile_probe")
node.create_publisher(String, "probe", 1)
segments = {}
for line in open(f"/proc/{os.getpid()}/maps"):
    name = line.split()[-1]
    base = os.path.basename(name)
    if name.startswith("/dev/shm/fast") and "_port" not in base and not base.endswith("_el"):
        start, end = (int(v, 16) for v in line.split()[0].split("-"))
        segments[base] = segments.get(base, 0) + end - start
print(json.dumps(segments))
node.destroy_node()
rclpy.shutdown()
"""


def profile_segment_size() -> int:
    root = ElementTree.parse(PROFILE).getroot()
    return int(root.findtext(".//{http://www.eprosima.com}segment_size"))


def probe_segments(env_update: dict[str, str]) -> dict[str, int]:
    """The shared-memory segments (name -> mapped bytes) of a fresh participant run with ``env_update``."""
    env = {k: v for k, v in os.environ.items() if k not in paths.FASTDDS_PROFILE_VARIABLES.values()}
    isolate_ros_domain(offset=61, environ=env)
    env.update(env_update)
    done = subprocess.run([sys.executable, "-c", PROBE], env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.mark.ros
def test_the_shipped_profile_gives_the_participant_its_large_segment() -> None:
    pytest.importorskip("rclpy", reason="rclpy (ros-rclpy wheels) is not installed")
    major = paths.fastdds_major()
    assert major in (2, 3)
    env = paths.fastdds_profile_env(PROFILE)
    assert list(env) == [paths.FASTDDS_PROFILE_VARIABLES[major]]
    segments = probe_segments(env)  # its own segment, and any it opened to send to others
    assert segments and all(name.startswith({2: "fastrtps_", 3: "fastdds_"}[major]) for name in segments)  # the major found is loaded
    assert max(segments.values()) >= profile_segment_size()
    # the other major's variable alone: 2.x ignores FASTDDS_... (the Jazzy stall); 3.x still honours FASTRTPS_...
    other = {2: "FASTDDS_DEFAULT_PROFILES_FILE", 3: "FASTRTPS_DEFAULT_PROFILES_FILE"}[major]
    other_size = max(probe_segments({other: str(PROFILE)}).values())
    if major == 2:
        assert DEFAULT_SEGMENT <= other_size < 2 * DEFAULT_SEGMENT
    else:
        assert other_size >= profile_segment_size()


def no_wheels(monkeypatch: pytest.MonkeyPatch) -> None:
    def version(name: str) -> str:
        raise importlib.metadata.PackageNotFoundError(name)

    monkeypatch.setattr(paths.importlib.metadata, "version", version)
    monkeypatch.delenv("LD_LIBRARY_PATH", raising=False)


@pytest.mark.parametrize(("library", "major"), [("libfastrtps.so.2.14.5", 2), ("libfastrtps.so.2.6", 2), ("libfastdds.so.3.2.3", 3)])
def test_a_ros_distributions_library_names_its_major(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, library: str, major: int) -> None:
    no_wheels(monkeypatch)
    (tmp_path / "lib").mkdir()
    (tmp_path / "lib" / library).write_bytes(b"")
    monkeypatch.setenv("AMENT_PREFIX_PATH", f"/nonexistent{os.pathsep}{tmp_path}")  # as /opt/ros/<distro>/setup.bash sets it
    assert paths.fastdds_major() == major
    assert paths.fastdds_profile_env("/p.xml") == {paths.FASTDDS_PROFILE_VARIABLES[major]: "/p.xml"}


def test_an_unknown_fast_dds_gets_both_variable_names(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    no_wheels(monkeypatch)
    monkeypatch.setenv("AMENT_PREFIX_PATH", str(tmp_path))
    assert paths.fastdds_major() is None
    assert paths.fastdds_profile_env("/p.xml") == {"FASTRTPS_DEFAULT_PROFILES_FILE": "/p.xml", "FASTDDS_DEFAULT_PROFILES_FILE": "/p.xml"}


def test_the_default_is_the_shipped_profile() -> None:
    assert set(paths.fastdds_profile_env().values()) == {str(paths.fastdds_profile_path())}
