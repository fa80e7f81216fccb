"""A test double of the ``tensorrt`` module generated from the real bindings' name table.

``FakeTensorRT(version)`` answers only the names that ``tensorrt-cu12-bindings`` of that version has
(``test/data/tensorrt_api.json``, derived from the wheels by ``tools/derive_trt_api.py``): a name the
real module lacks raises AttributeError, exactly as the real module would. Enum members carry the
wheel's integer values (``NetworkDefinitionCreationFlag.STRONGLY_TYPED`` is 1 in 10.x, 0 in 11.x) and
``nptype`` answers what the wheel's own ``nptype`` answers (TypeError for BF16, FP8, INT4...). Every
access and call is recorded (owner class, name, arguments), so a test can assert what the code under
test used, and which of those names the version deprecates.

A method returns what the test programs with ``behave((class, method), fn)``; unprogrammed, a double of
its declared return type (True for bool: success). ``program_onnx_engines(trt, cudart)`` programs a
TensorRT that works end to end on the CPU: the parser refuses a file that breaks the real parser's
operator and type rules (``trt_ops.check_tensorrt_compat``: uint8 only at the network's I/O, ...) and
reads the rest (its I/O names, shapes and types become the network's), the builder serialises a plan that holds the file, the runtime
deserialises plans of its own version only (None otherwise), and an execution context queues, on the
CUDA stand-in's stream (``cuda_double.py``), a run of that file in ONNX Runtime on the bound device
buffers. Failure returns as the bindings declare them are one ``behave`` away: a None build, a None
timing cache, a refused tensor address, a parse that fails with errors.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

TABLE_PATH = Path(__file__).resolve().parent / "data" / "tensorrt_api.json"
_TABLE: dict[str, Any] | None = None


def api_table() -> dict[str, Any]:
    global _TABLE
    if _TABLE is None:
        _TABLE = json.loads(TABLE_PATH.read_text())
    return _TABLE


def table_versions() -> list[str]:
    return sorted(api_table()["versions"], key=lambda v: tuple(int(p) for p in v.split(".")))


@dataclass
class Access:
    owner: str  # "<module>" or a class name
    name: str
    deprecated: str | None


@dataclass
class Call:
    owner: str
    name: str
    args: tuple
    kwargs: dict


@dataclass
class Record:
    accesses: list[Access] = field(default_factory=list)
    calls: list[Call] = field(default_factory=list)

    def used(self) -> set[tuple[str, str]]:
        return {(a.owner, a.name) for a in self.accesses}

    def deprecated(self) -> list[str]:
        return sorted({f"{a.owner}.{a.name} (deprecated in {a.deprecated})" for a in self.accesses if a.deprecated})

    def calls_to(self, owner: str, name: str) -> list[Call]:
        return [c for c in self.calls if c.owner == owner and c.name == name]


class FakeEnumValue:
    """A member of a pybind11 enum: its wheel's value; equal to members of the same enum with that value."""

    def __init__(self, enum: str, name: str, value: int) -> None:
        self.enum, self.name, self.value = enum, name, value

    def __int__(self) -> int:
        return self.value

    def __index__(self) -> int:
        return self.value

    def __eq__(self, other: object) -> bool:
        return isinstance(other, FakeEnumValue) and (other.enum, other.value) == (self.enum, self.value)

    def __hash__(self) -> int:
        return hash((self.enum, self.value))

    def __str__(self) -> str:
        return f"{self.enum.split('.')[-1]}.{self.name}"

    def __repr__(self) -> str:
        return f"<{self.enum}.{self.name}: {self.value}>"


