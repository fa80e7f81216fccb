"""Imports point one way: no module of src/mtl_perception imports a package of a higher layer.

The layers are the table of docs/architecture.md (columns ``layer`` and ``unit``; a unit is a package
``name/`` or a top-level module ``name.py``). Every import is checked, top-level or inside a function.
"""
from __future__ import annotations

import ast
import re
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE_DIR = ROOT / "src" / "mtl_perception"
DOC = ROOT / "docs" / "architecture.md"



def layer_table() -> dict[str, int]:
    """unit -> layer, from the Markdown table whose header has the columns ``layer`` and ``unit``."""
    layers: dict[str, int] = {}
    columns: list[str] | None = None
    for line in DOC.read_text(encoding="utf-8").splitlines():
        if not line.startswith("|"):
            if layers:
                break  # the end of the table
            continue
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if columns is None:
            if "layer" in cells and "unit" in cells:
                columns = cells
            continue
        if set("".join(cells)) <= set("-: "):
            continue  # the header's separator row
        row = dict(zip(columns, cells))
        unit = re.fullmatch(r"`([\w.]+/?)`", row["unit"])
        assert unit and row["layer"].isdigit(), f"docs/architecture.md: unreadable row {line!r}"
        layers[unit.group(1)] = int(row["layer"])
    assert layers, "docs/architecture.md has no table with the columns 'layer' and 'unit'"
    return layers


def unit_of(module: str) -> str | None:
    """The unit (``pkg/`` or ``mod.py``) of a dotted module name inside mtl_perception; None outside it."""
    parts = module.split(".")
    if parts[0] != "mtl_perception":
        return None
    if len(parts) == 1:
        return "__init__.py"
    return f"{parts[1]}/" if (PACKAGE_DIR / parts[1]).is_dir() else f"{parts[1]}.py"


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE_DIR.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported_modules(path: Path) -> list[tuple[int, str]]:
    """(line, absolute module name) of every import in a file, relative imports resolved."""
    package = module_name(path) if path.name == "__init__.py" else module_name(path).rpartition(".")[0]
    found: list[tuple[int, str]] = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            if base == "mtl_perception":  # from mtl_perception import fileio
                found += [(node.lineno, f"mtl_perception.{alias.name}") for alias in node.names]
            else:
                found.append((node.lineno, base))
    return found


def test_the_layer_table_names_every_unit_of_the_package() -> None:
    layers = layer_table()
    units = {f"{p.name}/" if p.is_dir() else p.name for p in PACKAGE_DIR.iterdir()
             if (p.is_dir() and (p / "__init__.py").is_file()) or p.suffix == ".py"}
    missing = sorted(units - set(layers))
    assert not missing, f"add these to the layer table of docs/architecture.md: {missing}"
    stale = sorted(set(layers) - units)
    assert not stale, f"the layer table of docs/architecture.md names units that do not exist: {stale}"


def offending_imports(paths: list[Path], layers: dict[str, int]) -> list[str]:
    """Every import in ``paths`` of a unit of a higher layer (or of another unit of the same layer above 0)."""
    offenders: list[str] = []
    for path in paths:
        relative = path.relative_to(PACKAGE_DIR).as_posix()
        own = unit_of(module_name(path))
        for line, module in imported_modules(path):
            target = unit_of(module)
            if target is None or target == own or own not in layers or target not in layers:
                continue
            if layers[target] < layers[own] or layers[target] == layers[own] == 0:
                continue
            offenders.append(f"{relative}:{line} (layer {layers[own]}, {own}) imports {module} "
                             f"(layer {layers[target]}, {target})")
    return offenders


def test_no_module_imports_a_package_of_a_higher_layer() -> None:
    offenders = offending_imports(sorted(PACKAGE_DIR.rglob("*.py")), layer_table())
    assert not offenders, ("imports against the layer order of docs/architecture.md (a module may import only its "
                           "own package and lower layers; move the shared helper below both):\n  "
                           + "\n  ".join(offenders))


def test_the_check_finds_upward_imports_also_inside_functions(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The checker itself: a module of `model/` that imports the node inside a function, and one of `data/`."""
    package = tmp_path / "mtl_perception"
    for folder in ("model", "data", "ros"):
        (package / folder).mkdir(parents=True)
        (package / folder / "__init__.py").write_text("")
    (package / "model" / "bad.py").write_text("import numpy\n\ndef f():\n    from mtl_perception.ros.node import X\n"
                                              "    from ..data import frame\n")
    monkeypatch.setattr(sys.modules[__name__], "PACKAGE_DIR", package)
    offenders = offending_imports([package / "model" / "bad.py"], {"model/": 1, "data/": 1, "ros/": 6})
    assert offenders == ["model/bad.py:4 (layer 1, model/) imports mtl_perception.ros.node (layer 6, ros/)",
                         "model/bad.py:5 (layer 1, model/) imports mtl_perception.data (layer 1, data/)"]
