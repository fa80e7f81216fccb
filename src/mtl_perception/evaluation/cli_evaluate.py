"""``mtl-perception evaluate``: every metric of a checkpoint on a dataset, as JSON plus a contact sheet."""
from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import numpy as np


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--checkpoint", required=True, help="checkpoint written by `mtl-perception train` (best.pt or last.pt)")
    parser.add_argument("--data", default="synthetic",
                        help="'synthetic' (the run's held-out synthetic split), a folder dataset directory, or the NYUv2 labelled .mat (test split)")
    parser.add_argument("--count", type=int, help="synthetic: number of held-out frames (default: the run's data.val_count)")
    parser.add_argument("--out", default="eval_output", help="directory for metrics.json and contact_sheet.png")
    parser.add_argument("--batch-size", type=int, default=4, help="frames per forward pass")
    parser.add_argument("--sheet-rows", type=int, default=4, help="frames shown in the contact sheet")
    parser.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N")


def _dataset_for(data: str, config: Any, count: int | None) -> Any:
    """The evaluation dataset the --data flag names, at the network's input size."""
    from dataclasses import replace

    from mtl_perception.data.datasets import build_datasets

    if data == "synthetic":
        data_cfg = replace(config.data, val_count=count or config.data.val_count, augment=False)
        return build_datasets(data_cfg)[1]
    path = Path(data)
    if not path.exists():
        raise FileNotFoundError(f"--data {data}: no such file or directory (use 'synthetic', a folder dataset or the NYUv2 .mat)")
    if path.is_dir():
        data_cfg = replace(config.data, dataset="folder", root=str(path), val_root=str(path), augment=False)
    else:
        data_cfg = replace(config.data, dataset="nyuv2", root=str(path), augment=False)
    return build_datasets(data_cfg)[1]


def _denormalise(image: np.ndarray) -> np.ndarray:
    from mtl_perception.tasks import IMAGENET_MEAN, IMAGENET_STD

    rgb = image.transpose(1, 2, 0) * np.array(IMAGENET_STD) + np.array(IMAGENET_MEAN)
    return (np.clip(rgb, 0, 1) * 255).astype(np.uint8)


def main(args: argparse.Namespace) -> int:
    import torch
    from torch.utils.data import DataLoader

    from mtl_perception.colorize import palette_from_sequence
    from mtl_perception.evaluation.contact_sheet import sample_panels, write_contact_sheet
    from mtl_perception.evaluation.evaluate import evaluate_model, json_safe
    from mtl_perception.fileio import atomic_write_bytes, check_output_dir, file_sha256
    from mtl_perception.training.checkpoint import model_from_checkpoint

    check_output_dir(args.out)
    model, config, state = model_from_checkpoint(args.checkpoint, map_location=args.device)
    dataset = _dataset_for(args.data, config, args.count)
    info = state.get("dataset", {})
    class_names = info.get("class_names")
    palette = palette_from_sequence(info.get("palette"), config.model.num_classes)
    tasks = config.model.tasks
    rows: list[Any] = []

    def collect(batch: dict[str, Any], outputs: dict[str, Any]) -> None:
        for i in range(min(batch["image"].shape[0], args.sheet_rows - len(rows))):
            rows.append(sample_panels(_denormalise(batch["image"][i].cpu().numpy()), {t: batch[t][i] for t in tasks},
                                      {t: outputs[t][i] for t in tasks}, palette=palette, num_classes=config.model.num_classes,
                                      min_depth=config.model.min_depth, max_depth=config.model.max_depth))

    loader = DataLoader(dataset, batch_size=args.batch_size, shuffle=False)
    with torch.inference_mode():
        metrics = evaluate_model(model.to(args.device), loader, config.model.tasks, config.model.num_classes,
                                 class_names, args.device, on_batch=collect)
    out = Path(args.out)
    report = {"checkpoint": str(args.checkpoint), "checkpoint_sha256": file_sha256(args.checkpoint), "data": args.data,
              "frames": len(dataset), "metrics": metrics}
    atomic_write_bytes(out / "metrics.json", json.dumps(json_safe(report), indent=2, allow_nan=False).encode())
    if rows:
        write_contact_sheet(out / "contact_sheet.png", rows)
    print(json.dumps(json_safe(metrics), indent=2))
    print(f"wrote {out / 'metrics.json'} and {out / 'contact_sheet.png'}")
    return 0
