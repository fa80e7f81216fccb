"""The sim-to-real report: real-frame loaders, depth figures, the floor/wall reference and mapping, the command."""
from __future__ import annotations

import json
import math
from pathlib import Path

import cv2
import numpy as np
import pytest

from mtl_perception.evaluation import floor_wall as fw
from mtl_perception.evaluation import sim_to_real as s2r
from mtl_perception.evaluation.real_frames import RealFrame, camera_info, realdata_frames
from mtl_perception.tasks import IGNORE_INDEX
from shared_data import SKIP_HINT, shared_path

REALDATA = shared_path("realdata")
needs_realdata = pytest.mark.skipif(not REALDATA.is_dir(), reason=f"real frames absent ({SKIP_HINT})")
DEPTH_RANGE = (0.1, 10.0)


def iou(a: np.ndarray, b: np.ndarray) -> float:
    return float((a & b).sum() / max((a | b).sum(), 1))


# ---------------------------------------------------------------------------------------------- depth figures

def test_twice_the_truth_is_perfect_after_median_scaling_and_never_within_delta1() -> None:
    gt = np.random.default_rng(0).uniform(0.5, 4.0, (24, 32)).astype(np.float32)
    figures = s2r.score_depth(2.0 * gt, gt, DEPTH_RANGE)
    assert figures["median_scale"] == pytest.approx(0.5)
    assert figures["metric"]["abs_rel"] == pytest.approx(1.0) and figures["metric"]["delta1"] == 0.0
    assert figures["median_scaled"]["abs_rel"] == pytest.approx(0.0, abs=1e-6)
    assert figures["median_scaled"]["rmse"] == pytest.approx(0.0, abs=1e-6)
    assert figures["median_scaled"]["delta1"] == 1.0
    assert figures["coverage"] == 1.0 and figures["pixels"] == gt.size


def test_constant_baseline_and_valid_pixels_by_hand() -> None:
    # valid ground truth 1, 2, 4 (0 = no measurement, 12 m beyond the model's range); one prediction without estimate
    gt = np.array([[1.0, 2.0, 4.0], [0.0, 12.0, 3.0]], np.float32)
    pred = np.array([[1.0, 2.0, 4.0], [5.0, 5.0, np.nan]], np.float32)
    figures = s2r.score_depth(pred, gt, DEPTH_RANGE)
    assert figures["pixels"] == 3 and figures["coverage"] == pytest.approx(3 / 4)
    constant = figures["constant"]  # every pixel = median(1, 2, 4) = 2
    assert constant["abs_rel"] == pytest.approx((1 / 1 + 0 / 2 + 2 / 4) / 3)
    assert constant["rmse"] == pytest.approx(math.sqrt((1 + 0 + 4) / 3))
    assert constant["delta1"] == pytest.approx(1 / 3)  # only 2 m is within 1.25x of 2 m
    assert figures["metric"]["abs_rel"] == pytest.approx(0.0) and figures["metric"]["delta1"] == 1.0


def test_a_frame_without_scorable_pixels_has_no_figures() -> None:
    figures = s2r.score_depth(np.ones((4, 4), np.float32), np.zeros((4, 4), np.float32), DEPTH_RANGE)
    assert figures["pixels"] == 0 and math.isnan(figures["metric"]["abs_rel"])


# ---------------------------------------------------------------------------------------------- classes and IoU

def test_class_mapping_covers_every_synthetic_class_with_nyu40_names() -> None:
    from mtl_perception.data.nyuv2 import nyuv2_class_names
    from mtl_perception.data.synth_classes import SYNTH_CLASS_NAMES

    mapping = s2r.synth_to_nyu40()
    assert set(mapping) == set(SYNTH_CLASS_NAMES)
    assert set(mapping.values()) <= set(nyuv2_class_names(40))
    assert mapping["floor"] == "floor" and mapping["wall"] == "wall"


def test_surface_table_maps_synthetic_and_nyu40_names_and_reports_the_rest() -> None:
    table, unmapped = s2r.surface_table(["wall", "floor", "ceiling", "floor mat", "spaceship"])
    assert table[:5].tolist() == [fw.WALL, fw.FLOOR, fw.OTHER, fw.OTHER, fw.OTHER]
    assert unmapped == ["spaceship"]


