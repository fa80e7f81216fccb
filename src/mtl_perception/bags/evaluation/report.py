"""The bag-evaluation report: ``summary.json``, ``report.md`` / ``report.html`` and PNG plots.

Plots (matplotlib, Agg canvas, no display needed): a metric table per bag and overall, the latency
histogram, per-frame error (and temporal change) over time, and a strip of input | semantic overlay |
depth colour map for a few frames. The documents are one document model (``build_document``: headings,
paragraphs, tables, lists, pictures) rendered as Markdown or HTML. Every file is written atomically.
``write_animation`` turns strip rows into a GIF (Pillow, which matplotlib already needs), or a PNG strip
where Pillow is missing.
"""
from __future__ import annotations

import html
import io
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence, Union

import numpy as np

from mtl_perception.bags.evaluation.one_bag import BagResult
from mtl_perception.bags.evaluation.scoring import PER_FRAME_KEYS, STABILITY_KEYS
from mtl_perception.bags.evaluation.summary import BagSummary, Figures
from mtl_perception.evaluation.contact_sheet import Panel, render_contact_sheet, write_png_atomic
from mtl_perception.metrics import lower_is_better
from mtl_perception.fileio import atomic_write_bytes, json_safe
from mtl_perception.tasks import DEPTH, NORMALS, SEMANTIC

FORMATS = ("md", "html")
MAX_STRIP_ROWS = 6
MIN_TILE_HEIGHT = 120


@dataclass(frozen=True)
class TableRow:
    """One row of the metric table: its label, the figure's key (its direction) and how to read it."""

    label: str
    key: str
    read: Callable[[Figures], float | None]


TABLE_ROWS: tuple[TableRow, ...] = (
    TableRow("depth AbsRel", "abs_rel", lambda f: f.metric(DEPTH, "abs_rel")),
    TableRow("depth RMSE (m)", "rmse", lambda f: f.metric(DEPTH, "rmse")),
    TableRow("depth δ<1.25", "delta1", lambda f: f.metric(DEPTH, "delta1")),
    TableRow("depth coverage", "depth_coverage", lambda f: f.depth_coverage),
    TableRow("semantic mIoU", "miou", lambda f: f.metric(SEMANTIC, "miou")),
    TableRow("semantic pixel acc.", "pixel_acc", lambda f: f.metric(SEMANTIC, "pixel_acc")),
    TableRow("normals mean (°)", "mean", lambda f: f.metric(NORMALS, "mean")),
    TableRow("normals median (°)", "median", lambda f: f.metric(NORMALS, "median")),
    TableRow("normals < 11.25° (%)", "within_11_25", lambda f: f.metric(NORMALS, "within_11_25")),
    TableRow("depth change / frame", "depth_rel_change", lambda f: f.change("depth_rel_change")),
    TableRow("label flips / frame", "label_flip_fraction", lambda f: f.change("label_flip_fraction")),
    TableRow("normal change / frame (°)", "normal_change_deg", lambda f: f.change("normal_change_deg")),
    TableRow("latency p50 (ms)", "p50_ms", lambda f: f.latency_ms("total", "p50_ms")),
    TableRow("latency p99 (ms)", "p99_ms", lambda f: f.latency_ms("total", "p99_ms")),
)
DIRECTION_NOTE = ("↓ lower is better, ↑ higher is better; depth coverage = share of valid ground-truth pixels with an "
                  "estimate.")
PLOT_CAPTIONS = (("table", "Metric table"), ("latency", "Latency histogram"),
                 ("per_frame", "Per-frame error over time"), ("strip", "input | semantic overlay | depth"))


@dataclass
class ReportFiles:
    """Paths of everything a report wrote."""

    json: Path
    documents: list[Path] = field(default_factory=list)
    plots: dict[str, Path] = field(default_factory=dict)


def _fmt(value: float | None) -> str:
    if value is None:
        return "–"
    return f"{value:.4g}" if abs(value) < 1000 else f"{value:.0f}"


def table_columns(summary: BagSummary) -> list[tuple[str, Figures]]:
    """(column title, figures) for each bag, plus the aggregate when there are several bags."""
    columns = [(Path(bag.bag).name, bag.figures) for bag in summary.bags]
    if len(columns) > 1:
        columns.append(("all bags", summary.aggregate.figures))
    return columns


def table_rows(summary: BagSummary) -> list[tuple[str, list[str]]]:
    """Rows of the metric table that have a value in at least one column."""
    columns = table_columns(summary)
    rows = []
    for row in TABLE_ROWS:
        values = [row.read(figures) for _, figures in columns]
        if any(v is not None for v in values):
            rows.append((f"{row.label} {'↓' if lower_is_better(row.key) else '↑'}", [_fmt(v) for v in values]))
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


def _no_data(figure: Any, text: str, path: Path) -> Path:
    axes = figure.add_subplot(1, 1, 1)
    axes.text(0.5, 0.5, text, ha="center", va="center", transform=axes.transAxes)
    axes.axis("off")
    return _save(figure, path)


