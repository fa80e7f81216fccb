"""Derive the rclpy API table (Humble, Jazzy, Kilted) from rclpy's Python sources, read with ``ast``.

Usage:
    .venv/bin/python tools/derive_rclpy_api.py --repo /path/to/rclpy.git [--out test/data/rclpy_api.json]
        [--source humble=git:humble] [--source jazzy=git:jazzy] [--source kilted=git:kilted | kilted=dir:PATH]

``--repo`` is a clone (bare or not) of github.com/ros2/rclpy; each distribution is read from a branch of
it (``git show BRANCH:rclpy/rclpy/...``, nothing is checked out or imported) and recorded with the
branch's commit and package.xml version. A distribution may instead come from a directory holding the
``rclpy`` package (``dir:PATH``, e.g. an installed ``ros-rclpy`` wheel), recorded with the wheel's version and
the SHA-256 of its Python sources. By default Kilted is the ``kilted`` branch, or, when the clone has
none, the rclpy this interpreter would import (the Kilted wheels of the project's venv).

For every module of ``MODULES`` the table keeps: the module's public names and what
each stands for (a class or function, an import of another module's name, a value of the C extension,
another value); for every class its bases, and its public members (methods with their parameter names,
keyword-only names, ``*args``/``**kwargs``, parameter annotations and the class a return annotation names; properties; class attributes such as enum
values; nested classes; public attributes set in ``__init__`` (and the few private ones of ``PRIVATE_ATTRIBUTES``); for ``__init__(**kwargs)`` checked against
``__slots__`` (QoSProfile) the keywords the slots allow). No source text is kept: only names and those facts.
``test/test_ros_distributions.py`` checks the project's use of rclpy against the table.
"""
from __future__ import annotations

import argparse
import ast
import hashlib
import importlib.metadata
import importlib.util
import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

TABLE_FORMAT = "mtl_perception.rclpy_api/1"
DISTRIBUTIONS = ("humble", "jazzy", "kilted")
DEFAULT_OUT = Path(__file__).resolve().parents[1] / "test" / "data" / "rclpy_api.json"
PACKAGE_DIR = "rclpy/rclpy"  # the Python package inside the rclpy repository
# The modules kept: those the project imports and those their classes hand back (clock, time, logger, ...).
MODULES = ("rclpy", "rclpy.callback_groups", "rclpy.clock", "rclpy.context", "rclpy.duration", "rclpy.exceptions",
           "rclpy.executors", "rclpy.expand_topic_name", "rclpy.impl.rcutils_logger", "rclpy.lifecycle",
           "rclpy.lifecycle.managed_entity", "rclpy.lifecycle.node", "rclpy.lifecycle.publisher", "rclpy.logging",
           "rclpy.node", "rclpy.parameter", "rclpy.publisher", "rclpy.qos", "rclpy.serialization", "rclpy.subscription",
           "rclpy.time", "rclpy.timer", "rclpy.topic_endpoint_info", "rclpy.utilities", "rclpy.validate_full_topic_name",
           "rclpy.validate_topic_name")
EXTENSION_MODULE = "rclpy.impl.implementation_singleton"  # rclpy_implementation: the C extension
# Private attributes set in ``__init__`` that the project reads on purpose, kept in the table like public ones:
# LifecycleNode's state machine (rclpy has no public getter of a node's current lifecycle state; its own
# ``trigger_shutdown`` reads ``_state_machine.current_state`` in every distribution).
PRIVATE_ATTRIBUTES = ("_state_machine",)


# ------------------------------------------------------------------ reading sources
def git_sources(repo: Path, ref: str) -> tuple[dict[str, str], dict[str, Any]]:
    """{module name: source} of the rclpy package at ``ref`` of the clone ``repo``, and where it came from."""
    def git(*args: str) -> str:
        return subprocess.run(["git", "--git-dir", str(git_dir(repo)), *args], check=True, capture_output=True, text=True).stdout

    commit = git("rev-parse", f"{ref}^{{commit}}").strip()
    paths = [p for p in git("ls-tree", "-r", "--name-only", commit, PACKAGE_DIR).splitlines() if p.endswith(".py")]
    sources = {module_name(p[len(PACKAGE_DIR) - len("rclpy"):]): git("show", f"{commit}:{p}") for p in paths}
    version = re.search(r"<version>([^<]+)</version>", git("show", f"{commit}:rclpy/package.xml"))
    return sources, {"source": "git", "ref": ref, "commit": commit, "version": version.group(1) if version else None}


