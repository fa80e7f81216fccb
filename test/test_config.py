"""Config loading: defaults, YAML files, overrides, and clear errors."""
from pathlib import Path

import pytest

from mtl_perception.config import ExperimentConfig, apply_overrides, config_from_dict, load_config

CONFIG_DIR = Path(__file__).resolve().parents[1] / "config" / "train"


def test_defaults_are_valid():
    config = load_config(None)
    assert config.model.tasks == ["depth", "semantic", "normals"]
    assert isinstance(config, ExperimentConfig)


@pytest.mark.parametrize("path", sorted(CONFIG_DIR.glob("*.yaml")), ids=lambda p: p.name)
def test_shipped_configs_load(path):
    load_config(path)


def test_overrides_are_parsed_as_yaml():
    config = load_config(None, ["train.lr=0.0005", "model.tasks=[depth]", "data.augment=false"])
    assert config.train.lr == 0.0005
    assert config.model.tasks == ["depth"]
    assert config.data.augment is False


def test_tasks_are_put_in_canonical_order():
    assert config_from_dict({"model": {"tasks": ["normals", "depth"]}}).model.tasks == ["depth", "normals"]


@pytest.mark.parametrize("raw, message", [
    ({"model": {"encodr": "resnet18"}}, "unknown key"),
    ({"modle": {}}, "unknown section"),
    ({"model": {"tasks": ["depth", "edges"]}}, "subset"),
    ({"model": {"tasks": []}}, "subset"),
    ({"data": {"height": 8}}, "at least 32"),
    ({"model": {"min_depth": 5.0, "max_depth": 1.0}}, "min_depth"),
])
def test_invalid_configs_name_the_problem(raw, message):
    with pytest.raises(ValueError, match=message):
        config_from_dict(raw)


def test_bad_override_syntax():
    with pytest.raises(ValueError, match="section.key=value"):
        apply_overrides({}, ["lr=0.1"])


def test_invalid_yaml_file(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("model: [unclosed\n")
    with pytest.raises(ValueError, match="not valid YAML"):
        load_config(bad)
    with pytest.raises(FileNotFoundError):
        load_config(tmp_path / "missing.yaml")


def test_hash_ignores_training_settings():
    a = load_config(None, ["train.lr=0.1"])
    b = load_config(None, ["train.lr=0.2"])
    c = load_config(None, ["model.encoder=resnet34"])
    assert a.hash() == b.hash() != c.hash()


@pytest.mark.parametrize("path", sorted(CONFIG_DIR.glob("*.yaml")), ids=lambda p: p.name)
def test_shipped_configs_build_their_model(path):
    from mtl_perception.model.network import build_model

    config = load_config(path, ["model.pretrained=null"])  # the weights file is the user's download
    model = build_model(config.model)
    assert list(model.tasks) == config.model.tasks


@pytest.mark.parametrize("path", sorted(CONFIG_DIR.glob("nyuv2_*.yaml")), ids=lambda p: p.name)
def test_nyuv2_configs_follow_the_standard_protocol(path):
    """40 classes on the official split at full resolution, from torchvision's ImageNet weights for the encoder."""
    from mtl_perception.model.encoders.weights import KNOWN_WEIGHTS

    config = load_config(path)
    assert (config.data.dataset, config.data.nyu_classes, config.model.num_classes) == ("nyuv2", 40, 40)
    assert (config.data.height, config.data.width, config.train.batch_size) == (480, 640, 8)
    assert config.model.tasks == ["depth", "semantic"]
    known = {entry.file_name for entry in KNOWN_WEIGHTS if entry.encoder == config.model.encoder}
    assert Path(config.model.pretrained).name in known
