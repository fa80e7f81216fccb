"""One prepared check for the first GPU machine: every GPU path of the package, each row ran or not, in < 8 min.

Usage: .venv/bin/python benchmarks/gpu_check.py [--model models/default.onnx] [--camera 480x640] [--iters 30]
       [--budget-s 450] [--cache-dir DIR] [--json out.json]

Rows (each says ``ran`` with its figures, ``not available here`` with the reason, ``failed`` with the error, or
``skipped`` when the time budget is spent):
- torch CUDA FP32 / FP16 latency of the network, and of the deploy graph (the pre/post graphs in ONNX Runtime
  around the torch network, as the node's frame pipeline runs torch); random weights of the bundled model's
  architecture (config/train/default.yaml): latency does not depend on training;
- ONNX Runtime CPU FP32 latency of the network and of the deploy graph: the reference of the parity figures;
- ONNX Runtime CUDA, and its TensorRT execution provider (FP16 file; engine and timing caches on), when
  importable: first-run (engine build) time, second-session time, latency, parity vs ONNX Runtime CPU;
- native TensorRT FP16 and INT8 (strongly typed, from the precision files) for the network and the deploy
  graph: build time, whether a second start is an engine-cache hit (and its load time), latency, parity vs
  ONNX Runtime CPU FP32 (and, for INT8, vs the same INT8 file on ONNX Runtime CPU);
- several cameras: one batched call of the deploy graph on N = 2 and 4 camera frames against N calls of one
  (``FramePipeline.run_batch``), on ONNX Runtime CPU and CUDA and native TensorRT FP16.
Parity on networks: depth AbsRel, label agreement, normals angle (``precision.output_agreement``) on
synthetic validation frames; on deploy graphs: per output, max |diff| for floats, equal fraction for uint8.
"""
from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
import time
import traceback
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


class NotAvailable(Exception):
    """This row cannot run on this machine (a library, provider or GPU is missing)."""


@dataclass
class Row:
    name: str
    status: str  # ran | not available here | failed | skipped
    detail: str
    seconds: float = 0.0


class Check:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.start = time.perf_counter()
        self.rows: list[Row] = []

    def remaining(self) -> float:
        return self.args.budget_s - (time.perf_counter() - self.start)

    def row(self, name: str, body: Callable[[], str], needs_s: float = 20.0) -> None:
        if self.remaining() < needs_s:
            self.rows.append(Row(name, "skipped", f"time budget: {self.remaining():.0f} s left, this row needs about {needs_s:.0f} s"))
            return
        started = time.perf_counter()
        try:
            detail, status = body(), "ran"
        except NotAvailable as exc:
            detail, status = str(exc), "not available here"
        except Exception as exc:  # a row that fails must not stop the others
            detail, status = f"{type(exc).__name__}: {str(exc).strip().splitlines()[0][:300] if str(exc).strip() else ''}", "failed"
            if self.args.verbose:
                traceback.print_exc()
        self.rows.append(Row(name, status, detail, time.perf_counter() - started))
        print(f"[{time.perf_counter() - self.start:6.1f} s] {name}: {status}", flush=True)


# -- what this machine has ----------------------------------------------------------------------------

def cuda_or_reason() -> None:
    import torch

    if not torch.cuda.is_available():
        raise NotAvailable(f"torch {torch.__version__} sees no CUDA device")


def ort_provider_or_reason(provider: str) -> None:
    import onnxruntime as ort

    if provider not in ort.get_available_providers():
        raise NotAvailable(f"onnxruntime {ort.__version__} has no {provider} (available: {', '.join(ort.get_available_providers())}; "
                           "install onnxruntime-gpu)")


def tensorrt_or_reason() -> Any:
    from mtl_perception.inference.backends.base import BackendError
    from mtl_perception.inference.backends.tensorrt_backend import import_tensorrt

    try:
        return import_tensorrt()
    except BackendError as exc:
        raise NotAvailable(str(exc)) from None