def dir_sources(folder: Path) -> tuple[dict[str, str], dict[str, Any]]:
    """{module name: source} of the rclpy package in ``folder``, with its wheel version and a digest of the sources."""
    sources = {module_name("rclpy/" + str(p.relative_to(folder))): p.read_text() for p in sorted(folder.rglob("*.py"))}
    digest = hashlib.sha256()
    for name in sorted(sources):
        digest.update(name.encode() + b"\0" + sources[name].encode() + b"\0")
    try:
        version = importlib.metadata.version("ros-rclpy") if folder == installed_rclpy() else None
    except importlib.metadata.PackageNotFoundError:
        version = None
    return sources, {"source": "wheel", "package": "ros-rclpy", "version": version, "sources_sha256": digest.hexdigest()}


def git_dir(repo: Path) -> Path:
    return repo / ".git" if (repo / ".git").exists() else repo


def has_branch(repo: Path, ref: str) -> bool:
    return subprocess.run(["git", "--git-dir", str(git_dir(repo)), "rev-parse", "--verify", "--quiet", f"{ref}^{{commit}}"],
                          capture_output=True).returncode == 0


def installed_rclpy() -> Path | None:
    """The folder of the rclpy package this interpreter would import (found, not imported)."""
    spec = importlib.util.find_spec("rclpy")
    return Path(spec.origin).parent if spec is not None and spec.origin else None


def module_name(path: str) -> str:
    """'rclpy/lifecycle/node.py' -> 'rclpy.lifecycle.node'; '.../__init__.py' -> the package."""
    parts = path[:-3].split("/")
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


# ------------------------------------------------------------------ ast extraction
def resolve_relative(module: str, is_package: bool, level: int, name: str | None) -> str:
    base = module.split(".") if is_package else module.split(".")[:-1]
    if level > 1:
        base = base[: len(base) - (level - 1)]
    return ".".join(base + ([name] if name else []))


def import_map(tree: ast.Module, module: str, is_package: bool) -> dict[str, str]:
    """Local name -> qualified name of every module-level import."""
    names: dict[str, str] = {}
    body = list(tree.body)
    for node in tree.body:  # imports under `if TYPE_CHECKING:` name the classes annotations use
        if isinstance(node, ast.If) and dotted(node.test) in ("TYPE_CHECKING", "typing.TYPE_CHECKING"):
            body += node.body
    for node in body:
        if isinstance(node, ast.ImportFrom):
            source = resolve_relative(module, is_package, node.level, node.module) if node.level else node.module or ""
            for alias in node.names:
                names[alias.asname or alias.name] = f"{source}.{alias.name}"
        elif isinstance(node, ast.Import):
            for alias in node.names:
                names[alias.asname or alias.name.split(".")[0]] = alias.name if alias.asname else alias.name.split(".")[0]
    return names


def dotted(node: ast.AST) -> str | None:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        head = dotted(node.value)
        return f"{head}.{node.attr}" if head else None
    return None


def qualify(text: str | None, module: str, imports: dict[str, str], local: set[str]) -> str | None:
    """A dotted name in a module's namespace -> its qualified name (None when unknown)."""
    if not text:
        return None
    head, _, rest = text.partition(".")
    if head in local:
        base = f"{module}.{head}"
    elif head in imports:
        base = imports[head]
    else:
        return None
    return f"{base}.{rest}" if rest else base


