"""``mtl-perception bag-make``, ``bag-eval`` and ``replay``: rosbag2 tools.

``replay``'s arguments and entry point are one self-contained pair at the end of this module.
"""
from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from mtl_perception.bags.conventions import PREDICTION_NAMESPACE
from mtl_perception.bags.io import STORAGES
from mtl_perception.cli.errors import EXIT_FAILED, command
from mtl_perception.schemas import flag
from mtl_perception.tasks import DEPTH, NORMALS, SEMANTIC

if TYPE_CHECKING:  # imported when a command runs: --help stays fast
    from mtl_perception.bags.evaluation.summary import BagFailure, BagSummary


# ---------------------------------------------------------------------------------------------- bag-make

def add_bag_make_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("out", help="output bag folder (must not exist unless --overwrite)")
    parser.add_argument("--source", choices=("synthetic", "folder", "nyuv2"), default="synthetic",
                        help="synthetic: render a sequence through one random room; folder: a folder dataset (--root); "
                             "nyuv2: frames of nyu_depth_v2_labeled.mat (--root)")
    parser.add_argument("--root", help="folder dataset root, or the path of nyu_depth_v2_labeled.mat")
    parser.add_argument("--frames", type=flag(int, ge=1, le=10**6), default=None,
                        help="frames to write (synthetic default 30; others: all)")
    parser.add_argument("--seed", type=flag(int, ge=0, le=2**32 - 1), default=0,
                        help="synthetic: seed of the room and camera path")
    parser.add_argument("--height", type=flag(int, ge=16, le=4096), default=240,
                        help="synthetic: image height in pixels (16 to 4096)")
    parser.add_argument("--width", type=flag(int, ge=16, le=4096), default=320,
                        help="synthetic: image width in pixels (16 to 4096)")
    parser.add_argument("--split", choices=("train", "test", "all"), default="test", help="nyuv2: which split")
    parser.add_argument("--nyu-classes", type=int, choices=(13, 40), default=13, help="nyuv2: class set of the labels")
    parser.add_argument("--storage", choices=STORAGES, default="sqlite3", help="rosbag2 storage plugin")
    parser.add_argument("--compression", choices=("none", "jpeg", "png"), default="none",
                        help="none: raw rgb8 on /camera/image_raw; jpeg/png: CompressedImage on "
                             "/camera/image_raw/compressed")
    parser.add_argument("--jpeg-quality", type=flag(int, ge=1, le=100), default=95,
                        help="JPEG quality (1-100) with --compression jpeg")
    parser.add_argument("--rate", type=flag(float, ge=1e-3, le=1e4), default=10.0,
                        help="frame rate of the header stamps (Hz, 0.001 to 10000)")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing output bag")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


@command
def bag_make_main(args: argparse.Namespace) -> int:
    from mtl_perception.bags.make import BagOptions, folder_source, make_bag, nyuv2_source, synthetic_source
    from mtl_perception.safeload import check_allocation, check_path

    check_path(args.out, "OUT")
    if args.source == "synthetic":
        check_allocation(args.height * args.width * 320, f"rendering {args.height}x{args.width} frames",
                         "give a smaller --height/--width")
        source = synthetic_source(args.seed, 30 if args.frames is None else args.frames, args.height, args.width)
    else:
        if not args.root:
            what = "folder dataset" if args.source == "folder" else ".mat file"
            raise ValueError(f"--source {args.source} needs --root (the {what})")
        if not Path(args.root).exists():
            raise FileNotFoundError(f"--root {args.root} does not exist")
        if args.source == "folder":
            source = folder_source(args.root, args.frames)
        else:
            source = nyuv2_source(args.root, args.split, args.nyu_classes, args.frames)
    options = BagOptions(storage=args.storage, compression=args.compression, rate_hz=args.rate,
                         jpeg_quality=args.jpeg_quality, overwrite=args.overwrite)
    made = make_bag(args.out, source, options, progress=not args.quiet)
    print(f"wrote {made.path} ({args.storage}): {made.frames} frames of {source.description}, "
          f"{made.seconds_of_recording:.1f} s at {args.rate:g} Hz")
    print("topics: " + ", ".join(made.topics))
    return 0


# ---------------------------------------------------------------------------------------------- bag-eval

