"""Why writing a bag failed, in words: a full disk, a read-only folder, a vanished folder, another storage fault.

The sqlite3 storage reports its faults as ``sqlite3.Error`` with SQLite's own text ("database or disk is full",
"disk I/O error"), the mcap storage and the file system as ``OSError`` with an errno; :func:`describe` turns
either into one phrase that names the folder, the cause and what to do.
"""
from __future__ import annotations

import errno
import os
import shutil
import sqlite3
from dataclasses import dataclass
from pathlib import Path

STORAGE_FAULTS: tuple[type[BaseException], ...] = (OSError, sqlite3.Error)
FULL_ERRNOS = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)
READ_ONLY_ERRNOS = (errno.EROFS, errno.EACCES, errno.EPERM)
SQLITE_FULL = ("database or disk is full",)
SQLITE_READ_ONLY = ("attempt to write a readonly database", "readonly database")


@dataclass(frozen=True)
class WriteFault:
    """One storage fault: ``kind`` (full | read-only | vanished | other), the phrase naming it, and the fix."""

    kind: str
    cause: str
    fix: str


def reason(exc: BaseException) -> str:
    """The first line of an exception's message without its closing full stop (its type's name when it has none)."""
    text = str(exc).strip().rstrip(".") or type(exc).__name__
    return text.splitlines()[0]


def _detail(exc: BaseException) -> str:
    if isinstance(exc, sqlite3.Error):
        return f"sqlite3: {str(exc).strip() or type(exc).__name__}"
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return reason(exc)


def _size(count: int) -> str:
    value = float(count)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} TiB"  # pragma: no cover - the loop returns at GiB


def _space(folder: Path) -> str:
    try:
        usage = shutil.disk_usage(folder)
    except OSError:
        return ""
    return f"; {_size(usage.free)} free of {_size(usage.total)}"


def describe(exc: BaseException, folder: Path, staging: Path | None) -> WriteFault:
    """The fault behind ``exc``, raised while a bag was written into ``folder`` (``staging``: its temporary folder).

    Call it before the partial bag is removed: the free space it reports is the space the write ran out of.
    """
    code = getattr(exc, "errno", None)
    text = str(exc).lower() if isinstance(exc, sqlite3.Error) else ""
    detail = _detail(exc)
    if staging is not None and not staging.is_dir():  # it was there: the folder (or the partial bag) went away
        gone = folder if not folder.is_dir() else staging
        return WriteFault("vanished", f"the folder {gone} vanished while the bag was written (deleted or unmounted; {detail})",
                          "check that the disk is mounted and write the bag again")
    if code in FULL_ERRNOS or any(phrase in text for phrase in SQLITE_FULL):
        return WriteFault("full", f"the disk holding {folder} is full ({detail}{_space(_existing(folder))})",
                          "free disk space or write the bag to another disk")
    where = _existing(folder)
    if code in READ_ONLY_ERRNOS or any(phrase in text for phrase in SQLITE_READ_ONLY) or not os.access(where, os.W_OK):
        state = "read-only" if code == errno.EROFS or _read_only_mount(where) else "not writable"
        return WriteFault("read-only", f"the folder {where} is {state} ({detail})", "write the bag to a writable folder")
    if code == errno.ENOENT:
        return WriteFault("vanished", f"a file of the bag vanished while it was written ({detail})",
                          "check that nothing else deletes files in that folder and write the bag again")
    return WriteFault("other", f"the storage failed ({detail})", "check the disk and write the bag again")


def _existing(folder: Path) -> Path:
    """``folder``, or its nearest ancestor that exists (a folder that could not be created)."""
    for candidate in (folder, *folder.parents):
        if candidate.exists():
            return candidate
    return folder


def _read_only_mount(folder: Path) -> bool:
    try:
        return bool(os.statvfs(folder).f_flag & os.ST_RDONLY)
    except OSError:
        return False
