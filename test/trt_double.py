"""A test double of the ``tensorrt`` module generated from the real bindings' name table.

``FakeTensorRT(version)`` answers only the names that ``tensorrt-cu12-bindings`` of that version has
(``test/data/tensorrt_api.json``, derived from the wheels by ``tools/derive_trt_api.py``): a name the
real module lacks raises AttributeError, exactly as the real module would. Every access and call is
recorded (owner class, name, arguments), so a test can assert what the code under test used, and
which of those names the version deprecates. Methods return a double of their declared return type
unless a behaviour is registered for ``(class, method)``.
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
    def __init__(self, enum: str, name: str, value: int) -> None:
        self.enum, self.name, self.value = enum, name, value

    def __int__(self) -> int:
        return self.value

    def __index__(self) -> int:
        return self.value

    def __eq__(self, other: object) -> bool:
        return isinstance(other, FakeEnumValue) and (other.enum, other.name) == (self.enum, self.name)

    def __hash__(self) -> int:
        return hash((self.enum, self.name))

    def __repr__(self) -> str:
        return f"<{self.enum}.{self.name}: {self.value}>"


class FakeTensorRT:
    """The fake module. ``behaviours[(class, member)](obj, *args, **kwargs)`` overrides a method's result."""

    def __init__(self, version: str, behaviours: dict[tuple[str, str], Callable[..., Any]] | None = None) -> None:
        table = api_table()["versions"][version]
        object.__setattr__(self, "_table", table)
        object.__setattr__(self, "_record", Record())
        object.__setattr__(self, "_behaviours", dict(behaviours or {}))
        object.__setattr__(self, "_classes", {})
        object.__setattr__(self, "__version__", version)

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
                return _NPTYPES[args[0].name]
            return self._default(owner, name)
        return call

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
            enum = member.get("type", self._name)
            return FakeEnumValue(enum, name, sorted(m for m, d in members.items() if d["kind"] == "enum_value").index(name))
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


_NPTYPES = {"FLOAT": np.float32, "HALF": np.float16, "INT8": np.int8, "INT32": np.int32, "INT64": np.int64,
            "BOOL": np.bool_, "UINT8": np.uint8, "BF16": None, "FP8": None}
