"""Deployment commands of ``mtl-perception``: export, build-engine, check-trt, quantize."""
from __future__ import annotations

import argparse

from mtl_perception.cli.errors import EXIT_BAD_INPUT, EXIT_FAILED, EXIT_OK, command  # noqa: F401  (the exit codes)
from mtl_perception.schemas import flag

def add_export_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--checkpoint", required=True, help="training checkpoint (.pt) to export")
    parser.add_argument("--out", required=True,
                        help="ONNX file to write (atomically; an existing file is replaced only after every check "
                             "passes)")
    parser.add_argument("--height", type=flag(int, ge=1, le=4096), default=None,
                        help="network input height in pixels, at least 32; None = the training height")
    parser.add_argument("--width", type=flag(int, ge=1, le=4096), default=None,
                        help="network input width in pixels, at least 32; None = the training width")
    parser.add_argument("--opset", type=flag(int, ge=1, le=100), default=17,
                        help="ONNX opset (17 or newer; TensorRT 10.1 parses 9-20, 11.4 9-24)")
    parser.add_argument("--dynamic-batch", action="store_true",
                        help="make the batch dimension dynamic (spatial size stays static)")
    parser.add_argument("--exporter", choices=("torchscript", "dynamo"), default="torchscript",
                        help="torch.onnx exporter: torchscript (fast, opset 17+) or dynamo (opset 18+)")


@command
def export_main(args: argparse.Namespace) -> int:
    from mtl_perception.inference.export import export_onnx
    from mtl_perception.safeload import check_path

    if args.opset < 17:
        raise ValueError(f"--opset must be 17 or newer, got {args.opset}")
    check_path(args.checkpoint, "--checkpoint")
    check_path(args.out, "--out")
    report = export_onnx(args.checkpoint, args.out, args.height, args.width, args.opset, args.dynamic_batch,
                         args.exporter)
    print(report.summary())
    for problem in report.trt_problems:
        print(f"  TensorRT: {problem}")
    return EXIT_OK


def add_build_engine_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", required=True,
                        help="exported ONNX model file (FP32), or a precision file made by `quantize`")
    parser.add_argument("--precision", choices=("fp32", "fp16", "int8"), default="fp16",
                        help="engine precision: the engine is built, strongly typed, from the mixed-precision FP16 or "
                             "the Q/DQ INT8 file of the model (made once and cached next to the engines); int8 needs "
                             "--calib-dir, an INT8 file made earlier, or an INT8 --model")
    parser.add_argument("--calib-dir", default=None,
                        help="INT8 calibration frames: a folder of images or a rosbag2 (directory, .db3 or .mcap)")
    parser.add_argument("--calib-topic", default=None,
                        help="image topic of the calibration bag; None = its only image topic")
    parser.add_argument("--calib-images", type=flag(int, ge=1, le=100_000), default=256,
                        help="number of calibration frames to use")
    parser.add_argument("--resize-mode", choices=("letterbox", "stretch"), default="letterbox",
                        help="how calibration frames are fitted to the network input (as the node does; its default "
                             "is letterbox)")
    parser.add_argument("--cache-dir", default=None,
                        help="engine cache directory; None = $MTL_PERCEPTION_ENGINE_CACHE or "
                             "~/.cache/mtl_perception/engines")
    parser.add_argument("--workspace-mb", type=flag(int, ge=16, le=1 << 20), default=1024,
                        help="TensorRT builder workspace limit in MiB")
    parser.add_argument("--max-batch", type=flag(int, ge=1, le=1024), default=1,
                        help="largest batch for a dynamic-batch model")
    parser.add_argument("--on-mismatch", choices=("rebuild", "fail"), default="rebuild",
                        help="what to do when the cache holds an engine built by another TensorRT version or GPU")
    parser.add_argument("--device", type=flag(int, ge=0, le=63), default=0,
                        help="CUDA device index (the build runs on it)")


