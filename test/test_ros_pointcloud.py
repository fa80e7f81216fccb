"""Point clouds from depth against analytic ground truth; camera info validation and scaling."""
from __future__ import annotations

import math

import cv2
import numpy as np
import pytest
from sensor_msgs.msg import CameraInfo
from std_msgs.msg import Header

from mtl_perception.inference.camera_info import CameraInfoError, image_size, scale_camera_info, validate_camera_info
from mtl_perception.ros.pointcloud import NO_LABEL, pointcloud_to_array
from numpy_oracle import backproject, depth_to_pointcloud, pack_rgb

from shared_data import SKIP_HINT, shared_path

REALDATA = shared_path("realdata")
K = np.array([[520.0, 0.0, 318.6], [0.0, 515.5, 241.2], [0.0, 0.0, 1.0]])


def plane_depth(k: np.ndarray, height: int, width: int, normal: np.ndarray, offset: float) -> np.ndarray:
    """Ground-truth depth of the plane n . X = offset seen through pinhole ``k`` (float64)."""
    v, u = np.mgrid[0:height, 0:width].astype(np.float64)
    rays = np.stack([(u - k[0, 2]) / k[0, 0], (v - k[1, 2]) / k[1, 1], np.ones_like(u)], axis=-1)
    return offset / (rays @ normal)


def camera_info(k: np.ndarray, width: int, height: int) -> CameraInfo:
    info = CameraInfo(width=width, height=height)
    info.k = k.reshape(-1).tolist()
    info.p = np.hstack([k, np.zeros((3, 1))]).reshape(-1).tolist()
    info.r = np.eye(3).reshape(-1).tolist()
    return info


def test_backprojection_matches_plane_ground_truth() -> None:
    normal = np.array([0.1, -0.3, 1.0]) / np.linalg.norm([0.1, -0.3, 1.0])
    depth = plane_depth(K, 480, 640, normal, 2.5).astype(np.float32)
    header = Header(frame_id="camera_optical")
    cloud = depth_to_pointcloud(depth, K, stride=1, header=header)
    points = pointcloud_to_array(cloud)
    assert cloud.header.frame_id == "camera_optical" and cloud.height == 1 and cloud.width == 480 * 640 and cloud.is_dense
    xyz = np.stack([points["x"], points["y"], points["z"]], axis=-1).reshape(-1, 3).astype(np.float64)
    # every point lies on the plane, and projects back onto its own pixel
    assert np.abs(xyz @ normal - 2.5).max() <= 1e-4
    v, u = np.mgrid[0:480, 0:640]
    projected_u = K[0, 0] * xyz[:, 0] / xyz[:, 2] + K[0, 2]
    projected_v = K[1, 1] * xyz[:, 1] / xyz[:, 2] + K[1, 2]
    assert np.abs(projected_u - u.reshape(-1)).max() < 1e-3 and np.abs(projected_v - v.reshape(-1)).max() < 1e-3
    # and the same points from the exact float64 back-projection differ by <= 1e-4 m
    x, y, z = backproject(depth.astype(np.float64), K)
    exact = np.stack([x, y, z], axis=-1).reshape(-1, 3)
    assert np.abs(xyz - exact).max() <= 1e-4


def test_stride_nan_and_organised_layout() -> None:
    depth = np.full((6, 8), 2.0, np.float32)
    depth[0, 0] = np.nan
    depth[2, 4] = 0.0
    depth[4, 2] = np.inf
    rgb = np.zeros((6, 8, 3), np.uint8)
    rgb[..., 0] = 200
    rgb[..., 2] = 7
    labels = np.full((6, 8), 3, np.uint8)
    cloud = depth_to_pointcloud(depth, K, rgb, labels, stride=2)
    points = pointcloud_to_array(cloud)
    assert cloud.height == 1 and cloud.width == 3 * 4 - 3 and cloud.is_dense  # the three invalid pixels sit on the stride grid
    assert (points["label"] == 3).all() and (points["rgb"] == (200 << 16 | 7)).all()
    organised = depth_to_pointcloud(depth, K, rgb, None, stride=2, organized=True)
    grid = pointcloud_to_array(organised)
    assert (organised.height, organised.width) == (3, 4) and not organised.is_dense
    assert np.isnan(grid["z"][0, 0]) and np.isnan(grid["x"][1, 2]) and np.isnan(grid["y"][2, 1])
    assert (grid["label"] == NO_LABEL).all()
    assert [(f.name, f.offset, f.datatype) for f in organised.fields] == [("x", 0, 7), ("y", 4, 7), ("z", 8, 7), ("rgb", 12, 7), ("label", 16, 2)]
    assert organised.point_step == 20 and organised.row_step == 80 and len(organised.data) == 240


def test_rgb_packs_as_rviz_expects() -> None:
    packed = pack_rgb(np.array([[1, 2, 3]], np.uint8))
    assert packed[0] == 0x010203
    as_float = packed.astype("<u4").view("<f4")  # RViz reads the float's bits as 0x00RRGGBB
    assert as_float.view("<u4")[0] & 0xFF == 3