def require(*checks: Callable[[], Any]) -> None:
    """NotAvailable naming every missing piece (not only the first)."""
    reasons = []
    for probe in checks:
        try:
            probe()
        except NotAvailable as exc:
            reasons.append(str(exc))
    if reasons:
        raise NotAvailable("; ".join(reasons))


def deploy_or_reason() -> tuple[Any, Any]:
    try:
        from mtl_perception.inference.deploy_graph import DeployOptions, build_deploy_graph
    except Exception as exc:  # the deploy graph module may be missing or broken on this checkout
        raise NotAvailable(f"deploy graph not available: {type(exc).__name__}: {exc}") from None
    return DeployOptions, build_deploy_graph


# -- inputs and figures -------------------------------------------------------------------------------

def validation_frames(meta: Any, count: int) -> list[np.ndarray]:
    from mtl_perception.data.datasets import VAL_SEED_OFFSET
    from mtl_perception.data.synthetic import render_frame
    from mtl_perception.inference.processing import preprocess

    return [preprocess(render_frame(VAL_SEED_OFFSET + i, meta.input_height, meta.input_width).rgb, meta, "stretch")[0] for i in range(count)]


def camera_frames(height: int, width: int, count: int) -> list[np.ndarray]:
    from mtl_perception.inference.sample_images import sample_image

    return [sample_image(height, width, seed=500 + i) for i in range(count)]


def deploy_feeds(graph_path: Path, meta: Any, image: np.ndarray) -> dict[str, np.ndarray]:
    """Inputs of a deploy graph: the camera image and plausible runtime inputs, by the graph's own input list."""
    import onnx
    from onnx import helper

    model = onnx.load(str(graph_path), load_external_data=False)
    h, w = image.shape[:2]
    known = {
        "depth_scale": np.array([1.0], np.float32),
        "depth_range": np.array([meta.depth_min, meta.depth_max], np.float32),
        "intrinsics": np.array([0.8 * w, 0.8 * w, w / 2, h / 2, 0.0], np.float32),
        "palette_bgr": np.ascontiguousarray(np.asarray(meta.palette or [[0, 0, 0]], np.uint8)[:, ::-1]),
        "overlay_alpha": np.array([0.5], np.float32),
        "out_of_range": np.array([np.nan, np.nan], np.float32),
    }
    feeds = {}
    for index, info in enumerate(model.graph.input):
        dims = [d.dim_value if d.dim_value > 0 else 1 for d in info.type.tensor_type.shape.dim]
        dtype = helper.tensor_dtype_to_np_dtype(info.type.tensor_type.elem_type)
        value = image if index == 0 else known.get(info.name)
        if value is None:
            feeds[info.name] = np.zeros(dims, dtype)
            continue
        if list(value.shape) != dims:  # e.g. a leading batch dimension of a batched graph
            try:
                value = np.broadcast_to(value.reshape(dims[len(dims) - value.ndim:]) if value.ndim <= len(dims) else value, dims)
            except ValueError:
                pass  # left as it is: the backend names the mismatch
        feeds[info.name] = np.ascontiguousarray(value, dtype=dtype)
    return feeds


def time_calls(call: Callable[[Any], Any], inputs: list[Any], iters: int, warmup: int = 3) -> tuple[float, float]:
    """Median and p95 latency (ms) of ``call`` over ``iters`` calls after ``warmup``."""
    samples = []
    for i in range(warmup + iters):
        started = time.perf_counter()
        call(inputs[i % len(inputs)])
        if i >= warmup:
            samples.append((time.perf_counter() - started) * 1000.0)
    return float(np.median(samples)), float(np.percentile(samples, 95))


def network_parity(outputs: list[dict[str, np.ndarray]], reference: list[dict[str, np.ndarray]]) -> str:
    from mtl_perception.inference.precision import output_agreement

    return output_agreement(outputs, reference).summary()


