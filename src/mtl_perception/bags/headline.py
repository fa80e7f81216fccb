"""One line with the key figures of a bag-evaluation summary (printed by ``bag-eval`` and the demo)."""
from __future__ import annotations

from typing import Any, Mapping

from mtl_perception.bags.evaluation.summary import lookup

# (label, path in the summary's aggregate, unit)
HEADLINE_FIGURES = (("depth AbsRel", ("metrics", "depth", "abs_rel"), ""), ("RMSE", ("metrics", "depth", "rmse"), " m"),
                    ("mIoU", ("metrics", "semantic", "miou"), ""),
                    ("normals mean", ("metrics", "normals", "mean"), "°"),
                    ("latency p50", ("latency", "total", "p50_ms"), " ms"))


def headline(summary: Mapping[str, Any]) -> str:
    """One line with the key figures of an evaluation summary."""
    aggregate = summary["aggregate"]
    parts = [f"{aggregate['frames_evaluated']} frames"]
    for label, path, unit in HEADLINE_FIGURES:
        value = lookup(aggregate, path)
        if value is not None:
            parts.append(f"{label} {value:.4g}{unit}")
    return ", ".join(parts)
