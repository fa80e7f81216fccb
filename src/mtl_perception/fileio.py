"""File helpers without heavy dependencies: atomic writes, content hashes and JSON-safe values."""
from __future__ import annotations

import hashlib
import math
import os
import tempfile
from pathlib import Path
from typing import Any

FILE_MODE = 0o644


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Write bytes to ``path`` so that readers see the old file or the new one, never half of one.

    The bytes go to a temporary file in the same folder (``.NAME.*.tmp``, NAME cut where the name would pass the
    file system's 255-byte limit), are flushed to disk, and the
    file is renamed over ``path``; a writer killed before the rename leaves ``path`` untouched.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=_temp_prefix(path.name), suffix=".tmp")
    try:
        os.fchmod(fd, FILE_MODE)  # mkstemp creates 0600; outputs are ordinary readable files
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)  # make the rename itself survive a power cut, not only a killed process


def _temp_prefix(name: str) -> str:
    """``.NAME.`` cut so that the temporary file's name (prefix + 8 random + ``.tmp``) fits the 255-byte name limit."""
    from mtl_perception.safeload import temp_name_prefix

    return temp_name_prefix(name, reserve=16)


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:  # e.g. a platform without directory file descriptors
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def file_sha256(path: str | Path) -> str:
    """Hex SHA-256 of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def remove_stale_temp_files(folder: str | Path, names: list[str]) -> list[Path]:
    """Delete the temporary files ``atomic_write_bytes`` left for ``names`` in ``folder`` when a writer was killed.

    Call it only where no other process is writing those names (e.g. a training run at start-up);
    returns the files removed.
    """
    removed = []
    for name in names:
        for stale in Path(folder).glob(f"{_temp_prefix(name)}*.tmp"):
            stale.unlink(missing_ok=True)
            removed.append(stale)
    return removed


def check_output_dir(path: str | Path, flag: str = "--out") -> Path:
    """``path`` as a Path if it is a folder or can become one; NotADirectoryError naming ``flag`` otherwise.

    Run it before long work, so that a bad output path fails in a second, not after the evaluation.
    """
    path = Path(path)
    for part in (path, *path.parents):
        if part.exists():
            if not part.is_dir():
                raise NotADirectoryError(f"{flag} {path}: {part} exists and is not a directory; give a folder path for the outputs")
            break
    return path


def json_safe(value: Any) -> Any:
    """Replace NaN/inf floats (e.g. IoU of a class absent from a dataset) by None, recursively."""
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value
