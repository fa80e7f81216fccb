"""Safe loading: a source scan for code-running loaders and shell commands, and the path checks.

The scan parses every Python file of the package, its tests, benchmarks, tools and launch files and
fails on: ``torch.load`` without ``weights_only=True``; pickle-family modules; ``eval``/``exec``/
``compile``; ``os.system``/``os.popen``/``os.exec*``/``os.spawn*``; ``shell=True`` or a command string
given to ``subprocess``; ``yaml.load``/``unsafe_load``/``full_load`` or unsafe loader classes;
``numpy.load(allow_pickle=True)``; ``torch.jit.load``; and a TensorRT engine deserialised anywhere
but the TensorRT backend (which takes engines only from the package's own cache).
"""
from __future__ import annotations

import ast
import os
import stat
import threading
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCANNED = [ROOT / "src", ROOT / "test", ROOT / "benchmarks", ROOT / "tools", ROOT / "launch"]
PICKLE_MODULES = {"pickle", "cPickle", "_pickle", "dill", "marshal", "shelve", "joblib", "cloudpickle"}
SUBPROCESS_CALLS = {"run", "Popen", "call", "check_call", "check_output", "getoutput", "getstatusoutput"}
ENGINE_LOADER = ROOT / "src" / "mtl_perception" / "inference" / "backends" / "tensorrt_backend.py"


def python_files() -> list[Path]:
    return sorted(p for folder in SCANNED if folder.is_dir() for p in folder.rglob("*.py") if "__pycache__" not in p.parts)


def dotted(node: ast.AST) -> str:
    """'a.b.c' for a Name/Attribute chain, '' otherwise."""
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if isinstance(node, ast.Name):
        parts.append(node.id)
        return ".".join(reversed(parts))
    return ""


def keyword(call: ast.Call, name: str) -> ast.AST | None:
    return next((k.value for k in call.keywords if k.arg == name), None)


def is_true(node: ast.AST | None) -> bool:
    return isinstance(node, ast.Constant) and node.value is True


def findings(path: Path) -> list[str]:
    """Every unsafe construct in one file, as 'file:line: what'."""
    tree = ast.parse(path.read_text(), str(path))
    where = path.relative_to(ROOT)
    found = []
    for node in ast.walk(tree):
        line = f"{where}:{getattr(node, 'lineno', 0)}"
        if isinstance(node, ast.Import):
            found += [f"{line}: imports {a.name}" for a in node.names if a.name.split(".")[0] in PICKLE_MODULES]
        elif isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] in PICKLE_MODULES:
            found.append(f"{line}: imports from {node.module}")
        elif isinstance(node, ast.Attribute) and dotted(node) in ("yaml.Loader", "yaml.UnsafeLoader", "yaml.FullLoader", "yaml.CLoader"):
            found.append(f"{line}: {dotted(node)} (use yaml.safe_load)")
        elif isinstance(node, ast.Call):
            name = dotted(node.func)
            tail = name.rsplit(".", 1)[-1]
            if name == "torch.load" and not is_true(keyword(node, "weights_only")):
                found.append(f"{line}: torch.load without weights_only=True")
            elif name in ("eval", "exec", "compile", "__import__"):
                found.append(f"{line}: {name}()")
            elif name in ("os.system", "os.popen") or name.startswith(("os.exec", "os.spawn")):
                found.append(f"{line}: {name}()")
            elif name in ("yaml.load", "yaml.load_all", "yaml.unsafe_load", "yaml.full_load", "yaml.unsafe_load_all"):
                found.append(f"{line}: {name}() (use yaml.safe_load)")
            elif name in ("np.load", "numpy.load") and is_true(keyword(node, "allow_pickle")):
                found.append(f"{line}: {name}(allow_pickle=True)")
            elif name in ("torch.jit.load", "torch.package.PackageImporter"):
                found.append(f"{line}: {name}() runs code from the file")
            elif name.startswith("subprocess.") and tail in SUBPROCESS_CALLS:
                if is_true(keyword(node, "shell")) or tail in ("getoutput", "getstatusoutput"):
                    found.append(f"{line}: {name} through a shell")
                elif node.args and isinstance(node.args[0], (ast.Constant, ast.JoinedStr, ast.BinOp)):
                    found.append(f"{line}: {name} with a command string (give an argument list)")
            elif tail == "deserialize_cuda_engine" and path != ENGINE_LOADER:
                found.append(f"{line}: a TensorRT engine deserialised outside the TensorRT backend")
    return found


def test_no_code_running_loaders_or_shell_commands() -> None:
    files = python_files()
    assert len(files) > 50 and ENGINE_LOADER in files
    problems = [f for path in files for f in findings(path)]
    assert not problems, "unsafe constructs:\n" + "\n".join(problems)


def test_the_scan_catches_what_it_looks_for(tmp_path: Path) -> None:
    """The checker itself: each forbidden construct is reported, the safe forms are not."""
    bad = tmp_path / "bad.py"
    bad.write_text(
        "import pickle\nimport torch, yaml, os, subprocess, numpy as np\n"
        "torch.load('a.pt')\ntorch.load('a.pt', weights_only=False)\neval('1')\nos.system('ls')\n"
        "subprocess.run('ls -l', shell=True)\nsubprocess.run(f'ls {x}')\nyaml.load(s, Loader=yaml.Loader)\n"
        "np.load('a.npy', allow_pickle=True)\nruntime.deserialize_cuda_engine(data)\n"
    )
    good = tmp_path / "good.py"
    good.write_text("import torch, yaml, subprocess\ntorch.load('a.pt', weights_only=True)\nyaml.safe_load(s)\n"
                    "subprocess.run(['ls', '-l'], check=True)\nmodel.eval()\n")
    global ROOT
    saved, ROOT = ROOT, tmp_path
    try:
        assert len(findings(bad)) == 11, findings(bad)
        assert findings(good) == []
    finally:
        ROOT = saved


