"""The node through its topics on Kilted's and Jazzy's ROS wheels, side by side in one run.

Usage: .venv/bin/python benchmarks/ros_distributions.py [--kilted .venv] [--jazzy .venv-jazzy] [--rounds 2]
       [--frames 20] [--duration 15] [--rate 30] [--profile-variable auto|fastdds]
(`make test-jazzy` builds .venv-jazzy.)

One random-weight default network (240x320) is exported once; then, alternating Kilted, Jazzy, Kilted, ...
(--rounds of each), a worker in that venv starts perception_node in its own process and is the camera
(640x480 rgb8 + camera info) and the subscriber of every output (reliable QoS, depth 5), both with the
shipped config/fastdds_large_images.xml:
  one at a time  the next frame after the last output of the previous one: latency publish -> last output;
  sustained      frames at --rate Hz for --duration s: latency of the frames served, and the served fraction
                 (frames with every output / frames the network allows, min(rate, 1 / deploy-graph time)).
The latencies of all rounds are pooled per distribution (median, p99); Jazzy/Kilted ratios are printed
with the target: within 1.2x of Kilted (latency ratio <= 1.2, served-fraction ratio >= 1/1.2).

--profile-variable fastdds sets the profile's path only as FASTDDS_DEFAULT_PROFILES_FILE (what was shipped
before): Fast DDS 2.14 (Jazzy) reads only FASTRTPS_DEFAULT_PROFILES_FILE, so Jazzy then runs on the 512 KiB
default shared-memory segment. ``auto`` (default) is mtl_perception.paths.fastdds_profile_env: the variable of
the installed Fast DDS major (the launch file's way).
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
DISTRIBUTIONS = ("kilted", "jazzy")
FRAME_TIMEOUT_S = 10.0  # one-at-a-time: a frame whose outputs are not all in by then counts as lost


def worker(args: argparse.Namespace) -> dict:
    """One distribution's run (in its own venv): the node process, the camera and the subscriber; raw figures."""
    from node_overhead import ALL_OUTPUTS
    from ros_bench_common import PROFILE, TRANSPORT_VARIABLES, BenchCamera, camera_info, start_node, stop_nodes, use_transport

    os.environ["ROS_DOMAIN_ID"] = str(args.domain)
    os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"
    if args.profile_variable == "auto":
        use_transport("profile")
    else:
        for name in TRANSPORT_VARIABLES:
            os.environ.pop(name, None)
        os.environ["FASTDDS_DEFAULT_PROFILES_FILE"] = str(PROFILE)
    import importlib.metadata

    from mtl_perception.inference.image_codec import array_to_image_msg
    from mtl_perception.inference.sample_images import sample_image

    log_path = Path(args.json_out).with_suffix(".node.log")
    node = start_node(args.model, log_path)
    camera = BenchCamera("ros_distributions_bench", list(ALL_OUTPUTS))
    receiver = camera.receiver
    result: dict = {"rclpy": importlib.metadata.version("ros-rclpy"), "profile_variables": sorted(k for k in os.environ if k.endswith("_DEFAULT_PROFILES_FILE"))}
    for wheel in ("ros-fastdds", "ros-fastrtps"):
        try:
            result["fastdds"] = importlib.metadata.version(wheel)
        except importlib.metadata.PackageNotFoundError:
            pass
    try:
        camera.wait_for_node(node, log_path)
        messages = [array_to_image_msg(sample_image(480, 640, seed=i), "rgb8") for i in range(8)]
        info = camera_info(640, 480)
        camera.prime(info)

        def publish(index: int) -> float:
            return camera.publish(messages[index % len(messages)], info, index)

        one, lost = [], 0
        for i in range(args.frames + 3):
            sent = publish(i)
            arrived = receiver.wait_complete(i, FRAME_TIMEOUT_S)
            if i >= 3:
                if arrived is None:
                    lost += 1
                else:
                    one.append(arrived - sent)
            time.sleep(0.1)
        time.sleep(1.2)  # one diagnostics period
        with receiver.cond:
            graph_ms = float(receiver.diagnostics.get("latency_graph_median_ms", "nan"))
        result.update(one_at_a_time_s=one, one_at_a_time_lost=lost, graph_ms=graph_ms)

        first, period, sent_at = args.frames + 3, 1.0 / args.rate, {}
        start = time.monotonic()
        index = first
        while time.monotonic() - start < args.duration:
            time.sleep(max(0.0, start + (index - first) * period - time.monotonic()))
            sent_at[index] = publish(index)
            index += 1
        time.sleep(3.0)
        with receiver.cond:
            sustained = [receiver.complete(i) - s for i, s in sent_at.items() if receiver.complete(i) is not None]
        result.update(sustained_s=sustained, published=len(sent_at), duration=args.duration, rate=args.rate)
    finally:
        stop_nodes([node])
        camera.close()
    return result


def venv_env() -> dict[str, str]:
    """This environment less what this venv's ROS wheels set up: the other venv's bootstrapper sets its own library path."""
    return {k: v for k, v in os.environ.items() if k not in ("LD_LIBRARY_PATH", "_ROS_WHEELS_BOOTSTRAP_COMPLETE")}


