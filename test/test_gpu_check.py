"""benchmarks/gpu_check.py as a bare CUDA machine runs it: a fresh ``python -I -S`` process that can import only the
standard library, the project's ``src`` and what PyTorch, onnx, onnxruntime, numpy and OpenCV install (their
requirements' closure, read from this environment's package metadata): no ROS wheels, no TensorRT, no pydantic,
no onnxconverter-common. Every stdout line must be JSON, each row's as soon as it ends; the budget stops a row's
latency loop inside the row. With the bundle of ``make gpu-check-deps`` (``.gpu_deps/``) for this interpreter,
gpu_check and the imports of its GPU rows run from the bundle alone; without it those tests are skipped (``make
test`` downloads nothing)."""
from __future__ import annotations

import importlib
import importlib.util
import io
import json
import re
import shutil
import subprocess
import sys
import sysconfig
import tempfile
import time
import zipfile
from importlib import metadata
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "benchmarks" / "gpu_check.py"
BARE_MACHINE = ("torch", "onnx", "onnxruntime", "numpy", "opencv-python", "opencv-python-headless")
ROWS = 16
RUNNER = '''
import json, os, runpy, sys
from importlib.machinery import PathFinder
allowed = set(json.loads(sys.argv[1]))
sys.path[:0] = json.loads(sys.argv[2])
# folders of the allowed packages: a module an allowed package puts on sys.path itself (onnxruntime.transformers
# adds its own folder, whose modules then import as top-level names) is part of that package
inside = tuple(os.path.join(folder, top) + os.sep for folder in sys.path for top in allowed)

class BareMachine:
    """Only the standard library, the allowed top-level modules and the modules inside them import."""

    def find_spec(self, name, path=None, target=None):
        top = name.partition(".")[0]
        if top in allowed or top in sys.stdlib_module_names or top in sys.builtin_module_names or top.startswith("_sysconfigdata"):
            return None
        if path is None and name == top:
            spec = PathFinder.find_spec(name)
            if spec is not None and (spec.origin or "").startswith(inside):
                return None
        raise ModuleNotFoundError(f"No module named {top!r} (not on the bare GPU machine)", name=top)

sys.meta_path.insert(0, BareMachine())
sys.argv = [sys.argv[3], *sys.argv[4:]]
try:
    runpy.run_path(sys.argv[0], run_name="__main__")
finally:  # where each top-level module came from, the last stderr line
    origins = {name: getattr(module, "__file__", None) for name, module in list(sys.modules.items()) if "." not in name}
    print("MODULES " + json.dumps(origins), file=sys.stderr, flush=True)
'''


def _normal(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def bare_machine_modules() -> set[str]:
    """Top-level modules of the distributions BARE_MACHINE names and everything they require (no extras)."""
    from packaging.requirements import Requirement

    seen: set[str] = set()
    todo = list(BARE_MACHINE)
    while todo:
        name = todo.pop()
        try:
            dist = metadata.distribution(name)
        except metadata.PackageNotFoundError:
            continue
        if _normal(dist.metadata["Name"]) in seen:
            continue
        seen.add(_normal(dist.metadata["Name"]))
        for text in dist.requires or []:
            requirement = Requirement(text)
            if requirement.marker is None or requirement.marker.evaluate({"extra": ""}):
                todo.append(requirement.name)
    modules = {top for top, dists in metadata.packages_distributions().items() if any(_normal(d) in seen for d in dists)}
    return modules | {"mtl_perception"}


def test_the_bare_machine_has_no_ros_tensorrt_or_project_requirements():
    modules = bare_machine_modules()
    assert {"torch", "onnx", "onnxruntime", "numpy", "cv2", "mtl_perception"} <= modules
    assert not modules & {"rclpy", "sensor_msgs", "rosidl_runtime_py", "tensorrt", "pydantic", "yaml", "onnxconverter_common", "tqdm"}


# the project's own requirements that its model-file reader imports (pure Python but for pydantic_core)
PROJECT_CORE = ("pydantic", "pydantic_core", "annotated_types", "typing_inspection", "yaml")


def run_bare(work: Path, extra: tuple[str, ...] = (), options: tuple[str, ...] = ("--no-bundle",)) -> tuple[subprocess.CompletedProcess, float]:
    """gpu_check in a fresh bare-machine process (plus the ``extra`` top-level modules) on small sizes."""
    path = [str(ROOT / "src"), sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]]
    modules = sorted(bare_machine_modules() | set(extra))
    command = [sys.executable, "-I", "-S", "-c", RUNNER, json.dumps(modules), json.dumps(path), str(SCRIPT),
               "--camera", "120x160", "--iters", "3", "--calib-frames", "2", "--budget-s", "300", "--cache-dir", str(work), *options]
    started = time.monotonic()
    done = subprocess.run(command, cwd=work, capture_output=True, text=True, timeout=240)
    return done, time.monotonic() - started


