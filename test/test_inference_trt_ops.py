"""The TensorRT 10 operator table and the compatibility check, on hand-built graphs (no TensorRT needed).

The check on every exported encoder and architecture is in test_inference_export.py.
"""
from __future__ import annotations

import os

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from mtl_perception.inference.trt_ops import check_tensorrt_compat, graph_operators, load_trt_op_table, trt_table_version


def model_of(nodes, inputs, outputs, inits=(), opset=17, extra_opsets=()):
    graph = helper.make_graph(nodes, "g", inputs, outputs, list(inits))
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset), *extra_opsets], ir_version=9)


def x_info(shape=(1, 3, 8, 8), name="x"):
    return helper.make_tensor_value_info(name, TensorProto.FLOAT, list(shape))


def y_info(name="y"):
    return helper.make_tensor_value_info(name, TensorProto.FLOAT, None)


def test_table_records_its_source_and_known_facts():
    table = load_trt_op_table()
    assert trt_table_version().startswith("10.")
    assert table["source"]["repository"] == "onnx/onnx-tensorrt" and len(table["source"]["commit"]) == 40
    ops = table["operators"]
    for op in ("Conv", "Relu", "Resize", "Add", "HardSwish", "HardSigmoid", "ReduceL2", "MatMul", "Softmax"):
        assert ops[op]["supported"], op
    for op in ("Unique", "StringNormalizer", "ConvInteger", "MaxUnpool", "DFT"):
        assert not ops[op]["supported"], op
    assert table["opset_min"] <= 17 <= table["opset_max"]


