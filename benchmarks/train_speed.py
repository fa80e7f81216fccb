"""Training throughput: images/s of one process against a 2-process torchrun (DDP, gloo) run, side by side.

Usage: .venv/bin/python benchmarks/train_speed.py [--steps 30] [--config config/train/default.yaml]
Both runs use the same per-process batch and model; the 1-process run gets all cores as torch threads,
each DDP process an equal share. Prints images/s of each and the scaling ratio (DDP / single).
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile


def run(command: list[str], env: dict[str, str]) -> float:
    output = subprocess.run(command, capture_output=True, text=True, env=env, check=False)
    if output.returncode != 0:
        sys.exit(f"training failed:\n{output.stderr[-3000:]}")
    text = output.stdout
    return float(json.loads(text[text.index("{"):])["images_per_second"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", default="config/train/default.yaml", help="training config to time")
    parser.add_argument("--steps", type=int, default=30, help="optimiser steps per run (after 1 warm-up run of the same)")
    parser.add_argument("--cores", type=int, default=os.cpu_count() or 2, help="CPU cores to use in total")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as out:
        common = ["train", "--config", args.config, "--no-progress", f"train.steps={args.steps}", f"train.out_dir={out}",
                  "train.val_every=1000000", "train.ckpt_every=1000000", "data.val_count=2", "data.workers=0", "train.device=cpu"]
        env = dict(os.environ)
        single = run([sys.executable, "-m", "mtl_perception.cli", *common, f"train.threads={args.cores}"], env)
        per_process = max(1, args.cores // 2)
        env["OMP_NUM_THREADS"] = str(per_process)
        ddp = run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", str(29400 + os.getpid() % 500),
                   "-m", "mtl_perception.cli", *common, f"train.threads={per_process}"], env)
    print(f"config={args.config} steps={args.steps} cores={args.cores}")
    print(f"1 process ({args.cores} threads):         {single:8.2f} images/s")
    print(f"2 processes DDP ({per_process} thread(s) each): {ddp:8.2f} images/s")
    print(f"DDP scaling ratio (2 proc / 1 proc): {ddp / single:.2f}x")


if __name__ == "__main__":
    main()
