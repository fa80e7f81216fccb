"""Evaluating bags on a Ray cluster (``bag-eval --executor ray``): one Ray task per evaluation unit.

Each task runs the same ``evaluate_bag`` as ``--jobs 1`` on one bag (or one camera of a bag), so the results,
merged through the metrics' additive states by ``summarize``, equal a one-machine run. The model file goes into
Ray's object store once; a worker writes it to a local cache file the first time a task on its node needs it.
Bags and output bags are paths every worker reads at the same place (a shared file system); the package reads
bags through ``rosbags`` from a file system, so object-store URIs (``s3://...``) are refused with a one-line error.

Faults: a task whose worker process dies is run again (``max_retries``); a bag failing with the project's own
one-line error (or any other exception of the task) is reported in ``RayRun.failures`` and not retried.
Ctrl-C cancels every task (killing its worker) and stops a Ray instance this module started.
Progress: the tasks report frames to a small actor; the driver shows one tqdm bar over all frames and prints a
line per unit as it finishes. Imported only when ``--executor ray`` runs: the robot install never imports ray.
"""
from __future__ import annotations

import dataclasses
import hashlib
import logging
import os
import socket
import tempfile
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
from tqdm import tqdm

from mtl_perception.bags.evaluation.fan_out import evaluation_units
from mtl_perception.bags.evaluation.one_bag import BagResult, evaluate_bag
from mtl_perception.bags.evaluation.settings import BagEvalSettings
from mtl_perception.bags.evaluation.summary import BagFailure
from mtl_perception.fileio import atomic_write_bytes
from mtl_perception.safeload import shorten

RAY_MISSING = ("--executor ray needs Ray, which is not installed: pip install 'mtl_perception[fleet]' "
               "(ray 2.60) on this machine and on every node of the cluster")
# the project's own one-line errors: reported for the bag, never retried (the same input fails the same way)
BAG_ERRORS = (ValueError, FileNotFoundError, NotADirectoryError, IsADirectoryError, PermissionError)
MODEL_CACHE = "mtl_perception_models"
REPORT_EVERY_S = 0.1  # a task sends its frame count at most this often


@dataclass(frozen=True)
class RayOptions:
    """Where and how the tasks run."""

    address: str | None = None  # None: start a Ray instance on this machine; "auto", "HOST:PORT", "ray://HOST:PORT"
    cpus_per_task: int = 1  # CPUs Ray reserves per task; ONNX Runtime's intra-op threads unless --threads is given
    max_retries: int = 3  # runs of a task again after its worker process died
    num_cpus: int | None = None  # the local instance's CPUs (None: all); ignored with an address
    temp_dir: str | None = None  # the local instance's session folder (None: Ray's default, /tmp/ray)
    poll_s: float = 0.1  # how often the driver refreshes the progress bar


@dataclass(frozen=True)
class TaskStats:
    """What one unit's task cost: attempts, where it ran, evaluation time and the bytes it moved."""

    unit: int
    attempts: int
    node: str
    pid: int
    evaluate_s: float  # inside evaluate_bag
    task_s: float  # the whole task (model cache, evaluation, pickling the result)
    argument_bytes: int  # payload of the arguments sent to the task (``payload_bytes``; the model goes once per node)
    result_bytes: int  # payload of the result sent back (``payload_bytes``)


@dataclass(frozen=True)
class RayRun:
    """The results in unit order, the units that failed, and per-task figures."""

    results: list[BagResult]
    failures: list[BagFailure]
    stats: list[TaskStats] = field(default_factory=list)
    model_bytes: int = 0  # put into the object store once
    wall_s: float = 0.0  # submit of the first task to the last result


@dataclass(frozen=True)
class TaskOutcome:
    """What a task sends back: the result or the one-line error, and its own figures."""

    unit: int
    result: BagResult | None
    error: str | None
    node: str
    pid: int
    evaluate_s: float
    task_s: float
    result_bytes: int


# progress snapshot: unit -> (attempts, pid, frames done, frames planned)
Snapshot = dict[int, tuple[int, int, int, int]]
ProgressHook = Callable[[Snapshot], None]


def import_ray() -> Any:
    """The ray module, or ValueError (one line) when it is not installed."""
    try:
        import ray
    except ModuleNotFoundError:
        raise ValueError(RAY_MISSING) from None
    return ray


class ProgressBoard:
    """The frames of every unit (a Ray actor): tasks report, the driver reads snapshots."""

    def __init__(self) -> None:
        self.units: dict[int, list[int]] = {}

    def started(self, unit: int, pid: int) -> None:
        attempts = self.units.get(unit, [0])[0] + 1
        self.units[unit] = [attempts, pid, 0, 0]  # a retry starts the unit's frames again

    def advanced(self, unit: int, done: int, planned: int) -> None:
        self.units[unit][2:] = [done, planned]

    def snapshot(self) -> Snapshot:
        return {unit: (a, p, d, t) for unit, (a, p, d, t) in self.units.items()}


