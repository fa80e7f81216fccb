"""How the package installs on a robot: rosdep keys that resolve, colcon test running pytest, floors that are tested.

- every dependency key of package.xml resolves on humble, jazzy and kilted (test/rosdep_keys.yaml, read from
  the rosdistro database: see its header for the commit and how to refresh it), so a wrong key fails here
  rather than `rosdep install` on a robot;
- setup.py names pytest as its test dependency (colcon runs pytest only then, otherwise unittest finds nothing);
- constraints/minimum.txt, which `make test-min` tests, pins exactly the floors setup.py declares;
- Python 3.10 (Humble, JetPack 6) stays the oldest target everywhere it is written down.
"""
from __future__ import annotations

import ast
import re
import xml.etree.ElementTree as ET
from pathlib import Path

import yaml
from packaging.requirements import Requirement
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[1]
KEYS = yaml.safe_load((Path(__file__).with_name("rosdep_keys.yaml")).read_text())
DEPENDENCY_TAGS = ("depend", "build_depend", "build_export_depend", "buildtool_depend", "buildtool_export_depend", "exec_depend", "test_depend", "doc_depend")


def package_xml() -> ET.Element:
    return ET.parse(ROOT / "package.xml").getroot()


def dependency_keys() -> list[str]:
    root = package_xml()
    return [element.text.strip() for tag in DEPENDENCY_TAGS for element in root.findall(tag)]


def setup_call() -> tuple[dict[str, ast.expr], dict[str, ast.expr]]:
    """(module-level assignments, keyword arguments of setup()) of setup.py, as AST nodes."""
    tree = ast.parse((ROOT / "setup.py").read_text())
    names = {t.id: node.value for node in tree.body if isinstance(node, ast.Assign) for t in node.targets if isinstance(t, ast.Name)}
    call = next(n for n in ast.walk(tree) if isinstance(n, ast.Call) and getattr(n.func, "id", "") == "setup")
    return names, {kw.arg: kw.value for kw in call.keywords}


def literal(node: ast.expr, names: dict[str, ast.expr]) -> object:
    return ast.literal_eval(names[node.id] if isinstance(node, ast.Name) else node)


def setup_requirements() -> tuple[list[Requirement], list[Requirement]]:
    names, keywords = setup_call()
    extras = keywords["extras_require"]
    test = next(literal(v, names) for k, v in zip(extras.keys, extras.values) if literal(k, names) == "test")
    return [Requirement(r) for r in literal(keywords["install_requires"], names)], [Requirement(r) for r in test]


def test_every_package_xml_key_resolves_on_each_supported_distribution() -> None:
    keys = dependency_keys()
    assert keys and len(keys) == len(set(keys)), f"duplicate keys in package.xml: {sorted(k for k in keys if keys.count(k) > 1)}"
    for distro, entry in KEYS["distributions"].items():
        missing = sorted(set(keys) - set(entry["keys"]))
        assert not missing, (
            f"package.xml keys without a rosdep rule or released package on {distro} ({entry['os']}): {missing}; "
            f"check them against rosdistro and refresh test/rosdep_keys.yaml (see its header)"
        )
    assert not set(keys) & set(KEYS["invalid_keys"]), f"keys known not to exist: {sorted(set(keys) & set(KEYS['invalid_keys']))}"
    assert set(KEYS["distributions"]) == {"humble", "jazzy", "kilted"} and re.fullmatch(r"[0-9a-f]{40}", KEYS["rosdistro_commit"])


def test_build_type_is_declared_the_ament_python_way() -> None:
    root = package_xml()
    assert root.get("format") == "3"
    assert root.findtext("export/build_type") == "ament_python"
    assert "ament_python" not in dependency_keys()  # a build type, not a rosdep key
    assert root.findtext("version") == literal(setup_call()[1]["version"], setup_call()[0])


def test_setup_py_names_pytest_so_colcon_test_runs_the_suite() -> None:
    _, test = setup_requirements()
    assert "pytest" in {r.name for r in test}
    assert (ROOT / "setup.cfg").read_text().count("testpaths = test") == 1  # colcon runs pytest in the package folder


def test_minimum_constraints_pin_exactly_the_declared_floors() -> None:
    install, test = setup_requirements()
    floors = {}
    for requirement in install + test:
        lower = [s.version for s in requirement.specifier if s.operator == ">="]
        assert len(lower) == 1, f"{requirement}: every dependency of setup.py needs one >= floor"
        floors[requirement.name.lower()] = Version(lower[0])
    pins = {}
    for line in (ROOT / "constraints" / "minimum.txt").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            name, version = line.split("==")
            pins[name.strip().lower()] = Version(version.strip())
    # torch: only 2.13.0 (CPU) installs offline, an older one pulls a multi-GB CUDA build (constraints/minimum.txt)
    assert pins.pop("torch") >= floors.pop("torch")
    assert pins == floors, "constraints/minimum.txt and setup.py's floors differ: change both, then run `make test-min`"


def test_robot_requirements_keep_the_declared_floors() -> None:
    """requirements-robot.txt (the README's pip step on a robot) asks for setup.py's floors, less torch and
    onnxruntime (the user picks the build: NVIDIA's on a Jetson), and keeps NumPy below 2."""
    install, test = setup_requirements()
    declared = {r.name.lower(): r for r in install + test if r.name not in ("torch", "onnxruntime")}
    robot = {}
    for line in (ROOT / "requirements-robot.txt").read_text().splitlines():
        line = line.split("  #")[0].strip()
        if line and not line.startswith("#"):
            requirement = Requirement(line)
            robot[requirement.name.lower()] = requirement
    assert set(robot) == set(declared)
    for name, requirement in robot.items():
        floors = {s.version for s in requirement.specifier if s.operator == ">="}
        assert floors == {s.version for s in declared[name].specifier if s.operator == ">="}, name
    assert "2" in {s.version for s in robot["numpy"].specifier if s.operator == "<"}


def test_python_3_10_is_the_oldest_target_everywhere() -> None:
    _, keywords = setup_call()
    assert ast.literal_eval(keywords["python_requires"]) == ">=3.10"
    assert re.search(r'^target-version = "py310"$', (ROOT / "ruff.toml").read_text(), re.M)
    ci = (ROOT / ".ci" / "run").read_text()
    assert "make lint" in ci and "make test-min" in ci
