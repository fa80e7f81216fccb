"""Which output set a deploy graph is built for, on ONNX Runtime CPU: the subscribed set, or every enabled output.

Usage: .venv/bin/python benchmarks/engine_outputs.py [--model models/default.onnx] [--size 640x480] [--repeats 15]

The node builds TensorRT engines for the outputs its parameters enable and serves any subscribed subset from
them (a build takes minutes there). This measures whether ONNX Runtime should do the same: for each
subscribed subset, the graph of that subset against the graph of every output asked for the same subset,
interleaved in one run (medians of ``--repeats``), and how long a graph takes to build (compose the deploy
graph, open its session, first call). Prints per subset: both times and the ratio enabled / subscribed.
ONNX Runtime computes every output of a graph whatever is asked, so the ratio is the price of serving from
the enabled set; the build time is the price of a graph per subscribed set.
"""
from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
ENABLED = ("depth", "depth_color", "labels", "normals", "points", "semantic_color", "semantic_overlay")  # the node's defaults
SUBSETS = {"depth": ("depth",), "labels": ("labels",), "depth+points": ("depth", "points"), "semantic_color": ("semantic_color",),
           "depth+labels+normals": ("depth", "labels", "normals"), "all enabled": ENABLED}


def main() -> None:
    from sensor_msgs.msg import CameraInfo

    from mtl_perception.inference.frame_pipeline import FramePipeline
    from mtl_perception.inference.sample_images import sample_image

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=str(ROOT / "models" / "default.onnx"))
    parser.add_argument("--size", default="640x480", help="camera WIDTHxHEIGHT")
    parser.add_argument("--repeats", type=int, default=15)
    args = parser.parse_args()
    width, height = (int(v) for v in args.size.split("x"))
    info = CameraInfo(width=width, height=height)
    info.k = [500.0, 0.0, width / 2, 0.0, 500.0, height / 2, 0.0, 0.0, 1.0]
    info.p = [500.0, 0.0, width / 2, 0.0, 0.0, 500.0, height / 2, 0.0, 0.0, 0.0, 1.0, 0.0]
    frame = sample_image(height, width, seed=1)
    folder = Path(tempfile.mkdtemp(prefix="engine_outputs_"))
    subscribed = FramePipeline(args.model, "onnxruntime", {"provider": "cpu"}, cache_dir=folder / "subscribed", max_graphs=16)
    enabled = FramePipeline(args.model, "onnxruntime", {"provider": "cpu"}, cache_dir=folder / "enabled")
    enabled.serve_from(ENABLED)  # as the node does on TensorRT: every subset runs in this one graph
    start = time.perf_counter()
    enabled.prepare_now([enabled.deploy_options(height, width, "rgb8", ENABLED)])
    enabled.run(frame, "rgb8", ENABLED, info)
    print(f"ONNX Runtime CPU, {Path(args.model).name}, {width}x{height} rgb8; graph of every enabled output built in "
          f"{time.perf_counter() - start:.2f} s (compose, session, first call)")
    for name, subset in SUBSETS.items():
        start = time.perf_counter()
        subscribed.run(frame, "rgb8", subset, info)
        build = time.perf_counter() - start
        own, full = [], []
        for _ in range(args.repeats):
            own.append(subscribed.run(frame, "rgb8", subset, info).seconds["graph"])
            full.append(enabled.run(frame, "rgb8", subset, info).seconds["graph"])
        o, f = float(np.median(own)) * 1e3, float(np.median(full)) * 1e3
        print(f"  {name:22s} subscribed-set graph {o:7.1f} ms (built in {build:.2f} s) | enabled-set graph {f:7.1f} ms | "
              f"enabled / subscribed = {f / o:.2f}")
    assert enabled.graphs_built == 1 and subscribed.graphs_built == len(SUBSETS)
    subscribed.close()
    enabled.close()


if __name__ == "__main__":
    main()
