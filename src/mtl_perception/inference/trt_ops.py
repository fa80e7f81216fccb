"""TensorRT compatibility check of an ONNX graph, without TensorRT: the ONNX parsers of TensorRT 10 and 11.

Each parser's operator support matrix is kept as data in ``resources/tensorrt<major>_onnx_ops.json``
(operators, supported types, the TensorRT version and source it comes from, and machine-checkable
attribute/input limits). ``check_tensorrt_compat`` walks a graph (subgraphs included) against every
table and returns one line per problem, naming the TensorRT versions it applies to; an empty list
means every node is parseable as far as the tables state. After ONNX shape inference it also judges
every tensor's element type against the parser's type rules, kept as data in
``resources/tensorrt_parser_type_rules.json`` (derived from onnx-tensorrt's importer sources and
TensorRT's headers by ``tools/derive_trt_parser_rules.py``, each rule naming its file and commit):
the types each operator's inputs may have, UINT8 only at the network's inputs and outputs (an input
read by Casts only, an output written by a Cast), Casts to or from UINT8 only from or to FLOAT/FLOAT16,
and UINT8 constants, which the parser turns into INT32. ``check_qdq_placement`` checks the
QuantizeLinear / DequantizeLinear nodes of an INT8 graph against TensorRT's explicit-quantization rules.
"""
from __future__ import annotations

import functools
import json
from importlib import resources
from pathlib import Path
from typing import Any, Iterator, Mapping

import numpy as np
import onnx
from onnx import helper, numpy_helper

TABLE_MAJORS = ("10", "11")  # TensorRT major versions with an operator table
OPS_RESOURCES = {major: f"tensorrt{major}_onnx_ops.json" for major in TABLE_MAJORS}
OPS_RESOURCE = OPS_RESOURCES["10"]
TYPE_RULES_RESOURCE = "tensorrt_parser_type_rules.json"
# support-matrix type names (the operator tables' ``types``, which name what input 0 may hold) -> ONNX names
MATRIX_TYPES = {"FP32": "FLOAT", "FP16": "FLOAT16", "BF16": "BFLOAT16", "INT32": "INT32", "INT64": "INT64", "INT8": "INT8",
                "UINT8": "UINT8", "BOOL": "BOOL", "FP8": "FLOAT8E4M3FN", "INT4": "INT4"}


@functools.lru_cache(maxsize=None)
def load_trt_op_table(major: str = "10") -> dict[str, Any]:
    """The supported-operator table of one TensorRT major version shipped with the package (parsed once)."""
    if str(major) not in OPS_RESOURCES:
        raise ValueError(f"no operator table for TensorRT {major}; tables: {list(TABLE_MAJORS)}")
    text = resources.files("mtl_perception.inference").joinpath("resources", OPS_RESOURCES[str(major)]).read_text()
    return json.loads(text)


@functools.lru_cache(maxsize=None)
def load_trt_type_rules() -> dict[str, Any]:
    """The parser's element-type rules shipped with the package (parsed once)."""
    text = resources.files("mtl_perception.inference").joinpath("resources", TYPE_RULES_RESOURCE).read_text()
    return json.loads(text)


def trt_type_rules_source() -> str:
    """Where the type rules come from, in one line (the check-trt report names it)."""
    rules = load_trt_type_rules()
    parser, headers = rules["parser_source"], rules["header_source"]
    return (f"the type rules of {parser['repository']} {parser['revision']} ({parser['commit'][:12]}) and "
            f"{headers['repository']} {', '.join(headers['tags'])} headers")


def trt_table_version(major: str = "10") -> str:
    """TensorRT version an operator table comes from."""
    return str(load_trt_op_table(major)["tensorrt_version"])


def trt_table_versions(majors: tuple[str, ...] = TABLE_MAJORS) -> list[str]:
    """TensorRT versions of the tables checked by default, e.g. ['10.1', '11.4']."""
    return [trt_table_version(m) for m in majors]


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


