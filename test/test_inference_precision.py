"""Precision files (inference/precision.py): the FP16 file and the INT8 Q/DQ file of the bundled model
against its FP32 file in ONNX Runtime on the CPU, TensorRT's Q/DQ rules on the INT8 graph, and the cache.

Tolerances (the bundled, trained default model; synthetic *validation* frames, whose seeds are disjoint from
the calibration frames; and real frames of ../shared/realdata fitted with letterbox):
- FP16 vs FP32: depth AbsRel < 0.002 and max |diff| < 2 cm, labels >= 99.8% identical, normals < 0.2 deg. FP16's
  unit roundoff is 2^-11 = 4.9e-4; with the output tails (exp, sigmoid, L2 normalisation, final resizes) in
  FP32 the 65 FP16 convolutions leave a few 1e-4 of relative error; a label flips only at near-ties of logits.
- INT8 (Q/DQ on the FP16 graph) vs FP32: depth AbsRel < 0.04 (synthetic) / 0.085 (real), labels >= 93.5% / 89%,
  normals < 3.5 / 4.0 deg, and vs ground truth the depth AbsRel moves < 0.02, pixel accuracy drops < 0.02, the
  normals' angle grows < 1.5 deg. An 8-bit per-tensor activation step is 1/127 of its range (0.8%), repeated over
  62 convolutions; the limits are about 1.5x the errors measured with 16 calibration frames on the bundled model
  (MobileNetV3-Small, 240x320, these 6 synthetic / 8 real frames: synthetic depth AbsRel 0.027, 95.4% labels,
  2.4 deg; real 0.056, 92.6%, 2.65 deg; the FP32 Q/DQ file before it: 0.030, 95.8%, 2.3 / 0.066, 92.5%, 3.0) and
  stay well below the model's own error (depth AbsRel 0.3 vs ground truth on the synthetic frames, 0.4-0.5 on the
  real ones).
"""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from mtl_perception.data.datasets import VAL_SEED_OFFSET
from mtl_perception.data.synthetic import render_frame
from mtl_perception.inference.calibration import CalibrationDataError
from mtl_perception.inference.metadata import OUTPUT_NAMES, ModelMetadata
from mtl_perception.inference.model_file import embed_metadata, read_onnx_metadata
from mtl_perception.inference.precision import (
    PRECISION_KEY,
    CalibrationSpec,
    PrecisionError,
    compare_files,
    fp16_keep_list,
    int8_sensitive_nodes,
    make_precision_file,
    precision_model_file,
    precision_of,
    run_onnx_cpu,
)
from mtl_perception.inference.processing import preprocess, to_rgb
from mtl_perception.inference.trt_ops import check_qdq_placement, check_tensorrt_compat
from shared_data import shared_path

import onnxruntime  # noqa: E402

from mtl_perception.inference.precision import INT8_ONNXRUNTIME_MIN, int8_runs_right_on  # noqa: E402

INT8_ON_ONNXRUNTIME = pytest.mark.skipif(
    not int8_runs_right_on(onnxruntime.__version__),
    reason=f"onnxruntime {onnxruntime.__version__} runs the INT8 file wrong (before {'.'.join(map(str, INT8_ONNXRUNTIME_MIN))}): precision.INT8_ONNXRUNTIME_MIN")

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_MODEL = ROOT / "models" / "default.onnx"
REALDATA = shared_path("realdata")
NO_REALDATA = "../shared/realdata is absent (real camera frames)"


@pytest.fixture(scope="module")
def meta():
    return read_onnx_metadata(DEFAULT_MODEL)


@pytest.fixture(scope="module")
def validation(meta):
    """Synthetic validation frames (seeds as training validates) with their ground truth."""
    frames = [render_frame(VAL_SEED_OFFSET + i, meta.input_height, meta.input_width) for i in range(6)]
    return [preprocess(f.rgb, meta, "stretch")[0] for f in frames], frames


