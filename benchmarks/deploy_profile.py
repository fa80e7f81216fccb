"""Where the deploy graph's time goes: ONNX Runtime's per-op profile and the full-resolution pass count.

Usage: .venv/bin/python benchmarks/deploy_profile.py [--model models/default.onnx] [--size 480x640]
           [--outputs depth labels ...] [--resolution input|model] [--runs 40] [--baseline-commit b219345]
           [--threads 0] [--optimization all] [--no-mem-pattern] [--sessions]

Builds the deploy graph of the model file for a camera of --size (rgb8) and the output set, runs it
in ONNX Runtime (CPU) with the profiler on and prints, per graph:
- the median time of the graph and of the bare network (the model file alone, on a preprocessed batch),
  timed interleaved in one loop, and the post-processing share: (graph - network) / network;
- the top 15 ops by total kernel time (per node after ONNX Runtime's own fusions, with its op type and
  output shape) and the same time summed per op type;
- the full-resolution pass count: executed nodes outside the network (names not ``net_...``) that write a tensor
  at the output resolution (Ho x Wo, any layout), i.e. the sweeps over output-sized memory, with their summed time.

``--baseline-commit C`` also builds the graph with ``src/mtl_perception/inference/deploy_graph.py`` as it
was at commit C (``git show`` into a temporary folder, imported from there: the "before" of a rewrite)
and profiles it beside the current one, interleaved. ``--sessions`` times the session settings (graph
optimisation level, intra-op threads, memory pattern) of the current graph and of the bare network.
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path
from types import ModuleType
from typing import Any, Callable

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
ALL_OUTPUTS = ("depth", "labels", "confidence", "normals", "depth_color", "semantic_color", "semantic_overlay", "points")
LEVELS = ("basic", "extended", "all")


def baseline_module(commit: str, folder: Path) -> ModuleType:
    """``inference/deploy_graph.py`` as it was at ``commit``, imported from a temporary file (a benchmark oracle only)."""
    source = subprocess.run(["git", "show", f"{commit}:src/mtl_perception/inference/deploy_graph.py"], cwd=ROOT,
                            capture_output=True, text=True, check=True).stdout
    path = folder / f"deploy_graph_{commit}.py"
    path.write_text(source)
    spec = importlib.util.spec_from_file_location(f"deploy_graph_{commit}", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def session(path: Path, threads: int, level: str = "all", mem_pattern: bool = True, profile: str | None = None, deploy: bool = True) -> Any:
    """A CPU session as the package's backend makes one (its disabled optimisers; no spinning for a deploy graph)."""
    import onnxruntime as ort

    from mtl_perception.inference.precision import ORT_CPU_DISABLED_OPTIMIZERS

    options = ort.SessionOptions()
    options.graph_optimization_level = {"disable": ort.GraphOptimizationLevel.ORT_DISABLE_ALL, "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
                                        "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED, "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL}[level]
    options.intra_op_num_threads = threads
    options.enable_mem_pattern = mem_pattern
    options.log_severity_level = 3
    if deploy:
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    if profile:
        options.enable_profiling = True
        options.profile_file_prefix = profile
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"], disabled_optimizers=list(ORT_CPU_DISABLED_OPTIMIZERS))


def graph_feeds(graph: Any, pixels: np.ndarray, palette: np.ndarray) -> dict[str, np.ndarray]:
    """Inputs of a deploy graph session for one rgb8 frame (unit focal rescale, range 0.1..10 m, NaN fill)."""
    values = {"camera_image": pixels[None], "depth_scale": np.ones(1, np.float32), "depth_range": np.array([0.1, 10.0], np.float32),
              "out_of_range": np.array([np.nan, np.nan], np.float32), "palette_bgr": palette, "overlay_alpha": np.array([0.5], np.float32),
              "intrinsics": np.array([[525.0, 525.0, pixels.shape[1] / 2, pixels.shape[0] / 2, 0.0]], np.float32)}
    return {i.name: values[i.name] for i in graph.get_inputs()}


def interleaved(calls: dict[str, Callable[[], Any]], runs: int) -> dict[str, list[float]]:
    """Seconds of each call, the calls taking turns (``runs`` rounds after 3 warm-up rounds); ``NAME cpu`` holds the
    process CPU seconds of each call: with one intra-op thread, the work itself, whatever else the machine runs."""
    times: dict[str, list[float]] = {key: [] for name in calls for key in (name, f"{name} cpu")}
    for i in range(runs + 3):
        for name, call in calls.items():
            start, cpu = time.perf_counter(), time.process_time()
            call()
            if i >= 3:
                times[name].append(time.perf_counter() - start)
                times[f"{name} cpu"].append(time.process_time() - cpu)
    return times