class _Constants(Mapping[str, np.ndarray]):
    """Initializers and Constant-node values by name, converted to arrays only when a check reads one."""

    def __init__(self) -> None:
        self._sources: dict[str, Any] = {}
        self._arrays: dict[str, np.ndarray] = {}

    def add(self, name: str, source: onnx.TensorProto | onnx.AttributeProto) -> None:
        self._sources[name] = source

    def __getitem__(self, name: str) -> np.ndarray:
        if name not in self._arrays:
            source = self._sources[name]
            if isinstance(source, onnx.TensorProto):
                self._arrays[name] = numpy_helper.to_array(source)
            elif source.type == onnx.AttributeProto.TENSOR:
                self._arrays[name] = numpy_helper.to_array(source.t)
            else:
                self._arrays[name] = np.asarray(helper.get_attribute_value(source), dtype=object)
        return self._arrays[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._sources)

    def __len__(self) -> int:
        return len(self._sources)

    def __contains__(self, name: object) -> bool:
        return name in self._sources


class _GraphFacts:
    """Constants and known tensor shapes of a graph and its subgraphs, for input-based limits.

    ONNX names are unique across nested scopes, so one table serves every subgraph.
    """

    def __init__(self, graphs: list[onnx.GraphProto]) -> None:
        self.constants = _Constants()
        self.shapes: dict[str, list[int | None] | None] = {}
        for graph in graphs:
            for init in graph.initializer:
                self.constants.add(init.name, init)
            for node in graph.node:
                if node.op_type == "Constant" and node.output and node.attribute:
                    self.constants.add(node.output[0], node.attribute[0])
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
        raise ValueError(f"unknown limit kind {kind!r} in the TensorRT operator tables")
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


def _type_name(elem_type: int) -> str:
    return onnx.TensorProto.DataType.Name(elem_type)


def _elem_types(graphs: list[onnx.GraphProto]) -> dict[str, str]:
    """Tensor name -> ONNX element type name, where the graph or shape inference states it."""
    types: dict[str, str] = {}
    for graph in graphs:
        for info in [*graph.input, *graph.output, *graph.value_info]:
            if info.type.HasField("tensor_type") and info.type.tensor_type.elem_type:
                types[info.name] = _type_name(info.type.tensor_type.elem_type)
        for init in graph.initializer:
            types[init.name] = _type_name(init.data_type)
        for node in graph.node:
            if node.op_type == "Constant" and node.output and node.attribute and node.output[0] not in types:
                attr = node.attribute[0]
                if attr.type == onnx.AttributeProto.TENSOR:
                    types[node.output[0]] = _type_name(attr.t.data_type)
                elif attr.name in ("value_float", "value_floats", "value_int", "value_ints"):
                    types[node.output[0]] = "FLOAT" if attr.name.startswith("value_float") else "INT64"
    return types


def _cite(source: dict[str, Any]) -> str:
    """Where a type rule was read, for a problem line: file:line (or file function) at revision."""
    place = f"{source['file']}:{source['line']}" if "line" in source else f"{source['file']} {source['function']}"
    return f"{place} at onnx-tensorrt {source['revision']}"


class _TypeFacts:
    """What the type rules need of a shape-inferred graph: element types, constants, readers, writers."""

    def __init__(self, graphs: list[tuple[str, onnx.GraphProto]]) -> None:
        main = graphs[0][1]
        self.types = _elem_types([graph for _, graph in graphs])
        self.constants = {init.name for _, graph in graphs for init in graph.initializer}
        self.constants |= {node.output[0] for _, graph in graphs for node in graph.node if node.op_type == "Constant" and node.output}
        self.inputs = [i.name for i in main.input if i.name not in self.constants]
        self.outputs = {o.name for o in main.output}
        self.readers: dict[str, list[onnx.NodeProto]] = {}
        self.writers: dict[str, onnx.NodeProto] = {}
        for _, graph in graphs:
            for node in graph.node:
                for name in node.input:
                    self.readers.setdefault(name, []).append(node)
                for name in node.output:
                    self.writers[name] = node


def _node_label(node: onnx.NodeProto) -> str:
    """A node as a problem line names it: its name, or for an unnamed node its first output."""
    first = next((name for name in node.output if name), "")
    return f"node {node.name} ({node.op_type})" if node.name else f"node (unnamed) ({node.op_type}) -> {first}"


