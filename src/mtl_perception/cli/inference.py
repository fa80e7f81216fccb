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


def camera_size(text: str) -> tuple[int, int]:
    """``WxH`` (e.g. 640x480) -> (width, height)."""
    try:
        width, height = (int(part) for part in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"camera size '{text[:40]}' is not WIDTHxHEIGHT (e.g. 640x480)") from None
    if not (1 <= width <= 16384 and 1 <= height <= 16384):
        raise argparse.ArgumentTypeError(f"camera size {width}x{height} is outside 1..16384 pixels per side")
    return width, height


def add_build_engine_arguments(parser: argparse.ArgumentParser) -> None:
    from mtl_perception.inference.encodings import SUPPORTED_ENCODINGS

    parser.add_argument("--model", default=None,
                        help="exported ONNX model file (FP32), or a precision file made by `quantize`; with --deploy "
                             "None = the params file's model.path (else the bundled model)")
    parser.add_argument("--deploy", action="store_true",
                        help="build the node's deploy engine (camera bytes in, every enabled output out) for --camera "
                             "and --encoding, exactly as perception_node with the settings of --params-file will load it "
                             "(same cache key); run it on the robot before a mission so the node starts on a cache hit")
    parser.add_argument("--camera", type=camera_size, default=None,
                        help="with --deploy: the camera's image size WIDTHxHEIGHT (e.g. 640x480)")
    parser.add_argument("--encoding", choices=SUPPORTED_ENCODINGS, default="rgb8",
                        help="with --deploy: the camera's image encoding (a compressed camera decodes to bgr8, or mono8 "
                             "for grey images)")
    parser.add_argument("--params-file", default=None,
                        help="with --deploy: the node's ROS parameter file (outputs enabled, precision, resize mode, "
                             "resolution, points stride, engine cache, cameras); None = the node's defaults")
    parser.add_argument("--precision", choices=("fp32", "fp16", "int8"), default=None,
                        help="engine precision (default fp16; with --deploy the params file's model.precision): the "
                             "engine is built, strongly typed, from the mixed-precision FP16 or the Q/DQ INT8 file of "
                             "the model (made once and cached next to the engines); int8 needs --calib-dir, an INT8 "
                             "file made earlier, or an INT8 --model")
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
                        help="cache root (engines/, precision/, deploy/ below it); None = (with --deploy the params "
                             "file's model.engine_cache_dir, else) $MTL_PERCEPTION_CACHE or ~/.cache/mtl_perception")
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

    if args.deploy:
        return _build_deploy_engines(args)
    if args.model is None:
        raise ValueError("--model is required (without --deploy)")
    options = BuildOptions(args.precision or "fp16", args.workspace_mb, args.max_batch, args.calib_dir, args.calib_topic,
                           args.calib_images, args.resize_mode)
    path, key, source, _ = prepare_engine(args.model, options, args.cache_dir, args.on_mismatch, True, args.device)
    _print_engine(path, key, source)
    return EXIT_OK


def _print_engine(path: object, key: object, source: str) -> None:
    verb = "found in cache (not rebuilt)" if source == "cache" else "built"
    print(f"engine {verb}: {path}")
    print(f"  TensorRT {key.tensorrt_version}, {key.gpu_name} (sm {key.compute_capability}, {key.sm_count} SMs, "  # type: ignore[attr-defined]
          f"{key.memory_gib} GiB), {key.precision} (strongly typed), input {list(key.input_shape)}, "  # type: ignore[attr-defined]
          f"parsed file {key.onnx_sha256[:12]}, key {key.digest()}")  # type: ignore[attr-defined]


def _build_deploy_engines(args: argparse.Namespace) -> int:
    """``build-engine --deploy``: the node's own pipeline and plan (``ros/engine_plan.py``), built on this thread."""
    import dataclasses

    from mtl_perception.inference.encodings import FORMATS
    from mtl_perception.ros import engine_plan
    from mtl_perception.ros import parameters as params

    if args.camera is None:
        raise ValueError("--deploy needs --camera WIDTHxHEIGHT (the camera's image size)")
    if args.device != 0:
        raise ValueError("--deploy builds for CUDA device 0, the device the node runs on")
    if args.params_file is not None:
        settings, cameras = engine_plan.settings_from_file(args.params_file)
    else:
        settings, cameras = params.settings_from_values({}), 1
    overrides = {"backend": "tensorrt"}
    if args.model is not None:
        overrides["model_path"] = str(args.model)
    if args.precision is not None:
        overrides["precision"] = args.precision
    if args.cache_dir is not None:
        overrides["engine_cache_dir"] = str(args.cache_dir)
    settings = dataclasses.replace(settings, **overrides)
    model = engine_plan.model_file(settings)
    precision = params.network_precision(settings, "tensorrt", settings.provider)
    if precision == "int8" and args.calib_dir is not None:  # the INT8 file first, where the node finds it
        from mtl_perception.inference.precision import CalibrationSpec, precision_model_file

        precision_model_file(model, "int8", engine_plan.cache_root(settings), CalibrationSpec(args.calib_dir, args.calib_topic, args.calib_images, settings.resize_mode))
    pipeline = engine_plan.node_pipeline(settings, model, "tensorrt", settings.provider, cameras)
    width, height = args.camera
    try:
        planned = engine_plan.planned_options(pipeline, settings, height, width, FORMATS[args.encoding].graph, cameras)
        print(f"{model.name}: deploy engine(s) for {width}x{height} {args.encoding}, outputs {list(planned[0].outputs)}, "
              f"batch sizes {[o.batch for o in planned]}, {precision}")
        for build in pipeline.prepare_now(planned):
            _print_engine(build.engine, build.key, build.source)
    finally:
        pipeline.close()
    return EXIT_OK


def add_check_trt_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", required=True,
                        help="ONNX model file to check against the TensorRT ONNX parsers' supported operators, their "
                             "element-type rules (every tensor's type after ONNX shape inference: UINT8 only at the network's "
                             "inputs and outputs, casts to and from UINT8 only through FLOAT/FLOAT16, the input types each "
                             "operator's importer takes) and, for a Q/DQ (INT8) file, TensorRT's explicit-quantization rules")
    parser.add_argument("--trt-version", choices=("10", "11", "all"), default="all",
                        help="which parser table(s) to check against: TensorRT 10, 11 or both")


@command
def check_trt_main(args: argparse.Namespace) -> int:
    from mtl_perception.inference.model_file import load_onnx_file
    from mtl_perception.inference.trt_ops import (TABLE_MAJORS, check_qdq_placement, check_tensorrt_compat,
                                                  graph_operators, qdq_summary, trt_table_versions, trt_type_rules_source)

    majors = TABLE_MAJORS if args.trt_version == "all" else (args.trt_version,)
    versions = " and ".join(trt_table_versions(majors))
    model = load_onnx_file(args.model)
    problems = check_tensorrt_compat(model, majors)
    ops = graph_operators(model)
    print(f"{args.model}: {', '.join(f'{op} x{count}' for op, count in ops.items())}")
    print(f"element types judged by {trt_type_rules_source()}")
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