def real_frames(meta):
    sets = [("metric3d_demo/nyu_demo/rgb", "*.jpg"), ("realsense_d435i/color", "*.png"), ("metric3d_demo/kitti_demo/rgb", "*.png"), ("euroc_mono/ir0", "*.png")]
    frames = []
    for folder, pattern in sets:
        for path in sorted((REALDATA / folder).glob(pattern))[:2]:
            image = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
            rgb = to_rgb(image, "mono8") if image.ndim == 2 else np.ascontiguousarray(image[:, :, 2::-1])
            frames.append(preprocess(rgb, meta, "letterbox")[0])
    return frames


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    cache = tmp_path_factory.mktemp("precision")
    fp16 = make_precision_file(DEFAULT_MODEL, "fp16", cache)
    int8 = make_precision_file(DEFAULT_MODEL, "int8", cache, CalibrationSpec(frames=16))
    return fp16, int8


def _gt_metrics(outputs, truth, meta):
    rel, acc, ang = [], [], []
    for out, frame in zip(outputs, truth):
        valid = np.isfinite(frame.depth) & (frame.depth > 0)
        rel.append(np.mean(np.abs(out["depth"][0, 0][valid] - frame.depth[valid]) / frame.depth[valid]))
        known = frame.labels != meta.ignore_index
        acc.append(np.mean(out["semantic"][0].argmax(0)[known] == frame.labels[known]))
        has = np.linalg.norm(frame.normals, axis=2) > 0
        cos = np.clip(np.sum(out["normals"][0].transpose(1, 2, 0)[has] * frame.normals[has], axis=1), -1, 1)
        ang.append(np.degrees(np.mean(np.arccos(cos))))
    return np.mean(rel), np.mean(acc), np.mean(ang)


def test_fp16_file_keeps_io_float32_and_the_sensitive_tail_in_fp32(files):
    fp16, _ = files
    model = onnx.load(str(fp16.path))
    assert precision_of(model) == "fp16" and not fp16.cached
    assert all(v.type.tensor_type.elem_type == TensorProto.FLOAT for v in list(model.graph.input) + list(model.graph.output))
    kept = set(fp16.fp32_nodes)
    assert {"/model/depth/activation/Exp", "/model/depth/activation/Sigmoid", "/model/normals/activation/ReduceL2"} <= kept
    assert not any(n.endswith("/Conv") for n in kept), "every convolution runs in FP16"
    halves = sum(1 for init in model.graph.initializer if init.data_type == TensorProto.FLOAT16)
    assert halves >= 95, f"only {halves} FP16 initializers"
    props = {p.key: p.value for p in model.metadata_props}
    assert props["mtl_perception.precision_fp32_nodes"].count("/model/") == len(kept)
    assert check_tensorrt_compat(model) == []


def test_fp16_matches_fp32_on_synthetic_validation_frames(files, validation):
    fp16, _ = files
    frames, _ = validation
    agreement = compare_files(DEFAULT_MODEL, fp16.path, frames, threads=1)
    assert agreement.depth_abs_rel < 0.002 and agreement.depth_max_abs < 0.02
    assert agreement.label_agreement >= 0.998 and agreement.normals_mean_angle_deg < 0.2


@pytest.mark.skipif(not REALDATA.is_dir(), reason=NO_REALDATA)
def test_fp16_matches_fp32_on_real_frames(files, meta):
    fp16, _ = files
    agreement = compare_files(DEFAULT_MODEL, fp16.path, real_frames(meta), threads=1)
    assert agreement.frames == 8
    assert agreement.depth_abs_rel < 0.002 and agreement.label_agreement >= 0.998 and agreement.normals_mean_angle_deg < 0.2


def test_fp16_and_int8_files_pass_the_full_check_and_load_in_onnxruntime(files):
    """onnxconverter-common's FP16 operands where ONNX wants float32 pass the plain check, not the full one."""
    import onnxruntime as ort

    for made in files:
        model = onnx.load(str(made.path))
        onnx.checker.check_model(model, full_check=True)
        session = ort.InferenceSession(str(made.path), providers=["CPUExecutionProvider"])
        assert [o.type for o in session.get_outputs()] == ["tensor(float)"] * 3


