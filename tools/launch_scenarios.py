"""Run launch/mtl_perception.launch.py the way `ros2 launch` does, against checkouts of ros2/launch and ros2/launch_ros.

Usage (a maintainer's check; CI has no copy of those sources, and none is committed):
  git clone https://github.com/ros2/launch && git clone https://github.com/ros2/launch_ros   # any branch
  .venv/bin/python tools/launch_scenarios.py --launch ../launch --launch-ros ../launch_ros [--only NAME ...]

Everything it sets up lives in one temporary folder (removed at the end unless --keep):
- ``site/``: launch's PyPI dependencies (osrf-pycommon, lark, packaging; ``pip install --target``), so this
  venv is left as it was; launch, launch_ros and ros2launch are imported from the given source trees;
- ``standins/composition_interfaces``: a stand-in for the message package launch_ros imports (no wheel exists;
  only composable-node actions use it, and this launch file has none: any use raises);
- ``prefix/``: the ament index layout `colcon build` installs (share/ament_index/resource_index/packages/
  mtl_perception, share/mtl_perception/{launch,config,models}, lib/mtl_perception/perception_node), so that
  launch_ros's Node finds the executable and ros2launch finds the launch file by package name.

Each scenario runs ros2launch's own ``launch_a_launch_file`` (what ``ros2 launch mtl_perception
mtl_perception.launch.py ARG:=VALUE ...`` calls) in a child process with its own ROS domain, and this process
watches the ROS graph (the node's lifecycle state, its topics, its parameters) with rclpy. Ctrl-C is SIGINT
to the launch's process group, as a terminal sends it. One line per scenario: PASS/FAIL, name, what happened.
Exit code 0 when every scenario passed.
"""
from __future__ import annotations

import argparse
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = "mtl_perception"
LAUNCH_FILE = "mtl_perception.launch.py"
PYPI_DEPENDENCIES = ("osrf-pycommon", "lark", "packaging")
STARTUP_S = 90.0  # model load on a busy 2-core machine
STANDIN = '''"""Stand-in for composition_interfaces (no PyPI wheel): only launch_ros's composable-node actions use it."""


class _Unavailable:
    def __init__(self, *args, **kwargs):
        raise RuntimeError("composition_interfaces stand-in: composable nodes are not available here")


class LoadNode:
    Request = Response = _Unavailable


class UnloadNode(LoadNode):
    pass


class ListNodes(LoadNode):
    pass
'''
# The child: ros2launch's API, as `ros2 launch PACKAGE FILE ARGS` runs it (interactive: SIGINT is Ctrl-C).
DRIVER = """
import sys
from ros2launch.api import get_share_file_path_from_package, launch_a_launch_file
path = get_share_file_path_from_package(package_name=sys.argv[1], file_name=sys.argv[2])
sys.exit(launch_a_launch_file(launch_file_path=path, launch_file_arguments=sys.argv[3:], noninteractive=False))
"""
EXECUTABLE = """#!{python}
import sys
from mtl_perception.ros.node import main
sys.exit(main())
"""