def add_bag_eval_arguments(parser: argparse.ArgumentParser) -> None:
    from mtl_perception.inference.backends import BACKENDS

    parser.add_argument("bags", nargs="+", metavar="BAG", help="rosbag2 folders (or .db3/.mcap files), sqlite3 or mcap")
    source = parser.add_argument_group("prediction source (exactly one)")
    source.add_argument("--model",
                        help="model file to run on the camera frames (an exported .onnx; a checkpoint with --backend "
                             "torch)")
    source.add_argument("--predictions-from-bag", action="store_true",
                        help="score prediction topics already in the bag (e.g. the node's outputs recorded by `replay "
                             "--record`)")
    model = parser.add_argument_group("model")
    model.add_argument("--backend", choices=sorted(BACKENDS), default="onnxruntime",
                       help="inference backend")
    model.add_argument("--provider", default=None,
                       help="onnxruntime execution provider (auto, cpu, cuda, tensorrt); default: the backend's")
    model.add_argument("--threads", type=flag(int, ge=0, le=1024), default=0,
                       help="onnxruntime intra-op threads per process; 0 = automatic")
    model.add_argument("--resize-mode", choices=("letterbox", "stretch"), default="letterbox",
                       help="how frames fit the network input (the node's processing.resize_mode)")
    model.add_argument("--no-depth-rescale", action="store_true",
                       help="do not scale depth by the camera's focal length over the training camera's (the node's "
                            "depth.rescale_for_camera)")
    topics = parser.add_argument_group("topics (guessed from message types and names when not given)")
    topics.add_argument("--image-topic", help="camera topic: sensor_msgs/Image or CompressedImage")
    topics.add_argument("--all-cameras", action="store_true",
                        help="evaluate every camera stream of the bag on its own (several cameras in one bag); each "
                             "camera's camera info and ground truth are the topics that carry its name "
                             "(e.g. /front/camera_info, /front/gt/depth or /gt/front/depth); with "
                             "--predictions-from-bag its predictions are under PREDICTION_NAMESPACE/<camera name> (as "
                             "`replay --all-cameras` records them)")
    topics.add_argument("--camera-info-topic", help="sensor_msgs/CameraInfo topic")
    topics.add_argument("--gt-depth-topic",
                        help="ground-truth depth: 32FC1 metres (NaN/0 invalid) or 16UC1 millimetres")
    topics.add_argument("--gt-semantic-topic", help="ground-truth labels: mono8 class ids, 255 = unlabelled")
    topics.add_argument("--gt-normals-topic", help="ground-truth normals: 32FC3 unit vectors, zero = invalid")
    topics.add_argument("--prediction-namespace", default=PREDICTION_NAMESPACE,
                        help="with --predictions-from-bag: namespace of the prediction topics (depth, semantic, "
                             "normals)")
    topics.add_argument("--pred-depth-topic", help="with --predictions-from-bag: depth prediction topic (32FC1)")
    topics.add_argument("--pred-semantic-topic", help="with --predictions-from-bag: label prediction topic (mono8)")
    topics.add_argument("--pred-normals-topic", help="with --predictions-from-bag: normals prediction topic (32FC3)")
    topics.add_argument("--classes-topic", help="std_msgs/String class table (JSON) naming the semantic classes")
    evaluation = parser.add_argument_group("evaluation")
    evaluation.add_argument("--stamp-tolerance", type=flag(float, ge=0, le=3600), default=0.01,
                            help="largest header-stamp difference (s, 0 to 3600) to match ground truth")
    evaluation.add_argument("--min-depth", type=flag(float, gt=0, le=1e4), default=1e-3,
                            help="ground-truth depth below this (m) is not scored")
    evaluation.add_argument("--max-depth", type=flag(float, gt=0, allow_inf=True), default=math.inf,
                            help="ground-truth depth above this (m) is not scored (inf: no cap)")
    evaluation.add_argument("--max-frames", type=flag(int, ge=1, le=10**8), default=None,
                            help="evaluate at most this many frames per bag (at least 1)")
    evaluation.add_argument("--strip-frames", type=flag(int, ge=0, le=64), default=4,
                            help="frames per bag in the input | overlay | depth strip")
    evaluation.add_argument("--jobs", type=flag(int, ge=1, le=256), default=1,
                            help="with --executor process: bags evaluated in parallel processes")
    fleet = parser.add_argument_group("cluster (--executor ray; pip install 'mtl_perception[fleet]')")
    fleet.add_argument("--executor", choices=("process", "ray"), default="process",
                       help="process: this machine (--jobs processes); ray: one Ray task per bag (per camera with "
                            "--all-cameras) on a Ray cluster, the model shipped once through Ray's object store, the "
                            "same figures as --jobs 1; bags and --output-bag must be paths every node reads (a shared "
                            "file system); a bag that fails is reported and the others go on (exit code 1)")
    fleet.add_argument("--address", default=None,
                       help="Ray cluster to use: auto (the cluster this node belongs to), HOST:PORT (its head), or "
                            "ray://HOST:PORT (Ray Client, needs ray[client]); default: start Ray on this machine")
    fleet.add_argument("--cpus-per-task", type=flag(int, ge=1, le=1024), default=1,
                       help="CPUs Ray reserves for each bag's task; also its onnxruntime threads unless --threads")
    fleet.add_argument("--max-retries", type=flag(int, ge=0, le=100), default=3,
                       help="runs of a bag's task again when its worker process dies (a bag's own error is not "
                            "retried)")
    output = parser.add_argument_group("output")
    output.add_argument("--out", default="bag_eval", help="folder for summary.json, the report and its plots")
    output.add_argument("--format", nargs="+", choices=("md", "html"), default=["md", "html"],
                        help="report documents to write")
    output.add_argument("--output-bag",
                        help="with --model: write predictions (and copies of the camera and ground truth) "
                                             "to this bag; with several bags, a folder with one bag each")
    output.add_argument("--output-storage", choices=STORAGES, default=None,
                        help="storage of the output bag (default: the input's)")
    output.add_argument("--overwrite", action="store_true", help="replace existing output bags")
    output.add_argument("--quiet", action="store_true", help="no progress bars")


