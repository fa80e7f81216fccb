"""Camera effects on the rendered image: exposure, white balance, vignetting, blur, noise, gamma, JPEG.

They act on the colour image only; depth, labels and normals are the renderer's exact values. ``expose``
runs a camera's pipeline on the linear-RGB irradiance at the sensor, in the order a camera applies them:
lens (defocus or motion blur, vignetting), sensor (shot and read noise), then the image processor (auto
exposure and auto white balance from the frame's own statistics, each with a random residual error, sRGB
gamma, 8-bit quantisation, JPEG compression at a random quality).
"""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

RGB = tuple[float, float, float]
GAMMA = 2.2
MID_GREY = 0.18  # linear value auto exposure maps the frame's median luminance to
STATS_STRIDE = 4  # auto exposure and white balance read every 4th pixel of every 4th row
LUMA = np.array([0.2126, 0.7152, 0.0722], np.float32)  # Rec. 709 luminance weights


@dataclass(frozen=True)
class Sensor:
    """One camera's settings for ``expose``; auto exposure always runs, every other effect is off at its default."""

    exposure_ev: float = 0.0  # exposure error after auto exposure, in stops
    awb_strength: float = 0.0  # share of the grey-world white-balance correction applied (0 none, 1 full)
    white_balance: RGB = (1.0, 1.0, 1.0)  # residual per-channel gains after auto white balance
    vignetting: float = 0.0  # share of the brightness lost at the image corners
    defocus_px: float = 0.0  # standard deviation of the Gaussian defocus blur, pixels
    motion_px: float = 0.0  # length of the linear motion blur, pixels
    motion_angle: float = 0.0  # direction of the motion blur in the image, radians
    shot_noise: float = 0.0  # photon noise: variance per unit of linear signal
    read_noise: float = 0.0  # standard deviation of signal-independent noise, linear units
    jpeg_quality: int = 0  # JPEG quality 1..100; 0 keeps the image uncompressed


def sample_sensor(rng: np.random.Generator) -> Sensor:
    """Random settings spanning phone, webcam, RealSense and robot cameras."""
    blur = rng.choice(["sharp", "defocus", "motion"], p=[0.5, 0.3, 0.2])
    return Sensor(
        exposure_ev=float(np.clip(rng.normal(0.0, 0.4), -1.2, 1.2)),
        awb_strength=float(rng.uniform(0.5, 1.0)),
        white_balance=tuple(float(g) for g in np.exp(rng.normal(0.0, 0.06, 3))),  # type: ignore[arg-type]
        vignetting=float(rng.uniform(0.0, 0.45)),
        defocus_px=float(rng.uniform(0.4, 1.5)) if blur == "defocus" else 0.0,
        motion_px=float(rng.uniform(2.0, 7.0)) if blur == "motion" else 0.0,
        motion_angle=float(rng.uniform(0.0, np.pi)),
        shot_noise=float(np.exp(rng.uniform(np.log(1e-4), np.log(2.5e-3)))),
        read_noise=float(np.exp(rng.uniform(np.log(3e-4), np.log(3e-3)))),
        jpeg_quality=int(rng.integers(35, 96)) if rng.random() < 0.8 else 0,
    )


# Gamma table indexed by the square root of the linear value (fine steps near black, where gamma is steep).
GAMMA_LUT_SIZE = 4096
_GAMMA_LUT = (np.linspace(0.0, 1.0, GAMMA_LUT_SIZE) ** (2.0 / GAMMA) * 255.0 + 0.5).astype(np.uint8)


def encode_srgb(rgb_linear: np.ndarray) -> np.ndarray:
    """Gamma-encode linear RGB (H, W, 3), clipped to [0, 1], to uint8 sRGB, nothing else."""
    root = np.sqrt(np.clip(rgb_linear, 0.0, 1.0))
    return _GAMMA_LUT[(root * np.float32(GAMMA_LUT_SIZE - 1) + np.float32(0.5)).astype(np.int32)]


def _vignette(height: int, width: int, strength: float) -> np.ndarray:
    """Brightness factor (H, W, 1): 1 at the centre, 1 - strength at the corners (quadratic in the radius)."""
    v = (np.arange(height, dtype=np.float32) - (height - 1) / 2) / max((height - 1) / 2, 1.0)
    u = (np.arange(width, dtype=np.float32) - (width - 1) / 2) / max((width - 1) / 2, 1.0)
    r2 = (v[:, None] ** 2 + u[None, :] ** 2) * np.float32(0.5)
    return (np.float32(1.0) - np.float32(strength) * r2)[:, :, None]


def _motion_kernel(length: float, angle: float) -> np.ndarray:
    """A normalised line kernel of ``length`` pixels at ``angle``."""
    size = int(np.ceil(length)) | 1
    kernel = np.zeros((size, size), np.float32)
    half = (length - 1) / 2
    centre = size // 2
    dx, dy = half * np.cos(angle), half * np.sin(angle)
    cv2.line(kernel, (round(centre - dx), round(centre - dy)), (round(centre + dx), round(centre + dy)), 1.0, 1)
    return kernel / kernel.sum()


def expose(rgb_linear: np.ndarray, sensor: Sensor, rng: np.random.Generator) -> np.ndarray:
    """The uint8 RGB image (H, W, 3) a camera with ``sensor`` settings records of linear irradiance (H, W, 3).

    The noise is uniform with the variance of shot plus read noise (cheaper to draw than Gaussian, and
    indistinguishable once gamma-encoded and compressed); vignetting is applied with the final gains.
    """
    height, width = rgb_linear.shape[:2]
    image = np.ascontiguousarray(rgb_linear, np.float32)
    if sensor.defocus_px > 0:
        image = cv2.GaussianBlur(image, (0, 0), sensor.defocus_px, borderType=cv2.BORDER_REFLECT)
    if sensor.motion_px > 1:
        image = cv2.filter2D(image, -1, _motion_kernel(sensor.motion_px, sensor.motion_angle), borderType=cv2.BORDER_REFLECT)
    stats = image[::STATS_STRIDE, ::STATS_STRIDE].reshape(-1, 3)
    luminance = float(np.median(stats @ LUMA))
    gain = MID_GREY / max(luminance, 1e-4) * 2.0 ** sensor.exposure_ev
    channel_means = np.maximum(stats.mean(axis=0), 1e-6)
    grey_world = (channel_means.mean() / channel_means) ** sensor.awb_strength
    gains = (gain * grey_world * np.asarray(sensor.white_balance)).astype(np.float32)
    if sensor.shot_noise > 0 or sensor.read_noise > 0:
        # Noise is added to the raw signal (before the gains), as on the sensor.
        std = np.sqrt(np.float32(sensor.shot_noise) * np.maximum(image, np.float32(0.0)) + np.float32(sensor.read_noise ** 2))
        image = image + std * ((rng.random(image.shape, dtype=np.float32) - np.float32(0.5)) * np.float32(np.sqrt(12.0)))
    scale = gains if sensor.vignetting <= 0 else _vignette(height, width, sensor.vignetting) * gains
    rgb = encode_srgb(image * scale)
    if sensor.jpeg_quality > 0:
        ok, data = cv2.imencode(".jpg", rgb[:, :, ::-1], [cv2.IMWRITE_JPEG_QUALITY, sensor.jpeg_quality])
        if not ok:
            raise RuntimeError("OpenCV could not JPEG-encode the rendered image")
        rgb = np.ascontiguousarray(cv2.imdecode(data, cv2.IMREAD_COLOR)[:, :, ::-1])
    return rgb
