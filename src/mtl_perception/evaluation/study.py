"""The multi-task study: train single-task baselines and multi-task architectures on one budget, then
compare them (every metric, Δm, parameters, GFLOPs, ONNX Runtime CPU latency) in a table and a plot.

A study config (YAML) has:
- ``base``: an experiment config (sections model, data, train) every entry starts from;
- ``entries``: a list of ``{name: ..., <section>: {key: value}}`` overrides, e.g. an architecture;
  an entry whose ``model.tasks`` is a single task is that task's single-task baseline;
- ``seeds``: training seeds (each entry is trained once per seed; metrics are averaged);
- ``eval_count``: frames of the fixed held-out synthetic set; ``latency_runs``: timed ONNX Runtime runs;
- ``out_dir``: where runs, ``study.md``, ``study.json`` and ``delta_m_vs_latency.png`` go.
Each finished (entry, seed) leaves ``result.json`` in its run folder, so a study that was stopped resumes.
"""
from __future__ import annotations

import copy
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from mtl_perception.config import ExperimentConfig, config_from_dict
from mtl_perception.metrics import delta_m
from mtl_perception.tasks import ALL_TASKS

SINGLE_TASK_ROW = "single-task (3 nets)"  # the row summing the single-task baselines (Δm 0, latency ratio 1)
TABLE_METRICS = [("depth", "rmse"), ("depth", "abs_rel"), ("depth", "delta1"), ("semantic", "miou"), ("semantic", "pixel_acc"),
                 ("normals", "mean"), ("normals", "median"), ("normals", "within_11_25")]


@dataclass
class StudyConfig:
    """A parsed study file."""

    base: dict[str, Any]
    entries: list[dict[str, Any]]
    seeds: list[int] = field(default_factory=lambda: [0, 1])
    eval_count: int = 64
    latency_runs: int = 20
    out_dir: str = "runs/study"

    @classmethod
    def load(cls, path: str | Path, overrides: list[str] | None = None) -> "StudyConfig":
        """Read a study file (bounded YAML), validate its shape (``_study_schema``) and every entry's config, up front."""
        from pydantic import ValidationError

        from mtl_perception.config import apply_overrides
        from mtl_perception.safeload import shorten, yaml_load_file, yaml_loads
        from mtl_perception.schemas import describe_errors

        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"study config not found: {shorten(str(path))}")
        raw = yaml_load_file(path, "study config")
        raw = {} if raw is None else raw
        if not isinstance(raw, dict):
            raise ValueError(f"study config {shorten(str(path))} must be a mapping with base, entries, seeds, ...; got {type(raw).__name__}")
        unknown = sorted((k for k in raw if k not in STUDY_KEYS), key=str)
        if unknown:
            raise ValueError(f"unknown key(s) {[shorten(str(k), 40) for k in unknown[:8]]} in study config {shorten(str(path))}; valid keys: {sorted(STUDY_KEYS)}")
        try:
            checked = _study_schema().validate_python(raw)
        except ValidationError as exc:
            raise ValueError(f"study config {shorten(str(path))}: {describe_errors(exc)}") from None
        study = cls(**checked)
        for item in overrides or []:
            key, _, value = item.partition("=")
            if key in ("seeds", "eval_count", "latency_runs", "out_dir"):
                parsed = yaml_loads(value, f"override '{shorten(item, 80)}'", "value")
                try:
                    setattr(study, key, _study_schema(partial=True).validate_python({key: parsed})[key])
                except ValidationError as exc:
                    raise ValueError(f"override '{shorten(item, 80)}': {describe_errors(exc)}") from None
            else:
                apply_overrides(study.base, [item])
        names = [e.get("name") for e in study.entries]
        if None in names or len(set(names)) != len(names):
            raise ValueError("every study entry needs a unique 'name'")
        for entry in study.entries:
            study.entry_config(entry, study.seeds[0])  # validate every entry up front
        return study

    def entry_config(self, entry: dict[str, Any], seed: int) -> ExperimentConfig:
        raw = copy.deepcopy(self.base)
        for section, values in entry.items():
            if section == "name":
                continue
            raw.setdefault(section, {}).update(values)
        raw.setdefault("train", {})["seed"] = seed
        raw["train"]["out_dir"] = str(Path(self.out_dir) / entry["name"] / f"seed{seed}")
        try:
            return config_from_dict(raw)
        except ValueError as exc:
            raise ValueError(f"study entry '{entry['name']}': {exc}") from None


STUDY_KEYS = ("base", "entries", "seeds", "eval_count", "latency_runs", "out_dir")
_STUDY_SCHEMAS: dict[bool, Any] = {}


