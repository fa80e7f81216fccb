"""API contract: the TensorRT backend uses only names that TensorRT 10.3, 10.13 and 11.4 have, and none
that the version it runs on deprecates (TensorRT 11 removed the precision flags and calibrators).

The names come from the real ``tensorrt-cu12-bindings`` wheels, read by ``tools/derive_trt_api.py`` into
``test/data/tensorrt_api.json`` (committed with each wheel's SHA-256). When the wheels are in the
cache (``~/.cache/mtl_perception/trt_wheels`` or $MTL_TRT_WHEEL_CACHE) the table is derived again and
compared; otherwise that part is skipped with the reason. Running an engine needs TensorRT and a GPU:
that stays in the skipped GPU tests and ``benchmarks/gpu_check.py``.
"""
from __future__ import annotations

import ast
import hashlib
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest

from trt_double import FakeTensorRT, api_table, table_versions

ROOT = Path(__file__).resolve().parents[1]
BACKEND_SOURCE = ROOT / "src" / "mtl_perception" / "inference" / "backends" / "tensorrt_backend.py"
sys.path.insert(0, str(ROOT / "tools"))
import derive_trt_api  # noqa: E402

VERSION_SPECIFIC = {"network_creation_flags"}  # the backend's one version-specific function
# What the TensorRT 10 backend used and TensorRT 11 removed (release notes: precision flags, calibrators,
# calibration profiles, precision constraints; device_memory_size became device_memory_size_v2).
REMOVED_IN_11 = [("BuilderFlag", "FP16"), ("BuilderFlag", "BF16"), ("BuilderFlag", "INT8"), ("BuilderFlag", "OBEY_PRECISION_CONSTRAINTS"),
                 ("BuilderFlag", "PREFER_PRECISION_CONSTRAINTS"), ("IBuilderConfig", "int8_calibrator"), ("IBuilderConfig", "set_calibration_profile"),
                 ("<module>", "IInt8EntropyCalibrator2"), ("ICudaEngine", "device_memory_size")]


def has(version: str, owner: str, name: str) -> bool:
    table = api_table()["versions"][version]
    if owner == "<module>":
        return name in table["module"]
    return name in table["classes"].get(owner, {}).get("members", {})


def test_table_records_the_wheels_it_came_from():
    table = api_table()
    assert table["format"] == derive_trt_api.TABLE_FORMAT
    assert set(table["versions"]) == set(derive_trt_api.VERSIONS)
    for version, info in table["wheels"].items():
        assert info["file"].startswith(f"tensorrt_cu12_bindings-{version}-") and len(info["sha256"]) == 64
        assert table["versions"][version]["version"] == version


def test_table_holds_what_the_release_notes_say():
    """TensorRT 11 removed the precision flags, calibrators and calibration profiles; 10.x still has them."""
    for owner, name in REMOVED_IN_11:
        assert has("10.3.0", owner, name) and has("10.13.0.35", owner, name), (owner, name)
        assert not has("11.4.0.106", owner, name), (owner, name)
    for version in table_versions():
        assert has(version, "NetworkDefinitionCreationFlag", "STRONGLY_TYPED")
        assert has(version, "ICudaEngine", "device_memory_size_v2")
    classes = api_table()["versions"]
    assert classes["10.13.0.35"]["classes"]["BuilderFlag"]["members"]["FP16"]["deprecated"] == "10.12"
    assert classes["11.4.0.106"]["classes"]["NetworkDefinitionCreationFlag"]["members"]["STRONGLY_TYPED"]["deprecated"] == "11.0"


def test_enum_values_and_nptype_are_the_wheels_own():
    """Values read from the wheels, not invented: STRONGLY_TYPED is member 1 in 10.x and 0 in 11.x (EXPLICIT_BATCH
    is gone there); nptype has no NumPy type for BF16 / FP8 / INT4 and the double raises TypeError as the wheel does."""
    versions = api_table()["versions"]
    for version in table_versions():
        flags = versions[version]["classes"]["NetworkDefinitionCreationFlag"]["members"]
        assert flags["STRONGLY_TYPED"]["value"] == (0 if version.startswith("11.") else 1), version
        assert all("value" in m for c in versions[version]["classes"].values() for m in c["members"].values() if m["kind"] == "enum_value")
        numpy_types = versions[version]["nptype"]
        assert numpy_types["FLOAT"] == "float32" and numpy_types["UINT8"] == "uint8" and numpy_types["BF16"] is None and numpy_types["FP8"] is None
        trt = FakeTensorRT(version)
        assert int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED) == flags["STRONGLY_TYPED"]["value"]
        assert trt.nptype(trt.DataType.INT64) is np.int64
        with pytest.raises(TypeError):
            trt.nptype(trt.DataType.BF16)
    assert "EXPLICIT_BATCH" in versions["10.13.0.35"]["classes"]["NetworkDefinitionCreationFlag"]["members"]
    assert "EXPLICIT_BATCH" not in versions["11.4.0.106"]["classes"]["NetworkDefinitionCreationFlag"]["members"]


