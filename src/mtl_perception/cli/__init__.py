"""``mtl-perception``: one command with a subcommand per offline tool.

Each command group is a module of this package (``train``, ``evaluate``, ``model``, ``data``, ``inference``,
``bags``); every command NAME in it is a pair ``add_NAME_arguments(parser)`` / ``NAME_main(args) -> int``
(dashes as underscores), and every ``NAME_main`` follows the one error policy of ``cli/errors.py``. Modules
are imported only when their command runs, so ``--help`` stays fast.
"""
from __future__ import annotations

import argparse
import importlib
import sys
from typing import Callable, NoReturn

# command -> (module of this package, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "train": ("train", "train a network from a YAML config (torchrun for DDP)"),
    "evaluate": ("evaluate", "evaluate a checkpoint: metrics JSON and a contact sheet"),
    "study": ("evaluate", "train and compare single-task baselines and multi-task architectures (Δm)"),
    "sim-to-real": ("evaluate", "score a model file on real frames with depth: metric and median-scaled depth, floor/wall IoU"),
    "model-info": ("model", "parameters and GFLOPs per task branch of a config's network"),
    "synth": ("data", "render the synthetic indoor dataset to a folder"),
    "export": ("inference", "export a checkpoint to a self-describing ONNX file"),
    "build-engine": ("inference", "build and cache a TensorRT engine from an ONNX file"),
    "quantize": ("inference", "INT8 model: explicit symmetric Q/DQ, for TensorRT and ONNX Runtime"),
    "check-trt": ("inference", "check an ONNX file against TensorRT 10 and 11's ONNX parsers and Q/DQ rules"),
    "bag-make": ("bags", "convert a synthetic sequence, folder dataset or NYUv2 frames to a rosbag2"),
    "bag-eval": ("bags", "evaluate a model (or recorded predictions) on rosbag2 bags: metrics, latency, report"),
    "replay": ("bags", "publish a bag's camera topics live and record the node's outputs"),
}


class OneLineParser(argparse.ArgumentParser):
    """argparse whose errors are one line (``mtl-perception CMD: error: ...``) and exit code 2, as any bad input."""

    def error(self, message: str) -> NoReturn:
        from mtl_perception.safeload import shorten

        self.exit(2, f"{self.prog}: error: {shorten(' '.join(message.split()), 400)} (see {self.prog} --help)\n")


def load_command(name: str) -> tuple[Callable[[argparse.ArgumentParser], None], Callable[[argparse.Namespace], int]]:
    """(add_NAME_arguments, NAME_main) of a command."""
    module = importlib.import_module(f"{__name__}.{COMMANDS[name][0]}")
    attr = name.replace("-", "_")
    return getattr(module, f"add_{attr}_arguments"), getattr(module, f"{attr}_main")


def build_parser(selected: str | None = None) -> argparse.ArgumentParser:
    """The parser of every command; only the ``selected`` one gets its flags (the others' modules stay unloaded)."""
    parser = OneLineParser(prog="mtl-perception", description=__doc__.split("\n\n")[0],
                           formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=OneLineParser)
    for name, (_, help_text) in COMMANDS.items():
        child = sub.add_parser(name, help=help_text, description=help_text,
                               formatter_class=argparse.ArgumentDefaultsHelpFormatter)
        if name == selected:
            load_command(name)[0](child)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    selected = next((a for a in argv if not a.startswith("-")), None)
    parser = build_parser(selected if selected in COMMANDS else None)
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    return load_command(args.command)[1](args)
