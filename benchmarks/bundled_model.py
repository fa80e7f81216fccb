#!/usr/bin/env python3
"""Two model files side by side on ONNX Runtime CPU at one camera resolution: is the new bundled model slower?

Usage: .venv/bin/python benchmarks/bundled_model.py --old OLD.onnx [--new models/default.onnx]
           [--camera 480x640] [--frames 40] [--threads 0]

For each model, interleaved frame by frame (one call of each in turn, so a noisy machine slows both alike):
- the bare network: ``backend.infer`` on a preprocessed batch at the model's own input size;
- the deploy graph the node runs for one camera frame (``FramePipeline.run``: decode, resize, network,
  depth/semantic/normals outputs at the camera resolution), with a camera info of that resolution.
Prints the medians and the ratios new / old of each; the issue's criterion is the deploy-graph ratio
("latency at the same camera resolution") <= 1.0. Writes nothing outside a temporary folder.
"""
from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OUTPUTS = ("depth", "labels", "normals")


def camera_info(height: int, width: int):
    """A CameraInfo with a 60-degree-ish pinhole at the camera resolution."""
    from sensor_msgs.msg import CameraInfo

    fx = 0.81 * width
    info = CameraInfo(width=width, height=height, distortion_model="plumb_bob")
    info.k = [fx, 0.0, width / 2 - 0.5, 0.0, fx, height / 2 - 0.5, 0.0, 0.0, 1.0]
    info.p = [fx, 0.0, width / 2 - 0.5, 0.0, 0.0, fx, height / 2 - 0.5, 0.0, 0.0, 0.0, 1.0, 0.0]
    return info


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--old", type=Path, required=True, help="the model file to compare against (e.g. the previous bundled model)")
    parser.add_argument("--new", type=Path, default=ROOT / "models" / "default.onnx", help="the new model file")
    parser.add_argument("--camera", default="480x640", help="camera frame size HxW (default 480x640)")
    parser.add_argument("--frames", type=int, default=40, help="timed frames per model (after 3 warm-up frames)")
    parser.add_argument("--threads", type=int, default=0, help="ONNX Runtime intra-op threads; 0 = its default")
    args = parser.parse_args()

    from mtl_perception.inference.backends import create_backend
    from mtl_perception.inference.frame_pipeline import FramePipeline
    from mtl_perception.inference.processing import preprocess
    from mtl_perception.inference.sample_images import sample_image

    height, width = (int(v) for v in args.camera.lower().split("x"))
    info = camera_info(height, width)
    frames = [sample_image(height, width, seed=i) for i in range(4)]
    cache = Path(tempfile.mkdtemp(prefix="bundled_model_"))
    models = {"old": args.old, "new": args.new}
    options = {"provider": "cpu", "intra_op_threads": args.threads}
    backends = {k: create_backend("onnxruntime", str(p), **options) for k, p in models.items()}
    pipelines = {k: FramePipeline(p, "onnxruntime", options, cache_dir=cache / k) for k, p in models.items()}
    batches = {k: preprocess(frames[0], b.metadata, "letterbox")[0] for k, b in backends.items()}
    times: dict[str, dict[str, list[float]]] = {k: {"network": [], "graph": []} for k in models}
    for index in range(args.frames + 3):
        for key in models:
            start = time.perf_counter()
            backends[key].infer(batches[key])
            network = time.perf_counter() - start
            start = time.perf_counter()
            pipelines[key].run(frames[index % len(frames)], "rgb8", OUTPUTS, info)
            graph = time.perf_counter() - start
            if index >= 3:
                times[key]["network"].append(network * 1000)
                times[key]["graph"].append(graph * 1000)
    print(f"ONNX Runtime CPU, camera {height}x{width} rgb8, outputs {list(OUTPUTS)}, {args.frames} frames each, interleaved")
    for key, path in models.items():
        meta = backends[key].metadata
        net, graph = (statistics.median(times[key][n]) for n in ("network", "graph"))
        print(f"  {key}: {path.name} input {meta.input_height}x{meta.input_width} ({path.stat().st_size / 1e6:.1f} MB): "
              f"bare network {net:.1f} ms, deploy graph per camera frame {graph:.1f} ms")
    for name, what in (("network", "bare network"), ("graph", "deploy graph at the camera resolution")):
        ratio = statistics.median(times["new"][name]) / statistics.median(times["old"][name])
        print(f"  new / old, {what}: {ratio:.2f}")
    for key in models:
        backends[key].close()
        pipelines[key].close()


if __name__ == "__main__":
    main()