def json_lines(done: subprocess.CompletedProcess) -> tuple[dict, list[dict], dict]:
    assert done.returncode == 0, done.stderr[-3000:]
    records = [json.loads(line) for line in done.stdout.splitlines()]  # every line is JSON
    header, rows, summary = records[0]["gpu_check"], records[1:-1], records[-1]["summary"]
    assert header["onnxruntime"] and header["torch"] and header["providers"] and header["machine"] and header["bundle"]["tag"]
    for row in rows:
        assert set(row) == {"name", "status", "detail", "seconds"} and row["detail"] and row["seconds"] >= 0, row
    return header, rows, summary


def test_gpu_check_without_the_projects_requirements_says_so_in_one_row(tmp_path):
    done, _ = run_bare(tmp_path)
    _, rows, summary = json_lines(done)
    assert [(r["name"], r["status"]) for r in rows] == [("setup", "not available here")]
    assert "needs the Python module 'pydantic'" in rows[0]["detail"] and summary["not available here"] == 1


def module_origins(done: subprocess.CompletedProcess) -> dict[str, str | None]:
    """The file of every top-level module the bare process imported (the runner's last stderr line)."""
    last = done.stderr.rstrip().splitlines()[-1]
    assert last.startswith("MODULES "), done.stderr[-2000:]
    return json.loads(last[len("MODULES "):])


