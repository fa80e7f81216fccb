"""Derive the TensorRT ONNX parser's element-type rules from its public sources, as data.

Usage:
    .venv/bin/python tools/derive_trt_parser_rules.py --onnx-tensorrt GITDIR [--rev 10.1-GA]
        --tensorrt GITDIR [--tags v10.3.0 v10.13.0 v11.1] [--out src/mtl_perception/inference/resources/...]

GITDIR is a git directory (bare or not) of ``onnx/onnx-tensorrt`` and of ``NVIDIA/TensorRT``; files
are read with ``git show REV:PATH``, nothing is checked out or copied. The tool records facts, never
source text:

- per operator, the input element types its importer refuses: ``notInvalidType(inputs.at(N), {...})``
  in its ``DEFINE_BUILTIN_OP_IMPORTER`` block of ``onnxOpImporters.cpp``, in the helpers of
  ``importerUtils.cpp`` the block hands its inputs to, and the type switches of ``unaryHelper`` and
  ``elementwiseCheck`` for the unary / elementwise operation the block names;
- the network-I/O-only types (``ModelImporter.cpp``: a node output of that type must be a graph output);
- the constant conversions (``WeightsContext.cpp``: UINT8 weights become INT32);
- the conversions allowed to and from UINT8 (``include/NvInferRuntimeBase.h`` of each TensorRT tag).

Each rule carries its file, line, revision and commit. ``inference/trt_ops.py`` applies them after ONNX
shape inference; ``test/test_inference_trt_ops.py`` re-derives the table when the mirrors are at hand.
"""
from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
from pathlib import Path

FORMAT = "mtl_perception.tensorrt_parser_types/1"
DEFAULT_OUT = Path(__file__).resolve().parents[1] / "src" / "mtl_perception" / "inference" / "resources" / "tensorrt_parser_type_rules.json"
# TensorOrWeights::getType() / nvinfer1::DataType names -> ONNX TensorProto names
TRT_TO_ONNX = {"FLOAT": "FLOAT", "HALF": "FLOAT16", "BF16": "BFLOAT16", "INT32": "INT32", "INT64": "INT64", "INT8": "INT8",
               "UINT8": "UINT8", "BOOL": "BOOL", "FP8": "FLOAT8E4M3FN", "INT4": "INT4", "DOUBLE": "DOUBLE"}
K_TO_ONNX = {"kFLOAT": "FLOAT", "kHALF": "FLOAT16", "kBF16": "BFLOAT16", "kINT32": "INT32", "kINT64": "INT64", "kINT8": "INT8",
             "kUINT8": "UINT8", "kBOOL": "BOOL", "kFP8": "FLOAT8E4M3FN", "kINT4": "INT4"}
IS_TO_ONNX = {"isBool": "BOOL", "isInt32": "INT32", "isInt64": "INT64", "isFp16": "FLOAT16", "isFp32": "FLOAT", "isBFp16": "BFLOAT16"}
IMPORTER = re.compile(r"^DEFINE_BUILTIN_OP_IMPORTER\((\w+)\)", re.M)
FUNCTION = re.compile(r"^(?:NodeImportResult|NodeOutputs|Status|nvinfer1::ITensor\*|std::vector<TensorOrWeights>)\s+(\w+)\(", re.M)
FUNCTION_END = "\n}\n"  # the sources close every top-level function with a brace in column 0
NOT_INVALID = re.compile(r"notInvalidType\((inputs\.at\((\d+)\)|input)\s*,\s*\{([^}]*)\}")
CALL = re.compile(r"\b(\w+)\(ctx,\s*node,\s*nodeIdx,\s*(inputs(?:\.at\(0\))?)\s*,?\s*([^;]*?)\)")


def git_show(gitdir: Path, rev: str, path: str) -> str:
    return subprocess.run(["git", "--git-dir", str(gitdir), "show", f"{rev}:{path}"], check=True, capture_output=True, text=True).stdout


def git_commit(gitdir: Path, rev: str) -> str:
    return subprocess.run(["git", "--git-dir", str(gitdir), "rev-list", "-n", "1", rev], check=True, capture_output=True, text=True).stdout.strip()


def git_date(gitdir: Path, rev: str) -> str:
    return subprocess.run(["git", "--git-dir", str(gitdir), "log", "-1", "--format=%cs", rev], check=True, capture_output=True, text=True).stdout.strip()


def _gitdir(path: Path) -> Path:
    return path / ".git" if (path / ".git").is_dir() else path


def _line(text: str, offset: int) -> int:
    return text.count("\n", 0, offset) + 1


def _types(listing: str) -> list[str]:
    return sorted(TRT_TO_ONNX[t] for t in re.findall(r'"(\w+)"', listing))


def _blocks(text: str, pattern: re.Pattern[str]) -> dict[str, tuple[int, str]]:
    """name -> (start offset, body) of each top-level definition ``pattern`` starts (up to its closing brace)."""
    found = {}
    for m in pattern.finditer(text):
        end = text.find(FUNCTION_END, m.start())
        found[m.group(1)] = (m.start(), text[m.start():len(text) if end < 0 else end + 2])
    return found