class FakeTensorRT:
    """The fake module. ``behaviours[(class, member)](obj, *args, **kwargs)`` overrides a method's result."""

    def __init__(self, version: str, behaviours: dict[tuple[str, str], Callable[..., Any]] | None = None,
                 reported_version: str | None = None) -> None:
        """``reported_version``: the ``__version__`` to show instead (e.g. 8.6.1 for JetPack 6.0's TensorRT,
        which the table lacks: only the version gate looks at it)."""
        table = api_table()["versions"][version]
        object.__setattr__(self, "_table", table)
        object.__setattr__(self, "_record", Record())
        object.__setattr__(self, "_behaviours", dict(behaviours or {}))
        object.__setattr__(self, "_classes", {})
        object.__setattr__(self, "__version__", reported_version or version)

    @property
    def record(self) -> Record:
        return self._record

    def behave(self, owner: str, name: str, fn: Callable[..., Any]) -> None:
        self._behaviours[(owner, name)] = fn

    def __getattr__(self, name: str) -> Any:
        module = self._table["module"]
        if name not in module:
            raise AttributeError(f"module 'tensorrt' {self.__version__} has no attribute '{name}'")
        if module[name] in ("class", "enum"):
            entry = self._table["classes"][name]
            self._record.accesses.append(Access("<module>", name, entry.get("deprecated")))
            return self.fake_class(name)
        member = self._table["classes"].get("<functions>", {}).get("members", {}).get(name, {})
        self._record.accesses.append(Access("<module>", name, member.get("deprecated")))
        if module[name] == "function":
            return self._function("<functions>", name)
        return None

    def fake_class(self, name: str) -> "FakeClass":
        if name not in self._classes:
            self._classes[name] = FakeClass(self, name)
        return self._classes[name]

    def _function(self, owner: str, name: str, instance: Any = None) -> Callable[..., Any]:
        def call(*args: Any, **kwargs: Any) -> Any:
            self._record.calls.append(Call(owner, name, args, kwargs))
            behaviour = self._behaviours.get((owner, name))
            if behaviour is not None:
                return behaviour(instance, *args, **kwargs) if instance is not None else behaviour(*args, **kwargs)
            if owner == "<functions>" and name == "nptype":
                return self.nptype(args[0])
            return self._default(owner, name)
        return call

    def nptype(self, data_type: FakeEnumValue) -> type:
        """What the wheel's ``nptype`` returns for a DataType: a NumPy type, or TypeError where NumPy has none."""
        found = self._table["nptype"].get(data_type.name) if isinstance(data_type, FakeEnumValue) and data_type.enum == "DataType" else None
        if found is None:
            raise TypeError(f"tensorrt {self.__version__}: no NumPy type for {data_type!r}")
        return np.dtype(found).type

    def _default(self, owner: str, name: str) -> Any:
        entry = self._table["classes"][owner]["members"][name]
        overloads = entry.get("overloads") or [{}]
        returns = overloads[0].get("returns")
        return self.value_of_type(returns)

    def value_of_type(self, type_name: str | None) -> Any:
        if type_name in (None, "None"):
            return None
        if type_name == "bool":
            return True
        if type_name in ("int", "typing.SupportsInt"):
            return 0
        if type_name == "str":
            return ""
        if type_name in self._table["classes"]:
            return FakeObject(self, type_name)
        return None


class FakeClass:
    """A class or enum of the fake module: calling it makes an instance; attributes follow the table."""

    def __init__(self, trt: FakeTensorRT, name: str) -> None:
        self._trt, self._name = trt, name
        self._entry = trt._table["classes"][name]

    def __call__(self, *args: Any, **kwargs: Any) -> "FakeObject":
        self._trt._record.calls.append(Call(self._name, "__init__", args, kwargs))
        behaviour = self._trt._behaviours.get((self._name, "__init__"))
        obj = FakeObject(self._trt, self._name)
        if behaviour is not None:
            behaviour(obj, *args, **kwargs)
        return obj

    def __getattr__(self, name: str) -> Any:
        members = self._entry["members"]
        if name not in members:
            raise AttributeError(f"type object '{self._name}' has no attribute '{name}' in TensorRT {self._trt.__version__}")
        member = members[name]
        self._trt._record.accesses.append(Access(self._name, name, member.get("deprecated")))
        if member["kind"] == "enum_value":
            return FakeEnumValue(member.get("type", self._name), name, member["value"])
        if member["kind"] == "class":
            return self._trt.fake_class(member["type"].split(".")[-1]) if member["type"].split(".")[-1] in self._trt._table["classes"] else None
        if member["kind"] == "method":
            return self._trt._function(self._name, name)
        return None

    def __repr__(self) -> str:
        return f"<fake tensorrt {self._trt.__version__} class {self._name}>"


