"""The one table of camera encodings the package reads, and how each becomes 8-bit pixels (OpenCV).

Used by the node's per-frame path (``frame_pipeline.graph_input``: pixels as the deploy graph takes them),
by ``processing.to_rgb`` (calibration frames, tools) and by the image codec (``inference/image_codec.py``: element
type and channels of a message), so the three can never disagree.

Conversions (as cv_bridge makes them, ``cv_bridge/src/cv_bridge.cpp``):
- 8-bit rgb8 / bgr8 / rgba8 / bgra8 / mono8 pass as they are (no copy).
- ``8UC1`` / ``8UC3`` / ``8UC4`` carry no channel order. They are taken as OpenCV's own order, mono / BGR /
  BGRA: what ``cv_bridge.cv2_to_imgmsg(frame)`` publishes for a frame read with OpenCV (its default
  ``encoding="passthrough"`` names a BGR image ``8UC3``), which is how such streams arise. cv_bridge itself
  refuses a colour conversion of them; a publisher with RGB data must say ``rgb8``.
- 16-bit mono16 / 16UC1 / rgb16 / bgr16 / rgba16 / bgra16: scaled by 255/65535 and rounded (cv_bridge's
  ``convertTo(CV_8U, 255.0 / 65535.0)``), not cut to their top byte.
- Bayer ``bayer_{rggb,bggr,gbrg,grbg}{8,16}``: demosaiced to RGB by OpenCV (bilinear, cv_bridge's choice),
  16-bit ones at 16 bit before scaling.
- ``yuv422`` (UYVY byte order, as ROS names it) and ``yuv422_yuy2`` (YUYV): converted to RGB by OpenCV
  (BT.601); the width must be even.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

# the 8-bit layouts the deploy graph takes (``deploy_graph.ENCODING_LAYOUT``) and their channel counts
GRAPH_ENCODINGS = {"rgb8": 3, "bgr8": 3, "rgba8": 4, "bgra8": 4, "mono8": 1}


@dataclass(frozen=True)
class PixelFormat:
    """One camera encoding: element type, channels, the 8-bit encoding it becomes, and how."""

    dtype: str  # numpy dtype code of one element: u1 | u2
    channels: int
    graph: str  # one of GRAPH_ENCODINGS
    convert: Callable[[np.ndarray], np.ndarray] | None = None  # None: the pixels pass as they are
    even_width: bool = False  # YUV 4:2:2 shares chroma between pixel pairs


def scale16(image: np.ndarray) -> np.ndarray:
    """uint16 -> uint8 scaled by 255/65535 and rounded (= round(v / 257)), as cv_bridge converts 16 to 8 bit."""
    return ((image.astype(np.uint32) + 128) // 257).astype(np.uint8)


def _cv_code(new: str, old: str) -> int:
    import cv2

    return int(getattr(cv2, new, None) if hasattr(cv2, new) else getattr(cv2, old))


def _bayer(pattern: str, bits: int) -> Callable[[np.ndarray], np.ndarray]:
    # OpenCV's old Bayer names give the pattern from the second row and column (RGGB -> BG); the new ones say it plainly
    old = {"rggb": "BG", "bggr": "RG", "gbrg": "GR", "grbg": "GB"}[pattern]

    def convert(image: np.ndarray) -> np.ndarray:
        import cv2

        rgb = cv2.cvtColor(np.ascontiguousarray(image), _cv_code(f"COLOR_Bayer{pattern.upper()}2RGB", f"COLOR_Bayer{old}2RGB"))
        return scale16(rgb) if bits == 16 else rgb

    return convert


def _yuv(code: str) -> Callable[[np.ndarray], np.ndarray]:
    def convert(image: np.ndarray) -> np.ndarray:
        import cv2

        return cv2.cvtColor(np.ascontiguousarray(image), getattr(cv2, code))

    return convert


FORMATS: dict[str, PixelFormat] = {
    **{name: PixelFormat("u1", channels, name) for name, channels in GRAPH_ENCODINGS.items()},
    "8UC1": PixelFormat("u1", 1, "mono8"),
    "8UC3": PixelFormat("u1", 3, "bgr8"),
    "8UC4": PixelFormat("u1", 4, "bgra8"),
    "mono16": PixelFormat("u2", 1, "mono8", scale16),
    "16UC1": PixelFormat("u2", 1, "mono8", scale16),
    "rgb16": PixelFormat("u2", 3, "rgb8", scale16),
    "bgr16": PixelFormat("u2", 3, "bgr8", scale16),
    "rgba16": PixelFormat("u2", 4, "rgba8", scale16),
    "bgra16": PixelFormat("u2", 4, "bgra8", scale16),
    **{f"bayer_{p}{bits}": PixelFormat("u1" if bits == 8 else "u2", 1, "rgb8", _bayer(p, bits))
       for p in ("rggb", "bggr", "gbrg", "grbg") for bits in (8, 16)},
    "yuv422": PixelFormat("u1", 2, "rgb8", _yuv("COLOR_YUV2RGB_UYVY"), even_width=True),
    "yuv422_yuy2": PixelFormat("u1", 2, "rgb8", _yuv("COLOR_YUV2RGB_YUY2"), even_width=True),
}
SUPPORTED_ENCODINGS = tuple(FORMATS)


def unsupported(encoding: str) -> ValueError:
    from mtl_perception.safeload import shorten

    shown = shorten(encoding, 40)  # one line, whatever the publisher sent
    return ValueError(f"unsupported image encoding '{shown}'; supported: {list(SUPPORTED_ENCODINGS)}")


def to_graph_pixels(pixels: np.ndarray, encoding: str) -> tuple[np.ndarray, str]:
    """Camera pixels as a contiguous uint8 (H, W, C) array and its 8-bit encoding (one of GRAPH_ENCODINGS).

    8-bit encodings pass as they are (a view when the buffer is contiguous); others are converted once
    (module docstring). ValueError names an unsupported encoding or a shape/dtype that does not fit it.
    """
    enc = encoding.strip() if isinstance(encoding, str) else str(encoding)
    fmt = FORMATS.get(enc)
    if fmt is None:
        raise unsupported(enc)
    array = np.asarray(pixels)
    if array.dtype != np.dtype(fmt.dtype):
        raise ValueError(f"{enc} image must be {np.dtype(fmt.dtype)}, got {array.dtype}")
    if array.ndim == 3 and fmt.channels == 1 and array.shape[2] == 1:
        array = array[:, :, 0]
    shaped = array.ndim == 2 if fmt.channels == 1 else (array.ndim == 3 and array.shape[2] == fmt.channels)
    if not shaped:
        raise ValueError(f"{enc} image must have shape (H, W{'' if fmt.channels == 1 else f', {fmt.channels}'}), got {array.shape}")
    if array.shape[0] == 0 or array.shape[1] == 0:
        raise ValueError(f"{enc} image is empty ({array.shape[1]}x{array.shape[0]})")
    if fmt.even_width and array.shape[1] % 2:
        raise ValueError(f"{enc} image has odd width {array.shape[1]}; YUV 4:2:2 pairs pixels and needs an even width")
    if fmt.convert is not None:
        array = fmt.convert(array)
    if array.ndim == 2:
        array = array[:, :, None]
    return np.ascontiguousarray(array), fmt.graph


def to_rgb(pixels: np.ndarray, encoding: str) -> np.ndarray:
    """Camera pixels as contiguous uint8 RGB (H, W, 3): ``to_graph_pixels`` then channel order (alpha dropped, mono repeated)."""
    image, graph = to_graph_pixels(pixels, encoding)
    if graph == "mono8":
        return np.ascontiguousarray(np.repeat(image, 3, axis=2))
    if graph in ("bgr8", "bgra8"):
        return np.ascontiguousarray(image[:, :, 2::-1])
    return np.ascontiguousarray(image[:, :, :3])
