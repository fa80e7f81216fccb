#!/usr/bin/env python3
"""bag-eval on Ray against bag-eval's own processes, side by side on this machine.

    .venv/bin/python benchmarks/fleet_eval.py [--bags 8] [--frames 20] [--size 240x320] [--model models/default.onnx]

Writes --bags synthetic bags (bag-make's code) into a temporary folder and evaluates them four ways with the
same model: ``--jobs 1`` and ``--jobs 2`` (processes, bags.evaluation.fan_out) and a local Ray instance of
2 CPUs with 1 task at a time (2 CPUs per task) and 2 at a time (1 CPU per task), so each Ray run has the
onnxruntime threads of its process twin. Prints per set-up the wall time and frames/s, and for Ray the
figures a cluster is sized by: the scheduling overhead per bag, by two definitions (worker time not spent
inside ``evaluate_bag``, per bag; and the extra wall time over the process twin, per bag), and the bytes
moved per bag (payload of the task arguments and of the result, ``payload_bytes``; the model goes into the
object store once per node). The Ray instance's start is timed apart (once per run, not per bag). Ends with what a 100-node
cluster needs, from these figures. Every run's summary is checked equal to ``--jobs 1`` (metrics, counts).
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

from mtl_perception.bags.evaluation import BagEvalSettings, evaluate_bags, summarize
from mtl_perception.bags.make import BagOptions, make_bag, synthetic_source
from mtl_perception.paths import default_model_path


def figures_without_latency(results: list, settings: BagEvalSettings) -> str:
    """The summary without its wall-clock latency, as JSON text (NaN compares equal as text)."""
    document = summarize(results, settings).to_json()
    for figures in [*document["bags"], document["aggregate"]]:
        figures.pop("latency")
    return json.dumps(document, sort_keys=True, default=str)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bags", type=int, default=8)
    parser.add_argument("--frames", type=int, default=20, help="frames per bag")
    parser.add_argument("--size", default="240x320", help="HEIGHTxWIDTH of the bags' frames")
    parser.add_argument("--model", default=str(default_model_path()))
    args = parser.parse_args()
    try:
        import ray
    except ModuleNotFoundError:
        print("ray is not installed: pip install '.[fleet]'", file=sys.stderr)
        return 2
    from mtl_perception.bags.evaluation.ray_executor import RayOptions, evaluate_bags_on_ray, payload_bytes

    height, width = (int(v) for v in args.size.split("x"))
    folder = Path(tempfile.mkdtemp(prefix="fleet_eval_"))
    bags = [make_bag(folder / f"bag{i}", synthetic_source(i, args.frames, height, width), BagOptions(),
                     progress=False).path for i in range(args.bags)]
    frames = args.bags * args.frames
    settings = BagEvalSettings(model=args.model, progress=False)
    print(f"{args.bags} bags x {args.frames} frames at {width}x{height}, model {Path(args.model).name} "
          f"({Path(args.model).stat().st_size / 1e6:.1f} MB), onnxruntime CPU")

    walls: dict[str, float] = {}
    reference = None
    for jobs in (1, 2):
        start = time.perf_counter()
        results = evaluate_bags(bags, settings, jobs=jobs)
        walls[f"process {jobs}"] = time.perf_counter() - start
        reference = reference or figures_without_latency(results, settings)
        assert figures_without_latency(results, settings) == reference, f"--jobs {jobs} differs from --jobs 1"

    start = time.perf_counter()
    ray.init(num_cpus=2, include_dashboard=False, logging_level="WARNING", log_to_driver=False,
             _temp_dir=str(folder / "ray"))
    ray_start = time.perf_counter() - start
    runs = {}
    try:
        for workers in (1, 2):
            run = evaluate_bags_on_ray(bags, settings, RayOptions(cpus_per_task=2 // workers))
            assert not run.failures, run.failures
            assert figures_without_latency(run.results, settings) == reference, "Ray differs from --jobs 1"
            walls[f"ray {workers}"], runs[workers] = run.wall_s, run
    finally:
        ray.shutdown()

    print(f"\nRay local instance start (once per run): {ray_start:.2f} s")
    print(f"{'set-up':<28}{'wall s':>9}{'frames/s':>10}{'vs --jobs same':>16}")
    for workers in (1, 2):
        for kind in ("process", "ray"):
            wall = walls[f"{kind} {workers}"]
            label = f"--jobs {workers}" if kind == "process" else f"ray, {workers} task(s) at a time"
            ratio = wall / walls[f"process {workers}"]
            print(f"{label:<28}{wall:>9.2f}{frames / wall:>10.1f}{ratio:>15.2f}x")

    print(f"\n{'Ray, per bag':<28}{'1 at a time':>14}{'2 at a time':>14}")
    rows = {"evaluate_bag s (mean)": [], "overhead: worker time - evaluate_bag (ms)": [],
            "overhead: wall over --jobs (ms)": [], "task arguments (bytes)": [], "result (kB)": []}
    for workers, run in runs.items():
        stats = run.stats
        rows["evaluate_bag s (mean)"].append(f"{statistics.mean(s.evaluate_s for s in stats):.3f}")
        idle = run.wall_s * workers - sum(s.evaluate_s for s in stats)
        rows["overhead: worker time - evaluate_bag (ms)"].append(f"{idle / len(stats) * 1e3:.0f}")
        extra = (run.wall_s - walls[f"process {workers}"]) * workers / len(stats)
        rows["overhead: wall over --jobs (ms)"].append(f"{extra * 1e3:.0f}")
        rows["task arguments (bytes)"].append(f"{statistics.mean(s.argument_bytes for s in stats):.0f}")
        rows["result (kB)"].append(f"{statistics.mean(s.result_bytes for s in stats) / 1e3:.0f}")
    for label, values in rows.items():
        print(f"{label:<44}" + "".join(f"{v:>14}" for v in values))

    run = runs[2]
    per_frame_s = statistics.mean(s.evaluate_s for s in run.stats) / args.frames
    overhead_s = max(1e-3, (run.wall_s * 2 - sum(s.evaluate_s for s in run.stats)) / len(run.stats))
    records = sum(payload_bytes(r.records) for r in run.results)
    record_bytes = records / sum(len(r.records) for r in run.results)  # grows with the bag
    fixed_bytes = statistics.mean(s.result_bytes for s in run.stats) - records / len(run.results)  # strip, states
    hour_frames = 30 * 3600
    print("\nA 100-node cluster, from these figures (one 30 Hz camera-hour = 108,000 frames per bag):")
    print(f"- per bag-hour on one core: {hour_frames * per_frame_s / 3600:.2f} h of evaluation at {per_frame_s * 1e3:.1f} ms"
          f"/frame; the scheduling overhead per task ({overhead_s * 1e3:.0f} ms, measured with {args.frames}-frame bags)"
          f" is {overhead_s / (hour_frames * per_frame_s):.1e} of it: one task per bag-hour needs no chunking for overhead")
    hour_result = fixed_bytes + record_bytes * hour_frames
    print(f"- bytes moved per bag-hour: the bag itself, read from the shared file system, and a result of "
          f"{hour_result / 1e6:.0f} MB back to the driver ({record_bytes:.0f} B per frame record + "
          f"{fixed_bytes / 1e3:.0f} kB of picture strip and metric states); the model once per node "
          f"({run.model_bytes / 1e6:.1f} MB x 100 = {run.model_bytes * 100 / 1e6:.0f} MB in all)")
    print(f"- the driver holds every result until the summary: {hour_result * 300 / 1e9:.1f} GB for 300 bag-hours")
    return 0


if __name__ == "__main__":
    sys.exit(main())