def _study_schema(partial: bool = False) -> Any:
    """The shape of a study file: base a mapping of sections, entries mappings with a name, seeds and counts in range.

    ``partial``: base and entries optional (to check one overridden key).
    """
    if partial not in _STUDY_SCHEMAS:
        from typing import Annotated

        from pydantic import Field, Strict, TypeAdapter
        from typing_extensions import NotRequired, Required, TypedDict

        Key = Annotated[str, Strict()]
        Need = NotRequired if partial else Required

        class StudySchema(TypedDict, total=False):
            base: Need[dict[Key, dict[Key, Any]]]  # type: ignore[valid-type]
            entries: Need[Annotated[list[dict[Key, Any]], Field(min_length=1, max_length=256)]]  # type: ignore[valid-type]
            seeds: Annotated[list[Annotated[int, Strict(), Field(ge=0, le=2**32 - 1)]], Field(min_length=1, max_length=64)]
            eval_count: Annotated[int, Strict(), Field(ge=1, le=100_000)]
            latency_runs: Annotated[int, Strict(), Field(ge=1, le=10_000)]
            out_dir: Annotated[str, Strict(), Field(min_length=1, max_length=4096)]

        _STUDY_SCHEMAS[partial] = TypeAdapter(StudySchema)
    return _STUDY_SCHEMAS[partial]


def _held_out(config: ExperimentConfig, count: int) -> Any:
    from dataclasses import replace

    from mtl_perception.data.datasets import build_datasets

    return build_datasets(replace(config.data, val_count=count, augment=False))[1]


def run_entry(config: ExperimentConfig, eval_count: int) -> dict[str, Any]:
    """Train one (entry, seed) and evaluate its final weights on the fixed held-out set."""
    import torch
    from torch.utils.data import DataLoader

    from mtl_perception.training.validation import evaluate_model
    from mtl_perception.training.trainer import Trainer

    trainer = Trainer(config, progress=False)
    result = trainer.fit()
    with torch.inference_mode():
        metrics = evaluate_model(trainer.network, DataLoader(_held_out(config, eval_count), batch_size=8), config.model.tasks,
                                 config.model.num_classes, trainer.info.class_names, trainer.device)
    return {"metrics": metrics, "train_seconds": result.seconds, "steps": result.steps}


def measure_costs(configs: dict[str, ExperimentConfig], runs: int, out: Path) -> dict[str, dict[str, float]]:
    """Parameters, GFLOPs and median ONNX Runtime CPU latency (ms) of each entry at its training input size.

    All models are exported first, then timed round-robin (one run of each in turn), so that a noisy
    machine slows them alike and the latency ratios stay fair.
    """
    from mtl_perception.inference.backends import create_backend
    from mtl_perception.inference.checkpoint_model import load_for_inference
    from mtl_perception.inference.export import export_model
    from mtl_perception.model.flops import profile_model

    costs: dict[str, dict[str, float]] = {}
    backends: dict[str, tuple[Any, np.ndarray]] = {}
    for name, config in configs.items():
        model, meta = load_for_inference(Path(config.train.out_dir) / "last.pt")
        profile = profile_model(model, config.data.height, config.data.width)
        report = export_model(model, meta, out / name / "model.onnx")
        costs[name] = {"params_m": profile.parameters / 1e6, "gflops": profile.gflops, "export_max_abs_diff": report.worst_diff}
        backend = create_backend("onnxruntime", out / name / "model.onnx", provider="cpu")
        batch = np.random.default_rng(0).standard_normal((1, 3, config.data.height, config.data.width)).astype(np.float32)
        backends[name] = (backend, batch)
    times: dict[str, list[float]] = {name: [] for name in backends}
    for round_index in range(runs + 3):  # the first 3 rounds warm up
        for name, (backend, batch) in backends.items():
            start = time.perf_counter()
            backend.infer(batch)
            if round_index >= 3:
                times[name].append((time.perf_counter() - start) * 1000)
    for name, (backend, _) in backends.items():
        costs[name]["latency_ms"] = float(np.median(times[name]))
        backend.close()
    return costs


def _nanmean(values: list[float | None]) -> float:
    finite = [v for v in values if v is not None and np.isfinite(v)]
    return float(np.mean(finite)) if finite else float("nan")


def _mean_metrics(runs: list[dict[str, Any]]) -> dict[str, dict[str, float]]:
    """Per-metric mean over seeds (NaN/None, e.g. the IoU of an absent class, ignored)."""
    tasks = runs[0]["metrics"].keys()
    return {t: {k: _nanmean([r["metrics"][t][k] for r in runs]) for k in runs[0]["metrics"][t]} for t in tasks}


