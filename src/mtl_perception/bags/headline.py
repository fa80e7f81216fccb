"""One line with the key figures of a bag-evaluation summary (printed by ``bag-eval`` and the demo)."""
from __future__ import annotations

from mtl_perception.bags.evaluation.summary import BagSummary, Figures

# (label, the figure in the pooled figures, unit)
HEADLINE_FIGURES = (
    ("depth AbsRel", lambda f: f.metric("depth", "abs_rel"), ""),
    ("RMSE", lambda f: f.metric("depth", "rmse"), " m"),
    ("mIoU", lambda f: f.metric("semantic", "miou"), ""),
    ("normals mean", lambda f: f.metric("normals", "mean"), "°"),
    ("latency p50", lambda f: f.latency_ms("total", "p50_ms"), " ms"),
)


def headline(summary: BagSummary) -> str:
    """One line with the key figures of an evaluation summary."""
    figures: Figures = summary.aggregate.figures
    parts = [f"{summary.aggregate.frames_evaluated} frames"]
    for label, figure, unit in HEADLINE_FIGURES:
        value = figure(figures)
        if value is not None:
            parts.append(f"{label} {value:.4g}{unit}")
    return ", ".join(parts)
