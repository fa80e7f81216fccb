"""The deploy graph's post-processing rules on crafted network outputs, and its full-resolution pass budget.

The parity tests (``test_inference_deploy_graph.py``) compare whole graphs with the NumPy oracle on camera frames;
these feed the post graph alone (``compose_deploy_parts``) with maps built to hit every branch: depth exactly at
the range ends, zero, negative, NaN and infinite, under both fills; every camera layout's view in the overlay.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from mtl_perception.colorize import depth_lut_bgr
from mtl_perception.inference.deploy_graph import (ENCODING_LAYOUT, DeployOptions, compose_deploy_graph, compose_deploy_parts,
                                                   layout_for)
from mtl_perception.inference.model_file import load_onnx_file, metadata_from_props

MODEL = Path(__file__).resolve().parents[1] / "models" / "default.onnx"
NODE_OUTPUTS = ("depth", "labels", "normals", "depth_color", "semantic_color", "semantic_overlay", "points")


@pytest.fixture(scope="module")
def meta():
    model = load_onnx_file(MODEL)
    return metadata_from_props({p.key: p.value for p in model.metadata_props}, str(MODEL))


def post_session(meta, options: DeployOptions) -> ort.InferenceSession:
    _, post = compose_deploy_parts(meta, options, layout_for(meta, options))
    return ort.InferenceSession(post.SerializeToString(), providers=["CPUExecutionProvider"])


def expected_depth(d: np.ndarray, lo: float, hi: float, below: float, above: float) -> tuple[np.ndarray, np.ndarray]:
    """(depth, colour-table index) by the rules one at a time: in [lo, hi] and positive, else too near / too far / none."""
    with np.errstate(invalid="ignore"):
        valid = (d >= lo) & (d <= hi) & (d > 0)
        out = np.where(valid, d, np.where(d < lo, below, np.where(d > hi, above, np.nan))).astype(np.float32)
        step = np.float32(254.0) / (np.float32(hi) - np.float32(lo))
        unit = np.clip((d - np.float32(lo)) * step, 0, 254) + np.float32(1.5)
    return out, np.where(valid, unit, 0).astype(np.int64)


@pytest.mark.parametrize("lo", [0.0, 0.5])
@pytest.mark.parametrize("fill", ["nan", "inf"])
def test_depth_range_sign_and_fill_rules(meta, lo: float, fill: str) -> None:
    """Network size = output size (stretch, model resolution): no resize, so every crafted value reaches the rules."""
    h, w = meta.input_height, meta.input_width
    options = DeployOptions(h, w, resize_mode="stretch", out_size="model", outputs=("depth", "depth_color", "points"), points_stride=1)
    hi = 4.0
    special = np.array([np.nan, 0.0, -0.0, -1.0, np.nextafter(np.float32(lo), np.float32(-1)), lo, 1.0, hi,
                        np.nextafter(np.float32(hi), np.float32(9)), 9.0, np.inf, -np.inf], np.float32)
    rng = np.random.default_rng(0)
    d = rng.uniform(-1.0, 6.0, (h, w)).astype(np.float32)
    d.reshape(-1)[: special.size] = special
    below, above = (np.nan, np.nan) if fill == "nan" else (-np.inf, np.inf)
    feeds = {"net_depth": d[None, None], "depth_scale": np.ones(1, np.float32), "depth_range": np.array([lo, hi], np.float32),
             "out_of_range": np.array([below, above], np.float32), "intrinsics": np.array([[300.0, 300.0, w / 2, h / 2, 0.0]], np.float32),
             "net_semantic_logits": np.zeros((1, len(meta.class_names), h, w), np.float32), "palette_bgr": np.zeros((len(meta.class_names), 3), np.uint8)}
    session = post_session(meta, options)
    out = dict(zip([o.name for o in session.get_outputs()], session.run(None, {i.name: feeds[i.name] for i in session.get_inputs()})))
    depth, index = expected_depth(d, lo, hi, below, above)
    np.testing.assert_array_equal(out["depth"][0], depth)  # NaN == NaN here; -0.0 and 0.0 compare equal, both are no estimate
    np.testing.assert_array_equal(out["depth_color"][0], depth_lut_bgr()[index])
    z = out["points_xyz"][0, ..., 2]
    np.testing.assert_array_equal(np.isnan(z), ~np.isfinite(depth) | np.isnan(depth))
    np.testing.assert_array_equal(z[np.isfinite(z)], depth[np.isfinite(z)])


@pytest.mark.parametrize("encoding", sorted(ENCODING_LAYOUT))
def test_overlay_maps_every_camera_layout_to_bgr(meta, encoding: str) -> None:
    """The overlay's image part is the camera's own channels taken to B, G, R (alpha dropped, grey repeated), exactly."""
    h, w = meta.input_height, meta.input_width
    options = DeployOptions(h, w, encoding, "stretch", "model", outputs=("semantic_overlay",))
    c, order = ENCODING_LAYOUT[encoding]
    rng = np.random.default_rng(1)
    view = rng.integers(0, 256, (1, h, w, c)).astype(np.float32)
    labels = rng.integers(0, len(meta.class_names), (h, w))
    logits = np.where(np.arange(len(meta.class_names))[:, None, None] == labels[None], 5.0, 0.0).astype(np.float32)[None]
    palette = rng.integers(0, 256, (len(meta.class_names), 3), dtype=np.uint8)
    alpha = np.float32(0.3)
    session = post_session(meta, options)
    feeds = {"pre_view": view, "net_semantic_logits": logits, "palette_bgr": palette, "overlay_alpha": np.array([alpha], np.float32)}
    (overlay,) = session.run(None, {i.name: feeds[i.name] for i in session.get_inputs()})
    bgr = view[..., {"rgb": [2, 1, 0], "bgr": [0, 1, 2], "mono": [0, 0, 0]}[order]]
    expected = np.round(bgr * (np.float32(1) - alpha) + palette[labels][None].astype(np.float32) * alpha).astype(np.uint8)
    np.testing.assert_array_equal(overlay, expected)


def full_resolution_nodes(graph: onnx.ModelProto, size: tuple[int, int]) -> list[tuple[str, str]]:
    """(op type, first output) of every node writing a tensor with a (height, width) = ``size`` plane, any layout."""
    inferred = onnx.shape_inference.infer_shapes(graph)
    shapes = {v.name: [d.dim_value for d in v.type.tensor_type.shape.dim] for v in [*inferred.graph.value_info, *inferred.graph.output]}

    def full(name: str) -> bool:
        shape = shapes.get(name, [])
        return any(tuple(shape[i : i + 2]) == size for i in range(len(shape) - 1))

    return [(node.op_type, node.output[0]) for node in inferred.graph.node if any(full(o) for o in node.output)]


@pytest.mark.parametrize("encoding", ["rgb8", "bgr8", "mono8", "rgba8"])
def test_full_resolution_pass_budget(encoding: str) -> None:
    """A 640x480 camera into the 240x320 network: the pre graph writes one camera-sized tensor (the Cast; channel order,
    alpha and grey are handled at the network size), and the node's seven outputs take at most 34 more passes (40 before the rewrite)."""
    graph = compose_deploy_graph(load_onnx_file(MODEL), DeployOptions(480, 640, encoding, outputs=NODE_OUTPUTS))
    passes = [(op, name) for op, name in full_resolution_nodes(graph, (480, 640)) if op != "Identity"]
    assert [op for op, name in passes if name.startswith("pre_")] == ["Cast"]
    post = [op for op, name in passes if not name.startswith("pre_")]
    assert len(post) <= 34, post
    assert "Transpose" not in post[: post.index("ArgMax")]  # the logits are transposed at the network size
