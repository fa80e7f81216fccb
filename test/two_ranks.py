"""Run a test's worker on two gloo ranks (spawned processes), each writing its findings as JSON.

A worker is ``worker(rank, init_file, out_dir, *args)``: it joins the group with :func:`join_group`, does its
collectives, then ends with :func:`finish_rank` (the result written, then the project's shutdown, then a
hard exit). The parent waits with a deadline, so a hung rank fails the test instead of hanging the suite.
"""
from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any, Callable

import pytest
import torch.distributed as dist
import torch.multiprocessing as mp

from mtl_perception.distributed import shutdown_distributed


def join_group(rank: int, init_file: str) -> None:
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=2)


def finish_rank(rank: int, out_dir: str, result: dict[str, Any]) -> None:
    """Write this rank's result, leave the group as the trainer does, and exit the process at once.

    The hard exit skips the interpreter's finalisation, where torch's gloo threads can abort a process
    ("terminate called without an active exception", once on a loaded 2-core CI machine) after every
    collective has finished and the result is written. Such an abort is not the code under test: the parent
    judges that from the result files.
    """
    path = Path(out_dir, f"rank{rank}.json")
    path.with_suffix(".tmp").write_text(json.dumps(result))
    path.with_suffix(".tmp").replace(path)
    shutdown_distributed()
    os._exit(0)


def run_two_ranks(worker: Callable[..., None], out_dir: Path, *args: Any, timeout_s: float = 180.0) -> list[dict[str, Any]]:
    """Spawn ``worker`` on ranks 0 and 1; returns their results (rank order) or fails the test."""
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    context = mp.spawn(worker, args=(str(out_dir / "init"), str(out_dir), *args), nprocs=2, join=False)
    deadline = time.monotonic() + timeout_s
    while not context.join(timeout=2):
        if time.monotonic() > deadline:
            for process in context.processes:
                process.kill()
            pytest.fail(f"the ranks did not finish within {timeout_s:.0f} s: a collective hung")
    return [json.loads((out_dir / f"rank{rank}.json").read_text()) for rank in (0, 1)]