def _switch_cases(body: str, head: str) -> list[tuple[list[str], str]]:
    """(case labels, case body) of the first ``switch`` after ``head`` in ``body``."""
    start = body.index(head)
    cases: list[tuple[list[str], str]] = []
    labels: list[str] = []
    chunks = re.split(r"(case [\w:]+:|default:)", body[start:])
    for chunk in chunks[1:]:
        if chunk.startswith(("case", "default")):
            labels.append(chunk.rstrip(":").split("::")[-1].replace("case ", "").strip())
            continue
        if "break" in chunk or "validUnaryType" in chunk or "ASSERT" in chunk or "CHECK" in chunk:
            cases.append((labels, chunk))
            labels = []
        if labels == [] and "}" in chunk and chunk.strip().startswith("}"):
            break
    return cases


def unary_rules(utils: str) -> dict[str, dict[str, list[str]]]:
    """UnaryOperation -> {"only": [...]} or {"rejects": [...]} from unaryHelper's type switch."""
    body = _blocks(utils, FUNCTION)["unaryHelper"][1]
    rules: dict[str, dict[str, list[str]]] = {}
    for labels, chunk in _switch_cases(body, "switch (op)"):
        assign = re.search(r"validUnaryType\s*=\s*([^;]*);", chunk)
        if not assign:
            continue
        expression = assign.group(1)
        only = re.findall(r"inputType == nvinfer1::DataType::(k\w+)", expression)
        rejects = re.findall(r"inputType != nvinfer1::DataType::(k\w+)", expression)
        rule = {"only": sorted(K_TO_ONNX[k] for k in only)} if only else {"rejects": sorted(K_TO_ONNX[k] for k in rejects)}
        for label in labels:
            rules[label] = rule
    return rules


def elementwise_rules(utils: str) -> dict[str, dict[str, list[str]]]:
    """ElementWiseOperation -> rule from elementwiseCheck's switch (applies to every input)."""
    body = _blocks(utils, FUNCTION)["elementwiseCheck"][1]
    rules: dict[str, dict[str, list[str]]] = {}
    for labels, chunk in _switch_cases(body, "switch (op)"):
        checks = sorted(IS_TO_ONNX[c] for c in re.findall(r"input\.(is\w+)\(\)", chunk))
        if "all_of" in chunk:
            rule = {"only": checks}
        elif "any_of" in chunk:
            rule = {"rejects": checks}
        else:
            rule = {"rejects": []}
        for label in labels:
            rules[label] = rule
    return rules


def operator_rules(ops_text: str, utils: str, rev: str, commit: str) -> dict[str, list[dict]]:
    """op -> input type rules, each naming where it was read."""
    helpers: dict[str, list[tuple[str, list[str], str]]] = {}
    for file, text in (("importerUtils.cpp", utils), ("onnxOpImporters.cpp", ops_text)):
        for name, (start, body) in _blocks(text, FUNCTION).items():
            for m in NOT_INVALID.finditer(body):
                helpers.setdefault(name, []).append((m.group(2) or "0", _types(m.group(3)), f"{file}:{_line(text, start + m.start())}"))
    unary = unary_rules(utils)
    elementwise = elementwise_rules(utils)
    where = {"revision": rev, "commit": commit}
    rules: dict[str, list[dict]] = {}
    for op, (start, body) in _blocks(ops_text, IMPORTER).items():
        found: list[dict] = []
        for m in NOT_INVALID.finditer(body):
            if m.group(2) is None:
                continue
            found.append({"input": m.group(2), "rejects": _types(m.group(3)),
                          "source": {"file": "onnxOpImporters.cpp", "line": _line(ops_text, start + m.start()), **where}})
        for call in CALL.finditer(body):
            helper, rest = call.group(1), call.group(3)
            line = _line(ops_text, start + call.start())
            for index, types, helper_at in helpers.get(helper, []):
                file, helper_line = helper_at.split(":")
                found.append({"input": index, "rejects": types, "via": helper,
                              "source": {"file": file, "line": int(helper_line), "called_at": f"onnxOpImporters.cpp:{line}", **where}})
            operation = re.search(r"(UnaryOperation|ElementWiseOperation)::(k\w+)", rest)
            if helper == "unaryHelper" and operation and call.group(2) == "inputs.at(0)":
                rule = unary.get(operation.group(2), unary["default"])
                found.append({"input": "0", **rule, "via": f"unaryHelper {operation.group(2)}",
                              "source": {"file": "importerUtils.cpp", "function": "unaryHelper", "called_at": f"onnxOpImporters.cpp:{line}", **where}})
            if helper == "elementwiseHelper" and operation and call.group(2) == "inputs" and operation.group(2) in elementwise:
                rule = elementwise[operation.group(2)]
                if rule.get("only") or rule.get("rejects"):
                    found.append({"input": "*", **rule, "via": f"elementwiseCheck {operation.group(2)}",
                                  "source": {"file": "importerUtils.cpp", "function": "elementwiseCheck", "called_at": f"onnxOpImporters.cpp:{line}", **where}})
        if found:
            rules[op] = found
    return dict(sorted(rules.items()))


