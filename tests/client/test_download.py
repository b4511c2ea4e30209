"""Downloads that must not go wrong: manifests naming paths outside the folder, symbolic links leading out, bytes
that are not the manifest's, and connections cut off mid-body (through a loopback proxy that drops them).

The server refuses unsafe paths when a version is logged, so these manifests are made by changing its rows
afterwards: the client must hold even against a server that sends them.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest
from registry_client import DigestMismatch, Registry, ServerUnreachable, UnsafePath

from registry.models import ManifestEntry

from .conftest import write_tree
from .proxy import CuttingProxy

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

BIG = os.urandom(3 * 2**20)


def files_under(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if not p.is_dir())


def tamper(version, entry: str, **changes) -> None:
    assert ManifestEntry.objects.filter(artifact_version__public_id=version.id, path=entry).update(**changes) == 1


@pytest.mark.parametrize(
    "unsafe", ["../escape.bin", "/tmp/registry-client-absolute.bin", "a/../../escape.bin", "a\\..\\escape.bin", "a//b"]
)
def test_a_manifest_path_leading_out_of_the_folder_is_refused_before_anything_is_written(registry, tmp_path, unsafe):
    source = write_tree(tmp_path / "out", {"a.bin": b"first", "victim.bin": b"would escape"})
    version = registry.log_artifact(source, project="training", name="classifier")
    tamper(version, "victim.bin", path=unsafe)
    box = tmp_path / "box" / "inner"

    with pytest.raises(UnsafePath, match="Manifest path"):
        registry.download(version.reference, box)

    assert files_under(tmp_path / "box") == []
    assert "escape.bin" not in str(files_under(tmp_path))
    assert not Path("/tmp/registry-client-absolute.bin").exists()


def test_a_symbolic_link_in_the_folder_never_leads_a_download_outside(registry, tmp_path):
    source = write_tree(tmp_path / "out", {"link/model.bin": b"through the link", "model.bin": b"top"})
    version = registry.log_artifact(source, project="training", name="classifier")
    outside = tmp_path / "outside"
    outside.mkdir()
    box = tmp_path / "box"
    box.mkdir()

    (box / "link").symlink_to(outside)  # a folder of the manifest is a link leading out
    with pytest.raises(UnsafePath, match="symbolic link leading out"):
        registry.download(version.reference, box)
    assert files_under(outside) == []

    (box / "link").unlink()
    (box / ".registry-partial").symlink_to(outside)  # the partial files' folder too
    with pytest.raises(UnsafePath, match="symbolic link leading out"):
        registry.download(version.reference, box)
    assert files_under(outside) == []

    (box / ".registry-partial").unlink()
    victim = outside / "victim.bin"
    victim.write_bytes(b"keep me")
    (box / "model.bin").symlink_to(victim)  # a file of the manifest is a link: replaced, never written through
    result = registry.download(version.reference, box)
    assert sorted(result.written) == ["link/model.bin", "model.bin"]
    assert not (box / "model.bin").is_symlink() and (box / "model.bin").read_bytes() == b"top"
    assert victim.read_bytes() == b"keep me" and files_under(outside) == ["victim.bin"]


def test_bytes_that_are_not_the_manifests_never_reach_the_final_name(registry, tmp_path):
    source = write_tree(tmp_path / "out", {"model.bin": b"the real bytes"})
    version = registry.log_artifact(source, project="training", name="classifier")
    tamper(version, "model.bin", sha256="0" * 64)
    box = tmp_path / "box"

    with pytest.raises(DigestMismatch, match=r"model\.bin"):
        registry.download(version.reference, box)

    assert files_under(box) == []


def test_a_download_cut_off_mid_body_resumes_from_the_bytes_received(registry, account, live_server, tmp_path):
    version = registry.log_artifact(write_tree(tmp_path / "out", {"model.bin": BIG}), project="training", name="c")
    with CuttingProxy(live_server.url) as proxy, Registry(proxy.url, account.token, team=account.team.name) as cut:
        proxy.cut_after, proxy.cut_limit = 1_000_000, 2  # the first two transfers drop after 1 MB
        result = cut.download(version.reference, tmp_path / "box")

    assert result.written == ["model.bin"] and (tmp_path / "box" / "model.bin").read_bytes() == BIG
    assert files_under(tmp_path / "box") == ["model.bin"]
    asked = proxy.file_requests()
    assert len(asked) == 3 and proxy.cuts == 2
    assert "Range" not in asked[0].headers
    starts = [int(r.headers["Range"].removeprefix("bytes=").rstrip("-")) for r in asked[1:]]
    assert 0 < starts[0] <= 1_000_000 < starts[1] <= starts[0] + 1_000_000, starts  # each resumed, none restarted
    assert {r.headers["If-Range"] for r in asked[1:]} == {f'"{hashlib.sha256(BIG).hexdigest()}"'}


def test_a_download_that_keeps_failing_leaves_no_file_and_the_next_one_resumes(
    registry, account, live_server, tmp_path
):
    version = registry.log_artifact(write_tree(tmp_path / "out", {"model.bin": BIG}), project="training", name="c")
    box = tmp_path / "box"
    with CuttingProxy(live_server.url) as proxy, Registry(proxy.url, account.token, team=account.team.name) as cut:
        proxy.cut_after = 700_000  # every transfer drops
        with pytest.raises(ServerUnreachable, match="cut off") as failed:
            cut.download(version.reference, box)
        assert not (box / "model.bin").exists()
        partial = box / ".registry-partial" / hashlib.sha256(BIG).hexdigest()
        kept = partial.stat().st_size
        assert 0 < kept < len(BIG) and str(partial) in str(failed.value)

        proxy.cut_after = None  # the network is back
        result = cut.download(version.reference, box)

    assert result.written == ["model.bin"] and (box / "model.bin").read_bytes() == BIG
    assert proxy.file_requests()[-1].headers["Range"] == f"bytes={kept}-"
    assert files_under(box) == ["model.bin"]
