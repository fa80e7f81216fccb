"""Which deploy graphs a node configuration needs: one answer for the node and ``build-engine --deploy``.

On a backend that compiles TensorRT engines (``builds_engines``) the node serves every subscriber subset
from one engine per camera layout and batch size, built for the outputs its parameters *enable*
(``engine_outputs``); a build takes minutes, so it must not depend on who subscribes. The node and
``mtl-perception build-engine --deploy`` both make their ``FramePipeline`` with ``node_pipeline`` and
their graph options with ``planned_options``, so the engine the command builds before a mission is the
one the node loads (the same deploy graph file, hence the same engine cache key).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Collection, Mapping

from mtl_perception.inference.deploy_graph import DeployOptions
from mtl_perception.inference.frame_pipeline import DEFAULT_MAX_GRAPHS, FramePipeline, graph_batch_sizes
from mtl_perception.ros import parameters as params
from mtl_perception.ros.outputs import OUTPUT_TASKS, graph_outputs


def builds_engines(kind: str, provider: str) -> bool:
    """True where a deploy graph becomes a TensorRT engine (native, or ONNX Runtime's TensorRT provider)."""
    return kind == "tensorrt" or (kind == "onnxruntime" and provider == "tensorrt")


def engine_outputs(enabled: Mapping[str, bool], model_tasks: Collection[str]) -> tuple[str, ...]:
    """The deploy graph outputs of every enabled node output the model can produce (camera info assumed)."""
    keys = {key for key, on in enabled.items() if on and all(task in model_tasks for task in OUTPUT_TASKS[key])}
    return tuple(sorted(graph_outputs(keys)))


def cache_root(settings: params.Settings) -> Path | None:
    """The cache root of every compiled artefact of the node (``paths.cache_dir``): ``model.engine_cache_dir``, else the default."""
    return Path(settings.engine_cache_dir).expanduser() if settings.engine_cache_dir else None


def model_file(settings: params.Settings) -> Path:
    """``model.path``, or the bundled model when it is empty."""
    from mtl_perception.paths import default_model_path

    return Path(settings.model_path).expanduser() if settings.model_path else default_model_path()


def node_pipeline(settings: params.Settings, model_path: Path, kind: str, provider: str, cameras: int) -> FramePipeline:
    """The FramePipeline the node runs for ``kind`` on ``provider`` (not yet serving engine outputs)."""
    return FramePipeline(model_path, kind, params.backend_options(settings, kind, provider), params.frame_settings(settings),
                         cache_dir=cache_root(settings), max_graphs=DEFAULT_MAX_GRAPHS * max(1, cameras),
                         precision=params.network_precision(settings, kind, provider))


def engine_batches(settings: params.Settings, cameras: int) -> list[int]:
    """The batch sizes of one camera layout shared by ``cameras`` cameras (at most processing.max_batch per call)."""
    return graph_batch_sizes(min(settings.max_batch, max(1, cameras)))


def planned_options(pipeline: FramePipeline, settings: params.Settings, height: int, width: int, encoding: str,
                    cameras: int = 1) -> list[DeployOptions]:
    """The deploy graphs a camera layout needs under ``settings``: the enabled outputs, one per batch size."""
    outputs = engine_outputs(settings.outputs, pipeline.metadata.tasks)
    if not outputs:
        raise params.ParameterError("no enabled output can be produced by this model: enable at least one output.* the model predicts")
    return [pipeline.deploy_options(height, width, encoding, outputs, batch) for batch in engine_batches(settings, cameras)]


def settings_from_file(path: str | Path) -> tuple[params.Settings, int]:
    """The node's settings from a ROS parameter file (every section, as the node would read it) and its camera count.

    The node's own parameter table checks every value; keys it does not declare (``cameras.*``) are left out.
    """
    from mtl_perception.ros.launch_checks import read_params_file

    values: dict[str, Any] = read_params_file(str(path))
    names = values.get("cameras.names") or []
    return params.settings_from_values({k: v for k, v in values.items() if k in params.SPEC_BY_NAME}), max(1, len(names))
