"""Evaluating several bags (or every camera of a bag): one evaluation unit each, in parallel processes."""
from __future__ import annotations

import multiprocessing
import os
from concurrent.futures import ProcessPoolExecutor
from dataclasses import replace
from pathlib import Path
from typing import Any, Sequence

from mtl_perception.bags.evaluation.one_bag import BagResult, evaluate_bag
from mtl_perception.bags.evaluation.output_bag import output_bag_path
from mtl_perception.bags.evaluation.settings import BagEvalSettings
from mtl_perception.bags.io import BagReader
from mtl_perception.bags.topics import camera_name, camera_topics


def evaluate_bags(paths: Sequence[str | os.PathLike], settings: BagEvalSettings, jobs: int = 1) -> list[BagResult]:
    """Evaluate several bags, in ``jobs`` parallel processes when more than one; results in input order."""
    units = evaluation_units(paths, settings)
    names, per_bag = [name for name, _ in units], [unit for _, unit in units]
    if jobs <= 1 or len(names) == 1:
        return [evaluate_bag(name, bag_settings) for name, bag_settings in zip(names, per_bag)]
    workers = min(jobs, len(names))
    options: dict[str, Any] = {}
    if settings.backend == "onnxruntime" and "intra_op_threads" not in settings.backend_options:
        options["intra_op_threads"] = max(1, (os.cpu_count() or 1) // workers)  # share the cores between workers
    per_bag = [_parallel(s, **options) for s in per_bag]
    context = multiprocessing.get_context("spawn")  # fresh interpreters: no forked inference threads or locks
    with ProcessPoolExecutor(max_workers=workers, mp_context=context) as pool:
        futures = [pool.submit(evaluate_bag, name, bag_settings) for name, bag_settings in zip(names, per_bag)]
        return [future.result() for future in futures]


def evaluation_units(paths: Sequence[str | os.PathLike], settings: BagEvalSettings) -> list[tuple[str, BagEvalSettings]]:
    """(bag, settings) of every evaluation unit, each with its own output bag path; what every executor runs."""
    settings.validate()
    names = [str(p) for p in paths]
    if not names:
        raise ValueError("give at least one bag")
    units = _camera_units(names, settings)
    many = len(units) > 1
    return [(name, replace(unit, output_bag=output_bag_path(settings.output_bag, name + _camera_suffix(unit), many)))
            for name, unit in units]


def _camera_units(names: list[str], settings: BagEvalSettings) -> list[tuple[str, BagEvalSettings]]:
    """(bag, settings) of every evaluation: one per bag, or one per camera of each bag with ``all_cameras``.

    With recorded predictions, camera ``/front/...``'s are read under ``<prediction_namespace>/front`` (where
    ``replay --all-cameras`` records a node serving several cameras), and every topic under
    ``prediction_namespace`` counts as a node output, not as another camera's ground truth.
    """
    if not settings.all_cameras:
        return [(name, settings) for name in names]
    units = []
    for name in names:
        with BagReader(Path(name)) as reader:
            cameras = camera_topics(reader, settings.prediction_namespace)
        if not cameras:
            raise ValueError(f"bag {name} has no camera image topic to evaluate with --all-cameras")
        for camera in cameras:
            unit = replace(settings, image_topic=camera, all_cameras=False)
            if settings.predictions_from_bag:
                if not camera_name(camera):
                    raise ValueError(f"camera topic {camera} of bag {name} names no camera (its first segment is generic), "
                                     "so its predictions cannot be found: evaluate it alone with --image-topic")
                namespace = f"{settings.prediction_namespace.rstrip('/')}/{camera_name(camera)}"
                unit = replace(unit, prediction_namespace=namespace, outputs_root=settings.prediction_namespace)
            units.append((name, unit))
    return units


def _camera_suffix(settings: BagEvalSettings) -> str:
    """``_<camera>`` for an evaluation of one camera of several (output bag names), else ''."""
    name = camera_name(settings.image_topic) if settings.image_topic else ""
    return f"_{name}" if name else ""


def _parallel(settings: BagEvalSettings, **options: Any) -> BagEvalSettings:
    """Settings for a worker process: extra backend options, no progress bar (bars of parallel workers interleave)."""
    return replace(settings, backend_options={**settings.backend_options, **options}, progress=False)