def io_only_types(importer: str, rev: str, commit: str) -> list[dict]:
    """Types a node output may have only when it is a graph output (ModelImporter.cpp's parseNode)."""
    found = []
    for m in re.finditer(r'output\.getType\(\) == "(\w+)"\)\s*\{\s*bool legal\w+ = ([^;]*);', importer):
        exempt = sorted(set(re.findall(r'node\.op_type\(\) == "(\w+)"', m.group(2))))
        found.append({"type": TRT_TO_ONNX[m.group(1)], "exempt_ops": exempt,
                      "source": {"file": "ModelImporter.cpp", "line": _line(importer, m.start()), "revision": rev, "commit": commit}})
    return found


def constant_conversions(weights: str, rev: str, commit: str) -> list[dict]:
    """Constant (weights) types the parser converts on import: UINT8 -> INT32."""
    found = []
    for m in re.finditer(r"onnxDtype == ::ONNX_NAMESPACE::TensorProto::(\w+)\)\s*\{[^}]*?convert(\w+)\(", weights):
        target = "INT32" if m.group(2) == "UINT8" else None
        if target:
            found.append({"from": m.group(1), "to": target,
                          "source": {"file": "WeightsContext.cpp", "line": _line(weights, m.start()), "revision": rev, "commit": commit}})
    return found[:1]


def uint8_conversions(gitdir: Path, tags: list[str]) -> dict:
    """The types UINT8 converts from and to, as each tag's NvInferRuntimeBase.h states; must agree across tags."""
    sources, allowed = [], None
    for tag in tags:
        text = git_show(gitdir, tag, "include/NvInferRuntimeBase.h")
        m = re.search(r"kUINT8 conversions are only supported for \{([^}]*)\}", text)
        if not m:
            raise SystemExit(f"{tag}: include/NvInferRuntimeBase.h states no kUINT8 conversion rule")
        types = sorted(K_TO_ONNX[k.strip()] for k in m.group(1).split(","))
        if allowed is not None and types != allowed:
            raise SystemExit(f"{tag}: kUINT8 conversions {types} differ from {allowed}; record them per version")
        allowed = types
        sources.append({"file": "include/NvInferRuntimeBase.h", "line": _line(text, m.start()), "tag": tag, "commit": git_commit(gitdir, tag)})
    return {"type": "UINT8", "with": allowed, "sources": sources}


def derive(onnx_trt: Path, rev: str, tensorrt: Path, tags: list[str]) -> dict:
    onnx_trt, tensorrt = _gitdir(onnx_trt), _gitdir(tensorrt)
    commit = git_commit(onnx_trt, rev)
    ops_text = git_show(onnx_trt, rev, "onnxOpImporters.cpp")
    utils = git_show(onnx_trt, rev, "importerUtils.cpp")
    return {
        "format": FORMAT,
        "derived_by": "tools/derive_trt_parser_rules.py",
        "parser_source": {"repository": "onnx/onnx-tensorrt", "revision": rev, "commit": commit, "date": git_date(onnx_trt, rev)},
        "header_source": {"repository": "NVIDIA/TensorRT", "tags": tags},
        "io_only_types": io_only_types(git_show(onnx_trt, rev, "ModelImporter.cpp"), rev, commit),
        "constant_conversions": constant_conversions(git_show(onnx_trt, rev, "WeightsContext.cpp"), rev, commit),
        "cast_conversions": [uint8_conversions(tensorrt, tags)],
        "operators": operator_rules(ops_text, utils, rev, commit),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--onnx-tensorrt", type=Path, required=True, help="git directory of onnx/onnx-tensorrt")
    parser.add_argument("--rev", default="10.1-GA", help="onnx-tensorrt branch or tag to read (the newest 10.x one at hand)")
    parser.add_argument("--tensorrt", type=Path, required=True, help="git directory of NVIDIA/TensorRT (headers)")
    parser.add_argument("--tags", nargs="+", default=["v10.3.0", "v10.13.0", "v11.1"], help="TensorRT tags whose headers to read")
    parser.add_argument("--notes", type=Path, help="JSON file of notes to keep in the table (what later sources change)")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="table to write")
    args = parser.parse_args(argv)
    table = derive(args.onnx_tensorrt, args.rev, args.tensorrt, args.tags)
    if args.notes:
        table["later_sources"] = json.loads(args.notes.read_text())
    elif args.out.is_file():
        table["later_sources"] = json.loads(args.out.read_text()).get("later_sources", [])
    args.out.write_text(json.dumps(table, indent=1) + "\n")
    print(f"{args.out}: {len(table['operators'])} operators with input type rules, from onnx-tensorrt {args.rev} ({table['parser_source']['commit'][:12]})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
