"""Read the project's use of rclpy from its source (``ast``) and look each use up in ``test/data/rclpy_api.json``.

``scan(path)`` returns every rclpy name a module uses: imported names and attribute chains of rclpy modules
(``rclpy.init``, ``ReliabilityPolicy.RELIABLE``), calls with their keyword arguments, and members used on rclpy
objects the scanner can type: ``self``/``super()`` in a class that subclasses an rclpy class (LifecycleNode:
every ``self.<name>`` the class does not define is Node API), values returned by rclpy calls (by the return
annotations in the table: ``create_publisher`` -> Publisher, ``get_clock().now()`` -> Time), parameters
annotated with rclpy classes, and dicts/lists of them. ``getattr``/``hasattr`` with a constant name on such
an object is an *optional* use (a newer call with a fallback). ``Api`` answers, for one distribution of the
table, whether a use exists there and whether its keywords are accepted.
"""
from __future__ import annotations

import ast
import json
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tools"))
from derive_rclpy_api import unquote  # noqa: E402 - the table's tool reads annotations the same way

TABLE_PATH = Path(__file__).resolve().parent / "data" / "rclpy_api.json"
# Members rclpy classes inherit from the standard library (not in the table, which holds rclpy's sources only).
STANDARD_BASES = {"enum.Enum": ("name", "value"), "enum.IntEnum": ("name", "value"), "enum.IntFlag": ("name", "value")}


def api_table() -> dict[str, Any]:
    return json.loads(TABLE_PATH.read_text())


@dataclass(frozen=True)
class Use:
    """One use of rclpy: ``owner.name`` (owner a module or class qualified name) at ``where``."""

    owner: str
    name: str
    where: str
    keywords: tuple[str, ...] = ()  # keyword arguments of a call
    positional: int | None = None  # positional arguments of a call (None: not a call, or *args passed)
    optional: bool = False  # getattr/hasattr: may be missing where a fallback exists
    on_instance: bool = False  # a member used on an object (not on a module or a class)

    @property
    def label(self) -> str:
        return f"{self.owner}.{self.name}"


# ------------------------------------------------------------------ one distribution of the table
class Api:
    """Lookups in one distribution's record of the table."""

    def __init__(self, record: dict[str, Any]) -> None:
        self.modules: dict[str, dict[str, str]] = record["modules"]
        self.classes: dict[str, Any] = record["classes"]
        self.functions: dict[str, Any] = record["functions"]

    def resolve(self, qualname: str, depth: int = 0) -> tuple[str, str] | None:
        """('module'|'class'|'function'|'extension'|'value'|'member', canonical name) of a qualified name, or None."""
        if depth > 20:
            return None
        if qualname in self.modules:
            return "module", qualname
        if qualname in self.classes:
            return "class", qualname
        if qualname in self.functions:
            return "function", qualname
        parent, _, name = qualname.rpartition(".")
        if not parent:
            return None
        owner = self.resolve(parent, depth + 1)
        if owner is None:
            return None
        kind, canonical = owner
        if kind == "module":
            target = self.modules[canonical].get(name)
            if target is None:
                return None
            if target in ("extension", "value"):
                return target, f"{canonical}.{name}"
            return self.resolve(target, depth + 1)
        if kind == "class":
            found = self.member(canonical, name)
            if found is None:
                return None
            member_owner, member = found
            if member["kind"] == "class":
                return self.resolve(member["target"], depth + 1)
            return "member", f"{member_owner}.{name}"
        return kind, f"{canonical}.{name}"  # a member of an extension value: not known from Python sources

    def mro(self, cls: str) -> list[str]:
        """The class and its bases, depth first (enough for looking a member up)."""
        order, stack = [], [cls]
        while stack:
            current = stack.pop(0)
            if current in order or current not in self.classes:
                continue
            order.append(current)
            for base in self.classes[current]["bases"]:
                resolved = self.resolve(base)
                if resolved and resolved[0] == "class":
                    stack.append(resolved[1])
        return order

    def member(self, cls: str, name: str) -> tuple[str, dict[str, Any]] | None:
        for owner in self.mro(cls):
            found = self.classes[owner]["members"].get(name)
            if found is not None:
                return owner, found
            for base in self.classes[owner]["bases"]:
                if name in STANDARD_BASES.get(base, ()):
                    return base, {"kind": "attribute"}
        return None

    def signature(self, use: Use) -> dict[str, Any] | None:
        """The signature a call of ``use`` binds to (a class: its ``__init__``), None when not a Python callable."""
        resolved = self.resolve(use.label) if not use.on_instance else ("member", use.label)
        if resolved is None:
            return None
        kind, name = resolved
        if kind == "function":
            return self.functions[name]
        if kind == "class":
            found = self.member(name, "__init__")
            return found[1] if found else None
        if kind == "member" and use.on_instance:
            found = self.member(use.owner, use.name)
            return found[1] if found and found[1]["kind"] == "method" else None
        if kind == "member":
            owner, _, member = name.rpartition(".")
            found = self.member(owner, member)
            return found[1] if found and found[1]["kind"] == "method" else None
        return None

    def problem(self, use: Use) -> str | None:
        """Why ``use`` fails on this distribution (None when it is there and its arguments are accepted)."""
        if use.on_instance:
            if self.member(use.owner, use.name) is None:
                return f"{use.owner} has no member '{use.name}'"
        elif self.resolve(use.label) is None:
            return f"no '{use.label}'"
        signature = self.signature(use)
        if signature is None:
            return None
        accepted = set(signature["positional"][signature["positional_only"]:]) | set(signature["keyword_only"])
        if signature["varkw"]:
            accepted |= set(signature.get("slot_keywords", ())) if signature.get("slot_keywords") else set(use.keywords)
        unknown = [k for k in use.keywords if k not in accepted]
        if unknown:
            return f"{use.label}() takes no keyword {unknown}"
        if use.positional is not None and not signature["varargs"] and use.positional > len(signature["positional"]):
            return f"{use.label}() takes at most {len(signature['positional'])} positional arguments, the project passes {use.positional}"
        return None

    def returns(self, qualname: str, on_instance: bool = False) -> str | None:
        """The rclpy class a call of ``qualname`` (a function, a class, a method) hands back, if the table says."""
        resolved = ("member", qualname) if on_instance else self.resolve(qualname)
        if resolved is None:
            return None
        kind, name = resolved
        if kind == "class":
            return name
        if kind == "function":
            return self.functions[name].get("returns")
        if kind == "member":
            owner, _, member = name.rpartition(".")
            found = self.member(owner, member)
            if found is not None and found[1]["kind"] in ("method", "property"):
                return found[1].get("returns")
        return None