# ---------------------------------------------------------------------------------------------- paths
def _returns_quickly(function, *args) -> BaseException | None:
    """Run ``function(*args)`` in a thread; the exception it raised (None if none); fail if it blocks."""
    outcome: list[BaseException | None] = []

    def target() -> None:
        try:
            function(*args)
            outcome.append(None)
        except BaseException as exc:  # noqa: BLE001 - handed to the caller
            outcome.append(exc)

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join(5)
    assert outcome, f"{function.__name__} blocked on {args}"
    return outcome[0]


def test_model_paths_are_validated_before_any_backend_opens_them(tmp_path: Path) -> None:
    from mtl_perception.inference.backends import validate_model_path
    from mtl_perception.inference.model_file import ModelFileError

    fifo = tmp_path / "model.onnx"
    os.mkfifo(fifo)  # opening it for reading would block forever
    error = _returns_quickly(validate_model_path, "onnxruntime", fifo)
    assert isinstance(error, ModelFileError) and "not a regular file" in str(error)
    folder = tmp_path / "folder.onnx"
    folder.mkdir()
    with pytest.raises(ModelFileError, match="not a regular file"):
        validate_model_path("onnxruntime", folder)
    engine = tmp_path / "prebuilt.engine"
    engine.write_bytes(b"\x00" * 64)  # an engine from elsewhere is native code: only .onnx is accepted
    with pytest.raises(ModelFileError, match="reads .onnx files"):
        validate_model_path("tensorrt", engine)
    real = tmp_path / "real.onnx"
    real.write_bytes(b"x")
    with pytest.raises(ModelFileError, match="reads .pt or .pth"):
        validate_model_path("torch", real)
    empty = tmp_path / "empty.onnx"
    empty.touch()
    with pytest.raises(ModelFileError, match="is empty"):
        validate_model_path("onnxruntime", empty)
    link = tmp_path / "link.onnx"
    link.symlink_to(real)
    assert validate_model_path("onnxruntime", link) == link


def test_palette_files_are_bounded_and_never_block(tmp_path: Path) -> None:
    from mtl_perception.ros.parameters import PALETTE_FILE_MAX_BYTES, ParameterError, parse_palette

    fifo = tmp_path / "palette.yaml"
    os.mkfifo(fifo)
    error = _returns_quickly(parse_palette, str(fifo))
    assert isinstance(error, ParameterError) and "not found" in str(error)
    huge = tmp_path / "huge.yaml"
    huge.write_bytes(b"#" * (PALETTE_FILE_MAX_BYTES + 1))
    with pytest.raises(ParameterError, match="more than a palette needs"):
        parse_palette(str(huge))
    attack = tmp_path / "attack.yaml"
    attack.write_text("!!python/object/apply:os.system ['touch pwned']\n")
    with pytest.raises(ParameterError):
        parse_palette(str(attack))  # yaml.safe_load refuses Python tags


def test_engines_load_only_from_a_cache_no_one_else_can_write(tmp_path: Path) -> None:
    from mtl_perception.inference.engine_cache import EngineCache, EngineCacheError, EngineKey

    key = EngineKey("ab" * 32, "10.3.0", "Orin", "8.7", "fp16", (1, 3, 64, 96))
    cache = EngineCache(tmp_path / "engines")
    cache.store(key, "model", b"engine bytes")
    assert stat.S_IMODE(cache.root.stat().st_mode) == 0o700
    assert cache.lookup(key).status == "hit"
    cache.root.chmod(0o777)  # anyone could have swapped the engine
    with pytest.raises(EngineCacheError, match="writable by everyone"):
        cache.lookup(key)
    cache.root.chmod(0o700)
    engine_path, _ = cache.paths(key, "model")
    engine_path.chmod(0o666)
    with pytest.raises(EngineCacheError, match="native code"):
        cache.lookup(key)


def test_checkpoints_holding_code_are_refused(tmp_path: Path) -> None:
    import torch

    from bad_input_corpus import Payload
    from mtl_perception.training.checkpoint import CHECKPOINT_FORMAT, CheckpointError, load_checkpoint

    marker = tmp_path / "pwned"
    path = tmp_path / "attack.pt"
    torch.save({"format": CHECKPOINT_FORMAT, "model": Payload(str(marker))}, path)
    with pytest.raises(CheckpointError, match="could run code"):
        load_checkpoint(path)
    assert not marker.exists()


def test_oversized_images_are_rejected_before_any_pixel_buffer_is_allocated() -> None:
    """The corpus's enormous images (raw and forged JPEG/PNG headers) cost no memory to reject."""
    import tracemalloc

    from bad_input_corpus import MAX_PIXELS, node_cases, stamped
    from mtl_perception.inference.image_codec import ImageDecodeError, compressed_msg_to_array, image_msg_to_array

    cases = [c for c in node_cases() if c.expect == "exceeds the limit"]
    assert len(cases) >= 5
    for case in cases:
        message = case.build(stamped(1))
        decode = compressed_msg_to_array if case.kind == "compressed" else image_msg_to_array
        tracemalloc.start()
        try:
            with pytest.raises(ImageDecodeError, match="exceeds the limit"):
                decode(message, MAX_PIXELS)
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        assert peak < 256 * 1024, f"{case.name}: {peak} B allocated while rejecting it"
