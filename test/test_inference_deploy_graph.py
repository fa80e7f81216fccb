"""The deploy graph against the NumPy oracle (``numpy_oracle.py``), on synthetic rooms and real camera frames.

Tolerances: labels agree on >= 99.5 % of pixels; depth within 1e-4 relative where both have an estimate
(and the no-estimate masks agree on >= 99.9 %); normals within 0.1 degrees; semantic colours identical
and the overlay within 1 level where the labels agree; the depth colour within 1 level on >= 99.9 % of
pixels (a depth on a colour-table step may land on the neighbouring entry); points equal to the
back-projection of the graph's own depth within 1e-4 m. The bundled (trained) model is used, so the
labels are decisive, not near-ties of random weights.
"""
from __future__ import annotations

import itertools
from pathlib import Path

import cv2
import numpy as np
import onnx
import pytest

from mtl_perception.inference.backends import create_backend
from mtl_perception.inference.deploy_graph import (ENCODING_LAYOUT, GRAPH_OUTPUTS, OUTPUT_TASKS, DeployGraphError, DeployOptions,
                                                   compose_deploy_graph)
from mtl_perception.inference.frame_pipeline import FramePipeline, FrameSettings, graph_batch_size, graph_batch_sizes, graph_input
from mtl_perception.inference.model_file import load_onnx_file
from numpy_oracle import backproject, oracle_outputs
from shared_data import shared_path

ROOT = Path(__file__).resolve().parents[1]
MODEL = ROOT / "models" / "default.onnx"
REALDATA = shared_path("realdata")
ALL_OUTPUTS = ("depth", "labels", "confidence", "normals", "depth_color", "semantic_color", "semantic_overlay", "points")
FOCAL = (500.0, 505.0)


@pytest.fixture(scope="module")
def network():
    with create_backend("onnxruntime", MODEL, provider="cpu") as backend:
        yield backend


def synthetic_frame(height: int = 240, width: int = 320, seed: int = 3) -> np.ndarray:
    from mtl_perception.data.synthetic import render_frame

    return render_frame(seed, height, width).rgb


def camera_info(width: int, height: int, fx: float = FOCAL[0], fy: float = FOCAL[1], skew: float = 0.0):
    """A CameraInfo of a pinhole camera at this size (a plain message object: no ROS graph needed)."""
    from sensor_msgs.msg import CameraInfo

    info = CameraInfo()
    info.width, info.height = width, height
    info.k = [fx, skew, width / 2 - 0.3, 0.0, fy, height / 2 + 0.7, 0.0, 0.0, 1.0]
    info.p = [fx, skew, width / 2 - 0.3, 0.0, 0.0, fy, height / 2 + 0.7, 0.0, 0.0, 0.0, 1.0, 0.0]
    return info


def assert_parity(graph: dict[str, np.ndarray], expected: dict[str, np.ndarray], stride: int, k_at_output: np.ndarray | None) -> None:
    assert set(graph) == set(expected)
    for name, value in graph.items():
        assert value.shape == expected[name].shape and value.dtype == expected[name].dtype, (name, value.shape, value.dtype, expected[name].shape)
    same_label = np.ones(graph["depth"].shape if "depth" in graph else graph["labels"].shape, dtype=bool)
    if "labels" in graph:
        same_label = graph["labels"] == expected["labels"]
        assert same_label.mean() >= 0.995, f"labels agree on {same_label.mean():.4%}"
        np.testing.assert_array_equal(graph["semantic_color"][same_label], expected["semantic_color"][same_label])
        overlay_diff = np.abs(graph["semantic_overlay"].astype(int) - expected["semantic_overlay"].astype(int))[same_label]
        assert overlay_diff.max() <= 1
        np.testing.assert_allclose(graph["confidence"][same_label], expected["confidence"][same_label], rtol=1e-4, atol=1e-5)
    if "depth" in graph:
        d, e = graph["depth"], expected["depth"]
        both = np.isfinite(d) & np.isfinite(e)
        assert (np.isfinite(d) == np.isfinite(e)).mean() >= 0.999
        np.testing.assert_allclose(d[both], e[both], rtol=1e-4)
        colour_close = (np.abs(graph["depth_color"].astype(int) - expected["depth_color"].astype(int)) <= 1).all(axis=-1)
        assert colour_close.mean() >= 0.999, f"depth colours within 1 level on {colour_close.mean():.4%}"
    if "normals" in graph:
        cosine = np.clip(np.sum(graph["normals"] * expected["normals"], axis=-1), -1.0, 1.0)
        assert np.degrees(np.arccos(cosine)).max() <= 0.1
        np.testing.assert_allclose(np.linalg.norm(graph["normals"], axis=-1), 1.0, atol=1e-5)
    if "points_xyz" in graph:
        x, y, z = backproject(graph["depth"], k_at_output, stride)
        xyz = graph["points_xyz"].astype(np.float64)
        finite = np.isfinite(z)
        assert (np.isfinite(xyz[..., 2]) == finite).all()
        np.testing.assert_allclose(xyz[finite], np.stack([x, y, z], axis=-1)[finite], atol=1e-4)
        extra = graph["points_extra"]
        assert (extra[..., 3] == 0).all() and (extra[..., 5:] == 0).all()
        np.testing.assert_array_equal(extra[..., :3], graph["semantic_color"][::stride, ::stride])
        np.testing.assert_array_equal(extra[..., 4], graph["labels"][::stride, ::stride])


