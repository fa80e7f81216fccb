"""The node on every ROS 2 a robot runs: the project's use of rclpy against Humble's, Jazzy's and Kilted's API,
and the node end to end on a Humble-shaped rclpy.

The API table ``test/data/rclpy_api.json`` comes from the ``humble``, ``jazzy`` and ``kilted`` sources of
``ros2/rclpy`` (``tools/derive_rclpy_api.py``, read with ``ast``; each with its commit, or for a distribution
read from installed wheels their version and a digest of the sources). ``rclpy_contract.scan`` reads every
rclpy name, call and keyword the project's source uses; a name or keyword one distribution lacks fails here.
Humble has no pre/post set-parameters callbacks (Iron added them): the node applies accepted changes from
the on-set callback there, and ``test/humble_shaped_node.py`` runs it on this venv's rclpy with every name
Humble lacks removed, in a real ROS graph.
"""
from __future__ import annotations

import os
import re
import sys
from pathlib import Path

import pytest

from rclpy_contract import Api, Use, api_table, attribute_names, scan
from ros_fixtures import ros_graph

ROOT = Path(__file__).resolve().parents[1]
SOURCES = sorted((ROOT / "src" / "mtl_perception").rglob("*.py"))
DISTRIBUTIONS = ("humble", "jazzy", "kilted")
sys.path.insert(0, str(ROOT / "tools"))
import derive_rclpy_api  # noqa: E402


def apis() -> dict[str, Api]:
    table = api_table()["distributions"]
    return {name: Api(table[name]) for name in DISTRIBUTIONS}


def project_uses() -> list[Use]:
    ordered = [apis()[name] for name in DISTRIBUTIONS]
    return [use for path in SOURCES for use in scan(path, ordered)]


def test_table_records_where_each_distribution_came_from():
    table = api_table()
    assert table["format"] == derive_rclpy_api.TABLE_FORMAT and tuple(table["distributions"]) == DISTRIBUTIONS
    majors = {"humble": "3", "jazzy": "7", "kilted": "9"}  # rclpy 3.3.x (Humble), 7.1.x (Jazzy), 9.x (Kilted)
    for name, record in table["distributions"].items():
        assert record["version"].split(".")[0] == majors[name], (name, record["version"])
        if record["source"] == "git":
            assert re.fullmatch(r"[0-9a-f]{40}", record["commit"]) and record["ref"] == name
        else:
            assert record["source"] == "wheel" and re.fullmatch(r"[0-9a-f]{64}", record["sources_sha256"])


def test_table_holds_what_the_changelogs_say():
    """Iron (ros2/rclpy#966) added the pre/post set-parameters callbacks; Humble has only the on-set one."""
    by = apis()
    node = "rclpy.node.Node"
    for name in ("add_post_set_parameters_callback", "add_pre_set_parameters_callback"):
        assert by["humble"].member(node, name) is None
        assert by["jazzy"].member(node, name) and by["kilted"].member(node, name)
    for name, api in by.items():
        assert api.member(node, "add_on_set_parameters_callback"), name
        assert api.resolve("rclpy.lifecycle.LifecycleNode") == ("class", "rclpy.lifecycle.node.LifecycleNode"), name
        assert node in api.mro("rclpy.lifecycle.node.LifecycleNode"), name


def test_raw_bytes_publishing_and_raw_subscriptions_exist_in_every_distribution():
    """The node publishes pre-serialised CDR bytes (ros/cdr.py) and the replay subscribes raw: both since before Humble."""
    for name, api in apis().items():
        _, publish = api.member("rclpy.publisher.Publisher", "publish")
        assert "bytes" in publish["annotations"]["msg"], name
        _, subscribe = api.member("rclpy.node.Node", "create_subscription")
        assert "raw" in subscribe["keyword_only"], name


def test_every_rclpy_name_and_keyword_the_project_uses_exists_in_humble_jazzy_and_kilted():
    by = apis()
    uses = project_uses()
    labels = {use.label for use in uses if not use.optional}
    assert len(labels) > 50 and "rclpy.lifecycle.node.LifecycleNode.create_lifecycle_publisher" in labels, "the scan lost the node's calls"
    assert any(use.keywords == ("raw",) for use in uses), "the scan lost create_subscription(..., raw=True)"
    problems = sorted({f"{use.where}: {name}: {problem}" for use in uses if not use.optional
                       for name, api in by.items() if (problem := api.problem(use))})
    assert problems == []


