"""The bad-input corpus: malformed inputs for the node, the CLI tools and the file loaders, each with the
one-line error fragment it must produce.

Three tables, one per entry point:

- ``node_cases()``: messages sent to a running ``perception_node`` (images, compressed images, camera
  info, a wrongly typed publisher); the node must count the bad one and serve the next good frame.
- ``node_setup_cases()``: model files and parameter values the node is asked to use; the transition or
  parameter change must fail with the reason, and the node must stay alive.
- ``cli_cases(workspace)``: ``mtl-perception`` command lines on damaged files (configs, checkpoints,
  model files, bags, datasets); the command must exit non-zero with one line on stderr naming the
  problem, no traceback, and leave the pre-existing outputs it was pointed at byte-identical.

The CLI cases run through ``python test/bad_input_corpus.py --run-cli CASES.json``: one interpreter
imports the tool once, then forks a child per case that runs ``mtl_perception.cli.main`` exactly as the
console script does (uncaught exceptions print a traceback and exit 1), so each case gets a real exit
code and its own stderr without paying the interpreter start-up twenty times.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import shutil
import struct
import sys
import tempfile
import time
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

CAMERA_HEIGHT, CAMERA_WIDTH = 96, 128  # camera frames the node cases send
MAX_PIXELS = 1_000_000  # the node's input.max_pixels in the corpus test


# ---------------------------------------------------------------------------------------------- node messages
@dataclass
class NodeCase:
    """A bad message for a running node: ``kind`` image | compressed | camera_info | wrong_type."""

    name: str
    kind: str
    expect: str  # fragment of the reported problem ('' for wrong_type: never delivered, nothing to report)
    build: Callable[[Any], Any]  # header -> message
    counter: str = "bad_input"  # diagnostics value that must grow by one


def _rgb(seed: int = 0, height: int = CAMERA_HEIGHT, width: int = CAMERA_WIDTH) -> np.ndarray:
    rng = np.random.default_rng(seed)
    base = np.linspace(0, 255, width, dtype=np.float32)[None, :, None] * np.ones((height, 1, 3), np.float32)
    return np.clip(base + rng.normal(0, 20, (height, width, 3)), 0, 255).astype(np.uint8)


def stamped(sec: int, frame_id: str = "camera_optical") -> Any:
    """A std_msgs/Header with stamp ``sec`` seconds (frames are told apart by it)."""
    from std_msgs.msg import Header

    header = Header(frame_id=frame_id)
    header.stamp.sec = sec
    return header


def good_image(header: Any, seed: int = 0) -> Any:
    from mtl_perception.inference.image_codec import array_to_image_msg

    return array_to_image_msg(_rgb(seed), "rgb8", header)


def good_jpeg(header: Any, seed: int = 0) -> Any:
    from sensor_msgs.msg import CompressedImage

    return CompressedImage(header=header, format="jpeg", data=_encoded(".jpg", seed))


def _encoded(ext: str, seed: int = 0) -> bytes:
    import cv2

    ok, data = cv2.imencode(ext, _rgb(seed)[..., ::-1])
    assert ok
    return data.tobytes()


def _image(header: Any, encoding: str = "rgb8", height: int = CAMERA_HEIGHT, width: int = CAMERA_WIDTH,
           step: int | None = None, data: bytes | None = None, bigendian: int = 0) -> Any:
    """An Image message with every field set by hand (so that it can lie)."""
    from sensor_msgs.msg import Image

    msg = Image(header=header, height=height, width=width, encoding=encoding, is_bigendian=bigendian)
    msg.step = width * 3 if step is None else step
    msg.data = bytes(height * width * 3) if data is None else data
    return msg


def _compressed(header: Any, data: bytes, fmt: str = "jpeg") -> Any:
    from sensor_msgs.msg import CompressedImage

    return CompressedImage(header=header, format=fmt, data=data)


def _jpeg_claiming(width: int, height: int) -> bytes:
    """A JPEG stream whose frame header (SOF0) claims ``width`` x ``height``; the rest is a real small JPEG's."""
    data = bytearray(_encoded(".jpg"))
    pos = 2
    while data[pos + 1] != 0xC0:
        pos += 2 + int.from_bytes(data[pos + 2 : pos + 4], "big")
    data[pos + 5 : pos + 9] = struct.pack(">HH", height, width)
    return bytes(data)


def _png_claiming(width: int, height: int) -> bytes:
    """A PNG whose IHDR (with a valid CRC) claims ``width`` x ``height``."""
    data = bytearray(_encoded(".png"))
    ihdr = bytearray(data[12:29])  # type + 13 data bytes
    ihdr[4:12] = struct.pack(">II", width, height)
    data[12:29] = ihdr
    data[29:33] = struct.pack(">I", zlib.crc32(bytes(ihdr)) & 0xFFFFFFFF)
    return bytes(data)


def _png_bad_crc() -> bytes:
    data = bytearray(_encoded(".png"))
    data[60] ^= 0xFF  # inside the first IDAT chunk: its CRC no longer matches
    return bytes(data)


def _camera_info(header: Any, k: list[float] | None = None, p: list[float] | None = None, width: int = CAMERA_WIDTH,
                 height: int = CAMERA_HEIGHT) -> Any:
    from sensor_msgs.msg import CameraInfo

    info = CameraInfo(header=header, width=width, height=height, distortion_model="plumb_bob")
    k = k or [110.0, 0.0, 63.5, 0.0, 110.0, 47.5, 0.0, 0.0, 1.0]
    info.k = k
    info.p = p or [k[0], k[1], k[2], 0.0, k[3], k[4], k[5], 0.0, 0.0, 0.0, 1.0, 0.0]
    return info


def good_camera_info(header: Any) -> Any:
    return _camera_info(header)


