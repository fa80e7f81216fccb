"""The bad-input corpus (test/bad_input_corpus.py) through the real entry points.

- node: a real in-process ROS graph; each bad message is sent, then a good frame; the good frame's
  outputs must arrive and the bad one must be counted in the node's diagnostics with its reason.
- node set-up: bad model files fail activation with the reason and leave the node alive and able to
  activate with a good model; bad parameter values are rejected with the reason.
- CLI: every command line exits non-zero with exactly one stderr line naming the problem and no
  traceback; pre-existing outputs it pointed at stay byte-identical.

Prints "bad-input corpus: N tried, N passed" (and one line per entry point).
"""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any, Callable

import pytest
from bad_input_corpus import (
    MAX_PIXELS,
    CliCase,
    Workspace,
    cli_cases,
    fingerprint,
    good_camera_info,
    good_image,
    good_jpeg,
    node_cases,
    node_setup_cases,
    stamped,
)
from bags_support import make_synthetic_bag
from ros_fixtures import RosGraph, ros_graph, wait_until


HERE = Path(__file__).resolve().parent
TALLY: dict[str, tuple[int, int]] = {}  # entry point -> (tried, passed)


@pytest.fixture(scope="module")
def workspace(tmp_path_factory: pytest.TempPathFactory, tiny_model_files: tuple[Path, Path]) -> Workspace:
    root = tmp_path_factory.mktemp("corpus")
    onnx_path, checkpoint = tiny_model_files  # 64x96, the synthetic classes
    bag = make_synthetic_bag(root / "good_bag", frames=3)
    (root / "work").mkdir()
    return Workspace(root=root / "work", onnx=onnx_path, checkpoint=checkpoint, bag=bag)


def _report(entry: str, failures: list[str], tried: int) -> None:
    TALLY[entry] = (tried, tried - len(failures))
    print(f"\nbad-input corpus ({entry}): {tried} tried, {tried - len(failures)} passed")
    for failure in failures:
        print(f"  FAILED {failure}")


# ---------------------------------------------------------------------------------------------- CLI
def _judge_cli(case: CliCase, result: dict[str, Any], before: dict[Path, str]) -> str | None:
    """None when the case behaved, else what went wrong."""
    stderr = result["stderr"]
    lines = [line for line in stderr.splitlines() if line.strip()]
    if "Traceback" in stderr:
        return f"traceback on stderr: {stderr[-600:]}"
    if case.ok:
        if result["returncode"] != 0:
            return f"exit {result['returncode']} on a tolerated input: {stderr[-400:]}"
    else:
        if result["returncode"] == 0:
            return "exit code 0 on bad input"
        if len(lines) != 1:
            return f"{len(lines)} stderr lines, expected one: {stderr[-600:]}"
        if not lines[0].startswith("mtl-perception ") or case.expect not in lines[0]:
            return f"error line lacks {case.expect!r}: {lines[0]}"
    for path, digest in before.items():
        if not path.exists() or fingerprint(path) != digest:
            return f"pre-existing output {path} was changed"
    for path in case.absent:
        if path.exists():
            return f"{path} exists afterwards"
    return case.check() if case.check else None


def test_cli_corpus(workspace: Workspace, tmp_path: Path) -> None:
    cases = cli_cases(workspace)
    before = {id(case): {path: fingerprint(path) for path in case.guarded} for case in cases}
    spec = tmp_path / "cases.json"
    spec.write_text(json.dumps([{"name": c.name, "argv": c.argv} for c in cases]))
    driver = subprocess.run([sys.executable, str(HERE / "bad_input_corpus.py"), "--run-cli", str(spec)],
                            capture_output=True, text=True, timeout=600, cwd=str(tmp_path))
    assert driver.returncode == 0, driver.stderr[-3000:]
    results = {r["name"]: r for r in json.loads(driver.stdout.strip().splitlines()[-1])}
    failures = []
    for case in cases:
        problem = _judge_cli(case, results[case.name], before[id(case)])
        if problem:
            failures.append(f"{case.name}: {problem}")
        line = (results[case.name]["stderr"].strip().splitlines() or ["(exit 0)"])[-1]
        print(f"  {case.name} [{results[case.name]['seconds']} s] -> {line[:220]}")
    _report("CLI and file loaders", failures, len(cases))
    assert not failures, "\n".join(failures)


# ---------------------------------------------------------------------------------------------- node


graph = ros_graph(offset=53)