def _type_problems(graphs: list[tuple[str, onnx.GraphProto]], facts: _TypeFacts, table: dict[str, Any], rules: dict[str, Any]) -> list[str]:
    """Every tensor's element type judged against the parser's type rules (one line per problem, in graph order)."""
    io_only = {rule["type"]: rule for rule in rules["io_only_types"]}
    conversions = {rule["from"]: rule for rule in rules["constant_conversions"]}
    casts = {rule["type"]: rule for rule in rules["cast_conversions"]}
    problems: list[str] = []
    reported_constants: set[str] = set()

    def seen_as(name: str, node: onnx.NodeProto) -> str | None:
        """The type the parser gives input ``name`` of ``node``: constants converted, DOUBLE read as FLOAT."""
        kind = facts.types.get(name)
        if kind in conversions and name in facts.constants and node.op_type not in ("QuantizeLinear", "DequantizeLinear"):
            return conversions[kind]["to"]
        return "FLOAT" if kind == "DOUBLE" else kind

    for path, graph in graphs:
        for node in graph.node:
            where = f"{path}: {_node_label(node)}"
            found: list[str] = []
            inputs = [(index, name) for index, name in enumerate(node.input) if name]
            for index, name in inputs:
                kind = facts.types.get(name)
                if kind in conversions and name in facts.constants and name not in reported_constants and node.op_type not in ("QuantizeLinear", "DequantizeLinear"):
                    reported_constants.add(name)
                    rule = conversions[kind]
                    found.append(f"reads the {kind} constant {name}, which the parser turns into {rule['to']} ({_cite(rule['source'])}); "
                                 f"keep constants float and Cast at the output")
            accepted = [MATRIX_TYPES[t] for t in table["operators"].get(node.op_type, {}).get("types", [])]
            if accepted and inputs and inputs[0][0] == 0:
                kind = seen_as(inputs[0][1], node)
                if kind and kind not in accepted:
                    found.append(f"input 0 ({inputs[0][1]}) is {kind}; the parser's {node.op_type} takes {', '.join(accepted)}")
            for rule in rules["operators"].get(node.op_type, []):
                targets = inputs if rule["input"] == "*" else [(i, n) for i, n in inputs if i == int(rule["input"])]
                for index, name in targets:
                    kind = seen_as(name, node)
                    if kind and (kind in rule.get("rejects", []) or ("only" in rule and kind not in rule["only"])):
                        allowed = f"only {', '.join(rule['only'])}" if "only" in rule else f"no {', '.join(rule['rejects'])}"
                        found.append(f"input {index} ({name}) is {kind}; its importer takes {allowed} ({_cite(rule['source'])})")
            if node.op_type == "Cast" and inputs:
                source, target = seen_as(inputs[0][1], node), _type_name(int(_attr(node, "to", 0)))
                for kind, rule in casts.items():
                    allowed = [*rule["with"], kind]
                    if source and ((target == kind and source not in allowed) or (source == kind and target not in allowed)):
                        tags = ", ".join(s["tag"] for s in rule["sources"])
                        found.append(f"casts {source} to {target}; TensorRT converts {kind} only from and to {', '.join(rule['with'])} "
                                     f"({rule['sources'][0]['file']} at {tags}): cast through FLOAT")
            for name in node.output:
                kind = facts.types.get(name)
                if name and kind in io_only and name not in facts.outputs and node.op_type not in io_only[kind]["exempt_ops"]:
                    found.append(f"output {name} is {kind}, an intermediate tensor; TensorRT allows {kind} only at the network's inputs "
                                 f"and outputs ({_cite(io_only[kind]['source'])})")
            problems += [f"{where}: {problem}" for problem in dict.fromkeys(found)]
    path = graphs[0][0]
    for name in facts.inputs:
        kind = facts.types.get(name)
        if kind in io_only:
            for reader in facts.readers.get(name, []):
                if reader.op_type != "Cast":
                    problems.append(f"{path}: {_node_label(reader)}: reads the {kind} network input {name}; "
                                    f"a {kind} input must feed a Cast to FLOAT or FLOAT16 at once")
    for name in sorted(facts.outputs):
        kind = facts.types.get(name)
        writer = facts.writers.get(name)
        if kind in io_only and (writer is None or writer.op_type != "Cast"):
            what = _node_label(writer) if writer is not None else "a network input"
            problems.append(f"{path}: {what}: writes the {kind} network output {name}; a {kind} output must come from a Cast")
    return problems