def _value_types(model: onnx.ModelProto) -> dict[str, int]:
    inferred = onnx.shape_inference.infer_shapes(model, strict_mode=True)
    types = {v.name: v.type.tensor_type.elem_type for v in list(inferred.graph.value_info) + list(inferred.graph.input) + list(inferred.graph.output)}
    return types | {i.name: i.data_type for i in inferred.graph.initializer}


def test_int8_file_is_symmetric_signed_int8_on_fp16_where_tensorrt_requires(files):
    fp16, int8 = files
    model = onnx.load(str(int8.path))
    assert precision_of(model) == "int8"
    assert check_qdq_placement(model) == [] and check_tensorrt_compat(model) == []
    assert next(o.version for o in model.opset_import if o.domain == "") >= 19, "Q/DQ with FP16 scales need opset 19"
    types = _value_types(model)
    inits = {i.name: i for i in model.graph.initializer}
    qdq = [n for n in model.graph.node if n.op_type in ("QuantizeLinear", "DequantizeLinear")]
    assert len(qdq) > 200
    for node in qdq:
        zero_point = inits[node.input[2]]
        assert zero_point.data_type == TensorProto.INT8 and not numpy_helper.to_array(zero_point).any(), node.name
    producers = {o: n for n in model.graph.node for o in n.output}
    convs = [n for n in model.graph.node if n.op_type == "Conv"]
    quantized = [c for c in convs if producers[c.input[0]].op_type == "DequantizeLinear"]
    heads = [c for c in convs if c.name.endswith("/head/proj/Conv")]
    assert {c.name for c in quantized} == {c.name for c in convs} - {c.name for c in heads}, "every convolution but the heads' last"
    for conv in quantized:
        weight_dq = producers[conv.input[1]]
        axis = next((a.i for a in weight_dq.attribute if a.name == "axis"), 1)
        weight = numpy_helper.to_array(inits[weight_dq.input[0]])
        scale = numpy_helper.to_array(inits[weight_dq.input[1]])
        assert weight.dtype == np.int8 and axis == 0 and scale.shape == (weight.shape[0],), conv.name  # per output channel
        assert inits[weight_dq.input[1]].data_type == TensorProto.FLOAT16, "FP16 scales: the DQ gives FP16"
        assert len(conv.input) < 3 or conv.input[2] in inits and inits[conv.input[2]].data_type == TensorProto.FLOAT16, "biases stay float (FP16)"
        act_dq = producers[conv.input[0]]
        assert numpy_helper.to_array(inits[act_dq.input[1]]).size == 1, "activations per tensor"
    assert all(types[c.input[0]] == TensorProto.FLOAT16 for c in convs), "every convolution runs INT8 or FP16, none FP32"
    assert len(heads) == 3 and all(producers[c.input[0]].op_type != "DequantizeLinear" for c in heads), "the heads' last convolutions: no Q/DQ"
    for name in ("Exp", "Sigmoid", "ReduceL2"):
        node = next(n for n in model.graph.node if n.op_type == name)
        assert all(getattr(producers.get(i), "op_type", "") != "DequantizeLinear" for i in node.input)
        assert types[node.input[0]] == TensorProto.FLOAT and node.name in int8.fp32_nodes, "the output tails stay FP32"
    assert set(int8.fp32_nodes) == set(fp16.fp32_nodes), "FP32 exactly where the FP16 file is"