@command
def build_engine_main(args: argparse.Namespace) -> int:
    from mtl_perception.inference.backends.tensorrt_backend import BuildOptions, prepare_engine

    options = BuildOptions(args.precision, args.workspace_mb, args.max_batch, args.calib_dir, args.calib_topic,
                           args.calib_images, args.resize_mode)
    path, key, source, _ = prepare_engine(args.model, options, args.cache_dir, args.on_mismatch, True, args.device)
    verb = "found in cache (not rebuilt)" if source == "cache" else "built"
    print(f"engine {verb}: {path}")
    print(f"  TensorRT {key.tensorrt_version}, {key.gpu_name} (sm {key.compute_capability}, {key.sm_count} SMs, "
          f"{key.memory_gib} GiB), {key.precision} (strongly typed), input {list(key.input_shape)}, "
          f"parsed file {key.onnx_sha256[:12]}")
    return EXIT_OK


def add_check_trt_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", required=True,
                        help="ONNX model file to check against the TensorRT ONNX parsers' supported operators and, "
                             "for a Q/DQ (INT8) file, TensorRT's explicit-quantization rules")
    parser.add_argument("--trt-version", choices=("10", "11", "all"), default="all",
                        help="which parser table(s) to check against: TensorRT 10, 11 or both")


@command
def check_trt_main(args: argparse.Namespace) -> int:
    from mtl_perception.inference.model_file import load_onnx_file
    from mtl_perception.inference.trt_ops import (TABLE_MAJORS, check_qdq_placement, check_tensorrt_compat,
                                                  graph_operators, qdq_summary, trt_table_versions)

    majors = TABLE_MAJORS if args.trt_version == "all" else (args.trt_version,)
    versions = " and ".join(trt_table_versions(majors))
    model = load_onnx_file(args.model)
    problems = check_tensorrt_compat(model, majors)
    ops = graph_operators(model)
    print(f"{args.model}: {', '.join(f'{op} x{count}' for op, count in ops.items())}")
    if "QuantizeLinear" in ops or "DequantizeLinear" in ops:
        qdq = check_qdq_placement(model)
        summary = qdq_summary(model)
        print(f"explicit quantization: {summary['quantize']} Q / {summary['dequantize']} DQ nodes, "
              f"{summary['weighted_int8']} weighted layers INT8, {summary['weighted_float']} left in float")
        problems += [f"Q/DQ: {p}" for p in qdq]
    if problems:
        print(f"{len(problems)} problem(s) for the TensorRT {versions} ONNX parser(s):")
        for problem in problems:
            print(f"  {problem}")
        return EXIT_FAILED
    print(f"compatible with the TensorRT {versions} ONNX parser(s)")
    return EXIT_OK


def add_quantize_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", required=True, help="exported FP32 ONNX model file")
    parser.add_argument("--out", required=True,
                        help="INT8 ONNX file to write: explicit Q/DQ, symmetric INT8 (what TensorRT builds and ONNX "
                             "Runtime runs)")
    parser.add_argument("--calib-dir", default=None,
                        help="calibration frames: a folder of images or a rosbag2; None = frames of the built-in "
                             "synthetic renderer")
    parser.add_argument("--calib-topic", default=None, help="image topic of the calibration bag")
    parser.add_argument("--calib-images", type=flag(int, ge=1, le=100_000), default=64,
                        help="number of calibration frames")
    parser.add_argument("--resize-mode", choices=("letterbox", "stretch"), default="letterbox",
                        help="how calibration frames are fitted to the network input (as the node does)")
    parser.add_argument("--eval-frames", type=flag(int, ge=1, le=10_000), default=4,
                        help="held-out synthetic frames on which INT8 is compared with FP32")


@command
def quantize_main(args: argparse.Namespace) -> int:
    from mtl_perception.inference.quantize import quantize_int8
    from mtl_perception.safeload import check_path

    check_path(args.model, "--model")
    check_path(args.out, "--out")
    report = quantize_int8(args.model, args.out, args.calib_dir, args.calib_topic, args.calib_images, args.eval_frames,
                           args.resize_mode)
    print(report.summary())
    return EXIT_OK
