"""The bag-evaluation report: ``summary.json``, ``report.md`` / ``report.html`` and PNG plots.

Plots (matplotlib, Agg canvas, no display needed): a metric table per bag and overall, the latency
histogram, per-frame error (and temporal change) over time, and a strip of input | semantic overlay |
depth colour map for a few frames. Every file is written atomically. ``write_animation`` turns strip
rows into a GIF (Pillow, which matplotlib already needs), or a PNG strip where Pillow is missing.
"""
from __future__ import annotations

import html
import io
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from mtl_perception.evaluation.bag_eval import PER_FRAME_KEYS, STABILITY_KEYS, BagResult
from mtl_perception.evaluation.contact_sheet import Panel, render_contact_sheet, write_png_atomic
from mtl_perception.evaluation.evaluate import json_safe
from mtl_perception.fileio import atomic_write_bytes

FORMATS = ("md", "html")
MAX_STRIP_ROWS = 6
MIN_TILE_HEIGHT = 120
# (label, path in a bag/aggregate summary, lower is better) of the table's rows
TABLE_ROWS: tuple[tuple[str, tuple[str, ...], bool], ...] = (
    ("depth AbsRel", ("metrics", "depth", "abs_rel"), True),
    ("depth RMSE (m)", ("metrics", "depth", "rmse"), True),
    ("depth δ<1.25", ("metrics", "depth", "delta1"), False),
    ("depth coverage", ("depth_coverage",), False),
    ("semantic mIoU", ("metrics", "semantic", "miou"), False),
    ("semantic pixel acc.", ("metrics", "semantic", "pixel_acc"), False),
    ("normals mean (°)", ("metrics", "normals", "mean"), True),
    ("normals median (°)", ("metrics", "normals", "median"), True),
    ("normals < 11.25° (%)", ("metrics", "normals", "within_11_25"), False),
    ("depth change / frame", ("stability", "depth_rel_change"), True),
    ("label flips / frame", ("stability", "label_flip_fraction"), True),
    ("normal change / frame (°)", ("stability", "normal_change_deg"), True),
    ("latency p50 (ms)", ("latency", "total", "p50_ms"), True),
    ("latency p99 (ms)", ("latency", "total", "p99_ms"), True),
)


@dataclass
class ReportFiles:
    """Paths of everything a report wrote."""

    json: Path
    documents: list[Path] = field(default_factory=list)
    plots: dict[str, Path] = field(default_factory=dict)


def lookup(summary: dict[str, Any], path: tuple[str, ...]) -> float | None:
    """A nested value of a summary, or None when absent or not finite."""
    value: Any = summary
    for key in path:
        if not isinstance(value, dict) or key not in value:
            return None
        value = value[key]
    if value is None or not isinstance(value, (int, float)) or not math.isfinite(value):
        return None
    return float(value)


def _fmt(value: float | None) -> str:
    if value is None:
        return "–"
    return f"{value:.4g}" if abs(value) < 1000 else f"{value:.0f}"


def table_columns(summary: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """(column title, figures) for each bag, plus the aggregate when there are several bags."""
    columns = [(Path(bag["bag"]).name, bag) for bag in summary["bags"]]
    if len(columns) > 1:
        columns.append(("all bags", summary["aggregate"]))
    return columns


def table_rows(summary: dict[str, Any]) -> list[tuple[str, list[str]]]:
    """Rows of the metric table that have a value in at least one column."""
    columns = table_columns(summary)
    rows = []
    for label, path, lower in TABLE_ROWS:
        values = [lookup(figures, path) for _, figures in columns]
        if any(v is not None for v in values):
            rows.append((f"{label} {'↓' if lower else '↑'}", [_fmt(v) for v in values]))
    return rows


# ---------------------------------------------------------------------------------------------- plots

def _figure(width: float, height: float) -> Any:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(width, height), dpi=100)
    FigureCanvasAgg(figure)
    return figure


def _save(figure: Any, path: Path) -> Path:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", bbox_inches="tight")
    atomic_write_bytes(path, buffer.getvalue())
    return path


def plot_metric_table(summary: dict[str, Any], path: Path) -> Path:
    """The metric table as a picture (for slides and the HTML report)."""
    columns = table_columns(summary)
    rows = table_rows(summary) or [("no metrics", ["–"] * len(columns))]
    figure = _figure(2.2 + 1.4 * len(columns), 0.4 + 0.32 * (len(rows) + 1))
    axes = figure.add_subplot(1, 1, 1)
    axes.axis("off")
    table = axes.table(cellText=[values for _, values in rows], rowLabels=[label for label, _ in rows],
                       colLabels=[title for title, _ in columns], loc="center", cellLoc="right")
    table.auto_set_font_size(False)
    table.set_fontsize(9)
    table.scale(1.0, 1.3)
    return _save(figure, path)