def _node(graph: RosGraph, name: str, overrides: dict[str, Any]) -> Any:
    from rclpy.parameter import Parameter

    from mtl_perception.ros.node import PerceptionNode

    params = [Parameter(k, value=v) for k, v in {"autostart": False, "qos.reliability": "reliable", "qos.depth": 5, **overrides}.items()]
    return graph.add(PerceptionNode(name, namespace=f"/{name}", parameter_overrides=params, context=graph.context))


def _active(graph: RosGraph, name: str, model: Path, **overrides: Any) -> Any:
    from rclpy.lifecycle import TransitionCallbackReturn

    node = _node(graph, name, {"model.path": str(model), "input.max_pixels": MAX_PIXELS, **overrides})
    assert node.trigger_configure() == TransitionCallbackReturn.SUCCESS and node.trigger_activate() == TransitionCallbackReturn.SUCCESS
    return node


def _with_wrong_type_publisher(graph: RosGraph, topic: str, qos: Any, then: Callable[[], bool]) -> bool:
    """Publish std_msgs/String on ``topic`` from another participant (as another process would), then run ``then``.

    One participant cannot carry two types on one topic, so the publisher gets its own rclpy context.
    """
    import os

    import rclpy
    from rclpy.context import Context
    from std_msgs.msg import String

    context = Context()
    rclpy.init(context=context, domain_id=int(os.environ["ROS_DOMAIN_ID"]))
    other = rclpy.create_node("wrong_type_publisher", context=context)
    try:
        wrong = other.create_publisher(String, topic, qos)
        wait_until(lambda: graph.helper.count_publishers(topic) >= 2, 5)
        for _ in range(3):
            wrong.publish(String(data="not an image"))
        return then()
    finally:
        other.destroy_node()
        rclpy.try_shutdown(context=context)


def test_node_corpus(graph: RosGraph, workspace: Workspace) -> None:
    from diagnostic_msgs.msg import DiagnosticArray
    from rclpy.qos import QoSProfile, ReliabilityPolicy
    from sensor_msgs.msg import CameraInfo, CompressedImage, Image

    reliable = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
    raw = _active(graph, "corpus", workspace.onnx)
    jpeg = _active(graph, "corpus_jpeg", workspace.onnx, **{"input.compressed": True})
    image_pub = graph.helper.create_publisher(Image, "/corpus/image", reliable)
    info_pub = graph.helper.create_publisher(CameraInfo, "/corpus/camera_info", reliable)
    jpeg_pub = graph.helper.create_publisher(CompressedImage, "/corpus_jpeg/image/compressed", reliable)
    depth = {"image": graph.collect(Image, "/corpus/depth", reliable), "compressed": graph.collect(Image, "/corpus_jpeg/depth", reliable)}
    diagnostics = graph.collect(DiagnosticArray, "/diagnostics", 10)
    assert wait_until(lambda: image_pub.get_subscription_count() == 1 and jpeg_pub.get_subscription_count() == 1 and info_pub.get_subscription_count() == 1
                      and raw.cameras[0].publishers["depth"].get_subscription_count() >= 1 and jpeg.cameras[0].publishers["depth"].get_subscription_count() >= 1, 15)
    info_pub.publish(good_camera_info(stamped(1)))
    assert wait_until(lambda: raw.cameras[0].infos.latest() is not None, 10)

    def serve_good(kind: str, stamp: int) -> bool:
        (jpeg_pub.publish(good_jpeg(stamped(stamp), stamp)) if kind == "compressed" else image_pub.publish(good_image(stamped(stamp), stamp)))
        return depth[kind].wait_for(lambda msgs: any(m.header.stamp.sec == stamp for m in msgs), 20)

    failures, cases = [], node_cases()
    for index, case in enumerate(cases):
        target = jpeg if case.kind == "compressed" else raw
        stamp_good = 5000 + index
        before = target.diagnostics_values()
        if case.kind == "wrong_type":
            served = _with_wrong_type_publisher(graph, "/corpus/image", reliable, lambda: serve_good("image", stamp_good))
            received = target.diagnostics_values()["frames_received"] - before["frames_received"]
            if not served:
                failures.append(f"{case.name}: the next good frame was not served")
            elif received != 1:
                failures.append(f"{case.name}: received {received} frames, expected only the good one")
            continue
        message = case.build(stamped(4000 + index))
        {"image": image_pub, "compressed": jpeg_pub, "camera_info": info_pub}[case.kind].publish(message)
        if not wait_until(lambda: target.diagnostics_values()[case.counter] == before[case.counter] + 1, 10):
            failures.append(f"{case.name}: {case.counter} did not grow by one")
            continue
        reason = target.cameras[0].counters.recent_problems(0.0).get(case.counter, "")
        if case.expect not in reason or "\n" in reason:
            failures.append(f"{case.name}: reported {reason!r}, expected one line with {case.expect!r}")
        if not serve_good("compressed" if case.kind == "compressed" else "image", stamp_good):
            failures.append(f"{case.name}: the next good frame was not served")
        if case.kind == "camera_info":
            info_pub.publish(good_camera_info(stamped(1)))
            assert wait_until(lambda: raw.cameras[0].infos.latest() is not None, 10)
        print(f"  {case.name} -> {reason[:200]}")
    # the diagnostics message carries the same counts
    expected_bad = {"corpus": sum(c.counter == "bad_input" and c.kind == "image" for c in cases), "corpus_jpeg": sum(c.kind == "compressed" for c in cases)}
    for name, count in expected_bad.items():
        ok = diagnostics.wait_for(lambda msgs: any(s.name.startswith(f"{name}:") and {kv.key: kv.value for kv in s.values}.get("bad_input") == str(count)
                                                   for m in msgs for s in m.status), 5)
        if not ok:
            failures.append(f"/diagnostics of {name} never reported bad_input = {count}")
    for publisher in (image_pub, info_pub, jpeg_pub):
        graph.helper.destroy_publisher(publisher)
    for node in (raw, jpeg):
        graph.stop_perception(node)
    _report("node messages", failures, len(cases))
    assert not failures, "\n".join(failures)