@INT8_ON_ONNXRUNTIME
def test_int8_accuracy_on_synthetic_validation_frames(files, validation, meta):
    _, int8 = files
    frames, truth = validation
    fp32_out, int8_out = run_onnx_cpu(DEFAULT_MODEL, frames, 1), run_onnx_cpu(int8.path, frames, 1)
    from mtl_perception.inference.precision import output_agreement

    agreement = output_agreement(int8_out, fp32_out)
    assert agreement.depth_abs_rel < 0.04 and agreement.label_agreement >= 0.935 and agreement.normals_mean_angle_deg < 3.5, agreement.summary()
    (rel32, acc32, ang32), (rel8, acc8, ang8) = _gt_metrics(fp32_out, truth, meta), _gt_metrics(int8_out, truth, meta)
    assert abs(rel8 - rel32) < 0.02 and acc32 - acc8 < 0.02 and ang8 - ang32 < 1.5, (rel32, rel8, acc32, acc8, ang32, ang8)


@INT8_ON_ONNXRUNTIME
def test_the_onnxruntime_backend_runs_the_int8_file_as_its_accuracy_is_measured(files, validation):
    """ONNX Runtime's WeightBiasQuantization would turn the FP16 file's biases into INT32 at a subnormal FP16 scale."""
    from mtl_perception.inference.backends import create_backend

    _, int8 = files
    frames, _ = validation
    backend = create_backend("onnxruntime", int8.path, provider="cpu", intra_op_threads=1)
    for frame, expected in zip(frames[:2], run_onnx_cpu(int8.path, frames[:2], 1)):
        out = backend.infer(frame)
        for task, value in expected.items():
            np.testing.assert_allclose(out[task], value, rtol=1e-3, atol=1e-4, err_msg=task)


@pytest.mark.skipif(not REALDATA.is_dir(), reason=NO_REALDATA)
@INT8_ON_ONNXRUNTIME
def test_int8_accuracy_on_real_frames(files, meta):
    _, int8 = files
    agreement = compare_files(DEFAULT_MODEL, int8.path, real_frames(meta), threads=1)
    assert agreement.depth_abs_rel < 0.085 and agreement.label_agreement >= 0.89 and agreement.normals_mean_angle_deg < 4.0, agreement.summary()


# -- the Q/DQ rule check, the keep lists and the cache, on a small graph ------------------------------

def tiny_meta() -> ModelMetadata:
    return ModelMetadata(tasks=["depth"], output_names={"depth": OUTPUT_NAMES["depth"]}, class_names=[], palette=[], input_height=16, input_width=24)


