"""Where the project's shared test data is: ``shared/`` with ``realdata/`` (real camera frames) and ``nyuv2_meta/``.

It is not part of the repository. Looked for, in order: ``$MTL_PERCEPTION_SHARED``; a ``shared/`` folder beside
this checkout or beside any folder above it (a plain checkout has it at ``../shared``; in a colcon workspace,
``~/ws/src/mtl_perception``, put it at ``~/ws/src/shared`` or ``~/ws/shared``, or set the variable). Tests that
need it skip with ``SKIP_HINT`` in their reason when it is absent.
"""
from __future__ import annotations

import os
from pathlib import Path

ENV = "MTL_PERCEPTION_SHARED"
ROOT = Path(__file__).resolve().parents[1]
SKIP_HINT = (
    f"looked in {ENV}={os.environ[ENV]}" if os.environ.get(ENV)
    else f"no shared/ beside the checkout or any folder above it; set {ENV} to the shared/ folder"
)


def shared_dir() -> Path:
    """The shared folder: ``$MTL_PERCEPTION_SHARED``, else the nearest ``shared/`` with data above the checkout.

    Falls back to ``<checkout>/../shared`` (which then does not exist) so that callers can test ``is_dir()``.
    """
    if os.environ.get(ENV):
        return Path(os.environ[ENV]).expanduser()
    for parent in ROOT.parents:
        candidate = parent / "shared"
        if (candidate / "realdata").is_dir() or (candidate / "nyuv2_meta").is_dir():
            return candidate
    return ROOT.parent / "shared"


def shared_path(*parts: str) -> Path:
    """A path inside the shared folder, e.g. ``shared_path("realdata", "euroc_mono")``."""
    return shared_dir().joinpath(*parts)