def _check_table(proto: onnx.ModelProto, graphs: list[tuple[str, onnx.GraphProto]], facts: _GraphFacts,
                 types: _TypeFacts, table: dict[str, Any]) -> list[str]:
    """Problems of one graph (``graphs``: the inferred graph and its subgraphs) under one parser table
    (messages without the version suffix)."""
    version = table["tensorrt_version"]
    problems: list[str] = []
    for opset in proto.opset_import:
        if opset.domain in ("", "ai.onnx") and not table["opset_min"] <= opset.version <= table["opset_max"]:
            problems.append(
                f"opset {opset.version} is outside TensorRT {version}'s range {table['opset_min']}-{table['opset_max']}; "
                "export with another --opset"
            )
    operators = table["operators"]
    for path, graph in graphs:
        for node in graph.node:
            where = f"{path}: node {node.name or '(unnamed)'} ({node.op_type})"
            if node.domain not in table["domains"]:
                problems.append(f"{where}: custom domain {node.domain!r} needs a TensorRT plugin")
                continue
            entry = operators.get(node.op_type)
            if entry is None or not entry["supported"]:
                state = "unknown to" if entry is None else "not supported by"
                problems.append(f"{where}: operator {node.op_type} is {state} the TensorRT ONNX parser")
                continue
            for limit in entry.get("limits", []):
                problem = _check_limit(node, limit, facts)
                if problem:
                    problems.append(f"{where}: {problem}")
    return problems + _type_problems(graphs, types, table, load_trt_type_rules())


def check_tensorrt_compat(model: str | Path | onnx.ModelProto, majors: tuple[str, ...] = TABLE_MAJORS) -> list[str]:
    """Problems that would stop the TensorRT ONNX parsers of ``majors`` (default 10 and 11); empty when compatible.

    Checks the default-domain opset range, every node's operator against each supported list, the
    attribute/input limits the lists state, and every tensor's element type against the parser's type
    rules (``load_trt_type_rules``). A problem found under several tables is one line naming all their
    versions. Types and shape-dependent limits come from ONNX shape inference; a graph it cannot infer
    is reported, since its intermediate types are then unknown.
    """
    proto = _load(model)
    try:
        inferred = onnx.shape_inference.infer_shapes(proto, check_type=True, strict_mode=True)
    except Exception as error:  # the operator checks still run; the type checks see only the declared types
        inferred = proto
        return [f"ONNX shape inference failed ({str(error).splitlines()[0][:200]}): element types cannot be checked", *_compat_lines(proto, inferred, majors)]
    return _compat_lines(proto, inferred, majors)


def _compat_lines(proto: onnx.ModelProto, inferred: onnx.ModelProto, majors: tuple[str, ...]) -> list[str]:
    """The problems of every table, one line per problem naming the versions it applies to."""
    graphs = list(_iter_graphs(inferred.graph))
    facts = _GraphFacts([graph for _, graph in graphs])
    types = _TypeFacts(graphs)
    found: dict[str, list[str]] = {}
    for major in majors:
        table = load_trt_op_table(major)
        for problem in _check_table(proto, graphs, facts, types, table):
            found.setdefault(problem, []).append(table["tensorrt_version"])
    lines = []
    for problem, versions in found.items():
        if problem.startswith("opset "):
            lines.append(problem)  # names its version and range already
        else:
            lines.append(f"{problem} (TensorRT {' and '.join(versions)})")
    return lines


def graph_operators(model: str | Path | onnx.ModelProto) -> dict[str, int]:
    """Operator histogram of a graph and its subgraphs (op_type -> count)."""
    counts: dict[str, int] = {}
    for _, graph in _iter_graphs(_load(model).graph):
        for node in graph.node:
            counts[node.op_type] = counts.get(node.op_type, 0) + 1
    return dict(sorted(counts.items()))