def profile_table(profile_file: str, out_hw: tuple[int, int], runs: int) -> tuple[list[tuple[str, str, str, float]], dict[str, float], int, float]:
    """(per node: name, op, output shape, ms per run), ms per run by op type, full-resolution passes, their ms per run."""
    events = json.loads(Path(profile_file).read_text())
    per_node: dict[str, list[Any]] = {}
    for event in events:
        if event.get("cat") != "Node" or not event["name"].endswith("_kernel_time"):
            continue
        name = event["name"][: -len("_kernel_time")]
        shapes = [next(iter(s.values())) for s in event["args"].get("output_type_shape", [])]
        entry = per_node.setdefault(name, [event["args"].get("op_name", "?"), shapes, 0.0])
        entry[2] += event["dur"] / 1e3 / runs
    by_op: dict[str, float] = defaultdict(float)
    full_passes, full_ms = 0, 0.0
    rows = []
    for name, (op, shapes, ms) in per_node.items():
        by_op[op] += ms
        if not name.startswith("net_") and any(_has_plane(shape, out_hw) for shape in shapes):  # the wrappers' passes, not the network's
            full_passes += 1
            full_ms += ms
        rows.append((name, op, " ".join("x".join(map(str, s)) for s in shapes), ms))
    rows.sort(key=lambda r: -r[3])
    return rows, dict(by_op), full_passes, full_ms


def _has_plane(shape: list[int], out_hw: tuple[int, int]) -> bool:
    return any(tuple(shape[i : i + 2]) == out_hw for i in range(len(shape) - 1))


def profile(name: str, path: Path, feeds: dict[str, np.ndarray], out_hw: tuple[int, int], threads: int, level: str, mem_pattern: bool,
            runs: int, folder: Path) -> None:
    prof = session(path, threads, level, mem_pattern, profile=str(folder / f"profile_{name}"))
    for _ in range(3):
        prof.run(None, feeds)
    prof.end_profiling()  # warm-up runs out of the table: a fresh profile for the timed runs
    prof = session(path, threads, level, mem_pattern, profile=str(folder / f"profile_{name}_timed"))
    for _ in range(runs):
        prof.run(None, feeds)
    rows, by_op, passes, pass_ms = profile_table(prof.end_profiling(), out_hw, runs)
    total = sum(r[3] for r in rows)
    print(f"\n[{name}] {len(rows)} nodes executed, kernel time {total:.2f} ms per run; full-resolution ({out_hw[0]}x{out_hw[1]}) passes: "
          f"{passes} nodes, {pass_ms:.2f} ms")
    print("    top 15 nodes:                                  op                      output shape       ms")
    for node, op, shape, ms in rows[:15]:
        print(f"    {node[:46]:46s} {op[:22]:22s} {shape[:18]:18s} {ms:6.2f}")
    print("    by op type: " + ", ".join(f"{op} {ms:.2f}" for op, ms in sorted(by_op.items(), key=lambda kv: -kv[1])[:15]))


