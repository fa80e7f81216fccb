"""Reading and writing rosbag2 bags (sqlite3 and mcap, metadata versions 1-9) through ``rosbags``.

Every topic a bag written here declares carries its offered QoS (``offered_qos_profiles``, as ``ros2 bag record``
writes them: replay then keeps e.g. the transient-local class table latched), and MCAP channels carry the
``topic_type_hash`` metadata (RIHS01) rosbag2's MCAP plugin writes next to ``offered_qos_profiles``.

Every failure to read a bag (missing, truncated, corrupt, unsupported) surfaces as :class:`BagError`
with one line that names the bag and the problem, whether it happens on opening or half-way through
the messages. Bags are written into a hidden temporary folder next to the target and renamed into
place when complete, so a crash never leaves a half-written bag under the requested name; a storage
fault while writing (full disk, read-only or vanished folder) is :class:`BagWriteError`, one line that
names the bag, the cause and what was left.
"""
from __future__ import annotations

import os
import shutil
import struct
import tempfile
from contextlib import contextmanager
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from types import TracebackType
from typing import Any, Iterable, Iterator, Literal

from mtl_perception.bags.write_faults import STORAGE_FAULTS, describe, reason

STORAGES = ("sqlite3", "mcap")
Storage = Literal["sqlite3", "mcap"]


class BagError(ValueError):
    """A bag cannot be read or written; the message names the bag, the problem and the fix."""


@lru_cache(maxsize=1)
def typestore() -> Any:
    """The ROS 2 message type store used to (de)serialise messages (sensor_msgs, std_msgs, ...)."""
    from rosbags.typesys import Stores, get_typestore

    return get_typestore(Stores.LATEST)


INFINITE = (9223372036, 854775807)  # rmw's "infinite" duration (sec, nsec), as rosbag2 records it
STRING_TYPE = "std_msgs/msg/String"  # the class table: latched (transient local, depth 1)


def qos_profile(reliability: str = "reliable", durability: str = "volatile", depth: int = 10, history: str = "keep_last") -> Any:
    """A rosbags ``Qos`` (what metadata.yaml's offered_qos_profiles lists) from policy names."""
    from rosbags.interfaces import Qos, QosDurability, QosHistory, QosLiveliness, QosReliability, QosTime

    infinite = QosTime(*INFINITE)
    return Qos(QosHistory[history.upper()], int(depth), QosReliability[reliability.upper()], QosDurability[durability.upper()],
               infinite, infinite, QosLiveliness.AUTOMATIC, infinite, False)


def default_qos(msgtype: str) -> list[Any]:
    """The QoS this package's publishers offer for a message type: the class table latched, data reliable."""
    if msgtype == STRING_TYPE:
        return [qos_profile("reliable", "transient_local", 1)]
    return [qos_profile("reliable", "volatile", 10)]


