"""ONNX Runtime backend: the default, CPU execution provider unless a GPU provider is asked for."""
from __future__ import annotations

import threading
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from mtl_perception.inference.backends.base import BackendError, TensorGraphBackend, check_graph_kind
from mtl_perception.inference.memory_budget import LARGE_FRAME_PIXELS
from mtl_perception.inference.metadata import INPUT_NAME
from mtl_perception.inference.model_file import REEXPORT_HINT, ModelFileError, metadata_from_props, static_batch_size, validate_io
from mtl_perception.inference.precision import ORT_CPU_DISABLED_OPTIMIZERS, PRECISION_KEY, check_int8_onnxruntime

PROVIDERS = {
    "cpu": "CPUExecutionProvider",
    "cuda": "CUDAExecutionProvider",
    "tensorrt": "TensorrtExecutionProvider",
}
PROVIDER_CHOICES = ("auto", *PROVIDERS)
GRAPH_OPTIMIZATION_LEVELS = ("disable", "basic", "extended", "all")
_SHARED_ARENA_LOCK = threading.Lock()
_shared_arena_registered = False


def use_shared_cpu_arena(ort: Any, options: Any) -> None:
    """Let a session take its CPU memory from one arena per process instead of its own.

    A deploy graph session per camera layout and batch size each kept its own arena, sized for its own
    activations (about 130 MB for a 640x480 camera here), so a node with four cameras held four. The
    node runs one graph at a time, so one shared arena (grown to the largest graph's need, and by what
    is asked for rather than in powers of two) serves them all.
    """
    global _shared_arena_registered
    with _SHARED_ARENA_LOCK:
        if not _shared_arena_registered:
            memory = ort.OrtMemoryInfo("Cpu", ort.OrtAllocatorType.ORT_ARENA_ALLOCATOR, 0, ort.OrtMemType.DEFAULT)
            ort.create_and_register_allocator(memory, ort.OrtArenaCfg({"arena_extend_strategy": 1}))  # kSameAsRequested
            _shared_arena_registered = True
    options.add_session_config_entry("session.use_env_allocators", "1")


def static_image_pixels(path: str | Path) -> int:
    """Camera pixels of one run of a deploy graph file (batch x height x width of its static image input); 0 for
    another graph or a file that does not parse (the session then reports it)."""
    import onnx

    from mtl_perception.inference.deploy_graph import IMAGE_INPUT

    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception:  # noqa: BLE001 - InferenceSession gives the damaged file its one-line error
        return 0
    for value in model.graph.input:
        dims = [d.dim_value for d in value.type.tensor_type.shape.dim]
        if value.name == IMAGE_INPUT and len(dims) == 4 and all(d > 0 for d in dims):
            return dims[0] * dims[1] * dims[2]
    return 0


def resolve_providers(provider: str, available: list[str]) -> list[str]:
    """Execution providers to request, most preferred first, always ending with CPU.

    ``auto`` takes CUDA when ONNX Runtime has it, else CPU; the TensorRT provider (which compiles
    engines on the first run, minutes on a Jetson) is used only when asked for by name.
    """
    if provider not in PROVIDER_CHOICES:
        raise ValueError(f"unknown onnxruntime provider '{provider}'; valid: {list(PROVIDER_CHOICES)}")
    cpu = PROVIDERS["cpu"]
    if provider == "auto":
        return ([PROVIDERS["cuda"]] if PROVIDERS["cuda"] in available else []) + [cpu]
    if provider == "cpu":
        return [cpu]
    wanted = PROVIDERS[provider]
    if wanted not in available:
        raise BackendError(
            f"onnxruntime provider '{provider}' ({wanted}) is not available in this onnxruntime build "
            f"(available: {available}); install onnxruntime-gpu or use provider 'cpu'"
        )
    chain = [wanted]
    if provider == "tensorrt" and PROVIDERS["cuda"] in available:
        chain.append(PROVIDERS["cuda"])
    return chain + [cpu]


def tensorrt_precision_flags(precision: str, fp16: bool) -> dict[str, str]:
    """The TensorRT provider's precision flags for a file of ``precision``: off for a precision file (see
    ``OnnxRuntimeBackend._provider_options``); ``trt_fp16_enable`` as ``fp16`` asks for an FP32 file."""
    return {"trt_fp16_enable": str(bool(fp16) and precision == "fp32"), "trt_int8_enable": "False"}