def prepare(work: Path, launch_src: Path, launch_ros_src: Path) -> dict[str, str]:
    """Set up site/, standins/ and prefix/ in ``work``; the environment the launch children run with."""
    for package, source in (("launch", launch_src / "launch" / "launch"), ("launch_ros", launch_ros_src / "launch_ros" / "launch_ros"),
                            ("ros2launch", launch_ros_src / "ros2launch" / "ros2launch")):
        if not (source / "__init__.py").is_file():
            raise SystemExit(f"launch_scenarios: {source} is not the {package} package: pass the roots of ros2/launch and ros2/launch_ros checkouts")
    site = work / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--disable-pip-version-check", "--target", str(site), *PYPI_DEPENDENCIES], check=True)
    standin = work / "standins" / "composition_interfaces"
    standin.mkdir(parents=True)
    (standin / "__init__.py").write_text("")
    (standin / "srv.py").write_text(STANDIN)
    prefix = work / "prefix"
    index = prefix / "share" / "ament_index" / "resource_index" / "packages"
    index.mkdir(parents=True)
    (index / PACKAGE).write_text("")
    share = prefix / "share" / PACKAGE
    for folder, pattern in (("launch", "*.launch.py"), ("config", "*.yaml"), ("config", "*.rviz"), ("config", "*.xml"), ("models", "*")):
        (share / folder).mkdir(parents=True, exist_ok=True)
        for file in (ROOT / folder).glob(pattern):
            if file.is_file():
                shutil.copy2(file, share / folder / file.name)
    shutil.copy2(ROOT / "package.xml", share / "package.xml")
    executable = prefix / "lib" / PACKAGE / "perception_node"
    executable.parent.mkdir(parents=True)
    executable.write_text(EXECUTABLE.format(python=sys.executable))
    executable.chmod(0o755)
    env = dict(os.environ)
    paths = [str(launch_src / "launch"), str(launch_ros_src / "launch_ros"), str(launch_ros_src / "ros2launch"), str(work / "standins"), str(site)]
    env["PYTHONPATH"] = os.pathsep.join(paths + [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p])
    env["AMENT_PREFIX_PATH"] = os.pathsep.join([str(prefix)] + [p for p in env.get("AMENT_PREFIX_PATH", "").split(os.pathsep) if p])
    env["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"
    env["PYTHONUNBUFFERED"] = "1"
    env["RCUTILS_COLORIZED_OUTPUT"] = "0"
    for name in ("FASTDDS_DEFAULT_PROFILES_FILE", "FASTRTPS_DEFAULT_PROFILES_FILE"):
        env.pop(name, None)  # the launch file's fastdds_profile argument sets it
    return env


class Launch:
    """One `ros2 launch` child: its output collected by a reader thread, its process group for Ctrl-C."""

    def __init__(self, env: dict[str, str], domain: int, arguments: list[str], log: Path) -> None:
        import threading

        self.log = log
        self.lines: list[str] = []
        self.changed = threading.Condition()
        self.process = subprocess.Popen([sys.executable, "-c", DRIVER, PACKAGE, LAUNCH_FILE, *arguments], env={**env, "ROS_DOMAIN_ID": str(domain)},
                                        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        with self.log.open("w") as out:
            for line in self.process.stdout:
                out.write(line)
                with self.changed:
                    self.lines.append(line.rstrip("\n"))
                    self.changed.notify_all()
        with self.changed:
            self.changed.notify_all()

    def text(self) -> str:
        with self.changed:
            return "\n".join(self.lines)

    def wait_for_line(self, pattern: str, timeout: float) -> str | None:
        """The first output line matching ``pattern`` (a regex), waiting until it comes, the launch ends, or ``timeout``."""
        regex = re.compile(pattern)
        deadline = time.monotonic() + timeout
        with self.changed:
            while True:
                found = next((line for line in self.lines if regex.search(line)), None)
                if found or time.monotonic() > deadline or (self.process.poll() is not None and not self.reader.is_alive()):
                    return found
                self.changed.wait(min(0.5, max(0.0, deadline - time.monotonic())))

    def node_pids(self) -> list[int]:
        return [int(m) for m in re.findall(r"\[perception_node-\d+\]: process started with pid \[(\d+)\]", self.text())]

    def ctrl_c(self, timeout: float = 30.0) -> tuple[int | None, float]:
        """SIGINT to the process group (a terminal's Ctrl-C); (exit code or None if still running, seconds taken)."""
        start = time.monotonic()
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGINT)
        try:
            code = self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            code = None
        return code, time.monotonic() - start

    def wait(self, timeout: float) -> int | None:
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            return None

    def close(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()
        self.reader.join(5.0)


def alive(pid: int) -> bool:
    """Whether a process exists and is not a zombie."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0] != "Z"
    except OSError:
        return False


class Graph:
    """An rclpy context on one ROS domain, to watch what a launch started."""

    def __init__(self, domain: int) -> None:
        import rclpy
        from rclpy.context import Context
        from rclpy.executors import SingleThreadedExecutor

        self.context = Context()
        rclpy.init(context=self.context, domain_id=domain)
        self.node = rclpy.create_node("launch_scenarios_probe", context=self.context)
        self.executor = SingleThreadedExecutor(context=self.context)
        self.executor.add_node(self.node)

    def call(self, service_type, name: str, request, timeout: float = 10.0):
        client = self.node.create_client(service_type, name)
        try:
            if not client.wait_for_service(timeout_sec=timeout):
                return None
            future = client.call_async(request)
            self.executor.spin_until_future_complete(future, timeout_sec=timeout)
            return future.result()
        finally:
            self.node.destroy_client(client)

    def state(self, node: str) -> str | None:
        from lifecycle_msgs.srv import GetState

        response = self.call(GetState, f"{node}/get_state", GetState.Request(), timeout=2.0)
        return response.current_state.label if response else None

    def wait_state(self, node: str, wanted: str, timeout: float, launch: Launch) -> str | None:
        """The node's lifecycle state once it is ``wanted``, or the last one seen after ``timeout`` / the launch ending."""
        deadline, state = time.monotonic() + timeout, None
        while time.monotonic() < deadline and launch.process.poll() is None:
            state = self.state(node)
            if state == wanted:
                return state
            time.sleep(0.5)
        return state

    def transition(self, node: str, label: str) -> bool:
        from lifecycle_msgs.msg import Transition
        from lifecycle_msgs.srv import ChangeState

        ids = {"configure": Transition.TRANSITION_CONFIGURE, "activate": Transition.TRANSITION_ACTIVATE}
        response = self.call(ChangeState, f"{node}/change_state", ChangeState.Request(transition=Transition(id=ids[label])))
        return bool(response and response.success)

    def parameters(self, node: str, names: list[str]) -> dict[str, object]:
        from rcl_interfaces.srv import GetParameters
        from rclpy.parameter import parameter_value_to_python

        response = self.call(GetParameters, f"{node}/get_parameters", GetParameters.Request(names=names))
        return dict(zip(names, (parameter_value_to_python(v) for v in response.values))) if response else {}

    def topics(self) -> set[str]:
        return {name for name, _ in self.node.get_topic_names_and_types()}

    def close(self) -> None:
        self.executor.shutdown()
        self.node.destroy_node()
        self.context.try_shutdown()


@dataclass
class Scenario:
    name: str
    arguments: list[str]
    check: Callable[["Run"], tuple[bool, str]]
    files: dict[str, str] = field(default_factory=dict)  # name -> YAML text, written beside the logs; {name} in arguments


@dataclass
class Run:
    launch: Launch
    graph: Graph


def last_error(launch: Launch) -> str:
    """The launch's own one-line reason, or the node's, for a launch that ended."""
    for pattern in (r"Caught exception in launch.*", r"cannot start: .*", r"\[ERROR\].*", r"error: .*"):
        found = [m.group(0) for line in launch.lines for m in [re.search(pattern, line)] if m]
        if found:
            return found[-1][:240]
    return (launch.lines[-1] if launch.lines else "(no output)")[:240]


def active_then_ctrl_c(node: str, extra: Callable[[Run], tuple[bool, str]] | None = None) -> Callable[[Run], tuple[bool, str]]:
    """The node reaches 'active' (then ``extra`` checks more), and Ctrl-C ends the launch and the node, exit code 0."""

    def check(run: Run) -> tuple[bool, str]:
        state = run.graph.wait_state(node, "active", STARTUP_S, run.launch)
        if state != "active":
            code = run.launch.wait(10.0)
            return False, f"{node} never active (last state {state}, launch exit {code}): {last_error(run.launch)}"
        ok, detail = extra(run) if extra else (True, "")
        pids = run.launch.node_pids()
        code, took = run.launch.ctrl_c()
        left = [p for p in pids if alive(p)]
        ok = ok and code == 0 and not left
        return ok, f"{node} active{'; ' + detail if detail else ''}; Ctrl-C: launch exit {code} after {took:.1f} s, node process {'left running' if left else 'gone'}"

    return check


def refused(expected: str) -> Callable[[Run], tuple[bool, str]]:
    """The launch ends by itself with exit code 1, one line containing ``expected``, and no node process started."""

    def check(run: Run) -> tuple[bool, str]:
        code = run.launch.wait(60.0)
        run.launch.reader.join(5.0)
        line = run.launch.wait_for_line(re.escape(expected), 1.0)
        started = run.launch.node_pids()
        ok = code == 1 and line is not None and not started
        return ok, f"launch exit {code}, {'no process started' if not started else f'node started (pids {started})'}: {(line or last_error(run.launch)).strip()[:200]}"

    return check


def namespace_check(run: Run) -> tuple[bool, str]:
    topics = run.graph.topics()
    deadline = time.monotonic() + 20.0
    while "/robot1/depth" not in topics and time.monotonic() < deadline:
        time.sleep(0.5)
        topics = run.graph.topics()
    ours = sorted(t for t in topics if t.startswith("/robot1/"))
    return "/robot1/depth" in topics and "/depth" not in topics, f"{len(ours)} topics under /robot1 (e.g. {', '.join(ours[:3])})"


def params_check(run: Run) -> tuple[bool, str]:
    got = run.graph.parameters("/perception_node", ["processing.max_rate_hz", "points.stride", "output.normals"])
    ok = got == {"processing.max_rate_hz": 5.0, "points.stride": 8, "output.normals": False}
    return ok, f"parameters from the file: {got}"


def autostart_false(run: Run) -> tuple[bool, str]:
    state = run.graph.wait_state("/perception_node", "unconfigured", STARTUP_S, run.launch)
    if state != "unconfigured":
        return False, f"state {state}, launch exit {run.launch.process.poll()}: {last_error(run.launch)}"
    time.sleep(2.0)
    still = run.graph.state("/perception_node")
    configured = run.graph.transition("/perception_node", "configure")
    activated = configured and run.graph.transition("/perception_node", "activate")
    final = run.graph.state("/perception_node")
    code, took = run.launch.ctrl_c()
    ok = still == "unconfigured" and activated and final == "active" and code == 0
    return ok, f"waited {still} for a lifecycle manager; configure {'ok' if configured else 'FAILED'}, activate {'ok' if activated else 'FAILED'} -> {final}; Ctrl-C: exit {code} after {took:.1f} s"


def rviz_missing(run: Run) -> tuple[bool, str]:
    line = run.launch.wait_for_line(r"rviz2 is not installed", 30.0)
    return line is not None, "warned: " + (line.split("]: ")[-1][:90] if line else "NO WARNING")


def misspelt(run: Run) -> tuple[bool, str]:
    line = run.launch.wait_for_line(r"did you mean 'autostart'", 30.0)
    return line is not None, "warned: " + (line.split("]: ")[-1][:80] if line else "NO WARNING")


def node_exit(run: Run) -> tuple[bool, str]:
    """The node process ending by itself (SIGTERM from outside) ends the launch too (on_exit=Shutdown)."""
    state = run.graph.wait_state("/perception_node", "active", STARTUP_S, run.launch)
    pids = run.launch.node_pids()
    if state != "active" or not pids:
        return False, f"node never active (state {state}): {last_error(run.launch)}"
    os.kill(pids[0], signal.SIGTERM)
    code = run.launch.wait(30.0)
    return code is not None, f"node killed (SIGTERM): launch ended by itself, exit {code}"


def ctrl_c_while_starting(run: Run) -> tuple[bool, str]:
    """Ctrl-C a second after the node process started (still loading): everything ends, nothing left running."""
    line = run.launch.wait_for_line(r"process started with pid", STARTUP_S)
    if line is None:
        return False, f"no process started: {last_error(run.launch)}"
    time.sleep(1.0)
    pids = run.launch.node_pids()
    code, took = run.launch.ctrl_c()
    left = [p for p in pids if alive(p)]
    return code is not None and not left, f"Ctrl-C 1 s after start: launch exit {code} after {took:.1f} s, node process {'left running' if left else 'gone'}"


PARAMS_YAML = "/**:\n  ros__parameters:\n    processing: {max_rate_hz: 5.0}\n    points: {stride: 8}\n    output: {normals: false}\n"
SCENARIOS = [
    Scenario("default arguments", [], active_then_ctrl_c("/perception_node")),
    Scenario("namespace:=robot1", ["namespace:=robot1"], active_then_ctrl_c("/robot1/perception_node", namespace_check)),
    Scenario("params_file:=<user file>", ["params_file:={params}"], active_then_ctrl_c("/perception_node", params_check), {"params": PARAMS_YAML}),
    Scenario("params_file:=two_cameras.yaml", ["params_file:={share}/config/two_cameras.yaml"], active_then_ctrl_c("/perception_node")),
    Scenario("autostart:=false", ["autostart:=false"], autostart_false),
    Scenario("rviz:=true without rviz2", ["rviz:=true"], active_then_ctrl_c("/perception_node", rviz_missing)),
    Scenario("misspelt autostrat:=false", ["autostrat:=false"], active_then_ctrl_c("/perception_node", misspelt)),
    Scenario("bad log_level:=loud", ["log_level:=loud"], refused("log_level:='loud' is not one of")),
    Scenario("bad backend:=bogus", ["backend:=bogus"], refused('provided value "bogus" is not valid')),
    Scenario("bad params_file:=/nonexistent.yaml", ["params_file:=/nonexistent.yaml"], refused("params_file:=/nonexistent.yaml does not exist")),
    Scenario("bad model:=/nonexistent.onnx", ["model:=/nonexistent.onnx"], refused("model:=/nonexistent.onnx does not exist")),
    Scenario("Ctrl-C while the node starts", [], ctrl_c_while_starting),
    Scenario("node exits -> launch ends", [], node_exit),
]


def run_scenario(index: int, scenario: Scenario, env: dict[str, str], work: Path) -> tuple[bool, str]:
    folder = work / "logs" / f"{index:02d}"
    folder.mkdir(parents=True)
    names = {"share": str(work / "prefix" / "share" / PACKAGE)}
    for name, text in scenario.files.items():
        (folder / f"{name}.yaml").write_text(text)
        names[name] = str(folder / f"{name}.yaml")
    arguments = [a.format(**names) for a in scenario.arguments]
    domain = 1 + (os.getpid() * 3 + index) % 100
    graph = Graph(domain)
    launch = Launch(env, domain, arguments, folder / "launch.log")
    try:
        return scenario.check(Run(launch, graph))
    except Exception as exc:  # a scenario that broke is a failed line, and the next one runs
        return False, f"{type(exc).__name__}: {exc}"
    finally:
        launch.close()
        graph.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--launch", type=Path, required=True, help="root of a ros2/launch checkout (holds launch/launch/__init__.py)")
    parser.add_argument("--launch-ros", type=Path, required=True, help="root of a ros2/launch_ros checkout (holds launch_ros/ and ros2launch/)")
    parser.add_argument("--only", nargs="+", metavar="TEXT", help="run only the scenarios whose name contains one of these")
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder (set-up and per-scenario launch logs)")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="launch_scenarios_"))
    try:
        env = prepare(work, args.launch.resolve(), args.launch_ros.resolve())
        scenarios = [s for s in SCENARIOS if not args.only or any(t in s.name for t in args.only)]
        passed = 0
        for index, scenario in enumerate(scenarios):
            start = time.monotonic()
            ok, detail = run_scenario(index, scenario, env, work)
            passed += ok
            print(f"{'PASS' if ok else 'FAIL'}  {scenario.name:<38} {time.monotonic() - start:5.1f} s  {detail}", flush=True)
        print(f"{passed} passed, {len(scenarios) - passed} failed")
        if args.keep:
            print(f"set-up and launch logs: {work}")
        return 0 if passed == len(scenarios) else 1
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
