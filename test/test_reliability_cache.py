"""Cache files that heal themselves (issue 29, 1): every cached artefact is checked against its content hash
before use; a damaged one is reported once (WARN naming it), counted, and rebuilt; what is served from the
rebuilt file equals a fresh build.

Per artefact type, each damaged two ways between two uses (truncated to half, overwritten with random bytes
of the same length): deploy graphs, FP16 and INT8 precision files, TensorRT engines and timing caches (through
the stand-ins ``trt_double.py`` / ``cuda_double.py``), calibration caches. Two processes building the same
deploy graph and precision file at once both end with one sound file. A real node process whose cached
deploy graph is damaged between two activations serves the next frames after one WARN, counts the rebuild on
/diagnostics, and counts no frame as bad input.
"""
from __future__ import annotations

import logging
import os
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np
import pytest
from ros_fixtures import ros_graph

from mtl_perception.fileio import cache_file_problem, cache_repairs, digest_path, ensure_cache_file, file_sha256, write_cache_file
from mtl_perception.inference.model_file import load_onnx_file
from mtl_perception.inference.sample_images import sample_image

HERE = Path(__file__).resolve().parent
HEIGHT, WIDTH = 48, 64
OUTPUTS = ("depth", "labels", "normals")
TRT_VERSION = "10.13.0.35"