# ------------------------------------------------------------------ the scanner
@dataclass(frozen=True)
class Ref:
    """An rclpy module, class or function named in the source (qualified)."""

    name: str


@dataclass(frozen=True)
class Instance:
    """An object of rclpy class ``cls``."""

    cls: str


@dataclass(frozen=True)
class Bound:
    """A method ``name`` of an object of rclpy class ``cls`` (not yet called)."""

    cls: str
    name: str
    optional: bool = False  # taken with getattr(obj, "name", None): may be missing


@dataclass(frozen=True)
class Container:
    """A dict, list or other collection of ``item``."""

    item: Any


@dataclass(frozen=True)
class ProjectSelf:
    """``self`` in a project class whose rclpy base is ``base``."""

    cls: str
    base: str


@dataclass(frozen=True)
class ProjectClass:
    """A project class whose rclpy base is ``base`` (calling it makes a ``ProjectSelf``)."""

    cls: str
    base: str


@dataclass
class ClassInfo:
    base: str
    defined: set[str] = field(default_factory=set)
    attributes: dict[str, Any] = field(default_factory=dict)


class Scanner:
    """One module's rclpy uses (see the module docstring)."""

    def __init__(self, path: Path, apis: list[Api]) -> None:
        self.path = path
        self.apis = apis
        self.tree = ast.parse(path.read_text())
        self.env: dict[str, Any] = {}
        self.classes: dict[str, ClassInfo] = {}
        self.uses: list[Use] = []
        self.recording = False

    # --- lookups over every distribution (the newest answer first)
    def _returns(self, qualname: str, on_instance: bool = False) -> str | None:
        for api in reversed(self.apis):
            found = api.returns(qualname, on_instance)
            if found:
                return found
        return None

    def _kind(self, qualname: str) -> str | None:
        for api in reversed(self.apis):
            found = api.resolve(qualname)
            if found:
                return found[0]
        return None

    def _canonical(self, qualname: str) -> str:
        """The class a (re-exported, aliased) name stands for: rclpy.lifecycle.Node -> rclpy.lifecycle.node.LifecycleNode."""
        for api in reversed(self.apis):
            found = api.resolve(qualname)
            if found and found[0] == "class":
                return found[1]
        return qualname

    def _member_kind(self, cls: str, name: str) -> str | None:
        for api in reversed(self.apis):
            found = api.member(cls, name)
            if found:
                return found[1]["kind"]
        return None

    def _instance(self, returned: str | None) -> Any:
        """What a call or property handing back ``returned`` (a class, ``list:CLASS``) gives."""
        if not returned:
            return None
        if returned.startswith("list:"):
            return Container(Instance(self._canonical(returned[5:])))
        return Instance(self._canonical(returned))

    def _use(self, use: Use) -> None:
        if self.recording:
            self.uses.append(use)

    def where(self, node: ast.AST) -> str:
        return f"{self.path.name}:{getattr(node, 'lineno', 0)}"

    # --- entry
    def scan(self) -> list[Use]:
        for node in ast.walk(self.tree):  # every import, wherever it is (function-level imports too)
            if isinstance(node, ast.Import):
                for alias in node.names:
                    if alias.name.split(".")[0] == "rclpy":
                        self.env[alias.asname or "rclpy"] = Ref(alias.name if alias.asname else "rclpy")
            elif isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "rclpy" and not node.level:
                for alias in node.names:
                    self.env[alias.asname or alias.name] = Ref(f"{node.module}.{alias.name}")
        for recording in (False, True):  # first pass: the types of self.<attr>; second: the uses
            self.recording = recording
            if recording:
                for node in ast.walk(self.tree):
                    if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "rclpy" and not node.level:
                        for alias in node.names:
                            self._use(Use(node.module, alias.name, self.where(node)))
            self._block(self.tree.body, dict(self.env), None)
        return self.uses

    def _block(self, body: list[ast.stmt], scope: dict[str, Any], cls: ClassInfo | None) -> None:
        for statement in body:
            self._statement(statement, scope, cls)

    def _statement(self, node: ast.stmt, scope: dict[str, Any], cls: ClassInfo | None) -> None:
        if isinstance(node, ast.ClassDef):
            self._class(node, scope)
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            inner = dict(scope)
            for arg in node.args.posonlyargs + node.args.args + node.args.kwonlyargs:
                typed = self._annotation(arg.annotation, scope)
                if typed is not None:
                    inner[arg.arg] = typed
            if cls is not None and node.args.args and not any(isinstance(d, ast.Name) and d.id == "staticmethod" for d in node.decorator_list):
                inner[node.args.args[0].arg] = "self"
                inner["__class__"] = cls
            for default in node.args.defaults + [d for d in node.args.kw_defaults if d is not None]:
                self._expr(default, scope)
            self._block(node.body, inner, None)
        elif isinstance(node, (ast.Assign, ast.AnnAssign, ast.AugAssign)):
            value = self._expr(node.value, scope) if node.value is not None else None
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            for target in targets:
                self._bind(target, value, scope)
        elif isinstance(node, (ast.For, ast.AsyncFor)):
            iterated = self._expr(node.iter, scope)
            self._bind(node.target, iterated.item if isinstance(iterated, Container) else None, scope)
            self._block(node.body + node.orelse, scope, None)
        elif isinstance(node, (ast.With, ast.AsyncWith)):
            for item in node.items:
                value = self._expr(item.context_expr, scope)
                if item.optional_vars is not None:
                    self._bind(item.optional_vars, value, scope)
            self._block(node.body, scope, None)
        elif isinstance(node, ast.Try):
            self._block(node.body, scope, None)
            for handler in node.handlers:
                if handler.type is not None:
                    self._expr(handler.type, scope)
                self._block(handler.body, scope, None)
            self._block(node.orelse + node.finalbody, scope, None)
        elif isinstance(node, (ast.If, ast.While)):
            self._expr(node.test, scope)
            self._block(node.body + node.orelse, scope, None)
        else:
            for child in ast.iter_child_nodes(node):
                if isinstance(child, ast.expr):
                    self._expr(child, scope)
                elif isinstance(child, ast.stmt):
                    self._statement(child, scope, None)

    def _class(self, node: ast.ClassDef, scope: dict[str, Any]) -> None:
        base = None
        for expr in node.bases:
            typed = self._expr(expr, scope)
            if isinstance(typed, Ref) and self._kind(typed.name) == "class":
                base = self._canonical(typed.name)
        if base is None:
            self._block(node.body, scope, None)
            return
        info = self.classes.setdefault(node.name, ClassInfo(base))
        scope[node.name] = ProjectClass(node.name, base)
        for statement in ast.walk(node):
            if isinstance(statement, (ast.FunctionDef, ast.AsyncFunctionDef)) and statement in node.body:
                info.defined.add(statement.name)
            elif isinstance(statement, ast.Attribute) and isinstance(statement.ctx, ast.Store) and isinstance(statement.value, ast.Name) and statement.value.id == "self":
                info.defined.add(statement.attr)
        self._block(node.body, scope, info)

    def _annotation(self, node: ast.expr | None, scope: dict[str, Any]) -> Any:
        node = unquote(node)
        if node is None:
            return None
        if isinstance(node, ast.Subscript) and isinstance(node.value, ast.Name) and node.value.id in ("list", "List", "Sequence", "Iterable", "tuple"):
            item = self._annotation(node.slice.elts[0] if isinstance(node.slice, ast.Tuple) else node.slice, scope)
            return Container(item) if item is not None else None
        recording, self.recording = self.recording, False
        typed = self._expr(node, scope)
        self.recording = recording
        if isinstance(typed, Ref) and self._kind(typed.name) == "class":
            return Instance(self._canonical(typed.name))
        return None

    def _bind(self, target: ast.expr, value: Any, scope: dict[str, Any]) -> None:
        if isinstance(target, ast.Name):
            if value is None:
                scope.pop(target.id, None)
            else:
                scope[target.id] = value
        elif isinstance(target, ast.Attribute):
            owner = self._expr(target.value, scope)
            if isinstance(owner, ProjectSelf):
                if value is not None:
                    self.classes[owner.cls].attributes[target.attr] = value
            elif owner is not None and not isinstance(owner, (Container, str)):
                self._attribute(owner, target.attr, target)  # assigning an rclpy attribute is a use
        elif isinstance(target, ast.Subscript):
            self._expr(target.value, scope)
            self._expr(target.slice, scope)
        elif isinstance(target, (ast.Tuple, ast.List)):
            for element in target.elts:
                self._bind(element, None, scope)

    def _attribute(self, owner: Any, attr: str, node: ast.AST) -> Any:
        """The type of ``owner.attr`` (recording the use)."""
        if isinstance(owner, Ref):
            qualname = f"{owner.name}.{attr}"
            self._use(Use(owner.name, attr, self.where(node)))
            kind = self._kind(qualname)
            return Ref(qualname) if kind in ("module", "class", "function", "member", "extension") else None
        if isinstance(owner, ProjectSelf):
            info = self.classes[owner.cls]
            if attr in info.defined:
                return info.attributes.get(attr)
            owner = Instance(owner.base)
        if isinstance(owner, Instance):
            self._use(Use(owner.cls, attr, self.where(node), on_instance=True))
            kind = self._member_kind(owner.cls, attr)
            if kind == "method":
                return Bound(owner.cls, attr)
            if kind == "property":
                return self._instance(self._returns(f"{owner.cls}.{attr}", on_instance=True))
            return None
        if isinstance(owner, Container) and attr in ("get", "pop", "values", "setdefault"):
            return Bound("<container>", attr) if attr != "values" else Bound("<values>", owner.item)
        return None

    def _expr(self, node: ast.expr | None, scope: dict[str, Any]) -> Any:  # noqa: C901 - one case per expression kind
        if node is None:
            return None
        if isinstance(node, ast.Name):
            value = scope.get(node.id)
            if value == "self":
                cls = scope.get("__class__")
                return ProjectSelf(self._class_name(cls), cls.base) if cls is not None else None
            return value
        if isinstance(node, ast.Attribute):
            owner = self._expr(node.value, scope)
            if owner is None:
                return None
            return self._attribute(owner, node.attr, node)
        if isinstance(node, ast.Call):
            return self._call(node, scope)
        if isinstance(node, ast.Subscript):
            owner = self._expr(node.value, scope)
            self._expr(node.slice, scope)
            return owner.item if isinstance(owner, Container) else None
        if isinstance(node, ast.DictComp):
            inner = self._comprehension(node.generators, scope)
            self._expr(node.key, inner)
            item = self._expr(node.value, inner)
            return Container(item) if item is not None else None
        if isinstance(node, (ast.ListComp, ast.SetComp, ast.GeneratorExp)):
            inner = self._comprehension(node.generators, scope)
            item = self._expr(node.elt, inner)
            return Container(item) if item is not None else None
        if isinstance(node, ast.Dict):
            items = [self._expr(v, scope) for v in node.values] + [self._expr(k, scope) for k in node.keys if k is not None]
            typed = [i for i in items[: len(node.values)] if i is not None]
            return Container(typed[0]) if typed and all(i == typed[0] for i in typed) else None
        if isinstance(node, (ast.List, ast.Tuple, ast.Set)):
            items = [self._expr(e, scope) for e in node.elts]
            typed = [i for i in items if i is not None]
            return Container(typed[0]) if typed and len(typed) == len(items) and all(i == typed[0] for i in typed) else None
        if isinstance(node, ast.Lambda):
            inner = dict(scope)
            for arg in node.args.args:
                inner.pop(arg.arg, None)
            for default in node.args.defaults:
                self._expr(default, scope)
            self._expr(node.body, inner)
            return None
        if isinstance(node, ast.IfExp):
            self._expr(node.test, scope)
            body, other = self._expr(node.body, scope), self._expr(node.orelse, scope)
            return body if body == other or other is None else (other if body is None else None)
        if isinstance(node, ast.BoolOp):
            values = [self._expr(v, scope) for v in node.values]
            typed = [v for v in values if v is not None]
            return typed[0] if typed and all(v == typed[0] for v in typed) else None
        if isinstance(node, ast.NamedExpr):
            value = self._expr(node.value, scope)
            self._bind(node.target, value, scope)
            return value
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.expr):
                self._expr(child, scope)
            elif isinstance(child, ast.comprehension):
                self._comprehension([child], scope)
        return None

    def _class_name(self, info: ClassInfo) -> str:
        return next(name for name, value in self.classes.items() if value is info)

    def _comprehension(self, generators: list[ast.comprehension], scope: dict[str, Any]) -> dict[str, Any]:
        inner = dict(scope)
        for generator in generators:
            iterated = self._expr(generator.iter, inner)
            self._bind(generator.target, iterated.item if isinstance(iterated, Container) else None, inner)
            for condition in generator.ifs:
                self._expr(condition, inner)
        return inner

    def _call(self, node: ast.Call, scope: dict[str, Any]) -> Any:
        if isinstance(node.func, ast.Name) and node.func.id == "super" and not node.args:
            cls = scope.get("__class__")
            return Instance(cls.base) if cls is not None else None
        if isinstance(node.func, ast.Name) and node.func.id in ("getattr", "hasattr") and len(node.args) >= 2:
            owner = self._expr(node.args[0], scope)
            name = node.args[1].value if isinstance(node.args[1], ast.Constant) and isinstance(node.args[1].value, str) else None
            for arg in node.args[2:]:
                self._expr(arg, scope)
            if isinstance(owner, ProjectSelf) and name is not None and name not in self.classes[owner.cls].defined:
                owner = Instance(owner.base)
            if isinstance(owner, Instance) and name is not None:
                self._use(Use(owner.cls, name, self.where(node), optional=True, on_instance=True))
                if self._member_kind(owner.cls, name) == "method" and node.func.id == "getattr":
                    return Bound(owner.cls, name, optional=True)
            return None
        function = self._expr(node.func, scope)
        for arg in node.args:
            self._expr(arg.value if isinstance(arg, ast.Starred) else arg, scope)
        for keyword in node.keywords:
            self._expr(keyword.value, scope)
        keywords = tuple(k.arg for k in node.keywords if k.arg is not None)
        positional = None if any(isinstance(a, ast.Starred) for a in node.args) else len(node.args)
        if isinstance(function, ProjectClass):
            self._use(Use(function.base, "__init__", self.where(node), keywords, None, on_instance=True))
            return ProjectSelf(function.cls, function.base)
        if isinstance(function, Ref):
            kind = self._kind(function.name)
            if kind in ("class", "function", "member"):
                owner, _, name = function.name.rpartition(".")
                self._use(Use(owner, name, self.where(node), keywords, positional))
                return self._instance(self._returns(function.name))
            return None
        if isinstance(function, Bound):
            if function.cls == "<container>":
                owner = self._expr(node.func.value, scope) if isinstance(node.func, ast.Attribute) else None
                return owner.item if isinstance(owner, Container) else None
            if function.cls == "<values>":
                return Container(function.name)
            self._use(Use(function.cls, function.name, self.where(node), keywords, positional, optional=function.optional, on_instance=True))
            return self._instance(self._returns(f"{function.cls}.{function.name}", on_instance=True))
        return None


def scan(path: Path, apis: list[Api]) -> list[Use]:
    """Every rclpy use of the module at ``path``."""
    return Scanner(path, apis).scan()


def attribute_names(path: Path) -> list[tuple[str, str]]:
    """(attribute name, where) of every ``x.name`` in a module, typed or not."""
    tree = ast.parse(path.read_text())
    return [(node.attr, f"{path.name}:{node.lineno}") for node in ast.walk(tree) if isinstance(node, ast.Attribute)]
