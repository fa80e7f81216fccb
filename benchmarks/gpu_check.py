"""One prepared check for the first GPU machine: every GPU path of the package, each row ran or not, in < 8 min.

Usage: PYTHONPATH=src python3 benchmarks/gpu_check.py [--model models/default.onnx] [--camera 480x640] [--iters 30]
       [--budget-s 450] [--cache-dir DIR] [--no-bundle] [--verbose] > gpu_check.jsonl

Runs on a bare CUDA machine: PyTorch, onnx, onnxruntime (its CPU build will do), numpy/OpenCV and the project's
files on PYTHONPATH (nothing installed from the project, no network, no ROS). What the project's model-file reader
and its FP16 file need beyond that (pydantic, PyYAML, onnxconverter-common) comes as the bundle ``.gpu_deps/`` that
``make gpu-check-deps`` (tools/gpu_deps.py) downloads on a machine with a package index, for CPython 3.10-3.13 on
x86_64 and aarch64 Linux: carry the folder along and this script unpacks the files of the interpreter running it
into a temporary folder first on ``sys.path`` (``--no-bundle``: only what the machine has). Without either, one
``setup`` row says so. A row that needs what the machine lacks (TensorRT, onnxruntime-gpu, a CUDA device, a Python
module) says ``not available here`` with the reason.

Output: stdout is JSON lines, written and flushed as soon as each is known, so a run killed at its time limit
keeps every row it finished: first ``{"gpu_check": {...machine...}}``, then one ``{"name", "status", "detail",
"seconds"}`` per row, last ``{"summary": {status: count, "seconds": s}}``; progress goes to stderr. A row says
``ran`` with its figures, ``not available here`` with the reason, ``failed`` with the error, ``skipped`` when the
budget left is less than the row needs, or ``budget spent`` when the budget ran out inside it (with the figures it
had measured by then; its latency loops stop at the budget).

Rows:
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
import atexit
import importlib
import json
import os
import platform
import shutil
import sys
import tempfile
import time
import traceback
import zipfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable, TextIO

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
BUNDLE = ROOT / ".gpu_deps"  # `make gpu-check-deps`
STATUSES = ("ran", "not available here", "failed", "skipped", "budget spent")


class NotAvailable(Exception):
    """This row cannot run on this machine (a library, provider or GPU is missing)."""


class OutOfBudget(Exception):
    """The time budget ran out inside a row."""


class _Skipped(Exception):
    """Less budget left than the row needs."""


@dataclass
class Row:
    name: str
    status: str  # one of STATUSES
    detail: str
    seconds: float = 0.0


def emit(record: dict[str, Any], out: TextIO) -> None:
    """One JSON line, flushed at once (a run killed at its limit keeps every line written before)."""
    out.write(json.dumps(record, allow_nan=False) + "\n")
    out.flush()


def first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text.splitlines()[0][:300] if text else ''}"


class Check:
    """Runs the rows against one time budget and writes each as a JSON line when it ends."""

    def __init__(self, budget_s: float, out: TextIO = sys.stdout, verbose: bool = False) -> None:
        self.start = time.perf_counter()
        self.deadline = self.start + budget_s
        self.out, self.verbose = out, verbose
        self.rows: list[Row] = []
        self._notes: list[str] = []

    def remaining(self) -> float:
        return self.deadline - time.perf_counter()

    def ensure(self, needs_s: float, what: str) -> None:
        """OutOfBudget unless ``needs_s`` seconds are left for ``what`` (a step of a long row)."""
        if self.remaining() < needs_s:
            raise OutOfBudget(f"{self.remaining():.0f} s left, {what} needs about {needs_s:.0f} s")

    def note(self, figures: str) -> None:
        """Figures the current row has measured so far (reported even when the row does not finish)."""
        self._notes.append(figures)

    def figures(self) -> str:
        """The current row's figures so far, joined."""
        return "; ".join(self._notes)

    def row(self, name: str, body: Callable[[], str], needs_s: float = 20.0, requires: Callable[[], Any] | None = None) -> None:
        """Run one row and write its line: ``requires`` (a probe raising NotAvailable) first, then the budget check."""
        started = time.perf_counter()
        self._notes = []

        def guarded() -> str:
            if requires is not None:
                requires()
            if self.remaining() < needs_s:
                raise _Skipped(f"time budget: {self.remaining():.0f} s left, this row needs about {needs_s:.0f} s")
            return body()

        try:
            status, detail = "ran", guarded()
        except _Skipped as exc:
            status, detail = "skipped", str(exc)
        except NotAvailable as exc:
            status, detail = "not available here", str(exc)
        except ModuleNotFoundError as exc:  # a library this machine lacks; the project's own modules must be there
            if (exc.name or "").startswith("mtl_perception"):
                status, detail = "failed", first_line(exc)
            else:
                status, detail = "not available here", f"needs the Python module '{exc.name}', which is not installed"
        except OutOfBudget as exc:
            status, detail = "budget spent", f"the time budget ran out: {exc}"
        except Exception as exc:  # a row that fails must not stop the others
            status, detail = "failed", first_line(exc)
            if self.verbose:
                traceback.print_exc()
        if status != "ran" and self._notes:
            detail = f"{self.figures()}; then: {detail}"
        row = Row(name, status, detail, round(time.perf_counter() - started, 2))
        self.rows.append(row)
        emit(asdict(row), self.out)
        print(f"[{time.perf_counter() - self.start:6.1f} s] {name}: {status}" + ("" if status == "ran" else f": {detail}"),
              file=sys.stderr, flush=True)