def half(data: bytes) -> bytes:
    return data[: len(data) // 2]


def noise(data: bytes) -> bytes:
    return np.random.default_rng(len(data)).integers(0, 256, max(len(data), 16), dtype=np.uint8).tobytes()


DAMAGES: dict[str, Callable[[bytes], bytes]] = {"half": half, "random": noise}


def damage(path: Path, how: str) -> None:
    """Damage a cache file in place (its content hash stays as it was)."""
    path.write_bytes(DAMAGES[how](path.read_bytes()))


class Repairs:
    """The damaged cache files reported in this process since it was made, and the WARN lines logged for them."""

    def __init__(self, caplog: pytest.LogCaptureFixture) -> None:
        self.caplog = caplog
        self.start = cache_repairs()[0]
        caplog.set_level(logging.WARNING, logger="mtl_perception.cache")

    def count(self) -> int:
        return cache_repairs()[0] - self.start

    def warnings(self, path: Path) -> list[str]:
        return [r.getMessage() for r in self.caplog.records if r.levelno == logging.WARNING and str(path) in r.getMessage()]


@pytest.fixture
def repairs(caplog: pytest.LogCaptureFixture) -> Repairs:
    return Repairs(caplog)


def frame(seed: int = 3) -> np.ndarray:
    return np.ascontiguousarray(sample_image(HEIGHT, WIDTH, seed=seed))


def same_outputs(got: dict[str, np.ndarray], expected: dict[str, np.ndarray]) -> None:
    assert sorted(got) == sorted(expected)
    for name in expected:
        assert got[name].dtype == expected[name].dtype and np.array_equal(got[name], expected[name], equal_nan=True), name


# ----------------------------------------------------------------------------------------------- the mechanism

@pytest.mark.parametrize("how", sorted(DAMAGES))
def test_a_damaged_cache_file_is_reported_once_and_rebuilt(tmp_path: Path, repairs: Repairs, how: str) -> None:
    path = tmp_path / "artefact.bin"
    builds = []

    def build() -> bytes:
        builds.append(1)
        return b"cached artefact " * 64

    assert ensure_cache_file(path, build) is False and cache_file_problem(path) is None
    assert digest_path(path).read_text().split() == [file_sha256(path), path.name], "sha256sum -c reads the sidecar"
    assert ensure_cache_file(path, build) is True and len(builds) == 1, "a sound file is reused"
    damage(path, how)
    assert "differ from its content hash" in cache_file_problem(path)
    assert ensure_cache_file(path, build) is False and len(builds) == 2
    assert path.read_bytes() == b"cached artefact " * 64 and cache_file_problem(path) is None
    assert repairs.count() == 1 and len(repairs.warnings(path)) == 1
    assert ensure_cache_file(path, build) is True and repairs.count() == 1, "reported once: the rebuilt file is sound"


def test_a_missing_or_damaged_content_hash_is_a_damaged_file(tmp_path: Path, repairs: Repairs) -> None:
    path = tmp_path / "artefact.bin"
    write_cache_file(path, b"x" * 100)
    digest_path(path).write_text("not a hash\n")
    assert "is damaged" in cache_file_problem(path)
    digest_path(path).unlink()
    assert "is missing" in cache_file_problem(path)
    assert ensure_cache_file(path, lambda: b"y" * 100) is False and path.read_bytes() == b"y" * 100
    assert repairs.count() == 1


# ----------------------------------------------------------------------------------------------- deploy graphs

@pytest.mark.parametrize("how", sorted(DAMAGES))
def test_deploy_graph_damaged_between_two_starts_is_rebuilt(tiny_model: Path, tmp_path: Path, repairs: Repairs, how: str) -> None:
    from mtl_perception.inference.frame_pipeline import FramePipeline

    cache = tmp_path / "deploy"

    def serve() -> dict[str, np.ndarray]:
        pipeline = FramePipeline(tiny_model, "onnxruntime", {"provider": "cpu", "intra_op_threads": 1}, cache_dir=tmp_path)  # the root of deploy/
        try:
            return pipeline.run(frame(), "rgb8", OUTPUTS).arrays
        finally:
            pipeline.close()

    first = serve()
    (path,) = cache.glob("deploy-*.onnx")
    fresh = path.read_bytes()
    damage(path, how)
    same_outputs(serve(), first)
    assert path.read_bytes() == fresh, "the rebuilt graph is the graph a fresh build composes"
    assert repairs.count() == 1 and len(repairs.warnings(path)) == 1


def test_a_deploy_graph_the_backend_refuses_twice_is_a_backend_error(tiny_model: Path, tmp_path: Path, repairs: Repairs, monkeypatch) -> None:
    """A sound hash but a file the backend cannot load: composed again once; refused again: BackendError, not a frame's ValueError."""
    from mtl_perception.inference import frame_pipeline
    from mtl_perception.inference.backends import BackendError
    from mtl_perception.inference.model_file import ModelFileError

    pipeline = frame_pipeline.FramePipeline(tiny_model, "onnxruntime", {"provider": "cpu", "intra_op_threads": 1}, cache_dir=tmp_path)
    opened: list[Path] = []

    def refuse(kind: str, path: Path, **options: Any) -> Any:
        opened.append(Path(path))
        raise ModelFileError(f"model file {path} cannot be loaded: it is truncated or corrupt")

    monkeypatch.setattr(pipeline, "_create_backend", refuse)
    try:
        with pytest.raises(BackendError, match="even after composing it again") as caught:
            pipeline.run(frame(), "rgb8", ("depth",))
        assert not isinstance(caught.value, ValueError), "the node must not count it as the frame's bad input"
        assert len(opened) == 2 and opened[0] == opened[1] and repairs.count() == 1
    finally:
        pipeline.close()


# ----------------------------------------------------------------------------------------------- precision files

def run_network(path: Path) -> dict[str, np.ndarray]:
    from mtl_perception.inference.model_file import describe_onnx
    from mtl_perception.inference.precision import run_onnx_cpu
    from mtl_perception.inference.processing import preprocess

    batch, _ = preprocess(frame(), describe_onnx(load_onnx_file(path), str(path)))
    return run_onnx_cpu(path, [batch], threads=1)[0]


@pytest.mark.parametrize("how", sorted(DAMAGES))
def test_fp16_file_damaged_between_two_uses_is_rebuilt(tiny_model: Path, tmp_path: Path, repairs: Repairs, how: str) -> None:
    from mtl_perception.inference.precision import make_precision_file

    made = make_precision_file(tiny_model, "fp16", tmp_path / "cache")
    expected = run_network(made.path)
    damage(made.path, how)
    again = make_precision_file(tiny_model, "fp16", tmp_path / "cache")
    assert again.path == made.path and not again.cached and cache_file_problem(again.path) is None
    fresh = make_precision_file(tiny_model, "fp16", tmp_path / "fresh")
    assert file_sha256(again.path) == file_sha256(fresh.path), "the rebuilt file is the file a fresh build writes"
    same_outputs(run_network(again.path), expected)
    assert repairs.count() == 1 and len(repairs.warnings(made.path)) == 1


@pytest.fixture(scope="module")
def int8_files(tiny_model: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Any]:
    """(a precision cache holding one INT8 file, that file, its calibration spec): calibrated once for the module."""
    from mtl_perception.inference.precision import CalibrationSpec, make_precision_file

    cache = tmp_path_factory.mktemp("int8")
    spec = CalibrationSpec(None, frames=2)
    return cache, make_precision_file(tiny_model, "int8", cache, spec).path, spec


@pytest.mark.parametrize("how", sorted(DAMAGES))
def test_int8_file_damaged_between_two_uses_is_rebuilt(tiny_model: Path, int8_files, repairs: Repairs, how: str) -> None:
    from mtl_perception.inference.precision import make_precision_file

    cache, path, spec = int8_files
    good = path.read_bytes()
    damage(path, how)
    again = make_precision_file(tiny_model, "int8", cache, spec)
    assert again.path == path and not again.cached and cache_file_problem(path) is None
    assert path.read_bytes() == good, "the rebuilt file is the file the first build wrote (same frames, same recipe)"
    assert repairs.count() == 1 and len(repairs.warnings(path)) == 1


def test_int8_file_without_calibration_frames_is_removed_when_damaged(tiny_model: Path, int8_files, tmp_path: Path, repairs: Repairs) -> None:
    """Without frames an INT8 file cannot be made again: the damaged one is reported and removed, a sound older one serves."""
    from mtl_perception.inference.precision import PrecisionError, make_precision_file

    _, good, _ = int8_files
    cache = tmp_path / "cache"
    stem = good.name.rsplit("-", 1)[0]  # <model>-int8-<source hash>-<recipe>; then -<frames hash>.onnx
    older, newer = cache / "precision" / f"{stem}-000000000000.onnx", cache / "precision" / f"{stem}-ffffffffffff.onnx"  # the root's precision/
    write_cache_file(older, good.read_bytes())
    write_cache_file(newer, good.read_bytes())
    os.utime(older, (1, 1))  # the older of the two
    damage(newer, "half")
    assert make_precision_file(tiny_model, "int8", cache).path == older
    assert not newer.exists() and not digest_path(newer).exists() and repairs.count() == 1 and len(repairs.warnings(newer)) == 1
    damage(older, "random")
    with pytest.raises(PrecisionError, match="needs calibration frames"):
        make_precision_file(tiny_model, "int8", cache)
    assert not older.exists() and repairs.count() == 2


# ----------------------------------------------------------------------------------------------- racing processes

RACER = """
import sys
from pathlib import Path
from mtl_perception.fileio import file_sha256
from mtl_perception.inference.deploy_graph import DeployOptions, deploy_graph_file
from mtl_perception.inference.model_file import load_onnx_file
from mtl_perception.inference.precision import make_precision_file
model, out = Path(sys.argv[1]), Path(sys.argv[2])
proto = load_onnx_file(model)
print("ready", flush=True)
sys.stdin.readline()  # the parent starts both at once
graph = deploy_graph_file(proto, file_sha256(model), DeployOptions(48, 64, outputs=("depth", "labels")), out / "deploy")
fp16 = make_precision_file(model, "fp16", out / "precision").path
print(graph, fp16, flush=True)
"""


def test_two_processes_building_the_same_files_at_once_both_end_with_a_sound_file(tiny_model: Path, tmp_path: Path) -> None:
    racers = [subprocess.Popen([sys.executable, "-c", RACER, str(tiny_model), str(tmp_path)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True) for _ in range(2)]
    try:
        for racer in racers:
            assert racer.stdout.readline().strip() == "ready", racer.stderr.read()
        for racer in racers:  # both released together: they build the same two files at the same time
            racer.stdin.write("go\n")
            racer.stdin.flush()
        results = []
        for racer in racers:
            out, err = racer.communicate(timeout=300)
            assert racer.returncode == 0, err
            assert "damaged" not in err, "a file being written by the other process is never taken for a damaged one"
            results.append(out.split())
    finally:
        for racer in racers:
            if racer.poll() is None:
                racer.kill()
    assert results[0] == results[1], "both processes use the same files"
    for name in results[0]:
        path = Path(name)
        assert cache_file_problem(path) is None and load_onnx_file(path).graph.node, name
        assert not list(path.parent.glob(".*.tmp")), "no temporary file left behind"


# ----------------------------------------------------------------------------------------------- calibration caches

@pytest.mark.parametrize("how", sorted(DAMAGES))
def test_calibration_cache_damaged_between_two_uses_is_measured_again(tmp_path: Path, repairs: Repairs, how: str) -> None:
    from mtl_perception.inference.calibration import CalibrationCacheFile

    table = b"TRT-1000-EntropyCalibration2\nimage: 3c010a14\nconv1: 3d2a1b0c\n"
    cache = CalibrationCacheFile(tmp_path, "e" * 64)
    cache.write(table)
    assert cache.read() == table
    damage(cache.path, how)
    assert cache.read() is None, "a damaged table is never handed to a calibrator"
    assert not cache.path.exists() and repairs.count() == 1 and len(repairs.warnings(cache.path)) == 1
    cache.write(table)  # what the calibrator measures again
    assert cache.read() == table and repairs.count() == 1


# ----------------------------------------------------------------------------------------------- TensorRT engines and timing caches

@pytest.fixture
def standins(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[Any]:
    """The TensorRT and CUDA stand-ins as ``tensorrt`` and ``cuda.bindings.runtime``; a private precision cache."""
    pytest.importorskip("cuda.bindings.runtime", reason="cuda-python (requirements.txt) is not installed")
    from cuda_double import FakeCudart, install
    from mtl_perception.inference.backends import tensorrt_backend
    from mtl_perception.paths import CACHE_ENV
    from trt_double import FakeTensorRT, program_onnx_engines

    monkeypatch.setenv(CACHE_ENV, str(tmp_path / "precision"))
    monkeypatch.setattr(tensorrt_backend, "_LOGGERS", {})
    cudart = install(monkeypatch, FakeCudart())
    trt = program_onnx_engines(FakeTensorRT(TRT_VERSION), cudart)
    monkeypatch.setitem(sys.modules, "tensorrt", trt)
    yield trt


def trt_serve(model: Path, engines: Path, **options: Any) -> tuple[dict[str, np.ndarray], str, Path]:
    """(outputs of the tiny network on one frame, where its engine came from, the engine file) through TensorRTBackend."""
    from mtl_perception.inference.backends.tensorrt_backend import TensorRTBackend
    from mtl_perception.inference.processing import preprocess

    backend = TensorRTBackend(model, precision="fp32", cache_dir=engines.parent, **options)  # the root whose engines/ it is
    try:
        return backend.infer(preprocess(frame(), backend.metadata)[0]), backend.engine_source, backend.engine_path
    finally:
        backend.close()


@pytest.mark.parametrize("what", ["engine", "sidecar"])
@pytest.mark.parametrize("how", sorted(DAMAGES))
def test_tensorrt_engine_damaged_between_two_starts_is_rebuilt(standins, tiny_model: Path, tmp_path: Path, repairs: Repairs, how: str, what: str) -> None:
    engines = tmp_path / "engines"
    expected, source, engine = trt_serve(tiny_model, engines)
    assert source == "built"
    fresh = engine.read_bytes()
    damaged = engine if what == "engine" else engine.with_suffix(".json")
    damage(damaged, how)
    got, source, again = trt_serve(tiny_model, engines)
    assert (source, again) == ("built", engine) and again.read_bytes() == fresh, "rebuilt: the engine a fresh build makes"
    same_outputs(got, expected)
    assert repairs.count() == 1 and len(repairs.warnings(damaged)) == 1
    assert trt_serve(tiny_model, engines)[1] == "cache" and repairs.count() == 1


def test_an_engine_tensorrt_refuses_is_built_again_once(standins, tiny_model: Path, tmp_path: Path, repairs: Repairs) -> None:
    """A cached engine whose hash is sound but which TensorRT cannot deserialise: built again; refused again: BackendError."""
    from mtl_perception.inference.backends.base import BackendError

    engines = tmp_path / "engines"
    expected, _, engine = trt_serve(tiny_model, engines)
    deserialize = standins._behaviours[("Runtime", "deserialize_cuda_engine")]  # the stand-in's programmed one
    refusals = [None]  # the next call refuses the cached engine, the one after reads the rebuilt engine

    def refuse_once(runtime: Any, data: bytes) -> Any:
        return refusals.pop() if refusals else deserialize(runtime, data)

    standins.behave("Runtime", "deserialize_cuda_engine", refuse_once)
    got, source, _ = trt_serve(tiny_model, engines)
    assert source == "built" and repairs.count() == 1 and len(repairs.warnings(engine)) == 1
    same_outputs(got, expected)
    standins.behave("Runtime", "deserialize_cuda_engine", lambda runtime, data: None)
    with pytest.raises(BackendError, match="could not deserialise"):
        trt_serve(tiny_model, engines)


@pytest.mark.parametrize("how", sorted(DAMAGES))
def test_timing_cache_damaged_between_two_builds_starts_fresh(standins, tiny_model: Path, tmp_path: Path, repairs: Repairs, how: str) -> None:
    from trt_double import TIMING_MAGIC

    engines = tmp_path / "engines"
    expected, _, engine = trt_serve(tiny_model, engines)
    (timing,) = engines.glob("timing-*.cache")
    assert timing.name.startswith("timing-") and cache_file_problem(timing) is None
    fresh = timing.read_bytes()
    damage(timing, how)
    damaged = timing.read_bytes()
    for path in engines.glob("*.engine"):  # the next start builds again, reading the shared timing cache
        path.with_suffix(".json").unlink()
    got, source, _ = trt_serve(tiny_model, engines)
    blobs = [call.args[0] for call in standins.record.calls_to("IBuilderConfig", "create_timing_cache")]
    assert source == "built" and damaged not in blobs and blobs[-1] == b"", "a damaged timing cache is never handed to TensorRT"
    assert timing.read_bytes() == fresh == TIMING_MAGIC + TRT_VERSION.encode() and cache_file_problem(timing) is None
    same_outputs(got, expected)
    assert repairs.count() == 1 and len(repairs.warnings(timing)) == 1


# ----------------------------------------------------------------------------------------------- a real node process

graph = ros_graph(offset=61)


def change_state(graph: Any, fqn: str, transition: int) -> bool:
    from lifecycle_msgs.msg import Transition
    from lifecycle_msgs.srv import ChangeState

    client = graph.helper.create_client(ChangeState, f"{fqn}/change_state")
    try:
        assert client.wait_for_service(timeout_sec=30)
        done = threading.Event()
        future = client.call_async(ChangeState.Request(transition=Transition(id=transition)))
        future.add_done_callback(lambda _: done.set())
        assert done.wait(60), f"no answer to transition {transition}"
        return bool(future.result().success)
    finally:
        graph.helper.destroy_client(client)


def test_node_process_serves_after_its_cached_deploy_graph_is_damaged(graph, tiny_model: Path, tmp_path: Path) -> None:
    from diagnostic_msgs.msg import DiagnosticArray
    from lifecycle_msgs.msg import Transition
    from rclpy.qos import QoSProfile, ReliabilityPolicy
    from ros_node_process import start_process, stop_process
    from sensor_msgs.msg import Image
    from std_msgs.msg import Header

    from mtl_perception.inference.image_codec import array_to_image_msg
    from mtl_perception.paths import CACHE_ENV

    reliable = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
    cache = tmp_path / "cache"
    fqn = "/heal/perception_node"
    process = start_process(["-r", "__ns:=/heal", "-p", f"model.path:={tiny_model}", "-p", "model.backend:=onnxruntime", "-p", "model.provider:=cpu",
                             "-p", "qos.reliability:=reliable", "-p", f"model.engine_cache_dir:={cache}"],
                            env={**os.environ, CACHE_ENV: str(tmp_path / "precision")})
    image = graph.helper.create_publisher(Image, "/heal/image", reliable)
    depth = graph.collect(Image, "/heal/depth", reliable)
    diagnostics = graph.collect(DiagnosticArray, "/diagnostics", 10)

    def served(index: int) -> bool:
        """Publish frame ``index`` until its depth image comes back (each wait ends on the message's arrival)."""
        msg = array_to_image_msg(frame(index), "rgb8", Header(frame_id="cam_optical"))
        msg.header.stamp.sec = 100 + index
        for _ in range(60):
            image.publish(msg)
            if depth.wait_for(lambda msgs: any(m.header.stamp.sec == 100 + index for m in msgs), 1.0):
                return True
            if process.poll() is not None:
                return False
        return False

    def values(msgs: list[Any]) -> list[dict[str, str]]:
        return [{kv.key: kv.value for kv in status.values} for array in msgs for status in array.status if status.hardware_id == fqn]

    try:
        assert served(1), "the node did not serve its first frame"
        (path,) = (cache / "deploy").glob("deploy-*.onnx")
        damage(path, "half")
        assert change_state(graph, fqn, Transition.TRANSITION_DEACTIVATE) and change_state(graph, fqn, Transition.TRANSITION_ACTIVATE)
        assert served(2), "the node did not serve after its deploy graph was damaged"
        assert diagnostics.wait_for(lambda msgs: any(v.get("cache_files_rebuilt") == "1" for v in values(msgs)), 20), "no rebuild on /diagnostics"
        last = [v for v in values(diagnostics.messages) if v.get("cache_files_rebuilt") == "1"][-1]
        assert last["bad_input"] == "0" and last["frames_failed"] == "0" and last["inference_errors"] == "0"
        assert cache_file_problem(path) is None
    finally:
        graph.helper.destroy_publisher(image)
        for collector in (depth, diagnostics):
            graph.helper.destroy_subscription(collector.subscription)
        code, output = stop_process(process)
    warnings = [line for line in output.splitlines() if "is damaged" in line]
    assert code == 0 and len(warnings) == 1 and str(path) in warnings[0], output[-3000:]
    assert "rejected" not in output, "no frame was counted as bad input"


def test_a_model_file_error_in_a_frame_is_the_backends_fault_and_the_fallback_serves(graph, tiny_model: Path) -> None:
    """What the pipeline raises when a deploy graph cannot be loaded even after a rebuild: the node's fallback takes
    over and the frame is served; no frame is counted as bad input (issue 29, 1: the node took it for the frame's fault)."""
    from rclpy.lifecycle import TransitionCallbackReturn
    from rclpy.parameter import Parameter
    from rclpy.qos import QoSProfile, ReliabilityPolicy
    from ros_fixtures import wait_until
    from sensor_msgs.msg import Image
    from std_msgs.msg import Header

    from mtl_perception.inference.image_codec import array_to_image_msg
    from mtl_perception.inference.model_file import ModelFileError
    from mtl_perception.ros.node import PerceptionNode

    reliable = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
    params = [Parameter(k, value=v) for k, v in {"autostart": False, "model.path": str(tiny_model), "qos.reliability": "reliable",
                                                  "model.provider": "auto"}.items()]
    node = graph.add(PerceptionNode("refused", namespace="/refused", parameter_overrides=params, context=graph.context))
    publisher = graph.helper.create_publisher(Image, "/refused/image", reliable)
    depth = graph.collect(Image, "/refused/depth", reliable)
    try:
        assert node.trigger_configure() == TransitionCallbackReturn.SUCCESS and node.trigger_activate() == TransitionCallbackReturn.SUCCESS
        assert wait_until(lambda: publisher.get_subscription_count() == 1 and node.cameras[0].publishers["depth"].get_subscription_count() >= 1, 10)

        def refused(*args: object, **kwargs: object) -> list:
            raise ModelFileError("model file /cache/deploy-0.onnx cannot be loaded: it is truncated or corrupt")

        node.backend.pipeline.run_batch = refused
        msg = array_to_image_msg(frame(5), "rgb8", Header(frame_id="cam_optical"))
        msg.header.stamp.sec = 5
        publisher.publish(msg)
        assert depth.wait_for(lambda msgs: any(m.header.stamp.sec == 5 for m in msgs), 20), "the fallback did not serve the frame"
        values = node.diagnostics_values()
        assert values["backend"] == "onnxruntime (cpu)" and values["backend_fallbacks"] == 1
        assert values["bad_input"] == 0 and values["frames_failed"] == 0
    finally:
        graph.helper.destroy_publisher(publisher)
        graph.helper.destroy_subscription(depth.subscription)
        node.release()
        graph.remove(node)
        node.destroy_node()