class FakeObject:
    """An instance of a fake class: members follow the table; writes to read-only properties fail."""

    def __init__(self, trt: FakeTensorRT, cls: str) -> None:
        object.__setattr__(self, "_trt", trt)
        object.__setattr__(self, "_cls", cls)
        object.__setattr__(self, "_values", {})

    def _member(self, name: str) -> dict[str, Any]:
        members = self._trt._table["classes"][self._cls]["members"]
        if name not in members:
            raise AttributeError(f"'{self._cls}' object has no attribute '{name}' in TensorRT {self._trt.__version__}")
        member = members[name]
        self._trt._record.accesses.append(Access(self._cls, name, member.get("deprecated")))
        return member

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)
        member = self._member(name)
        if member["kind"] == "method":
            return self._trt._function(self._cls, name, instance=self)
        if name in self._values:
            return self._values[name]
        behaviour = self._trt._behaviours.get((self._cls, name))
        if behaviour is not None:
            return behaviour(self)
        if member["kind"] == "enum_value":
            return FakeClass(self._trt, self._cls).__getattr__(name)
        return self._trt.value_of_type(member.get("returns"))

    def __setattr__(self, name: str, value: Any) -> None:
        member = self._member(name)
        if member["kind"] != "property" or not member.get("writable"):
            raise AttributeError(f"'{self._cls}.{name}' is not a writable property in TensorRT {self._trt.__version__}")
        self._trt._record.calls.append(Call(self._cls, f"set:{name}", (value,), {}))
        self._values[name] = value

    def __bytes__(self) -> bytes:
        if self._cls != "IHostMemory":
            raise TypeError(f"{self._cls} is not a buffer")
        return self._values.get("_bytes", b"serialized")

    def __repr__(self) -> str:
        return f"<fake {self._cls}>"


def host_memory(trt: FakeTensorRT, data: bytes) -> FakeObject:
    """An IHostMemory double holding ``data``."""
    obj = FakeObject(trt, "IHostMemory")
    obj._values["_bytes"] = data
    return obj




# -- a TensorRT that runs: parse ONNX, build a plan holding it, execute it in ONNX Runtime -----------

PLAN_MAGIC = b"FAKE-TENSORRT-PLAN\n"
TIMING_MAGIC = b"FAKE-TENSORRT-TIMING\n"
# ONNX element type -> TensorRT DataType name, as the ONNX parser maps network I/O (others are parse errors)
ONNX_TO_TRT = {1: "FLOAT", 10: "HALF", 3: "INT8", 2: "UINT8", 6: "INT32", 7: "INT64", 9: "BOOL", 16: "BF16"}


@dataclass(frozen=True)
class TensorIO:
    """One network I/O tensor as the parser makes it: name, shape (-1 for a symbolic dim), DataType name, direction."""

    name: str
    shape: tuple[int, ...]
    dtype: str
    is_input: bool


def network_io(model: Any) -> tuple[list[TensorIO], list[str]]:
    """The network's I/O tensors of an ONNX model (inputs first, in graph order) and the parser's errors."""
    initializers = {t.name for t in model.graph.initializer}
    found, errors = [], []
    for values, is_input in ((model.graph.input, True), (model.graph.output, False)):
        for value in values:
            if is_input and value.name in initializers:
                continue
            tensor = value.type.tensor_type
            if tensor.elem_type not in ONNX_TO_TRT:
                errors.append(f"{value.name}: ONNX element type {tensor.elem_type} is not a TensorRT network I/O type")
                continue
            shape = tuple(d.dim_value if d.HasField("dim_value") else -1 for d in tensor.shape.dim)
            found.append(TensorIO(value.name, shape, ONNX_TO_TRT[tensor.elem_type], is_input))
    return found, errors


