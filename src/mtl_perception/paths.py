"""Where the package's files are: those installed with it (share/mtl_perception/..., found through the ament index
or the source tree), and the one cache root every compiled artefact is written under (``cache_dir``)."""
from __future__ import annotations

import importlib.metadata
import os
from pathlib import Path

PACKAGE = "mtl_perception"
DEFAULT_MODEL_FILE = "default.onnx"
# The variable naming the XML profile that Fast DDS loads at participant creation, by its major version:
# 2.x (Humble, Jazzy) reads only FASTRTPS_DEFAULT_PROFILES_FILE; 3.x (Kilted on) reads FASTDDS_DEFAULT_PROFILES_FILE
# (rmw_fastrtps 9 still honours the old name, with a deprecation warning at every start).
FASTDDS_PROFILE_VARIABLES = {2: "FASTRTPS_DEFAULT_PROFILES_FILE", 3: "FASTDDS_DEFAULT_PROFILES_FILE"}
# the ROS wheels that ship the library (3.x renamed it from fastrtps to fastdds)
FASTDDS_WHEELS = ("ros-fastdds", "ros-fastrtps")
FASTDDS_LIBRARIES = {3: "libfastdds.so.3*", 2: "libfastrtps.so.2*"}
# The cache root: an explicit folder (``model.engine_cache_dir``, ``--cache-dir``), else $MTL_PERCEPTION_CACHE, else this.
CACHE_ENV = "MTL_PERCEPTION_CACHE"
DEFAULT_CACHE_ROOT = "~/.cache/mtl_perception"
# What is cached, one folder of the root each.
CACHE_KINDS = {
    "deploy": "deploy graphs composed from a model file (inference/deploy_graph.py)",
    "precision": "mixed-precision FP16 and Q/DQ INT8 files of a model file (inference/precision.py)",
    "engines": "TensorRT engines, their sidecars, timing caches and calibration tables (inference/engine_cache.py)",
    "ort_tensorrt": "engines and timing caches of ONNX Runtime's TensorRT provider (backends/onnxruntime_backend.py)",
}


def package_file(folder: str, name: str) -> Path:
    """share/mtl_perception/FOLDER/NAME from the ament index, else the source tree's FOLDER/NAME."""
    try:
        from ament_index_python.packages import get_package_share_directory

        share = Path(get_package_share_directory(PACKAGE)) / folder / name
        if share.is_file():
            return share
    except (ImportError, LookupError, ValueError, OSError):  # no ament index (e.g. a plain pip install)
        pass
    return Path(__file__).resolve().parents[2] / folder / name


def cache_root(root: str | Path | None = None) -> Path:
    """The cache root: ``root`` when given, else $MTL_PERCEPTION_CACHE, else ~/.cache/mtl_perception (``~`` expanded)."""
    return Path(root or os.environ.get(CACHE_ENV) or DEFAULT_CACHE_ROOT).expanduser()


def cache_dir(kind: str, root: str | Path | None = None) -> Path:
    """The folder of one kind of cached artefact (``CACHE_KINDS``) under the cache root (``cache_root(root)``)."""
    if kind not in CACHE_KINDS:
        raise ValueError(f"unknown cache kind '{kind}'; valid: {sorted(CACHE_KINDS)}")
    return cache_root(root) / kind


def default_model_path() -> Path:
    """The bundled default model (models/default.onnx)."""
    return package_file("models", DEFAULT_MODEL_FILE)


def fastdds_profile_path() -> Path:
    """The Fast DDS profile that delivers large images between processes (config/fastdds_large_images.xml)."""
    return package_file("config", "fastdds_large_images.xml")


def fastdds_major() -> int | None:
    """Major version of the Fast DDS library rmw_fastrtps loads here: 2, 3, or None where none is found.

    Looked up without loading it: the ROS wheel that ships it (pip installs), else the shared library in a
    prefix of AMENT_PREFIX_PATH or a folder of LD_LIBRARY_PATH (a ROS distribution, e.g. /opt/ros/jazzy/lib).
    """
    for wheel in FASTDDS_WHEELS:
        try:
            return int(importlib.metadata.version(wheel).split(".")[0])
        except (importlib.metadata.PackageNotFoundError, ValueError):
            continue
    folders = [Path(p) / "lib" for p in os.environ.get("AMENT_PREFIX_PATH", "").split(os.pathsep) if p]
    folders += [Path(p) for p in os.environ.get("LD_LIBRARY_PATH", "").split(os.pathsep) if p]
    for folder in folders:
        for major, pattern in FASTDDS_LIBRARIES.items():
            if folder.is_dir() and any(folder.glob(pattern)):
                return major
    return None


def fastdds_profile_env(profile: Path | str | None = None) -> dict[str, str]:
    """The environment variable(s) that make this machine's Fast DDS load ``profile`` (default: the shipped one).

    One variable where the major version is known (``fastdds_major``), both where it is not: a profile set
    under the other major's name is ignored without a word (Jazzy's Fast DDS 2.14 never reads
    FASTDDS_DEFAULT_PROFILES_FILE).
    """
    path = str(profile if profile is not None else fastdds_profile_path())
    major = fastdds_major()
    names = [FASTDDS_PROFILE_VARIABLES[major]] if major in FASTDDS_PROFILE_VARIABLES else list(FASTDDS_PROFILE_VARIABLES.values())
    return dict.fromkeys(names, path)
