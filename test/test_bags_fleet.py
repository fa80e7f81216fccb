"""bag-eval on Ray (``--executor ray``): the same figures and prediction bags as ``--jobs 1``, faults, Ctrl-C.

One local Ray instance (2 CPUs, no dashboard, its session folder in the test's tmp dir) serves the module;
every process it starts carries a marker variable, so teardown checks that none survives. Ray is the
``[fleet]`` extra: without it (``make test-min``) only the one-line "not installed" error is tested.
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import uuid
from pathlib import Path
from typing import Any, Iterator

import pytest
from bags_support import make_synthetic_bag

from mtl_perception.bags.evaluation import BagEvalSettings, BagResult, evaluate_bags, summarize
from mtl_perception.bags.io import BagReader
from mtl_perception.cli import main

MARKER = "MTL_PERCEPTION_FLEET_TEST"
RAY_MISSING = "ray is not installed (the [fleet] extra; make test-min leaves it out)"


def marked_processes(value: str) -> list[int]:
    """Live (non-zombie) processes whose environment holds MARKER=value."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if (entry / "stat").read_text().rsplit(")", 1)[1].split()[0] == "Z":
                continue
            if f"{MARKER}={value}".encode() in (entry / "environ").read_bytes().split(b"\0"):
                found.append(int(entry.name))
        except OSError:  # gone, or not ours to read
            continue
    return found


def wait_until_gone(value: str, timeout: float = 30.0) -> list[int]:
    """The marked processes still alive once they are all gone or ``timeout`` has passed (polled on /proc)."""
    done = threading.Event()
    alive = marked_processes(value)
    while alive and not done.wait(0.2):  # Event.wait: the poll interval, bounded by the timeout below
        alive = marked_processes(value)
        timeout -= 0.2
        if timeout <= 0:
            break
    return alive


def short_temp_dir() -> Iterator[str]:
    """A folder with a short path: Ray's socket paths inside it must stay under AF_UNIX's 107 bytes (pytest's
    tmp paths grow a worker folder under xdist)."""
    folder = tempfile.mkdtemp(prefix="mtlray", dir="/tmp")
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


ray_temp_dir = pytest.fixture(scope="module")(short_temp_dir)
ray_subprocess_temp_dir = pytest.fixture(short_temp_dir)


@pytest.fixture(scope="module")
def ray_cluster(ray_temp_dir: str) -> Iterator[Any]:
    ray = pytest.importorskip("ray", reason=RAY_MISSING)
    marker = uuid.uuid4().hex
    os.environ[MARKER] = marker  # inherited by every process ray.init starts
    try:
        ray.init(num_cpus=2, include_dashboard=False, _temp_dir=ray_temp_dir,
                 logging_level="WARNING", log_to_driver=False)
    finally:
        del os.environ[MARKER]
    assert marked_processes(marker), "the local Ray instance started no marked process"
    yield ray
    ray.shutdown()
    assert wait_until_gone(marker) == [], "Ray processes survived ray.shutdown()"