def test_nyu40_labels_become_floor_wall_other() -> None:
    labels = np.array([[0, 1, 21, IGNORE_INDEX]], np.uint8)  # wall, floor, ceiling, unlabelled (0-based NYU40)
    assert s2r.nyu40_surfaces(labels).tolist() == [[fw.WALL, fw.FLOOR, fw.OTHER, IGNORE_INDEX]]


def test_floor_and_wall_iou_by_hand() -> None:
    F, W, O, X = fw.FLOOR, fw.WALL, fw.OTHER, IGNORE_INDEX
    reference = np.array([[F, F, F, W], [W, O, O, X]], np.uint8)
    predicted = np.array([[F, F, W, W], [W, F, O, F]], np.uint8)
    result = s2r.surface_iou(s2r.surface_confusion(predicted, reference))
    assert result["floor_iou"] == pytest.approx(2 / 4)  # 2 shared; 3 + 3 - 2 in either (the ignored pixel left out)
    assert result["wall_iou"] == pytest.approx(2 / 3)
    assert result["floor_share"] == pytest.approx(3 / 7) and result["wall_share"] == pytest.approx(2 / 7)


# ---------------------------------------------------------------------------------------------- geometric reference

def test_geometric_floor_wall_reference_matches_the_renderer_labels() -> None:
    from mtl_perception.data.synth_classes import SynthClass
    from mtl_perception.data.synthetic import render_frame

    scored = 0
    for seed in range(6):
        frame = render_frame(seed, 240, 320)
        floor, wall = frame.labels == SynthClass.FLOOR, frame.labels == SynthClass.WALL
        if floor.mean() < 0.1 or wall.mean() < 0.1:
            continue  # a view of mostly one surface says little
        reference = fw.geometric_floor_wall(frame.depth, frame.K)
        assert iou(reference == fw.FLOOR, floor) >= 0.8, seed
        assert iou(reference == fw.WALL, wall) >= 0.8, seed
        scored += 1
    assert scored >= 3


def test_geometric_reference_finds_no_floor_in_a_frontal_wall() -> None:
    K = np.array([[200.0, 0, 80], [0, 200.0, 60], [0, 0, 1]])
    reference = fw.geometric_floor_wall(np.full((120, 160), 3.0, np.float32), K)
    assert not (reference == fw.FLOOR).any()
    assert (reference == fw.WALL).mean() > 0.9


# ---------------------------------------------------------------------------------------------- real frames

@needs_realdata
def test_realdata_frames_with_their_intrinsics_and_metric_depth() -> None:
    frames, skipped = realdata_frames(REALDATA)
    assert skipped == []
    by_dataset: dict[str, list[RealFrame]] = {}
    for frame in frames:
        by_dataset.setdefault(frame.dataset, []).append(frame)
    sizes = {"nyu_demo": (3, (480, 640), 518.8579), "realsense_d435i": (4, (480, 848), 611.451),
             "kitti_demo": (3, (375, 1242), 707.0493)}
    for name, (count, size, fx) in sizes.items():
        assert len(by_dataset[name]) == count
        for frame in by_dataset[name]:
            assert frame.rgb.shape == (*size, 3) and frame.depth.shape == size and frame.rgb.dtype == np.uint8
            assert frame.K[0, 0] == pytest.approx(fx, abs=1e-3)
            assert frame.indoor == (name != "kitti_demo")
            measured = frame.depth[frame.depth > 0]
            assert (1.0 < np.median(measured) < 10.0) if frame.indoor else (np.median(measured) > 5.0)
    assert by_dataset["realsense_d435i"][0].K[1, 2] == pytest.approx(249.473, abs=1e-3)


@needs_realdata
def test_geometric_reference_finds_the_floor_of_every_nyu_demo_frame() -> None:
    frames, _ = realdata_frames(REALDATA)
    for frame in (f for f in frames if f.dataset == "nyu_demo"):
        reference = fw.geometric_floor_wall(frame.depth, frame.K)
        floor = reference == fw.FLOOR
        assert floor.mean() > 0.05, frame.name
        rows = np.nonzero(floor)[0]
        assert np.median(rows) > frame.depth.shape[0] / 2, frame.name  # the floor lies in the lower half of the view


@needs_realdata
def test_camera_info_of_a_real_frame_is_what_the_pipeline_checks() -> None:
    from mtl_perception.inference.camera_info import scale_camera_info

    frame = realdata_frames(REALDATA)[0][0]
    scaled = scale_camera_info(camera_info(frame), 320, 240)
    assert scaled.k[0] == pytest.approx(frame.K[0, 0] / 2) and (scaled.width, scaled.height) == (320, 240)


