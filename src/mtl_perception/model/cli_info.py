"""``mtl-perception model-info``: parameters and GFLOPs per task branch at a given resolution."""
from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", help="YAML experiment config; its model section is used (defaults when omitted)")
    parser.add_argument("--height", type=int, help="input height in pixels (default: the config's data.height)")
    parser.add_argument("--width", type=int, help="input width in pixels (default: the config's data.width)")
    parser.add_argument("overrides", nargs="*", metavar="section.key=value", help="config overrides, e.g. model.encoder=resnet50")


def main(args: argparse.Namespace) -> int:
    from mtl_perception.config import load_config
    from mtl_perception.model.flops import format_profile, profile_model
    from mtl_perception.model.network import build_model

    config = load_config(args.config, args.overrides)
    height, width = args.height or config.data.height, args.width or config.data.width
    model = build_model(config.model).eval()
    print(f"architecture={config.model.architecture} encoder={config.model.encoder} tasks={','.join(config.model.tasks)} input={height}x{width}")
    print(format_profile(profile_model(model, height, width)))
    return 0