def summarize(study: StudyConfig, results: dict[str, list[dict[str, Any]]], costs: dict[str, dict[str, float]]) -> dict[str, Any]:
    """Mean metrics per entry, Δm against the single-task baselines, and cost figures."""
    means = {name: _mean_metrics(runs) for name, runs in results.items()}
    baselines: dict[str, str] = {}
    for entry in study.entries:
        tasks = study.entry_config(entry, study.seeds[0]).model.tasks
        if len(tasks) == 1:
            baselines[tasks[0]] = entry["name"]
    rows = []
    for entry in study.entries:
        name = entry["name"]
        tasks = study.entry_config(entry, study.seeds[0]).model.tasks
        row: dict[str, Any] = {"name": name, "tasks": tasks, "metrics": means[name], **costs[name]}
        if len(tasks) > 1 and all(t in baselines for t in tasks):
            reference = {t: means[baselines[t]][t] for t in tasks}
            row["delta_m"] = delta_m(means[name], reference, tasks)
            per_seed = [delta_m(r["metrics"], reference, tasks) for r in results[name]]
            row["delta_m_seeds"] = per_seed
        rows.append(row)
    if set(baselines) == set(ALL_TASKS):
        single = {"name": SINGLE_TASK_ROW, "tasks": list(ALL_TASKS), "delta_m": 0.0,
                  "metrics": {t: means[baselines[t]][t] for t in ALL_TASKS}}
        for key in ("params_m", "gflops", "latency_ms"):
            single[key] = sum(costs[baselines[t]][key] for t in ALL_TASKS)
        rows.append(single)
    single_latency = next((r["latency_ms"] for r in rows if r["name"] == SINGLE_TASK_ROW), None)
    for row in rows:
        row["latency_vs_single"] = row["latency_ms"] / single_latency if single_latency else float("nan")
    return {"rows": rows, "seeds": study.seeds, "eval_count": study.eval_count, "base": study.base}


def markdown_table(summary: dict[str, Any]) -> str:
    """Every headline metric, Δm, size and latency as a markdown table."""
    header = ["entry"] + [f"{t} {k}" for t, k in TABLE_METRICS] + ["Δm %", "params (M)", "GFLOPs", "ORT CPU ms", "latency / single-task nets"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in summary["rows"]:
        cells = [row["name"]]
        for task, key in TABLE_METRICS:
            value = row["metrics"].get(task, {}).get(key)
            cells.append("–" if value is None else f"{value:.4f}" if key in ("abs_rel", "miou", "pixel_acc", "delta1") else f"{value:.3f}")
        dm = row.get("delta_m")
        seeds = row.get("delta_m_seeds")
        cells.append("–" if dm is None else f"{dm:+.2f}" + (f" ({', '.join(f'{s:+.1f}' for s in seeds)})" if seeds else ""))
        cells += [f"{row['params_m']:.2f}", f"{row['gflops']:.2f}", f"{row['latency_ms']:.1f}", f"{row['latency_vs_single']:.2f}"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def plot_delta_m(summary: dict[str, Any], path: Path) -> None:
    """Δm against ONNX Runtime CPU latency, one point per architecture."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from mtl_perception.fileio import atomic_write_bytes

    fig, ax = plt.subplots(figsize=(6.4, 4.2), dpi=120)
    for row in summary["rows"]:
        if "delta_m" not in row:
            continue
        ax.scatter(row["latency_ms"], row["delta_m"], s=40)
        ax.annotate(row["name"], (row["latency_ms"], row["delta_m"]), textcoords="offset points", xytext=(5, 4), fontsize=8)
    ax.axhline(0.0, color="grey", linewidth=0.8)
    ax.set_xlabel("ONNX Runtime CPU latency per frame (ms)")
    ax.set_ylabel("Δm vs single-task baselines (%)")
    ax.set_title("Multi-task gain against cost")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    import io

    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    plt.close(fig)
    atomic_write_bytes(path, buffer.getvalue())


def run_study(study: StudyConfig, log: Any = print) -> dict[str, Any]:
    """Train and evaluate every (entry, seed) not done yet, then write the table, JSON and plot."""
    from mtl_perception.fileio import json_safe
    from mtl_perception.fileio import atomic_write_bytes

    out = Path(study.out_dir)
    results: dict[str, list[dict[str, Any]]] = {}
    started = time.perf_counter()
    for entry in study.entries:
        name = entry["name"]
        results[name] = []
        for seed in study.seeds:
            config = study.entry_config(entry, seed)
            done = Path(config.train.out_dir) / "result.json"
            if done.is_file():
                results[name].append(json.loads(done.read_text()))
                continue
            log(f"[study] training {name} seed {seed} ({config.model.architecture}, tasks {config.model.tasks}, {config.train.steps} steps)")
            result = run_entry(config, study.eval_count)
            atomic_write_bytes(done, json.dumps(json_safe(result), indent=2).encode())
            results[name].append(result)
    log("[study] exporting every entry and timing ONNX Runtime round-robin")
    costs = measure_costs({e["name"]: study.entry_config(e, study.seeds[0]) for e in study.entries}, study.latency_runs, out)
    summary = summarize(study, results, costs)
    summary["wall_seconds_this_call"] = time.perf_counter() - started
    table = markdown_table(summary)
    atomic_write_bytes(out / "study.md", (table + "\n").encode())
    atomic_write_bytes(out / "study.json", json.dumps(json_safe(summary), indent=2).encode())
    plot_delta_m(summary, out / "delta_m_vs_latency.png")
    log(table)
    log(f"[study] wrote {out / 'study.md'}, {out / 'study.json'} and {out / 'delta_m_vs_latency.png'}")
    return summary
