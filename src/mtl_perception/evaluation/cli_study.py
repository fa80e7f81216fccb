"""``mtl-perception study``: single-task baselines against every multi-task architecture (Δm, cost)."""
from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", required=True, help="study YAML (see config/study/); entries x seeds are trained")
    parser.add_argument("overrides", nargs="*", metavar="key=value",
                        help="study keys (seeds, eval_count, latency_runs, out_dir) or base config keys (train.steps=100)")


def main(args: argparse.Namespace) -> int:
    from mtl_perception.evaluation.study import StudyConfig, run_study

    run_study(StudyConfig.load(args.config, args.overrides))
    return 0
