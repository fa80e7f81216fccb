"""Header-stamp matching: pair each reference frame with the nearest message of another topic."""
from __future__ import annotations

from typing import Sequence

import numpy as np


def match_nearest(reference: Sequence[int], candidates: Sequence[int], tolerance_ns: int) -> list[int | None]:
    """For each reference stamp, the index into ``candidates`` of the nearest stamp within ``tolerance_ns``.

    Stamps are integer nanoseconds; ``candidates`` need not be sorted. Ties go to the earlier candidate;
    None where no candidate lies within the tolerance. One candidate may serve several references (e.g.
    ground truth recorded at a lower rate than the camera).
    """
    if tolerance_ns < 0:
        raise ValueError(f"stamp tolerance must be non-negative, got {tolerance_ns} ns")
    if len(candidates) == 0:
        return [None] * len(reference)
    values = np.asarray(candidates, dtype=np.int64)
    order = np.argsort(values, kind="stable")
    ordered = values[order]
    refs = np.asarray(reference, dtype=np.int64)
    right = np.searchsorted(ordered, refs, side="left")
    left = np.clip(right - 1, 0, len(ordered) - 1)
    right = np.clip(right, 0, len(ordered) - 1)
    left_gap = np.abs(refs - ordered[left])
    right_gap = np.abs(ordered[right] - refs)
    best = np.where(right_gap < left_gap, right, left)
    gap = np.minimum(left_gap, right_gap)
    return [int(order[b]) if g <= tolerance_ns else None for b, g in zip(best, gap)]
