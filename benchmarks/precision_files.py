"""FP16 and INT8 precision files of a model vs its FP32 file: accuracy, ONNX Runtime CPU latency, file sizes.

Usage: .venv/bin/python benchmarks/precision_files.py [--model models/default.onnx] [--calib-frames 64]
       [--val-frames 16] [--iters 30] [--threads 1] [--calib-dir DIR]

Makes the mixed-precision FP16 file and the explicit Q/DQ INT8 file on it (``inference/precision.py``; INT8
calibrated on synthetic training-seed frames, or on ``--calib-dir``), then prints, for each against FP32
on ONNX Runtime's CPU provider:
- agreement on the synthetic *validation* frames (seeds disjoint from calibration): depth AbsRel of the
  prediction vs FP32's, label agreement, normals' mean angle; and the change of each metric vs ground truth
  (depth AbsRel, pixel accuracy, normals mean angle);
- the same agreement on the real camera frames of ../shared/realdata (NYU, RealSense, KITTI, EuRoC), fitted
  with letterbox as the node does (skipped with the reason when the folder is absent);
- per-frame latency, FP32 / FP16 / INT8 interleaved frame by frame in one run, with the ratios;
- file sizes and the Q/DQ check against TensorRT's rules.
``--u8-reference`` also times ONNX Runtime's default static quantization (uint8 activations with zero points,
which TensorRT rejects) to show what the TensorRT-legal signed file costs on an x86 CPU.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

from mtl_perception.data.datasets import VAL_SEED_OFFSET
from mtl_perception.data.synthetic import render_frame
from mtl_perception.inference.model_file import read_onnx_metadata
from mtl_perception.inference.precision import CalibrationSpec, make_precision_file, output_agreement, run_onnx_cpu
from mtl_perception.inference.processing import preprocess, to_rgb
from mtl_perception.inference.trt_ops import check_qdq_placement, check_tensorrt_compat, qdq_summary

ROOT = Path(__file__).resolve().parents[1]
REALDATA = ROOT.parent / "shared" / "realdata"
REAL_SETS = {"nyu_demo": ("metric3d_demo/nyu_demo/rgb", "*.jpg"), "realsense": ("realsense_d435i/color", "*.png"),
             "kitti": ("metric3d_demo/kitti_demo/rgb", "*.png"), "euroc_mono": ("euroc_mono/ir0", "*.png")}


def synthetic_validation(meta, count: int) -> tuple[list[np.ndarray], list]:
    """Validation frames (seeds from VAL_SEED_OFFSET, as training validates) and their ground truth."""
    frames, truth = [], []
    for i in range(count):
        frame = render_frame(VAL_SEED_OFFSET + i, meta.input_height, meta.input_width)
        frames.append(preprocess(frame.rgb, meta, "stretch")[0])
        truth.append(frame)
    return frames, truth


def real_frames(meta, per_set: int = 4) -> tuple[list[np.ndarray], list[str]]:
    frames, names = [], []
    for name, (folder, pattern) in REAL_SETS.items():
        for path in sorted((REALDATA / folder).glob(pattern))[:per_set]:
            image = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
            rgb = to_rgb(image, "mono8") if image.ndim == 2 else np.ascontiguousarray(image[:, :, 2::-1])
            frames.append(preprocess(rgb, meta, "letterbox")[0])
            names.append(name)
    return frames, names


def metrics_vs_truth(outputs: list[dict[str, np.ndarray]], truth: list, meta) -> dict[str, float]:
    """Depth AbsRel, semantic pixel accuracy and normals mean angle (deg) against the renderer's ground truth."""
    rel, acc, ang = [], [], []
    for out, frame in zip(outputs, truth):
        depth = out["depth"][0, 0]
        gt = frame.depth
        valid = np.isfinite(gt) & (gt > 0)
        rel.append(np.mean(np.abs(depth[valid] - gt[valid]) / gt[valid]))
        labels = out["semantic"][0].argmax(0)
        known = frame.labels != meta.ignore_index
        acc.append(np.mean(labels[known] == frame.labels[known]))
        normals = out["normals"][0].transpose(1, 2, 0)
        has = np.linalg.norm(frame.normals, axis=2) > 0
        cos = np.clip(np.sum(normals[has] * frame.normals[has], axis=1), -1, 1)
        ang.append(np.degrees(np.mean(np.arccos(cos))))
    return {"depth_abs_rel": float(np.mean(rel)), "pixel_acc": float(np.mean(acc)), "normals_deg": float(np.mean(ang))}


def u8_reference(model: Path, folder: Path, meta, frames: int) -> Path:
    """ONNX Runtime's default static QDQ quantization of the model (uint8 activations, per-channel int8 weights)."""
    import contextlib
    import io

    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    from mtl_perception.inference.precision import calibration_frames

    calibration = calibration_frames(meta, CalibrationSpec(None, None, frames, "letterbox"))
    feeds = iter({"image": f} for f in calibration)

    class Reader(CalibrationDataReader):
        def get_next(self):
            return next(feeds, None)

    prepared, out = folder / "u8_prepared.onnx", folder / "u8.onnx"
    quant_pre_process(str(model), str(prepared), skip_symbolic_shape=True)
    with contextlib.redirect_stdout(io.StringIO()):
        quantize_static(str(prepared), str(out), Reader(), quant_format=QuantFormat.QDQ, per_channel=True,
                        activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8)
    return out