def load_gpu_check():
    spec = importlib.util.spec_from_file_location("gpu_check_under_test", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up while they are made
    spec.loader.exec_module(module)
    return module


def bundle_modules(files: list[Path]) -> set[str]:
    """The top-level modules in the bundle's wheels and zips."""
    names = set()
    for file in files:
        with zipfile.ZipFile(file) as archive:
            names |= {n.split("/", 1)[0].removesuffix(".py") for n in archive.namelist()}
    return {n for n in names if not n.endswith(".dist-info")}


BUNDLE_FILES = load_gpu_check().bundle_files()
needs_bundle = pytest.mark.skipif(not BUNDLE_FILES, reason="no bundle for this interpreter in .gpu_deps/: `make gpu-check-deps` "
                                  "downloads it (make test does not)")


def test_gpu_check_on_a_bare_machine_writes_one_json_line_per_row(tmp_path):
    done, seconds = run_bare(tmp_path, PROJECT_CORE)
    _, rows, summary = json_lines(done)
    assert_bare_rows(rows, summary, seconds)


@needs_bundle
def test_gpu_check_runs_from_the_bundle_alone(tmp_path):
    modules = bundle_modules(BUNDLE_FILES)
    assert {"pydantic", "pydantic_core", "yaml", "typing_extensions", "annotated_types", "typing_inspection", "onnxconverter_common"} <= modules
    done, seconds = run_bare(tmp_path, tuple(modules), options=())
    header, rows, summary = json_lines(done)
    bundle = header["bundle"]
    assert bundle["used"] and bundle["files"] == [f.name for f in BUNDLE_FILES], bundle
    assert_bare_rows(rows, summary, seconds)
    origins = module_origins(done)
    assert {"pydantic", "pydantic_core", "yaml"} <= set(origins)
    for name in modules & set(origins):
        assert origins[name].startswith(bundle["path"]), (name, origins[name])
    assert not Path(bundle["path"]).exists(), "the unpacked bundle is removed at exit"


# What the rows that need a GPU import and do before their first CUDA call, run on the CPU (gpu_check's own torch
# and precision-file steps): on the GPU machine these must find every module in the bundle.
GPU_ROW_STEPS = '''
import importlib.util, os, sys
from pathlib import Path
script, work = Path(sys.argv[1]), Path(sys.argv[2])
spec = importlib.util.spec_from_file_location("gpu_check", script)
gpu_check = importlib.util.module_from_spec(spec)
sys.modules["gpu_check"] = gpu_check
spec.loader.exec_module(gpu_check)
assert gpu_check.use_bundle()["used"]
import numpy as np
from mtl_perception.config import load_config
from mtl_perception.inference.backends import create_backend
from mtl_perception.inference.export import save_untrained_checkpoint
from mtl_perception.inference.frame_pipeline import FramePipeline
from mtl_perception.inference.model_file import read_onnx_metadata
from mtl_perception.inference.precision import CalibrationSpec, make_precision_file
from mtl_perception.paths import CACHE_ENV

os.environ[CACHE_ENV] = str(work)  # the cache root: precision files in its precision/
model = gpu_check.ROOT / "models" / "default.onnx"
meta = read_onnx_metadata(model)
cfg = load_config(str(gpu_check.ROOT / "config" / "train" / "default.yaml"), [])
checkpoint = save_untrained_checkpoint(work / "random.pt", cfg, {"class_names": meta.class_names, "palette": meta.palette,
                                                                  "focal_length_px": meta.focal_length_px})
frame = gpu_check.validation_frames(meta, 1)[0]
print("torch", sorted(create_backend("torch", checkpoint, device="cpu").infer(frame)))
pipeline = FramePipeline(checkpoint, "torch", {"device": "cpu", "precision": "fp32"}, cache_dir=work / "deploy")
print("pipeline", pipeline.run(gpu_check.camera_frames(60, 80, 1)[0], "rgb8", ("depth", "labels")).out_size)
pipeline.close()
print("fp16", make_precision_file(model, "fp16", None, None).path.name)
print("int8", make_precision_file(model, "int8", None, CalibrationSpec(None, None, 2, "letterbox")).path.name)
'''


@needs_bundle
def test_the_gpu_rows_steps_import_from_the_bundle_alone(tmp_path):
    steps = tmp_path / "steps.py"
    steps.write_text(GPU_ROW_STEPS)
    path = [str(ROOT / "src"), sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]]
    modules = sorted(bare_machine_modules() | bundle_modules(BUNDLE_FILES))
    done = subprocess.run([sys.executable, "-I", "-S", "-c", RUNNER, json.dumps(modules), json.dumps(path), str(steps), str(SCRIPT), str(tmp_path)],
                          cwd=tmp_path, capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stderr[-3000:]
    lines = dict(line.split(" ", 1) for line in done.stdout.splitlines())
    assert lines["torch"] == "['depth', 'normals', 'semantic']" and lines["pipeline"] == "(60, 80)"
    assert "fp16" in lines["fp16"] and "int8" in lines["int8"] and lines["fp16"].endswith(".onnx")
    assert module_origins(done)["onnxconverter_common"].startswith(tempfile.gettempdir())


def test_the_bundle_of_this_interpreter_is_unpacked_first_on_the_path(tmp_path, monkeypatch):
    gpu_check = load_gpu_check()
    tag = gpu_check.bundle_tag()
    assert re.fullmatch(r"cp3\d+-[a-z0-9_]+", tag)
    root = tmp_path / "bundle"
    for folder, module in (("py3", "bundle_pure_probe"), (tag, "bundle_tag_probe"), ("cp39-other", "bundle_other_probe")):
        (root / folder).mkdir(parents=True)
        with zipfile.ZipFile(root / folder / f"{module}-1.0-py3-none-any.whl", "w") as archive:
            archive.writestr(f"{module}/__init__.py", f"WHERE = {folder!r}\n")
            archive.writestr(f"{module}-1.0.dist-info/METADATA", "Name: probe\n")
    monkeypatch.setattr(sys, "path", list(sys.path))
    absent = gpu_check.use_bundle(tmp_path / "absent")
    assert not absent["used"] and absent["tag"] == tag and "make gpu-check-deps" in absent["reason"]
    info = gpu_check.use_bundle(root)
    try:
        assert info["used"] and info["files"] == ["bundle_pure_probe-1.0-py3-none-any.whl", "bundle_tag_probe-1.0-py3-none-any.whl"]
        assert sys.path[0] == info["path"]
        assert importlib.import_module("bundle_pure_probe").WHERE == "py3" and importlib.import_module("bundle_tag_probe").WHERE == tag
        assert not (Path(info["path"]) / "bundle_other_probe").exists()
    finally:
        for name in ("bundle_pure_probe", "bundle_tag_probe"):
            sys.modules.pop(name, None)
        shutil.rmtree(info["path"], ignore_errors=True)


def load_tool():
    spec = importlib.util.spec_from_file_location("gpu_deps_under_test", ROOT / "tools" / "gpu_deps.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_bundle_tool_pins_from_requirements_and_strips_pyyaml_to_python(tmp_path):
    tool = load_tool()
    assert len(tool.TAGS) == 8 and {"cp310-x86_64", "cp313-aarch64"} <= set(tool.TAGS)
    pinned = tool.pins(ROOT / "requirements.txt", tool.WITH_DEPS + tool.NO_DEPS)
    assert [p.split("==")[0].lower() for p in pinned] == ["pydantic", "pyyaml", "onnxconverter-common"]
    with pytest.raises(ValueError, match="pins no version of nothing-such"):
        tool.pins(ROOT / "requirements.txt", ("nothing-such",))
    wheel = tmp_path / "pyyaml-6.0-cp312-cp312-manylinux_2_17_x86_64.whl"
    with zipfile.ZipFile(wheel, "w") as archive:
        for name in ("yaml/__init__.py", "yaml/_yaml.cpython-312-x86_64-linux-gnu.so", "_yaml/__init__.py",
                     "pyyaml-6.0.dist-info/METADATA", "pyyaml-6.0.dist-info/RECORD"):
            archive.writestr(name, "x")
    with zipfile.ZipFile(tool.pure_python_copy(wheel, tmp_path / "pure.zip")) as archive:
        assert archive.namelist() == ["yaml/__init__.py", "pyyaml-6.0.dist-info/METADATA"]


def assert_bare_rows(rows: list[dict], summary: dict, seconds: float) -> None:
    """Every row of a bare CPU machine: the three ONNX Runtime CPU rows ran, every other one is not available."""
    assert len(rows) == ROWS and len({r["name"] for r in rows}) == ROWS
    assert all(r["status"] in ("ran", "not available here") for r in rows), rows
    status = {r["name"]: r["status"] for r in rows}
    detail = {r["name"]: r["detail"] for r in rows}
    for name in ("onnxruntime cpu fp32 network", "onnxruntime cpu fp32 deploy graph", "batched cameras, onnxruntime cpu fp32 deploy graph"):
        assert status[name] == "ran" and "median" in detail[name], (name, detail[name])
    assert "N=4: one call median" in detail["batched cameras, onnxruntime cpu fp32 deploy graph"]
    assert re.search(r"120x160 rgb8 camera: median [\d.]+ ms", detail["onnxruntime cpu fp32 deploy graph"])
    assert "no CUDAExecutionProvider" in detail["onnxruntime cuda fp32 network"]
    assert "TensorRT" in detail["tensorrt fp16 network"] and "TensorRT" in detail["batched cameras, tensorrt fp16 deploy graph"]
    import torch

    if not torch.cuda.is_available():
        assert "sees no CUDA device" in detail["torch cuda fp16 network"]
    assert summary["ran"] == 3 and summary["not available here"] == ROWS - 3 and summary["failed"] == 0
    assert seconds < 60, f"the bare-machine run took {seconds:.0f} s"


def test_rows_are_written_as_they_end_and_the_budget_stops_a_row_inside():
    gpu_check = load_gpu_check()
    out = io.StringIO()
    check = gpu_check.Check(budget_s=0.3, out=out)
    check.row("first", lambda: "done", needs_s=0)
    seen_when_second_ran = []

    def slow() -> str:
        seen_when_second_ran.append(out.getvalue())
        return gpu_check.time_calls(lambda _: time.sleep(0.05), [None], 1000, check)

    check.row("second", slow, needs_s=0.1)
    assert json.loads(seen_when_second_ran[0])["name"] == "first", "the first row's line is out before the second row starts"
    second = json.loads(out.getvalue().splitlines()[1])
    assert second["status"] == "ran" and "of 1000 calls: the budget ran out" in second["detail"] and second["seconds"] < 1.0

    out = io.StringIO()
    check = gpu_check.Check(budget_s=30, out=out)

    def partial() -> str:
        check.note("first start built in 1.0 s")
        check.ensure(60, "the second start")
        return "never"

    check.row("third", partial, needs_s=0)
    check.row("fourth", lambda: "never", needs_s=60)
    third, fourth = (json.loads(line) for line in out.getvalue().splitlines())
    assert third["status"] == "budget spent" and third["detail"].startswith("first start built in 1.0 s; then: the time budget ran out")
    assert fourth["status"] == "skipped" and "this row needs about 60 s" in fourth["detail"]


def test_a_missing_library_is_not_available_and_a_missing_project_module_a_failure():
    gpu_check = load_gpu_check()
    out = io.StringIO()
    check = gpu_check.Check(budget_s=60, out=out)

    def needs(name):
        def body():
            raise ModuleNotFoundError(f"No module named '{name}'", name=name)
        return body

    check.row("library", needs("pydantic"))
    check.row("project", needs("mtl_perception.inference.nothing"))
    library, project = (json.loads(line) for line in out.getvalue().splitlines())
    assert library["status"] == "not available here" and library["detail"] == "needs the Python module 'pydantic', which is not installed"
    assert project["status"] == "failed"
