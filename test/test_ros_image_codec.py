"""The node's own image codec: round trips, row padding, byte order, every rejection, cv_bridge parity."""
from __future__ import annotations

from types import SimpleNamespace

import cv2
import numpy as np
import pytest
from sensor_msgs.msg import CompressedImage, Image
from std_msgs.msg import Header

from mtl_perception.inference.image_codec import ImageDecodeError, array_to_image_msg, compressed_msg_to_array, encoding_layout, image_msg_to_array

from shared_data import SKIP_HINT, shared_path

REALDATA = shared_path("realdata")
RNG = np.random.default_rng(0)


def raw_msg(pixels: np.ndarray, encoding: str, pad: int = 0, bigendian: bool = False) -> Image:
    """An Image with ``pad`` junk bytes after every row and data in the requested byte order."""
    wire = pixels.astype(pixels.dtype.newbyteorder(">" if bigendian else "<"))
    rows = wire.reshape(pixels.shape[0], -1).view(np.uint8)
    padded = np.concatenate([rows, np.full((rows.shape[0], pad), 0xAB, np.uint8)], axis=1)
    return Image(height=pixels.shape[0], width=pixels.shape[1], encoding=encoding, is_bigendian=int(bigendian), step=padded.shape[1], data=padded.tobytes())


CASES = [
    ("rgb8", np.uint8, 3),
    ("bgr8", np.uint8, 3),
    ("rgba8", np.uint8, 4),
    ("bgra8", np.uint8, 4),
    ("mono8", np.uint8, 1),
    ("mono16", np.uint16, 1),
    ("16UC1", np.uint16, 1),
    ("32FC1", np.float32, 1),
    ("8UC3", np.uint8, 3),
    ("32FC3", np.float32, 3),
]


def random_pixels(dtype: type, channels: int, height: int = 5, width: int = 7) -> np.ndarray:
    shape = (height, width) if channels == 1 else (height, width, channels)
    if np.issubdtype(dtype, np.floating):
        return RNG.normal(size=shape).astype(dtype)
    return RNG.integers(0, np.iinfo(dtype).max, size=shape, endpoint=True).astype(dtype)


@pytest.mark.parametrize("encoding,dtype,channels", CASES)
@pytest.mark.parametrize("pad", [0, 3])
@pytest.mark.parametrize("bigendian", [False, True])
def test_decode_honours_padding_and_byte_order(encoding: str, dtype: type, channels: int, pad: int, bigendian: bool) -> None:
    pixels = random_pixels(dtype, channels)
    decoded = image_msg_to_array(raw_msg(pixels, encoding, pad, bigendian))
    assert decoded.dtype == np.dtype(dtype) and decoded.dtype.isnative
    np.testing.assert_array_equal(decoded, pixels)
    assert decoded.flags.writeable and decoded.flags.c_contiguous


def test_big_endian_mono16_known_bytes() -> None:
    msg = Image(height=1, width=2, encoding="mono16", is_bigendian=1, step=4, data=bytes([0x01, 0x02, 0xFF, 0x00]))
    np.testing.assert_array_equal(image_msg_to_array(msg), [[0x0102, 0xFF00]])
    msg.is_bigendian = 0
    np.testing.assert_array_equal(image_msg_to_array(msg), [[0x0201, 0x00FF]])


@pytest.mark.parametrize("encoding,dtype,channels", [c for c in CASES if c[0] in ("32FC1", "32FC3", "mono8", "bgr8", "mono16", "16UC1")])
def test_encode_round_trip_keeps_header(encoding: str, dtype: type, channels: int) -> None:
    pixels = random_pixels(dtype, channels, 4, 6)
    header = Header(frame_id="camera_optical")
    header.stamp.sec, header.stamp.nanosec = 12, 345
    msg = array_to_image_msg(pixels, encoding, header)
    assert (msg.encoding, msg.height, msg.width, msg.step) == (encoding, 4, 6, 6 * channels * np.dtype(dtype).itemsize)
    assert msg.header.frame_id == "camera_optical" and msg.header.stamp.nanosec == 345
    np.testing.assert_array_equal(image_msg_to_array(msg), pixels)


def test_encode_rejects_mismatched_arrays() -> None:
    with pytest.raises(ValueError, match="does not fit"):
        array_to_image_msg(np.zeros((2, 2), np.float64), "32FC1")
    with pytest.raises(ValueError, match="does not fit"):
        array_to_image_msg(np.zeros((2, 2, 3), np.uint8), "mono8")
    with pytest.raises(ValueError, match="cannot encode"):
        array_to_image_msg(np.zeros((2, 2), np.uint8), "yuv422")


def test_encoding_layout_opencv_types() -> None:
    assert encoding_layout("16SC2") == (np.dtype("i2"), 2)
    assert encoding_layout("64FC1") == (np.dtype("f8"), 1)


@pytest.mark.parametrize(
    "change,pattern",
    [
        ({"encoding": "nv21"}, "unsupported image encoding 'nv21'"),  # yuv422 and bayer_* are converted (inference/encodings.py)
        ({"encoding": "nv24"}, "unsupported image encoding"),
        ({"encoding": "x" * 100_000}, "unsupported image encoding 'xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx…';"),
        ({"step": 8}, "step 8 is shorter than one row"),
        ({"data": bytes(4 * 3 * 3 - 1)}, "truncated"),
        ({"height": 0, "data": b""}, "zero-size"),
        ({"width": 0}, "zero-size"),
        ({"height": 5000, "width": 5000}, "exceeds the limit"),
    ],
)
def test_decode_rejects_bad_messages(change: dict, pattern: str) -> None:
    fields = {"height": 4, "width": 3, "encoding": "rgb8", "is_bigendian": 0, "step": 9, "data": bytes(36)}
    fields.update(change)
    with pytest.raises(ImageDecodeError, match=pattern):
        image_msg_to_array(SimpleNamespace(**fields), max_pixels=1_000_000)