def run_both(network, pixels: np.ndarray, encoding: str, resize_mode: str, out_size: str, tmp_path: Path, stride: int = 3):
    height, width = pixels.shape[:2]
    info = camera_info(width, height)
    settings = FrameSettings(resize_mode=resize_mode, out_size=out_size, points_stride=stride, overlay_alpha=0.4)
    pipeline = FramePipeline(MODEL, backend_options={"provider": "cpu"}, settings=settings, cache_dir=tmp_path)
    try:
        result = pipeline.run(pixels, encoding, ALL_OUTPUTS, info)
        k = np.asarray(result.geometry.info_at_output.k).reshape(3, 3)
        expected = oracle_outputs(network.infer, network.metadata, pixels, encoding, ALL_OUTPUTS, resize_mode=resize_mode, out_size=out_size,
                                  palette_rgb=pipeline.palette_rgb, overlay_alpha=0.4, k_at_output=k, camera_focal=FOCAL, points_stride=stride)
        return result, expected, k
    finally:
        pipeline.close()


@pytest.mark.parametrize("resize_mode", ["letterbox", "stretch"])
@pytest.mark.parametrize("out_size", ["input", "model"])
def test_graph_equals_oracle_on_a_synthetic_room(network, resize_mode: str, out_size: str, tmp_path: Path) -> None:
    rgb = synthetic_frame(200, 360)  # another aspect ratio than the network's: letterbox pads
    result, expected, k = run_both(network, rgb, "rgb8", resize_mode, out_size, tmp_path)
    assert_parity(result.arrays, expected, 3, k)
    assert result.out_size == ((200, 360) if out_size == "input" else expected["labels"].shape)


@pytest.mark.parametrize("encoding", ["bgr8", "mono8", "rgba8"])
def test_camera_encodings_are_handled_in_the_graph(network, encoding: str, tmp_path: Path) -> None:
    rgb = synthetic_frame(120, 200, seed=5)
    pixels = {"bgr8": rgb[:, :, ::-1], "mono8": cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY),
              "rgba8": np.dstack([rgb, np.full(rgb.shape[:2], 77, np.uint8)])}[encoding]
    result, expected, k = run_both(network, np.ascontiguousarray(pixels), encoding, "letterbox", "input", tmp_path)
    assert_parity(result.arrays, expected, 3, k)


REAL_FRAMES = sorted([*REALDATA.glob("metric3d_demo/*/rgb/*"), *REALDATA.glob("realsense_d435i/color/*.png"), *REALDATA.glob("euroc_mono/ir0/*.png")])[:12]


@pytest.mark.skipif(not REAL_FRAMES, reason="../shared/realdata is absent (real camera frames ship beside the checkout, not in it)")
@pytest.mark.parametrize("path", REAL_FRAMES, ids=lambda p: f"{p.parent.parent.name}/{p.name}")
def test_graph_equals_oracle_on_every_real_frame(network, path: Path, tmp_path: Path) -> None:
    image = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    encoding = "mono8" if image.ndim == 2 else "bgr8"
    result, expected, k = run_both(network, image, encoding, "letterbox", "input", tmp_path, stride=4)
    assert_parity(result.arrays, expected, 4, k)