def unquote(node: ast.AST | None) -> ast.AST | None:
    """An annotation's expression: a string annotation (``'X'``, ``'list[X]'``) parsed; None when it does not parse."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        try:
            return ast.parse(node.value, mode="eval").body
        except SyntaxError:
            return None
    return node


def annotation_class(node: ast.AST | None, module: str, imports: dict[str, str], local: set[str]) -> str | None:
    """The class a return annotation names: ``X``, ``'X'``, ``Optional[X]``, ``X | None``, ``X[T]`` (a generic);
    ``List[X]`` gives ``list:X``; anything else None."""
    node = unquote(node)
    if node is None:
        return None
    if isinstance(node, ast.Subscript) and dotted(node.value) in ("Optional", "typing.Optional"):
        return annotation_class(node.slice, module, imports, local)
    if isinstance(node, ast.Subscript) and dotted(node.value) in ("List", "list", "typing.List", "Sequence", "Iterable"):
        item = annotation_class(node.slice, module, imports, local)
        return f"list:{item}" if item and not item.startswith("list:") else None
    if isinstance(node, ast.Subscript) and dotted(node.value) in ("Union", "typing.Union") and isinstance(node.slice, ast.Tuple):
        sides = [s for s in node.slice.elts if not (isinstance(s, ast.Constant) and s.value is None) and dotted(s) != "None"]
        return annotation_class(sides[0], module, imports, local) if len(sides) == 1 else None
    if isinstance(node, ast.Subscript):  # a generic class: Publisher[MsgT]
        return annotation_class(node.value, module, imports, local)
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.BitOr):
        sides = [s for s in (node.left, node.right) if not (isinstance(s, ast.Constant) and s.value is None)]
        return annotation_class(sides[0], module, imports, local) if len(sides) == 1 else None
    name = dotted(node)
    return qualify(name, module, imports, local) if name and name not in ("None", "bool", "int", "float", "str") else None


def signature(func: ast.FunctionDef | ast.AsyncFunctionDef, method: bool, context: tuple[str, dict[str, str], set[str]]) -> dict[str, Any]:
    args = func.args
    positional = [a.arg for a in args.posonlyargs + args.args]
    if method and positional and not any(dotted(d) == "staticmethod" for d in func.decorator_list):
        positional = positional[1:]  # self / cls
    return {
        "kind": "method" if method else "function",
        "positional": positional,
        "positional_only": len(args.posonlyargs) - (1 if method and args.posonlyargs else 0),
        "keyword_only": [a.arg for a in args.kwonlyargs],
        "varargs": args.vararg is not None,
        "varkw": args.kwarg is not None,
        "returns": annotation_class(func.returns, *context),
        "annotations": {a.arg: ast.unparse(a.annotation) for a in args.posonlyargs + args.args + args.kwonlyargs
                        if a.annotation is not None and a.arg in positional + [k.arg for k in args.kwonlyargs]},
    }


def public(name: str) -> bool:
    return not name.startswith("_") or name == "__init__"


def class_record(cls: ast.ClassDef, qualname: str, context: tuple[str, dict[str, str], set[str]], classes: dict[str, Any]) -> None:
    """Record ``cls`` (and its nested classes) in ``classes``."""
    module, imports, local = context
    members: dict[str, Any] = {}
    slots: list[str] = []
    for node in cls.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and public(node.name):
            decorators = [dotted(d) or "" for d in node.decorator_list]
            if any(d.endswith((".setter", ".deleter")) for d in decorators):
                continue
            if "property" in decorators:
                members[node.name] = {"kind": "property", "returns": annotation_class(node.returns, *context)}
            else:
                members[node.name] = signature(node, True, context)
            if node.name == "__init__":
                for statement in ast.walk(node):
                    for target in getattr(statement, "targets", [getattr(statement, "target", None)]):
                        if isinstance(target, ast.Attribute) and dotted(target.value) == "self" \
                                and (not target.attr.startswith("_") or target.attr in PRIVATE_ATTRIBUTES):
                            members.setdefault(target.attr, {"kind": "attribute"})
        elif isinstance(node, (ast.Assign, ast.AnnAssign)):
            for target in node.targets if isinstance(node, ast.Assign) else [node.target]:
                if isinstance(target, ast.Name) and target.id == "__slots__" and isinstance(node.value, (ast.List, ast.Tuple)):
                    slots = [e.value for e in node.value.elts if isinstance(e, ast.Constant) and isinstance(e.value, str)]
                elif isinstance(target, ast.Name) and public(target.id):
                    members[target.id] = {"kind": "attribute"}
        elif isinstance(node, ast.ClassDef) and public(node.name):
            members[node.name] = {"kind": "class", "target": f"{qualname}.{node.name}"}
            class_record(node, f"{qualname}.{node.name}", context, classes)
    init = members.get("__init__")
    if init and init["varkw"] and slots:
        init["slot_keywords"] = sorted(s[1:] for s in slots if s.startswith("_"))
    bases = [qualify(dotted(b), module, imports, local) or (dotted(b) or "?") for b in cls.bases]
    classes[qualname] = {"bases": bases, "members": dict(sorted(members.items()))}


def module_record(module: str, source: str, is_package: bool, classes: dict[str, Any], functions: dict[str, Any]) -> dict[str, str]:
    """The module's public names -> what each is; classes and functions go into their tables."""
    tree = ast.parse(source)
    imports = import_map(tree, module, is_package)
    local = {n.name for n in tree.body if isinstance(n, (ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef))}
    context = (module, imports, local)
    names: dict[str, str] = {}
    for local_name, target in imports.items():  # rclpy names a module imports can be read from it too
        if public(local_name) and (target == "rclpy" or target.startswith("rclpy.")):
            names[local_name] = "extension" if target.startswith(EXTENSION_MODULE) else target
    for node in tree.body:
        if isinstance(node, ast.ClassDef):
            names[node.name] = f"{module}.{node.name}"
            class_record(node, f"{module}.{node.name}", context, classes)
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            names[node.name] = f"{module}.{node.name}"
            functions[f"{module}.{node.name}"] = signature(node, False, context)
        elif isinstance(node, (ast.Assign, ast.AnnAssign)) and node.value is not None:
            value = dotted(node.value)
            target = qualify(value, module, imports, local) if value else None
            for t in node.targets if isinstance(node, ast.Assign) else [node.target]:
                if isinstance(t, ast.Name):
                    if target and target.startswith(EXTENSION_MODULE):
                        names[t.id] = "extension"
                    else:
                        names[t.id] = target or "value"
    return {name: what for name, what in sorted(names.items()) if public(name)}


