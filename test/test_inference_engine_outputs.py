"""FramePipeline with engine outputs (``serve_from``): one graph per camera layout for a fixed output set,
built off the serving thread; any subset served from it; a new output set built while the old graph serves.

ONNX Runtime runs the graphs here (the mechanism is the backend's business only through ``create_backend``);
``test_ros_engines.py`` runs it on the TensorRT stand-in and through the node. Builds are held by a gate on
the backend factory, so "while it builds" is a state the test controls, not a race.
"""
from __future__ import annotations

import threading
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pytest
from ros_fixtures import pinhole_info

from mtl_perception.inference.frame_pipeline import FramePipeline, GraphBuild, GraphPending

HEIGHT, WIDTH = 48, 64
ALL = ("depth", "depth_color", "labels", "normals", "points", "semantic_color", "semantic_overlay")
SUBSETS = ({"depth"}, {"labels"}, {"normals"}, {"depth", "points"}, {"semantic_overlay", "depth_color"}, set(ALL))


class Gate:
    """Wraps a backend factory: each call says it started (``started``) and waits for ``release``."""

    def __init__(self, create: Callable[..., Any]) -> None:
        self.create = create
        self.started = threading.Event()
        self.release = threading.Event()
        self.calls = 0

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        self.calls += 1
        self.started.set()
        assert self.release.wait(60), "the test never released the build"
        return self.create(*args, **kwargs)


class Builds:
    """``on_built`` callback: every finished build, and an event per count."""

    def __init__(self) -> None:
        self.done: list[GraphBuild] = []
        self._cond = threading.Condition()

    def __call__(self, build: GraphBuild) -> None:
        with self._cond:
            self.done.append(build)
            self._cond.notify_all()

    def wait(self, count: int, timeout: float = 60.0) -> bool:
        with self._cond:
            return self._cond.wait_for(lambda: len(self.done) >= count, timeout)


def camera_info(width: int = WIDTH, height: int = HEIGHT) -> Any:
    return pinhole_info(width, height, 60.0)


def frame(seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (HEIGHT, WIDTH, 3), dtype=np.uint8)


def pipeline(model: Path, folder: Path) -> FramePipeline:
    return FramePipeline(model, "onnxruntime", {"provider": "cpu", "intra_op_threads": 1}, cache_dir=folder)


def test_every_subset_is_served_from_one_graph_and_equals_its_own_graph(tiny_model: Path, tmp_path: Path) -> None:
    engine, per_call = pipeline(tiny_model, tmp_path), pipeline(tiny_model, tmp_path)
    builds = Builds()
    engine.serve_from(ALL, on_built=builds)
    info = camera_info()
    with pytest.raises(GraphPending, match="being built"):
        engine.run(frame(), "rgb8", {"depth"}, info)
    assert engine.pending(HEIGHT, WIDTH, "rgb8") or builds.done
    assert builds.wait(1) and builds.done[0].error == "" and builds.done[0].options.outputs == ALL
    assert not engine.pending(HEIGHT, WIDTH, "rgb8")
    for seed, subset in enumerate(SUBSETS):
        served = engine.run(frame(seed), "rgb8", subset, info)
        own = per_call.run(frame(seed), "rgb8", subset, info)
        assert set(served.arrays) == set(own.arrays), subset
        for name, value in own.arrays.items():
            assert served.arrays[name].dtype == value.dtype and served.arrays[name].shape == value.shape
            if value.dtype == np.uint8:
                np.testing.assert_array_equal(served.arrays[name], value, err_msg=name)
            else:
                np.testing.assert_allclose(served.arrays[name], value, rtol=1e-5, atol=1e-5, err_msg=name)
    assert engine.graphs_built == 1, "every subscriber subset runs in the one engine-output graph"
    assert per_call.graphs_built == len(SUBSETS), "without engine outputs each output set is its own graph"
    engine.close()
    per_call.close()