def tiny_model(path: Path, scale: float = 0.1) -> Path:
    """conv -> relu -> conv -> add (residual) -> head conv -> exp: a network with a residual add and an output tail."""
    rng = np.random.default_rng(0)
    inits = [numpy_helper.from_array((rng.normal(0, scale, shape)).astype(np.float32), name)
             for name, shape in (("w1", (4, 3, 3, 3)), ("b1", (4,)), ("w2", (4, 4, 3, 3)), ("w3", (1, 4, 1, 1)))]
    nodes = [helper.make_node("Conv", ["image", "w1", "b1"], ["a"], pads=[1, 1, 1, 1], name="conv1"), helper.make_node("Relu", ["a"], ["b"], name="relu1"),
             helper.make_node("Conv", ["b", "w2"], ["c"], pads=[1, 1, 1, 1], name="conv2"), helper.make_node("Add", ["b", "c"], ["d"], name="residual"),
             helper.make_node("Conv", ["d", "w3"], ["e"], name="head/proj/Conv"), helper.make_node("Exp", ["e"], ["depth"], name="depth_exp")]
    graph = helper.make_graph(nodes, "tiny", [helper.make_tensor_value_info("image", TensorProto.FLOAT, [1, 3, 16, 24])],
                              [helper.make_tensor_value_info("depth", TensorProto.FLOAT, [1, 1, 16, 24])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=9)
    embed_metadata(model, tiny_meta())
    onnx.save(model, str(path))
    return path


def write_images(folder: Path, count: int, size=(30, 60)) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(3)
    for i in range(count):
        cv2.imwrite(str(folder / f"{i:02d}.png"), rng.integers(0, 255, (*size, 3), dtype=np.uint8))
    return folder


def test_keep_lists_follow_the_output_tail(tmp_path):
    model = onnx.load(str(tiny_model(tmp_path / "m.onnx")))
    assert fp16_keep_list(model) == {"depth_exp": "output tail of 'depth' (after its head's last convolution)"}
    sensitive = int8_sensitive_nodes(model)
    assert set(sensitive) == {"depth_exp", "head/proj/Conv"} and "last convolution" in sensitive["head/proj/Conv"]


def test_qdq_check_rejects_onnxruntimes_default_quantization(tmp_path):
    """ONNX Runtime's default static quantization (uint8 activations with zero points) breaks TensorRT's rules."""
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

    source = tiny_model(tmp_path / "m.onnx")
    feeds = iter([{"image": np.random.default_rng(i).normal(size=(1, 3, 16, 24)).astype(np.float32)} for i in range(4)])

    class Reader(CalibrationDataReader):
        def get_next(self):
            return next(feeds, None)

    quantize_static(str(source), str(tmp_path / "u8.onnx"), Reader(), quant_format=QuantFormat.QDQ, activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8)
    problems = check_qdq_placement(tmp_path / "u8.onnx")
    assert any("UINT8" in p for p in problems), problems
    assert any("INT32" in p for p in problems), "quantized biases are reported too"


def test_qdq_check_rules_on_hand_made_graphs():
    def graph(nodes, inits, out="y"):
        g = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4, 2, 2])],
                              [helper.make_tensor_value_info(out, TensorProto.FLOAT, None)], inits)
        return helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)], ir_version=9)

    s, zp = numpy_helper.from_array(np.array(0.1, np.float32), "s"), numpy_helper.from_array(np.array(0, np.int8), "zp")
    good = graph([helper.make_node("QuantizeLinear", ["x", "s", "zp"], ["q"]), helper.make_node("DequantizeLinear", ["q", "s", "zp"], ["y"])], [s, zp])
    assert check_qdq_placement(good) == []
    zp3 = numpy_helper.from_array(np.array(3, np.int8), "zp")
    assert any("zero point is [3]" in p for p in check_qdq_placement(graph([helper.make_node("QuantizeLinear", ["x", "s", "zp"], ["q"]), helper.make_node("DequantizeLinear", ["q", "s", "zp"], ["y"])], [s, zp3])))
    negative = numpy_helper.from_array(np.array(-0.1, np.float32), "s")
    assert any("positive" in p for p in check_qdq_placement(graph([helper.make_node("QuantizeLinear", ["x", "s", "zp"], ["q"]), helper.make_node("DequantizeLinear", ["q", "s", "zp"], ["y"])], [negative, zp])))
    per_channel = numpy_helper.from_array(np.full(4, 0.1, np.float32), "s")
    zps = numpy_helper.from_array(np.zeros(4, np.int8), "zp")
    problems = check_qdq_placement(graph([helper.make_node("QuantizeLinear", ["x", "s", "zp"], ["q"], axis=1), helper.make_node("DequantizeLinear", ["q", "s", "zp"], ["y"], axis=1)], [per_channel, zps]))
    assert any("per channel" in p for p in problems)
    dangling = graph([helper.make_node("QuantizeLinear", ["x", "s", "zp"], ["y"])], [s, zp])
    assert any("needs a DequantizeLinear" in p for p in check_qdq_placement(dangling))
    other = numpy_helper.from_array(np.array(0.2, np.float32), "s2")
    mismatched = graph([helper.make_node("QuantizeLinear", ["x", "s", "zp"], ["q"]), helper.make_node("DequantizeLinear", ["q", "s2", "zp"], ["y"])], [s, zp, other])
    assert any("share its scale" in p for p in check_qdq_placement(mismatched))
    w = numpy_helper.from_array(np.ones((4, 4, 1, 1), np.int8), "w")
    ws = numpy_helper.from_array(np.full(4, 0.1, np.float32), "ws")
    wrong_axis = graph([helper.make_node("DequantizeLinear", ["w", "ws", "zp"], ["wf"], axis=1), helper.make_node("Conv", ["x", "wf"], ["y"])],
                       [w, ws, numpy_helper.from_array(np.zeros(4, np.int8), "zp")])
    assert any("output-channel axis 0" in p for p in check_qdq_placement(wrong_axis))


