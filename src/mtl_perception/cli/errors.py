"""The one error policy of every ``mtl-perception`` command: exit codes and one-line reasons.

Every command's ``<name>_main`` is wrapped by :func:`command`. Expected failures (bad config, missing file,
unreadable model, a full disk) end with ``mtl-perception NAME: error: REASON`` on one line of stderr and exit
code 2, never a traceback; Ctrl-C ends with 130. Anything else is a bug and keeps its traceback.
"""
from __future__ import annotations

import argparse
import errno
import functools
import sys
from typing import Callable

from mtl_perception.safeload import shorten

EXIT_OK = 0
EXIT_FAILED = 1  # the command ran and found problems (e.g. check-trt)
EXIT_BAD_INPUT = 2  # missing/corrupt files, unusable options, missing libraries
EXIT_INTERRUPTED = 130

# OSErrors caused by the user's paths and disks (too long, full, over quota, too large, read-only, not writable);
# a bag writer reports these itself (bags.io.BagWriteError), every other file write falls back on this list
USER_ERRNOS = (errno.ENAMETOOLONG, errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EROFS, errno.EACCES)

CommandMain = Callable[[argparse.Namespace], "int | None"]


class UserError(Exception):
    """A failure caused by the user's input; printed as one line."""


def expected_errors() -> tuple[type[BaseException], ...]:
    """Exception types that describe bad input rather than a bug (imported only when something failed)."""
    from mtl_perception.inference.calibration import CalibrationDataError
    from mtl_perception.inference.engine_cache import EngineCacheError
    from mtl_perception.inference.export import ExportError
    from mtl_perception.inference.metadata import MetadataError
    from mtl_perception.inference.model_file import ModelFileError
    from mtl_perception.training.checkpoint import CheckpointError

    errors: list[type[BaseException]] = [UserError, ValueError, FileNotFoundError, NotADirectoryError, PermissionError,
                                         IsADirectoryError, FileExistsError, CheckpointError, MetadataError,
                                         CalibrationDataError, EngineCacheError, ExportError, ModelFileError]
    try:
        from mtl_perception.inference.backends.base import BackendError
        errors.append(BackendError)
    except ImportError:
        pass
    return tuple(errors)


def one_line(command: str, text: str) -> int:
    """Print ``mtl-perception COMMAND: error: TEXT`` as one line on stderr; return EXIT_BAD_INPUT."""
    reason = "; ".join(line.strip() for line in text.splitlines() if line.strip())
    print(f"mtl-perception {command}: error: {shorten(reason, 1000)}", file=sys.stderr)  # always one line
    return EXIT_BAD_INPUT


def command(main: CommandMain) -> Callable[[argparse.Namespace], int]:
    """Apply the error policy to a command's ``<name>_main`` (the command is named after the function)."""
    name = main.__name__.removesuffix("_main").replace("_", "-")

    @functools.wraps(main)
    def run(args: argparse.Namespace) -> int:
        try:
            return int(main(args) or 0)
        except expected_errors() as exc:
            return one_line(name, str(exc) or type(exc).__name__)
        except OSError as exc:
            if exc.errno in USER_ERRNOS:
                where = f" ({shorten(str(exc.filename), 80)})" if exc.filename else ""
                return one_line(name, f"{exc.strerror or exc}{where}; "
                                      "give a shorter or writable path, or free disk space")
            raise
        except MemoryError:
            return one_line(name, "ran out of memory; use a smaller size, batch or frame count")
        except KeyboardInterrupt:
            print(f"mtl-perception {name}: interrupted", file=sys.stderr)
            return EXIT_INTERRUPTED

    return run