def sweep_sessions(graph_path: Path, model_path: Path, feeds: dict[str, np.ndarray], net_feed: dict[str, np.ndarray], runs: int) -> None:
    """Median wall ms of the deploy graph and the bare network per setting: each setting's two sessions alone, interleaved
    with each other; the sweep runs forwards and then backwards (drift shows as a difference between the two). The
    deploy graph runs without spinning threads (the node's setting) except in the last row."""
    settings = [(level, threads, pattern, False) for level in LEVELS for threads in (1, 2) for pattern in (True, False)]
    settings.append(("all", 2, True, True))
    found: dict[tuple[str, int, bool, bool], list[tuple[float, float]]] = defaultdict(list)
    for setting in [*settings, *reversed(settings)]:
        level, threads, pattern, spin = setting
        graph, network = session(graph_path, threads, level, pattern, deploy=not spin), session(model_path, threads, level, pattern, deploy=False)
        times = interleaved({"graph": lambda g=graph: g.run(None, feeds), "net": lambda n=network: n.run(None, net_feed)}, runs)
        found[setting].append((float(np.median(times["graph"])) * 1e3, float(np.median(times["net"])) * 1e3))
    print("\nsession settings (median wall ms, forward sweep / backward sweep): level, intra-op threads, memory pattern")
    for setting in settings:
        level, threads, pattern, spin = setting
        (g1, n1), (g2, n2) = found[setting]
        print(f"    {level:8s} threads {threads} mem pattern {'on ' if pattern else 'off'}{' graph spinning' if spin else ''}: "
              f"deploy graph {g1:6.2f} / {g2:6.2f} ms, bare network {n1:6.2f} / {n2:6.2f} ms, post-processing "
              f"{(g1 - n1) / n1:.2f} / {(g2 - n2) / n2:.2f} x the network")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, default=ROOT / "models" / "default.onnx", help="model file (default: the bundled model)")
    parser.add_argument("--size", default="480x640", help="camera HxW (rgb8)")
    parser.add_argument("--outputs", nargs="+", default=list(ALL_OUTPUTS), choices=ALL_OUTPUTS, help="deploy graph outputs (default: all)")
    parser.add_argument("--resolution", choices=("input", "model"), default="input", help="output size: camera (input) or network (model)")
    parser.add_argument("--runs", type=int, default=40, help="timed runs per graph (after 3 warm-up runs)")
    parser.add_argument("--threads", type=int, default=0, help="intra-op threads of the profiled sessions (0 = onnxruntime default)")
    parser.add_argument("--optimization", choices=LEVELS, default="all", help="graph optimisation level of the profiled sessions")
    parser.add_argument("--no-mem-pattern", action="store_true", help="profile with enable_mem_pattern off")
    parser.add_argument("--baseline-commit", help="also profile the graph of deploy_graph.py at this commit (the 'before')")
    parser.add_argument("--sessions", action="store_true", help="time session settings (level x threads x memory pattern) of graph and network")
    args = parser.parse_args()

    sys.path.insert(0, str(ROOT / "src"))
    import onnx

    from mtl_perception.fileio import file_sha256
    from mtl_perception.inference import deploy_graph
    from mtl_perception.inference.model_file import load_onnx_file
    from mtl_perception.inference.processing import preprocess
    from mtl_perception.inference.sample_images import sample_image

    height, width = (int(v) for v in args.size.lower().split("x"))
    folder = Path(tempfile.mkdtemp(prefix="deploy_profile_"))
    model = load_onnx_file(args.model)
    options = deploy_graph.DeployOptions(height, width, out_size=args.resolution, outputs=tuple(args.outputs))
    builders = {"current": deploy_graph}
    if args.baseline_commit:
        builders = {f"baseline {args.baseline_commit}": baseline_module(args.baseline_commit, folder), **builders}
    paths = {}
    for name, module in builders.items():
        graph = module.compose_deploy_graph(model, module.DeployOptions(height, width, out_size=args.resolution, outputs=tuple(args.outputs)))
        paths[name] = folder / f"{name.split()[0]}.onnx"
        onnx.save(graph, str(paths[name]))
    layout = deploy_graph.layout_for(deploy_graph.metadata_from_props({p.key: p.value for p in model.metadata_props}, "model"), options)
    out_hw = (layout.out_height, layout.out_width)
    pixels = sample_image(height, width, seed=1)
    palette = np.random.default_rng(0).integers(0, 256, (layout.classes, 3), dtype=np.uint8)
    batch, _ = preprocess(pixels, deploy_graph.metadata_from_props({p.key: p.value for p in model.metadata_props}, "model"), "letterbox")
    mem = not args.no_mem_pattern
    print(f"model {args.model.name} ({file_sha256(args.model)[:12]}), camera {height}x{width} rgb8, outputs {list(options.outputs)} at {args.resolution} "
          f"resolution ({out_hw[0]}x{out_hw[1]}); onnxruntime CPU, level {args.optimization}, threads {args.threads or 'default'}, "
          f"memory pattern {'on' if mem else 'off'}")

    sessions = {name: session(path, args.threads, args.optimization, mem) for name, path in paths.items()}
    network = session(args.model, args.threads, args.optimization, mem, deploy=False)
    feeds = {name: graph_feeds(s, pixels, palette) for name, s in sessions.items()}
    net_feed = {network.get_inputs()[0].name: batch}
    calls: dict[str, Callable[[], Any]] = {name: (lambda s=s, f=feeds[name]: s.run(None, f)) for name, s in sessions.items()}
    calls["bare network"] = lambda: network.run(None, net_feed)
    times = interleaved(calls, args.runs)
    for clock, suffix in (("wall", ""), ("process CPU", " cpu")):
        net_ms = float(np.median(times["bare network" + suffix])) * 1e3
        print(f"\nmedians over {args.runs} interleaved runs, {clock} time: bare network {net_ms:.2f} ms")
        for name in sessions:
            graph_ms = float(np.median(times[name + suffix])) * 1e3
            print(f"    {name}: deploy graph {graph_ms:.2f} ms, post-processing (graph - network) {graph_ms - net_ms:.2f} ms = "
                  f"{(graph_ms - net_ms) / net_ms:.2f} x the network")
    for name, path in paths.items():
        profile(name.replace(" ", "_"), path, feeds[name], out_hw, args.threads, args.optimization, mem, args.runs, folder)

    if args.sessions:
        sweep_sessions(paths["current"], args.model, feeds["current"], net_feed, max(10, args.runs // 2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