# ---------------------------------------------------------------------------------------------- written layouts, the command

def write_metric3d_layout(folder: Path, frames: list) -> None:
    """Rendered frames in the Metric3D demo layout (rgb/, depth/ in mm, test_annotations.json)."""
    (folder / "rgb").mkdir(parents=True)
    (folder / "depth").mkdir()
    files = []
    for i, frame in enumerate(frames):
        cv2.imwrite(str(folder / "rgb" / f"rgb_{i}.png"), frame.rgb[:, :, ::-1])
        cv2.imwrite(str(folder / "depth" / f"depth_{i}.png"), np.round(frame.depth * 1000).astype(np.uint16))
        K = frame.K
        files.append({"cam_in": [K[0, 0], K[1, 1], K[0, 2], K[1, 2]], "rgb": f"data/{folder.name}/rgb/rgb_{i}.png",
                      "depth": f"data/{folder.name}/depth/depth_{i}.png", "depth_scale": 1000.0})
    (folder / "test_annotations.json").write_text(json.dumps({"files": files}))


def write_realsense_layout(folder: Path, frame) -> None:
    """A rendered frame in the slamcore RealSense layout (listings, BGR colour, mm depth, OpenCV sensors.yaml)."""
    (folder / "color").mkdir(parents=True)
    (folder / "aligned_depth").mkdir()
    cv2.imwrite(str(folder / "color" / "10.000010.png"), frame.rgb[:, :, ::-1])
    cv2.imwrite(str(folder / "aligned_depth" / "10.000000.png"), np.round(frame.depth * 1000).astype(np.uint16))
    (folder / "color.txt").write_text("10.000010 color/10.000010.png\n")
    (folder / "aligned_depth.txt").write_text("10.000000 aligned_depth/10.000000.png\n")
    storage = cv2.FileStorage(str(folder / "sensors.yaml"), cv2.FILE_STORAGE_WRITE)
    storage.startWriteStruct("d400_color_optical_frame", cv2.FILE_NODE_MAP)
    K = frame.K
    storage.write("intrinsics", np.array([[K[0, 0], K[0, 2], K[1, 1], K[1, 2]]]))
    storage.endWriteStruct()
    storage.release()


@pytest.fixture(scope="module")
def rendered() -> list:
    from mtl_perception.data.synthetic import render_frame

    return [render_frame(seed, 96, 128) for seed in (1, 4)]


@pytest.fixture(scope="module")
def realdata_copy(tmp_path_factory: pytest.TempPathFactory, rendered: list) -> Path:
    root = tmp_path_factory.mktemp("realdata")
    write_metric3d_layout(root / "metric3d_demo" / "nyu_demo", rendered)
    write_realsense_layout(root / "realsense_d435i", rendered[0])
    return root


def test_loaders_read_both_layouts_back(realdata_copy: Path, rendered: list) -> None:
    frames, skipped = realdata_frames(realdata_copy)
    assert [f.dataset for f in frames] == ["nyu_demo", "nyu_demo", "realsense_d435i"]
    assert skipped == [f"kitti_demo: {realdata_copy / 'metric3d_demo' / 'kitti_demo'} is absent, skipped"]
    for frame, source in zip(frames, [*rendered, rendered[0]]):
        np.testing.assert_array_equal(frame.rgb, source.rgb)
        np.testing.assert_allclose(frame.depth, source.depth, atol=5e-4)
        np.testing.assert_allclose(frame.K, source.K)


