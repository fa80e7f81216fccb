"""Bounded loading of untrusted text and sizes: YAML, JSON, file names and memory budgets.

Everything a user hands the package (configs, palettes, model metadata, camera files, image sizes) enters
through one of these functions, which refuse input that would cost unbounded time or memory *before*
parsing or allocating:

- YAML: at most ``YAML_MAX_BYTES`` (1 MiB; a training config is about 2 KiB), nested at most
  ``MAX_DEPTH`` (32) levels, and no aliases (``*name``): a 453-byte alias bomb expands to gigabytes,
  and no config of this package needs one. Parsed with PyYAML's safe loader (no Python objects).
- JSON: at most ``JSON_MAX_BYTES`` (1 MiB), nested at most ``MAX_DEPTH`` levels (checked by a linear scan
  before any recursive parser runs), NaN/Infinity accepted as numbers so that the schema can name the
  field that holds one.
- file names: every component at most ``NAME_MAX`` bytes (255, ext4/xfs/btrfs/APFS), the path at most
  ``PATH_MAX`` (4096), checked before anything is written.
- memory: ``check_allocation`` compares the bytes an operation will allocate with ``memory_budget()``
  (half the memory available now, at most 16 GiB) and refuses with the size that would fit.

Every refusal is a ``LoadError`` (a ValueError) whose one-line message names the source and the fix.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

YAML_MAX_BYTES = 1 << 20
JSON_MAX_BYTES = 1 << 20
MAX_DEPTH = 32
NAME_MAX = 255
PATH_MAX = 4096
MEMORY_BUDGET_CAP = 16 << 30


class LoadError(ValueError):
    """Input refused before parsing or allocating; the message names the source and the fix."""


# ---------------------------------------------------------------------------------------------- text files
def read_text_bounded(path: str | os.PathLike, limit: int, what: str) -> str:
    """The text of ``path``, reading at most ``limit`` + 1 bytes; LoadError when larger or unreadable."""
    path = Path(path)
    try:
        with open(path, "rb") as handle:
            data = handle.read(limit + 1)
    except IsADirectoryError:
        raise LoadError(f"{what} {shorten(str(path))} is a directory; give a file") from None
    except FileNotFoundError:
        raise FileNotFoundError(f"{what} not found: {shorten(str(path))}") from None
    except OSError as exc:
        raise LoadError(f"{what} {shorten(str(path))} cannot be read: {exc.strerror or exc}") from None
    if len(data) > limit:
        raise LoadError(f"{what} {shorten(str(path))} is larger than {limit // 1024} KiB, more than such a file needs; "
                        "give the right file (or trim it)")
    return data.decode("utf-8", errors="replace")


def shorten(text: str, limit: int = 120) -> str:
    """``text`` for echoing user input in one line: control characters escaped (a newline shows as ``\\n``),
    cut to ``limit`` characters with an ellipsis."""
    text = str(text)
    text = text[: limit * 4]  # enough to show: never escape a megabyte
    if not text.isprintable():
        text = "".join(c if c.isprintable() else c.encode("unicode_escape").decode("ascii") for c in text)
    return text if len(text) <= limit else text[: limit - 1] + "…"


# ---------------------------------------------------------------------------------------------- YAML
def _bounded_loader() -> type:
    import yaml
    from yaml.events import AliasEvent

    class BoundedSafeLoader(yaml.SafeLoader):
        """PyYAML's safe loader without aliases and with a nesting bound (no recursion past MAX_DEPTH)."""

        depth = 0

        def compose_node(self, parent: Any, index: Any) -> Any:
            if self.check_event(AliasEvent):
                event = self.peek_event()
                raise yaml.composer.ComposerError(None, None, "aliases (*name) are not accepted: write the values out",
                                                  event.start_mark)
            self.depth += 1
            if self.depth > MAX_DEPTH:
                raise yaml.composer.ComposerError(None, None, f"nested deeper than {MAX_DEPTH} levels",
                                                  self.peek_event().start_mark)
            try:
                return super().compose_node(parent, index)
            finally:
                self.depth -= 1

    return BoundedSafeLoader


_LOADER: type | None = None


def yaml_loads(text: str, source: str, what: str = "YAML") -> Any:
    """Parse untrusted YAML text (size, depth and alias bounded); LoadError naming ``source`` and the line."""
    import yaml

    global _LOADER
    if len(text) > YAML_MAX_BYTES:
        raise LoadError(f"{source} is larger than {YAML_MAX_BYTES // 1024} KiB, more than a {what} needs; give the right file")
    if _LOADER is None:
        _LOADER = _bounded_loader()
    loader = None
    try:
        loader = _LOADER(text)  # the reader checks the characters here already
        return loader.get_single_data()
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or getattr(exc, "reason", None) or str(exc).splitlines()[0]
        raise LoadError(f"{source} is not valid YAML{where}: {shorten(str(problem), 160)}; fix the syntax there") from None
    except RecursionError:  # a pathological document the depth bound did not catch (e.g. in the scanner)
        raise LoadError(f"{source} is nested too deeply to be a {what}; fix the file") from None
    finally:
        if loader is not None:
            loader.dispose()


