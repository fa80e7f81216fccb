"""TensorRT compatibility check of an ONNX graph, without TensorRT.

The TensorRT 10 ONNX parser's operator support matrix is kept as data in
``resources/tensorrt10_onnx_ops.json`` (operators, supported types, the TensorRT version it comes from,
and machine-checkable attribute/input limits). ``check_tensorrt_compat`` walks a graph (subgraphs
included) and returns one line per problem; an empty list means every node is parseable as far as the
list states.
"""
from __future__ import annotations

import functools
import json
from importlib import resources
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import onnx
from onnx import helper, numpy_helper

OPS_RESOURCE = "tensorrt10_onnx_ops.json"


@functools.lru_cache(maxsize=1)
def load_trt_op_table() -> dict[str, Any]:
    """The supported-operator table shipped with the package (parsed once)."""
    text = resources.files("mtl_perception.inference").joinpath("resources", OPS_RESOURCE).read_text()
    return json.loads(text)


def trt_table_version() -> str:
    """TensorRT version the operator table comes from."""
    return str(load_trt_op_table()["tensorrt_version"])


def _iter_graphs(graph: onnx.GraphProto, path: str = "graph") -> Iterator[tuple[str, onnx.GraphProto]]:
    """The graph and every subgraph nested in node attributes (If / Loop / Scan bodies)."""
    yield path, graph
    for node in graph.node:
        for attr in node.attribute:
            if attr.type == onnx.AttributeProto.GRAPH:
                yield from _iter_graphs(attr.g, f"{path}/{node.name or node.op_type}.{attr.name}")
            elif attr.type == onnx.AttributeProto.GRAPHS:
                for i, sub in enumerate(attr.graphs):
                    yield from _iter_graphs(sub, f"{path}/{node.name or node.op_type}.{attr.name}[{i}]")


class _GraphFacts:
    """Constants and known tensor shapes of a graph and its subgraphs, for input-based limits.

    ONNX names are unique across nested scopes, so one table serves every subgraph.
    """

    def __init__(self, graphs: list[onnx.GraphProto]) -> None:
        self.constants: dict[str, np.ndarray] = {}
        self.shapes: dict[str, list[int | None] | None] = {}
        for graph in graphs:
            for init in graph.initializer:
                self.constants[init.name] = numpy_helper.to_array(init)
            for node in graph.node:
                if node.op_type == "Constant" and node.output and node.attribute:
                    attr = node.attribute[0]
                    raw = helper.get_attribute_value(attr)
                    is_tensor = attr.type == onnx.AttributeProto.TENSOR
                    self.constants[node.output[0]] = numpy_helper.to_array(raw) if is_tensor else np.asarray(raw, dtype=object)
            for info in list(graph.input) + list(graph.output) + list(graph.value_info):
                tensor_type = info.type.tensor_type
                if tensor_type.HasField("shape"):
                    self.shapes[info.name] = [d.dim_value if d.HasField("dim_value") else None for d in tensor_type.shape.dim]
                else:
                    self.shapes[info.name] = None