def test_optional_uses_are_the_newer_calls_with_a_fallback():
    """getattr/hasattr on an rclpy object: a name one distribution lacks, each with its Humble path in the source."""
    optional = {use.label for use in project_uses() if use.optional}
    assert optional == {"rclpy.lifecycle.node.LifecycleNode.add_post_set_parameters_callback"}
    by = apis()
    for label in optional:
        owner, _, name = label.rpartition(".")
        assert by["kilted"].member(owner, name) and by["humble"].member(owner, name) is None, label


def newer_methods() -> dict[str, list[str]]:
    """Methods of classes every distribution has that some distribution lacks: {name: [class (distribution)]}."""
    by = apis()
    found: dict[str, list[str]] = {}
    for cls in by["kilted"].classes:
        if not all(cls in api.classes for api in by.values()):
            continue
        for name, api in by.items():
            for member in set().union(*(set(a.classes[cls]["members"]) for a in by.values())):
                info = next((a.member(cls, member) for a in by.values() if a.member(cls, member)), None)
                if member.startswith("_") or info is None or info[1]["kind"] != "method" or api.member(cls, member):
                    continue
                found.setdefault(member, []).append(f"{cls} ({name})")
    return found


def test_no_untyped_receiver_calls_a_method_some_distribution_lacks():
    """Calls the scanner cannot type (a publisher taken from a dict, a node passed as Any): their names alone must not
    be one of the methods a distribution lacks."""
    newer = newer_methods()
    assert "add_post_set_parameters_callback" in newer and "wait_for_node" in newer
    hits = [f"{where}: .{name} (missing in {newer[name]})" for path in SOURCES for name, where in attribute_names(path) if name in newer]
    assert hits == []


def test_the_scan_catches_a_newer_call_and_an_unknown_keyword(tmp_path: Path):
    module = tmp_path / "uses_newer.py"
    module.write_text(
        "from rclpy.lifecycle import LifecycleNode\n"
        "class Bad(LifecycleNode):\n"
        "    def __init__(self):\n"
        "        super().__init__('bad')\n"
        "        self.add_post_set_parameters_callback(self.done)\n"
        "        self.pub = self.create_publisher(object, 'x', 10, bogus_keyword=1)\n"
        "        self.pub.no_such_method()\n"
        "    def done(self, changes):\n"
        "        pass\n"
    )
    by = apis()
    uses = scan(module, [by[name] for name in DISTRIBUTIONS])
    problems = {(use.name, name) for use in uses for name, api in by.items() if api.problem(use)}
    assert ("add_post_set_parameters_callback", "humble") in problems
    assert ("add_post_set_parameters_callback", "kilted") not in problems
    assert {("create_publisher", name) for name in DISTRIBUTIONS} <= problems
    assert ("no_such_method", "kilted") in problems


def test_kilted_entry_is_what_the_installed_rclpy_gives():
    """The venv's rclpy (Kilted's wheels) derives to the table's Kilted entry (when the table was read from them)."""
    record = api_table()["distributions"]["kilted"]
    folder = derive_rclpy_api.installed_rclpy()
    if record["source"] != "wheel" or folder is None:
        pytest.skip("the table's kilted entry comes from a git branch, or no rclpy is installed")
    sources, origin = derive_rclpy_api.dir_sources(folder)
    if origin["version"] != record["version"]:
        pytest.skip(f"installed rclpy {origin['version']} is not the table's {record['version']} (another distribution's venv)")
    assert origin["sources_sha256"] == record["sources_sha256"]
    assert derive_rclpy_api.derive_distribution(sources) == {k: record[k] for k in ("modules", "classes", "functions")}