def test_runtime_inputs_change_without_a_rebuild(tmp_path: Path) -> None:
    rgb = synthetic_frame(96, 128)
    pipeline = FramePipeline(MODEL, backend_options={"provider": "cpu"}, cache_dir=tmp_path)
    try:
        near = pipeline.run(rgb, "rgb8", ["depth"], camera_info(128, 96)).arrays["depth"]
        limit = 2.0 * float(np.nanmedian(near))
        pipeline.configure(pipeline.with_settings(depth_min=0.2, depth_max=limit, overlay_alpha=0.9))
        far_focal = pipeline.run(rgb, "rgb8", ["depth"], camera_info(128, 96, fx=1000.0, fy=1010.0)).arrays["depth"]
        assert pipeline.graphs_built == 1
        finite = np.isfinite(far_focal) & np.isfinite(near)
        assert np.nanmax(far_focal) <= limit + 1e-5 and 0.2 < finite.mean() < 0.8
        ratio = far_focal[finite] / near[finite]
        np.testing.assert_allclose(ratio, 2.0, rtol=1e-4)  # depth follows the focal length: twice the focal, twice the depth
        pipeline.run(rgb, "rgb8", ["labels"])  # another output set: another graph
        pipeline.run(rgb[:64], "rgb8", ["labels"])  # another camera size: another graph
        assert pipeline.graphs_built == 3
    finally:
        pipeline.close()


def test_graph_cache_is_bounded_and_keyed_by_model_and_options(tmp_path: Path) -> None:
    pipeline = FramePipeline(MODEL, backend_options={"provider": "cpu"}, cache_dir=tmp_path, max_graphs=2)
    try:
        for height in (40, 48, 56):
            pipeline.run(np.zeros((height, 64, 3), np.uint8), "rgb8", ["depth"])
        assert len(pipeline._graphs) == 2 and not pipeline.is_built(40, 64, "rgb8", ["depth"])
        assert len(list((tmp_path / "deploy").glob("deploy-*.onnx"))) == 3  # files stay for the next start (deploy/ of the root)
    finally:
        pipeline.close()


def test_unneeded_heads_are_cut_away() -> None:
    model = load_onnx_file(MODEL)
    depth_only = compose_deploy_graph(model, DeployOptions(96, 128, outputs=("depth",)))
    everything = compose_deploy_graph(model, DeployOptions(96, 128, outputs=ALL_OUTPUTS))
    assert [o.name for o in depth_only.graph.output] == ["depth"]
    assert [i.name for i in depth_only.graph.input] == ["camera_image", "depth_scale", "depth_range", "out_of_range"]
    assert len(depth_only.graph.node) < len(everything.graph.node)
    onnx.checker.check_model(everything, full_check=True)
    assert {p.key for p in everything.metadata_props} >= {p.key for p in model.metadata_props}


def test_bad_options_are_one_line_errors() -> None:
    with pytest.raises(DeployGraphError, match="unknown deploy graph output"):
        DeployOptions(10, 10, outputs=("depht",))
    with pytest.raises(DeployGraphError, match="not 'yuv422'"):
        DeployOptions(10, 10, encoding="yuv422")
    with pytest.raises(ValueError, match="unsupported image encoding"):
        graph_input(np.zeros((4, 4, 2), np.uint8), "nv21")  # yuv422 is converted to rgb8 (inference/encodings.py)
    with pytest.raises(ValueError, match=r"must have shape \(H, W, 3\)"):
        graph_input(np.zeros((4, 4), np.uint8), "rgb8")


def test_graph_input_is_a_view_of_contiguous_pixels() -> None:
    pixels = np.zeros((8, 10, 3), np.uint8)
    array, encoding = graph_input(pixels, "bgr8")
    assert encoding == "bgr8" and np.shares_memory(array, pixels)
    mono16, encoding = graph_input(np.full((4, 5), 0x1234, np.uint16), "mono16")
    assert encoding == "mono8" and mono16.shape == (4, 5, 1) and (mono16 == 0x12).all()