@dataclass
class FakePlan:
    version: str
    io: list[TensorIO]
    onnx_bytes: bytes
    session: Any = None

    def spec(self, name: str) -> TensorIO | None:
        return next((t for t in self.io if t.name == name), None)


def _plan_bytes(version: str, io: list[TensorIO], onnx_bytes: bytes) -> bytes:
    header = json.dumps({"version": version, "io": [[t.name, list(t.shape), t.dtype, t.is_input] for t in io]}).encode()
    return PLAN_MAGIC + header + b"\n" + onnx_bytes


def _read_plan(data: bytes) -> FakePlan | None:
    if not data.startswith(PLAN_MAGIC):
        return None
    header, _, onnx_bytes = data[len(PLAN_MAGIC):].partition(b"\n")
    info = json.loads(header)
    return FakePlan(info["version"], [TensorIO(n, tuple(s), d, i) for n, s, d, i in info["io"]], onnx_bytes)


def program_onnx_engines(trt: FakeTensorRT, cudart: Any, threads: int = 1) -> FakeTensorRT:
    """Program ``trt`` to parse, build and execute ONNX files on the CUDA stand-in ``cudart`` (module docstring)."""
    import onnx

    from mtl_perception.inference.trt_ops import TABLE_MAJORS, check_tensorrt_compat

    version = trt.__version__

    def parser_init(parser: FakeObject, network: FakeObject, logger: Any) -> None:
        parser._values["_network"], parser._values["_errors"] = network, []

    def parse_from_file(parser: FakeObject, path: str) -> bool:
        try:
            model = onnx.load(str(path))
        except Exception as exc:  # the real parser logs the reason and returns False
            parser._values["_errors"] = [f"cannot read {path}: {type(exc).__name__}"]
            return False
        io, errors = network_io(model)
        major = version.split(".")[0]
        if not errors and major in TABLE_MAJORS:  # the real parser refuses what breaks its type and operator rules
            errors = check_tensorrt_compat(model, majors=(major,))
        parser._values["_errors"] = errors
        if errors:
            return False
        network = parser._values["_network"]
        network._values["_io"], network._values["_onnx"] = io, model.SerializeToString()
        return True

    def build(builder: FakeObject, network: FakeObject, config: FakeObject) -> FakeObject | None:
        if "_onnx" not in network._values:
            return None  # an empty network does not build
        return host_memory(trt, _plan_bytes(version, network._values["_io"], network._values["_onnx"]))

    def create_timing_cache(config: FakeObject, blob: bytes) -> FakeObject | None:
        blob = bytes(blob)
        if blob and not blob.startswith(TIMING_MAGIC + version.encode()):
            return None  # a blob of another TensorRT build (or damaged)
        return FakeObject(trt, "ITimingCache")

    def set_timing_cache(config: FakeObject, cache: FakeObject, ignore_mismatch: bool) -> bool:
        if not isinstance(cache, FakeObject):
            raise TypeError("set_timing_cache(): incompatible function arguments (ITimingCache expected)")
        config._values["_timing"] = cache
        return True

    def deserialize(runtime: FakeObject, data: bytes) -> FakeObject | None:
        plan = _read_plan(bytes(data))
        if plan is None or plan.version != version:
            return None  # TensorRT refuses plans of another version
        engine = FakeObject(trt, "ICudaEngine")
        engine._values["_plan"] = plan
        return engine

    def create_context(engine: FakeObject) -> FakeObject:
        context = FakeObject(trt, "IExecutionContext")
        context._values.update(_plan=engine._values["_plan"], _addresses={}, _shapes={})
        return context

    def set_tensor_address(context: FakeObject, name: str, pointer: int) -> bool:
        if context._values["_plan"].spec(name) is None:
            return False
        context._values["_addresses"][name] = int(pointer)
        return True

    def set_input_shape(context: FakeObject, name: str, shape: Any) -> bool:
        spec = context._values["_plan"].spec(name)
        shape = tuple(int(d) for d in shape)
        if spec is None or not spec.is_input or len(shape) != len(spec.shape) or any(s not in (-1, d) for s, d in zip(spec.shape, shape)):
            return False
        context._values["_shapes"][name] = shape
        return True

    def execute(context: FakeObject, stream: int) -> bool:
        plan: FakePlan = context._values["_plan"]
        addresses, shapes = context._values["_addresses"], context._values["_shapes"]
        if any(t.name not in addresses for t in plan.io):
            return False  # every I/O tensor needs an address
        inputs = {}
        for t in (t for t in plan.io if t.is_input):
            shape = shapes.get(t.name, t.shape)
            if any(d < 0 for d in shape):
                return False  # a dynamic input whose shape was never set
            inputs[t.name] = (shape, np.dtype(trt.nptype(trt.DataType.__getattr__(t.dtype))))
        if plan.session is None:
            import onnxruntime as ort

            options = ort.SessionOptions()
            options.intra_op_num_threads = threads
            plan.session = ort.InferenceSession(plan.onnx_bytes, options, providers=["CPUExecutionProvider"])
        outputs = [t for t in plan.io if not t.is_input]

        def kernels() -> None:
            feeds = {}
            for name, (shape, dtype) in inputs.items():
                nbytes = int(np.prod(shape)) * dtype.itemsize
                feeds[name] = cudart.region(addresses[name], nbytes, "device").view(dtype).reshape(shape).copy()
            for t, value in zip(outputs, plan.session.run([t.name for t in outputs], feeds)):
                value = np.ascontiguousarray(value)
                if len(value.shape) != len(t.shape) or any(d not in (-1, v) for d, v in zip(t.shape, value.shape)):
                    raise ValueError(f"engine output '{t.name}' came out {value.shape}, the engine declares {t.shape}")
                cudart.region(addresses[t.name], value.nbytes, "device")[:] = value.reshape(-1).view(np.uint8)

        return cudart.enqueue(stream, kernels)

    io = lambda engine: engine._values["_plan"].io  # noqa: E731
    spec = lambda engine, name: engine._values["_plan"].spec(name)  # noqa: E731
    behaviours = {
        ("OnnxParser", "__init__"): parser_init,
        ("OnnxParser", "parse_from_file"): parse_from_file,
        ("OnnxParser", "num_errors"): lambda parser: len(parser._values.get("_errors", [])),
        ("OnnxParser", "get_error"): lambda parser, index: parser._values["_errors"][index],
        ("Builder", "build_serialized_network"): build,
        ("IBuilderConfig", "create_timing_cache"): create_timing_cache,
        ("IBuilderConfig", "set_timing_cache"): set_timing_cache,
        ("IBuilderConfig", "get_timing_cache"): lambda config: config._values.get("_timing"),
        ("IBuilderConfig", "add_optimization_profile"): lambda config, profile: 0,
        ("ITimingCache", "serialize"): lambda cache: host_memory(trt, TIMING_MAGIC + version.encode()),
        ("Runtime", "deserialize_cuda_engine"): deserialize,
        ("ICudaEngine", "num_io_tensors"): lambda engine: len(io(engine)),
        ("ICudaEngine", "get_tensor_name"): lambda engine, index: io(engine)[index].name,
        ("ICudaEngine", "get_tensor_shape"): lambda engine, name: spec(engine, name).shape,
        ("ICudaEngine", "get_tensor_dtype"): lambda engine, name: trt.DataType.__getattr__(spec(engine, name).dtype),
        ("ICudaEngine", "get_tensor_mode"): lambda engine, name: trt.TensorIOMode.INPUT if spec(engine, name).is_input else trt.TensorIOMode.OUTPUT,
        ("ICudaEngine", "create_execution_context"): create_context,
        ("IExecutionContext", "set_tensor_address"): set_tensor_address,
        ("IExecutionContext", "set_input_shape"): set_input_shape,
        ("IExecutionContext", "execute_async_v3"): execute,
    }
    for (owner, name), fn in behaviours.items():
        trt.behave(owner, name, fn)
    return trt
