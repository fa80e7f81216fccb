"""Deployment subcommands of ``mtl-perception``: export, build-engine, check-trt, quantize.

Each command has ``add_<name>_arguments(parser)`` and ``<name>_main(args) -> int`` (0 = success). Bad
input ends with one line on stderr naming the problem and the fix, and a non-zero exit code.
"""
from __future__ import annotations

import argparse
import sys
from typing import Callable

EXIT_OK = 0
EXIT_FAILED = 1  # the check ran and found problems
EXIT_BAD_INPUT = 2  # missing/corrupt files, unusable options, missing libraries


def _expected_errors() -> tuple[type[BaseException], ...]:
    from mtl_perception.inference.backends.base import BackendError
    from mtl_perception.inference.calibration import CalibrationDataError
    from mtl_perception.inference.engine_cache import EngineCacheError
    from mtl_perception.inference.export import ExportError
    from mtl_perception.inference.metadata import MetadataError
    from mtl_perception.inference.model_file import ModelFileError
    from mtl_perception.training.checkpoint import CheckpointError

    return (BackendError, CalibrationDataError, EngineCacheError, ExportError, MetadataError, ModelFileError, CheckpointError, ValueError, FileNotFoundError)


def _run(command: str, body: Callable[[], int]) -> int:
    try:
        return body()
    except _expected_errors() as exc:
        print(f"mtl-perception {command}: error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT


def add_export_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--checkpoint", required=True, help="training checkpoint (.pt) to export")
    parser.add_argument("--out", required=True, help="ONNX file to write (atomically; an existing file is replaced only after every check passes)")
    parser.add_argument("--height", type=int, default=None, help="network input height in pixels, at least 32; None = the training height")
    parser.add_argument("--width", type=int, default=None, help="network input width in pixels, at least 32; None = the training width")
    parser.add_argument("--opset", type=int, default=17, help="ONNX opset (17 or newer; TensorRT 10 parses 9-20)")
    parser.add_argument("--dynamic-batch", action="store_true", help="make the batch dimension dynamic (spatial size stays static)")
    parser.add_argument("--exporter", choices=("torchscript", "dynamo"), default="torchscript", help="torch.onnx exporter: torchscript (fast, opset 17+) or dynamo (opset 18+)")


def export_main(args: argparse.Namespace) -> int:
    def body() -> int:
        from mtl_perception.inference.export import export_onnx

        if args.opset < 17:
            raise ValueError(f"--opset must be 17 or newer, got {args.opset}")
        report = export_onnx(args.checkpoint, args.out, args.height, args.width, args.opset, args.dynamic_batch, args.exporter)
        print(report.summary())
        for problem in report.trt_problems:
            print(f"  TensorRT: {problem}")
        return EXIT_OK

    return _run("export", body)


def add_build_engine_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", required=True, help="exported ONNX model file")
    parser.add_argument("--precision", choices=("fp32", "fp16", "int8"), default="fp16", help="engine precision (int8 needs --calib-dir or an existing calibration cache)")
    parser.add_argument("--calib-dir", default=None, help="INT8 calibration frames: a folder of images or a rosbag2 (directory, .db3 or .mcap); needed for int8 unless a calibration cache exists")
    parser.add_argument("--calib-topic", default=None, help="image topic of the calibration bag; None = its only image topic")
    parser.add_argument("--calib-images", type=int, default=256, help="number of calibration frames to use")
    parser.add_argument("--cache-dir", default=None, help="engine cache directory; None = $MTL_PERCEPTION_ENGINE_CACHE or ~/.cache/mtl_perception/engines")
    parser.add_argument("--workspace-mb", type=int, default=1024, help="TensorRT builder workspace limit in MiB")
    parser.add_argument("--max-batch", type=int, default=1, help="largest batch for a dynamic-batch model")
    parser.add_argument("--on-mismatch", choices=("rebuild", "fail"), default="rebuild", help="what to do when the cache holds an engine built by another TensorRT version or GPU")
    parser.add_argument("--device", type=int, default=0, help="CUDA device index")


def build_engine_main(args: argparse.Namespace) -> int:
    def body() -> int:
        from mtl_perception.inference.backends.tensorrt_backend import BuildOptions, prepare_engine

        options = BuildOptions(args.precision, args.workspace_mb, args.max_batch, args.calib_dir, args.calib_topic, args.calib_images)
        path, key, source, _ = prepare_engine(args.model, options, args.cache_dir, args.on_mismatch, True, args.device)
        verb = "found in cache (not rebuilt)" if source == "cache" else "built"
        print(f"engine {verb}: {path}")
        print(f"  TensorRT {key.tensorrt_version}, {key.gpu_name} (sm {key.compute_capability}), {key.precision}, input {list(key.input_shape)}, ONNX {key.onnx_sha256[:12]}")
        return EXIT_OK

    return _run("build-engine", body)


def add_check_trt_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", required=True, help="ONNX model file to check against the TensorRT 10 ONNX parser's supported operators")


def check_trt_main(args: argparse.Namespace) -> int:
    def body() -> int:
        from mtl_perception.inference.model_file import load_onnx_file
        from mtl_perception.inference.trt_ops import check_tensorrt_compat, graph_operators, trt_table_version

        model = load_onnx_file(args.model)
        problems = check_tensorrt_compat(model)
        ops = ", ".join(f"{op} x{count}" for op, count in graph_operators(model).items())
        print(f"{args.model}: {ops}")
        if problems:
            print(f"{len(problems)} problem(s) for the TensorRT {trt_table_version()} ONNX parser:")
            for problem in problems:
                print(f"  {problem}")
            return EXIT_FAILED
        print(f"compatible with the TensorRT {trt_table_version()} ONNX parser")
        return EXIT_OK

    return _run("check-trt", body)


def add_quantize_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", required=True, help="exported FP32 ONNX model file")
    parser.add_argument("--out", required=True, help="INT8 ONNX file to write (for the onnxruntime CPU backend)")
    parser.add_argument("--calib-dir", default=None, help="calibration frames: a folder of images or a rosbag2; None = frames of the built-in synthetic renderer")
    parser.add_argument("--calib-topic", default=None, help="image topic of the calibration bag")
    parser.add_argument("--calib-images", type=int, default=16, help="number of calibration frames")


def quantize_main(args: argparse.Namespace) -> int:
    def body() -> int:
        from mtl_perception.inference.quantize import quantize_int8

        print(quantize_int8(args.model, args.out, args.calib_dir, args.calib_topic, args.calib_images).summary())
        return EXIT_OK

    return _run("quantize", body)
