#!/usr/bin/env python3
"""Derive src/mtl_perception/data/resources/nyuv2_meta.json from the community NYUv2 .mat tables.

Run once (the JSON is committed; nothing is read or downloaded at run time):
    .venv/bin/python tools/derive_nyuv2_meta.py [--meta-dir ../shared/nyuv2_meta]

Inputs (see ../shared/nyuv2_meta/README.md): splits.mat (trainNdxs, testNdxs: 1-based frame indices),
classMapping40.mat (mapClass: raw id 1..894 -> 40-class id 1..40, className), class13Mapping.mat
(classMapping13.labels13: 40-class id -> 13-class id 1..13, classNames).
The JSON keeps the 1-based class ids of the sources (0 = unlabelled) and stores frame indices 0-based.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import scipy.io

REPO = Path(__file__).resolve().parents[1]
DEFAULT_META_DIR = REPO.parent / "shared" / "nyuv2_meta"
OUTPUT = REPO / "src" / "mtl_perception" / "data" / "resources" / "nyuv2_meta.json"
SPELLING_FIXES = {"refridgerator": "refrigerator"}  # a typo in the source table


def _names(cells: np.ndarray) -> list[str]:
    return [SPELLING_FIXES.get(str(c[0]), str(c[0])) for c in np.asarray(cells).ravel()]


def derive(meta_dir: Path) -> dict:
    splits = scipy.io.loadmat(meta_dir / "splits.mat")
    map40 = scipy.io.loadmat(meta_dir / "classMapping40.mat")
    map13 = scipy.io.loadmat(meta_dir / "class13Mapping.mat")["classMapping13"][0, 0]
    train = np.sort(splits["trainNdxs"].ravel().astype(int) - 1)
    test = np.sort(splits["testNdxs"].ravel().astype(int) - 1)
    raw_to_40 = map40["mapClass"].ravel().astype(int)
    c40_to_13 = np.asarray(map13["labels13"]).ravel().astype(int)
    meta = {
        "description": "NYU Depth V2 labelled set: class maps and the official 795/654 split. Class ids are "
                       "1-based as in the sources (0 = unlabelled); frame indices are 0-based.",
        "source": "ankurhanda/nyuv2-meta-data @ b92d15c (splits.mat, classMapping40.mat, class13Mapping.mat)",
        "num_frames": 1449,
        "class_names_40": _names(map40["className"]),
        "class_names_13": _names(map13["classNames"]),
        "map894to40": raw_to_40.tolist(),
        "map40to13": c40_to_13.tolist(),
        "train_indices": train.tolist(),
        "test_indices": test.tolist(),
    }
    assert len(meta["map894to40"]) == 894 and len(meta["map40to13"]) == 40
    assert len(train) == 795 and len(test) == 654 and not set(train) & set(test)
    assert len(meta["class_names_40"]) == 40 and len(meta["class_names_13"]) == 13
    return meta


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--meta-dir", type=Path, default=DEFAULT_META_DIR, help="folder holding the three .mat files")
    parser.add_argument("--out", type=Path, default=OUTPUT, help="JSON file to write")
    args = parser.parse_args()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(derive(args.meta_dir), separators=(",", ":")) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
