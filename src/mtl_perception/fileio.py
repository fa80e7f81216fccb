"""File helpers without heavy dependencies: atomic writes, content hashes, verified cache files and JSON-safe values."""
from __future__ import annotations

import hashlib
import logging
import math
import os
import re
import tempfile
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

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


# -- cache files: each beside its content hash ----------------------------------------------------------
# Files the project writes to speed up a later start (deploy graphs, precision files, TensorRT engines, timing and
# calibration caches) are checked before use: a damaged one is reported once and rebuilt, never trusted.

DIGEST_SUFFIX = ".sha256"  # the sidecar ``NAME.sha256`` holds "HEX  NAME" (``sha256sum -c`` reads it)
CACHE_LOG = logging.getLogger("mtl_perception.cache")
MAX_REPAIRS_KEPT = 32


@dataclass(frozen=True)
class CacheRepair:
    """A damaged cache file found (and what was done about it)."""

    path: str
    reason: str
    action: str
    wall_time: float


_repairs_lock = threading.Lock()
_repairs: list[CacheRepair] = []
_repair_count = 0


def digest_path(path: str | Path) -> Path:
    """The content-hash sidecar of a cache file: ``NAME.sha256`` beside it."""
    path = Path(path)
    return path.with_name(path.name + DIGEST_SUFFIX)


def write_cache_file(path: str | Path, data: bytes) -> None:
    """Write a cache file, then its content hash (each atomically), so a hash always describes a complete file.

    Two writers of one file must not interleave: write under ``cache_lock(path)`` (``ensure_cache_file`` does).
    """
    path = Path(path)
    atomic_write_bytes(path, data)
    atomic_write_bytes(digest_path(path), f"{hashlib.sha256(data).hexdigest()}  {path.name}\n".encode())


def cache_file_problem(path: str | Path) -> str | None:
    """Why the cache file at ``path`` cannot be trusted (missing, no or damaged hash, bytes that differ from it); None when sound."""
    path = Path(path)
    if not path.is_file():
        return "it is missing"
    sidecar = digest_path(path)
    try:
        fields = sidecar.read_text(errors="replace").split()
    except OSError:
        return f"its content hash {sidecar.name} is missing (written by an older version, or its writer was stopped)"
    if not fields or not re.fullmatch(r"[0-9a-f]{64}", fields[0]):
        return f"its content hash {sidecar.name} is damaged"
    if file_sha256(path) != fields[0]:
        return "its bytes differ from its content hash (truncated or overwritten)"
    return None


def discard_cache_file(path: str | Path) -> None:
    """Delete a cache file and its content hash (the hash first: a half-deleted entry is never sound)."""
    path = Path(path)
    digest_path(path).unlink(missing_ok=True)
    path.unlink(missing_ok=True)


@contextmanager
def cache_lock(path: str | Path) -> Iterator[None]:
    """Hold an exclusive lock (``flock`` on ``.NAME.lock`` beside ``path``) while one process writes a cache file.

    The lock is released when the holder exits or dies; the lock file itself stays (removing it would race).
    """
    import fcntl

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path.with_name(_temp_prefix(path.name) + "lock"), os.O_RDWR | os.O_CREAT, FILE_MODE)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def report_damaged(path: str | Path, reason: str, action: str = "rebuilding it") -> None:
    """One WARN naming a damaged cache file and what happens to it; counted for ``cache_repairs``."""
    global _repair_count
    CACHE_LOG.warning("cached file %s is damaged: %s; %s", path, reason, action)
    with _repairs_lock:
        _repair_count += 1
        _repairs.append(CacheRepair(str(path), reason, action, time.time()))
        del _repairs[:-MAX_REPAIRS_KEPT]


def cache_repairs() -> tuple[int, list[CacheRepair]]:
    """(damaged cache files found in this process so far, the latest of them, oldest first)."""
    with _repairs_lock:
        return _repair_count, list(_repairs)


def sound_cache_file(path: str | Path, action: str) -> bool:
    """True when ``path`` is a sound cache file; False when it is missing, or damaged: then (checked again under
    ``cache_lock``, since a writer may be between its two renames) it is reported with ``action`` and removed."""
    path = Path(path)
    if cache_file_problem(path) is None:
        return True
    with cache_lock(path):
        if not path.is_file():
            return False
        problem = cache_file_problem(path)
        if problem is None:
            return True
        report_damaged(path, problem, action)
        discard_cache_file(path)
    return False


def ensure_cache_file(path: str | Path, build: Callable[[], bytes], rebuild: bool = False) -> bool:
    """Make ``path`` a sound cache file: reuse it (True) when its bytes match its hash, else ``build()`` it (False).

    A file that is there but not sound is reported (``report_damaged``) and replaced. ``rebuild=True`` replaces
    it whatever its hash says (its reader refused it; the caller reported that). Writers hold ``cache_lock``, and
    the check is repeated under it: two processes asking at once build once, and the second reuses the file.
    """
    path = Path(path)
    if not rebuild and cache_file_problem(path) is None:
        return True
    with cache_lock(path):
        if not rebuild and path.is_file():
            problem = cache_file_problem(path)
            if problem is None:  # another process wrote it while this one waited
                return True
            report_damaged(path, problem)
        write_cache_file(path, build())
    return False


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
