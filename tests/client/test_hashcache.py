"""The client's memory of file digests: an unchanged file is not read again, any change is seen."""

from __future__ import annotations

import hashlib
import os
import time

from registry_client.hashcache import HashCache


def digest_counting_reads(cache: HashCache, path) -> tuple[str, int]:
    read: list[int] = []
    _, sha256 = cache.digest(path, on_bytes=read.append)
    return sha256, sum(read)


def aged(path, seconds: float = 60) -> None:
    past = time.time() - seconds
    os.utime(path, (past, past))


def test_an_unchanged_file_is_read_once(tmp_path):
    path = tmp_path / "model.bin"
    path.write_bytes(b"weights" * 1000)
    aged(path)
    cache = HashCache(tmp_path / "cache" / "hashes.sqlite3")

    assert digest_counting_reads(cache, path) == (hashlib.sha256(b"weights" * 1000).hexdigest(), 7000)
    assert digest_counting_reads(cache, path)[1] == 0
    reopened = HashCache(tmp_path / "cache" / "hashes.sqlite3")  # the next process
    assert digest_counting_reads(reopened, path)[1] == 0


def test_a_change_that_keeps_size_and_modification_time_is_seen(tmp_path):
    path = tmp_path / "model.bin"
    path.write_bytes(b"a" * 100)
    aged(path)
    cache = HashCache(tmp_path / "hashes.sqlite3")
    digest_counting_reads(cache, path)
    mtime = path.stat().st_mtime_ns

    path.write_bytes(b"b" * 100)
    os.utime(path, ns=(mtime, mtime))  # same size, same mtime: the change time still moves
    assert digest_counting_reads(cache, path) == (hashlib.sha256(b"b" * 100).hexdigest(), 100)


def test_a_file_written_a_moment_ago_is_not_remembered_yet(tmp_path):
    path = tmp_path / "model.bin"
    path.write_bytes(b"fresh")
    cache = HashCache(tmp_path / "hashes.sqlite3")
    assert digest_counting_reads(cache, path)[1] == 5
    assert digest_counting_reads(cache, path)[1] == 5


def test_a_cache_that_cannot_be_opened_only_means_reading_again(tmp_path):
    (tmp_path / "not-a-folder").write_text("")
    path = tmp_path / "model.bin"
    path.write_bytes(b"x")
    aged(path)
    cache = HashCache(tmp_path / "not-a-folder" / "hashes.sqlite3")
    assert digest_counting_reads(cache, path)[1] == 1
    assert digest_counting_reads(cache, path)[1] == 1