@pytest.fixture(scope="module")
def bags(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    folder = tmp_path_factory.mktemp("fleet_bags")
    return [make_synthetic_bag(folder / f"bag{i}", "mcap" if i == 1 else "sqlite3", frames=4 + i, seed=i)
            for i in range(3)]


@pytest.fixture(scope="module")
def long_bag(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A bag long enough (about 1 s on one core) to be caught mid-evaluation."""
    return make_synthetic_bag(tmp_path_factory.mktemp("fleet_long") / "long", frames=100, seed=7)


def without_latency(document: dict) -> str:
    """A summary document with the wall-clock latency statistics reduced to their sample counts, as JSON text
    (so that NaN figures compare equal)."""
    for figures in [*document["bags"], document["aggregate"]]:
        figures["latency"] = {stage: stats["count"] for stage, stats in figures["latency"].items()}
    return json.dumps(document, sort_keys=True, default=str)


def frame_figures(results: list[BagResult]) -> list[list[tuple]]:
    """Per-frame metrics and temporal change of every bag (the report's per-frame plot)."""
    return [[(r.index, r.stamp_ns, r.metrics, r.stability) for r in result.records] for result in results]


def bag_messages(path: str) -> dict[str, list[tuple[int | None, bytes]]]:
    """topic -> [(log time, raw message)] of a bag; prediction topics without log time (stamp + latency)."""
    with BagReader(Path(path)) as reader:
        messages: dict[str, list[tuple[int | None, bytes]]] = {}
        for topic, log_time, raw in reader.messages(reader.topics):
            kept = None if topic.startswith("/perception") else log_time
            messages.setdefault(topic, []).append((kept, bytes(raw)))
    return messages


def test_ray_equals_jobs_1(ray_cluster: Any, bags: list[Path], model_file: Path, tmp_path: Path) -> None:
    from mtl_perception.bags.evaluation.ray_executor import RayOptions, evaluate_bags_on_ray

    settings = BagEvalSettings(model=str(model_file), output_bag=str(tmp_path / "predictions"), progress=False)
    serial = evaluate_bags(bags, settings, jobs=1)
    (tmp_path / "predictions").rename(tmp_path / "serial")  # the Ray run writes the same paths
    seen: list[dict] = []
    run = evaluate_bags_on_ray(bags, settings, RayOptions(), on_progress=seen.append)
    assert run.failures == [] and [s.attempts for s in run.stats] == [1, 1, 1]
    assert without_latency(summarize(run.results, settings).to_json()) == without_latency(
        summarize(serial, settings).to_json())
    assert frame_figures(run.results) == frame_figures(serial)
    for ours, theirs in zip(run.results, serial):  # the report's picture strip, pixel for pixel
        assert [[(name, image.tobytes()) for name, image in row] for row in ours.strip] == [
            [(name, image.tobytes()) for name, image in row] for row in theirs.strip]
        assert ours.output_bag == theirs.output_bag == str(tmp_path / "predictions" / f"{Path(ours.bag).name}_predictions")
        assert bag_messages(ours.output_bag) == bag_messages(str(tmp_path / "serial" / Path(ours.output_bag).name))
    # the bar was fed from the tasks: every frame of every bag counted once
    assert {unit: state[2:] for unit, state in seen[-1].items()} == {0: (4, 4), 1: (5, 5), 2: (6, 6)}
    assert run.model_bytes == model_file.stat().st_size and all(s.result_bytes > 0 for s in run.stats)


def test_killed_worker_is_retried(ray_cluster: Any, bags: list[Path], long_bag: Path, model_file: Path) -> None:
    from mtl_perception.bags.evaluation.ray_executor import RayOptions, evaluate_bags_on_ray

    settings = BagEvalSettings(model=str(model_file), progress=False)
    killed: list[int] = []

    def kill_mid_bag(snapshot: dict) -> None:  # the driver's progress event: the long bag's worker is mid-bag
        attempts, pid, done, planned = snapshot.get(0, (0, 0, 0, 0))
        if not killed and attempts == 1 and 0 < done < planned:
            os.kill(pid, signal.SIGKILL)
            killed.append(pid)

    run = evaluate_bags_on_ray([long_bag, bags[0]], settings, RayOptions(max_retries=2), on_progress=kill_mid_bag)
    assert killed, "the long bag finished before its worker could be killed"
    assert run.failures == [] and run.stats[0].attempts == 2 and run.stats[0].pid != killed[0]
    serial = evaluate_bags([long_bag, bags[0]], settings, jobs=1)
    assert without_latency(summarize(run.results, settings).to_json()) == without_latency(
        summarize(serial, settings).to_json())


def test_corrupt_bag_is_reported_and_the_others_evaluated(ray_cluster: Any, bags: list[Path], model_file: Path,
                                                          tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from mtl_perception.bags.evaluation.ray_executor import RayOptions, evaluate_bags_on_ray

    corrupt = tmp_path / "corrupt"
    corrupt.mkdir()
    (corrupt / "metadata.yaml").write_text("rosbag2_bagfile_information: [not, a, bag\n")
    settings = BagEvalSettings(model=str(model_file), progress=False)
    run = evaluate_bags_on_ray([bags[0], corrupt, bags[2]], settings, RayOptions())
    assert [r.bag for r in run.results] == [str(bags[0]), str(bags[2])]
    assert [f.bag for f in run.failures] == [str(corrupt)] and "\n" not in run.failures[0].error
    assert str(corrupt) in run.failures[0].error and [s.attempts for s in run.stats] == [1, 1, 1]  # not retried
    out = tmp_path / "report"
    code = main(["bag-eval", str(bags[0]), str(corrupt), str(bags[2]), "--model", str(model_file), "--executor", "ray",
                 "--out", str(out), "--quiet"])
    assert code == 1
    assert f"bag {corrupt} not evaluated" in capsys.readouterr().err
    summary = json.loads((out / "summary.json").read_text())
    assert [b["bag"] for b in summary["bags"]] == [str(bags[0]), str(bags[2])]
    assert summary["failed_bags"] == [{"bag": str(corrupt), "error": run.failures[0].error}]
    assert "Bags not evaluated" in (out / "report.md").read_text()


def test_ctrl_c_leaves_no_ray_process(ray_cluster: Any, bags: list[Path], long_bag: Path, model_file: Path,
                                      tmp_path: Path, ray_subprocess_temp_dir: str) -> None:
    long_bags = [long_bag, long_bag]  # on 2 CPUs: the short bag and one long bag run, the other waits
    marker = uuid.uuid4().hex
    env = {**os.environ, MARKER: marker, "RAY_TMPDIR": ray_subprocess_temp_dir}
    command = [sys.executable, "-m", "mtl_perception.cli", "bag-eval", str(bags[0]), *map(str, long_bags),
               "--model", str(model_file), "--executor", "ray", "--out", str(tmp_path / "report")]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    watchdog = threading.Timer(120, process.kill)  # bounds the blocking reads below
    watchdog.start()
    try:
        assert process.stdout is not None
        for line in process.stdout:  # event: the short bag's line, while the long bags are mid-evaluation
            if line.startswith("evaluated"):
                break
        assert len(marked_processes(marker)) > 2, f"no Ray worker was running: {process.communicate()[1][-2000:]}"
        process.send_signal(signal.SIGINT)
        _, err = process.communicate()
    finally:
        watchdog.cancel()
    assert process.returncode == 130, err[-2000:]
    assert "interrupted" in err
    assert wait_until_gone(marker) == []


def test_uris_and_missing_ray_are_one_line_errors(bags: list[Path], model_file: Path, tmp_path: Path,
                                                  capsys: pytest.CaptureFixture[str],
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "ray", None)  # as on a robot install: `import ray` fails
    code = main(["bag-eval", str(bags[0]), "--model", str(model_file), "--executor", "ray", "--out",
                 str(tmp_path / "report"), "--quiet"])
    err = capsys.readouterr().err
    assert code == 2 and len(err.strip().splitlines()) == 1 and "mtl_perception[fleet]" in err
    from mtl_perception.bags.evaluation.ray_executor import check_paths

    with pytest.raises(ValueError, match="URIs are not supported"):
        check_paths([bags[0], "s3://fleet/bags/run1"])


def test_payload_bytes_counts_what_a_result_carries() -> None:
    """The benchmark's bytes per bag: array bytes, text and numbers, through dataclasses and containers."""
    from dataclasses import dataclass

    import numpy as np

    from mtl_perception.bags.evaluation.ray_executor import payload_bytes

    @dataclass
    class Part:
        states: dict[str, np.ndarray]
        names: list[str]
        count: int

    part = Part({"depth": np.zeros((10, 3), np.float64)}, ["ab", "é"], 7)
    assert payload_bytes(part) == len("depth") + 240 + 2 + 2 + 8
    assert payload_bytes((part, None, b"xyz")) == payload_bytes(part) + 3
    assert payload_bytes(None) == 0