# -- what this machine has ----------------------------------------------------------------------------

def bundle_tag() -> str:
    """This interpreter's folder of the bundle: ``cp312-x86_64``, ``cp310-aarch64``, ..."""
    return f"cp{sys.version_info.major}{sys.version_info.minor}-{platform.machine().lower()}"


def bundle_files(root: Path = BUNDLE, tag: str | None = None) -> list[Path]:
    """The bundle's files for ``tag`` (default: this interpreter): ``py3/`` and the tag's own; none without its folder."""
    folder = root / (tag or bundle_tag())
    if not folder.is_dir():
        return []
    return [f for part in (root / "py3", folder) for f in sorted(part.glob("*")) if f.suffix in (".whl", ".zip")]


def use_bundle(root: Path = BUNDLE) -> dict[str, Any]:
    """Unpack this interpreter's bundle into a temporary folder put first on ``sys.path``; what was done (the header)."""
    tag = bundle_tag()
    files = bundle_files(root, tag)
    if not files:
        return {"tag": tag, "used": False, "reason": f"no {root}/{tag}: run `make gpu-check-deps` where a package index is"}
    target = Path(tempfile.mkdtemp(prefix="mtl_gpu_deps_"))
    atexit.register(shutil.rmtree, target, True)
    for file in files:
        with zipfile.ZipFile(file) as archive:
            archive.extractall(target)
    sys.path.insert(0, str(target))
    importlib.invalidate_caches()
    return {"tag": tag, "used": True, "path": str(target), "files": [f.name for f in files]}


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

    try:
        from mtl_perception.inference.backends.tensorrt_backend import import_tensorrt

        return import_tensorrt()
    except (BackendError, ImportError) as exc:  # no TensorRT, or a module the backend needs (cuda-python)
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


def time_calls(call: Callable[[Any], Any], inputs: list[Any], iters: int, check: Check, warmup: int = 3) -> str:
    """Median and p95 latency (ms) of ``call`` over ``iters`` calls after ``warmup``, as text.

    Stops at the budget (after at least one timed call) and says how many calls it timed.
    """
    samples: list[float] = []
    for i in range(warmup + iters):
        if i > warmup and check.remaining() <= 0:
            break
        started = time.perf_counter()
        call(inputs[i % len(inputs)])
        if i >= warmup:
            samples.append((time.perf_counter() - started) * 1000.0)
    text = f"median {np.median(samples):.2f} ms, p95 {np.percentile(samples, 95):.2f} ms"
    return text + ("" if len(samples) == iters else f" ({len(samples)} of {iters} calls: the budget ran out)")


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