def test_supported_graph_has_no_problems():
    w = numpy_helper.from_array(np.ones((4, 3, 3, 3), np.float32), "w")
    sizes = numpy_helper.from_array(np.array([1, 4, 16, 16], np.int64), "sizes")
    nodes = [
        helper.make_node("Conv", ["x", "w"], ["c"], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c"], ["r"]),
        helper.make_node("Resize", ["r", "", "", "sizes"], ["y"], mode="linear", coordinate_transformation_mode="pytorch_half_pixel"),
    ]
    model = model_of(nodes, [x_info()], [y_info()], [w, sizes])
    assert check_tensorrt_compat(model) == []
    assert graph_operators(model) == {"Conv": 1, "Relu": 1, "Resize": 1}


def test_unsupported_operator_custom_domain_and_opset():
    nodes = [helper.make_node("Unique", ["x"], ["y"]), helper.make_node("MyOp", ["x"], ["z"], domain="com.example")]
    model = model_of(nodes, [x_info((4,))], [y_info(), y_info("z")], extra_opsets=[helper.make_opsetid("com.example", 1)])
    problems = check_tensorrt_compat(model)
    assert any("Unique is not supported" in p for p in problems)
    assert any("custom domain 'com.example'" in p for p in problems)
    old = model_of([helper.make_node("Relu", ["x"], ["y"])], [x_info()], [y_info()], opset=8)
    assert any("opset 8 is outside" in p for p in check_tensorrt_compat(old))
    new = model_of([helper.make_node("Relu", ["x"], ["y"])], [x_info()], [y_info()], opset=21)
    assert any("opset 21 is outside" in p for p in check_tensorrt_compat(new))


def test_resize_attribute_limits():
    scales = numpy_helper.from_array(np.array([1, 1, 2, 2], np.float32), "scales")
    cubic = helper.make_node("Resize", ["x", "", "scales"], ["y"], mode="cubic")
    problems = check_tensorrt_compat(model_of([cubic], [x_info()], [y_info()], [scales]))
    assert len(problems) == 1 and "mode='cubic'" in problems[0] and "Resize" in problems[0]
    policy = helper.make_node("Resize", ["x", "", "scales"], ["y"], keep_aspect_ratio_policy="not_larger", antialias=1)
    problems = check_tensorrt_compat(model_of([policy], [x_info()], [y_info()], [scales], opset=18))
    assert any("keep_aspect_ratio_policy" in p for p in problems) and any("antialias" in p for p in problems)
    axes = helper.make_node("Resize", ["x", "", "scales"], ["y"], axes=[0, 2, 1, 3])
    problems = check_tensorrt_compat(model_of([axes], [x_info()], [y_info()], [scales], opset=18))
    assert any("axes=[0, 2, 1, 3] must be [0, 1, 2, 3]" in p for p in problems)


def test_pool_and_output_limits():
    dilated = helper.make_node("MaxPool", ["x"], ["y"], kernel_shape=[3, 3], dilations=[2, 2])
    assert any("dilations" in p for p in check_tensorrt_compat(model_of([dilated], [x_info()], [y_info()])))
    indices = helper.make_node("MaxPool", ["x"], ["y", "idx"], kernel_shape=[2, 2])
    idx_info = helper.make_tensor_value_info("idx", TensorProto.INT64, None)
    assert any("uses 2 outputs" in p for p in check_tensorrt_compat(model_of([indices], [x_info()], [y_info(), idx_info])))
    pool1d = helper.make_node("AveragePool", ["x"], ["y"], kernel_shape=[2])
    assert any("kernel_shape has 1 elements" in p for p in check_tensorrt_compat(model_of([pool1d], [x_info((1, 3, 8))], [y_info()])))


def test_constant_input_limits():
    axes_input = helper.make_tensor_value_info("axes", TensorProto.INT64, [1])
    runtime_axes = helper.make_node("ReduceMean", ["x", "axes"], ["y"])
    problems = check_tensorrt_compat(model_of([runtime_axes], [x_info(), axes_input], [y_info()], opset=18))
    assert len(problems) == 1 and "'axes' (axes) must be a constant" in problems[0]
    const_axes = numpy_helper.from_array(np.array([1], np.int64), "axes")
    assert check_tensorrt_compat(model_of([runtime_axes], [x_info()], [y_info()], [const_axes], opset=18)) == []
    k = numpy_helper.from_array(np.array([5000], np.int64), "k")
    topk = helper.make_node("TopK", ["x", "k"], ["y", "i"])
    i_info = helper.make_tensor_value_info("i", TensorProto.INT64, None)
    assert any("exceeds 3839" in p for p in check_tensorrt_compat(model_of([topk], [x_info((1, 8000))], [y_info(), i_info], [k])))


def test_limits_inside_subgraphs_are_checked():
    cubic = helper.make_node("Resize", ["x", "", "scales"], ["inner"], mode="cubic")
    scales = numpy_helper.from_array(np.array([1, 1, 2, 2], np.float32), "scales")
    branch = helper.make_graph([cubic], "then", [], [y_info("inner")], [scales])
    relu_branch = helper.make_graph([helper.make_node("Relu", ["x"], ["inner2"])], "else", [], [y_info("inner2")])
    cond = helper.make_tensor_value_info("cond", TensorProto.BOOL, [])
    node = helper.make_node("If", ["cond"], ["y"], then_branch=branch, else_branch=relu_branch)
    problems = check_tensorrt_compat(model_of([node], [x_info(), cond], [y_info()]))
    assert len(problems) == 1 and "then_branch" in problems[0] and "cubic" in problems[0]


def test_missing_file_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="not found"):
        check_tensorrt_compat(tmp_path / "none.onnx")
    path = tmp_path / "ok.onnx"
    onnx.save(model_of([helper.make_node("Relu", ["x"], ["y"])], [x_info()], [y_info()]), str(path))
    assert check_tensorrt_compat(path) == []


def test_tensorrt_11_table_and_problems_name_their_versions():
    from mtl_perception.inference.trt_ops import trt_table_versions

    table11 = load_trt_op_table("11")
    assert trt_table_versions() == ["10.1", "11.4"] and table11["opset_max"] > load_trt_op_table("10")["opset_max"]
    assert "derived_from" in table11["source"] and table11["source"]["changes"], "the 11.x table says where it comes from"
    swish = model_of([helper.make_node("Swish", ["x"], ["y"])], [x_info()], [y_info()], opset=17)
    problems = check_tensorrt_compat(swish)
    assert problems == ["graph: node (unnamed) (Swish): operator Swish is unknown to the TensorRT ONNX parser (TensorRT 10.1)"]
    assert check_tensorrt_compat(swish, ("11",)) == []
    unique = model_of([helper.make_node("Unique", ["x"], ["y"])], [x_info((4,))], [y_info()])
    assert check_tensorrt_compat(unique)[0].endswith("(TensorRT 10.1 and 11.4)"), "one line for a problem both parsers share"
    with pytest.raises(ValueError, match="no operator table for TensorRT 9"):
        load_trt_op_table("9")


