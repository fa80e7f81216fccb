"""``mtl-perception train``: train from a YAML config, single process or under torchrun (DDP)."""
from __future__ import annotations

import argparse
import json
import os

from mtl_perception.cli.errors import command

# rough peak memory of a training step per input pixel (activations kept for backward, fp32)
TRAIN_BYTES_PER_PIXEL = 4096


def add_train_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", help="YAML experiment config (sections model, data, train); defaults when omitted")
    parser.add_argument("--resume", help="checkpoint to continue from, or 'auto' for OUT_DIR/last.pt when it exists")
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    parser.add_argument("overrides", nargs="*", metavar="section.key=value",
                        help="config overrides, values parsed as YAML, e.g. train.steps=500 model.encoder=resnet34")


@command
def train_main(args: argparse.Namespace) -> int:
    from mtl_perception.config import load_config
    from mtl_perception.safeload import check_allocation
    from mtl_perception.training.trainer import train

    config = load_config(args.config, args.overrides)
    pixels = config.data.height * config.data.width * config.train.batch_size
    check_allocation(pixels * TRAIN_BYTES_PER_PIXEL,
                     f"training on batches of {config.train.batch_size} frames of "
                     f"{config.data.height}x{config.data.width}",
                     "lower data.height, data.width or train.batch_size")
    result = train(config, resume=args.resume, progress=not args.no_progress)
    if int(os.environ.get("RANK", "0")) == 0:
        print(json.dumps({"steps": result.steps, "seconds": round(result.seconds, 1),
                          "images_per_second": round(result.images_per_second, 2), "out_dir": result.out_dir,
                          "metrics": result.metrics}, indent=2))
    return 0