@pytest.fixture(scope="module")
def network_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, onnx.ModelProto]:
    """A small 3-task network (MobileNetV3-small, 32x48) as fp32, fp16 and int8 files, and a depth + normals one (fp32)."""
    import torch

    from mtl_perception.config import ExperimentConfig
    from mtl_perception.inference.export import export_untrained
    from mtl_perception.inference.precision import CalibrationSpec, make_precision_file

    torch.set_num_threads(1)
    folder = tmp_path_factory.mktemp("deploy_types")

    def export(name: str, tasks: list[str]) -> Path:
        config = ExperimentConfig()
        config.model.encoder, config.model.tasks = "mobilenetv3_small", tasks
        config.model.decoder_channels = config.model.head_channels = 8
        config.data.height, config.data.width = 32, 48
        return export_untrained(folder / f"{name}.onnx", config.validate()).path

    full = export("small", ["depth", "semantic", "normals"])
    files = {"fp32": full, "no_semantic": export("no_semantic", ["depth", "normals"])}
    for precision in ("fp16", "int8"):
        files[precision] = make_precision_file(full, precision, folder / "precision", CalibrationSpec(frames=1)).path
    return {name: load_onnx_file(path) for name, path in files.items()}


CAMERA = (24, 40)  # letterboxed into the 32x48 network: the crop and the resize back are in every graph
TYPE_CONFIGS = [(encoding, batch, out_size) for encoding in ENCODING_LAYOUT for batch in (1, 4) for out_size in ("input", "model")]
OUTPUT_SETS = [subset for n in range(1, len(GRAPH_OUTPUTS) + 1) for subset in itertools.combinations(sorted(GRAPH_OUTPUTS), n)]


def type_problems(model: onnx.ModelProto, encoding: str, batch: int, out_size: str, outputs: tuple[str, ...]) -> list[str]:
    from mtl_perception.inference.trt_ops import check_tensorrt_compat

    options = DeployOptions(*CAMERA, encoding, out_size=out_size, outputs=outputs, batch=batch, points_stride=3)
    return check_tensorrt_compat(compose_deploy_graph(model, options))


@pytest.mark.parametrize("precision", ["fp32", "fp16", "int8"])
def test_every_deploy_graph_passes_the_parser_type_rules(network_files: dict[str, onnx.ModelProto], precision: str) -> None:
    """All outputs in every graph encoding x batch 1, 4 x both output sizes (fp32), or in every encoding with the four
    batch x output size pairs in turn (fp16, int8: the precision changes the network, not the wrappers); each output alone."""
    model = network_files[precision]
    configs = TYPE_CONFIGS if precision == "fp32" else [(encoding, *TYPE_CONFIGS[i % 4][1:]) for i, encoding in enumerate(ENCODING_LAYOUT)]
    cases = [(*config, tuple(GRAPH_OUTPUTS)) for config in configs]
    cases += [(*TYPE_CONFIGS[i * 5 % len(TYPE_CONFIGS)], (output,)) for i, output in enumerate(GRAPH_OUTPUTS)]
    assert len(cases) == (36 if precision == "fp32" else 15)
    rejected = {case: problems for case in cases if (problems := type_problems(model, *case))}
    assert not rejected, f"{len(rejected)} of {len(cases)} {precision} deploy graphs rejected; first: {next(iter(rejected.items()))}"


def test_every_output_set_passes_the_parser_type_rules(network_files: dict[str, onnx.ModelProto]) -> None:
    """All 255 output sets of the 3-task network and all 15 of the depth + normals one (points coloured by the image),
    each at one graph encoding / batch / output size in turn, as the pre and post graphs the torch backend runs
    around its network (the nodes the full graph wraps the network in; full graphs per output are checked above)."""
    from mtl_perception.inference.deploy_graph import compose_deploy_parts, layout_for
    from mtl_perception.inference.model_file import metadata_from_props
    from mtl_perception.inference.trt_ops import check_tensorrt_compat

    producible = [o for o in OUTPUT_SETS if all(t in ("depth", "normals") for output in o for t in OUTPUT_TASKS[output])]
    assert len(OUTPUT_SETS) == 255 and len(producible) == 15
    cases = [("fp32", i, outputs) for i, outputs in enumerate(OUTPUT_SETS)] + [("no_semantic", i, outputs) for i, outputs in enumerate(producible)]
    rejected = {}
    for name, i, outputs in cases:
        model = network_files[name]
        meta = metadata_from_props({p.key: p.value for p in model.metadata_props}, name)
        encoding, batch, out_size = TYPE_CONFIGS[i % len(TYPE_CONFIGS)]
        options = DeployOptions(*CAMERA, encoding, out_size=out_size, outputs=outputs, batch=batch, points_stride=3)
        pre, post = compose_deploy_parts(meta, options, layout_for(meta, options), model.ir_version)
        if problems := check_tensorrt_compat(pre) + check_tensorrt_compat(post):
            rejected[name, outputs] = problems
    assert not rejected, f"{len(rejected)} of {len(cases)} output sets rejected; first: {next(iter(rejected.items()))}"


