"""The parameter table, its YAML file and its validation (no ROS graph needed)."""
from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from mtl_perception.paths import default_model_path
from mtl_perception.ros import parameters as params

ROOT = Path(__file__).resolve().parents[1]
YAML_PATH = ROOT / "config" / "mtl_perception.yaml"


def flatten(tree: dict, prefix: str = "") -> dict:
    flat = {}
    for key, value in tree.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(flatten(value, name + "."))
        else:
            flat[name] = value
    return flat


def test_yaml_lists_every_parameter_with_its_default_and_a_comment() -> None:
    document = yaml.safe_load(YAML_PATH.read_text())
    assert list(document) == ["/**"] and list(document["/**"]) == ["ros__parameters"]
    values = flatten(document["/**"]["ros__parameters"])
    assert set(values) == set(params.SPEC_BY_NAME)
    for name, value in values.items():
        default = params.SPEC_BY_NAME[name].default
        assert value == default and type(value) is type(default), name
    for line in YAML_PATH.read_text().splitlines():
        if re.match(r"^\s+\w[\w.]*:\s*\S", line) and "ros__parameters" not in line:
            assert "#" in line, f"key without a comment: {line.strip()}"
    assert params.settings_from_values(values).outputs == {key: True for key in params.OUTPUT_TOPICS}


def test_every_spec_has_a_description_and_a_valid_default() -> None:
    for spec in params.SPECS:
        assert spec.description, spec.name
        params.check_value(spec.name, spec.default)
        desc = params.descriptor(spec)
        assert desc.description == spec.description and desc.read_only == spec.read_only
        if spec.int_range:
            assert (desc.integer_range[0].from_value, desc.integer_range[0].to_value) == spec.int_range
        if spec.float_range:
            assert (desc.floating_point_range[0].from_value, desc.floating_point_range[0].to_value) == spec.float_range


@pytest.mark.parametrize(
    "name,value,pattern",
    [
        ("model.backend", "tensorflow", "valid values"),
        ("qos.reliability", "sometimes", "valid values"),
        ("qos.depth", 0, "outside"),
        ("points.stride", 65, "outside"),
        ("output.overlay_alpha", 1.5, "outside"),
        ("processing.max_rate_hz", float("nan"), "outside"),
        ("output.depth", 1, "must be a bool"),
        ("qos.depth", True, "must be a int"),
        ("input.image_topic", " ", "must name a topic"),
        ("palette.override", "[[0, 0]]", "triples"),
        ("palette.override", "/no/such/palette.yaml", "not found"),
        ("no.such", 1, "unknown parameter"),
    ],
)
def test_check_value_names_the_problem(name: str, value, pattern: str) -> None:
    with pytest.raises(params.ParameterError, match=pattern):
        params.check_value(name, value)


def test_cross_parameter_checks_and_palette_sources(tmp_path: Path) -> None:
    with pytest.raises(params.ParameterError, match="depth.min .* must be below depth.max"):
        params.settings_from_values({"depth.min": 5.0, "depth.max": 2.0})
    assert params.settings_from_values({"depth.min": 5.0}).depth_min == 5.0  # max 0 = the model's maximum
    inline = params.settings_from_values({"palette.override": "[[1, 2, 3], [4, 5, 6]]"})
    assert inline.palette_override == [[1, 2, 3], [4, 5, 6]]
    palette_file = tmp_path / "palette.yaml"
    palette_file.write_text("palette:\n  - [10, 20, 30]\n")
    assert params.parse_palette(str(palette_file)) == [[10, 20, 30]]
    with pytest.raises(params.ParameterError, match="0..255"):
        params.parse_palette("[[0, 0, 300]]")


def test_runtime_split() -> None:
    assert params.change_rejection("output.points", configured=True) is None
    assert params.change_rejection("processing.max_rate_hz", configured=True) is None
    reason = params.change_rejection("model.path", configured=True)
    assert reason and "deactivate and clean up" in reason
    assert params.change_rejection("model.path", configured=False) is None
    assert "read-only" in params.change_rejection("autostart", configured=False)
    runtime = {spec.name for spec in params.SPECS if spec.runtime}
    assert {f"output.{key}" for key in params.OUTPUT_TOPICS} <= runtime
    assert not {"model.path", "model.backend", "input.image_topic", "qos.reliability", "qos.depth"} & runtime


def test_default_model_path_falls_back_to_the_source_tree() -> None:
    path = default_model_path()
    assert path.name == "default.onnx" and path.parent.name == "models"


def test_docs_describe_every_parameter() -> None:
    text = (ROOT / "docs" / "node.md").read_text()
    for spec in params.SPECS:
        key = spec.name.split(".", 1)[1] if spec.name.startswith("output.") and spec.name[7:] in params.OUTPUT_TOPICS else None
        assert f"`{spec.name}`" in text or (key and f"`{key}`" in text) or (spec.name in ("depth.min", "depth.max") and "`depth.min`, `depth.max`" in text), spec.name