def plot_metric_table(summary: BagSummary, path: Path) -> Path:
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
    samples = {Path(r.bag).name: [rec.latency["total"] * 1000 for rec in r.records if "total" in rec.latency]
               for r in results}
    everything = np.asarray([v for values in samples.values() for v in values], dtype=np.float64)
    if everything.size == 0:
        return _no_data(figure, "no latency samples", path)
    axes = figure.add_subplot(1, 1, 1)
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
            title = f"{STABILITY_LABELS[key]} from the previous frame (no ground truth needed)"
            series.append(("stability", key, title))
    figure = _figure(8, 2.0 * max(len(series), 1))
    if not series:
        return _no_data(figure, "no per-frame figures", path)
    for row, (kind, key, title) in enumerate(series, start=1):
        axes = figure.add_subplot(len(series), 1, row)
        for result in results:
            start = result.records[0].stamp_ns if result.records else 0
            points = [((rec.stamp_ns - start) / 1e9, getattr(rec, kind)[key]) for rec in result.records
                      if key in getattr(rec, kind)]
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


# ---------------------------------------------------------------------------------------------- document model

@dataclass(frozen=True)
class Code:
    """Inline code (a path, a topic)."""

    text: str


Text = tuple[Union[str, Code], ...]  # inline pieces of one paragraph, list item or caption


@dataclass(frozen=True)
class Heading:
    text: str
    level: int = 2


@dataclass(frozen=True)
class Paragraph:
    text: Text


@dataclass(frozen=True)
class Table:
    """A table; the first column is left-aligned, the others right-aligned."""

    header: list[str]
    rows: list[list[str]]


@dataclass(frozen=True)
class Item:
    text: Text
    children: list[Text] = field(default_factory=list)


@dataclass(frozen=True)
class Bullets:
    items: list[Item]


@dataclass(frozen=True)
class Picture:
    caption: str
    source: str  # relative path


Block = Union[Heading, Paragraph, Table, Bullets, Picture]


def _listing(pairs: dict[str, str]) -> Text:
    """``depth `/gt/depth`, semantic `/gt/semantic``` as inline pieces."""
    pieces: list[str | Code] = []
    for index, (task, topic) in enumerate(pairs.items()):
        pieces += [", " if index else "", f"{task} ", Code(topic)]
    return tuple(pieces)


def _bag_items(summary: BagSummary) -> list[Item]:
    items = []
    for bag in summary.bags:
        frames = bag.frames
        counts = f" ({bag.storage}): {frames.evaluated} of {frames.planned} frames evaluated"
        line: list[str | Code] = [Code(bag.bag), counts]
        if frames.failed:
            line.append(f", {frames.failed} failed ({'; '.join(f'{k}: {v}' for k, v in frames.failures.items())})")
        if frames.unmatched:
            line.append(f", unmatched {frames.unmatched}")
        topics = bag.topics
        detail: list[str | Code] = ["camera ", Code(str(topics.camera)), ", ground truth ",
                                    *(_listing(topics.ground_truth) or ("none",))]
        if topics.predictions:
            detail += [", predictions ", *_listing(topics.predictions)]
        children = [tuple(detail), *((note,) for note in bag.notes)]
        if bag.output_bag:
            children.append(("prediction bag: ", Code(bag.output_bag)))
        items.append(Item(tuple(line), children))
    return items


def build_document(summary: BagSummary, plots: dict[str, Path], title: str) -> list[Block]:
    """The report's content, whatever format it is written in."""
    columns = table_columns(summary)
    blocks: list[Block] = [Heading(title, 1), Paragraph((f"Predictions: {summary.source.describe()}",)),
                           Table(["figure", *(name for name, _ in columns)],
                                 [[label, *values] for label, values in table_rows(summary)]),
                           Paragraph((DIRECTION_NOTE,))]
    semantic = summary.aggregate.figures.metrics.get(SEMANTIC, {})
    per_class = [[key[4:], _fmt(summary.aggregate.figures.metric(SEMANTIC, key))] for key in semantic
                 if key.startswith("iou/")]
    if per_class:
        blocks += [Heading("Semantic IoU per class"), Table(["class", "IoU"], per_class)]
    latency = [(stage, stats) for stage, stats in summary.aggregate.figures.latency.items() if stats.count]
    if latency:
        rows = [[stage, str(s.count), *(f"{getattr(s, name):.2f}" for name in ("mean_ms", "p50_ms", "p90_ms", "p99_ms",
                                                                                   "max_ms"))] for stage, s in latency]
        blocks += [Heading("Latency (ms)"), Table(["stage", "frames", "mean", "p50", "p90", "p99", "max"], rows)]
    blocks += [Heading("Bags"), Bullets(_bag_items(summary))]
    if summary.failed:
        blocks += [Heading("Bags not evaluated"),
                   Bullets([Item((Code(failure.bag), f": {failure.error}"), []) for failure in summary.failed])]
    for key, caption in PLOT_CAPTIONS:
        if key in plots:
            blocks += [Heading(caption), Picture(caption, f"plots/{plots[key].name}")]
    return blocks