def latency(paths: dict[str, Path], frames: list[np.ndarray], iters: int, threads: int) -> dict[str, list[float]]:
    import onnxruntime as ort

    from mtl_perception.inference.precision import ORT_CPU_DISABLED_OPTIMIZERS

    sessions = {}
    for name, path in paths.items():
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.log_severity_level = 3
        sessions[name] = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"], disabled_optimizers=list(ORT_CPU_DISABLED_OPTIMIZERS))
    times: dict[str, list[float]] = {name: [] for name in sessions}
    for i in range(iters + 3):
        feed = {"image": frames[i % len(frames)]}
        for name, session in sessions.items():
            start = time.perf_counter()
            session.run(None, feed)
            if i >= 3:
                times[name].append((time.perf_counter() - start) * 1000.0)
    return times


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", type=Path, default=ROOT / "models" / "default.onnx", help="FP32 model file")
    parser.add_argument("--calib-frames", type=int, default=64, help="INT8 calibration frames")
    parser.add_argument("--calib-dir", default=None, help="calibration image folder or bag (default: synthetic training-seed frames)")
    parser.add_argument("--val-frames", type=int, default=16, help="synthetic validation frames")
    parser.add_argument("--iters", type=int, default=30, help="timed frames per file (interleaved)")
    parser.add_argument("--threads", type=int, default=1, help="ONNX Runtime intra-op threads (same for all files)")
    parser.add_argument("--u8-reference", action="store_true", help="also time ONNX Runtime's default uint8 quantization (not TensorRT-legal)")
    args = parser.parse_args()

    meta = read_onnx_metadata(args.model)
    with tempfile.TemporaryDirectory(prefix="mtl_precision_") as tmp:
        fp16 = make_precision_file(args.model, "fp16", tmp)
        int8 = make_precision_file(args.model, "int8", tmp, CalibrationSpec(args.calib_dir, None, args.calib_frames, "letterbox"))
        paths = {"fp32": args.model, "fp16": fp16.path, "int8": int8.path}
        print(f"model {args.model.name} ({meta.encoder}, {meta.input_height}x{meta.input_width}); FP16 made in {fp16.seconds:.1f} s "
              f"({len(fp16.fp32_nodes)} nodes kept FP32), INT8 on FP16 in {int8.seconds:.1f} s ({int8.calibration}; {len(int8.fp32_nodes)} nodes FP32)")
        sizes = {name: path.stat().st_size / 2**20 for name, path in paths.items()}
        print("file sizes: " + ", ".join(f"{n} {s:.1f} MiB" for n, s in sizes.items()))
        summary = qdq_summary(int8.path)
        print(f"INT8 Q/DQ: {summary['quantize']} Q, {summary['dequantize']} DQ, {summary['weighted_int8']} weighted layers INT8, "
              f"{summary['weighted_float']} float; TensorRT Q/DQ rules: {check_qdq_placement(int8.path) or 'ok'}; "
              f"parser tables: {check_tensorrt_compat(int8.path) or 'ok'}")

        frames, truth = synthetic_validation(meta, args.val_frames)
        outputs = {name: run_onnx_cpu(path, frames, args.threads) for name, path in paths.items()}
        print(f"\nsynthetic validation frames ({len(frames)}), vs FP32 outputs:")
        for name in ("fp16", "int8"):
            print(f"  {name}: {output_agreement(outputs[name], outputs['fp32']).summary()}")
        print("  metrics vs ground truth (fp32 -> fp16 / int8):")
        gt = {name: metrics_vs_truth(out, truth, meta) for name, out in outputs.items()}
        for key in gt["fp32"]:
            print(f"    {key}: {gt['fp32'][key]:.4f} -> {gt['fp16'][key]:.4f} ({gt['fp16'][key] - gt['fp32'][key]:+.4f}) / "
                  f"{gt['int8'][key]:.4f} ({gt['int8'][key] - gt['fp32'][key]:+.4f})")

        if REALDATA.is_dir():
            real, names = real_frames(meta)
            real_out = {name: run_onnx_cpu(path, real, args.threads) for name, path in paths.items()}
            print(f"\nreal frames ({len(real)}: {', '.join(sorted(set(names)))}; letterbox), vs FP32 outputs:")
            for name in ("fp16", "int8"):
                print(f"  {name}: {output_agreement(real_out[name], real_out['fp32']).summary()}")
        else:
            print(f"\nreal frames: not available ({REALDATA} is absent)")

        timed = dict(paths)
        if args.u8_reference:
            timed["u8 (ORT default)"] = u8_reference(args.model, Path(tmp), meta, args.calib_frames)
            problems = check_qdq_placement(timed["u8 (ORT default)"])
            print(f"\nuint8 reference file: {len(problems)} TensorRT Q/DQ problem(s), e.g. {problems[0] if problems else '-'}")
        times = latency(timed, frames, args.iters, args.threads)
        medians = {name: float(np.median(t)) for name, t in times.items()}
        print(f"\nONNX Runtime CPU latency ({args.threads} thread(s), {args.iters} frames each, interleaved): "
              + ", ".join(f"{n} {m:.1f} ms" for n, m in medians.items()))
        print(f"  ratio FP32 / INT8: {medians['fp32'] / medians['int8']:.2f}x; FP32 / FP16: {medians['fp32'] / medians['fp16']:.2f}x "
              "(> 1 = faster than FP32)")
        if "u8 (ORT default)" in medians:
            print(f"  ratio FP32 / uint8 reference: {medians['fp32'] / medians['u8 (ORT default)']:.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