@pytest.mark.skipif(not REALDATA.is_dir(), reason=f"shared/realdata (real camera frames) is absent: {SKIP_HINT}")
def test_real_sensor_depth_reprojects_to_its_pixels() -> None:
    folder = REALDATA / "realsense_d435i"
    storage = cv2.FileStorage(str(folder / "sensors.yaml"), cv2.FILE_STORAGE_READ)
    fx, cx, fy, cy = storage.getNode("d400_color_optical_frame").getNode("intrinsics").mat().reshape(-1)  # stored as fx, cx, fy, cy
    assert (round(fx, 3), round(fy, 3), round(cx, 3), round(cy, 3)) == (611.451, 611.486, 433.204, 249.473)  # the README's figures
    k = np.array([[fx, 0.0, cx], [0.0, fy, cy], [0.0, 0.0, 1.0]])
    raw = cv2.imread(str(sorted((folder / "aligned_depth").glob("*.png"))[0]), cv2.IMREAD_UNCHANGED)
    depth = raw.astype(np.float32) / 1000.0
    depth[raw == 0] = np.nan
    cloud = depth_to_pointcloud(depth, k, stride=1, organized=True)
    grid = pointcloud_to_array(cloud)
    valid = np.isfinite(grid["z"])
    assert valid.sum() == (raw > 0).sum() > 0
    v, u = np.nonzero(valid)
    x, y, z = grid["x"][valid].astype(np.float64), grid["y"][valid].astype(np.float64), grid["z"][valid].astype(np.float64)
    np.testing.assert_allclose(z, depth[valid], atol=1e-6)
    assert np.abs(k[0, 0] * x / z + k[0, 2] - u).max() < 1e-3
    assert np.abs(k[1, 1] * y / z + k[1, 2] - v).max() < 1e-3


def test_scale_camera_info_keeps_pixel_centres_aligned() -> None:
    info = camera_info(K, 640, 480)
    info.p[3] = -0.05 * K[0, 0]  # a stereo right camera's Tx = -fx * baseline
    half = scale_camera_info(info, 320, 240)
    assert (half.width, half.height) == (320, 240)
    assert half.k[0] == pytest.approx(260.0) and half.k[4] == pytest.approx(257.75)
    assert half.k[2] == pytest.approx((318.6 + 0.5) * 0.5 - 0.5) and half.k[5] == pytest.approx((241.2 + 0.5) * 0.5 - 0.5)
    assert half.p[3] == pytest.approx(-0.05 * 260.0)
    assert info.width == 640 and info.k[0] == 520.0  # the input is untouched
    # a point seen at the centre of source pixel (u, v) lands where cv2.resize puts that pixel centre
    u, v = 100.0, 50.0
    assert (u + 0.5) * 0.5 - 0.5 == pytest.approx(half.k[0] * ((u - K[0, 2]) / K[0, 0]) + half.k[2])
    assert (v + 0.5) * 0.5 - 0.5 == pytest.approx(half.k[4] * ((v - K[1, 2]) / K[1, 1]) + half.k[5])
    same = scale_camera_info(info, 640, 480)
    np.testing.assert_allclose(same.k, info.k)


def test_scale_camera_info_folds_binning_and_roi() -> None:
    info = camera_info(K, 640, 480)
    info.binning_x = info.binning_y = 2
    assert image_size(info) == (320, 240)
    scaled = scale_camera_info(info, 320, 240)
    assert scaled.k[0] == pytest.approx(260.0) and scaled.k[2] == pytest.approx((318.6 + 0.5) / 2 - 0.5)
    assert scaled.binning_x == 0 and scaled.roi.width == 0
    roi = camera_info(K, 640, 480)
    roi.roi.x_offset, roi.roi.y_offset, roi.roi.width, roi.roi.height = 100, 40, 200, 100
    assert image_size(roi) == (200, 100)
    cropped = scale_camera_info(roi, 200, 100)
    assert cropped.k[2] == pytest.approx(318.6 - 100) and cropped.k[5] == pytest.approx(241.2 - 40)


@pytest.mark.parametrize(
    "edit,pattern",
    [
        (lambda i: setattr(i, "k", [0.0] * 9), "focal length"),
        (lambda i: i.k.__setitem__(4, 0.0), "focal length"),
        (lambda i: i.k.__setitem__(2, math.nan), "NaN"),
        (lambda i: i.p.__setitem__(0, math.inf), "NaN or infinity"),
        (lambda i: setattr(i, "width", 0), "size"),
    ],
)
def test_validate_camera_info_rejects_unusable_calibration(edit, pattern: str) -> None:
    info = camera_info(K, 640, 480)
    edit(info)
    with pytest.raises(CameraInfoError, match=pattern):
        validate_camera_info(info)
    with pytest.raises(CameraInfoError):
        scale_camera_info(info, 320, 240)