class OnnxRuntimeBackend(TensorGraphBackend):
    """Runs an exported model file with ONNX Runtime.

    provider: auto | cpu | cuda | tensorrt. graph_optimization: disable | basic | extended | all.
    intra_op_threads: threads inside an operator (0 = ONNX Runtime's default, one per physical core).
    tensorrt_cache_dir: the cache root whose ort_tensorrt/ holds the TensorRT provider's engines (provider 'tensorrt'
    only; ``paths.cache_dir``: None = $MTL_PERCEPTION_CACHE or ~/.cache/mtl_perception).
    graph: network (an exported model file) or deploy (a deploy graph composed from one).

    Session settings, measured for both graphs on the 2-core CPU (``benchmarks/deploy_profile.py --sessions``, figures in
    docs/node.md "Deploy-graph speed"): optimisation level ``all`` (its NCHWc convolutions make the network 1.5x faster
    than ``extended``, and the deploy graph gains with it), ONNX Runtime's default threads (one per core) for the deploy
    graph as for the network, the memory pattern on (no measurable difference), no spinning for the deploy graph.

    Memory of a deploy graph on the CPU: graphs of normal frames share one arena (``use_shared_cpu_arena``); a graph
    whose frames exceed ``memory_budget.LARGE_FRAME_PIXELS`` (an unusually large camera frame) runs without an arena, so
    that its activations and outputs go back to the system as they are released instead of staying in the shared arena
    for the life of the process. (The arena's ``memory.enable_memory_arena_shrinkage`` run option on large runs, tried
    first, kept more: a node held 1145 MB after a 3840x2160 frame with it, 848 MB without an arena, 1338 MB before;
    the outputs of a large run are still in use when the run ends, so its shrinkage cannot free them.)
    """

    name = "onnxruntime"

    def __init__(
        self,
        model_path: str | Path,
        provider: str = "auto",
        graph_optimization: str = "all",
        intra_op_threads: int = 0,
        inter_op_threads: int = 0,
        tensorrt_fp16: bool = False,
        tensorrt_cache_dir: str | Path | None = None,
        graph: str = "network",
    ) -> None:
        import onnxruntime as ort

        path = Path(model_path)
        if not path.is_file():
            raise ModelFileError(f"model file not found: {path}; {REEXPORT_HINT}, or point the setting at an existing file")
        if graph_optimization not in GRAPH_OPTIMIZATION_LEVELS:
            raise ValueError(f"unknown graph optimisation level '{graph_optimization}'; valid: {list(GRAPH_OPTIMIZATION_LEVELS)}")
        if intra_op_threads < 0 or inter_op_threads < 0:
            raise ValueError("intra_op_threads and inter_op_threads must be >= 0 (0 = onnxruntime default)")
        providers = resolve_providers(provider, ort.get_available_providers())
        options = ort.SessionOptions()
        options.graph_optimization_level = {
            "disable": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
            "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
            "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
            "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
        }[graph_optimization]
        options.intra_op_num_threads = intra_op_threads
        options.inter_op_num_threads = inter_op_threads
        options.log_severity_level = 3
        if graph == "deploy":  # the node's per-frame graph: idle inference threads must not spin on the cores its other stage needs
            options.add_session_config_entry("session.intra_op.allow_spinning", "0")
            if providers == [PROVIDERS["cpu"]] and static_image_pixels(path) > LARGE_FRAME_PIXELS:
                options.enable_cpu_mem_arena = False  # an unusually large frame: its memory is returned, not kept
            elif providers == [PROVIDERS["cpu"]]:  # one activation arena for all of a node's graphs (cameras, batch sizes)
                use_shared_cpu_arena(ort, options)
        provider_options = [self._provider_options(p, tensorrt_fp16, tensorrt_cache_dir, path) for p in providers]
        try:
            self.session = ort.InferenceSession(str(path), options, providers=providers, provider_options=provider_options,
                                                disabled_optimizers=list(ORT_CPU_DISABLED_OPTIMIZERS))
        except Exception as exc:  # onnxruntime raises InvalidProtobuf, Fail, InvalidGraph, ... with a message
            first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise ModelFileError(f"model file {path} cannot be loaded: it is truncated or corrupt, or not an ONNX model ({first_line[:200]}); {REEXPORT_HINT}") from None
        # A provider whose CUDA / cuDNN / TensorRT libraries fail to load only logs a warning, and the session
        # silently runs on the next one (the CPU): compare what the session got with what was asked for.
        self.requested_providers = list(providers)
        got = self.session.get_providers()
        self.provider_fallback = None if got[:1] == providers[:1] else f"asked for {providers[0]}, but the session runs on {got} (the provider failed to load)"
        if self.provider_fallback and provider in ("cuda", "tensorrt"):
            raise BackendError(f"onnxruntime provider '{provider}': {self.provider_fallback}; install the matching CUDA/cuDNN/TensorRT "
                               "libraries (see onnxruntime's log) or use provider 'cpu'")
        if self.provider_fallback:
            import logging

            logging.getLogger(__name__).warning("onnxruntime provider 'auto': %s", self.provider_fallback)
        props = self.session.get_modelmeta().custom_metadata_map
        if providers[0] != PROVIDERS["tensorrt"] and props.get(PRECISION_KEY) == "int8":  # TensorRT's provider builds the file itself
            check_int8_onnxruntime(ort.__version__, str(path))
        self.metadata = metadata_from_props(props, str(path))
        self.graph = check_graph_kind(graph)
        inputs = {i.name: i.shape for i in self.session.get_inputs()}
        self._input_names = list(inputs)
        self._output_names = [o.name for o in self.session.get_outputs()]
        if self.graph == "network":
            validate_io(inputs, {o.name: o.shape for o in self.session.get_outputs()}, self.metadata, str(path))
            self.batch_size = static_batch_size(inputs)
        self.providers = self.session.get_providers()
        self.path = path
        self._task_outputs = [self.metadata.output_names[t] for t in self.metadata.tasks]

    @staticmethod
    def _provider_options(provider: str, fp16: bool, cache_dir: str | Path | None, model_path: str | Path | None = None) -> dict[str, str]:
        """Options of one execution provider; the TensorRT provider's engine and timing caches.

        ONNX Runtime keys the TensorRT provider's cached engines by file name, tensor names and versions, not
        by weights (microsoft/onnxruntime#32254): each model file gets its own engine folder, named by its
        SHA-256, so a re-exported model with the same name never loads the old engine. The timing cache is
        shared (ONNX Runtime names it by compute capability).

        Precision flags: a precision file (``precision.py``: the FP16 file, the INT8 Q/DQ file) carries its
        precision in its own types and Q/DQ nodes, so ``trt_fp16_enable`` and ``trt_int8_enable`` stay off for
        it; either flag would make the provider's build weakly typed and let TensorRT run the layers the file
        keeps in FP32 in FP16 (microsoft/onnxruntime#18707). ``fp16`` (``tensorrt_fp16``) applies to an FP32
        file only: TensorRT then picks FP16 kernels where it likes, the weakly typed mode TensorRT 11 removed.
        """
        if provider != PROVIDERS["tensorrt"]:
            return {}
        from mtl_perception import paths
        from mtl_perception.fileio import file_sha256
        from mtl_perception.inference.precision import precision_of

        root = paths.cache_dir("ort_tensorrt", cache_dir)
        try:
            precision = precision_of(model_path) if model_path is not None else "fp32"
        except ModelFileError:  # an unreadable file fails in InferenceSession with its own message
            precision = "fp32"
        engines = root / (file_sha256(model_path)[:16] if model_path is not None else "unknown-model")
        timing = root / "timing"
        for folder in (engines, timing):
            folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        return {
            "trt_engine_cache_enable": "True", "trt_engine_cache_path": str(engines),
            "trt_timing_cache_enable": "True", "trt_timing_cache_path": str(timing),
            **tensorrt_precision_flags(precision, fp16),
        }

    def infer(self, batch: np.ndarray) -> dict[str, np.ndarray]:
        if self.graph != "network":
            raise BackendError("this onnxruntime backend holds a deploy graph; infer() runs a network (use run())")
        outputs = self.run({INPUT_NAME: self.check_batch(batch)}, self._task_outputs)
        return dict(zip(self.metadata.tasks, outputs.values()))

    def run(self, feeds: Mapping[str, np.ndarray], output_names: Sequence[str] | None = None) -> dict[str, np.ndarray]:
        if self.session is None:
            raise BackendError("onnxruntime backend is closed")
        names = list(output_names) if output_names is not None else list(self._output_names)
        return dict(zip(names, self.session.run(names, dict(feeds))))

    def close(self) -> None:
        self.session = None