def test_a_planted_uint8_intermediate_is_rejected_naming_its_node(network_files: dict[str, onnx.ModelProto]) -> None:
    from mtl_perception.inference.trt_ops import check_tensorrt_compat

    graph = compose_deploy_graph(network_files["fp32"], DeployOptions(*CAMERA, outputs=("semantic_color",)))
    assert check_tensorrt_compat(graph) == []
    cast = next(node for node in graph.graph.node if node.op_type == "Cast" and node.input[0] == "palette_bgr")
    cast.input[0] = "planted_palette"  # the palette passes a uint8 Identity before its Cast: a uint8 intermediate
    graph.graph.node.insert(0, onnx.helper.make_node("Identity", ["palette_bgr"], ["planted_palette"], name="planted_identity"))
    problems = check_tensorrt_compat(graph)
    assert any("node planted_identity (Identity)" in p and "output planted_palette is UINT8, an intermediate tensor" in p for p in problems), problems
    assert any("node planted_identity (Identity): reads the UINT8 network input palette_bgr" in p for p in problems), problems


def test_torch_backend_runs_the_same_pre_and_post_graphs(tmp_path: Path, tiny_model_files: tuple[Path, Path]) -> None:
    """torch runs a checkpoint: its pipeline splits the deploy graph around the torch network; same outputs as onnxruntime."""
    onnx_path, checkpoint = tiny_model_files
    rgb = synthetic_frame(72, 100, seed=9)
    settings = FrameSettings(points_stride=2)
    info = camera_info(100, 72)
    outputs = ("depth", "labels", "normals", "semantic_overlay", "points")
    with_torch = FramePipeline(checkpoint, "torch", {"device": "cpu"}, settings, cache_dir=tmp_path)
    with_ort = FramePipeline(onnx_path, "onnxruntime", {"provider": "cpu"}, settings, cache_dir=tmp_path)
    try:
        a = with_torch.run(rgb, "rgb8", outputs, info).arrays
        b = with_ort.run(rgb, "rgb8", outputs, info).arrays
    finally:
        with_torch.close()
        with_ort.close()
    assert set(a) == set(b) == {"depth", "labels", "normals", "semantic_overlay", "points_xyz", "points_extra"}
    np.testing.assert_allclose(a["depth"], b["depth"], rtol=1e-4, equal_nan=True)
    assert (a["labels"] == b["labels"]).mean() >= 0.99  # random weights: near-ties may flip a few pixels
    np.testing.assert_allclose(a["normals"], b["normals"], atol=1e-3)
    np.testing.assert_allclose(a["points_xyz"], b["points_xyz"], rtol=1e-4, atol=1e-5, equal_nan=True)


def test_depth_out_of_range_is_nan_or_rep117_infinities(tmp_path: Path) -> None:
    rgb = synthetic_frame(96, 128)
    pipeline = FramePipeline(MODEL, backend_options={"provider": "cpu"}, cache_dir=tmp_path)
    try:
        free = pipeline.run(rgb, "rgb8", ["depth"], camera_info(128, 96)).arrays["depth"]
        low, high = np.nanpercentile(free, [25, 75])
        pipeline.configure(pipeline.with_settings(depth_min=float(low), depth_max=float(high)))
        as_nan = pipeline.run(rgb, "rgb8", ["depth", "points"], camera_info(128, 96)).arrays
        pipeline.configure(pipeline.with_settings(depth_min=float(low), depth_max=float(high), out_of_range="inf"))
        as_inf = pipeline.run(rgb, "rgb8", ["depth", "points"], camera_info(128, 96)).arrays
        assert pipeline.graphs_built == 2  # the first run had another output set; the range and fill are runtime inputs
    finally:
        pipeline.close()
    near, far = free < low, free > high
    assert np.isnan(as_nan["depth"][near | far]).all()
    assert (as_inf["depth"][near] == -np.inf).all() and (as_inf["depth"][far] == np.inf).all()
    inside = np.isfinite(free) & ~(near | far)
    np.testing.assert_array_equal(as_inf["depth"][inside], as_nan["depth"][inside])
    np.testing.assert_array_equal(as_inf["points_xyz"], as_nan["points_xyz"])  # no point at either infinity


