"""What delivers large images between processes is shipped and wired: the Fast DDS profile and the launch file.

benchmarks/qos_delivery.py measures the delivery itself (README "Large images between processes"); these
checks keep the set-up it measured in place: the profile's shared-memory segment holds the node's largest
640x480 output, and the launch file hands the profile to the node by default.
"""
from __future__ import annotations

import ast
import xml.etree.ElementTree as ElementTree
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PROFILE = ROOT / "config" / "fastdds_large_images.xml"
LAUNCH = ROOT / "launch" / "mtl_perception.launch.py"
NS = {"f": "http://www.eprosima.com"}
NORMALS_640x480_BYTES = 640 * 480 * 3 * 4  # the largest output: 32FC3 normals


def test_profile_segment_holds_the_largest_640x480_output() -> None:
    root = ElementTree.parse(PROFILE).getroot()
    shm = [d for d in root.iterfind(".//f:transport_descriptor", NS) if d.findtext("f:type", namespaces=NS) == "SHM"]
    assert len(shm) == 1
    assert int(shm[0].findtext("f:segment_size", namespaces=NS)) >= 4 * NORMALS_640x480_BYTES  # several samples in flight
    assert int(shm[0].findtext("f:maxMessageSize", namespaces=NS)) >= NORMALS_640x480_BYTES
    participant = root.find(".//f:participant", NS)
    assert participant.get("is_default_profile") == "true"
    used = [t.text for t in participant.iterfind(".//f:userTransports/f:transport_id", NS)]
    assert shm[0].findtext("f:transport_id", namespaces=NS) in used
    assert participant.findtext(".//f:useBuiltinTransports", namespaces=NS) == "false"


def test_launch_file_gives_the_node_the_profile_by_default() -> None:
    tree = ast.parse(LAUNCH.read_text())
    declared = {ast.literal_eval(c.args[0]): {k.arg: k.value for k in c.keywords} for c in ast.walk(tree)
                if isinstance(c, ast.Call) and getattr(c.func, "id", "") == "DeclareLaunchArgument"}
    default = ast.unparse(declared["fastdds_profile"]["default_value"])
    assert "fastdds_large_images.xml" in default and "CONFIG_DIR" in default
    node_env = [k.value for c in ast.walk(tree) if isinstance(c, ast.Call) and getattr(c.func, "id", "") == "Node"
                for k in c.keywords if k.arg == "additional_env"]
    assert any("fastdds_profile_env(profile)" in ast.unparse(value) for value in node_env)  # the variable each Fast DDS major reads