def derive_distribution(sources: dict[str, str]) -> dict[str, Any]:
    modules: dict[str, Any] = {}
    classes: dict[str, Any] = {}
    functions: dict[str, Any] = {}
    packages = {m.rsplit(".", 1)[0] for m in sources if "." in m} | {"rclpy"}
    for module in sorted(sources):
        if module not in MODULES:
            continue
        modules[module] = module_record(module, sources[module], module in packages, classes, functions)
    return {"modules": modules, "classes": dict(sorted(classes.items())), "functions": dict(sorted(functions.items()))}


def default_sources(repo: Path) -> dict[str, str]:
    chosen = {"humble": "git:humble", "jazzy": "git:jazzy", "kilted": "git:kilted"}
    if not has_branch(repo, "kilted"):
        folder = installed_rclpy()
        if folder is None:
            raise SystemExit("derive_rclpy_api: the clone has no 'kilted' branch and no rclpy is installed; pass --source kilted=dir:PATH")
        chosen["kilted"] = f"dir:{folder}"
    return chosen


def derive(repo: Path, sources: dict[str, str] | None = None) -> dict[str, Any]:
    """The whole table: each distribution's record, read from ``repo`` branches or ``dir:`` folders."""
    table: dict[str, Any] = {"format": TABLE_FORMAT, "distributions": {}}
    for distribution, spec in (sources or default_sources(repo)).items():
        kind, _, where = spec.partition(":")
        if kind == "git":
            files, origin = git_sources(repo, where)
        elif kind == "dir":
            files, origin = dir_sources(Path(where))
        else:
            raise SystemExit(f"derive_rclpy_api: source '{spec}' must be git:BRANCH or dir:PATH")
        table["distributions"][distribution] = {**origin, **derive_distribution(files)}
    return table


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repo", type=Path, required=True, help="a clone (bare or not) of github.com/ros2/rclpy")
    parser.add_argument("--source", action="append", default=[], metavar="DIST=git:BRANCH|dir:PATH",
                        help="where one distribution's sources come from (default: branches humble, jazzy, kilted; "
                             "the installed rclpy for kilted when the clone has no kilted branch)")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help=f"table to write (default {DEFAULT_OUT})")
    args = parser.parse_args(argv)
    sources = default_sources(args.repo)
    for item in args.source:
        name, _, spec = item.partition("=")
        if name not in DISTRIBUTIONS or not spec:
            parser.error(f"--source {item!r}: give DIST=git:BRANCH or DIST=dir:PATH with DIST one of {list(DISTRIBUTIONS)}")
        sources[name] = spec
    table = derive(args.repo, sources)
    args.out.write_text(json.dumps(table, indent=0, separators=(",", ":")) + "\n")
    for name, record in table["distributions"].items():
        where = record.get("commit") or f"wheel {record.get('package')} {record.get('version')} sha256 {record['sources_sha256'][:12]}"
        print(f"{name}: rclpy {record['version']} ({where}): {len(record['modules'])} modules, {len(record['classes'])} classes, "
              f"{len(record['functions'])} functions", file=sys.stderr)
    print(f"wrote {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
