"""Make `.gpu_deps/`: what benchmarks/gpu_check.py needs beyond a bare CUDA machine's own set, as wheels.

Usage: python3 tools/gpu_deps.py [--out .gpu_deps] [--tags cp312-x86_64 ...]        (`make gpu-check-deps`)

A bare GPU machine has PyTorch, onnx, onnxruntime, numpy and OpenCV, no network and no package index. The
project's model-file reader needs pydantic and PyYAML, and the FP16 precision file onnxconverter-common. This
tool runs ``pip download`` here once per target interpreter (``--python-version``, ``--abi``, manylinux
``--platform``, ``--only-binary=:all:``) at the versions requirements.txt pins, and lays them out as:

- ``py3/``: the pure wheels every target shares (pydantic, typing-extensions, annotated-types,
  typing-inspection; onnxconverter-common without its dependencies, which the bare machine has) and
  ``pyyaml-<version>-pure.zip``, PyYAML's Python modules without its libyaml extension (the project never
  asks for the C loader; PyYAML falls back to its Python one), one file instead of one binary wheel per target;
- ``<tag>/`` (``cp310-x86_64`` ... ``cp313-aarch64``): the binary wheels of that interpreter (pydantic-core);
- ``MANIFEST.json``: the requirements, every file and the total size (the make target's stamp).

All of it stays zipped (under 20 MiB for the eight targets, so a session carries the whole folder without
knowing the GPU machine's Python); gpu_check unpacks the files of the interpreter that runs it.
"""
from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FORMAT = "mtl_perception.gpu_deps/1"
PYTHONS = ("3.10", "3.11", "3.12", "3.13")
ARCHES = ("x86_64", "aarch64")
TAGS = tuple(f"cp{v.replace('.', '')}-{arch}" for v in PYTHONS for arch in ARCHES)
# requirements.txt names: resolved with their dependencies / downloaded alone (their dependencies are the bare machine's)
WITH_DEPS = ("pydantic", "pyyaml")
NO_DEPS = ("onnxconverter-common",)
PURE_ONLY = "pyyaml"  # shipped as its Python modules only (see the module docstring)
LIMIT_BYTES = 20 * 2**20


def pins(requirements: Path, names: tuple[str, ...]) -> list[str]:
    """``name==version`` for each of ``names`` as ``requirements`` pins it (ValueError naming one it lacks)."""
    found = {}
    for line in requirements.read_text().splitlines():
        match = re.match(r"^([A-Za-z0-9_.-]+)==([^\s#;]+)", line.strip())
        if match:
            found[re.sub(r"[-_.]+", "-", match.group(1)).lower()] = f"{match.group(1)}=={match.group(2)}"
    missing = [n for n in names if n not in found]
    if missing:
        raise ValueError(f"{requirements} pins no version of {', '.join(missing)}")
    return [found[n] for n in names]


def pip_download(tag: str, requirements: list[str], into: Path, no_deps: bool = False) -> None:
    """``pip download`` the binary wheels of ``requirements`` for the interpreter and platform of ``tag``."""
    version, arch = tag.split("-", 1)
    python = f"{version[2]}.{version[3:]}"
    platforms = [f"--platform={p}_{arch}" for p in ("manylinux2014", "manylinux_2_17", "manylinux_2_28")]
    command = [sys.executable, "-m", "pip", "download", "--quiet", "--disable-pip-version-check", "--only-binary=:all:",
               f"--python-version={python}", "--implementation=cp", f"--abi={version}", *platforms, "--dest", str(into),
               *(["--no-deps"] if no_deps else []), *requirements]
    subprocess.run(command, check=True)


def pure_python_copy(wheel: Path, out: Path) -> Path:
    """A zip of ``wheel`` without its extension modules, its ``_*`` shim packages and its RECORD: ``out``."""
    with zipfile.ZipFile(wheel) as source, zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as target:
        for info in source.infolist():
            top = info.filename.split("/", 1)[0]
            if info.filename.endswith((".so", ".pyd", "/RECORD")) or top.startswith("_"):
                continue
            target.writestr(info, source.read(info))
    return out


def is_pure(wheel: Path) -> bool:
    return wheel.name.endswith("-none-any.whl")


def distribution(wheel: Path) -> str:
    return re.sub(r"[-_.]+", "-", wheel.name.split("-", 1)[0]).lower()


def build(out: Path, tags: tuple[str, ...], requirements: Path) -> dict:
    """Download every tag's wheels into a fresh ``out`` (replaced whole at the end); the manifest."""
    with_deps, no_deps = pins(requirements, WITH_DEPS), pins(requirements, NO_DEPS)
    partial = out.with_name(out.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    (partial / "py3").mkdir(parents=True)
    with tempfile.TemporaryDirectory(prefix="gpu_deps_") as staging:
        per_tag: dict[str, list[Path]] = {}
        for tag in tags:
            print(f"gpu-check-deps: {tag}: {' '.join(with_deps)}", file=sys.stderr, flush=True)
            pip_download(tag, with_deps, Path(staging) / tag)
            per_tag[tag] = sorted((Path(staging) / tag).glob("*.whl"))
        pip_download(tags[0], no_deps, Path(staging) / "no-deps", no_deps=True)
        shared = set.intersection(*({w.name for w in wheels if is_pure(w)} for wheels in per_tag.values()))
        for wheel in sorted((Path(staging) / "no-deps").glob("*.whl")):
            shutil.copy2(wheel, partial / "py3" / wheel.name)
        for tag, wheels in per_tag.items():
            (partial / tag).mkdir()
            for wheel in wheels:
                if distribution(wheel) == PURE_ONLY:
                    name = "-".join(wheel.name.split("-")[:2]) + "-pure.zip"
                    if not (partial / "py3" / name).exists():
                        pure_python_copy(wheel, partial / "py3" / name)
                elif wheel.name in shared:
                    shutil.copy2(wheel, partial / "py3" / wheel.name)
                else:
                    shutil.copy2(wheel, partial / tag / wheel.name)
    files = {folder.name: sorted(f.name for f in folder.iterdir()) for folder in sorted(partial.iterdir())}
    total = sum(f.stat().st_size for f in partial.rglob("*") if f.is_file())
    manifest = {"format": FORMAT, "requirements": with_deps + [f"{r} (no dependencies)" for r in no_deps],
                "pure_python_only": [PURE_ONLY], "files": files, "bytes": total}
    if total > LIMIT_BYTES:
        raise SystemExit(f"gpu-check-deps: error: the bundle is {total / 2**20:.1f} MiB, over {LIMIT_BYTES / 2**20:.0f} MiB")
    (partial / "MANIFEST.json").write_text(json.dumps(manifest, indent=1) + "\n")
    shutil.rmtree(out, ignore_errors=True)
    partial.rename(out)
    return manifest


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=ROOT / ".gpu_deps", help="the bundle folder (replaced whole)")
    parser.add_argument("--tags", nargs="+", choices=TAGS, default=list(TAGS), help="target interpreters (default: all eight)")
    parser.add_argument("--requirements", type=Path, default=ROOT / "requirements.txt", help="where the versions are pinned")
    args = parser.parse_args(argv)
    manifest = build(args.out, tuple(args.tags), args.requirements)
    print(f"gpu-check-deps: {args.out}: {sum(len(v) for v in manifest['files'].values())} files, "
          f"{manifest['bytes'] / 2**20:.1f} MiB for {', '.join(args.tags)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
