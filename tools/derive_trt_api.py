"""Derive the TensorRT Python API name table from NVIDIA's ``tensorrt-cu12-bindings`` wheels.

Usage:
    .venv/bin/python tools/derive_trt_api.py [--wheel-dir DIR] [--download] [--out test/data/tensorrt_api.json]

The bindings wheel holds ``tensorrt_bindings/tensorrt.so``, a pybind11 module linked against the
TensorRT libraries (``libnvinfer.so.N``, ``libnvinfer_plugin.so.N``, ``libnvonnxparser.so.N``), which
are not installable here. Importing the module only *registers* its classes, enums and methods; it
calls into TensorRT when a function is used. So this tool compiles three empty stand-in libraries
exporting the handful of C entry points the module links to (every one returns NULL / 0), imports
the module in a subprocess against them, and records by introspection, for each class and enum, the
public names with their kind (method, property, enum value, class), the return type and parameter
names parsed from pybind11's signature line, the TensorRT version a docstring says the name was
deprecated in, every enum member's integer value (``int(member)``: pybind11 registers them at import),
and what the package's own ``nptype`` answers for each ``DataType`` (a NumPy type name, or None where
it raises TypeError). No TensorRT library code runs and no docstring text is kept: only names and those facts.

``--download`` fetches the wheels with ``pip download --no-deps`` (PyPI) into ``--wheel-dir``. The
table records each wheel's file name and SHA-256; ``test/test_inference_trt_api.py`` compares the
backend's use of TensorRT against it, and re-derives it when the wheels are in the cache.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

WHEEL_PACKAGE = "tensorrt-cu12-bindings"
VERSIONS = ("10.3.0", "10.13.0.35", "11.4.0.106")  # 10.3: JetPack 6 (Orin); 10.13: last 10.x tested; 11.4: JetPack 7.2.2+
TABLE_FORMAT = "mtl_perception.tensorrt_api/2"  # 2: enum values and nptype
DEFAULT_OUT = Path(__file__).resolve().parents[1] / "test" / "data" / "tensorrt_api.json"
DEFAULT_WHEEL_DIR = Path(os.environ.get("MTL_TRT_WHEEL_CACHE", "~/.cache/mtl_perception/trt_wheels")).expanduser()

# The C entry points tensorrt.so imports from the TensorRT libraries (see `nm -D --undefined-only`).
STUB_SOURCE = r"""
#include <stddef.h>
void* createInferBuilder_INTERNAL(void* a, int b) { return NULL; }
void* createInferRefitter_INTERNAL(void* a, void* b, int c) { return NULL; }
void* createInferRuntime_INTERNAL(void* a, int b) { return NULL; }
void* createNvOnnxParserRefitter_INTERNAL(void* a, void* b, int c) { return NULL; }
void* createNvOnnxParser_INTERNAL(void* a, void* b, int c) { return NULL; }
void* getBuilderPluginRegistry(int a) { return NULL; }
int getNvOnnxParserVersion(void) { return 0; }
void* getPluginRegistry(void) { return NULL; }
int initLibNvInferPlugins(void* a, const char* b) { return 0; }
"""
STUB_LIBRARIES = ("nvinfer", "nvinfer_plugin", "nvonnxparser")

# Runs inside the subprocess that imports the bindings; prints the table of one version as JSON.
INTROSPECT = r'''
import enum, inspect, json, re, sys
import tensorrt_bindings as trt

SIG = re.compile(r"^(?:\d+\.\s+)?(\w+)\((.*)\)\s*->\s*([\w.\[\], ]+)\s*$")
DEPRECATED_IN = re.compile(r"[Dd]eprecated in TensorRT\s+(\d+\.\d+)")
DEPRECATED = re.compile(r"\[DEPRECATED\]|[Dd]eprecated in TensorRT")

def short(type_name):
    return type_name.strip().replace("tensorrt_bindings.tensorrt.", "").replace("tensorrt.tensorrt.", "")

def deprecated_in(doc):
    """The version a docstring deprecates its subject in: a line that *starts* with the marker.

    A marker inside a sentence ("... use X instead ([DEPRECATED] ...)") is about another name.
    """
    if not doc:
        return None
    for line in doc.splitlines():
        text = line.strip()
        if text.startswith("[DEPRECATED]") or text.startswith("Deprecated in TensorRT") or text.startswith("DEPRECATED"):
            m = DEPRECATED_IN.search(text)
            return m.group(1) if m else "unknown"
    return None

def class_deprecated_in(doc):
    """Deprecation of a class itself: stated in its first paragraph (later ones describe members)."""
    text = (doc or "").split("Members:")[0].split(":ivar")[0].strip()
    return deprecated_in(text.split("\n\n")[0])

def signatures(doc, name):
    found = []
    for line in (doc or "").splitlines():
        line = line.strip()
        m = SIG.match(line)
        if m and m.group(1) == name:
            params = []
            for part in re.split(r",\s*(?![^\[\(]*[\]\)])", m.group(2)):
                part = part.strip()
                if not part or part.startswith("self") or part.startswith("*"):
                    continue
                params.append(part.split(":")[0].split("=")[0].strip())
            found.append({"params": params, "returns": short(m.group(3))})
    return found

def enum_member_docs(cls):
    """NAME -> its paragraph in a pybind11 enum's 'Members:' list."""
    doc = cls.__doc__ or ""
    out, current = {}, None
    for line in doc.splitlines():
        m = re.match(r"^  (\w+) : (.*)$", line)
        if m:
            current = m.group(1)
            out[current] = m.group(2)
        elif current is not None:
            out[current] += "\n" + line
    return out

