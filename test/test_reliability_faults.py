"""Fault injection: training killed with SIGKILL at random points, writers killed mid-write, a model
file damaged under a running node, and a backend that fails at run time.

- training: three SIGKILLs at random moments; each time the checkpoint loads, the next run resumes
  from it, and at most one checkpoint interval of steps is lost; the run then finishes.
- atomic writes: a process killed while writing a large file through ``atomic_write_bytes`` leaves
  the previous file (byte-identical and loadable), and export/evaluate killed at random moments
  leave the previous output or a complete new one.
- node: a model file truncated on disk while the node is active does not disturb it (the model is in
  memory); re-activating with the damaged file fails with an ERROR on /diagnostics, and restoring the
  file brings the node back without restarting it. A backend failing at run time reports ERROR and
  the node continues on the CPU fallback.
"""
from __future__ import annotations

import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from ros_fixtures import ros_graph

from mtl_perception.training.checkpoint import load_checkpoint

ROOT = Path(__file__).resolve().parents[1]
RNG = random.Random(int(os.environ.get("FAULT_SEED", os.getpid())))
TINY = ["model.encoder=resnet18", "model.decoder_channels=16", "model.head_channels=16", "data.height=48", "data.width=64",
        "data.train_count=64", "data.val_count=2", "data.augment=false", "train.batch_size=1", "train.warmup_steps=0",
        "train.threads=1", "train.val_every=100000"]
CKPT_EVERY = 3

# Runs `mtl-perception train` and appends each finished step to a progress file (line-buffered, so the
# kernel holds it even when the process is killed the next instant).
TRAIN_WITH_PROGRESS = """
import sys
from mtl_perception.training import trainer
progress = open(sys.argv[1], "a", buffering=1)
_step = trainer.Trainer._train_step
def step(self, batch):
    out = _step(self, batch)
    progress.write(f"{self.step + 1}\\n")
    return out
trainer.Trainer._train_step = step
from mtl_perception.cli import main
sys.exit(main(sys.argv[2:]))
"""


def _progress(path: Path) -> list[int]:
    return [int(line) for line in path.read_text().split()] if path.exists() else []