def yaml_load_file(path: str | os.PathLike, what: str = "YAML file") -> Any:
    """Parse a YAML file of at most YAML_MAX_BYTES (see ``yaml_loads``)."""
    text = read_text_bounded(path, YAML_MAX_BYTES, what)
    return yaml_loads(text, f"{what} {shorten(str(path))}", what)


# ---------------------------------------------------------------------------------------------- JSON
def json_depth(text: str) -> int:
    """Deepest bracket nesting of a JSON text (brackets inside strings ignored): a linear scan, no recursion."""
    import re

    stripped = re.sub(r'"(?:[^"\\]|\\.)*"', '""', text)
    depth = deepest = 0
    for char in stripped:
        if char in "[{":
            depth += 1
            if depth > deepest:
                deepest = depth
        elif char in "]}":
            depth -= 1
    return deepest


def json_loads(text: str | bytes, source: str, max_bytes: int = JSON_MAX_BYTES, max_depth: int = MAX_DEPTH) -> Any:
    """Parse untrusted JSON (size and depth bounded; NaN/Infinity parse as floats); LoadError naming ``source``."""
    import json

    if isinstance(text, bytes):
        text = text.decode("utf-8", errors="replace")
    if len(text) > max_bytes:
        raise LoadError(f"{source} holds {len(text)} characters of JSON, more than {max_bytes // 1024} KiB; it is not what it should be")
    depth = json_depth(text)
    if depth > max_depth:
        raise LoadError(f"{source} is JSON nested {depth} levels deep, more than {max_depth}; it is not what it should be")
    try:
        return json.loads(text)
    except (ValueError, RecursionError) as exc:
        raise LoadError(f"{source} is not valid JSON: {shorten(str(exc), 160)}") from None


# ---------------------------------------------------------------------------------------------- file names
def check_path(path: str | os.PathLike, flag: str) -> Path:
    """``path`` as a Path when every component fits the file system's limits; LoadError naming ``flag`` otherwise."""
    text = os.fspath(path)
    if "\0" in text:
        raise LoadError(f"{flag}: the path contains a NUL byte; give a plain file name")
    encoded = os.fsencode(text)
    if len(encoded) > PATH_MAX:
        raise LoadError(f"{flag}: the path is {len(encoded)} bytes long, more than the {PATH_MAX} a file system allows; give a shorter path")
    for part in Path(text).parts:
        size = len(os.fsencode(part))
        if size > NAME_MAX:
            raise LoadError(f"{flag}: the name '{shorten(part, 40)}' is {size} bytes long, more than the {NAME_MAX} a file system allows; "
                            "give a shorter file name")
    return Path(text)


def temp_name_prefix(name: str, reserve: int = 24) -> str:
    """A prefix for a temporary file next to ``name``: ``.NAME.``, cut so that prefix + ``reserve`` fits NAME_MAX."""
    room = NAME_MAX - reserve - 2
    encoded = os.fsencode(name)
    if len(encoded) > room:
        name = os.fsdecode(encoded[:room]).rstrip("\udcff") or "file"
        while len(os.fsencode(name)) > room:  # a multi-byte character cut in half
            name = name[:-1]
    return f".{name}."


# ---------------------------------------------------------------------------------------------- memory
def available_memory() -> int | None:
    """Bytes of memory available now (MemAvailable, else free pages), None when unknown."""
    try:
        with open("/proc/meminfo") as handle:
            for line in handle:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def memory_budget() -> int:
    """The most bytes one operation may allocate: half the memory available now, at most 16 GiB."""
    available = available_memory()
    return MEMORY_BUDGET_CAP if available is None else max(1 << 28, min(MEMORY_BUDGET_CAP, available // 2))


def gib(size: float) -> str:
    return f"{size / (1 << 30):.1f} GiB"


def check_allocation(size_bytes: float, what: str, fix: str) -> None:
    """LoadError when ``size_bytes`` exceeds ``memory_budget()``: names what needs it and ``fix``."""
    budget = memory_budget()
    if size_bytes > budget:
        raise LoadError(f"{what} needs about {gib(size_bytes)}, more than the memory budget of {gib(budget)} "
                        f"(half the memory available, at most {gib(MEMORY_BUDGET_CAP)}); {fix}")