def summary(runs: list[dict]) -> dict[str, float]:
    """Pooled figures of one distribution's rounds."""
    one = np.concatenate([r["one_at_a_time_s"] for r in runs]) * 1e3
    sustained = np.concatenate([r["sustained_s"] for r in runs]) * 1e3
    served, allowed = 0.0, 0.0
    for r in runs:
        served += len(r["sustained_s"])
        allowed += r["duration"] * min(r["rate"], 1e3 / r["graph_ms"]) if r["graph_ms"] == r["graph_ms"] else r["published"]
    pct = lambda v, q: float(np.percentile(v, q)) if len(v) else float("nan")  # noqa: E731
    return {
        "one at a time: median ms": pct(one, 50), "one at a time: p99 ms": pct(one, 99),
        "one at a time: lost frames": float(sum(r["one_at_a_time_lost"] for r in runs)),
        "sustained: median ms": pct(sustained, 50), "sustained: p99 ms": pct(sustained, 99),
        "sustained: served / allowed": served / allowed if allowed else float("nan"),
        "sustained: served / published": served / max(1, sum(r["published"] for r in runs)),
        "deploy graph (node) ms": float(np.median([r["graph_ms"] for r in runs])),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--kilted", type=Path, default=ROOT / ".venv", help="venv with Kilted's ROS wheels (make venv)")
    parser.add_argument("--jazzy", type=Path, default=ROOT / ".venv-jazzy", help="venv with Jazzy's ROS wheels (make test-jazzy)")
    parser.add_argument("--rounds", type=int, default=2, help="runs of each distribution, alternating; their frames are pooled")
    parser.add_argument("--frames", type=int, default=20, help="frames timed one at a time per run (after 3 warm-up frames)")
    parser.add_argument("--duration", type=float, default=15.0, help="seconds of sustained input per run")
    parser.add_argument("--rate", type=float, default=30.0, help="frames per second of the sustained input")
    parser.add_argument("--profile-variable", choices=("auto", "fastdds"), default="auto",
                        help="auto: the variable the installed Fast DDS reads (shipped); fastdds: FASTDDS_DEFAULT_PROFILES_FILE alone (before)")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--model", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--domain", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--json-out", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        Path(args.json_out).write_text(json.dumps(worker(args)))
        return 0

    from node_overhead import export_random_model

    workdir = Path(tempfile.mkdtemp(prefix="ros_distributions_"))
    print("exporting the default network (random weights) at 240x320 ...", flush=True)
    model = export_random_model(workdir, 240, 320)
    venvs = {"kilted": args.kilted, "jazzy": args.jazzy}
    for name, venv in venvs.items():
        if not (venv / "bin" / "python").is_file():
            print(f"ros_distributions: no {name} venv at {venv} (make venv / make test-jazzy)", file=sys.stderr)
            return 2
    runs: dict[str, list[dict]] = {d: [] for d in DISTRIBUTIONS}
    for round_index in range(args.rounds):
        for offset, name in enumerate(DISTRIBUTIONS):
            out = workdir / f"{name}_{round_index}.json"
            domain = 1 + (os.getpid() + 2 * round_index + offset) % 100
            command = [str(venvs[name] / "bin" / "python"), str(Path(__file__).resolve()), "--worker", "--model", str(model), "--domain", str(domain),
                       "--json-out", str(out), "--frames", str(args.frames), "--duration", str(args.duration), "--rate", str(args.rate),
                       "--profile-variable", args.profile_variable]
            subprocess.run(command, check=True, cwd=HERE, env=venv_env())
            run = json.loads(out.read_text())
            runs[name].append(run)
            one = np.array(run["one_at_a_time_s"]) * 1e3
            print(f"  round {round_index + 1} {name:<6} rclpy {run['rclpy']}, Fast DDS {run.get('fastdds', '?')}, profile via {','.join(run['profile_variables'])}: "
                  f"one at a time median {np.median(one) if len(one) else float('nan'):.1f} ms ({run['one_at_a_time_lost']} lost), "
                  f"sustained {len(run['sustained_s'])}/{run['published']} frames served", flush=True)
    figures = {d: summary(runs[d]) for d in DISTRIBUTIONS}
    print(f"\n640x480 rgb8 at {args.rate:.0f} Hz, every output subscribed, reliable QoS; {args.rounds} round(s) of {args.frames} frames + {args.duration:.0f} s each; "
          f"profile variable: {args.profile_variable}; {os.cpu_count()} CPU cores")
    print(f"{'figure':<32} {'kilted':>10} {'jazzy':>10} {'jazzy/kilted':>13}  target")
    for key in figures["kilted"]:
        kilted, jazzy = figures["kilted"][key], figures["jazzy"][key]
        ratio = jazzy / kilted if kilted else float("nan")
        if key.endswith("ms") and not key.startswith("deploy"):
            verdict = f"<= 1.2: {'met' if ratio <= 1.2 else 'NOT met'}"
        elif key == "sustained: served / allowed":
            verdict = f">= {1 / 1.2:.2f}: {'met' if ratio >= 1 / 1.2 else 'NOT met'}"
        else:
            verdict = ""
        print(f"{key:<32} {kilted:>10.2f} {jazzy:>10.2f} {ratio:>13.2f}  {verdict}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
