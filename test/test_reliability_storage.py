"""Storage faults of every bag writer (bag-make, bag-eval's prediction bag, replay --record; sqlite3 and mcap).

A full disk, a read-only folder and a folder that vanishes mid-write each end the command with one line
``mtl-perception NAME: error: cannot write bag OUT: CAUSE; ...`` and exit code 2, and leave a complete
readable bag or nothing (no hidden partial folder either). The full disk is a small tmpfs (mounted as root;
skipped with the reason where mounting is refused); the read-only folder is a read-only tmpfs as root, a
mode-0555 folder otherwise; the vanished folder is removed by a hook on the writer's second message.
"""
from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import replace
from pathlib import Path
from typing import Callable, Iterator

import pytest
from bags_support import FRAMES, HEIGHT, WIDTH, make_synthetic_bag, run_cli
from ros_fixtures import ros_graph

from mtl_perception.bags.io import BagReader, BagWriteError, BagWriter
from mtl_perception.cli import main

WRITERS = ("bag-make", "bag-eval", "replay")
STORAGES = ("sqlite3", "mcap")
DISK_SIZE = "4m"  # room for the largest bag of these tests (bag-eval's, about 1.6 MB) once the filler is gone
LEFT_FREE = 64 * 1024  # what the filler leaves: less than any of the bags


# ---------------------------------------------------------------------------------------------- folders

def _mount_tmpfs(folder: Path, options: str) -> str | None:
    """Mount a tmpfs on ``folder``: None when mounted, else why not (not root, no mount, refused)."""
    if shutil.which("mount") is None:
        return "no mount command"
    folder.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(folder)], capture_output=True, text=True)
    return None if done.returncode == 0 else (done.stderr.strip() or f"mount exited with {done.returncode}")


def _unmount(folder: Path) -> None:
    if subprocess.run(["umount", str(folder)], capture_output=True).returncode != 0:
        subprocess.run(["umount", "-l", str(folder)], capture_output=True)


def _fill(disk: Path, leave: int) -> Path:
    """A file taking all of ``disk``'s free space but ``leave`` bytes."""
    filler = disk / "filler"
    size = shutil.disk_usage(disk).free - leave
    with open(filler, "wb") as out:
        out.write(b"\0" * max(size, 0))
    return filler


@pytest.fixture()
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 4 MiB tmpfs, filled up to its last 64 KiB (``filler``)."""
    disk = tmp_path / "disk"
    why = _mount_tmpfs(disk, f"size={DISK_SIZE}")
    if why is not None:
        pytest.skip(f"no small file system to fill: mounting a tmpfs is refused here ({why}); it needs root")
    try:
        _fill(disk, LEFT_FREE)
        yield disk
    finally:
        _unmount(disk)


@pytest.fixture()
def read_only_folder(tmp_path: Path) -> Iterator[Path]:
    """A folder nobody can write into: a read-only tmpfs as root (root ignores mode bits), else mode 0555."""
    folder = tmp_path / "read_only"
    folder.mkdir()
    if os.geteuid() != 0:
        folder.chmod(0o555)
        yield folder
        folder.chmod(0o755)
        return
    why = _mount_tmpfs(folder, "ro,size=64k")
    if why is not None:
        pytest.skip(f"root writes into any mode-0555 folder and mounting a read-only tmpfs is refused ({why})")
    try:
        yield folder
    finally:
        _unmount(folder)


@pytest.fixture()
def vanishing(monkeypatch: pytest.MonkeyPatch) -> Callable[[Path], None]:
    """``arm(folder)``: the folder is deleted (as by ``rm -rf`` or an unplugged disk) just before the writer's second message."""
    def arm(folder: Path) -> None:
        calls = [0]
        for name in ("write", "write_raw"):
            original = getattr(BagWriter, name)

            def hooked(self: BagWriter, topic: str, log_time_ns: int, message: object, _original=original) -> None:
                calls[0] += 1
                if calls[0] == 2:
                    shutil.rmtree(folder)
                _original(self, topic, log_time_ns, message)

            monkeypatch.setattr(BagWriter, name, hooked)

    return arm


# ---------------------------------------------------------------------------------------------- writers