def _markdown_text(text: Text) -> str:
    return "".join(f"`{piece.text}`" if isinstance(piece, Code) else piece for piece in text)


def _html_text(text: Text) -> str:
    return "".join(f"<code>{html.escape(piece.text)}</code>" if isinstance(piece, Code) else html.escape(piece)
                   for piece in text)


def to_markdown(blocks: Sequence[Block]) -> str:
    """GitHub-flavoured Markdown of a document."""
    lines: list[str] = []
    for block in blocks:
        if isinstance(block, Heading):
            lines += ["#" * block.level + " " + block.text, ""]
        elif isinstance(block, Paragraph):
            lines += [_markdown_text(block.text), ""]
        elif isinstance(block, Table):
            lines += ["| " + " | ".join(block.header) + " |", "|---|" + "---:|" * (len(block.header) - 1)]
            lines += ["| " + " | ".join(row) + " |" for row in block.rows]
            lines.append("")
        elif isinstance(block, Bullets):
            for item in block.items:
                lines.append("- " + _markdown_text(item.text))
                lines += ["  - " + _markdown_text(child) for child in item.children]
            lines.append("")
        else:
            lines += [f"![{block.caption}]({block.source})", ""]
    return "\n".join(lines)


HTML_HEAD = ("<!DOCTYPE html><html><head><meta charset='utf-8'><title>{title}</title>"
             "<style>body{{font-family:sans-serif;max-width:1100px;margin:auto;padding:1em}}"
             "table{{border-collapse:collapse}}td,th{{border:1px solid #ccc;padding:3px 8px;text-align:right}}"
             "th:first-child,td:first-child{{text-align:left}}img{{max-width:100%}}</style></head><body>")


def to_html(blocks: Sequence[Block], title: str) -> str:
    """One self-contained HTML page of a document."""
    e = html.escape
    parts = [HTML_HEAD.format(title=e(title))]
    for block in blocks:
        if isinstance(block, Heading):
            parts.append(f"<h{block.level}>{e(block.text)}</h{block.level}>")
        elif isinstance(block, Paragraph):
            parts.append(f"<p>{_html_text(block.text)}</p>")
        elif isinstance(block, Table):
            cells = ["<tr>" + "".join(f"<th>{e(h)}</th>" for h in block.header) + "</tr>"]
            cells += ["<tr>" + "".join(f"<td>{e(v)}</td>" for v in row) + "</tr>" for row in block.rows]
            parts.append("<table>" + "".join(cells) + "</table>")
        elif isinstance(block, Bullets):
            items = [f"<li>{_html_text(item.text)}<ul>" + "".join(f"<li>{_html_text(c)}</li>" for c in item.children)
                     + "</ul></li>" for item in block.items]
            parts.append("<ul>" + "".join(items) + "</ul>")
        else:
            parts.append(f"<img src='{e(block.source)}' alt='{e(block.caption)}'>")
    parts.append("</body></html>")
    return "\n".join(parts)


def render_markdown(summary: BagSummary, plots: dict[str, Path], title: str) -> str:
    """The report as GitHub-flavoured markdown (plots referenced by relative path)."""
    return to_markdown(build_document(summary, plots, title))


def render_html(summary: BagSummary, plots: dict[str, Path], title: str) -> str:
    """The report as one self-contained HTML page (plots referenced by relative path)."""
    return to_html(build_document(summary, plots, title), title)


RENDERERS = {"md": ("report.md", render_markdown), "html": ("report.html", render_html)}


def write_report(out_dir: str | Path, summary: BagSummary, results: Sequence[BagResult],
                 formats: Sequence[str] = FORMATS, title: str = "Bag evaluation") -> ReportFiles:
    """Write summary.json, the plots under plots/ and the report documents into ``out_dir``."""
    unknown = [f for f in formats if f not in FORMATS]
    if unknown:
        raise ValueError(f"unknown report format(s) {unknown}; choose from {list(FORMATS)}")
    out = Path(out_dir)
    plots_dir = out / "plots"
    plots_dir.mkdir(parents=True, exist_ok=True)
    files = ReportFiles(json=out / "summary.json")
    document = json.dumps(json_safe(summary.to_json()), indent=2, sort_keys=False) + "\n"
    atomic_write_bytes(files.json, document.encode())
    files.plots["table"] = plot_metric_table(summary, plots_dir / "metrics_table.png")
    files.plots["latency"] = plot_latency(results, plots_dir / "latency_histogram.png")
    files.plots["per_frame"] = plot_per_frame(results, plots_dir / "per_frame_error.png")
    strip = write_strip(results, plots_dir / "strip.png")
    if strip is not None:
        files.plots["strip"] = strip
    for name in FORMATS:  # md before html, whatever order ``formats`` names them in
        if name in formats:
            filename, render = RENDERERS[name]
            files.documents.append(out / filename)
            atomic_write_bytes(out / filename, render(summary, files.plots, title).encode())
    return files