def _check_limit(node: onnx.NodeProto, limit: dict[str, Any], facts: _GraphFacts) -> str | None:
    """One limit of the table applied to one node; a problem sentence or None."""
    attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
    kind = limit["kind"]
    name = limit.get("name")
    value = attrs.get(name) if name else None
    if isinstance(value, bytes):
        value = value.decode()
    if kind == "attribute_in":
        if name in attrs and value not in limit["values"]:
            return f"attribute {name}={value!r} is not supported (allowed: {limit['values']})"
    elif kind == "attribute_absent":
        if name in attrs:
            return f"attribute {name} is not supported"
    elif kind == "attribute_all_equal":
        if name in attrs and any(v != limit["value"] for v in value):
            return f"attribute {name}={list(value)} must be all {limit['value']}"
    elif kind == "attribute_length_in":
        if name in attrs and len(value) not in limit["values"]:
            return f"attribute {name} has {len(value)} elements; supported: {limit['values']}"
    elif kind == "attribute_iota":
        if name in attrs:
            rank = _input_rank(node, limit["index"], facts)
            expected = list(range(rank if rank is not None else len(value)))
            if list(value) != expected:
                return f"attribute {name}={list(value)} must be {expected}"
    elif kind == "constant_input":
        index = limit["index"]
        if index < len(node.input) and node.input[index]:
            source = node.input[index]
            if source not in facts.constants:
                return f"input {limit['input']!r} ({source}) must be a constant (initializer or Constant node)"
            data = facts.constants[source]
            if "all_equal" in limit and np.any(data != limit["all_equal"]):
                return f"input {limit['input']!r} must be all {limit['all_equal']}"
            if "max_value" in limit and data.size and np.max(data) > limit["max_value"]:
                return f"input {limit['input']!r}={data.tolist()} exceeds {limit['max_value']}"
    elif kind == "max_outputs":
        used = [o for o in node.output if o]
        if len(used) > limit["value"]:
            return f"uses {len(used)} outputs; TensorRT supports {limit['value']}"
    elif kind == "input_rank_in":
        rank = _input_rank(node, limit["index"], facts)
        if rank is not None and rank not in limit["values"]:
            return f"input {limit['index']} has rank {rank}; supported ranks: {limit['values']}"
    elif kind == "static_input_shape":
        index = limit["index"]
        shape = facts.shapes.get(node.input[index]) if index < len(node.input) else None
        if shape is not None and any(d is None for d in shape):
            return f"input {index} must have static dimensions, got {shape}"
    else:
        raise ValueError(f"unknown limit kind {kind!r} in {OPS_RESOURCE}")
    return None


def _input_rank(node: onnx.NodeProto, index: int, facts: _GraphFacts) -> int | None:
    if index >= len(node.input):
        return None
    shape = facts.shapes.get(node.input[index])
    return None if shape is None else len(shape)


def _load(model: str | Path | onnx.ModelProto) -> onnx.ModelProto:
    if isinstance(model, onnx.ModelProto):
        return model
    path = Path(model)
    if not path.is_file():
        raise FileNotFoundError(f"ONNX model not found: {path}")
    return onnx.load(str(path), load_external_data=False)


def check_tensorrt_compat(model: str | Path | onnx.ModelProto) -> list[str]:
    """Problems that would stop the TensorRT 10 ONNX parser; empty when the graph is compatible.

    Checks the default-domain opset range, every node's operator against the supported list, and the
    attribute/input limits the list states. Shape-dependent limits use ONNX shape inference where it
    knows the shapes.
    """
    proto = _load(model)
    table = load_trt_op_table()
    version = table["tensorrt_version"]
    problems: list[str] = []
    for opset in proto.opset_import:
        if opset.domain in ("", "ai.onnx") and not table["opset_min"] <= opset.version <= table["opset_max"]:
            problems.append(
                f"opset {opset.version} is outside TensorRT {version}'s range {table['opset_min']}-{table['opset_max']}; "
                "export with another --opset"
            )
    try:
        inferred = onnx.shape_inference.infer_shapes(proto)
    except Exception:  # shape inference is a help for a few limits, never required
        inferred = proto
    operators = table["operators"]
    graphs = list(_iter_graphs(inferred.graph))
    facts = _GraphFacts([graph for _, graph in graphs])
    for path, graph in graphs:
        for node in graph.node:
            where = f"{path}: node {node.name or '(unnamed)'} ({node.op_type})"
            if node.domain not in table["domains"]:
                problems.append(f"{where}: custom domain {node.domain!r} needs a TensorRT plugin")
                continue
            entry = operators.get(node.op_type)
            if entry is None or not entry["supported"]:
                state = "unknown to" if entry is None else "not supported by"
                problems.append(f"{where}: operator {node.op_type} is {state} the TensorRT {version} ONNX parser")
                continue
            for limit in entry.get("limits", []):
                problem = _check_limit(node, limit, facts)
                if problem:
                    problems.append(f"{where}: {problem} (TensorRT {version})")
    return problems


def graph_operators(model: str | Path | onnx.ModelProto) -> dict[str, int]:
    """Operator histogram of a graph and its subgraphs (op_type -> count)."""
    counts: dict[str, int] = {}
    for _, graph in _iter_graphs(_load(model).graph):
        for node in graph.node:
            counts[node.op_type] = counts.get(node.op_type, 0) + 1
    return dict(sorted(counts.items()))
