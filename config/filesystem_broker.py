"""The serverless broker of the embedded default: kombu's filesystem transport, made safe for several processes.

kombu's own transport writes a message straight under its final name and lets readers take it at once, so a worker
can read a file that another process is still writing and die on the half of a JSON document it found. It also
rewrites the exchange tables (fan-out: worker control and gossip) in place, truncating them before the new content
is written. Here every file a reader may see is complete:

- a message is written under a hidden temporary name in the queue folder and renamed to its final name, which is
  atomic within one filesystem;
- a reader parses the file where it lies and only then claims it by renaming it into the processed folder (also
  atomic, so two readers never both get it); a file that is empty or unparsable is treated as not there yet;
- a file that stays unparsable for longer than ``BROKER_BAD_MESSAGE_GRACE`` seconds (by its modification time, so
  any process may decide) is moved into ``bad/`` beside the queue folder and logged, never retried forever;
- exchange tables are replaced by rename under an exclusive lock of their own, and read as a whole.

Messages taken by a worker that then dies are lost to the broker, as with kombu's transport; the registry does not
depend on them: events and deliveries live in the database and beat's sweeps send what was not sent.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import re
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from queue import Empty
from typing import Any

from kombu.transport import filesystem
from kombu.utils.encoding import bytes_to_str, str_to_bytes
from kombu.utils.json import dumps, loads

logger = logging.getLogger(__name__)

TEMP_PREFIX = ".tmp-"
DEFAULT_BAD_MESSAGE_GRACE = 30.0
EXCHANGE_NAME = re.compile(r"[A-Za-z0-9._-]+")


def write_atomically(path: Path | str, data: bytes) -> None:
    """Write ``data`` to ``path`` so that no reader ever sees part of it: a hidden sibling, then a rename."""
    path = Path(path)
    temporary = path.with_name(f"{TEMP_PREFIX}{uuid.uuid4().hex}")
    try:
        with open(temporary, "wb") as file:
            file.write(data)
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(OSError):
            temporary.unlink()
        raise


def parse(data: bytes) -> Any:
    """The JSON document in ``data``; ValueError when it is empty or not (yet) a whole document."""
    if not data.strip():
        raise ValueError("empty")
    return loads(bytes_to_str(data))


class Channel(filesystem.Channel):
    @property
    def bad_message_grace(self) -> float:
        return float(self.transport_options.get("bad_message_grace", DEFAULT_BAD_MESSAGE_GRACE))

    @property
    def claim_folder(self) -> Path:
        # Same filesystem as the queue folder, so that claiming a message is one atomic rename.
        return Path(self.processed_folder)

    @property
    def bad_folder(self) -> Path:
        return Path(self.data_folder_in).parent / "bad"

    def _put(self, queue: str, payload: Any, **kwargs: Any) -> None:
        # kombu's name: ordered by a millisecond clock, then unique; the queue's name after the first dot.
        name = f"{round(time.monotonic() * 1000)}_{uuid.uuid4()}.{queue}.msg"
        try:
            write_atomically(Path(self.data_folder_out) / name, str_to_bytes(dumps(payload)))
        except OSError as exc:
            raise filesystem.ChannelError(f"Cannot add message {name!r} to the queue folder") from exc

    def _get(self, queue: str) -> Any:
        suffix = f".{queue}.msg"
        folder = Path(self.data_folder_in)
        for name in sorted(os.listdir(folder)):
            if name.startswith(TEMP_PREFIX) or name.partition(".")[2] != suffix[1:]:
                continue
            path = folder / name
            try:
                data = path.read_bytes()
            except FileNotFoundError:
                continue  # another reader claimed it
            try:
                payload = parse(data)
            except ValueError:
                self._unparsable(path)
                continue
            claimed = self.claim_folder / name
            try:
                os.rename(path, claimed)
            except FileNotFoundError:
                continue  # another reader claimed it between our read and our rename
            if not self.store_processed:
                with contextlib.suppress(OSError):
                    claimed.unlink()
            return payload
        raise Empty()

    def _unparsable(self, path: Path) -> None:
        """Leave a file that may still be in writing; move one that has stayed unreadable past the grace aside."""
        try:
            age = time.time() - path.stat().st_mtime
        except FileNotFoundError:
            return
        if age < self.bad_message_grace:
            return
        self.bad_folder.mkdir(parents=True, exist_ok=True)
        try:
            os.rename(path, self.bad_folder / path.name)
        except FileNotFoundError:
            return
        logger.error(
            "broker message %s was still unreadable after %.0f s; moved it to %s",
            path.name,
            age,
            self.bad_folder,
        )

    # --- exchange tables (fan-out) ------------------------------------------------------------------------

    def _table_file(self, exchange: str) -> Path:
        # The name becomes a file name: only characters that cannot leave the control folder.
        if exchange and (not EXCHANGE_NAME.fullmatch(exchange) or not exchange.strip(".")):
            raise filesystem.ChannelError(f"Invalid exchange name: {exchange!r}")
        return Path(self.control_folder) / f"{exchange}.exchange"

    @contextlib.contextmanager
    def _table_lock(self, exchange: str) -> Iterator[Path]:
        file = self._table_file(exchange)
        file.parent.mkdir(parents=True, exist_ok=True)
        with open(file.with_name(file.name + ".lock"), "a") as lock:
            fcntl.flock(lock.fileno(), fcntl.LOCK_EX)
            try:
                yield file
            finally:
                fcntl.flock(lock.fileno(), fcntl.LOCK_UN)

    def _read_table(self, file: Path) -> list[filesystem.exchange_queue_t]:
        try:
            data = file.read_bytes()
        except FileNotFoundError:
            return []
        except OSError as exc:
            raise filesystem.ChannelError(f"Cannot open {file}") from exc
        try:
            return [filesystem.exchange_queue_t(*entry) for entry in parse(data)]
        except (ValueError, TypeError):
            # Left half-written by kombu's own transport: rebuilt by the next bind.
            logger.warning("exchange table %s is unreadable; treating it as empty", file.name)
            return []

    def get_table(self, exchange: str) -> list[filesystem.exchange_queue_t]:
        return self._read_table(self._table_file(exchange))

    def _queue_bind(self, exchange: str, routing_key: str, pattern: str, queue: str) -> None:
        entry = filesystem.exchange_queue_t(routing_key or "", pattern or "", queue or "")
        with self._table_lock(exchange) as file:
            queues = self._read_table(file)
            if entry not in queues:
                write_atomically(file, str_to_bytes(dumps([entry, *queues])))

    def _delete(self, queue: str, exchange: str, routing_key: str, pattern: str, *args: Any, **kwargs: Any) -> None:
        super(filesystem.Channel, self)._delete(queue, exchange, routing_key, pattern, *args, **kwargs)
        entry = filesystem.exchange_queue_t(routing_key or "", pattern or "", queue or "")
        with self._table_lock(exchange) as file:
            queues = self._read_table(file)
            if entry in queues:
                write_atomically(file, str_to_bytes(dumps([q for q in queues if q != entry])))


class Transport(filesystem.Transport):
    """``filesystem://`` with whole messages only (see the module's docstring)."""

    Channel = Channel
    # No host to connect to: without this kombu warns at every start that it fell back to "localhost".
    default_connection_params = {"port": None, "hostname": None}
