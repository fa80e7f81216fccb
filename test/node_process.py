"""perception_node in a process of its own, for tests: the stand-ins when asked, and what the process imported.

    python test/node_process.py --modules-out FILE [--tensorrt VERSION] --ros-args ...

``--tensorrt VERSION`` puts the TensorRT double of that version (programmed to build and run engines,
``trt_double.program_onnx_engines``) and the CUDA stand-in (``cuda_double.py``) in ``sys.modules`` as
``tensorrt`` and ``cuda.bindings.runtime`` before the node starts. When the node exits (SIGINT), the
sorted names of every module in ``sys.modules`` are written to FILE as JSON. Everything from
``--ros-args`` on goes to the node unchanged.
"""
from __future__ import annotations

import argparse
import atexit
import json
import sys
from pathlib import Path


def main() -> int:
    own, node_args = (sys.argv[1:sys.argv.index("--ros-args")], sys.argv[sys.argv.index("--ros-args"):]) if "--ros-args" in sys.argv else (sys.argv[1:], [])
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], allow_abbrev=False)
    parser.add_argument("--modules-out", type=Path, required=True, help="JSON file that receives the names in sys.modules at exit")
    parser.add_argument("--tensorrt", default=None, help="stand in TensorRT of this version (and the CUDA runtime)")
    args = parser.parse_args(own)
    atexit.register(lambda: args.modules_out.write_text(json.dumps(sorted(sys.modules))))
    if args.tensorrt:
        sys.path.insert(0, str(Path(__file__).resolve().parent))
        from cuda_double import REAL_MODULE, FakeCudart
        from trt_double import FakeTensorRT, program_onnx_engines

        cudart = FakeCudart()
        sys.modules[REAL_MODULE] = cudart
        sys.modules["tensorrt"] = program_onnx_engines(FakeTensorRT(args.tensorrt), cudart)  # type: ignore[assignment]
    from mtl_perception.ros.node import main as node_main

    return node_main([sys.argv[0], *node_args])


if __name__ == "__main__":
    sys.exit(main())