def is_enum(cls):
    return hasattr(cls, "__members__") and isinstance(getattr(cls, "__members__"), dict)

def describe_class(cls):
    entry = {"enum": is_enum(cls), "deprecated": class_deprecated_in(cls.__doc__), "members": {}}
    member_docs = enum_member_docs(cls) if entry["enum"] else {}
    for name in sorted(dir(cls)):
        if name.startswith("_") and name not in ("__init__", "__call__"):
            continue
        try:
            raw = inspect.getattr_static(cls, name)
        except AttributeError:
            continue
        value = getattr(cls, name, None)
        if entry["enum"] and name in cls.__members__:
            entry["members"][name] = {"kind": "enum_value", "value": int(cls.__members__[name]),
                                      "deprecated": deprecated_in(member_docs.get(name))}
            continue
        if isinstance(raw, property):
            fget_doc = raw.fget.__doc__ if raw.fget else ""
            m = re.search(r"->\s*([\w.\[\], ]+)", fget_doc or "")
            entry["members"][name] = {"kind": "property", "writable": raw.fset is not None,
                                      "returns": short(m.group(1)) if m else None, "deprecated": deprecated_in(raw.__doc__)}
        elif inspect.isclass(value):
            entry["members"][name] = {"kind": "class", "type": short(value.__qualname__), "deprecated": class_deprecated_in(value.__doc__)}
        elif callable(value):
            sigs = signatures(getattr(value, "__doc__", ""), name)
            entry["members"][name] = {"kind": "method", "overloads": sigs, "deprecated": deprecated_in(getattr(value, "__doc__", ""))}
        elif type(value).__module__ and type(value).__module__.startswith("tensorrt") and is_enum(type(value)):
            entry["members"][name] = {"kind": "enum_value", "type": short(type(value).__qualname__), "value": int(value), "deprecated": None}
        else:
            entry["members"][name] = {"kind": "attribute", "deprecated": None}
    return entry

module, classes = {}, {}
for name in sorted(dir(trt)):
    if name.startswith("_") and name != "__version__":
        continue
    value = getattr(trt, name)
    if inspect.ismodule(value):
        continue
    if inspect.isclass(value) and (type(value).__module__ or "").startswith("pybind11") or inspect.isclass(value) and value.__module__.startswith("tensorrt"):
        module[name] = "enum" if is_enum(value) else "class"
        classes[name] = describe_class(value)
    elif callable(value):
        sigs = signatures(getattr(value, "__doc__", ""), name)
        if not sigs and inspect.isfunction(value):  # a Python function of the package's __init__
            sigs = [{"params": list(inspect.signature(value).parameters), "returns": None}]
        module[name] = "function"
        classes.setdefault("<functions>", {"enum": False, "deprecated": None, "members": {}})["members"][name] = {
            "kind": "method", "overloads": sigs, "deprecated": deprecated_in(getattr(value, "__doc__", ""))}
    else:
        module[name] = "attribute"