# -- element types (the parser's type rules) -----------------------------------------------------------------

def u8_info(name: str, shape=(2, 3)):
    return helper.make_tensor_value_info(name, TensorProto.UINT8, list(shape))


def test_type_rules_record_where_each_was_read():
    from mtl_perception.inference.trt_ops import load_trt_type_rules, trt_type_rules_source

    rules = load_trt_type_rules()
    assert rules["parser_source"]["repository"] == "onnx/onnx-tensorrt" and len(rules["parser_source"]["commit"]) == 40
    (io_only,) = rules["io_only_types"]
    assert io_only["type"] == "UINT8" and io_only["source"]["file"] == "ModelImporter.cpp"
    assert rules["constant_conversions"][0]["from"] == "UINT8" and rules["constant_conversions"][0]["to"] == "INT32"
    (cast,) = rules["cast_conversions"]
    assert cast["with"] == ["FLOAT", "FLOAT16"] and {s["tag"] for s in cast["sources"]} >= {"v10.3.0", "v11.1"}
    assert all(len(s["commit"]) == 40 for s in cast["sources"])
    gather = rules["operators"]["Gather"]
    assert any(r["input"] == "0" and "UINT8" in r["rejects"] and r["source"]["file"] == "onnxOpImporters.cpp" for r in gather)
    assert any("only" in r and r["only"] == ["BOOL"] for r in rules["operators"]["Not"])
    assert all(len(r["source"]["commit"]) == 40 for op in rules["operators"].values() for r in op)
    assert rules["later_sources"], "what later parser sources change is recorded"
    assert "10.1-GA" in trt_type_rules_source()


def test_uint8_gather_intermediate_and_output_are_rejected_naming_the_nodes():
    """The old palette LUT: a uint8 input gathered, passed through Identity to a uint8 output."""
    ids = helper.make_tensor_value_info("ids", TensorProto.INT64, [4])
    nodes = [helper.make_node("Gather", ["palette", "ids"], ["colours"], name="lut", axis=0),
             helper.make_node("Identity", ["colours"], ["out"], name="copy")]
    problems = check_tensorrt_compat(model_of(nodes, [u8_info("palette"), ids], [u8_info("out", (4, 3))]))
    assert any(p.startswith("graph: node lut (Gather): input 0 (palette) is UINT8; its importer takes no UINT8 (onnxOpImporters.cpp:") for p in problems)
    assert any("node lut (Gather): output colours is UINT8, an intermediate tensor" in p for p in problems)
    assert any("node lut (Gather): reads the UINT8 network input palette" in p for p in problems)
    assert any("node copy (Identity): writes the UINT8 network output out; a UINT8 output must come from a Cast" in p for p in problems)
    assert all(p.endswith("(TensorRT 10.1 and 11.4)") for p in problems)


def test_the_float_lut_with_casts_at_the_edges_passes():
    ids = helper.make_tensor_value_info("ids", TensorProto.INT64, [4])
    nodes = [helper.make_node("Cast", ["palette"], ["palette_f"], to=TensorProto.FLOAT),
             helper.make_node("Gather", ["palette_f", "ids"], ["colours"], axis=0),
             helper.make_node("Cast", ["colours"], ["out"], to=TensorProto.UINT8)]
    assert check_tensorrt_compat(model_of(nodes, [u8_info("palette"), ids], [u8_info("out", (4, 3))])) == []


def test_a_planted_uint8_intermediate_is_rejected_naming_its_node():
    nodes = [helper.make_node("Cast", ["x"], ["xf"], name="to_float", to=TensorProto.FLOAT),
             helper.make_node("Cast", ["xf"], ["x8"], name="planted", to=TensorProto.UINT8),
             helper.make_node("Cast", ["x8"], ["y"], name="back", to=TensorProto.FLOAT)]
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 3])
    problems = check_tensorrt_compat(model_of(nodes, [x_info((2, 3))], [y]))
    assert len(problems) == 1 and problems[0].startswith("graph: node planted (Cast): output x8 is UINT8, an intermediate tensor"), problems