def test_precision_files_are_cached_by_source_hash(tmp_path):
    model = tiny_model(tmp_path / "m.onnx")
    cache = tmp_path / "cache"
    assert precision_model_file(model, "fp32", cache) == model
    first = make_precision_file(model, "fp16", cache)
    again = make_precision_file(model, "fp16", cache)
    assert not first.cached and again.cached and again.path == first.path and precision_of(first.path) == "fp16"
    assert precision_model_file(first.path, "fp16", cache) == first.path, "a precision file is used as it is"
    with pytest.raises(PrecisionError, match="already a fp16 file"):
        precision_model_file(first.path, "int8", cache)
    tiny_model(model, scale=0.2)  # re-exported: new weights, same name
    assert precision_model_file(model, "fp16", cache) != first.path
    with pytest.raises(PrecisionError, match="unknown precision"):
        precision_model_file(model, "bf16", cache)


@INT8_ON_ONNXRUNTIME
def test_int8_calibration_source_resize_mode_and_errors(tmp_path):
    model = tiny_model(tmp_path / "m.onnx")
    cache = tmp_path / "cache"
    with pytest.raises(PrecisionError, match="needs calibration frames"):
        precision_model_file(model, "int8", cache)
    folder = write_images(tmp_path / "frames", 4)  # 30x60: another aspect ratio than the 16x24 input
    letterbox = make_precision_file(model, "int8", cache, CalibrationSpec(folder, frames=4, resize_mode="letterbox"))
    stretch = make_precision_file(model, "int8", cache, CalibrationSpec(folder, frames=4, resize_mode="stretch"))
    assert letterbox.path != stretch.path, "the resize mode reaches the calibration frames"
    assert check_qdq_placement(letterbox.path) == []
    assert run_onnx_cpu(letterbox.path, [np.zeros((1, 3, 16, 24), np.float32)])[0]["depth"].shape == (1, 1, 16, 24)
    assert precision_model_file(model, "int8", cache) in (letterbox.path, stretch.path), "without frames: an INT8 file made earlier"
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "a.png").write_bytes(b"not a png")
    with pytest.raises(CalibrationDataError, match="could be decoded"):
        make_precision_file(model, "int8", cache, CalibrationSpec(broken, frames=4))


def test_fp16_output_of_a_kept_node_stays_float32(tmp_path):
    """onnxconverter-common types an output FP16 when its producer is kept FP32; the file fixes that."""
    model = onnx.load(str(tiny_model(tmp_path / "m.onnx")))
    from mtl_perception.inference.precision import convert_fp16

    converted, keep = convert_fp16(model)
    assert "depth_exp" in keep
    assert converted.graph.output[0].type.tensor_type.elem_type == TensorProto.FLOAT
    path = tmp_path / "c.onnx"
    onnx.save(converted, str(path))
    out = run_onnx_cpu(path, [np.ones((1, 3, 16, 24), np.float32)])[0]["depth"]
    ref = run_onnx_cpu(tmp_path / "m.onnx", [np.ones((1, 3, 16, 24), np.float32)])[0]["depth"]
    assert out.dtype == np.float32 and np.max(np.abs(out - ref) / ref) < 2e-3
    assert {p.key: p.value for p in converted.metadata_props}[PRECISION_KEY] == "fp16"