# -- explicit quantization (Q/DQ) rules --------------------------------------------------------------
# What TensorRT states for explicit quantization ("Working with Quantized Types" in its developer guide,
# and the ONNX parser's QuantizeLinear / DequantizeLinear rows): quantized types are signed INT8 (or FP8 /
# INT4), zero points are 0 (symmetric), scales are positive build-time constants, activations are
# quantized per tensor and weights per tensor or per output channel, a QuantizeLinear feeds
# DequantizeLinear nodes only, and a DequantizeLinear reads a QuantizeLinear or a constant of a
# quantized type. Per-channel axes must be the output-channel axis of the weighted layer.
QDQ_TYPES = {onnx.TensorProto.INT8: "INT8", onnx.TensorProto.FLOAT8E4M3FN: "FP8", onnx.TensorProto.INT4: "INT4"}
FLOAT_TYPES = {onnx.TensorProto.FLOAT, onnx.TensorProto.FLOAT16, onnx.TensorProto.BFLOAT16}
# op type -> (input index of the weights, required per-channel axis of their DequantizeLinear)
WEIGHT_AXES = {"Conv": (1, 0), "ConvTranspose": (1, 1)}


def _attr(node: onnx.NodeProto, name: str, default: Any = None) -> Any:
    for attr in node.attribute:
        if attr.name == name:
            return helper.get_attribute_value(attr)
    return default