def test_node_setup_corpus(graph: RosGraph, workspace: Workspace) -> None:
    from rclpy.lifecycle import TransitionCallbackReturn
    from rclpy.parameter import Parameter

    failures, cases = [], node_setup_cases()
    node = _node(graph, "corpus_setup", {"model.path": str(workspace.onnx)})
    for case in cases:
        if case.kind == "model":
            assert node.set_parameters([Parameter("model.path", value=str(case.value(workspace)))])[0].successful
            configured = node.trigger_configure() == TransitionCallbackReturn.SUCCESS
            activated = node.trigger_activate() == TransitionCallbackReturn.SUCCESS
            reason = node.backend.error or ""
            if not configured or activated or case.expect not in reason or "\n" in reason or node.lifecycle_state != "inactive":
                failures.append(f"{case.name}: configured={configured} activated={activated} state={node.lifecycle_state} reason={reason!r}")
            node.trigger_cleanup()
        elif case.kind == "value":  # what configure and every parameter change check (ros/parameters.py check_value)
            from mtl_perception.ros.parameters import ParameterError, check_value

            name, value = case.value(workspace)
            try:
                check_value(name, value)
                reason = ""
                failures.append(f"{case.name}: accepted")
            except ParameterError as exc:
                reason = str(exc)
                if case.expect not in reason or "\n" in reason:
                    failures.append(f"{case.name}: reason={reason!r}")
        else:
            if node.lifecycle_state != "active":
                assert node.set_parameters([Parameter("model.path", value=str(workspace.onnx))])[0].successful
                assert node.trigger_configure() == TransitionCallbackReturn.SUCCESS and node.trigger_activate() == TransitionCallbackReturn.SUCCESS
            name, value = case.value(workspace)
            result = node.set_parameters([Parameter(name, value=value)])[0]
            reason = result.reason
            if result.successful or case.expect not in reason or "\n" in reason:
                failures.append(f"{case.name}: successful={result.successful} reason={reason!r}")
        print(f"  {case.name} -> {reason[:200]}")
    # still alive: a good model activates and serves a frame
    from rclpy.qos import QoSProfile, ReliabilityPolicy
    from sensor_msgs.msg import Image

    reliable = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
    publisher = graph.helper.create_publisher(Image, "/corpus_setup/image", reliable)
    semantic = graph.collect(Image, "/corpus_setup/semantic", reliable)
    assert wait_until(lambda: publisher.get_subscription_count() == 1 and node.cameras[0].publishers["semantic"].get_subscription_count() >= 1, 10)
    publisher.publish(good_image(stamped(7000)))
    if not semantic.wait_for(lambda msgs: any(m.header.stamp.sec == 7000 for m in msgs), 20):
        failures.append("after the bad set-ups the node did not serve a good frame")
    graph.helper.destroy_publisher(publisher)
    graph.stop_perception(node)
    _report("node set-up", failures, len(cases))
    assert not failures, "\n".join(failures)


def test_corpus_totals() -> None:
    """The sum over the entry points that ran in this session (all of them when the module runs whole)."""
    if len(TALLY) < 3:
        pytest.skip("runs after the three corpus tests of this module")
    tried = sum(t for t, _ in TALLY.values())
    passed = sum(p for _, p in TALLY.values())
    print(f"\nbad-input corpus: {tried} tried, {passed} passed")
    assert tried >= 30 and passed == tried