@INT8_ON_ONNXRUNTIME
def test_quantize_and_check_trt_commands(tmp_path, capsys):
    import argparse

    from mtl_perception.cli import inference as cli_commands

    def parse(add, argv):
        parser = argparse.ArgumentParser()
        add(parser)
        return parser.parse_args(argv)

    model = tiny_model(tmp_path / "m.onnx")
    out = tmp_path / "m_int8.onnx"
    args = parse(cli_commands.add_quantize_arguments, ["--model", str(model), "--out", str(out), "--calib-images", "4", "--eval-frames", "2"])
    assert cli_commands.quantize_main(args) == cli_commands.EXIT_OK
    printed = capsys.readouterr().out
    assert "explicit Q/DQ on FP16, symmetric INT8, 4 calibration frames, 2 sensitive nodes without Q/DQ, 1 nodes FP32" in printed and "vs FP32: depth AbsRel" in printed
    assert cli_commands.check_trt_main(parse(cli_commands.add_check_trt_arguments, ["--model", str(out)])) == cli_commands.EXIT_OK
    printed = capsys.readouterr().out
    assert "explicit quantization:" in printed and "compatible with the TensorRT 10.1 and 11.4 ONNX parser(s)" in printed
    assert cli_commands.check_trt_main(parse(cli_commands.add_check_trt_arguments, ["--model", str(out), "--trt-version", "11"])) == cli_commands.EXIT_OK
    assert "TensorRT 11.4 ONNX parser" in capsys.readouterr().out
    # ONNX Runtime's default (uint8) quantization is reported, with exit code 1
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, quantize_static

    feeds = iter([{"image": np.zeros((1, 3, 16, 24), np.float32)}])

    class Reader(CalibrationDataReader):
        def get_next(self):
            return next(feeds, None)

    quantize_static(str(model), str(tmp_path / "u8.onnx"), Reader(), quant_format=QuantFormat.QDQ)
    assert cli_commands.check_trt_main(parse(cli_commands.add_check_trt_arguments, ["--model", str(tmp_path / "u8.onnx")])) == cli_commands.EXIT_FAILED
    assert "Q/DQ: node" in capsys.readouterr().out


def resize_model(scales_from: str) -> onnx.ModelProto:
    """conv -> Resize x2 by ``scales`` (an initializer, a Constant node, or an initializer a Mul also reads) -> head conv -> exp."""
    rng = np.random.default_rng(1)
    scales = np.array([1, 1, 2, 2], np.float32)
    inits = [numpy_helper.from_array(rng.normal(0, 0.1, (4, 3, 3, 3)).astype(np.float32), "w1"),
             numpy_helper.from_array(rng.normal(0, 0.1, (1, 4, 1, 1)).astype(np.float32), "w2")]
    nodes = [helper.make_node("Conv", ["image", "w1"], ["a"], pads=[1, 1, 1, 1], name="conv1")]
    if scales_from == "constant":
        nodes.append(helper.make_node("Constant", [], ["scales"], value=numpy_helper.from_array(scales), name="scales_const"))
    else:
        inits.append(numpy_helper.from_array(scales, "scales"))
    if scales_from == "shared":  # the same float initializer also read as data (FP16 there)
        nodes.append(helper.make_node("Mul", ["a", "scales_b"], ["a2"], name="mul"))
        nodes.append(helper.make_node("Unsqueeze", ["scales", "axes"], ["scales_b"], name="unsq"))
        inits.append(numpy_helper.from_array(np.array([0, 2, 3], np.int64), "axes"))
        resize_in = "a2"
    else:
        resize_in = "a"
    nodes += [helper.make_node("Resize", [resize_in, "", "scales"], ["b"], mode="linear", name="up"),
              helper.make_node("Conv", ["b", "w2"], ["c"], name="head/proj/Conv"), helper.make_node("Exp", ["c"], ["depth"], name="depth_exp")]
    graph = helper.make_graph(nodes, "resize", [helper.make_tensor_value_info("image", TensorProto.FLOAT, [1, 3, 8, 12])],
                              [helper.make_tensor_value_info("depth", TensorProto.FLOAT, [1, 1, 16, 24])], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=9)