def deploy_parity(outputs: dict[str, np.ndarray], reference: dict[str, np.ndarray]) -> str:
    parts = []
    for name, ref in reference.items():
        out = outputs[name]
        if ref.dtype == np.uint8:
            parts.append(f"{name} {100 * float(np.mean(out == ref)):.2f}% equal")
        else:
            finite = np.isfinite(ref) & np.isfinite(out)
            diff = float(np.max(np.abs(out[finite] - ref[finite]))) if finite.any() else float("nan")
            parts.append(f"{name} max|d| {diff:.3g}")
    return ", ".join(parts)


# -- the rows -----------------------------------------------------------------------------------------

def run_checks(args: argparse.Namespace) -> list[Row]:
    import torch

    from mtl_perception.inference.model_file import read_onnx_metadata
    from mtl_perception.inference.precision import CalibrationSpec, make_precision_file, run_onnx_cpu

    check = Check(args)
    work = Path(args.cache_dir) if args.cache_dir else Path(tempfile.mkdtemp(prefix="mtl_gpu_check_"))
    engines, deploy_dir = work / "engines", work / "deploy"
    import os

    from mtl_perception.inference.precision import CACHE_ENV

    os.environ[CACHE_ENV] = str(work / "precision")  # the backends' precision files, next to the engines of this run
    model = Path(args.model)
    meta = read_onnx_metadata(model)
    frames = validation_frames(meta, 4)
    cam_h, cam_w = (int(v) for v in args.camera.lower().split("x"))
    cameras = camera_frames(cam_h, cam_w, 2)
    state: dict[str, Any] = {}
    iters = args.iters

    def reference_network() -> str:
        outputs = run_onnx_cpu(model, frames)
        state["ref_net"] = outputs
        from mtl_perception.inference.backends import create_backend

        backend = create_backend("onnxruntime", model, provider="cpu")
        median, p95 = time_calls(backend.infer, frames, iters)
        return f"median {median:.2f} ms, p95 {p95:.2f} ms (the parity reference)"

    check.row("onnxruntime cpu fp32 network", reference_network)

    def deploy_graph_for(precision: str) -> Path:
        DeployOptions, build_deploy_graph = deploy_or_reason()
        source = model if precision == "fp32" else make_precision_file(model, precision, None, state.get("calibration")).path
        return build_deploy_graph(source, DeployOptions(cam_h, cam_w, "rgb8"), deploy_dir)

    def reference_deploy() -> str:
        from mtl_perception.inference.backends import create_backend

        graph = deploy_graph_for("fp32")
        backend = create_backend("onnxruntime", graph, provider="cpu", graph="deploy")
        feeds = [deploy_feeds(graph, meta, image) for image in cameras]
        state["deploy_feeds"], state["ref_deploy"] = feeds, backend.run(feeds[0])
        median, p95 = time_calls(backend.run, feeds, iters)
        return f"{cam_h}x{cam_w} rgb8 camera: median {median:.2f} ms, p95 {p95:.2f} ms (the parity reference)"

    check.row("onnxruntime cpu fp32 deploy graph", reference_deploy)

    # torch on CUDA ------------------------------------------------------------------------------
    def torch_checkpoint() -> Path:
        if args.checkpoint:
            return Path(args.checkpoint)
        if "checkpoint" not in state:
            from mtl_perception.config import load_config
            from mtl_perception.inference.export import save_untrained_checkpoint

            cfg = load_config(str(ROOT / "config" / "train" / "default.yaml"), [])
            dataset = {"class_names": meta.class_names, "palette": meta.palette, "focal_length_px": meta.focal_length_px}
            state["checkpoint"] = save_untrained_checkpoint(work / "random_default.pt", cfg, dataset)
        return state["checkpoint"]

    for precision in ("fp32", "fp16"):
        def torch_network(precision: str = precision) -> str:
            cuda_or_reason()
            from mtl_perception.inference.backends import create_backend

            checkpoint = torch_checkpoint()
            backend = create_backend("torch", checkpoint, device="cuda", precision=precision)
            cpu = create_backend("torch", checkpoint, device="cpu")
            median, p95 = time_calls(backend.infer, frames, iters)
            parity = network_parity([backend.infer(f) for f in frames[:2]], [cpu.infer(f) for f in frames[:2]])
            return f"median {median:.2f} ms, p95 {p95:.2f} ms; vs torch CPU: {parity}"

        check.row(f"torch cuda {precision} network", torch_network)

    for precision in ("fp32", "fp16"):
        def torch_deploy(precision: str = precision) -> str:
            require(cuda_or_reason, deploy_or_reason)
            DeployOptions, _ = deploy_or_reason()
            import onnxruntime as ort

            from mtl_perception.inference.backends import create_backend
            from mtl_perception.inference.deploy_graph import compose_deploy_parts, layout_for

            network = create_backend("torch", torch_checkpoint(), device="cuda", precision=precision)
            options = DeployOptions(cam_h, cam_w, "rgb8")
            pre, post = compose_deploy_parts(network.metadata, options, layout_for(network.metadata, options))
            provider = ["CUDAExecutionProvider", "CPUExecutionProvider"] if "CUDAExecutionProvider" in ort.get_available_providers() else ["CPUExecutionProvider"]
            pre_s = ort.InferenceSession(pre.SerializeToString(), providers=provider)
            post_s = ort.InferenceSession(post.SerializeToString(), providers=provider)
            post_inputs = [i.name for i in post_s.get_inputs()]
            feeds = state.get("deploy_feeds") or [{"camera_image": image} for image in cameras]

            def frame(feed: dict[str, np.ndarray]) -> Any:
                net_in, view = pre_s.run(["pre_net_input", "pre_view"], {pre_s.get_inputs()[0].name: feed[next(iter(feed))]})
                values = {f"net_{network.metadata.output_names[t]}": v for t, v in network.infer(net_in).items()}
                values.update(feed, pre_view=view)
                return post_s.run(None, {n: values[n] for n in post_inputs})

            median, p95 = time_calls(frame, feeds, iters)
            return f"pre/post on {provider[0]}: median {median:.2f} ms, p95 {p95:.2f} ms"

        check.row(f"torch cuda {precision} deploy graph", torch_deploy)

    # ONNX Runtime GPU providers -------------------------------------------------------------------------
    def ort_cuda_network() -> str:
        ort_provider_or_reason("CUDAExecutionProvider")
        from mtl_perception.inference.backends import create_backend

        backend = create_backend("onnxruntime", model, provider="cuda")
        median, p95 = time_calls(backend.infer, frames, iters)
        return f"median {median:.2f} ms, p95 {p95:.2f} ms; vs CPU: {network_parity([backend.infer(f) for f in frames], state['ref_net'])}"

    check.row("onnxruntime cuda fp32 network", ort_cuda_network)

    def ort_cuda_deploy() -> str:
        ort_provider_or_reason("CUDAExecutionProvider")
        from mtl_perception.inference.backends import create_backend

        graph = deploy_graph_for("fp32")
        backend = create_backend("onnxruntime", graph, provider="cuda", graph="deploy")
        median, p95 = time_calls(backend.run, state["deploy_feeds"], iters)
        return f"median {median:.2f} ms, p95 {p95:.2f} ms; vs CPU: {deploy_parity(backend.run(state['deploy_feeds'][0]), state['ref_deploy'])}"

    check.row("onnxruntime cuda fp32 deploy graph", ort_cuda_deploy)

    def ort_tensorrt_network() -> str:
        require(lambda: ort_provider_or_reason("TensorrtExecutionProvider"), cuda_or_reason)
        from mtl_perception.inference.backends import create_backend

        fp16 = make_precision_file(model, "fp16").path
        started = time.perf_counter()
        first = create_backend("onnxruntime", fp16, provider="tensorrt", tensorrt_cache_dir=work / "ort_trt")
        first.infer(frames[0])  # the provider builds its engine on the first run
        build_s = time.perf_counter() - started
        first.close()
        started = time.perf_counter()
        second = create_backend("onnxruntime", fp16, provider="tensorrt", tensorrt_cache_dir=work / "ort_trt")
        second.infer(frames[0])
        again_s = time.perf_counter() - started
        median, p95 = time_calls(second.infer, frames, iters)
        parity = network_parity([second.infer(f) for f in frames], state["ref_net"])
        return f"FP16 file: first run {build_s:.1f} s (engine build), second session {again_s:.1f} s; median {median:.2f} ms, p95 {p95:.2f} ms; vs CPU FP32: {parity}"

    check.row("onnxruntime tensorrt-EP fp16 network", ort_tensorrt_network, needs_s=90)

    # native TensorRT -------------------------------------------------------------------------------
    def calibration() -> None:
        if "calibration" not in state:
            state["calibration"] = CalibrationSpec(args.calib_dir, None, args.calib_frames, "letterbox")

    for precision in ("fp16", "int8"):
        def trt_network(precision: str = precision) -> str:
            require(tensorrt_or_reason, cuda_or_reason)
            trt = tensorrt_or_reason()
            from mtl_perception.inference.backends.tensorrt_backend import TensorRTBackend

            notes = ""
            if precision == "int8":
                calibration()
                made = make_precision_file(model, "int8", None, state["calibration"])
                notes = f"Q/DQ file {made.seconds:.1f} s ({made.calibration}); "
            started = time.perf_counter()
            first = TensorRTBackend(model, precision=precision, cache_dir=engines)
            build_s = time.perf_counter() - started
            source = first.engine_source
            first.close()
            started = time.perf_counter()
            second = TensorRTBackend(model, precision=precision, cache_dir=engines, allow_build=False)
            load_s = time.perf_counter() - started
            median, p95 = time_calls(second.infer, frames, iters)
            outputs = [second.infer(f) for f in frames]
            parity = f"vs ORT CPU FP32: {network_parity(outputs, state['ref_net'])}"
            if precision == "int8":
                parity += f"; vs the INT8 file on ORT CPU: {network_parity(outputs, run_onnx_cpu(made.path, frames))}"
            key = second.key
            return (f"TensorRT {trt.__version__}, {key.gpu_name} sm{key.compute_capability} {key.sm_count} SMs; {notes}"
                    f"first start {source} in {build_s:.1f} s, second start {second.engine_source} in {load_s:.2f} s; "
                    f"median {median:.2f} ms, p95 {p95:.2f} ms; {parity}")

        check.row(f"tensorrt {precision} network", trt_network, needs_s=90)

    for precision in ("fp16", "int8"):
        def trt_deploy(precision: str = precision) -> str:
            require(tensorrt_or_reason, cuda_or_reason, deploy_or_reason)
            from mtl_perception.inference.backends.tensorrt_backend import TensorRTBackend

            if precision == "int8":
                calibration()
            graph = deploy_graph_for(precision)
            started = time.perf_counter()
            first = TensorRTBackend(graph, cache_dir=engines, graph="deploy")
            build_s = time.perf_counter() - started
            source = first.engine_source
            first.close()
            started = time.perf_counter()
            second = TensorRTBackend(graph, cache_dir=engines, graph="deploy", allow_build=False)
            load_s = time.perf_counter() - started
            feeds = state.get("deploy_feeds") or [deploy_feeds(graph, meta, image) for image in cameras]
            median, p95 = time_calls(second.run, feeds, iters)
            parity = deploy_parity(second.run(feeds[0]), state["ref_deploy"]) if "ref_deploy" in state else "no CPU reference"
            return (f"{cam_h}x{cam_w} rgb8: first start {source} in {build_s:.1f} s, second start {second.engine_source} in {load_s:.2f} s; "
                    f"median {median:.2f} ms, p95 {p95:.2f} ms; vs ORT CPU FP32 deploy graph: {parity}")

        check.row(f"tensorrt {precision} deploy graph", trt_deploy, needs_s=90)

    def batching(kind: str, options: dict[str, Any], precision: str) -> Callable[[], str]:
        """Several cameras: one batched deploy graph call of N frames against N calls of one (FramePipeline)."""
        def body() -> str:
            if kind == "tensorrt":
                require(tensorrt_or_reason, cuda_or_reason)
            elif options.get("provider") == "cuda":
                ort_provider_or_reason("CUDAExecutionProvider")
            from mtl_perception.inference.frame_pipeline import FramePipeline

            pipeline = FramePipeline(model, kind, options, cache_dir=work / "batching", precision=precision)
            frames = [(image, "rgb8", None) for image in camera_frames(cam_h, cam_w, 4)]
            outputs = ("depth", "labels", "normals")
            figures = []
            try:
                for count in (2, 4):
                    batch = frames[:count]
                    together, _ = time_calls(lambda _: pipeline.run_batch(batch, outputs), [None], iters)
                    apart, _ = time_calls(lambda _: [pipeline.run(p, e, outputs) for p, e, _ in batch], [None], iters)
                    figures.append(f"N={count}: one call {together:.2f} ms, {count} calls {apart:.2f} ms, unbatched / batched {apart / together:.2f}")
            finally:
                pipeline.close()
            return f"{cam_h}x{cam_w} rgb8, outputs {list(outputs)}: " + "; ".join(figures)
        return body

    check.row("batched cameras, onnxruntime cpu fp32 deploy graph", batching("onnxruntime", {"provider": "cpu"}, "fp32"), needs_s=30)
    check.row("batched cameras, onnxruntime cuda fp32 deploy graph", batching("onnxruntime", {"provider": "cuda"}, "fp32"), needs_s=30)
    check.row("batched cameras, tensorrt fp16 deploy graph", batching("tensorrt", {"cache_dir": str(engines)}, "fp16"), needs_s=120)
    return check.rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default=str(ROOT / "models" / "default.onnx"), help="exported FP32 model file (default: the bundled model)")
    parser.add_argument("--checkpoint", default=None, help="checkpoint for the torch rows (default: random weights of config/train/default.yaml)")
    parser.add_argument("--camera", default="480x640", help="camera size HxW of the deploy graph rows")
    parser.add_argument("--iters", type=int, default=30, help="timed calls per latency figure (after 3 warm-up calls)")
    parser.add_argument("--calib-dir", default=None, help="INT8 calibration frames (folder or bag); default: synthetic renderer frames")
    parser.add_argument("--calib-frames", type=int, default=32, help="INT8 calibration frames")
    parser.add_argument("--budget-s", type=float, default=450.0, help="rows that would start after this many seconds are skipped (8 min = 480 s)")
    parser.add_argument("--cache-dir", default=None, help="engine/precision/deploy caches (default: a fresh temporary folder, so builds are measured)")
    parser.add_argument("--json", default=None, help="also write the rows to this JSON file")
    parser.add_argument("--verbose", action="store_true", help="print tracebacks of failed rows")
    args = parser.parse_args()

    import onnxruntime as ort
    import torch

    started = time.perf_counter()
    print(f"gpu_check: python {platform.python_version()}, torch {torch.__version__} (CUDA {torch.version.cuda or 'none'}, "
          f"{torch.cuda.get_device_name(0) if torch.cuda.is_available() else 'no GPU'}), onnxruntime {ort.__version__} "
          f"({', '.join(ort.get_available_providers())}); model {Path(args.model).name}", flush=True)
    rows = run_checks(args)
    width = max(len(r.name) for r in rows)
    print(f"\n{'row':<{width}}  {'status':<19}  {'s':>6}  detail")
    for r in rows:
        print(f"{r.name:<{width}}  {r.status:<19}  {r.seconds:>6.1f}  {r.detail}")
    counts = {s: sum(r.status == s for r in rows) for s in ("ran", "not available here", "failed", "skipped")}
    print(f"\n{counts['ran']} ran, {counts['not available here']} not available here, {counts['failed']} failed, {counts['skipped']} skipped "
          f"in {time.perf_counter() - started:.1f} s")
    if args.json:
        Path(args.json).write_text(json.dumps([asdict(r) for r in rows], indent=1))
    return 1 if counts["failed"] else 0


if __name__ == "__main__":
    sys.exit(main())