def node_cases() -> list[NodeCase]:
    """Bad messages for the node; every one must be reported and the next good frame served."""
    row = CAMERA_WIDTH * 3
    full = CAMERA_HEIGHT * row
    nan, inf = float("nan"), float("inf")
    k_good = [110.0, 0.0, 63.5, 0.0, 110.0, 47.5, 0.0, 0.0, 1.0]
    return [
        # yuv422 and bayer_* are converted now (inference/encodings.py): their bad variants are
        NodeCase("yuv422 of odd width", "image", "needs an even width", lambda h: _image(h, "yuv422", width=CAMERA_WIDTH - 1, step=(CAMERA_WIDTH - 1) * 2, data=bytes(CAMERA_HEIGHT * (CAMERA_WIDTH - 1) * 2))),
        NodeCase("bayer_rggb8 header over rgb8 data", "image", "do not describe the data", lambda h: _image(h, "bayer_rggb8", step=CAMERA_WIDTH)),
        NodeCase("encoding nv21 (not converted)", "image", "unsupported image encoding 'nv21'", lambda h: _image(h, "nv21", step=CAMERA_WIDTH, data=bytes(CAMERA_HEIGHT * CAMERA_WIDTH))),
        NodeCase("encoding: a 1 MB string (echoed cut short)", "image", "unsupported image encoding '" + "x" * 39 + "…'", lambda h: _image(h, "x" * 1_000_000)),
        NodeCase("encoding empty", "image", "unsupported image encoding ''", lambda h: _image(h, "")),
        NodeCase("encoding jpeg on the raw topic", "image", "unsupported image encoding 'jpeg'", lambda h: _image(h, "jpeg", step=0, data=_encoded(".jpg"))),
        NodeCase("depth 32FC1 on the camera topic", "image", "unsupported image encoding '32FC1'", lambda h: _image(h, "32FC1", step=CAMERA_WIDTH * 4, data=bytes(CAMERA_HEIGHT * CAMERA_WIDTH * 4))),
        NodeCase("normals 32FC3 on the camera topic", "image", "unsupported image encoding '32FC3'", lambda h: _image(h, "32FC3", step=CAMERA_WIDTH * 12, data=bytes(CAMERA_HEIGHT * CAMERA_WIDTH * 12))),
        NodeCase("rgb8 header over mono8 data", "image", "truncated", lambda h: _image(h, "rgb8", data=bytes(CAMERA_HEIGHT * CAMERA_WIDTH))),
        NodeCase("mono8 header over rgb8 data", "image", "do not describe the data", lambda h: _image(h, "mono8", step=CAMERA_WIDTH)),
        NodeCase("mono16 header with a mono8 step", "image", "shorter than one row", lambda h: _image(h, "mono16", step=CAMERA_WIDTH, data=bytes(CAMERA_HEIGHT * CAMERA_WIDTH))),
        NodeCase("step shorter than a row", "image", "shorter than one row", lambda h: _image(h, step=row - 1, data=bytes((row - 1) * CAMERA_HEIGHT))),
        NodeCase("step of 2 GiB over small data", "image", "truncated", lambda h: _image(h, step=2**31 - 1)),
        NodeCase("data one byte short", "image", "truncated", lambda h: _image(h, data=bytes(full - 1))),
        NodeCase("data empty", "image", "truncated", lambda h: _image(h, data=b"")),
        NodeCase("data one row too long", "image", "do not describe the data", lambda h: _image(h, data=bytes(full + row))),
        NodeCase("zero width", "image", "zero-size", lambda h: _image(h, width=0, step=0, data=b"")),
        NodeCase("zero height and width", "image", "zero-size", lambda h: _image(h, height=0, width=0, step=0, data=b"")),
        NodeCase("100000x100000 header, no data", "image", "exceeds the limit", lambda h: _image(h, height=100_000, width=100_000, step=300_000, data=b"")),
        NodeCase("uint32-max dimensions", "image", "exceeds the limit", lambda h: _image(h, height=2**32 - 1, width=2**32 - 1, step=2**32 - 1, data=b"")),
        NodeCase("just above the pixel limit", "image", "exceeds the limit", lambda h: _image(h, height=1001, width=1000, data=b"")),
        NodeCase("jpeg: random bytes after SOI", "compressed", "neither a readable PNG nor JPEG", lambda h: _compressed(h, b"\xff\xd8" + bytes(range(256)) * 8)),
        NodeCase("jpeg: first half only", "compressed", "truncated", lambda h: _compressed(h, _encoded(".jpg")[: len(_encoded(".jpg")) // 2])),
        NodeCase("jpeg: second half zeroed", "compressed", "truncated", lambda h: _compressed(h, (lambda d: d[: len(d) // 2] + bytes(len(d) - len(d) // 2))(_encoded(".jpg")))),
        NodeCase("jpeg: SOF claims 60000x60000", "compressed", "exceeds the limit", lambda h: _compressed(h, _jpeg_claiming(60000, 60000))),
        NodeCase("png: IHDR claims 2^31 x 2^31", "compressed", "exceeds the limit", lambda h: _compressed(h, _png_claiming(2**31 - 1, 2**31 - 1), "png")),
        NodeCase("png: bad chunk CRC", "compressed", "failed to decode", lambda h: _compressed(h, _png_bad_crc(), "png")),
        NodeCase("png: truncated", "compressed", "failed to decode", lambda h: _compressed(h, _encoded(".png")[:200], "png")),
        NodeCase("compressed: empty data", "compressed", "no data", lambda h: _compressed(h, b"")),
        NodeCase("compressed: TIFF bytes", "compressed", "neither a readable PNG nor JPEG", lambda h: _compressed(h, b"II*\x00" + bytes(400), "tiff")),
        NodeCase("compressedDepth transport", "compressed", "compressedDepth", lambda h: _compressed(h, _encoded(".png"), "16UC1; compressedDepth png")),
        NodeCase("camera_info: NaN focal length", "camera_info", "NaN or infinity", lambda h: _camera_info(h, k=[nan] + k_good[1:]), "bad_camera_info"),
        NodeCase("camera_info: infinite principal point", "camera_info", "NaN or infinity", lambda h: _camera_info(h, k=k_good[:2] + [inf] + k_good[3:]), "bad_camera_info"),
        NodeCase("camera_info: NaN in P", "camera_info", "P contains NaN", lambda h: _camera_info(h, p=[110.0, 0, 63.5, nan, 0, 110.0, 47.5, 0, 0, 0, 1, 0]), "bad_camera_info"),
        NodeCase("camera_info: negative focal length", "camera_info", "focal length", lambda h: _camera_info(h, k=[-110.0] + k_good[1:]), "bad_camera_info"),
        NodeCase("camera_info: zero size", "camera_info", "size 0x0", lambda h: _camera_info(h, width=0, height=0), "bad_camera_info"),
        NodeCase("camera_info: fx = fy = 1e-30", "camera_info", "outside the sane range", lambda h: _camera_info(h, k=[1e-30, 0.0, 63.5, 0.0, 1e-30, 47.5, 0.0, 0.0, 1.0]), "bad_camera_info"),
        NodeCase("camera_info: fx = fy = 1e30", "camera_info", "outside the sane range", lambda h: _camera_info(h, k=[1e30, 0.0, 63.5, 0.0, 1e30, 47.5, 0.0, 0.0, 1.0]), "bad_camera_info"),
        NodeCase("camera_info: P fx = 1e30", "camera_info", "focal length P fx", lambda h: _camera_info(h, p=[1e30, 0, 63.5, 0, 0, 110.0, 47.5, 0, 0, 0, 1, 0]), "bad_camera_info"),
        NodeCase("std_msgs/String published on the image topic", "wrong_type", "", lambda h: None, ""),
    ]


ALIAS_BOMB = "a: &a [x, x, x, x, x, x, x, x, x]\n" + "".join(f"{chr(98 + i)}: &{chr(98 + i)} [*{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}]\n" for i in range(8))

# model files whose metadata is valid JSON of the wrong shape, or contradicts the graph: key -> (case name, error fragment)
BAD_METADATA: dict[str, tuple[str, str]] = {
    "number": ("metadata is the number 5", "model metadata must be a JSON object of fields, got int 5"),
    "height_text": ("metadata input_height is a string", "model metadata field input_height must be an integer, got '64'"),
    "mean_two": ("metadata mean of 2 values", "model metadata field mean must have at least 3 item(s)"),
    "no_tasks": ("metadata tasks is []", "model metadata field tasks must have at least 1 item(s)"),
    "focal_nan": ("metadata focal_length_px is NaN", "model metadata field focal_length_px must be a finite number"),
    "deep_list": ("metadata holds a list nested 100000 deep", "model metadata is JSON nested 100001 levels deep, more than 32"),
    "huge": ("metadata of 2 MB", "more than 256 KiB"),
    "depth_range": ("metadata depth_min above depth_max", "depth_min (20.0) must be below depth_max (10.0)"),
    "normals_1ch": ("graph's normals output has 1 channel", "output 'normals' of task 'normals' has 1 channel(s) but the metadata implies 3"),
    "classes_vs_logits": ("metadata names 3 classes for 7 logits", "has 3 class names but 7 palette colours"),
}


@dataclass
class NodeSetupCase:
    """A model file or parameter value the node is asked to use: ``kind`` model | parameter | value.

    ``value``: a value the node reads when it configures (``ros/parameters.py`` ``check_value``, the check the
    configure transition and a parameter change both run), checked directly.
    """

    name: str
    kind: str
    expect: str
    value: Callable[["Workspace"], Any]  # workspace -> model path (model) or (name, value) (parameter)


def node_setup_cases() -> list[NodeSetupCase]:
    return [
        NodeSetupCase("model: truncated ONNX", "model", "truncated or corrupt", lambda ws: ws.truncated_onnx()),
        NodeSetupCase("model: ONNX without metadata", "model", "has no 'mtl_perception' metadata", lambda ws: ws.foreign_onnx()),
        NodeSetupCase("model: metadata input size contradicts the graph", "model", "the file is inconsistent", lambda ws: ws.inconsistent_onnx()),
        NodeSetupCase("model: a directory", "model", "model file is not a regular file", lambda ws: ws.root),
        NodeSetupCase("model: a checkpoint given to onnxruntime", "model", "reads .onnx files", lambda ws: ws.checkpoint),
        # issue 12: model metadata of the wrong shape or contradicting the graph (model cases run first, on an unconfigured node)
        *(NodeSetupCase(f"model: {name}", "model", expect, (lambda key: lambda ws: ws.bad_metadata_onnx(key))(key)) for key, (name, expect) in BAD_METADATA.items()),
        NodeSetupCase("parameter: points.stride 0", "parameter", "out of range", lambda ws: ("points.stride", 0)),
        NodeSetupCase("parameter: palette file with invalid YAML", "parameter", "not valid YAML", lambda ws: ("palette.override", str(ws.text_file("palette.yaml", "[[1, 2, 3], [4, 5")))),
        NodeSetupCase("parameter: palette colour out of range", "parameter", "triples in 0..255", lambda ws: ("palette.override", "[[300, 0, 0]]")),
        NodeSetupCase("parameter: depth.min above the model's range", "parameter", "is empty", lambda ws: ("depth.min", 50.0)),
        NodeSetupCase("parameter: overlay alpha above 1", "parameter", "out of range", lambda ws: ("output.overlay_alpha", 1.5)),
        # issue 12: bounded palettes (no RecursionError), model metadata of the wrong shape, topic names
        NodeSetupCase("parameter: palette inline [ x 3000", "parameter", "nested deeper than 32 levels", lambda ws: ("palette.override", "[" * 3000)),
        NodeSetupCase("parameter: palette file of [ x 3000", "parameter", "nested deeper than 32 levels", lambda ws: ("palette.override", str(ws.text_file("deep_palette.yaml", "[" * 3000)))),
        NodeSetupCase("parameter: palette file with a YAML alias bomb", "parameter", "aliases (*name) are not accepted", lambda ws: ("palette.override", str(ws.text_file("bomb_palette.yaml", ALIAS_BOMB)))),
        NodeSetupCase("parameter: palette file of 2 MB", "parameter", "more than a palette needs", lambda ws: ("palette.override", str(ws.text_file("huge_palette.yaml", "# x\n" * 600_000)))),
        NodeSetupCase("parameter: palette of 2000 colours", "parameter", "must have at most 1024 item(s)", lambda ws: ("palette.override", str([[1, 2, 3]] * 2000))),
        NodeSetupCase("parameter: palette with a colour of 2 values", "parameter", "entry [1] must have at least 3 item(s)", lambda ws: ("palette.override", "[[1, 2, 3], [4, 5]]")),
        NodeSetupCase("value: input.image_topic 'image raw!'", "value", "parameter 'input.image_topic' = 'image raw!' is not a valid ROS topic name", lambda ws: ("input.image_topic", "image raw!")),
        NodeSetupCase("value: input.camera_info_topic '1info'", "value", "parameter 'input.camera_info_topic' = '1info' is not a valid ROS topic name", lambda ws: ("input.camera_info_topic", "1info")),
        NodeSetupCase("value: input.image_topic 'a//b'", "value", "is not a valid ROS topic name", lambda ws: ("input.image_topic", "a//b")),
    ]


# ---------------------------------------------------------------------------------------------- files and CLI
class Payload:
    """Pickled into a 'checkpoint' as an attack: loading it with pickle would create ``marker``."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, tuple[str]]:
        return os.mkdir, (self.marker,)


@dataclass
class Workspace:
    """A folder of good files (model, checkpoint, bag) and the damaged files the CLI cases derive from them."""

    root: Path
    onnx: Path
    checkpoint: Path
    bag: Path
    made: dict[str, Path] = field(default_factory=dict)

    def path(self, name: str) -> Path:
        return self.root / name

    def text_file(self, name: str, text: str) -> Path:
        path = self.path(name)
        path.write_text(text)
        return path

    def copy_of(self, source: Path, name: str) -> Path:
        target = self.path(name)
        if source.is_dir():
            shutil.copytree(source, target)
        else:
            shutil.copyfile(source, target)
        return target

    def truncated(self, source: Path, name: str, fraction: float = 0.5) -> Path:
        target = self.path(name)
        data = source.read_bytes()
        target.write_bytes(data[: int(len(data) * fraction)])
        return target

    def truncated_onnx(self) -> Path:
        return self.truncated(self.onnx, "truncated.onnx")

    def foreign_onnx(self) -> Path:
        """A valid ONNX graph of another network (not exported by this package: no metadata)."""
        import onnx
        from onnx import TensorProto, helper

        graph = helper.make_graph([helper.make_node("Relu", ["image"], ["depth"])], "other",
                                  [helper.make_tensor_value_info("image", TensorProto.FLOAT, [1, 3, 64, 96])],
                                  [helper.make_tensor_value_info("depth", TensorProto.FLOAT, [1, 3, 64, 96])])
        path = self.path("foreign.onnx")
        onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8), str(path))
        return path

    def _onnx_with_metadata(self, name: str, edit: Callable[[dict[str, Any]], None]) -> Path:
        import onnx

        from mtl_perception.inference.metadata import METADATA_KEY

        model = onnx.load(str(self.onnx))
        entry = next(p for p in model.metadata_props if p.key == METADATA_KEY)
        meta = json.loads(entry.value)
        edit(meta)
        entry.value = json.dumps(meta)
        path = self.path(name)
        onnx.save(model, str(path))
        return path

    def _onnx_with_metadata_text(self, name: str, text: str) -> Path:
        import onnx

        from mtl_perception.inference.metadata import METADATA_KEY

        model = onnx.load(str(self.onnx))
        next(p for p in model.metadata_props if p.key == METADATA_KEY).value = text
        path = self.path(name)
        onnx.save(model, str(path))
        return path

    def bad_metadata_onnx(self, key: str) -> Path:
        """The tiny model with one of the BAD_METADATA defects (cached by name)."""
        import onnx

        path = self.path(f"bad_meta_{key}.onnx")
        if path.exists():
            return path
        if key == "number":
            return self._onnx_with_metadata_text(path.name, "5")
        if key == "deep_list":
            return self._onnx_with_metadata_text(path.name, '{"tasks": ' + "[" * 100_000 + "]" * 100_000 + "}")
        if key == "huge":
            return self._onnx_with_metadata(path.name, lambda m: m.update(architecture="x" * 2_000_000))
        if key == "normals_1ch":
            model = onnx.load(str(self.onnx))
            output = next(o for o in model.graph.output if o.name == "normals")
            output.type.tensor_type.shape.dim[1].dim_value = 1
            onnx.save(model, str(path))
            return path
        edits: dict[str, Callable[[dict[str, Any]], None]] = {
            "height_text": lambda m: m.update(input_height=str(m["input_height"])),
            "mean_two": lambda m: m.update(mean=[0.5, 0.5]),
            "no_tasks": lambda m: m.update(tasks=[]),
            "focal_nan": lambda m: m.update(focal_length_px=float("nan")),
            "depth_range": lambda m: m.update(depth_min=20.0, depth_max=10.0),
            "classes_vs_logits": lambda m: m.update(class_names=m["class_names"][:3]),
        }
        return self._onnx_with_metadata(path.name, edits[key])

    def nyu_mat(self, frames: int = 3) -> Path:
        """A labelled-NYUv2-layout .mat (HDF5, stored transposed) of a few synthetic frames at 48x64: depth and labels, no normals."""
        import h5py

        from mtl_perception.data.synthetic import render_frame

        path = self.path("nyu_small.mat")
        if path.exists():
            return path
        rendered = [render_frame(seed, 48, 64) for seed in range(frames)]
        with h5py.File(path, "w") as handle:
            handle["images"] = np.stack([f.rgb.transpose(2, 1, 0) for f in rendered])
            handle["depths"] = np.stack([f.depth.astype(np.float32).T for f in rendered])
            handle["labels"] = np.zeros((frames, 64, 48), np.uint16)
        return path

    def folder_with(self, name: str, edit: Callable[[Path], None]) -> Path:
        """A 2-frame synthetic folder dataset (npy depth and normals) changed by ``edit(root)``."""
        from mtl_perception.data.folder import write_dataset_meta, write_frame
        from mtl_perception.data.synth_classes import SYNTH_CLASS_NAMES, SYNTH_PALETTE
        from mtl_perception.data.synthetic import render_sequence

        root = self.path(name)
        if root.exists():
            return root
        frames = list(render_sequence(5, 2, 64, 96))
        write_dataset_meta(root, frames[0].K, list(SYNTH_CLASS_NAMES), [list(c) for c in SYNTH_PALETTE], height=64, width=96)
        for index, frame in enumerate(frames):
            write_frame(root, index, frame, depth_format="npy", normals_format="npy")
        edit(root)
        return root

    def zero_height_bag(self) -> Path:
        """A copy of the synthetic bag whose camera images all have height 0 (and no data)."""
        from mtl_perception.bags.io import BagReader, BagWriter, typestore

        target = self.path("zero_height_bag")
        if target.exists():
            return target
        with BagReader(self.bag) as reader, BagWriter(target) as writer:
            for topic in reader.topics.values():
                writer.add_topic(topic.name, topic.msgtype)
            for topic, stamp, raw in reader.messages(list(reader.topics)):
                if topic == "/camera/image_raw":
                    msg = reader.deserialize(raw, topic)
                    msg.height, msg.step = 0, msg.width * 3
                    msg.data = np.zeros(0, np.uint8)
                    raw = typestore().serialize_cdr(msg, "sensor_msgs/msg/Image")
                writer.write_raw(topic, stamp, raw)
        return target

    def inconsistent_onnx(self) -> Path:
        return self._onnx_with_metadata("inconsistent.onnx", lambda m: m.update(input_height=128, input_width=128))

    def metadata_lacking_onnx(self) -> Path:
        return self._onnx_with_metadata("lacking.onnx", lambda m: m.pop("tasks"))

    def newer_metadata_onnx(self) -> Path:
        return self._onnx_with_metadata("newer.onnx", lambda m: m.update(version=99))

    def checkpoint_state(self) -> dict[str, Any]:
        from mtl_perception.training.checkpoint import load_checkpoint

        return load_checkpoint(self.checkpoint)

    def foreign_checkpoint(self) -> Path:
        """A torch file of plain tensors that is not one of this package's checkpoints."""
        import torch

        path = self.path("foreign.pt")
        torch.save({"state_dict": {"conv.weight": torch.zeros(4, 3, 3, 3)}}, path)
        return path

    def other_architecture_checkpoint(self) -> Path:
        """Our checkpoint format, but the weights of a ResNet-18 network under a MobileNetV3 config."""
        from mtl_perception.training.checkpoint import save_checkpoint

        state = self.checkpoint_state()
        state["config"]["model"]["encoder"] = "mobilenetv3_large"
        path = self.path("other_arch.pt")
        save_checkpoint(path, {k: v for k, v in state.items() if k != "format"})
        return path

    def malicious_checkpoint(self, marker: Path) -> Path:
        import torch

        from mtl_perception.training.checkpoint import CHECKPOINT_FORMAT

        path = self.path("malicious.pt")
        torch.save({"format": CHECKPOINT_FORMAT, "model": Payload(str(marker))}, path)
        return path

    def previous_report(self, name: str) -> Path:
        """An output folder holding the report of an earlier run (must survive a failed run)."""
        folder = self.path(name)
        folder.mkdir()
        (folder / "metrics.json").write_text(json.dumps({"frames": 3, "metrics": {"depth": {"abs_rel": 0.25}}}))
        (folder / "summary.json").write_text(json.dumps({"bags": [], "aggregate": {}}))
        return folder

    def run_dir_with(self, name: str, checkpoint: Path) -> Path:
        folder = self.path(name)
        folder.mkdir()
        shutil.copyfile(checkpoint, folder / "last.pt")
        return folder

    def nan_depth_folder(self) -> Path:
        """A folder dataset whose depth maps (.npy) hold NaN, +inf and -inf patches (= invalid pixels)."""
        from mtl_perception.data.folder import write_dataset_meta, write_frame
        from mtl_perception.data.synth_classes import SYNTH_CLASS_NAMES, SYNTH_PALETTE
        from mtl_perception.data.synthetic import render_sequence

        root = self.path("nan_depth")
        frames = list(render_sequence(3, 2, 64, 96))
        write_dataset_meta(root, frames[0].K, list(SYNTH_CLASS_NAMES), [list(c) for c in SYNTH_PALETTE], height=64, width=96)
        for index, frame in enumerate(frames):
            depth = frame.depth.astype(np.float32).copy()
            depth[:10, :10], depth[10:20, :10], depth[20:30, :10] = np.nan, np.inf, -np.inf
            write_frame(root, index, dataclasses.replace(frame, depth=depth), depth_format="npy")
        return root

    def nan_depth_bag(self) -> Path:
        """A copy of the synthetic bag whose ground-truth depth holds NaN, +inf and -inf rows (REP-118: no estimate)."""
        from mtl_perception.bags.io import BagReader, BagWriter, typestore

        target = self.path("nan_depth_bag")
        with BagReader(self.bag) as reader, BagWriter(target) as writer:
            for topic in reader.topics.values():
                writer.add_topic(topic.name, topic.msgtype)
            for topic, stamp, raw in reader.messages(list(reader.topics)):
                if topic == "/gt/depth":
                    msg = reader.deserialize(raw, topic)
                    depth = np.frombuffer(bytes(msg.data), np.float32).copy().reshape(msg.height, msg.width)
                    depth[0:4], depth[4:8], depth[8:12] = np.nan, np.inf, -np.inf
                    msg.data = depth.view(np.uint8).reshape(-1)
                    raw = typestore().serialize_cdr(msg, "sensor_msgs/msg/Image")
                writer.write_raw(topic, stamp, raw)
        return target

    def unknown_type_bag(self) -> Path:
        """A bag whose only topic has a message type no ROS distribution defines."""
        from rosbags.rosbag2 import Writer
        from rosbags.typesys import Stores, get_types_from_msg, get_typestore

        store = get_typestore(Stores.LATEST)
        store.register(get_types_from_msg("uint8[] blob\nfloat64 quality\n", "acme_msgs/msg/Blob"))
        target = self.path("unknown_type_bag")
        if target.exists():
            return target
        with Writer(target, version=9) as writer:
            connection = writer.add_connection("/camera/image_raw", "acme_msgs/msg/Blob", typestore=store)
            blob = store.types["acme_msgs/msg/Blob"](blob=np.zeros(16, np.uint8), quality=1.0)
            for i in range(3):
                writer.write(connection, 1_000_000_000 + i, store.serialize_cdr(blob, "acme_msgs/msg/Blob"))
        return target

    def bag_without_metadata(self) -> Path:
        bag = self.copy_of(self.bag, "no_metadata_bag")
        (bag / "metadata.yaml").unlink()
        return bag

    def empty_bag_dir(self) -> Path:
        folder = self.path("empty_bag")
        folder.mkdir()
        return folder

    def text_as_bag(self) -> Path:
        return self.text_file("notes.db3", "these are field notes, not a database\n" * 20)

    def bag_metadata_lying(self) -> Path:
        """metadata.yaml that names a storage file which is not there."""
        bag = self.copy_of(self.bag, "lying_metadata_bag")
        for storage in bag.glob("*.db3"):
            storage.rename(storage.with_name("renamed.db3"))
        return bag


@dataclass
class CliCase:
    """One command line; ``expect`` is the fragment of the error line (or '' with ``ok=True``)."""

    name: str
    argv: list[str]
    expect: str
    guarded: list[Path] = field(default_factory=list)  # pre-existing files/folders that must not change
    ok: bool = False  # a tolerated input (e.g. NaN ground truth = invalid pixels): exit 0 and finite results
    absent: list[Path] = field(default_factory=list)  # paths that must not exist afterwards
    check: Callable[[], str | None] | None = None  # extra check after the run: None or the failure


TINY_TRAIN = ["model.encoder=resnet18", "model.decoder_channels=16", "model.head_channels=16", "data.height=48",
              "data.width=64", "data.train_count=8", "data.val_count=2", "train.batch_size=1", "train.threads=1"]


def _finite_json(path: Path) -> Callable[[], str | None]:
    def check() -> str | None:
        try:
            text = path.read_text()
            json.loads(text, parse_constant=lambda c: (_ for _ in ()).throw(ValueError(c)))
        except (OSError, ValueError) as exc:
            return f"{path} is not strict, finite JSON: {exc}"
        return None if '"abs_rel": ' in text else f"{path} has no depth abs_rel"

    return check


def cli_cases(ws: Workspace) -> list[CliCase]:
    """Every command-line case; builds the damaged files it needs inside ``ws``."""
    gt = ["--predictions-from-bag", "--pred-depth-topic", "/gt/depth", "--pred-semantic-topic", "/gt/semantic", "--pred-normals-topic", "/gt/normals"]
    model_out = ws.copy_of(ws.onnx, "deployed.onnx")  # a model already deployed where a failed export points
    report = ws.previous_report("previous_report")
    marker = ws.path("pwned")
    other_run = ws.run_dir_with("other_run", ws.checkpoint)
    bag_out = ws.copy_of(ws.bag, "previous_predictions_bag")
    quiet = ["--quiet"]
    cases = [
        CliCase("config: invalid YAML", ["train", "--config", str(ws.text_file("broken.yaml", "model: [resnet18\ntrain: {steps: 3\n"))], "is not valid YAML"),
        CliCase("config: a YAML list", ["train", "--config", str(ws.text_file("list.yaml", "- model\n- train\n"))], "must be a mapping"),
        CliCase("config: section is a string", ["train", "--config", str(ws.text_file("section.yaml", "model: resnet18\n"))], "section 'model' must be a mapping"),
        CliCase("config: unknown key", ["train", *TINY_TRAIN, "train.stepz=3"], "unknown key(s) ['stepz']"),
        CliCase("config: steps is text", ["train", *TINY_TRAIN, "train.steps=ten"], "train.steps must be an integer"),
        CliCase("config: zero steps", ["train", *TINY_TRAIN, "train.steps=0"], "train.steps must be at least 1"),
        CliCase("config: checkpoint interval 0", ["train", *TINY_TRAIN, "train.ckpt_every=0"], "train.ckpt_every must be at least 1"),
        CliCase("config: negative learning rate", ["train", *TINY_TRAIN, "train.lr=-0.1"], "train.lr must be positive"),
        CliCase("config: 8x8 input", ["train", *TINY_TRAIN, "data.height=8"], "data.height must be at least 32"),
        CliCase("config: NaN depth range", ["train", *TINY_TRAIN, "model.max_depth=.nan"], "model.max_depth must be a finite number"),
        CliCase("resume: last.pt of another model", ["train", "--no-progress", "--resume", "auto", *TINY_TRAIN, f"train.out_dir={other_run}"],
                "cannot resume", guarded=[other_run / "last.pt"]),
        CliCase("resume: truncated checkpoint", ["train", "--no-progress", "--resume", str(ws.truncated(ws.checkpoint, "half.pt")), *TINY_TRAIN,
                                                 f"train.out_dir={other_run}"], "truncated", guarded=[other_run / "last.pt"]),
        CliCase("checkpoint: missing", ["evaluate", "--checkpoint", str(ws.path("absent.pt")), "--out", str(report)], "checkpoint not found", guarded=[report]),
        CliCase("checkpoint: empty file", ["evaluate", "--checkpoint", str(ws.text_file("empty.pt", "")), "--out", str(report)], "unreadable", guarded=[report]),
        CliCase("checkpoint: tensors of another program", ["evaluate", "--checkpoint", str(ws.foreign_checkpoint()), "--out", str(report)],
                "not an mtl_perception checkpoint", guarded=[report]),
        CliCase("checkpoint: weights of another architecture", ["evaluate", "--checkpoint", str(ws.other_architecture_checkpoint()), "--out", str(report)],
                "does not match its own model config", guarded=[report]),
        CliCase("checkpoint: pickle that runs code", ["evaluate", "--checkpoint", str(ws.malicious_checkpoint(marker)), "--out", str(report)],
                "refused, because loading them could run code", guarded=[report], absent=[marker]),
        CliCase("evaluate: --out is a file", ["evaluate", "--checkpoint", str(ws.checkpoint), "--count", "1", "--out", str(model_out)],
                "is not a directory", guarded=[model_out]),
        CliCase("depth ground truth with NaN/inf (tolerated: invalid pixels)", ["evaluate", "--checkpoint", str(ws.checkpoint), "--data", str(ws.nan_depth_folder()),
                                                                               "--out", str(ws.path("nan_eval"))], "", ok=True,
                check=_finite_json(ws.path("nan_eval") / "metrics.json")),
        CliCase("export: truncated checkpoint over a deployed model", ["export", "--checkpoint", str(ws.truncated(ws.checkpoint, "third.pt", 0.33)),
                                                                       "--out", str(model_out)], "truncated", guarded=[model_out]),
        CliCase("export: input size the config cannot take", ["export", "--checkpoint", str(ws.checkpoint), "--out", str(model_out), "--height", "16"],
                "at least 32", guarded=[model_out]),
        CliCase("quantize: truncated model over a deployed model", ["quantize", "--model", str(ws.truncated_onnx()), "--out", str(model_out)],
                "truncated or corrupt", guarded=[model_out]),
        CliCase("check-trt: model missing", ["check-trt", "--model", str(ws.path("absent.onnx"))], "model file not found"),
        CliCase("model: truncated ONNX", ["bag-eval", str(ws.bag), "--model", str(ws.truncated_onnx()), "--out", str(report), *quiet],
                "truncated or corrupt", guarded=[report]),
        CliCase("model: ONNX of another network (no metadata)", ["bag-eval", str(ws.bag), "--model", str(ws.foreign_onnx()), "--out", str(report), *quiet],
                "has no 'mtl_perception' metadata", guarded=[report]),
        CliCase("model: metadata input size contradicts the graph", ["bag-eval", str(ws.bag), "--model", str(ws.inconsistent_onnx()), "--out", str(report), *quiet],
                "the file is inconsistent", guarded=[report]),
        CliCase("model: metadata lacks fields", ["bag-eval", str(ws.bag), "--model", str(ws.metadata_lacking_onnx()), "--out", str(report), *quiet],
                "lacks ['tasks']", guarded=[report]),
        CliCase("model: metadata from a newer version", ["bag-eval", str(ws.bag), "--model", str(ws.newer_metadata_onnx()), "--out", str(report), *quiet],
                "newer than this package", guarded=[report]),
        CliCase("model: checkpoint given to onnxruntime", ["bag-eval", str(ws.bag), "--model", str(ws.checkpoint), "--out", str(report), *quiet],
                "reads .onnx files", guarded=[report]),
        CliCase("model: a directory", ["bag-eval", str(ws.bag), "--model", str(ws.root), "--out", str(report), *quiet],
                "not a regular file", guarded=[report]),
        CliCase("bag: metadata.yaml missing", ["bag-eval", str(ws.bag_without_metadata()), *gt, "--out", str(report), *quiet], "metadata", guarded=[report]),
        CliCase("bag: empty folder", ["bag-eval", str(ws.empty_bag_dir()), *gt, "--out", str(report), *quiet], "cannot open bag", guarded=[report]),
        CliCase("bag: text file named .db3", ["bag-eval", str(ws.text_as_bag()), *gt, "--out", str(report), *quiet], "cannot open bag", guarded=[report]),
        CliCase("bag: metadata names a missing storage file", ["bag-eval", str(ws.bag_metadata_lying()), *gt, "--out", str(report), *quiet],
                "cannot open bag", guarded=[report]),
        CliCase("bag: only an unknown message type", ["bag-eval", str(ws.unknown_type_bag()), "--model", str(ws.onnx), "--out", str(report), *quiet],
                "acme_msgs/msg/Blob", guarded=[report]),
        CliCase("bag: unknown type named as the camera", ["bag-eval", str(ws.unknown_type_bag()), "--model", str(ws.onnx), "--image-topic", "/camera/image_raw",
                                                          "--out", str(report), *quiet], "acme_msgs/msg/Blob", guarded=[report]),
        CliCase("bag-eval: output bag exists", ["bag-eval", str(ws.bag), "--model", str(ws.onnx), "--output-bag", str(bag_out), "--out", str(report), *quiet],
                "exists already", guarded=[bag_out, report]),
        CliCase("bag-eval: zero jobs", ["bag-eval", str(ws.bag), *gt, "--jobs", "0", "--out", str(report), *quiet], "--jobs", guarded=[report]),
        CliCase("bag-make: over an existing bag", ["bag-make", str(bag_out), "--frames", "1", *quiet], "exists already", guarded=[bag_out]),
        CliCase("bag-make: zero frames", ["bag-make", str(ws.path("zero_frames_bag")), "--frames", "0", *quiet], "at least 1",
                absent=[ws.path("zero_frames_bag")]),
        CliCase("bag ground-truth depth with NaN/inf (tolerated: no ground truth there)",
                ["bag-eval", str(ws.nan_depth_bag()), "--model", str(ws.onnx), "--out", str(ws.path("nan_bag_report")), "--format", "md", *quiet], "", ok=True,
                check=_finite_json(ws.path("nan_bag_report") / "summary.json")),
    ]
    cases += issue12_cli_cases(ws, report, model_out, quiet, gt)
    return cases


def _json_mentions(path: Path, words: list[str]) -> Callable[[], str | None]:
    def check() -> str | None:
        try:
            text = path.read_text()
        except OSError as exc:
            return f"{path} missing: {exc}"
        missing = [w for w in words if w not in text]
        return f"{path} lacks {missing}" if missing else None

    return check


def issue12_cli_cases(ws: Workspace, report: Path, model_out: Path, quiet: list[str], gt: list[str]) -> list[CliCase]:
    """Issue 12: configs of the wrong shape or size, unbounded sizes, numeric flags, long names, model metadata."""
    long_dir = ws.path("d" * 200)
    long_dir.mkdir(exist_ok=True)
    deep = "model: " + "[" * 3000 + "\n"
    mixed = "train: {1: a, stepz: 2, 2.5: 3, null: 4}\n"
    cases = [
        CliCase("config: section is a number", ["train", "--config", str(ws.text_file("section_number.yaml", "model: 5\n"))], "section 'model' must be a mapping"),
        CliCase("config: unknown keys of mixed types", ["train", "--config", str(ws.text_file("mixed_keys.yaml", mixed))], "unknown key(s) ['1', '2.5', 'None', 'stepz']"),
        CliCase("config: override that is invalid YAML", ["train", *TINY_TRAIN, "train.lr=[0.1"], "override 'train.lr=[0.1' is not valid YAML"),
        CliCase("config: override of a section that is a number", ["train", "--config", str(ws.text_file("section_number2.yaml", "train: 5\n")), "train.lr=0.1"],
                "section 'train' must be a mapping"),
        CliCase("config: nested 3000 deep", ["train", "--config", str(ws.text_file("deep.yaml", deep))], "nested deeper than 32 levels"),
        CliCase("config: 453-byte YAML alias bomb", ["train", "--config", str(ws.text_file("bomb.yaml", ALIAS_BOMB))], "aliases (*name) are not accepted"),
        CliCase("config: 50 MB file", ["train", "--config", str(ws.text_file("huge.yaml", "# padding\n" * 5_000_000))], "is larger than 1024 KiB"),
        CliCase("config: data.height=100000 data.width=100000", ["train", *TINY_TRAIN, "data.height=100000", "data.width=100000"], "data.height must be at most 4096"),
        CliCase("config: 4096x4096 batch 64 beyond the memory budget", ["train", *TINY_TRAIN, "data.height=4096", "data.width=4096", "train.batch_size=64"],
                "more than the memory budget"),
        CliCase("config: learning rate is true", ["train", *TINY_TRAIN, "train.lr=true"], "train.lr must be a number"),
        CliCase("study: a YAML list", ["study", "--config", str(ws.text_file("study_list.yaml", "- base\n"))], "must be a mapping"),
        CliCase("study: seeds of text", ["study", "--config", str(ws.text_file("study_seeds.yaml", "base: {}\nentries: [{name: a}]\nseeds: [one]\n"))],
                "seeds[0] must be an integer"),
        CliCase("synth: --size 100000x100000", ["synth", "--out", str(ws.path("synth_huge")), "--size", "100000x100000"], "8192 pixels per side",
                absent=[ws.path("synth_huge")]),
        CliCase("synth: --size 8192x8192 beyond the memory budget", ["synth", "--out", str(ws.path("synth_big")), "--size", "8192x8192"], "more than the memory budget",
                absent=[ws.path("synth_big")]),
        CliCase("synth: --count nan", ["synth", "--out", str(ws.path("synth_nan")), "--count", "nan"], "argument --count"),
        CliCase("model-info: --height 100000 --width 100000", ["model-info", "--height", "100000", "--width", "100000"], "argument --height: must be at most 4096"),
        CliCase("model-info: 4096x4096 beyond the memory budget", ["model-info", "--height", "4096", "--width", "4096"], "more than the memory budget"),
        CliCase("evaluate: --device banana", ["evaluate", "--checkpoint", str(ws.checkpoint), "--device", "banana", "--out", str(report)], "--device 'banana' is not a device",
                guarded=[report]),
        CliCase("evaluate: --batch-size 0", ["evaluate", "--checkpoint", str(ws.checkpoint), "--batch-size", "0", "--out", str(report)], "argument --batch-size", guarded=[report]),
        CliCase("evaluate: camera.yaml that is a list", ["evaluate", "--checkpoint", str(ws.checkpoint), "--data",
                                                         str(ws.folder_with("list_camera", lambda r: (r / "camera.yaml").write_text("- 1\n- 2\n"))), "--out", str(report)],
                "camera.yaml must be a mapping", guarded=[report]),
        CliCase("evaluate: camera.yaml with a NaN focal length", ["evaluate", "--checkpoint", str(ws.checkpoint), "--data",
                                                                  str(ws.folder_with("nan_camera", lambda r: (r / "camera.yaml").write_text("K: [[.nan, 0, 48], [0, 80, 32], [0, 0, 1]]\n"))),
                                                                  "--out", str(report)], "must be a finite number", guarded=[report]),
        CliCase("evaluate: 0-byte depth .npy", ["evaluate", "--checkpoint", str(ws.checkpoint), "--data",
                                                str(ws.folder_with("empty_depth", lambda r: (r / "depth" / "000000.npy").write_bytes(b""))), "--out", str(report)],
                "is not a readable .npy depth map (empty)", guarded=[report]),
        CliCase("evaluate: 2-D normals .npy", ["evaluate", "--checkpoint", str(ws.checkpoint), "--data",
                                               str(ws.folder_with("flat_normals", lambda r: np.save(r / "normals" / "000001.npy", np.zeros((64, 96), np.float32)))),
                                               "--out", str(report)], "holds a normals array of shape (64, 96); it must be (H, W, 3)", guarded=[report]),
        CliCase("evaluate: NYUv2 .mat with a model that predicts normals (tolerated: normals skipped)",
                ["evaluate", "--checkpoint", str(ws.checkpoint), "--data", str(ws.nyu_mat()), "--out", str(ws.path("nyu_eval"))], "", ok=True,
                check=_json_mentions(ws.path("nyu_eval") / "metrics.json", ["normals not scored", "\"resolution\": \"native\"", "\"max_depth\": 10.0"])),
        CliCase("export: --out of 300 characters", ["export", "--checkpoint", str(ws.checkpoint), "--out", str(ws.path("m" * 295 + ".onnx"))],
                "is 300 bytes long, more than the 255"),
        CliCase("export: --out of 250 characters (its temp name would pass 255; tolerated)",
                ["export", "--checkpoint", str(ws.checkpoint), "--out", str(long_dir / ("m" * 245 + ".onnx"))], "", ok=True,
                check=lambda: None if (long_dir / ("m" * 245 + ".onnx")).is_file() else "the 250-character model file was not written"),
        CliCase("bag-eval: --model of 305 characters", ["bag-eval", str(ws.bag), "--model", str(ws.path("m" * 300 + ".onnx")), "--out", str(report), *quiet],
                "is 305 bytes long, more than the 255", guarded=[report]),
        CliCase("bag-eval: every image has height 0", ["bag-eval", str(ws.zero_height_bag()), "--model", str(ws.onnx), "--out", str(report), *quiet],
                "no frame could be evaluated", guarded=[report]),
        CliCase("bag-eval: --max-frames -1", ["bag-eval", str(ws.bag), *gt, "--max-frames", "-1", "--out", str(report), *quiet], "argument --max-frames: must be at least 1",
                guarded=[report]),
        CliCase("bag-eval: --stamp-tolerance inf", ["bag-eval", str(ws.bag), *gt, "--stamp-tolerance", "inf", "--out", str(report), *quiet],
                "argument --stamp-tolerance: must be a finite number", guarded=[report]),
        CliCase("bag-eval: --stamp-tolerance nan", ["bag-eval", str(ws.bag), *gt, "--stamp-tolerance", "nan", "--out", str(report), *quiet],
                "argument --stamp-tolerance: must be a finite number", guarded=[report]),
        CliCase("bag-eval: --min-depth nan", ["bag-eval", str(ws.bag), *gt, "--min-depth", "nan", "--out", str(report), *quiet], "argument --min-depth", guarded=[report]),
        CliCase("bag-make: --rate 1e-300", ["bag-make", str(ws.path("slow_bag")), "--rate", "1e-300", "--frames", "1", *quiet], "argument --rate: must be at least 0.001",
                absent=[ws.path("slow_bag")]),
        CliCase("bag-make: --rate nan", ["bag-make", str(ws.path("nan_rate_bag")), "--rate", "nan", "--frames", "1", *quiet], "argument --rate: must be a finite number",
                absent=[ws.path("nan_rate_bag")]),
        CliCase("bag-make: --height 100000", ["bag-make", str(ws.path("tall_bag")), "--height", "100000", *quiet], "argument --height: must be at most 4096",
                absent=[ws.path("tall_bag")]),
        CliCase("replay: --rate 0", ["replay", str(ws.bag), "--rate", "0"], "argument --rate: must be at least 0.001"),
    ]
    for key, (name, expect) in BAD_METADATA.items():
        model = ws.bad_metadata_onnx(key)
        cases.append(CliCase(f"bag-eval: {name}", ["bag-eval", str(ws.bag), "--model", str(model), "--out", str(report), *quiet], expect, guarded=[report]))
        cases.append(CliCase(f"quantize: {name}", ["quantize", "--model", str(model), "--out", str(model_out)], expect, guarded=[model_out]))
    return cases


def fingerprint(path: Path) -> str:
    """SHA-256 over a file's bytes, or over every file (relative name + bytes) of a folder."""
    digest = hashlib.sha256()
    if path.is_dir():
        for item in sorted(p for p in path.rglob("*") if p.is_file()):
            digest.update(str(item.relative_to(path)).encode() + b"\0" + item.read_bytes())
    else:
        digest.update(path.read_bytes())
    return digest.hexdigest()


# ---------------------------------------------------------------------------------------------- CLI driver
PREIMPORT = ("torch", "onnx", "onnxruntime", "cv2", "rosbags.rosbag2", "rosbags.typesys", "mtl_perception.cli",
             "mtl_perception.training.trainer", "mtl_perception.bags.evaluation", "mtl_perception.inference.export")


def run_forked(argv: list[str], timeout: float) -> dict[str, Any]:
    """Run ``mtl_perception.cli.main(argv)`` in a forked child as the console script would: exit code and stderr."""
    import traceback

    from mtl_perception import cli

    err = tempfile.TemporaryFile()
    sys.stdout.flush()
    sys.stderr.flush()
    started = time.monotonic()
    pid = os.fork()
    if pid == 0:  # child: never returns
        code = 1
        try:
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, 1)
            os.dup2(err.fileno(), 2)
            try:
                code = int(cli.main(argv) or 0)
            except SystemExit as exc:  # argparse errors exit 2
                code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
            except BaseException:  # what the interpreter does with an uncaught exception
                traceback.print_exc()
                code = 1
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(code)
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            break
        if time.monotonic() - started > timeout:
            os.kill(pid, 9)
            os.waitpid(pid, 0)
            status = -1
            break
        time.sleep(0.02)
    err.seek(0)
    code = os.waitstatus_to_exitcode(status) if status != -1 else -9
    return {"returncode": code, "stderr": err.read().decode(errors="replace"), "seconds": round(time.monotonic() - started, 2)}


def _driver(cases_file: str) -> int:
    import importlib

    for name in PREIMPORT:
        importlib.import_module(name)
    import torch

    torch.set_num_threads(1)
    cases = json.loads(Path(cases_file).read_text())
    results = [{"name": case["name"], **run_forked(case["argv"], case.get("timeout", 120.0))} for case in cases]
    print(json.dumps(results))
    return 0


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--run-cli":
        sys.exit(_driver(sys.argv[2]))
    print("usage: python test/bad_input_corpus.py --run-cli CASES.json", file=sys.stderr)
    sys.exit(2)