def run_checks(args: argparse.Namespace, check: Check) -> list[Row]:
    from mtl_perception.inference.deploy_graph import DeployOptions, build_deploy_graph
    from mtl_perception.inference.model_file import read_onnx_metadata
    from mtl_perception.inference.precision import CalibrationSpec, make_precision_file, run_onnx_cpu
    from mtl_perception.paths import CACHE_ENV

    work = Path(args.cache_dir) if args.cache_dir else Path(tempfile.mkdtemp(prefix="mtl_gpu_check_"))
    engines, deploy_dir = work, work / "deploy"  # engines: the cache root the backends get (engines/, precision/ below it)
    os.environ[CACHE_ENV] = str(work)  # the cache root of this run: the backends' precision files in its precision/
    model = Path(args.model)
    meta = read_onnx_metadata(model)
    frames = validation_frames(meta, 4)
    cam_h, cam_w = (int(v) for v in args.camera.lower().split("x"))
    cameras = camera_frames(cam_h, cam_w, 2)
    calibration = CalibrationSpec(args.calib_dir, None, args.calib_frames, "letterbox")
    state: dict[str, Any] = {}
    iters = args.iters

    def precision_file(precision: str) -> Path:
        return model if precision == "fp32" else make_precision_file(model, precision, None, calibration if precision == "int8" else None).path

    def deploy_graph_for(precision: str) -> Path:
        return build_deploy_graph(precision_file(precision), DeployOptions(cam_h, cam_w, "rgb8"), deploy_dir)

    def reference_network() -> str:
        from mtl_perception.inference.backends import create_backend

        state["ref_net"] = run_onnx_cpu(model, frames)
        backend = create_backend("onnxruntime", model, provider="cpu")
        return f"{time_calls(backend.infer, frames, iters, check)} (the parity reference)"

    check.row("onnxruntime cpu fp32 network", reference_network)

    def reference_deploy() -> str:
        from mtl_perception.inference.backends import create_backend

        graph = deploy_graph_for("fp32")
        backend = create_backend("onnxruntime", graph, provider="cpu", graph="deploy")
        feeds = [deploy_feeds(graph, meta, image) for image in cameras]
        state["deploy_feeds"], state["ref_deploy"] = feeds, backend.run(feeds[0])
        return f"{cam_h}x{cam_w} rgb8 camera: {time_calls(backend.run, feeds, iters, check)} (the parity reference)"

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
            from mtl_perception.inference.backends import create_backend

            checkpoint = torch_checkpoint()
            backend = create_backend("torch", checkpoint, device="cuda", precision=precision)
            cpu = create_backend("torch", checkpoint, device="cpu")
            timing = time_calls(backend.infer, frames, iters, check)
            check.note(timing)
            return f"{timing}; vs torch CPU: {network_parity([backend.infer(f) for f in frames[:2]], [cpu.infer(f) for f in frames[:2]])}"

        check.row(f"torch cuda {precision} network", torch_network, requires=cuda_or_reason)

    for precision in ("fp32", "fp16"):
        def torch_deploy(precision: str = precision) -> str:
            from mtl_perception.inference.frame_pipeline import FramePipeline

            pipeline = FramePipeline(torch_checkpoint(), "torch", {"device": "cuda", "precision": precision}, cache_dir=work / "torch_deploy")
            outputs = ("depth", "labels", "normals")
            try:
                timing = time_calls(lambda image: pipeline.run(image, "rgb8", outputs), cameras, iters, check)
            finally:
                pipeline.close()
            return f"{cam_h}x{cam_w} rgb8, outputs {list(outputs)}, pre/post graphs on ONNX Runtime CPU: {timing}"

        check.row(f"torch cuda {precision} deploy graph", torch_deploy, requires=cuda_or_reason)

    # ONNX Runtime GPU providers -------------------------------------------------------------------------
    def ort_cuda() -> None:
        ort_provider_or_reason("CUDAExecutionProvider")

    def ort_cuda_network() -> str:
        from mtl_perception.inference.backends import create_backend

        backend = create_backend("onnxruntime", model, provider="cuda")
        timing = time_calls(backend.infer, frames, iters, check)
        check.note(timing)
        return f"{timing}; vs CPU: {network_parity([backend.infer(f) for f in frames], state['ref_net'])}"

    check.row("onnxruntime cuda fp32 network", ort_cuda_network, requires=ort_cuda)

    def ort_cuda_deploy() -> str:
        from mtl_perception.inference.backends import create_backend

        backend = create_backend("onnxruntime", deploy_graph_for("fp32"), provider="cuda", graph="deploy")
        timing = time_calls(backend.run, state["deploy_feeds"], iters, check)
        check.note(timing)
        return f"{timing}; vs CPU: {deploy_parity(backend.run(state['deploy_feeds'][0]), state['ref_deploy'])}"

    check.row("onnxruntime cuda fp32 deploy graph", ort_cuda_deploy, requires=ort_cuda)

    def ort_tensorrt_network() -> str:
        from mtl_perception.inference.backends import create_backend

        fp16 = precision_file("fp16")
        started = time.perf_counter()
        first = create_backend("onnxruntime", fp16, provider="tensorrt", tensorrt_cache_dir=work / "ort_trt")
        first.infer(frames[0])  # the provider builds its engine on the first run
        check.note(f"FP16 file: first run {time.perf_counter() - started:.1f} s (engine build)")
        first.close()
        check.ensure(30, "the second session")
        started = time.perf_counter()
        second = create_backend("onnxruntime", fp16, provider="tensorrt", tensorrt_cache_dir=work / "ort_trt")
        second.infer(frames[0])
        check.note(f"second session {time.perf_counter() - started:.1f} s")
        check.note(time_calls(second.infer, frames, iters, check))
        return check.figures() + f"; vs CPU FP32: {network_parity([second.infer(f) for f in frames], state['ref_net'])}"

    check.row("onnxruntime tensorrt-EP fp16 network", ort_tensorrt_network, needs_s=90,
              requires=lambda: require(lambda: ort_provider_or_reason("TensorrtExecutionProvider"), cuda_or_reason))

    # native TensorRT -------------------------------------------------------------------------------
    def trt_and_cuda() -> None:
        require(tensorrt_or_reason, cuda_or_reason)

    def trt_two_starts(path: Path, **options: Any) -> Any:
        """Build (or load) the engine, close it, start again from the cache: the second backend."""
        from mtl_perception.inference.backends.tensorrt_backend import TensorRTBackend

        started = time.perf_counter()
        first = TensorRTBackend(path, cache_dir=engines, **options)
        check.note(f"first start {first.engine_source} in {time.perf_counter() - started:.1f} s")
        first.close()
        check.ensure(30, "the second start and the latency")
        started = time.perf_counter()
        second = TensorRTBackend(path, cache_dir=engines, allow_build=False, **options)
        check.note(f"second start {second.engine_source} in {time.perf_counter() - started:.2f} s")
        return second

    for precision in ("fp16", "int8"):
        def trt_network(precision: str = precision) -> str:
            trt = tensorrt_or_reason()
            made = precision_file(precision)  # the precision file first: its time is not the engine build's
            second = trt_two_starts(model, precision=precision)
            key = second.key
            check.note(f"TensorRT {trt.__version__}, {key.gpu_name} sm{key.compute_capability} {key.sm_count} SMs")
            check.note(time_calls(second.infer, frames, iters, check))
            outputs = [second.infer(f) for f in frames]
            parity = f"vs ORT CPU FP32: {network_parity(outputs, state['ref_net'])}"
            if precision == "int8":
                parity += f"; vs the INT8 file on ORT CPU: {network_parity(outputs, run_onnx_cpu(made, frames))}"
            return check.figures() + f"; {parity}"

        check.row(f"tensorrt {precision} network", trt_network, needs_s=90, requires=trt_and_cuda)

    for precision in ("fp16", "int8"):
        def trt_deploy(precision: str = precision) -> str:
            graph = deploy_graph_for(precision)
            second = trt_two_starts(graph, graph="deploy")
            feeds = state.get("deploy_feeds") or [deploy_feeds(graph, meta, image) for image in cameras]
            check.note(f"{cam_h}x{cam_w} rgb8: {time_calls(second.run, feeds, iters, check)}")
            parity = deploy_parity(second.run(feeds[0]), state["ref_deploy"]) if "ref_deploy" in state else "no CPU reference"
            return check.figures() + f"; vs ORT CPU FP32 deploy graph: {parity}"

        check.row(f"tensorrt {precision} deploy graph", trt_deploy, needs_s=90, requires=trt_and_cuda)

    def batching(kind: str, options: dict[str, Any], precision: str) -> Callable[[], str]:
        """Several cameras: one batched deploy graph call of N frames against N calls of one (FramePipeline)."""
        def body() -> str:
            from mtl_perception.inference.frame_pipeline import FramePipeline

            pipeline = FramePipeline(model, kind, options, cache_dir=work, precision=precision)  # the run's cache root
            frames = [(image, "rgb8", None) for image in camera_frames(cam_h, cam_w, 4)]
            outputs = ("depth", "labels", "normals")
            check.note(f"{cam_h}x{cam_w} rgb8, outputs {list(outputs)}")
            try:
                for count in (2, 4):
                    batch = frames[:count]
                    check.ensure(5, f"N={count}")
                    together = time_calls(lambda _: pipeline.run_batch(batch, outputs), [None], iters, check)
                    apart = time_calls(lambda _: [pipeline.run(p, e, outputs) for p, e, _ in batch], [None], iters, check)
                    check.note(f"N={count}: one call {together}; {count} calls {apart}")
            finally:
                pipeline.close()
            return check.figures()
        return body

    check.row("batched cameras, onnxruntime cpu fp32 deploy graph", batching("onnxruntime", {"provider": "cpu"}, "fp32"), needs_s=30)
    check.row("batched cameras, onnxruntime cuda fp32 deploy graph", batching("onnxruntime", {"provider": "cuda"}, "fp32"), needs_s=30,
              requires=ort_cuda)
    check.row("batched cameras, tensorrt fp16 deploy graph", batching("tensorrt", {"cache_dir": str(engines)}, "fp16"), needs_s=120,
              requires=trt_and_cuda)
    return check.rows


