"""The embedded default's broker (config/filesystem_broker.py): readers only ever get whole messages, each once."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import time
from pathlib import Path
from queue import Empty

import pytest
from kombu import Connection

from config.filesystem_broker import TEMP_PREFIX

TRANSPORT = "config.filesystem_broker:Transport"
ROOT = Path(__file__).resolve().parent.parent


def options(folder: Path, **extra) -> dict:
    for sub in ("queue", "processed", "control"):
        (folder / sub).mkdir(parents=True, exist_ok=True)
    return {
        "data_folder_in": str(folder / "queue"),
        "data_folder_out": str(folder / "queue"),
        "processed_folder": str(folder / "processed"),
        "control_folder": str(folder / "control"),
        "polling_interval": 0.01,
        **extra,
    }


@pytest.fixture
def channel(tmp_path):
    connection = Connection("filesystem://", transport=TRANSPORT, transport_options=options(tmp_path))
    channel = connection.channel()
    yield channel
    channel.close()
    connection.release()


def test_a_message_still_being_written_is_not_taken_until_it_is_whole(channel, tmp_path):
    # What kombu's own transport does: the final name first, then the bytes.
    path = tmp_path / "queue" / f"{int(time.monotonic() * 1000)}_x.events.msg"
    document = json.dumps({"body": "hello", "n": 1}).encode()
    path.write_bytes(b"")
    with pytest.raises(Empty):
        channel._get("events")
    path.write_bytes(document[:10])
    with pytest.raises(Empty):
        channel._get("events")
    assert path.exists()
    path.write_bytes(document)
    assert channel._get("events") == {"body": "hello", "n": 1}
    assert not path.exists()
    assert os.listdir(tmp_path / "processed") == []


def test_a_message_unreadable_past_the_grace_is_moved_aside_and_logged(tmp_path, caplog):
    connection = Connection(
        "filesystem://", transport=TRANSPORT, transport_options=options(tmp_path, bad_message_grace=5)
    )
    channel = connection.channel()
    # Named to sort first: a reader takes files in name order, and the healthy message must not be taken before it.
    broken = tmp_path / "queue" / "0_broken.events.msg"
    broken.write_bytes(b'{"body": ')
    old = time.time() - 6
    os.utime(broken, (old, old))
    channel._put("events", {"body": "after"})
    with caplog.at_level(logging.ERROR, logger="config.filesystem_broker"):
        assert channel._get("events") == {"body": "after"}
    assert not broken.exists()
    assert (tmp_path / "bad" / "0_broken.events.msg").read_bytes() == b'{"body": '
    assert "0_broken.events.msg" in caplog.text and "moved it to" in caplog.text
    with pytest.raises(Empty):
        channel._get("events")
    channel.close()


def test_put_leaves_no_temporary_file_and_only_the_named_queue_is_read(channel, tmp_path):
    channel._put("deliveries", {"n": 1})
    channel._put("events", {"n": 2})
    names = os.listdir(tmp_path / "queue")
    assert len(names) == 2 and not any(name.startswith(TEMP_PREFIX) for name in names)
    assert channel._get("events") == {"n": 2}
    with pytest.raises(Empty):
        channel._get("events")
    assert channel._get("deliveries") == {"n": 1}


PRODUCER = """
import sys
from kombu import Connection
folder, name, count = sys.argv[1], sys.argv[2], int(sys.argv[3])
opts = {k: f"{folder}/{v}" for k, v in (("data_folder_in", "queue"), ("data_folder_out", "queue"),
        ("processed_folder", "processed"), ("control_folder", "control"))}
with Connection("filesystem://", transport="config.filesystem_broker:Transport", transport_options=opts) as conn:
    queue = conn.SimpleQueue("work")
    for i in range(count):
        # Megabyte bodies take several writes: a reader of a file in writing would see part of one.
        queue.put({"id": f"{name}-{i}", "pad": "x" * 1_000_000})
"""

CONSUMER = """
import sys, time
from queue import Empty
from kombu import Connection
folder, idle = sys.argv[1], float(sys.argv[2])
opts = {k: f"{folder}/{v}" for k, v in (("data_folder_in", "queue"), ("data_folder_out", "queue"),
        ("processed_folder", "processed"), ("control_folder", "control"))}
with Connection("filesystem://", transport="config.filesystem_broker:Transport", transport_options=opts) as conn:
    queue = conn.SimpleQueue("work")
    last = time.monotonic()
    while time.monotonic() - last < idle:
        try:
            message = queue.get(block=True, timeout=0.2)
        except Empty:
            continue
        print(message.payload["id"], flush=True)
        message.ack()
        last = time.monotonic()
"""


@pytest.mark.e2e
def test_concurrent_producers_and_consumers_deliver_every_message_exactly_once(tmp_path):
    options(tmp_path)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    consumers = [
        subprocess.Popen(
            [sys.executable, "-c", CONSUMER, str(tmp_path), "3"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=env,
        )
        for _ in range(3)
    ]
    producers = [
        subprocess.Popen([sys.executable, "-c", PRODUCER, str(tmp_path), f"p{n}", "60"], env=env) for n in range(3)
    ]
    for producer in producers:
        assert producer.wait(timeout=120) == 0
    received: list[str] = []
    for consumer in consumers:
        out, err = consumer.communicate(timeout=120)
        assert consumer.returncode == 0, err.decode()
        assert b"Error" not in err, err.decode()
        received += out.decode().split()
    expected = {f"p{n}-{i}" for n in range(3) for i in range(60)}
    assert len(received) == len(expected)
    assert set(received) == expected
    assert os.listdir(tmp_path / "queue") == []
    assert not (tmp_path / "bad").exists()


BINDER = """
import sys
from kombu import Connection
folder, name = sys.argv[1], sys.argv[2]
opts = {k: f"{folder}/{v}" for k, v in (("data_folder_in", "queue"), ("data_folder_out", "queue"),
        ("processed_folder", "processed"), ("control_folder", "control"))}
with Connection("filesystem://", transport="config.filesystem_broker:Transport", transport_options=opts) as conn:
    channel = conn.channel()
    for i in range(60):
        channel._queue_bind("fan", "", "", f"{name}-{i}")
        assert all(len(entry) == 3 for entry in channel.get_table("fan"))
"""


@pytest.mark.e2e
def test_exchange_tables_bound_from_many_processes_keep_every_queue(tmp_path, channel):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    binders = [
        subprocess.Popen([sys.executable, "-c", BINDER, str(tmp_path), f"b{n}"], env=env, stderr=subprocess.PIPE)
        for n in range(3)
    ]
    for binder in binders:
        _, err = binder.communicate(timeout=60)
        assert binder.returncode == 0, err.decode()
    table = channel.get_table("fan")
    assert {entry.queue for entry in table} == {f"b{n}-{i}" for n in range(3) for i in range(60)}
    channel._delete("b0-0", "fan", "", "")
    assert "b0-0" not in {entry.queue for entry in channel.get_table("fan")}
    assert len(channel.get_table("fan")) == 179