def bag_eval_settings(args: argparse.Namespace) -> "BagEvalSettings":  # noqa: F821
    """BagEvalSettings from parsed bag-eval arguments."""
    from mtl_perception.bags.evaluation import BagEvalSettings

    options: dict[str, object] = {}
    if args.backend == "onnxruntime":
        if args.provider:
            options["provider"] = args.provider
        if args.threads:
            options["intra_op_threads"] = args.threads
    elif args.provider:
        raise ValueError("--provider applies to --backend onnxruntime only")
    if args.model:
        from mtl_perception.inference.backends import validate_model_path
        from mtl_perception.safeload import check_path

        validate_model_path(args.backend, check_path(args.model, "--model"))
    return BagEvalSettings(
        model=args.model, backend=args.backend, backend_options=options, predictions_from_bag=args.predictions_from_bag,
        image_topic=args.image_topic, all_cameras=args.all_cameras, camera_info_topic=args.camera_info_topic,
        gt_topics={DEPTH: args.gt_depth_topic, SEMANTIC: args.gt_semantic_topic, NORMALS: args.gt_normals_topic},
        prediction_namespace=args.prediction_namespace,
        prediction_topics={DEPTH: args.pred_depth_topic, SEMANTIC: args.pred_semantic_topic,
                           NORMALS: args.pred_normals_topic},
        classes_topic=args.classes_topic, tolerance_s=args.stamp_tolerance, resize_mode=args.resize_mode,
        rescale_for_camera=not args.no_depth_rescale, min_depth=args.min_depth, max_depth=args.max_depth,
        max_frames=args.max_frames, strip_frames=args.strip_frames, output_bag=args.output_bag,
        output_storage=args.output_storage, overwrite=args.overwrite, progress=not args.quiet,
    ).validate()


def check_evaluable(summary: BagSummary) -> None:
    """ValueError (exit 2, no report written) when not one frame of any bag could be evaluated: says why."""
    if summary.aggregate.frames_evaluated > 0:
        return
    reasons = []
    for bag in summary.bags:
        detail = "; ".join(f"{count} x {reason}" for reason, count in list(bag.frames.failures.items())[:2])
        reasons.append(f"{Path(bag.bag).name}: {bag.frames.failed} of {bag.frames.planned} frames failed"
                       + (f": {detail[:300]}" if detail else "")
                       + (f"; {bag.notes[0][:200]}" if bag.notes else ""))
    raise ValueError("no frame could be evaluated" + (f" ({', '.join(reasons)})" if reasons else "")
                     + "; check the camera topic's images (size, encoding), the ground-truth topics and "
                       "--stamp-tolerance")