def _trt_chains(tree: ast.AST) -> list[tuple[str, tuple[str, ...], str]]:
    """(function, attribute chain after ``trt.``, line) of every ``trt.X`` / ``trt.X.Y`` in a module."""
    found = []

    class Visitor(ast.NodeVisitor):
        def __init__(self) -> None:
            self.function = "<module>"

        def visit_FunctionDef(self, node: ast.FunctionDef) -> None:
            outer, self.function = self.function, node.name if self.function == "<module>" else self.function
            self.generic_visit(node)
            self.function = outer

        def visit_Attribute(self, node: ast.Attribute) -> None:
            chain, current = [], node
            while isinstance(current, ast.Attribute):
                chain.append(current.attr)
                current = current.value
            if isinstance(current, ast.Name) and current.id == "trt":
                found.append((self.function, tuple(reversed(chain)), str(node.lineno)))
                return
            self.generic_visit(node)

    Visitor().visit(tree)
    return found


def test_every_trt_name_in_the_backend_source_exists_in_every_version():
    tree = ast.parse(BACKEND_SOURCE.read_text())
    chains = _trt_chains(tree)
    assert chains, "the scan found no trt.* names"
    missing = []
    for function, chain, line in chains:
        if chain[0] == "__version__":
            continue
        for version in table_versions():
            owner_ok = has(version, "<module>", chain[0])
            member_ok = len(chain) < 2 or has(version, chain[0], chain[1])
            if not (owner_ok and member_ok):
                missing.append(f"line {line} ({function}): trt.{'.'.join(chain)} missing in TensorRT {version}")
    assert missing == []


def test_the_check_catches_the_removed_api():
    """The old build path's names: absent from 11.4 (AttributeError) and deprecated in 10.13."""
    new, old = FakeTensorRT("11.4.0.106"), FakeTensorRT("10.13.0.35")
    with pytest.raises(AttributeError, match="FP16"):
        new.BuilderFlag.FP16
    with pytest.raises(AttributeError, match="IInt8EntropyCalibrator2"):
        new.IInt8EntropyCalibrator2
    config = new.Builder(new.Logger(new.Logger.WARNING)).create_builder_config()
    with pytest.raises(AttributeError, match="int8_calibrator"):
        config.int8_calibrator = object()
    old.BuilderFlag.INT8
    old.IInt8EntropyCalibrator2
    assert old.record.deprecated() == ["<module>.IInt8EntropyCalibrator2 (deprecated in 10.1)", "BuilderFlag.INT8 (deprecated in 10.12)"]


def _cached_wheels() -> tuple[Path, list[str]]:
    folder = derive_trt_api.DEFAULT_WHEEL_DIR
    missing = [v for v in derive_trt_api.VERSIONS if derive_trt_api.wheel_name(v, folder) is None]
    return folder, missing


def test_table_is_what_the_wheels_give():
    folder, missing = _cached_wheels()
    if missing:
        pytest.skip(f"bindings wheels {missing} are not in {folder} (fetch them with `tools/derive_trt_api.py --download`)")
    if shutil.which("cc") is None and shutil.which("gcc") is None:
        pytest.skip("no C compiler to build the stand-in TensorRT libraries")
    table = api_table()
    for version in derive_trt_api.VERSIONS:
        wheel = derive_trt_api.wheel_name(version, folder)
        assert hashlib.sha256(wheel.read_bytes()).hexdigest() == table["wheels"][version]["sha256"], f"{wheel.name} is not the wheel the table came from"
    derived = derive_trt_api.derive(folder, fetch=False)
    assert derived == table, "test/data/tensorrt_api.json differs from the wheels: run tools/derive_trt_api.py"
