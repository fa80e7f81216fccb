"""perception_node on a Humble-shaped rclpy: this venv's rclpy with every public name Humble's lacks removed.

Run as ``python test/humble_shaped_node.py --ros-args ...`` (same arguments as ``perception_node``). Before the
node module is imported, every class and module of ``test/data/rclpy_api.json`` loses the public names the
table has for the installed rclpy's distribution (Kilted, or Jazzy in `make test-jazzy`) and not for Humble (``add_post_set_parameters_callback``,
``add_pre_set_parameters_callback``, ...). Kept are the names rclpy's own code refers to (``Context.track_node``,
``Node.list_parameters`` behind the parameter services, ...: removing those would break Kilted's internals, not
make it Humble; the contract test keeps the project off them) and enum members (an Enum refuses deletion). The
first output line says what was removed and kept.
"""
from __future__ import annotations

import ast
import importlib
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from rclpy_contract import Api, api_table  # noqa: E402


def installed_distribution(table: dict) -> str:
    """The table's distribution of the installed rclpy (by its major version: 9 Kilted, 7 Jazzy); Kilted if unknown."""
    import importlib.metadata

    try:
        major = importlib.metadata.version("ros-rclpy").split(".")[0]
    except importlib.metadata.PackageNotFoundError:
        return "kilted"
    return next((name for name, record in table.items() if record["version"].split(".")[0] == major), "kilted")


def names_rclpy_uses(package: Path) -> set[str]:
    """Every attribute and global name rclpy's own sources refer to (outside the definitions themselves)."""
    used: set[str] = set()
    for path in package.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Attribute):
                used.add(node.attr)
            elif isinstance(node, ast.Name):
                used.add(node.id)
    return used


def humble_shape() -> tuple[list[str], list[str]]:
    """Remove from the installed rclpy what Humble lacks; (removed, kept) as qualified names."""
    import enum

    import rclpy

    table = api_table()["distributions"]
    humble, newer = Api(table["humble"]), Api(table[installed_distribution(table)])
    used = names_rclpy_uses(Path(rclpy.__file__).parent)
    removed, kept = [], []
    for qualname, record in newer.classes.items():
        module_name, class_path = _split(qualname, newer)
        if module_name is None or qualname not in humble.classes:
            continue  # a class Humble has not at all: the contract test keeps the project off it
        owner = importlib.import_module(module_name)
        for part in class_path.split("."):
            owner = getattr(owner, part)
        for name in record["members"]:
            if name.startswith("_") or humble.member(qualname, name) is not None:
                continue
            label = f"{qualname}.{name}"
            if name in used or (isinstance(owner, enum.EnumMeta) and name in owner.__members__) or name not in vars(owner):
                kept.append(label)
                continue
            delattr(owner, name)
            removed.append(label)
    for module_name, names in newer.modules.items():
        module = importlib.import_module(module_name)
        for name, target in names.items():
            defined_here = target == f"{module_name}.{name}"  # not an import of another module's name
            if not defined_here or name in humble.modules.get(module_name, {}) or not hasattr(module, name):
                continue
            if name in used:
                kept.append(f"{module_name}.{name}")
            else:
                delattr(module, name)
                removed.append(f"{module_name}.{name}")
    return removed, kept


def _split(qualname: str, api: Api) -> tuple[str | None, str]:
    """('rclpy.parameter', 'Parameter.Type') from 'rclpy.parameter.Parameter.Type' (the longest module prefix)."""
    parts = qualname.split(".")
    for cut in range(len(parts) - 1, 0, -1):
        module = ".".join(parts[:cut])
        if module in api.modules:
            return module, ".".join(parts[cut:])
    return None, qualname


def main() -> int:
    removed, kept = humble_shape()
    print(f"humble-shaped rclpy: removed {len(removed)}: {' '.join(sorted(removed))}; kept {len(kept)} (used by rclpy itself "
          f"or enum members): {' '.join(sorted(kept))}", flush=True)
    from mtl_perception.ros.node import main as node_main  # imported after the removal

    return node_main()


if __name__ == "__main__":
    sys.exit(main())