@command
def bag_eval_main(args: argparse.Namespace) -> int:
    from mtl_perception.bags.evaluation import evaluate_bags, summarize
    from mtl_perception.bags.evaluation.report import write_report
    from mtl_perception.bags.headline import headline
    from mtl_perception.fileio import check_output_dir
    from mtl_perception.safeload import check_path

    if args.jobs < 1:
        raise ValueError(f"--jobs must be at least 1, got {args.jobs}")
    check_output_dir(check_path(args.out, "--out"))
    if args.output_bag:
        check_path(args.output_bag, "--output-bag")
    for bag in args.bags:
        check_path(bag, "BAG")
    if not args.min_depth < args.max_depth:
        raise ValueError(f"--min-depth {args.min_depth} must be below --max-depth {args.max_depth}")
    settings = bag_eval_settings(args)
    failures: list[BagFailure] = []
    if args.executor == "ray":
        from mtl_perception.bags.evaluation.ray_executor import RayOptions, evaluate_bags_on_ray

        options = RayOptions(address=args.address, cpus_per_task=args.cpus_per_task, max_retries=args.max_retries)
        run = evaluate_bags_on_ray(args.bags, settings, options)
        results, failures = run.results, run.failures
    else:
        if args.address is not None:
            raise ValueError("--address applies to --executor ray only")
        results = evaluate_bags(args.bags, settings, jobs=args.jobs)
    summary = summarize(results, settings, failures)
    check_evaluable(summary)
    files = write_report(args.out, summary, results, args.format)
    print(headline(summary))
    for bag in summary.bags:
        for note in bag.notes:
            print(f"note ({Path(bag.bag).name}): {note}")
        if bag.frames.failed:
            print(f"warning ({Path(bag.bag).name}): {bag.frames.failed} frames failed: {bag.frames.failures}")
        if bag.output_bag:
            print(f"prediction bag: {bag.output_bag}")
    print(f"summary: {files.json}")
    for document in files.documents:
        print(f"report: {document}")
    for failure in summary.failed:
        print(f"mtl-perception bag-eval: error: bag {failure.bag} not evaluated: {failure.error}", file=sys.stderr)
    return EXIT_FAILED if summary.failed else 0


# ---------------------------------------------------------------------------------------------- replay

def add_replay_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("bag", metavar="BAG", help="rosbag2 folder (or .db3/.mcap file) whose camera topics to publish")
    parser.add_argument("--rate", type=flag(float, ge=1e-3, le=1e3), default=1.0,
                        help="playback speed factor (2 = twice the recorded rate; 0.001 to 1000)")
    parser.add_argument("--record", metavar="OUT_BAG",
                        help="record the node's outputs (plus the published camera and the bag's ground truth) here")
    parser.add_argument("--storage", choices=STORAGES, default="sqlite3", help="storage of the recording")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing recording")
    parser.add_argument("--image-topic", help="camera topic in the bag (guessed when not given)")
    parser.add_argument("--camera-info-topic", help="camera info topic in the bag (guessed when not given)")
    parser.add_argument("--all-cameras", action="store_true",
                        help="play every camera of the bag (for one node serving them all); each camera's outputs are "
                             "recorded under NAMESPACE/<camera name>, its topic's first segment")
    parser.add_argument("--namespace", default=PREDICTION_NAMESPACE,
                        help="namespace of the node's output topics to record")
    parser.add_argument("--wait", type=flag(float, ge=0, le=3600), default=15.0,
                        help="seconds to wait for the node to subscribe before playing")
    parser.add_argument("--settle", type=flag(float, ge=0, le=3600), default=2.0,
                        help="after the last frame, stop recording once no output came for this long (s)")
    parser.add_argument("--limit", type=flag(int, ge=1, le=10**8), default=None,
                        help="publish at most this many camera frames (of each camera)")


@command
def replay_main(args: argparse.Namespace) -> int:
    from mtl_perception.bags.replay import ReplayOptions, replay_bag

    options = ReplayOptions(rate=args.rate, image_topic=args.image_topic, camera_info_topic=args.camera_info_topic,
                            record=args.record, storage=args.storage, overwrite=args.overwrite,
                            all_cameras=args.all_cameras, namespace=args.namespace,
                            wait_s=args.wait, settle_s=args.settle, limit=args.limit)
    report = replay_bag(args.bag, options)
    print(f"published {', '.join(f'{n} on {t}' for t, n in report.published.items())} in {report.seconds:.1f} s")
    if report.record_path is not None:
        print(f"recorded {report.record_path}: " + ", ".join(f"{n} on {t}" for t, n in report.recorded.items()))
        every = " --all-cameras" if args.all_cameras else ""
        print(f"evaluate it with: mtl-perception bag-eval {report.record_path} --predictions-from-bag{every}")
    return 0