@pytest.mark.parametrize("scales_from", ["initializer", "constant", "shared"])
def test_fp16_file_of_a_resize_by_scales_passes_the_full_check_and_runs(tmp_path, scales_from):
    """onnxconverter-common with op_block_list=[] made a Resize's float-only ``scales`` FP16 (ONNX Runtime: invalid graph)."""
    import onnxruntime as ort
    from onnxconverter_common.float16 import convert_float_to_float16

    from mtl_perception.inference.precision import convert_fp16

    source = resize_model(scales_from)
    plain = convert_float_to_float16(onnx.ModelProto.FromString(source.SerializeToString()), keep_io_types=True, op_block_list=[])
    onnx.checker.check_model(plain)  # what the plain check lets through...
    with pytest.raises(onnx.shape_inference.InferenceError, match="Expected:float Actual:float16"):
        onnx.checker.check_model(plain, full_check=True)  # ...and the full check does not
    converted, _ = convert_fp16(source)
    onnx.checker.check_model(converted, full_check=True)
    resize = next(n for n in converted.graph.node if n.op_type == "Resize")
    assert _value_types(converted)[resize.input[2]] == TensorProto.FLOAT
    assert _value_types(converted)[resize.input[0]] == TensorProto.FLOAT16, "the resized data itself is FP16"
    image = np.random.default_rng(2).normal(size=(1, 3, 8, 12)).astype(np.float32)
    out = ort.InferenceSession(converted.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"image": image})[0]
    ref = ort.InferenceSession(source.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"image": image})[0]
    assert out.shape == (1, 1, 16, 24) and np.max(np.abs(out - ref) / ref) < 2e-3


def test_tensorrt_provider_precision_flags_stay_off_for_precision_files(tmp_path):
    """With a precision file both flags make ONNX Runtime's TensorRT build weakly typed (microsoft/onnxruntime#18707)."""
    from mtl_perception.inference.backends.onnxruntime_backend import OnnxRuntimeBackend

    model = tiny_model(tmp_path / "m.onnx")
    fp16 = make_precision_file(model, "fp16", tmp_path / "cache").path
    int8 = make_precision_file(model, "int8", tmp_path / "cache", CalibrationSpec(frames=2)).path

    def flags(path, fp16_asked):
        options = OnnxRuntimeBackend._provider_options("TensorrtExecutionProvider", fp16_asked, tmp_path / "ort", path)
        return options["trt_fp16_enable"], options["trt_int8_enable"]

    assert flags(model, False) == ("False", "False") and flags(model, True) == ("True", "False"), "FP32 file: FP16 only when asked"
    for path in (fp16, int8):
        assert flags(path, False) == flags(path, True) == ("False", "False"), path.name


def test_an_onnxruntime_that_runs_the_int8_file_wrong_refuses_it_in_one_line(files, monkeypatch):
    """Before INT8_ONNXRUNTIME_MIN the CPU provider computes the FP16-scale Q/DQ file far from FP32 (measured): refused,
    while the FP16 file still runs; the quantize report says why it measured nothing."""
    from mtl_perception.inference.backends import create_backend
    from mtl_perception.inference.precision import PrecisionError
    from mtl_perception.inference.quantize import QuantizationReport

    fp16, int8 = files
    monkeypatch.setattr(onnxruntime, "__version__", "1.29.0")
    with pytest.raises(PrecisionError) as caught:
        create_backend("onnxruntime", int8.path, provider="cpu")
    assert "\n" not in str(caught.value) and "onnxruntime 1.29.0 runs the INT8 file" in str(caught.value) and "1.30" in str(caught.value)
    with pytest.raises(PrecisionError):
        run_onnx_cpu(int8.path, [np.zeros((1, 3, 8, 8), np.float32)])
    create_backend("onnxruntime", fp16.path, provider="cpu").close()
    report = QuantizationReport(int8.path, 1, None, 0.0, not_measured=str(caught.value))
    assert "vs FP32: not measured: onnxruntime 1.29.0" in report.summary()