def check_qdq_placement(model: str | Path | onnx.ModelProto) -> list[str]:
    """Problems with a graph's QuantizeLinear / DequantizeLinear nodes under TensorRT's explicit-quantization rules.

    Empty when the graph has no Q/DQ nodes, or when every one is symmetric signed INT8 (zero point 0) with
    a positive constant scale, per-tensor on activations, per-output-channel (or per-tensor) on weights,
    and each Q feeds only DQ nodes whose scale is the Q's.
    """
    proto = _load(model)
    try:
        proto = onnx.shape_inference.infer_shapes(proto)
    except Exception:  # shapes only help the type check of Q inputs
        pass
    graph = proto.graph
    facts = _GraphFacts([graph])
    producers = {out: node for node in graph.node for out in node.output if out}
    consumers: dict[str, list[onnx.NodeProto]] = {}
    for node in graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    outputs = {o.name for o in graph.output}
    elem_types: dict[str, int] = {}
    for info in list(graph.input) + list(graph.output) + list(graph.value_info):
        elem_types[info.name] = info.type.tensor_type.elem_type
    for init in graph.initializer:
        elem_types[init.name] = init.data_type
    problems: list[str] = []

    def zero_point_problem(node: onnx.NodeProto, what: str) -> str | None:
        if len(node.input) < 3 or not node.input[2]:
            if node.op_type == "QuantizeLinear" and _attr(node, "output_dtype", 0) in QDQ_TYPES:
                return None
            if node.op_type == "DequantizeLinear" and elem_types.get(node.input[0]) in QDQ_TYPES:
                return None
            return f"{what} has no zero point, so its quantized type is UINT8; TensorRT needs signed INT8 with zero point 0"
        zp_name = node.input[2]
        if zp_name not in facts.constants:
            return f"{what} zero point {zp_name} is not a constant"
        zp = facts.constants[zp_name]
        dtype = elem_types.get(zp_name)
        if dtype is not None and dtype not in QDQ_TYPES:
            return f"{what} quantizes to {onnx.TensorProto.DataType.Name(dtype)}; TensorRT's Q/DQ types are INT8, FP8 and INT4 (no unsigned or 32-bit ones: keep biases float)"
        if np.any(zp != 0):
            return f"{what} zero point is {zp.ravel()[:4].tolist()}; TensorRT needs 0 (symmetric quantization)"
        return None

    def scale_of(node: onnx.NodeProto) -> np.ndarray | None:
        return facts.constants.get(node.input[1]) if len(node.input) > 1 else None

    for node in graph.node:
        if node.op_type not in ("QuantizeLinear", "DequantizeLinear") or node.domain not in ("", "ai.onnx"):
            continue
        what = f"node {node.name or '(unnamed)'} ({node.op_type})"
        scale = scale_of(node)
        if scale is None:
            problems.append(f"{what}: scale {node.input[1]} is not a constant; TensorRT needs build-time scales")
        elif not np.all(np.isfinite(scale)) or np.any(scale <= 0):
            problems.append(f"{what}: scales must be positive and finite")
        zp = zero_point_problem(node, what)
        if zp:
            problems.append(zp)
        source = node.input[0]
        is_constant = source in facts.constants
        per_channel = scale is not None and scale.size > 1
        if node.op_type == "QuantizeLinear":
            if elem_types.get(source, onnx.TensorProto.FLOAT) not in FLOAT_TYPES | {0}:
                problems.append(f"{what}: quantizes a {onnx.TensorProto.DataType.Name(elem_types[source])} tensor; TensorRT quantizes FP32/FP16/BF16")
            if per_channel and not is_constant:
                problems.append(f"{what}: activation {source} is quantized per channel; TensorRT quantizes activations per tensor")
            readers = consumers.get(node.output[0], [])
            if node.output[0] in outputs or any(r.op_type != "DequantizeLinear" for r in readers):
                others = sorted({r.op_type for r in readers if r.op_type != "DequantizeLinear"} | ({"graph output"} if node.output[0] in outputs else set()))
                problems.append(f"{what}: its quantized output feeds {others}; TensorRT needs a DequantizeLinear after every QuantizeLinear")
            for reader in readers:
                if reader.op_type == "DequantizeLinear":
                    other = scale_of(reader)
                    if scale is not None and other is not None and (other.shape != scale.shape or not np.allclose(other, scale, rtol=1e-6, atol=0)):
                        problems.append(f"{what}: DequantizeLinear {reader.name} uses another scale; a Q/DQ pair must share its scale")
        else:
            producer = producers.get(source)
            if not is_constant and (producer is None or producer.op_type != "QuantizeLinear"):
                kind = "a graph input" if producer is None else producer.op_type
                problems.append(f"{what}: dequantizes {kind} ({source}); TensorRT needs a QuantizeLinear or a constant of a quantized type")
            if is_constant and elem_types.get(source) not in QDQ_TYPES:
                problems.append(f"{what}: constant {source} is not of a quantized type TensorRT takes (INT8, FP8, INT4)")
            if per_channel:
                if not is_constant:
                    problems.append(f"{what}: per-channel dequantization of an activation; TensorRT quantizes activations per tensor")
                axis = int(_attr(node, "axis", 1))
                data = facts.constants.get(source)
                if data is not None:
                    axis = axis % data.ndim
                    if data.shape[axis] != scale.size:
                        problems.append(f"{what}: {scale.size} scales for axis {axis} of size {data.shape[axis]}")
                for reader in consumers.get(node.output[0], []):
                    rule = WEIGHT_AXES.get(reader.op_type)
                    if rule and len(reader.input) > rule[0] and reader.input[rule[0]] == node.output[0] and axis != rule[1]:
                        problems.append(f"{what}: per-channel axis {axis} for {reader.op_type} weights; TensorRT needs the output-channel axis {rule[1]}")
    return problems


def qdq_summary(model: str | Path | onnx.ModelProto) -> dict[str, int]:
    """Counts of Q/DQ nodes, of weighted layers with quantized inputs, and of weighted layers left in float."""
    proto = _load(model)
    producers = {out: node for node in proto.graph.node for out in node.output if out}
    weighted = [n for n in proto.graph.node if n.op_type in ("Conv", "ConvTranspose", "Gemm", "MatMul")]
    quantized = [n for n in weighted if n.input and getattr(producers.get(n.input[0]), "op_type", "") == "DequantizeLinear"]
    ops = graph_operators(proto)
    return {"quantize": ops.get("QuantizeLinear", 0), "dequantize": ops.get("DequantizeLinear", 0),
            "weighted_int8": len(quantized), "weighted_float": len(weighted) - len(quantized)}
