"""The built-in demo (``make demo``): synthetic bag -> live node -> recorded outputs -> evaluation report.

Steps: render a synthetic indoor sequence into a rosbag2; start ``perception_node`` as its own process
with the bundled default model (``models/default.onnx``); replay the bag's camera topics into the live
ROS graph and record what the node publishes; evaluate the recording against the bag's ground truth;
check that offline evaluation of the same frames gives the same metrics; write the report and an
animation of input | semantic overlay | depth. Everything lands in ``demo_output/``.

The ROS graph is private to the demo: a ROS_DOMAIN_ID derived from the process id and localhost-only
discovery. Without the bundled model, the demo exports a randomly initialised network instead and says
so loudly: its figures then show the plumbing, not the model's quality.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

OUTPUT_DIR = Path("demo_output")
BANNER = "!" * 100


def choose_model(requested: str | None, out: Path) -> tuple[Path, bool | None]:
    """(model path, trained): True for the bundled model, None for a requested file (the demo cannot tell whether
    it was trained), False for the untrained export it falls back to, loudly, when the bundled model is missing."""
    from mtl_perception.paths import default_model_path

    if requested:
        path = Path(requested)
        if not path.is_file():
            raise FileNotFoundError(f"--model {path} not found")
        return path, None
    bundled = default_model_path()
    if bundled.is_file():
        return bundled, True
    print(BANNER)
    print(f"!!! The bundled default model {bundled} is missing.")
    print("!!! Falling back to a RANDOMLY INITIALISED network exported just now: the demo shows the whole pipeline,")
    print("!!! but its predictions and metrics are meaningless. Train the default model (see README) for real figures.")
    print(BANNER)
    from mtl_perception.inference.export import export_untrained  # torch: only for the fallback

    return export_untrained(out / "untrained.onnx").path, False  # synthetic classes, default config


def start_node(model: Path, namespace: str, log_path: Path) -> subprocess.Popen:
    """``perception_node`` in its own process, reading the camera topics the bag tools write."""
    parameters = {
        "model.path": str(model.resolve()),
        "model.provider": "cpu",
        "input.image_topic": "/camera/image_raw",
        "input.camera_info_topic": "/camera/camera_info",
        "qos.reliability": "reliable",  # large images between processes: best effort drops most of them
        "qos.output_depth": 10,
    }
    command = [sys.executable, "-m", "mtl_perception.ros.node", "--ros-args", "-r", f"__ns:={namespace}"]
    for name, value in parameters.items():
        command += ["-p", f"{name}:={value}"]
    log = open(log_path, "wb")  # noqa: SIM115 - owned by the process, closed in stop_node
    from mtl_perception.paths import fastdds_profile_env

    env = {**fastdds_profile_env(), **os.environ}  # no 3 s stalls on large outputs; a profile set by the user wins
    process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env)
    process.log = log  # type: ignore[attr-defined]
    return process


def stop_node(process: subprocess.Popen) -> int:
    """SIGINT (clean lifecycle shutdown), then SIGTERM/SIGKILL if it hangs; returns the exit code."""
    if process.poll() is None:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.terminate()
            try:
                process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
    process.log.close()  # type: ignore[attr-defined]
    return int(process.returncode)


def _max_difference(a: dict[str, float], b: dict[str, float]) -> float:
    """Largest absolute difference between two flat metric dicts over keys finite in both."""
    diffs = [abs(a[k] - b[k]) for k in a if k in b and math.isfinite(a[k]) and math.isfinite(b[k])]
    return max(diffs) if diffs else 0.0


def run_demo(args: argparse.Namespace) -> dict[str, Any]:
    """Run every step; returns the key figures (also written to demo_summary.json)."""
    from mtl_perception.bags.make import BagOptions, make_bag, synthetic_source
    from mtl_perception.bags.replay import ReplayOptions, replay_bag
    from mtl_perception.bags.headline import headline
    from mtl_perception.bags.evaluation import BagEvalSettings, evaluate_bags, summarize
    from mtl_perception.bags.evaluation.report import write_animation, write_report
    from mtl_perception.ros.domain import isolate_ros_domain
    from mtl_perception.fileio import atomic_write_bytes

    started = time.monotonic()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    domain = isolate_ros_domain()
    model, trained = choose_model(args.model, out)

    print(f"[1/5] rendering {args.frames} synthetic frames at {args.width}x{args.height} into a bag")
    bag = make_bag(out / "synthetic_bag", synthetic_source(args.seed, args.frames, args.height, args.width),
                   BagOptions(rate_hz=args.fps, overwrite=True), progress=False).path

    print(f"[2/5] starting perception_node (model {model}, ROS_DOMAIN_ID {domain})")
    node = start_node(model, "/perception", out / "node.log")
    try:
        print(f"[3/5] replaying the bag live at {args.rate:g}x and recording the node's outputs")
        replay = replay_bag(bag, ReplayOptions(rate=args.rate, record=str(out / "recording"), overwrite=True,
                                               wait_s=args.wait, settle_s=2.0), log=print)
    finally:
        code = stop_node(node)
    if not replay.subscribers_found or not replay.recorded.get("/perception/depth"):
        raise RuntimeError(f"the node published nothing (exit code {code}); see {out / 'node.log'}")

    print("[4/5] evaluating what the node published, and the same frames offline")
    online_settings = BagEvalSettings(predictions_from_bag=True, strip_frames=args.frames, progress=False)
    online = evaluate_bags([replay.record_path], online_settings)
    summary = summarize(online, online_settings)
    stamps = frozenset(record.stamp_ns for record in online[0].records)
    offline_settings = BagEvalSettings(model=str(model), backend_options={"provider": "cpu"}, only_stamps=stamps,
                                       strip_frames=0, progress=False)
    offline = summarize(evaluate_bags([bag], offline_settings), offline_settings)
    difference = _max_difference(summary.aggregate.figures.flat_metrics, offline.aggregate.figures.flat_metrics)

    print("[5/5] writing the report and the animation")
    files = write_report(out / "report", summary, online, title="mtl_perception demo: live node on a synthetic bag")
    animation = write_animation(online[0].strip, out / "demo.gif")
    total = summary.aggregate.figures.latency.get("total")
    figures = {
        "model": str(model), "trained_model": trained,
        "frames_published": replay.published.get("/camera/image_raw", 0),
        "frames_evaluated": summary.aggregate.frames_evaluated,
        "metrics": summary.aggregate.figures.flat_metrics,
        "latency_ms": total.to_json() if total is not None else {},
        "stability": summary.aggregate.figures.stability,
        "max_abs_difference_online_vs_offline": difference,
        "files": {"input_bag": str(bag), "recording": str(replay.record_path), "report_md": str(files.documents[0]),
                  "report_html": str(files.documents[-1]), "summary_json": str(files.json), "animation": str(animation),
                  "node_log": str(out / "node.log")},
        "seconds": time.monotonic() - started,
    }
    from mtl_perception.fileio import json_safe

    atomic_write_bytes(out / "demo_summary.json", (json.dumps(json_safe(figures), indent=2) + "\n").encode())
    print()
    print(f"node on {figures['frames_published']} published frames -> {figures['frames_evaluated']} evaluated: {headline(summary)}")
    if figures["frames_evaluated"] < figures["frames_published"]:
        print("  (the node keeps only the newest frame: frames that arrive while it is busy are skipped, by design)")
    print(f"online (through the node) vs offline on the same frames: largest metric difference {difference:.3g}")
    for label, key in (("report", "report_html"), ("report (markdown)", "report_md"), ("animation", "animation"),
                       ("figures", "summary_json"), ("input bag", "input_bag"), ("recorded outputs", "recording")):
        print(f"  {label:18s} {figures['files'][key]}")
    print(f"  {'demo summary':18s} {out / 'demo_summary.json'}")
    if trained is False:
        print(BANNER)
        print("!!! These figures come from a RANDOMLY INITIALISED network (models/default.onnx is missing).")
        print(BANNER)
    print(f"done in {figures['seconds']:.0f} s")
    return figures


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m mtl_perception.demo", description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--out", default=str(OUTPUT_DIR), help="output folder")
    parser.add_argument("--model", default=None, help="model file instead of the bundled models/default.onnx")
    parser.add_argument("--frames", type=int, default=40, help="frames in the synthetic sequence")
    parser.add_argument("--height", type=int, default=240, help="image height in pixels")
    parser.add_argument("--width", type=int, default=320, help="image width in pixels")
    parser.add_argument("--fps", type=float, default=10.0, help="frame rate recorded in the bag")
    parser.add_argument("--rate", type=float, default=0.5, help="replay speed factor (0.5 = half the recorded frame rate)")
    parser.add_argument("--seed", type=int, default=3, help="seed of the synthetic room and camera path")
    parser.add_argument("--wait", type=float, default=90.0, help="seconds to wait for the node to come up")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        run_demo(args)
    except (ValueError, FileNotFoundError, RuntimeError) as exc:
        print(f"demo: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("demo: interrupted", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