def plot_latency(results: Sequence[BagResult], path: Path) -> Path:
    """Histogram of the per-frame total latency (ms) of every bag, with p50/p90/p99 marks over all."""
    figure = _figure(7, 3.6)
    axes = figure.add_subplot(1, 1, 1)
    samples = {Path(r.bag).name: [rec.latency["total"] * 1000 for rec in r.records if "total" in rec.latency] for r in results}
    everything = np.asarray([v for values in samples.values() for v in values], dtype=np.float64)
    if everything.size == 0:
        axes.text(0.5, 0.5, "no latency samples", ha="center", va="center", transform=axes.transAxes)
        axes.axis("off")
        return _save(figure, path)
    bins = np.linspace(everything.min(), everything.max() + 1e-9, min(40, max(5, everything.size // 2)))
    for name, values in samples.items():
        if values:
            axes.hist(values, bins=bins, alpha=0.6, label=name)
    for q, style in ((50, "-"), (90, "--"), (99, ":")):
        value = float(np.percentile(everything, q))
        axes.axvline(value, color="black", linestyle=style, linewidth=1, label=f"p{q} {value:.1f} ms")
    axes.set_xlabel(f"latency per frame (ms) — {results[0].latency_source}")
    axes.set_ylabel("frames")
    axes.legend(fontsize=8)
    return _save(figure, path)


STABILITY_LABELS = {"depth_rel_change": "relative depth change", "label_flip_fraction": "fraction of labels flipped",
                    "normal_change_deg": "normal rotation (°)"}


def plot_per_frame(results: Sequence[BagResult], path: Path) -> Path:
    """Per-frame headline error of each task over time, then each prediction's change from the previous frame."""
    series: list[tuple[str, str, str]] = []  # (record field, key, title)
    for task, keys in PER_FRAME_KEYS.items():
        key = f"{task}/{keys[0]}"
        if any(key in rec.metrics for r in results for rec in r.records):
            series.append(("metrics", key, f"{task} {keys[0]} per frame"))
    for key in STABILITY_KEYS.values():
        if any(key in rec.stability for r in results for rec in r.records):
            series.append(("stability", key, f"{STABILITY_LABELS[key]} from the previous frame (no ground truth needed)"))
    figure = _figure(8, 2.0 * max(len(series), 1))
    if not series:
        axes = figure.add_subplot(1, 1, 1)
        axes.text(0.5, 0.5, "no per-frame figures", ha="center", va="center", transform=axes.transAxes)
        axes.axis("off")
        return _save(figure, path)
    for row, (kind, key, title) in enumerate(series, start=1):
        axes = figure.add_subplot(len(series), 1, row)
        for result in results:
            start = result.records[0].stamp_ns if result.records else 0
            points = [((rec.stamp_ns - start) / 1e9, getattr(rec, kind)[key]) for rec in result.records if key in getattr(rec, kind)]
            if points:
                axes.plot([t for t, _ in points], [v for _, v in points], marker=".", label=Path(result.bag).name)
        axes.set_title(title, fontsize=9)
        if len(results) > 1:
            axes.legend(fontsize=7)
    figure.axes[-1].set_xlabel("time since the first frame (s)")
    figure.tight_layout()
    return _save(figure, path)


def strip_rows(results: Sequence[BagResult], limit: int = MAX_STRIP_ROWS) -> list[list[Panel]]:
    """Up to ``limit`` strip rows spread evenly over every bag's sampled frames."""
    rows = [row for result in results for row in result.strip]
    if len(rows) <= limit:
        return rows
    picks = np.unique(np.linspace(0, len(rows) - 1, limit).round().astype(int))
    return [rows[i] for i in picks]


def _tile_height(rows: Sequence[Sequence[Panel]]) -> int:
    """Tile height of a strip: the frames' own, but at least MIN_TILE_HEIGHT pixels so captions stay readable."""
    return max(MIN_TILE_HEIGHT, int(rows[0][0][1].shape[0]))


def write_strip(results: Sequence[BagResult], path: Path) -> Path | None:
    """input | semantic overlay | depth for a few frames, as one PNG (None when no frame has a picture)."""
    rows = strip_rows(results)
    return write_png_atomic(path, render_contact_sheet(rows, _tile_height(rows))) if rows else None


def write_animation(rows: Sequence[Sequence[Panel]], path: Path, frame_ms: int = 200) -> Path:
    """An animated GIF with one strip row per frame; a PNG strip (same stem) when Pillow is unavailable."""
    if not rows:
        raise ValueError("an animation needs at least one strip row")
    pictures = [render_contact_sheet([row], _tile_height(rows)) for row in rows]
    try:
        from PIL import Image
    except ImportError:
        return write_png_atomic(path.with_suffix(".png"), render_contact_sheet(list(rows), _tile_height(rows)))
    images = [Image.fromarray(p) for p in pictures]
    buffer = io.BytesIO()
    images[0].save(buffer, format="GIF", save_all=True, append_images=images[1:], duration=frame_ms, loop=0)
    atomic_write_bytes(path, buffer.getvalue())
    return path


# ---------------------------------------------------------------------------------------------- documents

def _latency_lines(summary: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    return [(stage, stats) for stage, stats in summary["aggregate"]["latency"].items() if stats.get("count")]


def _per_class(summary: dict[str, Any]) -> list[tuple[str, float | None]]:
    semantic = summary["aggregate"]["metrics"].get("semantic", {})
    return [(key[4:], lookup(semantic, (key,))) for key in semantic if key.startswith("iou/")]


def render_markdown(summary: dict[str, Any], plots: dict[str, Path], title: str) -> str:
    """The report as GitHub-flavoured markdown (plots referenced by relative path)."""
    columns = table_columns(summary)
    lines = [f"# {title}", ""]
    source = summary["source"]
    lines.append(f"Predictions: {'model ' + str(source['model']) + ' (' + str(source['backend']) + ')' if source['model'] else 'prediction topics recorded in the bag'}")
    lines.append("")
    lines += ["| figure | " + " | ".join(name for name, _ in columns) + " |", "|---|" + "---:|" * len(columns)]
    lines += [f"| {label} | " + " | ".join(values) + " |" for label, values in table_rows(summary)]
    lines += ["", "↓ lower is better, ↑ higher is better; depth coverage = share of valid ground-truth pixels with an estimate.", ""]
    per_class = _per_class(summary)
    if per_class:
        lines += ["## Semantic IoU per class", "", "| class | IoU |", "|---|---:|"]
        lines += [f"| {name} | {_fmt(value)} |" for name, value in per_class]
        lines.append("")
    latency = _latency_lines(summary)
    if latency:
        lines += ["## Latency (ms)", "", "| stage | frames | mean | p50 | p90 | p99 | max |", "|---|---:|---:|---:|---:|---:|---:|"]
        lines += [f"| {stage} | {s['count']} | {s['mean_ms']:.2f} | {s['p50_ms']:.2f} | {s['p90_ms']:.2f} | {s['p99_ms']:.2f} | {s['max_ms']:.2f} |" for stage, s in latency]
        lines.append("")
    lines += ["## Bags", ""]
    for bag in summary["bags"]:
        frames = bag["frames"]
        lines.append(f"- `{bag['bag']}` ({bag['storage']}): {frames['evaluated']} of {frames['planned']} frames evaluated"
                     + (f", {frames['failed']} failed ({'; '.join(f'{k}: {v}' for k, v in frames['failures'].items())})" if frames["failed"] else "")
                     + (f", unmatched {frames['unmatched']}" if frames["unmatched"] else ""))
        topics = bag["topics"]
        lines.append(f"  - camera `{topics['camera']}`, ground truth {', '.join(f'{t} `{n}`' for t, n in topics['ground_truth'].items()) or 'none'}"
                     + (f", predictions {', '.join(f'{t} `{n}`' for t, n in topics['predictions'].items())}" if topics["predictions"] else ""))
        lines += [f"  - {note}" for note in bag["notes"]]
        if bag.get("output_bag"):
            lines.append(f"  - prediction bag: `{bag['output_bag']}`")
    lines.append("")
    for key, caption in (("table", "Metric table"), ("latency", "Latency histogram"), ("per_frame", "Per-frame error over time"),
                         ("strip", "input | semantic overlay | depth")):
        if key in plots:
            lines += [f"## {caption}", "", f"![{caption}](plots/{plots[key].name})", ""]
    return "\n".join(lines)


def render_html(summary: dict[str, Any], plots: dict[str, Path], title: str) -> str:
    """The report as one self-contained HTML page (plots referenced by relative path)."""
    e = html.escape
    columns = table_columns(summary)
    parts = [f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{e(title)}</title>",
             "<style>body{font-family:sans-serif;max-width:1100px;margin:auto;padding:1em}table{border-collapse:collapse}"
             "td,th{border:1px solid #ccc;padding:3px 8px;text-align:right}th:first-child,td:first-child{text-align:left}"
             "img{max-width:100%}</style></head><body>", f"<h1>{e(title)}</h1>"]
    source = summary["source"]
    parts.append(f"<p>Predictions: {e('model ' + str(source['model']) + ' (' + str(source['backend']) + ')') if source['model'] else 'prediction topics recorded in the bag'}</p>")
    parts.append("<table><tr><th>figure</th>" + "".join(f"<th>{e(name)}</th>" for name, _ in columns) + "</tr>")
    parts += ["<tr><td>" + e(label) + "</td>" + "".join(f"<td>{e(v)}</td>" for v in values) + "</tr>" for label, values in table_rows(summary)]
    parts.append("</table><p>↓ lower is better, ↑ higher is better; depth coverage = share of valid ground-truth pixels with an estimate.</p>")
    per_class = _per_class(summary)
    if per_class:
        parts.append("<h2>Semantic IoU per class</h2><table><tr><th>class</th><th>IoU</th></tr>")
        parts += [f"<tr><td>{e(name)}</td><td>{_fmt(value)}</td></tr>" for name, value in per_class]
        parts.append("</table>")
    latency = _latency_lines(summary)
    if latency:
        parts.append("<h2>Latency (ms)</h2><table><tr><th>stage</th><th>frames</th><th>mean</th><th>p50</th><th>p90</th><th>p99</th><th>max</th></tr>")
        parts += [f"<tr><td>{e(stage)}</td><td>{s['count']}</td><td>{s['mean_ms']:.2f}</td><td>{s['p50_ms']:.2f}</td><td>{s['p90_ms']:.2f}</td>"
                  f"<td>{s['p99_ms']:.2f}</td><td>{s['max_ms']:.2f}</td></tr>" for stage, s in latency]
        parts.append("</table>")
    parts.append("<h2>Bags</h2><ul>")
    for bag in summary["bags"]:
        frames = bag["frames"]
        notes = "".join(f"<li>{e(n)}</li>" for n in bag["notes"])
        extra = f"<li>prediction bag: <code>{e(bag['output_bag'])}</code></li>" if bag.get("output_bag") else ""
        parts.append(f"<li><code>{e(bag['bag'])}</code> ({e(bag['storage'])}): {frames['evaluated']} of {frames['planned']} frames evaluated, "
                     f"{frames['failed']} failed<ul>{notes}{extra}</ul></li>")
    parts.append("</ul>")
    for key, caption in (("table", "Metric table"), ("latency", "Latency histogram"), ("per_frame", "Per-frame error over time"),
                         ("strip", "input | semantic overlay | depth")):
        if key in plots:
            parts.append(f"<h2>{e(caption)}</h2><img src='plots/{e(plots[key].name)}' alt='{e(caption)}'>")
    parts.append("</body></html>")
    return "\n".join(parts)


def write_report(out_dir: str | Path, summary: dict[str, Any], results: Sequence[BagResult],
                 formats: Sequence[str] = FORMATS, title: str = "Bag evaluation") -> ReportFiles:
    """Write summary.json, the plots under plots/ and the report documents into ``out_dir``."""
    unknown = [f for f in formats if f not in FORMATS]
    if unknown:
        raise ValueError(f"unknown report format(s) {unknown}; choose from {list(FORMATS)}")
    out = Path(out_dir)
    plots_dir = out / "plots"
    plots_dir.mkdir(parents=True, exist_ok=True)
    files = ReportFiles(json=out / "summary.json")
    atomic_write_bytes(files.json, (json.dumps(json_safe(summary), indent=2, sort_keys=False) + "\n").encode())
    files.plots["table"] = plot_metric_table(summary, plots_dir / "metrics_table.png")
    files.plots["latency"] = plot_latency(results, plots_dir / "latency_histogram.png")
    files.plots["per_frame"] = plot_per_frame(results, plots_dir / "per_frame_error.png")
    strip = write_strip(results, plots_dir / "strip.png")
    if strip is not None:
        files.plots["strip"] = strip
    if "md" in formats:
        files.documents.append(out / "report.md")
        atomic_write_bytes(out / "report.md", render_markdown(summary, files.plots, title).encode())
    if "html" in formats:
        files.documents.append(out / "report.html")
        atomic_write_bytes(out / "report.html", render_html(summary, files.plots, title).encode())
    return files
