"""Reading and writing the self-describing ONNX model file, with clear errors for bad files.

The ``ModelMetadata`` JSON lives in the ONNX ``metadata_props`` under ``METADATA_KEY``; a few plain keys
(``mtl_perception.tasks`` ...) repeat the headline facts for people browsing the file in a viewer.
``validate_io`` checks a graph's input/output names and shapes against the metadata, for every backend.
"""
from __future__ import annotations

from pathlib import Path
from typing import Mapping, Sequence

import onnx
from google.protobuf.message import DecodeError

from mtl_perception.inference.metadata import INPUT_NAME, METADATA_KEY, MetadataError, ModelMetadata

PLAIN_KEY_PREFIX = f"{METADATA_KEY}."
REEXPORT_HINT = "re-export it with `mtl-perception export --checkpoint CKPT --out MODEL.onnx`"


class ModelFileError(ValueError):
    """A model file is missing, truncated, corrupt, or contradicts its own metadata."""


def embed_metadata(model: onnx.ModelProto, meta: ModelMetadata) -> None:
    """Store the metadata JSON (and readable plain keys) in the model's metadata_props, replacing old ones."""
    plain = {
        "tasks": ",".join(meta.tasks),
        "input_size": f"{meta.input_height}x{meta.input_width}",
        "class_names": ",".join(meta.class_names),
        "depth_units": meta.depth_units,
        "checkpoint_sha256": meta.checkpoint_sha256,
    }
    entries = {METADATA_KEY: meta.validate().to_json(), **{PLAIN_KEY_PREFIX + k: v for k, v in plain.items()}}
    kept = [p for p in model.metadata_props if p.key not in entries]
    del model.metadata_props[:]
    model.metadata_props.extend(kept)
    for key, value in entries.items():
        model.metadata_props.add(key=key, value=value)


def metadata_from_props(props: Mapping[str, str], source: str) -> ModelMetadata:
    """ModelMetadata from a metadata_props mapping; ModelFileError naming ``source`` when absent or bad."""
    if METADATA_KEY not in props:
        raise ModelFileError(f"{source} has no '{METADATA_KEY}' metadata (not exported by mtl_perception, or stripped); {REEXPORT_HINT}")
    try:
        return ModelMetadata.from_json(props[METADATA_KEY])
    except MetadataError as exc:
        raise ModelFileError(f"{source}: {exc}") from None


def load_onnx_file(path: str | Path) -> onnx.ModelProto:
    """Parse an ONNX file; ModelFileError for a missing, empty, truncated or corrupt file."""
    path = Path(path)
    if not path.is_file():
        raise ModelFileError(f"model file not found: {path}; {REEXPORT_HINT}, or point the setting at an existing file")
    if path.stat().st_size == 0:
        raise ModelFileError(f"model file {path} is empty; {REEXPORT_HINT}")
    try:
        model = onnx.load(str(path), load_external_data=False)
    except (DecodeError, RuntimeError, ValueError, OSError) as exc:  # protobuf/onnx raise several types
        raise ModelFileError(f"model file {path} is truncated or corrupt ({type(exc).__name__}); {REEXPORT_HINT}") from None
    if not model.graph.node:
        raise ModelFileError(f"model file {path} holds no graph (truncated or not an ONNX model); {REEXPORT_HINT}")
    return model


def describe_onnx(model: onnx.ModelProto, source: str) -> ModelMetadata:
    """The ModelMetadata of a parsed ONNX model, checked against the graph's inputs and outputs."""
    meta = metadata_from_props({p.key: p.value for p in model.metadata_props}, source)
    validate_io(graph_io_shapes(model.graph.input), graph_io_shapes(model.graph.output), meta, source)
    return meta


def read_onnx_metadata(path: str | Path) -> ModelMetadata:
    """The ModelMetadata stored in an ONNX file, checked against the graph's inputs and outputs."""
    return describe_onnx(load_onnx_file(path), str(path))


def graph_io_shapes(values: Sequence[onnx.ValueInfoProto]) -> dict[str, list[int | str | None]]:
    """name -> shape of graph inputs or outputs (int for fixed dims, str for symbolic, None unknown)."""
    shapes: dict[str, list[int | str | None]] = {}
    for info in values:
        dims: list[int | str | None] = []
        for dim in info.type.tensor_type.shape.dim:
            if dim.HasField("dim_value"):
                dims.append(dim.dim_value)
            elif dim.HasField("dim_param"):
                dims.append(dim.dim_param)
            else:
                dims.append(None)
        shapes[info.name] = dims
    return shapes


def validate_io(inputs: Mapping[str, Sequence[int | str | None]], outputs: Mapping[str, Sequence[int | str | None]], meta: ModelMetadata, source: str) -> None:
    """Raise ModelFileError when the graph's input/outputs contradict the metadata.

    Checks: the single input is named ``INPUT_NAME`` with shape (N, 3, input_height, input_width)
    (N fixed or symbolic; negative numbers count as dynamic, as TensorRT reports them), and every task's
    output exists with the metadata's spatial size, a batch dimension and the channels the metadata implies
    (``expected_channels``).
    """
    if INPUT_NAME not in inputs:
        raise ModelFileError(f"{source}: graph input '{INPUT_NAME}' missing (inputs: {sorted(inputs)}); {REEXPORT_HINT}")
    shape = list(inputs[INPUT_NAME])
    expected = [3, meta.input_height, meta.input_width]
    if len(shape) != 4 or [_fixed(d) for d in shape[1:]] != expected:
        raise ModelFileError(
            f"{source}: graph input '{INPUT_NAME}' has shape {shape} but the metadata says (N, 3, {meta.input_height}, {meta.input_width}); "
            f"the file is inconsistent: {REEXPORT_HINT}"
        )
    for task in meta.tasks:
        name = meta.output_names.get(task)
        if name not in outputs:
            raise ModelFileError(f"{source}: metadata lists task '{task}' with output '{name}', but the graph outputs are {sorted(outputs)}; {REEXPORT_HINT}")
        out_shape = list(outputs[name])
        spatial = [_fixed(d) for d in out_shape[2:]]
        if len(out_shape) != 4 or spatial != [meta.input_height, meta.input_width]:
            raise ModelFileError(f"{source}: output '{name}' has shape {out_shape}, expected (N, C, {meta.input_height}, {meta.input_width}); {REEXPORT_HINT}")
        channels = expected_channels(task, meta)
        if channels is not None and _fixed(out_shape[1]) not in (None, channels):
            raise ModelFileError(f"{source}: output '{name}' of task '{task}' has {out_shape[1]} channel(s) but the metadata implies {channels} "
                                 f"({CHANNEL_RULE[task]}); the file is inconsistent: {REEXPORT_HINT}")


CHANNEL_RULE = {"depth": "one depth value per pixel", "normals": "x, y, z per pixel", "semantic": "one logit per class name"}


def expected_channels(task: str, meta: ModelMetadata) -> int | None:
    """Channels of a task's output the metadata implies: depth 1, normals 3, semantic logits one per class."""
    if task == "depth":
        return 1
    if task == "normals":
        return 3
    if task == "semantic" and meta.output_names.get(task, "").endswith("logits"):
        return len(meta.class_names)
    return None


def _fixed(dim: int | str | None) -> int | None:
    return dim if isinstance(dim, int) and dim >= 0 else None


def static_batch_size(inputs: Mapping[str, Sequence[int | str | None]]) -> int | None:
    """The fixed batch size of the graph input, or None when it is dynamic."""
    return _fixed(list(inputs[INPUT_NAME])[0])