def numpy_types():
    """DataType member -> the NumPy dtype name of what ``trt.nptype`` gives it (``numpy.dtype(...).name``: the same
    under NumPy 1 and 2, where ``bool_.__name__`` differs), or None where it raises TypeError."""
    import numpy

    found = {}
    for name, member in trt.DataType.__members__.items():
        try:
            found[name] = numpy.dtype(trt.nptype(member)).name
        except TypeError:
            found[name] = None
    return found

json.dump({"version": trt.__version__, "module": module, "classes": classes, "nptype": numpy_types()}, sys.stdout, sort_keys=True)
'''


def wheel_name(version: str, wheel_dir: Path) -> Path | None:
    found = sorted(wheel_dir.glob(f"tensorrt_cu12_bindings-{version}-*.whl"))
    return found[0] if found else None


def download(version: str, wheel_dir: Path) -> Path:
    wheel_dir.mkdir(parents=True, exist_ok=True)
    subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--quiet", f"{WHEEL_PACKAGE}=={version}", "-d", str(wheel_dir)], check=True)
    path = wheel_name(version, wheel_dir)
    if path is None:
        raise RuntimeError(f"pip download of {WHEEL_PACKAGE}=={version} left no wheel in {wheel_dir}")
    return path


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def build_stubs(folder: Path, major: int) -> None:
    """Compile the stand-in libraries lib<name>.so.<major> into ``folder``."""
    compiler = shutil.which("cc") or shutil.which("gcc")
    if compiler is None:
        raise RuntimeError("a C compiler (cc/gcc) is needed to build the stand-in TensorRT libraries")
    source = folder / "trt_stub.c"
    source.write_text(STUB_SOURCE)
    for lib in STUB_LIBRARIES:
        subprocess.run([compiler, "-shared", "-fPIC", "-o", str(folder / f"lib{lib}.so.{major}"), str(source)], check=True)


def introspect(wheel: Path) -> dict:
    """The name table of one bindings wheel (imported in a subprocess against stand-in libraries)."""
    version = wheel.name.split("-")[1]
    major = int(version.split(".")[0])
    with tempfile.TemporaryDirectory(prefix="trt_api_") as tmp:
        root = Path(tmp)
        with zipfile.ZipFile(wheel) as archive:
            archive.extractall(root / "pkg")
        (root / "stubs").mkdir()
        build_stubs(root / "stubs", major)
        env = dict(os.environ, PYTHONPATH=str(root / "pkg"), LD_LIBRARY_PATH=str(root / "stubs"))
        result = subprocess.run([sys.executable, "-c", INTROSPECT], env=env, capture_output=True, text=True, timeout=300, cwd=str(root))
        if result.returncode != 0:
            raise RuntimeError(f"importing {wheel.name} against stand-in libraries failed: {result.stderr[-2000:]}")
        table = json.loads(result.stdout)
    if table["version"] != version:
        raise RuntimeError(f"{wheel.name} reports version {table['version']}")
    return table


def derive(wheel_dir: Path, fetch: bool, versions: tuple[str, ...] = VERSIONS) -> dict:
    """The whole table for ``versions`` from wheels in ``wheel_dir`` (downloaded first when ``fetch``)."""
    wheels, tables = {}, {}
    for version in versions:
        path = wheel_name(version, wheel_dir)
        if path is None:
            if not fetch:
                raise FileNotFoundError(f"no {WHEEL_PACKAGE} {version} wheel in {wheel_dir}; pass --download")
            path = download(version, wheel_dir)
        wheels[version] = {"file": path.name, "sha256": sha256(path)}
        tables[version] = introspect(path)
    return {"format": TABLE_FORMAT, "derived_by": "tools/derive_trt_api.py", "package": WHEEL_PACKAGE, "wheels": wheels, "versions": tables}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--wheel-dir", type=Path, default=DEFAULT_WHEEL_DIR, help="folder holding (or receiving) the bindings wheels")
    parser.add_argument("--download", action="store_true", help="pip download the wheels that are missing from --wheel-dir")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="JSON table to write")
    args = parser.parse_args()
    table = derive(args.wheel_dir.expanduser(), args.download)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(table, sort_keys=True, separators=(",", ":")) + "\n")
    for version, info in table["wheels"].items():
        classes = table["versions"][version]["classes"]
        names = sum(len(c["members"]) for c in classes.values())
        print(f"{version}: {info['file']} sha256 {info['sha256'][:16]}..., {len(classes)} classes/enums, {names} member names")
    print(f"wrote {args.out} ({args.out.stat().st_size // 1024} KiB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
