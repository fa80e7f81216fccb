"""Deterministic step-indexed batches: the batch of any step is known, so a resumed run sees the same data."""
from __future__ import annotations

from typing import Iterator

import numpy as np
from torch.utils.data import Sampler


class StepBatchSampler(Sampler[list[int]]):
    """Yields the index list of every step from ``start_step`` to ``total_steps``.

    The stream of indices is a fresh permutation of the dataset per epoch (seeded by ``seed`` and the
    epoch); in a distributed run each rank takes its own contiguous ``batch_size`` slice of a step's
    ``batch_size * world_size`` indices, so ranks never see the same frame in one step.
    """

    def __init__(self, dataset_size: int, batch_size: int, total_steps: int, start_step: int = 0,
                 seed: int = 0, rank: int = 0, world_size: int = 1) -> None:
        if dataset_size < 1:
            raise ValueError("the training dataset is empty")
        self.n, self.batch_size, self.total_steps, self.start_step = dataset_size, batch_size, total_steps, start_step
        self.seed, self.rank, self.world_size = seed, rank, world_size
        self._cached: tuple[int, np.ndarray] | None = None

    def _permutation(self, epoch: int) -> np.ndarray:
        if self._cached is None or self._cached[0] != epoch:
            self._cached = (epoch, np.random.default_rng([self.seed, epoch]).permutation(self.n))
        return self._cached[1]

    def batch_for_step(self, step: int) -> list[int]:
        first = (step * self.world_size + self.rank) * self.batch_size
        batch = []
        for position in range(first, first + self.batch_size):
            epoch, offset = divmod(position, self.n)
            batch.append(int(self._permutation(epoch)[offset]))
        return batch

    def __iter__(self) -> Iterator[list[int]]:
        for step in range(self.start_step, self.total_steps):
            yield self.batch_for_step(step)

    def __len__(self) -> int:
        return max(0, self.total_steps - self.start_step)
