"""Fixtures shared by the test modules, and the suite's markers.

- ``tiny_model_files`` (session): one randomly initialised 3-task network for the whole run (ResNet-18,
  64x96 input, the synthetic class set), exported by ``inference.export.export_untrained``: (ONNX file,
  checkpoint). ``tiny_model`` / ``model_file`` (the ROS tests' and the bag tests' name) are its ONNX file,
  ``tiny_checkpoint`` its checkpoint. Tests copy the files before damaging them.
- ``exported_network`` (session): ``exported_network(encoder, architecture, sharing, decoder_stride)`` exports that
  random network to ONNX the first time it is asked for (``network_support.export_random_network``) and returns the
  same ``Exported`` (config, report) afterwards: the export, interaction and sharing tests share one export each.

Markers (registered in setup.cfg), given here from the tables below so that one place lists them:
- ``slow``: the long tests (soak, fault injection, multi-process nodes, the study, the demo, the training runs, the
  two-process DDP test, the export matrix of every sharing depth): ``make test-fast`` and ``make test-min`` leave
  them out (``-m "not slow"``), ``make test`` runs everything;
- ``ros``: the tests of a live ROS graph (``make test-min`` leaves them out: the same ros-* wheels in both venvs);
- ``serial``: the tests whose assertions measure wall time (soak latency, rate limits, time bounds): ``make test``
  runs them in a phase of their own after the parallel one (``-n 2`` beside them would make them flaky on 2 cores).
Under pytest-xdist (``-n 2``) the modules of WORKER_GROUPS run whole on one worker each group: every live ROS
graph of a run on one worker (``isolate_ros_domain`` derives the domain from the pid and a module offset, which
does not keep two workers apart), the shared export cache on one worker (each network exported once).
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable

import pytest

TINY_HEIGHT, TINY_WIDTH = 64, 96

SLOW_MODULES = {"test_reliability_soak.py", "test_reliability_faults.py", "test_ros_multiprocess.py", "test_study.py",
                "test_demo.py", "test_training_run.py"}
SLOW_TESTS = {"test_training_weighting.py::test_two_processes_weight_with_the_global_batch",
              "test_reliability_memory.py::test_node_refuses_a_frame_above_the_budget_and_its_memory_returns_after_a_large_one",
              "test_model_sharing.py::test_exports_with_onnx_runtime_parity_and_passes_check_trt"}
SERIAL_MODULES = {"test_reliability_soak.py"}
SERIAL_TESTS = {"test_gpu_check.py::test_gpu_check_on_a_bare_machine_writes_one_json_line_per_row",
                "test_gpu_check.py::test_gpu_check_runs_from_the_bundle_alone",
                "test_gpu_check.py::test_rows_are_written_as_they_end_and_the_budget_stops_a_row_inside",
                "test_ros_node.py::test_max_rate_limits_processing",
                "test_ros_stats.py::test_slot_take_wakes_on_put_and_on_close"}
ROS_MODULES = {"test_ros_node.py", "test_ros_pipelined.py", "test_ros_cameras.py", "test_ros_multiprocess.py",
               "test_bags_replay.py", "test_demo.py", "test_reliability_soak.py", "test_ros_parameter_files.py",
               "test_ros_distributions.py", "test_ros_node_tensorrt.py", "test_ros_engines.py", "test_ros_fastdds_profile.py"}
ROS_FIXTURES = {"graph"}  # a module's live ROS graph (test_reliability_corpus, test_reliability_faults, ...)
# Under pytest-xdist (``-n 2``) each of these groups of modules runs whole on one worker (``pytest_xdist_make_scheduler``):
# every module with a test of a live ROS graph, so that two graphs of one run never meet on a ROS domain, and the
# modules of the shared export cache (``exported_network``), so that each network is exported once per run.
# Every other test is dealt out one by one.
ROS_WORKER_MODULES = ROS_MODULES | {"test_reliability_cache.py", "test_reliability_corpus.py", "test_reliability_faults.py",
                                    "test_reliability_memory.py", "test_reliability_storage.py"}
EXPORT_MODULES = {"test_inference_export.py", "test_model_interaction.py", "test_model_sharing.py"}
WORKER_GROUPS = {**{m: "exports" for m in EXPORT_MODULES}, **{m: "ros" for m in ROS_WORKER_MODULES}}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        module = item.path.name
        name = f"{module}::{item.originalname}"  # type: ignore[attr-defined]
        fixtures = set(getattr(item, "fixturenames", ()))
        if module in SLOW_MODULES or name in SLOW_TESTS:
            item.add_marker(pytest.mark.slow)
        if module in SERIAL_MODULES or name in SERIAL_TESTS:
            item.add_marker(pytest.mark.serial)
        if module in ROS_MODULES or ROS_FIXTURES & fixtures:
            item.add_marker(pytest.mark.ros)
            if module not in ROS_WORKER_MODULES:
                raise pytest.UsageError(f"{item.nodeid} runs a live ROS graph: add {module} to ROS_WORKER_MODULES (test/conftest.py)")
        if "exported_network" in fixtures and module not in EXPORT_MODULES:
            raise pytest.UsageError(f"{item.nodeid} uses the export cache: add {module} to EXPORT_MODULES (test/conftest.py)")


@pytest.hookimpl(tryfirst=True, optionalhook=True)  # before xdist's own choice; a hook only where xdist is installed
def pytest_xdist_make_scheduler(config: pytest.Config, log: object) -> object:
    """``-n N`` (``--dist load``): xdist's scope scheduler with WORKER_GROUPS as the scopes, every other test its own."""
    if config.getvalue("dist") != "load":
        return None
    from xdist.scheduler import LoadScopeScheduling

    class GroupScheduling(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            return WORKER_GROUPS.get(nodeid.split("::", 1)[0].rsplit("/", 1)[-1], nodeid)

    return GroupScheduling(config, log)


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
def exported_network(tmp_path_factory: pytest.TempPathFactory) -> Callable[..., "Exported"]:  # noqa: F821
    from network_support import export_random_network

    folder = tmp_path_factory.mktemp("exports")
    done: dict[tuple[str, str, str, int], object] = {}

    def export(encoder: str = "resnet18", architecture: str = "hard", sharing: str = "encoder",
               decoder_stride: int = 4) -> "Exported":  # noqa: F821
        key = (encoder, architecture, sharing, decoder_stride)
        if key not in done:
            done[key] = export_random_network(folder, *key)
        return done[key]

    return export