class _Reporter:
    """A task's ``on_progress``: sends (done, planned) to the board at most every REPORT_EVERY_S, and the last."""

    def __init__(self, board: Any, unit: int) -> None:
        self.board, self.unit, self.sent_at = board, unit, 0.0

    def __call__(self, done: int, planned: int) -> None:
        now = time.monotonic()
        if done in (0, planned) or now - self.sent_at >= REPORT_EVERY_S:
            self.board.advanced.remote(self.unit, done, planned)
            self.sent_at = now


def cached_model(model_ref: list[Any], digest: str, name: str) -> Path:
    """The model file in this node's cache, written from the object store the first time (atomic)."""
    path = Path(tempfile.gettempdir()) / MODEL_CACHE / f"{digest[:16]}_{name}"
    if not path.is_file():
        import ray

        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(path, ray.get(model_ref[0]))
    return path


def payload_bytes(value: Any) -> int:
    """The bytes a value carries between Ray processes: its arrays, strings and numbers (serialiser framing aside).

    Ray serialises with pickle protocol 5 and sends arrays out of band, so array bytes dominate what moves.
    """
    if value is None:
        return 0
    if isinstance(value, np.ndarray):
        return int(value.nbytes)
    if isinstance(value, (bytes, bytearray, memoryview)):
        return len(value)
    if isinstance(value, str):
        return len(value.encode())
    if isinstance(value, dict):
        return sum(payload_bytes(k) + payload_bytes(v) for k, v in value.items())
    if isinstance(value, (list, tuple, set, frozenset)):
        return sum(payload_bytes(v) for v in value)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return sum(payload_bytes(getattr(value, f.name)) for f in dataclasses.fields(value))
    return 8  # a number, a flag, an enum member


def run_unit(unit: int, bag: str, settings: BagEvalSettings, model: tuple[list[Any], str, str] | None,
             board: Any) -> TaskOutcome:
    """One Ray task: evaluate one unit as ``--jobs 1`` would, on a worker."""
    start = time.perf_counter()
    pid, node = os.getpid(), socket.gethostname()
    board.started.remote(unit, pid)
    if model is not None:
        settings = replace(settings, model=str(cached_model(*model)))
    began = time.perf_counter()
    try:
        result: BagResult | None = evaluate_bag(bag, settings, _Reporter(board, unit))
        error = None
    except BAG_ERRORS as exc:
        result, error = None, shorten(" ".join(str(exc).split()) or type(exc).__name__, 1000)
    evaluate_s = time.perf_counter() - began
    size = payload_bytes(result)
    return TaskOutcome(unit, result, error, node, pid, evaluate_s, time.perf_counter() - start, size)


def _worker_settings(settings: BagEvalSettings, cpus: int) -> BagEvalSettings:
    """A unit's settings on a worker: absolute output path, no per-task bar, ONNX Runtime threads = its CPUs."""
    options = dict(settings.backend_options)
    if settings.backend == "onnxruntime":
        options.setdefault("intra_op_threads", cpus)
    output = str(Path(settings.output_bag).absolute()) if settings.output_bag else None
    return replace(settings, backend_options=options, output_bag=output, progress=False)


def _local(result: BagResult, bag: str, worker_bag: str, settings: BagEvalSettings) -> BagResult:
    """The result as ``--jobs 1`` names it: the bag and output bag as given, not the worker's absolute paths."""
    given = str(Path(bag))
    result.bag = given
    result.notes = [note.replace(worker_bag, given) for note in result.notes]
    if result.output_bag and settings.output_bag:
        result.output_bag = str(Path(settings.output_bag))
    return result


def check_paths(bags: Sequence[str | os.PathLike]) -> None:
    """ValueError for a bag named by URI: the bags must be files every worker reads (a shared file system)."""
    for bag in bags:
        if "://" in str(bag):
            raise ValueError(f"bag {bag}: URIs are not supported (the package reads rosbag2 bags from a file system); "
                             "mount the store on every node (a shared file system, e.g. NFS or s3fs) and give the path")


def connect(ray: Any, options: RayOptions) -> bool:
    """Connect to the cluster, or start a local instance; True when this call started it (and stops it after)."""
    if ray.is_initialized():
        return False
    common = {"logging_level": logging.WARNING, "log_to_driver": True}
    if options.address:
        if options.address.startswith("ray://"):
            try:
                import grpc  # noqa: F401  (Ray Client's transport)
            except ModuleNotFoundError:
                raise ValueError(f"--address {options.address} uses Ray Client, which needs pip install "
                                 "'ray[client]==2.60.0'; or run bag-eval on a node of the cluster with --address auto"
                                 ) from None
        ray.init(address=options.address, **common)
        return False
    ray.init(num_cpus=options.num_cpus, include_dashboard=False, _temp_dir=options.temp_dir, **common)
    return True


def _model_payload(ray: Any, settings: BagEvalSettings) -> tuple[tuple[list[Any], str, str] | None, int]:
    """(object-store reference, digest, file name) of the model file, and its size; None without a model."""
    if settings.model is None:
        return None, 0
    data = Path(settings.model).read_bytes()
    return ([ray.put(data)], hashlib.sha256(data).hexdigest(), Path(settings.model).name), len(data)