def qos_from_rclpy(profile: Any) -> Any:
    """A rosbags ``Qos`` from an rclpy ``QoSProfile`` (e.g. from ``Node.get_publishers_info_by_topic``)."""
    from rosbags.interfaces import Qos, QosDurability, QosHistory, QosLiveliness, QosReliability, QosTime

    def duration(value: Any) -> Any:
        nanoseconds = int(getattr(value, "nanoseconds", 0) or 0)
        if nanoseconds <= 0 or nanoseconds >= INFINITE[0] * 1_000_000_000:
            return QosTime(*INFINITE)
        return QosTime(nanoseconds // 1_000_000_000, nanoseconds % 1_000_000_000)

    def policy(enum: Any, value: Any) -> Any:
        try:
            return enum(int(value))
        except (ValueError, TypeError):
            return enum.UNKNOWN

    return Qos(policy(QosHistory, profile.history), int(profile.depth), policy(QosReliability, profile.reliability),
               policy(QosDurability, profile.durability), duration(profile.deadline), duration(profile.lifespan),
               policy(QosLiveliness, profile.liveliness), duration(profile.liveliness_lease_duration),
               bool(profile.avoid_ros_namespace_conventions))


def _mcap_writer_with_type_hash() -> type:
    """rosbags' MCAP writer whose channels also carry ``topic_type_hash`` (as rosbag2_storage_mcap writes it)."""
    from io import BytesIO
    from typing import cast

    from rosbags.rosbag2 import storage_mcap

    class McapWriterWithTypeHash(storage_mcap.McapWriter):
        def add_connection(self, connection: Any, offered_qos_profiles: str) -> None:
            metadata = BytesIO()
            for key, value in (("offered_qos_profiles", offered_qos_profiles), ("topic_type_hash", connection.digest or "")):
                storage_mcap.write_string(metadata, key)
                storage_mcap.write_string(metadata, value)
            self.channels.append(storage_mcap.Channel(connection.id, connection.msgtype, connection.topic,
                                                      cast(Any, connection.ext).serialization_format, metadata.getvalue()))
            self.channel_stats[connection.id] = 0
            storage_mcap.write_channel(self.chunk.bio, self.channels[-1], self.schemas)

    return McapWriterWithTypeHash


def _writer_class() -> type:
    from rosbags.rosbag2 import StoragePlugin, Writer

    class BagFileWriter(Writer):
        STORAGE_PLUGINS = {**Writer.STORAGE_PLUGINS, StoragePlugin.MCAP: _mcap_writer_with_type_hash()}

    return BagFileWriter


@dataclass(frozen=True)
class TopicInfo:
    """One topic of a bag: name, message type (``sensor_msgs/msg/Image``) and message count."""

    name: str
    msgtype: str
    count: int


def header_stamp_ns(raw: bytes | memoryview) -> int:
    """Header stamp (ns) of a serialised message whose first field is ``std_msgs/Header``.

    Reads the CDR encapsulation and the two stamp fields without deserialising the message
    (Image, CompressedImage and CameraInfo all start with a header).
    """
    data = bytes(raw[:12])
    if len(data) < 12:
        raise BagError(f"message of {len(raw)} bytes is too short to hold a header stamp; the bag is corrupt")
    order = "<" if data[1] & 1 else ">"  # encapsulation id 0x0001 = CDR little endian, 0x0000 = big endian
    sec, nanosec = struct.unpack(order + "iI", data[4:12])
    return sec * 1_000_000_000 + nanosec


class BagReader:
    """An open rosbag2 bag (a bag folder, or a single .db3/.mcap file): topics and raw messages.

    Use as a context manager. ``messages`` yields ``(topic, log_time_ns, raw_cdr)`` in log-time order;
    ``deserialize`` turns raw bytes into a ``rosbags`` message object.
    """

    def __init__(self, path: str | os.PathLike) -> None:
        from rosbags.rosbag2 import Reader

        self.path = Path(path)
        if not self.path.exists():
            raise BagError(f"bag not found: {self.path}; give a rosbag2 folder (with metadata.yaml) or a .db3/.mcap file")
        try:
            self._reader = Reader(self.path)
            self._reader.open()
        except Exception as exc:  # rosbags, sqlite3, yaml and mcap parsing raise many types for bad files
            raise BagError(f"cannot open bag {self.path}: {reason(exc)}; the bag is truncated, corrupt or not a rosbag2 bag "
                           "(re-record or re-copy it; `ros2 bag reindex` can rebuild a lost metadata.yaml)") from None
        self._topics: dict[str, TopicInfo] = {}
        self._connections: dict[str, list[Any]] = {}
        for connection in self._reader.connections:
            info = self._topics.get(connection.topic)
            count = connection.msgcount + (info.count if info else 0)
            self._topics[connection.topic] = TopicInfo(connection.topic, connection.msgtype, count)
            self._connections.setdefault(connection.topic, []).append(connection)

    @property
    def topics(self) -> dict[str, TopicInfo]:
        """Topic name -> TopicInfo, for every topic the bag declares."""
        return dict(self._topics)

    @property
    def storage(self) -> str:
        """``sqlite3`` or ``mcap``."""
        storage = self._reader.storage
        plugins = getattr(storage, "storages", None) or [storage]
        name = type(plugins[0]).__name__.lower()
        return "mcap" if "mcap" in name else "sqlite3"

    def topic_listing(self) -> str:
        """``/a (sensor_msgs/msg/Image, 12 msgs), ...`` for error messages."""
        if not self._topics:
            return "(the bag has no topics)"
        return ", ".join(f"{t.name} ({t.msgtype}, {t.count} msgs)" for t in sorted(self._topics.values(), key=lambda t: t.name))

    def messages(self, topics: Iterable[str]) -> Iterator[tuple[str, int, bytes]]:
        """Raw messages of ``topics`` in log-time order; BagError if the storage breaks half-way."""
        wanted = [c for topic in topics for c in self._connections.get(topic, [])]
        if not wanted:
            return
        iterator = self._reader.messages(connections=wanted)
        seen: set[str] = set()
        while True:
            try:
                connection, log_time, raw = next(iterator)
            except StopIteration:
                break
            except Exception as exc:
                raise BagError(f"bag {self.path} broke off while reading messages: {reason(exc)}; "
                               "the bag is truncated or corrupt (re-record or re-copy it)") from None
            seen.add(connection.topic)
            yield connection.topic, int(log_time), raw
        silent = sorted({c.topic for c in wanted if c.msgcount > 0} - seen)
        if silent:
            raise BagError(f"bag {self.path}: metadata.yaml lists messages on {', '.join(silent)} but the storage holds none for "
                           "them; the metadata does not match the storage file (edited or from another recording): "
                           "rebuild it with `ros2 bag reindex`")

    def offered_qos(self, topic: str) -> list[Any]:
        """The QoS profiles the bag recorded as offered on ``topic`` (rosbags ``Qos``; empty when it recorded none)."""
        for connection in self._connections.get(topic, []):
            profiles = list(getattr(connection.ext, "offered_qos_profiles", []) or [])
            if profiles:
                return profiles
        return []

    def deserialize(self, raw: bytes | memoryview, topic: str) -> Any:
        """The message object of one raw message of ``topic``."""
        msgtype = self._topics[topic].msgtype
        try:
            return typestore().deserialize_cdr(raw, msgtype)
        except Exception as exc:
            raise BagError(f"bag {self.path}: a {msgtype} message on {topic} does not deserialise ({reason(exc)}); the bag is corrupt") from None

    def close(self) -> None:
        if self._reader.is_open:
            self._reader.close()

    def __enter__(self) -> "BagReader":
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.close()


class BagWriteError(BagError):
    """Writing a bag failed in its storage (a full disk, a read-only or vanished folder); nothing is left at the path."""


class BagWriter:
    """Writes a rosbag2 bag atomically: a hidden temporary folder is renamed to ``path`` on success.

    ``add_topic`` declares a topic; ``write`` takes a ``rosbags`` message object, ``write_raw`` CDR bytes
    (e.g. copied from another bag or received from a raw rclpy subscription). Use as a context manager:
    an exception inside the ``with`` block discards everything written. A storage fault (full disk,
    read-only or vanished folder; ``OSError`` or ``sqlite3.Error`` from either storage) discards the
    partial bag and raises :class:`BagWriteError` naming the bag, the cause and what was left: the path
    then holds a complete bag or nothing.
    """

    def __init__(self, path: str | os.PathLike, storage: Storage = "sqlite3", overwrite: bool = False, version: int = 9) -> None:
        from rosbags.rosbag2 import StoragePlugin

        from mtl_perception.safeload import temp_name_prefix

        if storage not in STORAGES:
            raise BagError(f"unknown bag storage '{storage}'; choose one of {list(STORAGES)}")
        self.path = Path(path)
        if self.path.exists() and not overwrite:
            raise BagError(f"output bag {self.path} exists already; choose another path or pass --overwrite")
        self._staging: Path | None = None
        self._writer: Any = None
        self._connections: dict[str, Any] = {}
        self._closed = False
        plugin = StoragePlugin.MCAP if storage == "mcap" else StoragePlugin.SQLITE3
        with self._storage_faults():
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._staging = Path(tempfile.mkdtemp(prefix=temp_name_prefix(self.path.name), suffix=".tmp", dir=self.path.parent))
            self._writer = _writer_class()(self._staging / self.path.name, version=version, storage_plugin=plugin)
            self._writer.open()

    def add_topic(self, topic: str, msgtype: str, qos: Iterable[Any] | None = None) -> None:
        """Declare ``topic`` with message type ``msgtype`` (once per topic) and the QoS offered on it.

        ``qos``: rosbags ``Qos`` profiles (``qos_profile``, ``qos_from_rclpy``, ``BagReader.offered_qos``);
        None or empty = what this package's publishers offer for the type (``default_qos``).
        """
        if topic in self._connections:
            raise BagError(f"topic {topic} is declared twice in output bag {self.path}")
        profiles = list(qos or []) or default_qos(msgtype)
        with self._storage_faults():
            self._connections[topic] = self._writer.add_connection(topic, msgtype, typestore=typestore(), offered_qos_profiles=profiles)

    def has_topic(self, topic: str) -> bool:
        return topic in self._connections

    def write(self, topic: str, log_time_ns: int, message: Any) -> None:
        """Serialise and write one message object (its type is the topic's)."""
        connection = self._connections[topic]
        raw = typestore().serialize_cdr(message, connection.msgtype)
        with self._storage_faults():
            self._writer.write(connection, int(log_time_ns), raw)

    def write_raw(self, topic: str, log_time_ns: int, raw: bytes | memoryview) -> None:
        """Write one already-serialised CDR message."""
        with self._storage_faults():
            self._writer.write(self._connections[topic], int(log_time_ns), bytes(raw))

    def close(self) -> Path:
        """Finish the bag and move it into place; returns its path."""
        if self._closed:
            return self.path
        assert self._staging is not None
        with self._storage_faults():
            self._writer.close()
            _replace_dir(self._staging / self.path.name, self.path)
        self._closed = True
        shutil.rmtree(self._staging, ignore_errors=True)
        return self.path

    def abort(self) -> None:
        """Discard the partial bag."""
        if self._closed:
            return
        self._closed = True
        if self._writer is not None:
            try:
                self._writer.abort()  # closes the storage file without its index or metadata
            except Exception:  # the bag is being thrown away; a close failure changes nothing
                pass
        if self._staging is not None:
            shutil.rmtree(self._staging, ignore_errors=True)

    @contextmanager
    def _storage_faults(self) -> Iterator[None]:
        """Turn a storage fault inside the block into BagWriteError, the partial bag discarded."""
        try:
            yield
        except STORAGE_FAULTS as exc:
            raise self._failed(exc) from exc

    def _failed(self, exc: BaseException) -> BagWriteError:
        fault = describe(exc, self.path.parent, self._staging)
        staging = self._staging
        self.abort()
        if staging is None:
            left = "nothing was written"
        elif staging.exists():
            left = f"the partial bag is left at {staging}: delete it"
        else:
            left = f"the partial bag ({staging.name}) was removed"
        if self.path.exists():
            left += f"; the bag already at {self.path} is unchanged"
        elif staging is not None:
            left += f", nothing is left at {self.path}"
        return BagWriteError(f"cannot write bag {self.path}: {fault.cause}; {left}; {fault.fix}")

    def __enter__(self) -> "BagWriter":
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()


def _replace_dir(source: Path, target: Path) -> None:
    """Move folder ``source`` to ``target``, replacing an existing ``target`` (old one removed after)."""
    if not target.exists():
        os.replace(source, target)
        return
    from mtl_perception.safeload import temp_name_prefix

    trash = target.with_name(f"{temp_name_prefix(target.name)}old-{os.getpid()}")
    os.replace(target, trash)
    try:
        os.replace(source, target)
    except OSError:
        os.replace(trash, target)  # the old bag stays in place
        raise
    if trash.is_dir():
        shutil.rmtree(trash, ignore_errors=True)
    else:
        trash.unlink(missing_ok=True)