def test_a_new_output_set_builds_in_the_background_while_the_old_graph_serves(tiny_model: Path, tmp_path: Path) -> None:
    p = pipeline(tiny_model, tmp_path)
    builds = Builds()
    p.serve_from(("depth", "labels"), on_built=builds)
    assert [o.outputs for o in p.prepare([p.deploy_options(HEIGHT, WIDTH, "rgb8", ("depth", "labels"))])] == [("depth", "labels")]
    assert builds.wait(1)
    gate = Gate(p._create_backend)
    p._create_backend = gate
    p.serve_from(("depth", "labels", "normals"))  # an output enabled at run time
    first = p.run(frame(1), "rgb8", {"depth", "normals"})  # starts the build, served by the graph in service
    assert gate.started.wait(30)
    assert sorted(first.arrays) == ["depth"], "the old graph serves what it has; normals follow its build"
    (building,) = p.building()
    assert building.options.outputs == ("depth", "labels", "normals") and building.seconds is None
    served = [p.run(frame(seed), "rgb8", {"depth", "labels", "normals"}) for seed in range(3)]  # while it builds
    assert all(sorted(s.arrays) == ["depth", "labels"] for s in served) and p.graphs_built == 1
    assert p.prepare([building.options]) == [], "a build in progress is not asked for twice"
    gate.release.set()
    assert builds.wait(2) and builds.done[1].error == ""
    after = p.run(frame(4), "rgb8", {"depth", "normals"})
    assert sorted(after.arrays) == ["depth", "normals"] and p.graphs_built == 2 and gate.calls == 1
    assert list(p._graphs) == [building.options], "the replaced graph is closed once the new one serves"
    smaller = p.deploy_options(HEIGHT, WIDTH, "rgb8", ("depth",))
    assert p.prepare([smaller]) == [], "an output set the graph in service covers needs no build"
    p.close()


def test_other_batch_sizes_are_served_in_chunks_while_theirs_builds(tiny_model: Path, tmp_path: Path) -> None:
    p = pipeline(tiny_model, tmp_path)
    builds = Builds()
    p.serve_from(("depth",), on_built=builds)
    p.prepare([p.deploy_options(HEIGHT, WIDTH, "rgb8", ("depth",), 1)])
    assert builds.wait(1)
    gate = Gate(p._create_backend)
    p._create_backend = gate
    frames = [(frame(seed), "rgb8", None) for seed in range(3)]
    results = p.run_batch(frames, {"depth"}, capacity=4)  # batch 4 is asked for and builds; batch 1 serves 3 calls
    assert gate.started.wait(30) and [b.options.batch for b in p.building()] == [4]
    alone = [p.run(pixels, encoding, {"depth"}) for pixels, encoding, _ in frames]
    for together, single in zip(results, alone):
        np.testing.assert_allclose(together.arrays["depth"], single.arrays["depth"], rtol=1e-5, atol=1e-5)
    gate.release.set()
    assert builds.wait(2)
    again = p.run_batch(frames, {"depth"}, capacity=4)
    assert p.is_built(HEIGHT, WIDTH, "rgb8", ("depth",), batch=4) and len(again) == 3
    p.close()


def test_a_failed_build_is_reported_and_raised_where_nothing_else_serves(tiny_model: Path, tmp_path: Path) -> None:
    p = pipeline(tiny_model, tmp_path)
    builds = Builds()

    def broken(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("out of GPU memory")

    p._create_backend = broken
    p.serve_from(("depth",), on_built=builds)
    with pytest.raises(GraphPending):
        p.run(frame(), "rgb8", {"depth"})
    assert builds.wait(1) and "out of GPU memory" in builds.done[0].error
    with pytest.raises(RuntimeError, match="out of GPU memory"):  # the node falls back on it
        p.run(frame(), "rgb8", {"depth"})
    assert p.prepare([builds.done[0].options]) == [], "a failed build is not retried on every frame"
    p.close()


def test_graph_files_find_a_graph_composed_before_for_a_camera_size(tiny_model: Path, tmp_path: Path) -> None:
    first = pipeline(tiny_model, tmp_path)
    first.serve_from(("depth", "labels"))
    assert first.graph_files(HEIGHT, WIDTH, ("depth", "labels")) == {}
    first.prepare_now([first.deploy_options(HEIGHT, WIDTH, "bgr8", ("depth", "labels"))])
    first.close()
    second = pipeline(tiny_model, tmp_path)  # a later process: the camera info alone gives the size
    assert list(second.graph_files(HEIGHT, WIDTH, ("depth", "labels"))) == ["bgr8"]
    assert second.graph_files(HEIGHT, WIDTH, ("depth",)) == {} and second.graph_files(HEIGHT + 2, WIDTH, ("depth", "labels")) == {}
    second.close()