def test_a_batch_of_cameras_gives_each_frame_what_it_gives_alone(tmp_path: Path) -> None:
    """Four cameras of one size in one graph call (batch 4): every output equal to the frame run alone, each with its own intrinsics."""
    pipeline = FramePipeline(MODEL, backend_options={"provider": "cpu"}, settings=FrameSettings(points_stride=2), cache_dir=tmp_path)
    frames = [(synthetic_frame(90, 120, seed=s), "rgb8", camera_info(120, 90, fx=300.0 + 40 * s, fy=300.0 + 40 * s)) for s in range(4)]
    outputs = ("depth", "labels", "normals", "semantic_overlay", "points")
    try:
        together = pipeline.run_batch(frames, outputs)
        for (pixels, encoding, info), batched in zip(frames, together):
            alone = pipeline.run(pixels, encoding, outputs, info)
            np.testing.assert_array_equal(batched.geometry.intrinsics, alone.geometry.intrinsics)
            for name, value in alone.arrays.items():
                np.testing.assert_array_equal(batched.arrays[name], value, err_msg=name)
        assert pipeline.is_built(90, 120, "rgb8", outputs, batch=4) and pipeline.is_built(90, 120, "rgb8", outputs, batch=1)
        with pytest.raises(ValueError, match="one size and encoding"):
            pipeline.run_batch([frames[0], (synthetic_frame(60, 80), "rgb8", None)], outputs)
    finally:
        pipeline.close()


def test_graph_batch_sizes_are_powers_of_two_and_the_capacity() -> None:
    assert [graph_batch_sizes(c) for c in (1, 2, 3, 4, 6, 8)] == [[1], [1, 2], [1, 2, 3], [1, 2, 4], [1, 2, 4, 6], [1, 2, 4, 8]]
    assert [graph_batch_size(n, 6) for n in range(1, 7)] == [1, 2, 4, 4, 6, 6]
    assert graph_batch_size(3, None) == 3 and graph_batch_size(5, 4) == 5  # no capacity, or more frames than it: as they come


def test_a_padded_batch_gives_each_frame_what_it_gives_alone(tmp_path: Path) -> None:
    """Three frames with a capacity of four run in the batch-4 graph (padded with a copy); three results, each as alone."""
    pipeline = FramePipeline(MODEL, backend_options={"provider": "cpu"}, cache_dir=tmp_path)
    frames = [(synthetic_frame(60, 80, seed=s), "rgb8", camera_info(80, 60, fx=200.0 + 30 * s, fy=200.0 + 30 * s)) for s in range(3)]
    outputs = ("depth", "labels", "points")
    try:
        padded = pipeline.run_batch(frames, outputs, capacity=4)
        assert len(padded) == 3
        assert pipeline.is_built(60, 80, "rgb8", outputs, batch=4) and not pipeline.is_built(60, 80, "rgb8", outputs, batch=3)
        for (pixels, encoding, info), batched in zip(frames, padded):
            alone = pipeline.run(pixels, encoding, outputs, info)
            for name, value in alone.arrays.items():
                np.testing.assert_array_equal(batched.arrays[name], value, err_msg=name)
    finally:
        pipeline.close()


def test_fp16_network_file_composes_into_the_deploy_graph(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """precision='fp16' composes the deploy graph around the mixed-precision network file; outputs stay float32 and close to fp32."""
    rgb = synthetic_frame(96, 128, seed=4)
    fp32 = FramePipeline(MODEL, backend_options={"provider": "cpu"}, cache_dir=tmp_path)
    fp16 = FramePipeline(MODEL, backend_options={"provider": "cpu"}, cache_dir=tmp_path, precision="fp16")
    try:
        a = fp32.run(rgb, "rgb8", ["depth", "labels", "normals"]).arrays
        b = fp16.run(rgb, "rgb8", ["depth", "labels", "normals"]).arrays
    finally:
        fp32.close()
        fp16.close()
    assert fp16.precision == "fp16" and b["depth"].dtype == np.float32 and b["normals"].dtype == np.float32
    both = np.isfinite(a["depth"]) & np.isfinite(b["depth"])
    assert np.median(np.abs(a["depth"][both] - b["depth"][both]) / a["depth"][both]) < 2e-3
    assert (a["labels"] == b["labels"]).mean() >= 0.99