def machine() -> dict[str, Any]:
    """What this machine has, for the first JSON line (each library's absence said, not raised)."""
    facts: dict[str, Any] = {"python": platform.python_version(), "machine": platform.machine()}
    try:
        import torch

        facts.update(torch=torch.__version__, cuda=torch.version.cuda, gpu=torch.cuda.get_device_name(0) if torch.cuda.is_available() else None)
    except ImportError as exc:
        facts["torch"] = f"not installed ({exc})"
    try:
        import onnxruntime as ort

        facts.update(onnxruntime=ort.__version__, providers=ort.get_available_providers())
    except ImportError as exc:
        facts["onnxruntime"] = f"not installed ({exc})"
    return facts


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default=str(ROOT / "models" / "default.onnx"), help="exported FP32 model file (default: the bundled model)")
    parser.add_argument("--checkpoint", default=None, help="checkpoint for the torch rows (default: random weights of config/train/default.yaml)")
    parser.add_argument("--camera", default="480x640", help="camera size HxW of the deploy graph rows")
    parser.add_argument("--iters", type=int, default=30, help="timed calls per latency figure (after 3 warm-up calls)")
    parser.add_argument("--calib-dir", default=None, help="INT8 calibration frames (folder or bag); default: synthetic renderer frames")
    parser.add_argument("--calib-frames", type=int, default=32, help="INT8 calibration frames")
    parser.add_argument("--budget-s", type=float, default=450.0,
                        help="time budget (8 min = 480 s): a row that needs more than is left is skipped, latency loops stop at it")
    parser.add_argument("--cache-dir", default=None, help="engine/precision/deploy caches (default: a fresh temporary folder, so builds are measured)")
    parser.add_argument("--verbose", action="store_true", help="print tracebacks of failed rows (stderr)")
    parser.add_argument("--no-bundle", action="store_true", help=f"leave {BUNDLE.name}/ out: only the modules this machine has")
    args = parser.parse_args(argv)
    if args.iters < 1 or args.budget_s <= 0:
        parser.error("--iters must be >= 1 and --budget-s > 0")

    bundle = {"tag": bundle_tag(), "used": False, "reason": "--no-bundle"} if args.no_bundle else use_bundle()
    check = Check(args.budget_s, sys.stdout, args.verbose)
    emit({"gpu_check": {**machine(), "bundle": bundle, "model": Path(args.model).name, "budget_s": args.budget_s, "iters": args.iters, "camera": args.camera}}, sys.stdout)
    try:
        run_checks(args, check)
    except ModuleNotFoundError as exc:  # before any row: the project's own requirements are missing
        if (exc.name or "").startswith("mtl_perception"):
            raise
        reason = (f"the project needs the Python module '{exc.name}' to read its model file; carry the bundle of "
                  f"`make gpu-check-deps` ({BUNDLE.name}/; here: {bundle.get('reason', 'used, without it')}) or put pydantic and PyYAML on PYTHONPATH")

        def setup() -> str:
            raise NotAvailable(reason)

        check.row("setup", setup)
    finally:
        counts = {status: sum(r.status == status for r in check.rows) for status in STATUSES}
        emit({"summary": {**counts, "seconds": round(time.perf_counter() - check.start, 1)}}, sys.stdout)
    return 1 if counts["failed"] else 0


if __name__ == "__main__":
    sys.exit(main())
