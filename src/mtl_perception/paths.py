"""Files installed with the package (share/mtl_perception/...), found through the ament index or the source tree."""
from __future__ import annotations

from pathlib import Path

PACKAGE = "mtl_perception"
DEFAULT_MODEL_FILE = "default.onnx"


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


def default_model_path() -> Path:
    """The bundled default model (models/default.onnx)."""
    return package_file("models", DEFAULT_MODEL_FILE)


def fastdds_profile_path() -> Path:
    """The Fast DDS profile that delivers large images between processes (config/fastdds_large_images.xml)."""
    return package_file("config", "fastdds_large_images.xml")