@pytest.fixture(scope="module")
def input_bag(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_synthetic_bag(tmp_path_factory.mktemp("storage_input") / "input")


graph = ros_graph(offset=29)  # a private ROS domain (replay joins it); ``graph`` marks the tests ``ros`` (conftest)


def command_line(writer: str, storage: str, out: Path, input_bag: Path, request: pytest.FixtureRequest) -> list[str]:
    """The writer's command writing bag ``out`` (replay: no node, it records what it publishes and copies)."""
    if writer == "bag-make":
        return ["bag-make", str(out), "--frames", str(FRAMES), "--height", str(HEIGHT), "--width", str(WIDTH),
                "--storage", storage, "--quiet"]
    if writer == "bag-eval":
        model = request.getfixturevalue("model_file")
        report = Path(request.getfixturevalue("tmp_path")) / "eval"
        return ["bag-eval", str(input_bag), "--model", str(model), "--output-bag", str(out), "--output-storage", storage,
                "--out", str(report), "--format", "md", "--quiet"]
    request.getfixturevalue("graph")
    return ["replay", str(input_bag), "--record", str(out), "--storage", storage, "--rate", "100", "--wait", "0",
            "--settle", "0"]


def one_error_line(capsys: pytest.CaptureFixture[str], writer: str, out: Path) -> str:
    """The command's stderr, checked to be the one error line about bag ``out``; returned for more checks."""
    err = capsys.readouterr().err
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith(f"mtl-perception {writer}: error: cannot write bag {out}: "), lines[0]
    return lines[0]


def assert_readable(bag: Path, storage: str) -> int:
    """The bag opens, in ``storage``, and every message its metadata lists reads; returns the message count."""
    with BagReader(bag) as reader:
        assert reader.storage == storage
        listed = sum(info.count for info in reader.topics.values())
        read = sum(1 for _ in reader.messages(list(reader.topics)))
        assert read == listed > 0
        return read


# ---------------------------------------------------------------------------------------------- tests

@pytest.mark.parametrize("storage", STORAGES)
@pytest.mark.parametrize("writer", WRITERS)
def test_full_disk_is_one_line_and_leaves_nothing(writer: str, storage: str, small_disk: Path, input_bag: Path,
                                                 request: pytest.FixtureRequest, capsys: pytest.CaptureFixture[str]) -> None:
    out = small_disk / "bag"
    args = command_line(writer, storage, out, input_bag, request)
    assert main(args) == 2
    line = one_error_line(capsys, writer, out)
    assert f"the disk holding {small_disk} is full" in line and "nothing is left at" in line
    assert sorted(p.name for p in small_disk.iterdir()) == ["filler"]  # no bag, no hidden partial folder
    (small_disk / "filler").unlink()  # room again: the same command writes a complete bag
    assert main(args) == 0
    assert assert_readable(out, storage) > 0


@pytest.mark.parametrize("storage", STORAGES)
@pytest.mark.parametrize("writer", WRITERS)
def test_read_only_folder_is_one_line(writer: str, storage: str, read_only_folder: Path, input_bag: Path,
                                      request: pytest.FixtureRequest, capsys: pytest.CaptureFixture[str]) -> None:
    out = read_only_folder / "bag"
    assert main(command_line(writer, storage, out, input_bag, request)) == 2
    line = one_error_line(capsys, writer, out)
    assert f"the folder {read_only_folder} is " in line and ("read-only" in line or "not writable" in line)
    assert "nothing was written" in line
    assert list(read_only_folder.iterdir()) == []


@pytest.mark.parametrize("storage", STORAGES)
@pytest.mark.parametrize("writer", WRITERS)
def test_folder_vanishing_mid_write_is_one_line(writer: str, storage: str, tmp_path: Path, input_bag: Path,
                                                vanishing: Callable[[Path], None], request: pytest.FixtureRequest,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    folder = tmp_path / "usb"
    out = folder / "bag"
    folder.mkdir()
    vanishing(folder)
    assert main(command_line(writer, storage, out, input_bag, request)) == 2
    line = one_error_line(capsys, writer, out)
    assert f"the folder {folder} vanished while the bag was written" in line
    assert not folder.exists()  # nothing was recreated behind the user's back


@pytest.mark.parametrize("storage", STORAGES)
def test_overwrite_onto_a_full_disk_keeps_the_old_bag(storage: str, small_disk: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = small_disk / "bag"
    (small_disk / "filler").unlink()
    old = assert_readable(make_synthetic_bag(out, storage, frames=2), storage)
    _fill(small_disk, LEFT_FREE)
    assert main(["bag-make", str(out), "--frames", str(FRAMES), "--height", str(HEIGHT), "--width", str(WIDTH),
                 "--storage", storage, "--overwrite", "--quiet"]) == 2
    line = one_error_line(capsys, "bag-make", out)
    assert f"the bag already at {out} is unchanged" in line
    assert assert_readable(out, storage) == old
    assert sorted(p.name for p in small_disk.iterdir()) == ["bag", "filler"]


def test_replay_record_onto_a_full_disk_exits_2_in_one_line(small_disk: Path, input_bag: Path, graph: object) -> None:
    """The case as reported: ``replay --record`` with the default sqlite3 storage traced back with exit code 1."""
    out = small_disk / "recording"
    done = run_cli("replay", str(input_bag), "--record", str(out), "--rate", "100", "--wait", "0", "--settle", "0")
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr
    errors = [line for line in done.stderr.splitlines() if line.startswith("mtl-perception")]
    assert len(errors) == 1 and errors[0].startswith(f"mtl-perception replay: error: cannot write bag {out}: the disk holding")
    assert sorted(p.name for p in small_disk.iterdir()) == ["filler"]


def test_a_failed_recording_leaves_the_node_serving(small_disk: Path, input_bag: Path, graph, model_file: Path,
                                                    tmp_path: Path) -> None:
    """The recording fails on a full disk; the perception node it recorded, and the ROS context, keep working."""
    from rclpy.lifecycle import TransitionCallbackReturn
    from rclpy.parameter import Parameter

    from mtl_perception.bags.replay import ReplayOptions, replay_bag
    from mtl_perception.ros.node import PerceptionNode

    values = {"autostart": False, "model.path": str(model_file), "model.provider": "cpu", "qos.reliability": "reliable",
              "qos.output_depth": 10, "input.image_topic": "/camera/image_raw", "input.camera_info_topic": "/camera/camera_info"}
    node = graph.add(PerceptionNode(namespace="/perception", context=graph.context,
                                    parameter_overrides=[Parameter(k, value=v) for k, v in values.items()]))
    try:
        assert node.trigger_configure() == TransitionCallbackReturn.SUCCESS
        assert node.trigger_activate() == TransitionCallbackReturn.SUCCESS
        options = ReplayOptions(rate=5.0, wait_s=20, settle_s=0.5, start_pause_s=0.2)
        with pytest.raises(BagWriteError, match="is full"):
            replay_bag(input_bag, replace(options, record=str(small_disk / "recording")),
                       log=print, context=graph.context)
        assert graph.context.ok() and node.lifecycle_state == "active"
        before = node.diagnostics_values()["frames_processed"]
        report = replay_bag(input_bag, replace(options, record=str(tmp_path / "recording")),
                            log=print, context=graph.context)
        assert report.recorded["/perception/depth"] >= 1
        assert node.diagnostics_values()["frames_processed"] > before
        assert_readable(tmp_path / "recording", "sqlite3")
    finally:
        node.release()
        graph.remove(node)
        node.destroy_node()


def test_fault_descriptions_of_both_storages(tmp_path: Path) -> None:
    """The causes the mounts above cannot show here: mode bits (as a non-root user meets them), other errnos."""
    import errno
    import sqlite3

    from mtl_perception.bags.write_faults import describe

    staging = tmp_path / ".bag.x.tmp"
    staging.mkdir()
    denied = describe(PermissionError(errno.EACCES, "Permission denied", str(staging)), tmp_path, staging)
    assert denied.kind == "read-only" and denied.cause == f"the folder {tmp_path} is not writable (Permission denied)"
    full = describe(sqlite3.OperationalError("database or disk is full"), tmp_path, staging)
    assert full.kind == "full" and full.cause.startswith(f"the disk holding {tmp_path} is full (sqlite3: database or disk is full; ")
    assert describe(OSError(errno.EDQUOT, "Disk quota exceeded"), tmp_path, staging).kind == "full"
    assert describe(OSError(errno.EIO, "Input/output error"), tmp_path, staging).cause == "the storage failed (Input/output error)"
    staging.rmdir()  # the partial bag deleted by someone else, its folder still there
    gone = describe(sqlite3.OperationalError("disk I/O error"), tmp_path, staging)
    assert gone.kind == "vanished" and gone.cause.startswith(f"the folder {staging} vanished")
    not_created = describe(OSError(errno.EROFS, "Read-only file system"), tmp_path / "new" / "deeper", None)
    assert not_created.kind == "read-only" and not_created.cause.startswith(f"the folder {tmp_path} is ")