def _wait_for_step(progress: Path, step: int, process: subprocess.Popen, timeout_s: float = 300.0) -> list[int]:
    """The progress file's steps once it lists ``step`` (or the process ended, or ``timeout_s`` passed)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and process.poll() is None:
        steps = _progress(progress)
        if steps and steps[-1] >= step:
            return steps
        time.sleep(0.01)
    return _progress(progress)


def test_training_killed_three_times_resumes_losing_at_most_one_interval(tmp_path: Path) -> None:
    """Each kill is placed by training steps, not seconds: the run is killed once it has passed a random step
    beyond its next checkpoint (the progress line of step N + 1 is written after the checkpoint of step N),
    plus a random fraction of a step, so kills land anywhere, checkpoint writes included, on any machine load."""
    out = tmp_path / "run"
    args = ["train", "--no-progress", "--resume", "auto", *TINY, f"train.out_dir={out}", f"train.ckpt_every={CKPT_EVERY}"]
    checkpoint_step, log = 0, []
    for kill in range(3):
        progress = tmp_path / f"progress{kill}.txt"
        process = subprocess.Popen([sys.executable, "-c", TRAIN_WITH_PROGRESS, str(progress), *args, "train.steps=100000"],
                                   stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        target = checkpoint_step + CKPT_EVERY + 1 + RNG.randrange(3 * CKPT_EVERY)  # past at least one new checkpoint
        steps = _wait_for_step(progress, target, process)
        alive = process.poll() is None
        if not alive or not steps or steps[-1] < target:
            process.kill()
            process.wait(timeout=30)
            detail = process.stderr.read().decode()[-2000:]
            pytest.fail(f"run {kill} did not reach step {target} (steps {steps[-3:]}, exited: {not alive}): {detail}")
        assert steps[0] == checkpoint_step + 1, f"run {kill} started at step {steps[0]}, expected to resume after checkpoint step {checkpoint_step}"
        fraction = RNG.uniform(0.0, 0.2)  # within a step or two: sometimes during a checkpoint write
        time.sleep(fraction)
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=30)
        process.stderr.close()
        reached = max(_progress(progress))
        state = load_checkpoint(out / "last.pt")  # never a half-written file
        assert state["step"] >= checkpoint_step + CKPT_EVERY, "no new checkpoint although the run passed one"
        lost = reached - state["step"]
        assert 0 <= lost <= CKPT_EVERY, f"kill {kill}: reached step {reached}, checkpoint at {state['step']}: lost {lost} > {CKPT_EVERY}"
        log.append(f"kill {kill + 1} at step {target} + {fraction:.2f} s: reached step {reached}, checkpoint step {state['step']}, lost {lost} steps")
        checkpoint_step = state["step"]
    final = checkpoint_step + 2
    progress = tmp_path / "progress_final.txt"
    finish = subprocess.run([sys.executable, "-c", TRAIN_WITH_PROGRESS, str(progress), *args, f"train.steps={final}"],
                            capture_output=True, text=True, timeout=300)
    assert finish.returncode == 0, finish.stderr[-2000:]
    assert _progress(progress) == [checkpoint_step + 1, checkpoint_step + 2]
    assert load_checkpoint(out / "last.pt")["step"] == final
    assert not list(out.glob(".*.tmp")), "temporary files of the killed runs were left behind"
    print("\n" + "\n".join(log) + f"\nresumed and finished at step {final}")


# ---------------------------------------------------------------------------------------------- atomic writes
WRITE_BIG = """
import sys
from mtl_perception.fileio import atomic_write_bytes
data = bytes(int(sys.argv[2]))
print("writing", flush=True)
atomic_write_bytes(sys.argv[1], data)
print("done", flush=True)
"""


@pytest.fixture(scope="module")
def tiny_files(tiny_model_files: tuple[Path, Path]) -> tuple[Path, Path]:
    """(model.onnx, checkpoint.pt) of a small 64x96 network (copied before they are damaged)."""
    return tiny_model_files


def test_writer_killed_mid_write_leaves_the_previous_file(tmp_path: Path, tiny_files: tuple[Path, Path]) -> None:
    from mtl_perception.inference.model_file import read_onnx_metadata

    onnx_path, checkpoint = tiny_files
    mid_write = 0
    for attempt, (original, load) in enumerate([(checkpoint, load_checkpoint), (onnx_path, read_onnx_metadata), (checkpoint, load_checkpoint)]):
        target = tmp_path / f"out{attempt}{original.suffix}"
        shutil.copyfile(original, target)
        before = target.read_bytes()
        writer = subprocess.Popen([sys.executable, "-c", WRITE_BIG, str(target), str(400 << 20)], stdout=subprocess.PIPE, text=True)
        assert writer.stdout.readline().strip() == "writing"
        deadline = time.monotonic() + 30  # kill once the temporary file exists: mid-write, whatever the machine's load
        while not list(tmp_path.glob(f".{target.name}.*.tmp")) and writer.poll() is None and time.monotonic() < deadline:
            time.sleep(0.001)
        writer.send_signal(signal.SIGKILL)
        writer.wait(timeout=30)
        writer.stdout.close()
        partial = list(tmp_path.glob(f".{target.name}.*.tmp"))
        mid_write += bool(partial)
        assert target.read_bytes() == before, "the target changed although the writer was killed"
        load(target)  # still a usable file
        for stale in partial:
            stale.unlink()
    assert mid_write >= 1, "no kill landed during a write (the 400 MB write finished first every time)"


def _kill_at_random(command: list[str], lo: float, hi: float) -> tuple[float, int | None]:
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    delay = RNG.uniform(lo, hi)
    try:
        process.wait(timeout=delay)
    except subprocess.TimeoutExpired:
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=30)
    return delay, process.returncode


def _outcome(command: str, delay: float, code: int | None, unchanged: bool) -> str:
    how = "SIGKILLed" if code == -signal.SIGKILL else f"finished (exit {code}) before the kill"
    return f"{command} {how} at {delay:.1f} s: {'previous output intact' if unchanged else 'complete new output'}"


def test_export_and_evaluate_killed_at_random_leave_old_or_complete_outputs(tmp_path: Path, tiny_files: tuple[Path, Path]) -> None:
    from mtl_perception.inference.model_file import read_onnx_metadata

    onnx_path, checkpoint = tiny_files
    cli = [sys.executable, "-m", "mtl_perception.cli"]
    model_out = tmp_path / "deployed.onnx"
    report = tmp_path / "report"
    report.mkdir()
    (report / "metrics.json").write_text(json.dumps({"frames": 1, "metrics": {}}))
    shutil.copyfile(onnx_path, model_out)
    outcomes = []
    for height, width, count in [(96, 128, 2), (64, 96, 3)]:  # each run changes its output, so a finished one shows
        old_model, old_report = model_out.read_bytes(), (report / "metrics.json").read_bytes()
        delay, code = _kill_at_random([*cli, "export", "--checkpoint", str(checkpoint), "--out", str(model_out), "--height", str(height),
                                       "--width", str(width)], 2.0, 9.0)
        new_model = model_out.read_bytes()
        assert new_model == old_model or read_onnx_metadata(model_out).input_height == height, "export left a damaged model"
        outcomes.append(_outcome("export", delay, code, new_model == old_model))
        delay, code = _kill_at_random([*cli, "evaluate", "--checkpoint", str(checkpoint), "--count", str(count), "--out", str(report)], 2.0, 9.0)
        text = (report / "metrics.json").read_bytes()
        assert text == old_report or json.loads(text)["frames"] == count, "evaluate left a damaged report"
        outcomes.append(_outcome("evaluate", delay, code, text == old_report))
    print("\n" + "\n".join(outcomes))


# ---------------------------------------------------------------------------------------------- node


graph = ros_graph(offset=71)


def _statuses(msgs: list, name: str) -> list:
    return [s for m in msgs for s in m.status if s.name.startswith(f"{name}:")]


def test_model_file_damaged_under_a_running_node(graph, tiny_files: tuple[Path, Path], tmp_path: Path) -> None:
    from diagnostic_msgs.msg import DiagnosticArray
    from rclpy.lifecycle import TransitionCallbackReturn
    from rclpy.qos import QoSProfile, ReliabilityPolicy
    from ros_fixtures import wait_until
    from sensor_msgs.msg import Image

    from bad_input_corpus import good_image, stamped

    model = tmp_path / "live.onnx"
    shutil.copyfile(tiny_files[0], model)
    good = model.read_bytes()
    reliable = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
    node = graph.start_perception("damaged", "/damaged", {"model.path": str(model), "qos.reliability": "reliable"})
    diagnostics = graph.collect(DiagnosticArray, "/diagnostics", 10)
    publisher = graph.helper.create_publisher(Image, "/damaged/image", reliable)
    depth = graph.collect(Image, "/damaged/depth", reliable)

    def served(stamp: int) -> bool:
        assert wait_until(lambda: publisher.get_subscription_count() == 1 and node.cameras[0].publishers["depth"].get_subscription_count() >= 1, 10)
        publisher.publish(good_image(stamped(stamp)))
        return depth.wait_for(lambda msgs: any(m.header.stamp.sec == stamp for m in msgs), 20)

    assert served(1)
    model.write_bytes(good[: len(good) // 3])  # damaged on disk while active: the session holds the model in memory
    assert served(2)
    assert node.trigger_deactivate() == TransitionCallbackReturn.SUCCESS
    assert node.trigger_activate() == TransitionCallbackReturn.FAILURE  # the same node, no restart
    assert "truncated or corrupt" in node.backend.error
    assert diagnostics.wait_for(lambda msgs: any(s.level == b"\x02" and "truncated or corrupt" in s.message for s in _statuses(msgs, "damaged")), 5)
    model.write_bytes(good)
    assert node.trigger_activate() == TransitionCallbackReturn.SUCCESS
    assert served(3)
    diagnostics.clear()
    assert diagnostics.wait_for(lambda msgs: any(s.level == b"\x00" for s in _statuses(msgs, "damaged")), 5)
    graph.helper.destroy_publisher(publisher)
    graph.stop_perception(node)


def test_backend_failing_at_run_time_reports_error_and_falls_back(graph, tiny_files: tuple[Path, Path]) -> None:
    """Beyond test_ros_node's fallback test: the failure is an ERROR on /diagnostics although frames keep coming."""
    from diagnostic_msgs.msg import DiagnosticArray
    from rclpy.qos import QoSProfile, ReliabilityPolicy
    from ros_fixtures import wait_until
    from sensor_msgs.msg import Image

    from bad_input_corpus import good_image, stamped

    model = tiny_files[0]
    reliable = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
    node = graph.start_perception("failing", "/failing", {"model.path": str(model), "qos.reliability": "reliable", "model.provider": "auto"})
    diagnostics = graph.collect(DiagnosticArray, "/diagnostics", 10)
    publisher = graph.helper.create_publisher(Image, "/failing/image", reliable)
    depth = graph.collect(Image, "/failing/depth", reliable)
    assert wait_until(lambda: publisher.get_subscription_count() == 1 and node.cameras[0].publishers["depth"].get_subscription_count() >= 1, 10)

    def broken(*args: object, **kwargs: object) -> dict:
        raise RuntimeError("CUDA error: an illegal memory access was encountered")

    node.backend.pipeline.run_batch = broken  # what a GPU fault looks like to the node
    publisher.publish(good_image(stamped(1)))
    assert depth.wait_for(lambda msgs: any(m.header.stamp.sec == 1 for m in msgs), 20), "the frame was not served by the fallback"
    assert node.diagnostics_values()["backend"] == "onnxruntime (cpu)" and node.diagnostics_values()["backend_fallbacks"] == 1
    assert diagnostics.wait_for(lambda msgs: any(s.level == b"\x02" and "illegal memory access" in s.message and "onnxruntime" in s.message
                                                 for s in _statuses(msgs, "failing")), 5), "no ERROR on /diagnostics for the failure"
    publisher.publish(good_image(stamped(2)))
    assert depth.wait_for(lambda msgs: any(m.header.stamp.sec == 2 for m in msgs), 20)
    diagnostics.clear()
    assert diagnostics.wait_for(lambda msgs: any(s.level == b"\x00" for s in _statuses(msgs, "failing")), 5), "the ERROR did not clear on the fallback"
    graph.helper.destroy_publisher(publisher)
    graph.stop_perception(node)