def test_table_is_what_the_branches_give():
    """Re-derived from a clone of ros2/rclpy named by $MTL_RCLPY_REPO (skipped without one)."""
    repo = os.environ.get("MTL_RCLPY_REPO")
    if not repo:
        pytest.skip("set MTL_RCLPY_REPO to a clone of github.com/ros2/rclpy to re-derive the table")
    table = api_table()
    sources = {name: f"git:{r['commit']}" if r["source"] == "git" else f"dir:{derive_rclpy_api.installed_rclpy()}"
               for name, r in table["distributions"].items()}
    derived = derive_rclpy_api.derive(Path(repo), sources)
    for name, record in derived["distributions"].items():
        if record["source"] == "git":  # read by commit: the branch name it was recorded under
            record["ref"] = table["distributions"][name]["ref"]
    assert derived == table, "test/data/rclpy_api.json differs from the sources: run tools/derive_rclpy_api.py"


# ------------------------------------------------------------------ the node on a Humble-shaped rclpy
graph = ros_graph(offset=91)


def test_node_runs_end_to_end_on_a_humble_shaped_rclpy(graph, tiny_model: Path):
    """Configure and activate by itself, serve frames with their headers, take a run-time parameter change (applied
    from the on-set callback) and refuse a bad one, all with the names Humble lacks removed from rclpy."""
    import numpy as np
    from rclpy.qos import QoSProfile, ReliabilityPolicy
    from ros_node_process import NodeServices, start_process, stop_process
    from sensor_msgs.msg import Image

    from mtl_perception.inference.image_codec import array_to_image_msg

    namespace, height, width = "/humble", 96, 128  # camera frames larger than the 64x96 network input
    reliable = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
    process = start_process(["-r", f"__ns:={namespace}", "-p", f"model.path:={tiny_model}", "-p", "qos.reliability:=reliable"],
                            script=Path(__file__).resolve().parent / "humble_shaped_node.py")
    depth = graph.collect(Image, f"{namespace}/depth", reliable)
    semantic = graph.collect(Image, f"{namespace}/semantic", reliable)
    camera = graph.helper.create_publisher(Image, f"{namespace}/image", reliable)
    services = NodeServices(graph, f"{namespace}/perception_node")
    sent = 0

    def serve_until(predicate, timeout: float = 60.0) -> bool:
        """Publish a frame, wait up to 0.2 s on the depth collector, again, until ``predicate`` holds."""
        nonlocal sent
        for _ in range(int(timeout / 0.2)):
            pixels = np.random.default_rng(sent).integers(0, 256, (height, width, 3), dtype=np.uint8)
            msg = array_to_image_msg(pixels, "rgb8")
            msg.header.frame_id, msg.header.stamp.sec = "humble_optical_frame", 1000 + sent
            camera.publish(msg)
            sent += 1
            if depth.wait_for(predicate, timeout=0.2):
                return True
        return False

    try:
        assert services.wait_ready(process), "the node's services did not come up"
        assert services.state() == "active"
        assert serve_until(lambda got: len(got) >= 2), "no depth image from the Humble-shaped node"
        assert semantic.wait_for(lambda got: len(got) >= 1, timeout=20)
        first = depth.messages[0]
        assert (first.encoding, first.height, first.width) == ("32FC1", height, width)
        assert first.header.frame_id == "humble_optical_frame" and first.header.stamp.sec >= 1000
        assert services.set("output.resolution", "model") == (True, "")
        assert services.get(["output.resolution"])["output.resolution"][1] == "model"
        # model resolution: the letterboxed content of a 96x128 frame in the 64x96 network input
        assert serve_until(lambda got: (got[-1].height, got[-1].width) == (64, 85)), "the run-time change did not take effect"
        accepted, reason = services.set("qos.depth", 3)
        assert not accepted and "deactivate and clean up" in reason
        assert services.set("output.overlay_alpha", 2.0)[0] is False
    finally:
        code, output = stop_process(process)
    first_line = output.splitlines()[0] if output else ""
    assert first_line.startswith("humble-shaped rclpy: removed"), output[-2000:]
    removed = first_line.split(";")[0]
    assert "rclpy.node.Node.add_post_set_parameters_callback" in removed and "rclpy.node.Node.add_pre_set_parameters_callback" in removed
    assert code == 0, output[-3000:]