def test_command_writes_the_report_and_strips_for_two_models(model_file: Path, realdata_copy: Path, tmp_path: Path,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    from mtl_perception.cli import main

    out = tmp_path / "report"
    assert main(["sim-to-real", "--model", str(model_file), "--compare", str(model_file), "--realdata",
                 str(realdata_copy), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    report = json.loads((out / "report.json").read_text())
    assert [m["tag"] for m in report["models"]] == ["tiny#1", "tiny#2"]
    first, second = report["models"]
    assert len(first["frames"]) == 3 and first["frames"] == second["frames"]  # one model twice: the same figures
    nyu = first["frames"][0]
    assert nyu["reference"] == s2r.GEOMETRIC_REFERENCE and nyu["floor_iou"] is not None
    assert first["frames"][2]["reference"] is None  # floor/wall only on NYU frames
    assert set(first["datasets"]) == {"nyu_demo", "realsense_d435i"}
    assert len(first["targets"]) == 2 and all(t["target"].startswith("tiny#1: ") for t in first["targets"])
    strips = sorted(p.name for p in (out / "strips").iterdir())
    assert strips == ["nyu_demo_rgb_0.png", "nyu_demo_rgb_1.png", "realsense_d435i_10.000010.png"]
    strip = cv2.imread(str(out / "strips" / strips[0]))
    assert strip.shape[1] > 6 * strip.shape[0]  # input, 2 depths, gt, 2 semantics, reference side by side
    markdown = (out / "report.md").read_text()
    assert markdown in printed
    for heading in ("## Metric depth", "## Median-scaled depth", "## Floor and wall IoU", "## Targets"):
        assert heading in markdown
    assert "AbsRel tiny#1 | RMSE m tiny#1" in markdown and "**mean of 2**" in markdown
    assert "kitti_demo" in markdown and "absent" in markdown  # the skipped dataset is named in the notes


@pytest.mark.parametrize("flag", ["--model", "--realdata"])
def test_command_names_a_missing_model_or_folder_in_one_line(flag: str, model_file: Path, realdata_copy: Path,
                                                             tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from mtl_perception.cli import main

    args = {"--model": str(model_file), "--realdata": str(realdata_copy), flag: str(tmp_path / "missing")}
    code = main(["sim-to-real", *[v for pair in args.items() for v in pair], "--out", str(tmp_path / "out")])
    error = capsys.readouterr().err
    assert code == 2 and error.count("\n") == 1
    assert error.startswith("mtl-perception sim-to-real: error: ") and f"{flag} " in error and "missing" in error


def write_nyu_mat(path: Path, height: int = 24, width: int = 32) -> None:
    """A labelled-NYUv2-shaped .mat (all 1449 frames, stored transposed): wall above, floor below, depth 1-5 m."""
    import h5py

    from mtl_perception.data.nyuv2 import NUM_FRAMES, nyuv2_class_names, raw_label_lut

    lut, names = raw_label_lut(40), nyuv2_class_names(40)
    wall_raw, floor_raw = (int(np.flatnonzero(lut == names.index(name))[0]) for name in ("wall", "floor"))
    raw = np.full((height, width), wall_raw, np.uint16)
    raw[height // 2:] = floor_raw
    depth = np.broadcast_to(np.linspace(1.0, 5.0, height, dtype=np.float32)[:, None], (height, width))
    image = np.random.default_rng(0).integers(0, 256, (3, width, height), dtype=np.uint8)
    with h5py.File(path, "w") as handle:
        handle["images"] = np.broadcast_to(image, (NUM_FRAMES, 3, width, height))
        handle["depths"] = np.broadcast_to(depth.T, (NUM_FRAMES, width, height))
        handle["labels"] = np.broadcast_to(raw.T, (NUM_FRAMES, width, height))


def test_nyu_mat_scores_the_official_test_split_against_its_nyu40_labels(model_file: Path, realdata_copy: Path,
                                                                          tmp_path: Path) -> None:
    from mtl_perception.cli import main
    from mtl_perception.data.nyuv2 import split_indices

    mat = tmp_path / "nyu_depth_v2_labeled.mat"
    write_nyu_mat(mat)
    out = tmp_path / "report"
    assert main(["sim-to-real", "--model", str(model_file), "--realdata", str(realdata_copy), "--nyu-mat", str(mat),
                 "--out", str(out)]) == 0
    report = json.loads((out / "report.json").read_text())["models"][0]
    nyu = report["datasets"]["nyuv2_test"]
    assert nyu["frames"] == len(split_indices("test")) == 654 and nyu["indoor"]
    assert nyu["reference"] == s2r.LABEL_REFERENCE
    assert nyu["floor_share"] == pytest.approx(0.5) and nyu["wall_share"] == pytest.approx(0.5)  # half each, by construction
    assert all(0.0 <= nyu[key] <= 1.0 or math.isnan(nyu[key]) for key in ("floor_iou", "wall_iou"))
    names = [f["frame"] for f in report["frames"] if f["dataset"] == "nyuv2_test"]
    assert names[:2] == [f"{int(i):04d}" for i in split_indices("test")[:2]]  # frames named by their index in the .mat
    assert "nyuv2_test" in (out / "report.md").read_text()