def test_pixel_limit_is_checked_before_allocation() -> None:
    # 100000 x 100000 rgb8 would need 30 GB; the claim is rejected from the header fields alone.
    msg = SimpleNamespace(height=100_000, width=100_000, encoding="rgb8", is_bigendian=0, step=300_000, data=b"")
    with pytest.raises(ImageDecodeError, match="exceeds the limit"):
        image_msg_to_array(msg)


def compressed(image: np.ndarray, ext: str) -> CompressedImage:
    ok, data = cv2.imencode(ext, image)
    assert ok
    return CompressedImage(format=ext.strip("."), data=data.tobytes())


def test_compressed_png_is_lossless_and_jpeg_close() -> None:
    bgr = RNG.integers(0, 256, size=(32, 48, 3), dtype=np.uint8)
    pixels, encoding = compressed_msg_to_array(compressed(bgr, ".png"))
    assert encoding == "bgr8"
    np.testing.assert_array_equal(pixels, bgr)
    smooth = cv2.GaussianBlur(bgr, (9, 9), 3)
    pixels, encoding = compressed_msg_to_array(compressed(smooth, ".jpg"))
    assert encoding == "bgr8" and pixels.shape == smooth.shape
    assert np.abs(pixels.astype(int) - smooth).mean() < 8
    mono16 = RNG.integers(0, 65536, size=(8, 9), dtype=np.uint16)
    pixels, encoding = compressed_msg_to_array(compressed(mono16, ".png"))
    assert encoding == "mono16"
    np.testing.assert_array_equal(pixels, mono16)


def test_compressed_rejects_corrupt_and_oversized_data() -> None:
    good = compressed(np.zeros((16, 16, 3), np.uint8), ".jpg")
    with pytest.raises(ImageDecodeError, match="neither a readable PNG nor JPEG"):
        compressed_msg_to_array(CompressedImage(format="jpeg", data=b"not an image at all"))
    with pytest.raises(ImageDecodeError, match="no data"):
        compressed_msg_to_array(CompressedImage(format="jpeg", data=b""))
    truncated = CompressedImage(format="jpeg", data=bytes(good.data)[:40])
    with pytest.raises(ImageDecodeError):
        compressed_msg_to_array(truncated)
    png = compressed(np.zeros((16, 16, 3), np.uint8), ".png")
    broken = bytearray(png.data)
    broken[40:] = bytes(len(broken) - 40)
    with pytest.raises(ImageDecodeError, match="failed to decode"):
        compressed_msg_to_array(CompressedImage(format="png", data=bytes(broken)))
    with pytest.raises(ImageDecodeError, match="exceeds the limit"):
        compressed_msg_to_array(png, max_pixels=100)
    with pytest.raises(ImageDecodeError, match="compressedDepth"):
        compressed_msg_to_array(CompressedImage(format="16UC1; compressedDepth png", data=bytes(png.data)))


@pytest.mark.skipif(not REALDATA.is_dir(), reason=f"shared/realdata (real camera frames) is absent: {SKIP_HINT}")
def test_real_frames_round_trip_through_messages() -> None:
    frames = [
        (sorted((REALDATA / "realsense_d435i" / "color").glob("*.png"))[0], cv2.IMREAD_COLOR, "bgr8"),
        (sorted((REALDATA / "euroc_mono" / "ir0").glob("*.png"))[0], cv2.IMREAD_GRAYSCALE, "mono8"),
        (sorted((REALDATA / "realsense_d435i" / "aligned_depth").glob("*.png"))[0], cv2.IMREAD_UNCHANGED, "16UC1"),
    ]
    for path, flag, encoding in frames:
        pixels = cv2.imread(str(path), flag)
        np.testing.assert_array_equal(image_msg_to_array(array_to_image_msg(pixels, encoding)), pixels)
        data = path.read_bytes()
        decoded, _ = compressed_msg_to_array(CompressedImage(format="png", data=data))
        np.testing.assert_array_equal(decoded if decoded.ndim == pixels.ndim else decoded[..., 0], pixels)


def test_matches_ros2_cv_bridge_where_importable() -> None:
    import importlib.metadata

    try:
        importlib.metadata.distribution("cv-bridge")
        pytest.skip("the importable cv_bridge is the PyPI 'cv-bridge' (a stale ROS 1 copy), not ROS 2's cv_bridge")
    except importlib.metadata.PackageNotFoundError:
        pass
    cv_bridge = pytest.importorskip("cv_bridge", reason="ROS 2 cv_bridge is not installed (no PyPI wheel; it comes with a ROS 2 distribution)")
    bridge = cv_bridge.CvBridge()
    for encoding, dtype, channels in CASES:
        for bigendian in (False, True):
            pad = 2 * channels * np.dtype(dtype).itemsize  # two whole pixels of row padding
            msg = raw_msg(random_pixels(dtype, channels), encoding, pad=pad, bigendian=bigendian)
            np.testing.assert_array_equal(image_msg_to_array(msg), bridge.imgmsg_to_cv2(msg))
