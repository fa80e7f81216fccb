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


# ------------------------------------------------------------------ the shipped files as ROS reads them
CONFIG = ROOT / "config"
OWN_LOADER_DIRS = ("train", "study")  # experiment and study configs: read by the project's loader, not by ROS


def node_parameter_files() -> list[Path]:
    """Every YAML under config/ that holds a ``<node or /**>: ros__parameters:`` section."""
    found = []
    for path in sorted(CONFIG.rglob("*.yaml")):
        document = yaml.safe_load(path.read_text())
        if isinstance(document, dict) and any(isinstance(v, dict) and "ros__parameters" in v for v in document.values()):
            found.append(path)
    return found


def string_scalars(path: Path) -> list[tuple[str, yaml.ScalarNode]]:
    """(dotted name, node) of every string scalar value under ros__parameters (list items included)."""
    root = yaml.compose(path.read_text())
    found: list[tuple[str, yaml.ScalarNode]] = []

    def walk(node: yaml.Node, prefix: str) -> None:
        if isinstance(node, yaml.MappingNode):
            for key, value in node.value:
                walk(value, f"{prefix}.{key.value}" if prefix else key.value)
        elif isinstance(node, yaml.SequenceNode):
            for item in node.value:
                walk(item, prefix)
        elif isinstance(node, yaml.ScalarNode) and isinstance(yaml.safe_load(yaml.serialize(node)), str):
            found.append((prefix, node))

    for _, section in root.value:
        for key, value in section.value:
            if key.value == "ros__parameters":
                walk(value, "")
    return found


def test_config_yamls_are_node_parameter_files_or_the_loaders():
    node_files = node_parameter_files()
    assert {p.name for p in node_files} >= {"mtl_perception.yaml", "two_cameras.yaml"}
    for path in sorted(CONFIG.rglob("*.yaml")):
        if path not in node_files:
            assert path.parent.name in OWN_LOADER_DIRS, f"{path.relative_to(ROOT)} is neither a node parameter file nor a train/study config"


@pytest.mark.parametrize("path", node_parameter_files(), ids=lambda p: p.name)
def test_every_string_value_is_quoted(path: Path):
    """ROS's parser types plain text by its form (nan, inf, 1e3, 0x10, true, on): a string must be quoted to stay one."""
    scalars = string_scalars(path)
    assert scalars, "the scan found no string value"
    plain = [f"{name} = {node.value!r} (line {node.start_mark.line + 1})" for name, node in scalars if node.style not in ("'", '"')]
    assert plain == []


@pytest.mark.parametrize("value,meant", [(float("nan"), "nan"), (float("inf"), "inf"), ("inf", "inf"), ("nan", "nan")])
def test_unquoted_nan_and_inf_mean_the_strings(value, meant):
    assert params.normalise("depth.out_of_range", value) == meant
    params.check_value("depth.out_of_range", value)
    assert params.settings_from_values({"depth.out_of_range": value}).out_of_range == meant
    assert params.descriptor(params.SPEC_BY_NAME["depth.out_of_range"]).dynamic_typing


@pytest.mark.parametrize("value", [float("-inf"), 3.0, True, 1])
def test_other_numbers_for_out_of_range_are_refused(value):
    with pytest.raises(params.ParameterError, match="depth.out_of_range"):
        params.check_value("depth.out_of_range", value)


def test_only_out_of_range_takes_number_spellings():
    """A number is never silently a string elsewhere: 'model.precision' = nan stays a type error."""
    assert [s.name for s in params.SPECS if s.number_spellings] == ["depth.out_of_range"]
    assert params.normalise("model.precision", float("nan")) != "nan"
    with pytest.raises(params.ParameterError, match="must be a str"):
        params.check_value("model.precision", float("nan"))
    line = params.type_error_message(params.SPEC_BY_NAME["model.precision"],
                                     "Trying to set parameter 'model.precision' to '1000.0' of type 'DOUBLE', expecting type 'STRING'")
    assert "model.precision" in line and "quote it" in line and "\n" not in line
