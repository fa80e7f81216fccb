"""TensorRT engine cache: keys, lookup and invalidation (pure logic, no TensorRT needed).

An engine is valid only for the exact ONNX file, TensorRT version, GPU model, compute capability, SM
count and memory size, precision and input shape it was built for. The ONNX file is the one TensorRT
parses: the precision file (``precision.py``: FP16 mixed precision or INT8 Q/DQ) or the deploy graph,
so its hash also keys the weights, the calibration, the camera size and the output options. The SM
count and memory tell apart modules that share a compute capability (Jetson Orin AGX, NX and Nano all
report "Orin", sm 8.7). The cache stores each engine as ``<name>.engine`` next to
a ``<name>.json`` sidecar holding its key, the engine's SHA-256 and the model metadata; the sidecar is
written last, so a sidecar always describes a complete engine.

Lookup gives one of three answers: ``hit`` (load it, never rebuild), ``miss`` (nothing built for this
model, precision and shape: build), or ``mismatch`` (built for this model but another TensorRT version
or GPU: rebuild or fail, with a message naming what differs).

An engine is native code: a hit is loaded only when its bytes match the SHA-256 in its sidecar and the
cache folder, engine and sidecar belong to this user and are not world-writable (``check_trusted``).
A damaged entry (engine bytes that differ from the sidecar's hash, an engine gone, an unreadable sidecar
named for the key) is a miss that names the damaged file (``CacheDecision.damaged``): the caller reports
it once (``fileio.report_damaged``) and builds a new engine over it.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from mtl_perception.fileio import atomic_write_bytes, file_sha256
from mtl_perception.paths import cache_dir

PRECISIONS = ("fp32", "fp16", "int8")
# Key fields that identify what is built; the others identify where it can run.
MODEL_FIELDS = ("onnx_sha256", "precision", "input_shape")
PLATFORM_FIELDS = ("tensorrt_version", "gpu_name", "compute_capability", "sm_count", "memory_gib")


class EngineCacheError(RuntimeError):
    """A cached engine cannot be used and the policy forbids rebuilding it."""


@dataclass(frozen=True)
class EngineKey:
    """Everything a serialised TensorRT engine depends on."""

    onnx_sha256: str
    tensorrt_version: str
    gpu_name: str
    compute_capability: str  # "major.minor", e.g. "8.7" for Jetson Orin
    precision: str  # fp32 | fp16 | int8
    input_shape: tuple[int, ...]  # (N, 3, H, W); N is the largest batch for dynamic-batch engines; a deploy graph's image input shape
    sm_count: int = 0  # streaming multiprocessors (Orin AGX 16, Orin NX / Nano 8); 0 = unknown (older sidecars)
    memory_gib: int = 0  # device memory, GiB rounded (Orin AGX 32/64, NX 16/8, Nano 8/4); 0 = unknown

    def __post_init__(self) -> None:
        if self.precision not in PRECISIONS:
            raise ValueError(f"unknown precision '{self.precision}'; valid: {list(PRECISIONS)}")
        object.__setattr__(self, "input_shape", tuple(int(d) for d in self.input_shape))

    def digest(self) -> str:
        """Short stable hash of the whole key (names the cache files)."""
        blob = json.dumps(self.to_dict(), sort_keys=True)
        return hashlib.sha256(blob.encode()).hexdigest()[:16]

    def file_stem(self, model_name: str) -> str:
        """Readable, unique file name stem: model, precision, shape and key digest."""
        safe = "".join(c if c.isalnum() or c in "-_" else "_" for c in model_name)[:40] or "model"
        shape = "x".join(map(str, self.input_shape))
        return f"{safe}-{self.precision}-{shape}-{self.digest()}"

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["input_shape"] = list(self.input_shape)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "EngineKey":
        fields = cls.__dataclass_fields__
        return cls(**{f: data[f] for f in fields if f in data or fields[f].default is dataclasses.MISSING})


@dataclass
class CacheDecision:
    """What to do for a key: ``hit`` (load ``engine_path``), ``miss`` (build) or ``mismatch`` (see reasons)."""

    status: str
    engine_path: Path | None = None
    reasons: list[str] = field(default_factory=list)
    damaged: Path | None = None  # a miss because this cache file of the key is damaged (reasons say how)

    def message(self, key: EngineKey) -> str:
        if self.status == "hit":
            return f"cached engine {self.engine_path} matches"
        if self.status == "miss":
            why = f" ({'; '.join(self.reasons)})" if self.reasons else ""
            return f"no usable cached engine for ONNX {key.onnx_sha256[:12]}, {key.precision}, input {list(key.input_shape)}{why}"
        return "cached engine was built for another platform: " + "; ".join(self.reasons)


def mismatch_reasons(cached: EngineKey, current: EngineKey) -> list[str]:
    """Human-readable differences between a cached key and the current one (empty when equal)."""
    labels = {
        "onnx_sha256": "ONNX file", "precision": "precision", "input_shape": "input shape",
        "tensorrt_version": "TensorRT version", "gpu_name": "GPU", "compute_capability": "compute capability",
        "sm_count": "SM count", "memory_gib": "GPU memory (GiB)",
    }
    reasons = []
    for name in MODEL_FIELDS + PLATFORM_FIELDS:
        old, new = getattr(cached, name), getattr(current, name)
        if old != new:
            old_text = list(old) if isinstance(old, tuple) else old
            new_text = list(new) if isinstance(new, tuple) else new
            reasons.append(f"{labels[name]} {old_text} (cached) != {new_text} (this machine)")
    return reasons


def decide(cached_keys: list[EngineKey], current: EngineKey) -> tuple[str, EngineKey | None]:
    """Pure decision over the cached keys: ('hit', key), ('mismatch', closest key) or ('miss', None).

    A mismatch is a cached engine for the same ONNX file, precision and input shape but another
    TensorRT version, GPU, compute capability, SM count or memory size.
    """
    if current in cached_keys:
        return "hit", current
    same_model = [k for k in cached_keys if all(getattr(k, f) == getattr(current, f) for f in MODEL_FIELDS)]
    if same_model:
        return "mismatch", same_model[0]
    return "miss", None


def check_trusted(engine_path: Path) -> None:
    """EngineCacheError unless the engine, its sidecar and the cache folder are this user's and not world-writable.

    An engine is native code that TensorRT runs: one that another user could have replaced is never loaded.
    """
    uid = os.getuid() if hasattr(os, "getuid") else None
    for item in (engine_path.parent, engine_path, engine_path.with_suffix(".json")):
        info = item.stat()
        if (uid is not None and info.st_uid != uid) or info.st_mode & 0o002:
            raise EngineCacheError(
                f"refusing to load a TensorRT engine from {item}: it is owned by another user or writable by everyone, "
                f"and an engine is native code; use a cache folder only you can write (chmod 700 {engine_path.parent}) and rebuild"
            )


def timing_cache_name(key: EngineKey) -> str:
    """File name of the builder timing cache for a key's platform (shared by every model built there).

    Keyed like the engines' platform: TensorRT version, GPU name, compute capability, SM count and memory,
    because TensorRT's own check of a timing cache compares device properties this key also names.
    """
    gpu = "".join(c if c.isalnum() else "_" for c in key.gpu_name)[:32]
    return f"timing-{key.tensorrt_version}-{gpu}-sm{key.compute_capability}-{key.sm_count}sm-{key.memory_gib}g.cache"


class EngineCache:
    """Engines and their sidecars in one directory: ``engines/`` of the cache root (``paths.cache_dir``)."""

    def __init__(self, cache_root: str | Path | None = None) -> None:
        self.root = cache_dir("engines", cache_root)

    def paths(self, key: EngineKey, model_name: str) -> tuple[Path, Path]:
        stem = key.file_stem(model_name)
        return self.root / f"{stem}.engine", self.root / f"{stem}.json"

    def entries(self) -> list[tuple[EngineKey, Path, dict[str, Any]]]:
        """(key, engine path, sidecar) of every readable sidecar in the cache."""
        found = []
        if not self.root.is_dir():
            return found
        for sidecar in sorted(self.root.glob("*.json")):
            try:
                info = json.loads(sidecar.read_text())
                key = EngineKey.from_dict(info["key"])
            except (OSError, ValueError, KeyError, TypeError):
                continue  # not one of ours, or damaged: ignored, never loaded
            found.append((key, sidecar.with_suffix(".engine"), info))
        return found

    def lookup(self, key: EngineKey) -> CacheDecision:
        """Hit, miss or mismatch for ``key``; a hit's engine bytes are checked against the sidecar hash."""
        entries = self.entries()
        status, matched = decide([k for k, _, _ in entries], key)
        if status == "miss" or matched is None:
            unreadable = sorted(self.root.glob(f"*-{key.digest()}.json")) if self.root.is_dir() else []
            if unreadable:  # this key's sidecar is there but could not be read
                return CacheDecision("miss", reasons=[f"engine sidecar {unreadable[0]} is unreadable"], damaged=unreadable[0])
            return CacheDecision("miss")
        engine_path, info = next((p, i) for k, p, i in entries if k == matched)
        if status == "mismatch":
            return CacheDecision("mismatch", engine_path, mismatch_reasons(matched, key))
        if not engine_path.is_file():
            return CacheDecision("miss", reasons=[f"engine file {engine_path} is missing"], damaged=engine_path)
        check_trusted(engine_path)
        if file_sha256(engine_path) != info.get("engine_sha256"):
            return CacheDecision("miss", reasons=[f"engine file {engine_path} is damaged (hash differs from its sidecar)"], damaged=engine_path)
        return CacheDecision("hit", engine_path)

    def store(self, key: EngineKey, model_name: str, engine: bytes, extra: dict[str, Any] | None = None) -> Path:
        """Write an engine and its sidecar atomically (engine first); return the engine path."""
        engine_path, sidecar = self.paths(key, model_name)
        self.root.mkdir(mode=0o700, parents=True, exist_ok=True)
        atomic_write_bytes(engine_path, engine)
        info = {"key": key.to_dict(), "engine_sha256": hashlib.sha256(engine).hexdigest(), "engine_file": engine_path.name, **(extra or {})}
        atomic_write_bytes(sidecar, json.dumps(info, indent=1, sort_keys=True).encode())
        return engine_path

    def read_sidecar(self, engine_path: Path) -> dict[str, Any]:
        return json.loads(engine_path.with_suffix(".json").read_text())

    def remove(self, key: EngineKey, model_name: str) -> None:
        """Delete an entry (sidecar first, so a half-removed entry is never a hit)."""
        self.discard(self.paths(key, model_name)[0])

    @staticmethod
    def discard(engine_path: Path) -> None:
        """Delete the entry of an engine file (sidecar first), e.g. one TensorRT refused to deserialise."""
        engine_path.with_suffix(".json").unlink(missing_ok=True)
        engine_path.unlink(missing_ok=True)


def resolve_engine(cache: EngineCache, key: EngineKey, on_mismatch: str = "rebuild", allow_build: bool = True) -> CacheDecision:
    """Apply the policy to a lookup: return the decision to load or build, or raise EngineCacheError.

    on_mismatch: 'rebuild' builds a new engine for this platform (the old one stays for its platform);
    'fail' raises with the differences. allow_build=False turns every non-hit into an error that
    tells the user to run ``mtl-perception build-engine`` ahead of time.
    """
    if on_mismatch not in ("rebuild", "fail"):
        raise ValueError(f"unknown on_mismatch policy '{on_mismatch}'; valid: ['fail', 'rebuild']")
    decision = cache.lookup(key)
    if decision.status == "hit":
        return decision
    if decision.status == "mismatch" and on_mismatch == "fail":
        raise EngineCacheError(f"{decision.message(key)}; rebuild it on this machine with `mtl-perception build-engine` (cache: {cache.root})")
    if not allow_build:
        raise EngineCacheError(f"{decision.message(key)} and building is disabled; run `mtl-perception build-engine --model MODEL.onnx --precision {key.precision}` first (cache: {cache.root})")
    return decision
