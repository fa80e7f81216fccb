"""Evaluate predictions on rosbag2 bags: every metric, latency, temporal stability, an optional prediction bag.

Predictions come from one of two sources, scored by the same code:
- a model (``settings.model``): each camera frame runs through the node's per-frame pipeline
  (``inference.frame_pipeline.FramePipeline``, the same deploy graph with the node's defaults), timed;
- the bag itself (``settings.predictions_from_bag``): prediction topics such as the node's recorded
  outputs (latency = log time of the prediction - log time of its camera frame in the bag).

Ground truth (depth, labels, normals) is matched to each frame by header stamp within a tolerance.
Depth pixels without an estimate (NaN, e.g. outside the model's range) are left out of the depth metrics
and reported as ``depth coverage``. Temporal stability needs no ground truth: the change of each
prediction between consecutive frames (relative depth change, fraction of labels that flip, normal
rotation in degrees). Several bags run in parallel processes; their metric states add up exactly.

One module per job: ``settings`` (BagEvalSettings), ``ground_truth`` (decoding), ``scoring`` (accumulators,
per-frame figures, stability), ``strip`` (the picture strip), ``output_bag`` (the prediction bag),
``one_bag`` (one bag end to end), ``fan_out`` (several bags and cameras, processes), ``summary`` (the typed
``BagSummary``) and ``report`` (summary.json, Markdown/HTML and plots).
"""
from mtl_perception.bags.evaluation.fan_out import evaluate_bags
from mtl_perception.bags.evaluation.one_bag import BagResult, evaluate_bag
from mtl_perception.bags.evaluation.scoring import FrameRecord
from mtl_perception.bags.evaluation.settings import BagEvalSettings
from mtl_perception.bags.evaluation.summary import BagSummary, summarize

__all__ = ["BagEvalSettings", "BagResult", "BagSummary", "FrameRecord", "evaluate_bag", "evaluate_bags", "summarize"]