def test_uint8_casts_go_through_float_and_uint8_constants_become_int32():
    labels = helper.make_tensor_value_info("labels", TensorProto.INT64, [4])
    direct = [helper.make_node("Cast", ["labels"], ["out"], name="direct", to=TensorProto.UINT8)]
    problems = check_tensorrt_compat(model_of(direct, [labels], [u8_info("out", (4,))]))
    assert len(problems) == 1 and "node direct (Cast): casts INT64 to UINT8; TensorRT converts UINT8 only from and to FLOAT, FLOAT16" in problems[0]
    through = [helper.make_node("Cast", ["labels"], ["f"], to=TensorProto.FLOAT), helper.make_node("Cast", ["f"], ["out"], to=TensorProto.UINT8)]
    assert check_tensorrt_compat(model_of(through, [labels], [u8_info("out", (4,))])) == []
    widen = [helper.make_node("Cast", ["pixels"], ["wide"], name="widen", to=TensorProto.INT32),
             helper.make_node("Cast", ["wide"], ["y"], to=TensorProto.FLOAT)]
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 3])
    assert any("node widen (Cast): casts UINT8 to INT32" in p for p in check_tensorrt_compat(model_of(widen, [u8_info("pixels")], [y])))
    lut = numpy_helper.from_array(np.arange(12, dtype=np.uint8).reshape(4, 3), "lut")
    ids = helper.make_tensor_value_info("ids", TensorProto.INT64, [2])
    gather = [helper.make_node("Gather", ["lut", "ids"], ["rows"], name="lookup"), helper.make_node("Cast", ["rows"], ["y"], to=TensorProto.FLOAT)]
    problems = check_tensorrt_compat(model_of(gather, [ids], [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 3])], [lut]))
    assert any("node lookup (Gather): reads the UINT8 constant lut, which the parser turns into INT32" in p for p in problems)
    assert any("node lookup (Gather): output rows is UINT8, an intermediate tensor" in p for p in problems)


def test_operator_input_types_and_failed_shape_inference_are_reported():
    flags = helper.make_tensor_value_info("flags", TensorProto.BOOL, [4])
    summed = [helper.make_node("Add", ["flags", "flags"], ["y"], name="bool_add")]
    problems = check_tensorrt_compat(model_of(summed, [flags], [helper.make_tensor_value_info("y", TensorProto.BOOL, [4])]))
    assert any("node bool_add (Add): input 0 (flags) is BOOL" in p for p in problems)
    mismatch = [helper.make_node("Add", ["x", "n"], ["y"])]  # float + int64: ONNX shape inference refuses it
    n = helper.make_tensor_value_info("n", TensorProto.INT64, [1, 3, 8, 8])
    problems = check_tensorrt_compat(model_of(mismatch, [x_info(), n], [y_info()]))
    assert problems and problems[0].startswith("ONNX shape inference failed") and "element types cannot be checked" in problems[0]


@pytest.mark.skipif(not (os.environ.get("MTL_ONNX_TENSORRT_GIT") and os.environ.get("MTL_TENSORRT_GIT")),
                    reason="set MTL_ONNX_TENSORRT_GIT and MTL_TENSORRT_GIT to git directories of onnx/onnx-tensorrt and NVIDIA/TensorRT "
                           "to re-derive the type rules")
def test_type_rules_re_derive_from_the_sources(tmp_path):
    import json
    import subprocess
    import sys
    from pathlib import Path

    from mtl_perception.inference.trt_ops import load_trt_type_rules

    root = Path(__file__).resolve().parents[1]
    shipped = load_trt_type_rules()
    out = tmp_path / "rules.json"
    subprocess.run([sys.executable, str(root / "tools" / "derive_trt_parser_rules.py"), "--onnx-tensorrt", os.environ["MTL_ONNX_TENSORRT_GIT"],
                    "--rev", shipped["parser_source"]["revision"], "--tensorrt", os.environ["MTL_TENSORRT_GIT"], "--tags", *shipped["header_source"]["tags"],
                    "--out", str(out)], check=True, capture_output=True)
    derived = json.loads(out.read_text())
    assert {k: v for k, v in derived.items() if k != "later_sources"} == {k: v for k, v in shipped.items() if k != "later_sources"}
