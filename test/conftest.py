"""Fixtures shared by the test modules, and the suite's markers.

- ``tiny_model_files`` (session): one randomly initialised 3-task network for the whole run (ResNet-18,
  64x96 input, the synthetic class set), exported by ``inference.export.export_untrained``: (ONNX file,
  checkpoint). ``tiny_model`` / ``model_file`` (the ROS tests' and the bag tests' name) are its ONNX file,
  ``tiny_checkpoint`` its checkpoint. Tests copy the files before damaging them.
- ``exported_network`` (session): ``exported_network(encoder, architecture)`` exports that random network to
  ONNX the first time it is asked for (``network_support.export_random_network``) and returns the same
  ``Exported`` (config, report) afterwards: the export and interaction tests share one export each.

Markers (registered in setup.cfg): ``slow`` for the long tests (soak, fault injection, Fast DDS delivery,
multi-process nodes, the study, the demo, the three longest training runs) and ``ros`` for the tests of a
live ROS graph. They are given here, from the tables below, so that one place lists them: ``make test-fast``
runs ``-m "not slow"``, ``make test`` everything.
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable

import pytest

TINY_HEIGHT, TINY_WIDTH = 64, 96

SLOW_MODULES = {"test_reliability_soak.py", "test_reliability_faults.py", "test_reliability_delivery.py",
                "test_ros_multiprocess.py", "test_study.py", "test_demo.py"}
SLOW_TESTS = {"test_training_run.py::test_short_training_reduces_loss_and_beats_trivial_baselines",
              "test_training_run.py::test_killed_training_resumes_from_its_last_checkpoint",
              "test_training_run.py::test_torchrun_two_processes_keep_identical_weights"}
ROS_MODULES = {"test_ros_node.py", "test_ros_pipelined.py", "test_ros_cameras.py", "test_ros_multiprocess.py",
               "test_bags_replay.py", "test_demo.py", "test_reliability_soak.py", "test_ros_parameter_files.py",
               "test_ros_distributions.py", "test_ros_node_tensorrt.py", "test_ros_engines.py", "test_ros_fastdds_profile.py"}
ROS_FIXTURES = {"graph"}  # a module's live ROS graph (test_reliability_corpus, test_reliability_faults)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        module = item.path.name
        if module in SLOW_MODULES or f"{module}::{item.originalname}" in SLOW_TESTS:  # type: ignore[attr-defined]
            item.add_marker(pytest.mark.slow)
        if module in ROS_MODULES or ROS_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.ros)


def export_tiny_model(folder: Path) -> tuple[Path, Path]:
    """The tiny network (module docstring) exported into ``folder``: (tiny.onnx, tiny.pt)."""
    import torch

    from mtl_perception.config import ExperimentConfig
    from mtl_perception.inference.export import export_untrained

    torch.set_num_threads(1)
    config = ExperimentConfig()
    config.model.encoder = "resnet18"
    config.data.height, config.data.width = TINY_HEIGHT, TINY_WIDTH
    report = export_untrained(folder / "tiny.onnx", config, keep_checkpoint=True)
    return report.path, folder / "tiny.pt"


@pytest.fixture(scope="session")
def tiny_model_files(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    return export_tiny_model(tmp_path_factory.mktemp("tiny_model"))


@pytest.fixture(scope="session")
def tiny_model(tiny_model_files: tuple[Path, Path]) -> Path:
    return tiny_model_files[0]


@pytest.fixture(scope="session")
def model_file(tiny_model_files: tuple[Path, Path]) -> Path:
    return tiny_model_files[0]


@pytest.fixture(scope="session")
def tiny_checkpoint(tiny_model_files: tuple[Path, Path]) -> Path:
    return tiny_model_files[1]


@pytest.fixture(scope="session")
def exported_network(tmp_path_factory: pytest.TempPathFactory) -> Callable[[str, str], "Exported"]:  # noqa: F821
    from network_support import export_random_network

    folder = tmp_path_factory.mktemp("exports")
    done: dict[tuple[str, str], object] = {}

    def export(encoder: str = "resnet18", architecture: str = "hard") -> "Exported":  # noqa: F821
        if (encoder, architecture) not in done:
            done[encoder, architecture] = export_random_network(folder, encoder, architecture)
        return done[encoder, architecture]

    return export
