"""``mtl-perception model-info``: parameters and GFLOPs per branch (encoder, neck, each task) at a given
resolution, and the ratio to one single-task network per task with the same settings."""
from __future__ import annotations

import argparse

from mtl_perception.cli.errors import command
from mtl_perception.schemas import flag

# peak memory of one forward pass per input pixel (measured: about 480 B, ResNet-18 at 480x640)
PROFILE_BYTES_PER_PIXEL = 1536


def add_model_info_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", help="YAML experiment config; its model section is used (defaults when omitted)")
    parser.add_argument("--height", type=flag(int, ge=32, le=4096),
                        help="input height in pixels, 32 to 4096 (default: the config's data.height)")
    parser.add_argument("--width", type=flag(int, ge=32, le=4096),
                        help="input width in pixels, 32 to 4096 (default: the config's data.width)")
    parser.add_argument("overrides", nargs="*", metavar="section.key=value",
                        help="config overrides, e.g. model.encoder=resnet50")


@command
def model_info_main(args: argparse.Namespace) -> int:
    import dataclasses

    from mtl_perception.config import load_config
    from mtl_perception.model.flops import format_profile, profile_model
    from mtl_perception.model.network import build_model
    from mtl_perception.safeload import check_allocation

    config = load_config(args.config, args.overrides)
    height, width = args.height or config.data.height, args.width or config.data.width
    check_allocation(height * width * PROFILE_BYTES_PER_PIXEL, f"profiling the network at {height}x{width}",
                     "give a smaller --height/--width")
    untrained = dataclasses.replace(config.model, pretrained=None)  # counting needs no weights file
    model = build_model(untrained).eval()
    single_task = None
    if config.model.architecture != "single":
        baseline = build_model(dataclasses.replace(untrained, architecture="single", sharing="encoder", options={}))
        single_task = profile_model(baseline, height, width)
    print(f"architecture={config.model.architecture} sharing={config.model.sharing} "
          f"decoder_stride={config.model.decoder_stride} encoder={config.model.encoder} "
          f"tasks={','.join(config.model.tasks)} "
          f"input={height}x{width}")
    print(format_profile(profile_model(model, height, width), single_task))
    return 0