def evaluate_bags_on_ray(paths: Sequence[str | os.PathLike], settings: BagEvalSettings,
                         options: RayOptions = RayOptions(), on_progress: ProgressHook | None = None) -> RayRun:
    """Evaluate the bags as Ray tasks; results in unit order (as ``evaluate_bags``), failures beside them."""
    ray = import_ray()
    check_paths(paths)
    units = evaluation_units(paths, settings)
    started = connect(ray, options)
    board = None
    pending: dict[Any, int] = {}
    try:
        board = ray.remote(num_cpus=0)(ProgressBoard).remote()
        model, model_bytes = _model_payload(ray, settings)
        task = ray.remote(run_unit).options(num_cpus=options.cpus_per_task, max_retries=options.max_retries,
                                            retry_exceptions=False)
        worker_bags = [str(Path(bag).absolute()) for bag, _ in units]
        arguments = [(unit, worker_bags[unit], _worker_settings(unit_settings, options.cpus_per_task))
                     for unit, (_, unit_settings) in enumerate(units)]
        argument_bytes = [payload_bytes(a) for a in arguments]
        begin = time.perf_counter()
        pending = {task.remote(*a, model, board): a[0] for a in arguments}
        outcomes = _collect(ray, pending, board, units, settings, options, on_progress)
        wall = time.perf_counter() - begin
        attempts = {unit: state[0] for unit, state in ray.get(board.snapshot.remote()).items()}
    except BaseException:  # Ctrl-C or a failure of the driver: no task goes on running
        for ref in pending:
            ray.cancel(ref, force=True)
        raise
    finally:
        if board is not None:
            ray.kill(board)
        if started:
            ray.shutdown()
    results, failures, stats = [], [], []
    for unit, (bag, unit_settings) in enumerate(units):
        outcome = outcomes[unit]
        if isinstance(outcome, str):
            failures.append(BagFailure(str(Path(bag)), outcome))
            continue
        if outcome.result is None:
            failures.append(BagFailure(str(Path(bag)), (outcome.error or "").replace(worker_bags[unit], str(Path(bag)))))
        else:
            results.append(_local(outcome.result, bag, worker_bags[unit], unit_settings))
        stats.append(TaskStats(unit, attempts.get(unit, 1), outcome.node, outcome.pid, outcome.evaluate_s,
                               outcome.task_s, argument_bytes[unit], outcome.result_bytes))
    return RayRun(results, failures, stats, model_bytes, wall)


def _collect(ray: Any, pending: dict[Any, int], board: Any, units: list[tuple[str, BagEvalSettings]],
             settings: BagEvalSettings, options: RayOptions,
             on_progress: ProgressHook | None) -> dict[int, TaskOutcome | str]:
    """Wait for every task: progress bar, a line per finished unit; unit -> outcome, or the reason it died."""
    outcomes: dict[int, TaskOutcome | str] = {}
    bar = tqdm(total=0, desc="bag-eval (ray)", unit="frame", disable=not settings.progress)
    waiting = dict(pending)
    try:
        while waiting:
            ready, _ = ray.wait(list(waiting), num_returns=len(waiting), timeout=options.poll_s)
            snapshot = ray.get(board.snapshot.remote())
            bar.total = sum(planned for *_, planned in snapshot.values())
            bar.n = sum(done for _, _, done, _ in snapshot.values())
            bar.set_postfix_str(f"{len(outcomes)}/{len(pending)} bags", refresh=False)
            bar.refresh()
            if on_progress is not None:
                on_progress(snapshot)
            for ref in ready:
                unit = waiting.pop(ref)
                outcomes[unit] = _outcome(ray, ref)
                if settings.progress:
                    bar.write(_unit_line(units[unit][0], outcomes[unit]))
    finally:
        bar.close()
    return outcomes


def _outcome(ray: Any, ref: Any) -> TaskOutcome | str:
    """A finished task's outcome, or one line saying why it has none (worker died past its retries, a bug)."""
    try:
        return ray.get(ref)
    except ray.exceptions.RayTaskError as exc:  # an exception the task did not expect: reported, not retried
        cause = exc.cause if isinstance(exc.cause, BaseException) else exc
        return shorten(f"{type(cause).__name__}: {' '.join(str(cause).split())}", 1000)
    except ray.exceptions.RayError as exc:  # the worker died on every try, or its node went away
        return shorten(f"{type(exc).__name__}: {' '.join(str(exc).split())}", 1000)


def _unit_line(bag: str, outcome: TaskOutcome | str) -> str:
    name = Path(bag).name
    if isinstance(outcome, str) or outcome.result is None:
        return f"failed {name}: {outcome if isinstance(outcome, str) else outcome.error}"
    result = outcome.result
    failed = sum(result.failures.values())
    return (f"evaluated {name}: {result.frames_evaluated} of {result.frames_planned} frames"
            + (f", {failed} failed" if failed else "") + f" in {outcome.evaluate_s:.1f} s on {outcome.node}")
