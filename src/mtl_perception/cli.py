"""``mtl-perception``: one command with a subcommand per offline tool.

Each subcommand lives in its own module exposing ``add_arguments(parser)`` and ``main(args) -> int``;
they are imported only when used, so ``--help`` stays fast. Expected failures (bad config, missing
file, unreadable model) end with a one-line reason and exit code 2, never a traceback.
"""
from __future__ import annotations

import argparse
import errno
import importlib
import sys

from mtl_perception.safeload import shorten

# name -> (module, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "train": ("mtl_perception.training.cli_train", "train a network from a YAML config (torchrun for DDP)"),
    "evaluate": ("mtl_perception.evaluation.cli_evaluate", "evaluate a checkpoint: metrics JSON and a contact sheet"),
    "study": ("mtl_perception.evaluation.cli_study", "train and compare single-task baselines and multi-task architectures (Δm)"),
    "model-info": ("mtl_perception.model.cli_info", "parameters and GFLOPs per task branch of a config's network"),
    "synth": ("mtl_perception.data.synth_cli", "render the synthetic indoor dataset to a folder"),
    "export": ("mtl_perception.inference.cli_commands:export", "export a checkpoint to a self-describing ONNX file"),
    "build-engine": ("mtl_perception.inference.cli_commands:build_engine", "build and cache a TensorRT engine from an ONNX file"),
    "quantize": ("mtl_perception.inference.cli_commands:quantize", "INT8 model: explicit symmetric Q/DQ, for TensorRT and ONNX Runtime"),
    "check-trt": ("mtl_perception.inference.cli_commands:check_trt", "check an ONNX file against TensorRT 10 and 11's ONNX parsers and Q/DQ rules"),
    "bag-make": ("mtl_perception.bags.cli_commands:bag_make", "convert a synthetic sequence, folder dataset or NYUv2 frames to a rosbag2"),
    "bag-eval": ("mtl_perception.bags.cli_commands:bag_eval", "evaluate a model (or recorded predictions) on rosbag2 bags: metrics, latency, report"),
    "replay": ("mtl_perception.bags.cli_commands:replay", "publish a bag's camera topics live and record the node's outputs"),
}


class UserError(Exception):
    """A failure caused by the user's input; printed as one line."""


class OneLineParser(argparse.ArgumentParser):
    """argparse whose errors are one line (``mtl-perception CMD: error: ...``) and exit code 2, as every other bad input."""

    def error(self, message: str) -> "NoReturn":  # type: ignore[override]  # noqa: F821
        from mtl_perception.safeload import shorten

        self.exit(2, f"{self.prog}: error: {shorten(' '.join(message.split()), 400)} (see {self.prog} --help)\n")


def _load(spec: str) -> tuple[object, object]:
    """Return (add_arguments, main) for a command spec ``module`` or ``module:prefix``."""
    module_name, _, prefix = spec.partition(":")
    module = importlib.import_module(module_name)
    if prefix:
        return getattr(module, f"add_{prefix}_arguments"), getattr(module, f"{prefix}_main")
    for add_name, main_name in (("add_arguments", "main"), ("add_synth_arguments", "synth_main")):
        if hasattr(module, add_name):
            return getattr(module, add_name), getattr(module, main_name)
    raise AttributeError(f"{module_name} defines no command")


def build_parser(selected: str | None = None) -> argparse.ArgumentParser:
    parser = OneLineParser(prog="mtl-perception", description=__doc__.split("\n\n")[0],
                           formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=OneLineParser)
    for name, (spec, help_text) in COMMANDS.items():
        child = sub.add_parser(name, help=help_text, description=help_text, formatter_class=argparse.ArgumentDefaultsHelpFormatter)
        if name == selected:
            add_arguments, _ = _load(spec)
            add_arguments(child)
    return parser


def expected_errors() -> tuple[type[BaseException], ...]:
    """Exception types that describe bad input rather than a bug."""
    from mtl_perception.inference.metadata import MetadataError
    from mtl_perception.training.checkpoint import CheckpointError

    errors: list[type[BaseException]] = [UserError, ValueError, FileNotFoundError, NotADirectoryError, PermissionError,
                                         IsADirectoryError, FileExistsError, CheckpointError, MetadataError]
    try:
        from mtl_perception.inference.backends.base import BackendError
        errors.append(BackendError)
    except ImportError:
        pass
    return tuple(errors)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    selected = next((a for a in argv if not a.startswith("-")), None)
    parser = build_parser(selected if selected in COMMANDS else None)
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    _, command_main = _load(COMMANDS[args.command][0])
    try:
        return int(command_main(args) or 0)
    except expected_errors() as exc:
        return _one_line(args.command, str(exc) or type(exc).__name__)
    except OSError as exc:
        if exc.errno in (errno.ENAMETOOLONG, errno.ENOSPC, errno.EROFS, errno.EACCES):  # the user's paths and disks, not a bug
            where = f" ({shorten(str(exc.filename), 80)})" if exc.filename else ""
            return _one_line(args.command, f"{exc.strerror or exc}{where}; give a shorter or writable path, or free disk space")
        raise
    except MemoryError:
        return _one_line(args.command, "ran out of memory; use a smaller size, batch or frame count")
    except KeyboardInterrupt:
        print(f"mtl-perception {args.command}: interrupted", file=sys.stderr)
        return 130


def _one_line(command: str, text: str) -> int:
    reason = "; ".join(line.strip() for line in text.splitlines() if line.strip())
    print(f"mtl-perception {command}: error: {shorten(reason, 1000)}", file=sys.stderr)  # always one line
    return 2


if __name__ == "__main__":
    sys.exit(main())
