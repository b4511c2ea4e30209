"""The ``registry`` command end to end against the live server: run in this process (``main``), and as a process
where a terminal or a signal matters."""

from __future__ import annotations

import io
import json
import os
import pty
import select
import signal
import socket
import stat
import subprocess
import sys
import time

import pytest
import requests
from registry_client.cli import main

from automations import services as automations
from harness.receiver import Receiver, Reply
from registry.models import Event as EventRow
from registry.services import api_token_create

from ..factories import PASSWORD
from .conftest import deploy_automation, dispatch_all, write_tree

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

DIGEST = "cd" * 32


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.fixture
def logged_in(account, monkeypatch):
    monkeypatch.setenv("REGISTRY_URL", account.url)
    monkeypatch.setenv("REGISTRY_TOKEN", account.token)
    return account


def test_login_saves_a_token_its_owner_alone_can_read_and_sends_it_to_that_server_only(
    account, client_env, monkeypatch, capsys
):
    monkeypatch.setattr(sys, "stdin", io.StringIO("wrong password\n"))
    code, out, err = run(capsys, "login", "--url", account.url, "--username", account.user.username, "--password-stdin")
    assert code == 4 and err.startswith("registry: error: Not authorised") and err.count("\n") == 1
    assert not (client_env / "registry" / "config.json").exists()

    monkeypatch.setattr(sys, "stdin", io.StringIO(PASSWORD + "\n"))
    code, out, err = run(capsys, "login", "--url", account.url, "--username", account.user.username, "--password-stdin")
    assert code == 0, err
    config = client_env / "registry" / "config.json"
    assert stat.S_IMODE(config.stat().st_mode) == 0o600 and stat.S_IMODE(config.parent.stat().st_mode) == 0o700
    saved = json.loads(config.read_text())
    assert saved["url"] == account.url and saved["team"] == account.team.name and saved["token"]
    assert saved["token"] not in out + err
    assert account.team.name in out and str(config) in out

    code, out, err = run(capsys, "events", "--json")  # no --url, no token: the saved login
    assert code == 0, err
    assert json.loads(out) == []
    other_name = account.url.replace("localhost", "127.0.0.1")  # the same server under another name
    code, out, err = run(capsys, "--url", other_name, "events")
    assert code == 4 and "No token" in err  # the saved token was not sent there


def test_a_day_of_work_from_put_to_production_and_back(logged_in, tmp_path, capsys):
    team = logged_in.team.name
    source = write_tree(tmp_path / "out", {"model.bin": b"weights" * 1000, "config.json": b"{}"})

    code, out, err = run(
        capsys, "artifact", "put", str(source), "--project", "training", "--name", "classifier",
        "--metadata", '{"accuracy": 0.93}', "--reference", f"path=data/train,uri=s3://b/train,size=5,sha256={DIGEST}",
        "--json",
    )  # fmt: skip
    assert code == 0, err
    logged = json.loads(out)
    assert (logged["state"], logged["metadata"], [e["type"] for e in logged["events"]]) == (
        "committed", {"accuracy": 0.93}, ["CREATE_ARTIFACT"]
    )  # fmt: skip
    assert err == ""  # no progress bar: stderr is not a terminal

    code, out, err = run(capsys, "link", f"{team}/training/classifier:v0", "classifier", "--alias", "staging", "--json")
    assert code == 0, err
    assert [(e["type"], e["alias"]) for e in json.loads(out)["events"]] == [
        ("LINK_ARTIFACT", ""), ("ADD_ARTIFACT_ALIAS", "staging")
    ]  # fmt: skip

    code, out, err = run(capsys, "alias", "mv", "classifier:staging", "production")
    assert code == 0, err
    assert "production is on classifier:v0 (aliases: latest, production, staging)" in out
    assert "events: ADD_ARTIFACT_ALIAS production" in out

    code, out, err = run(capsys, "get", "model-registry/classifier:production", "-o", str(tmp_path / "model"))
    assert code == 0, err
    assert "2 file(s) written, 0 already there" in out
    assert "reference (not fetched): data/train s3://b/train" in out
    assert (tmp_path / "model" / "model.bin").read_bytes() == b"weights" * 1000

    one = str(tmp_path / "one")
    code, out, err = run(capsys, "get", "training/classifier", "--file", "config.json", "-o", one, "--json")
    assert code == 0, err
    assert json.loads(out)["written"] == ["config.json"]
    assert sorted(p.name for p in (tmp_path / "one").iterdir()) == ["config.json"]

    code, out, err = run(capsys, "resolve", "model-registry/classifier:production", "--json")
    assert code == 0, err
    assert json.loads(out)["id"] == logged["id"]
    code, out, err = run(capsys, "resolve", f"{team}/training/classifier:v0")
    assert f"{team}/training/classifier:v0 committed registry-artifact://_id/{logged['id']}" in out
    assert f"reference data/train s3://b/train 5 B {DIGEST}" in out

    code, out, err = run(capsys, "events")
    assert code == 0 and [line.split()[2] for line in out.splitlines()] == [
        "ADD_ARTIFACT_ALIAS", "ADD_ARTIFACT_ALIAS", "LINK_ARTIFACT", "CREATE_ARTIFACT"
    ]  # fmt: skip
    for listing in ("automations", "deliveries", "items"):
        code, out, err = run(capsys, listing, "--json")
        assert (code, json.loads(out)) == (0, []), listing

    code, out, err = run(capsys, "tag", "add", "model-registry/classifier:production", "reviewed")
    assert code == 0, err
    assert f"{team}/training/classifier:v0 tags: reviewed" in out and "events: ADD_ARTIFACT_TAG reviewed" in out
    code, out, err = run(capsys, "tag", "rm", "training/classifier:v0", "reviewed")
    assert code == 0 and "reviewed removed from training/classifier:v0" in out
    code, out, err = run(capsys, "tag", "rm", "training/classifier:v0", "reviewed")
    assert code == 5 and err.startswith("registry: error: Not found (404)")

    code, out, err = run(capsys, "alias", "rm", "classifier", "production")
    assert code == 0 and "production removed from classifier" in out
    code, out, err = run(capsys, "resolve", "model-registry/classifier:production")
    assert code == 5 and out == "" and err.startswith("registry: error: Not found (404)") and err.count("\n") == 1


def test_each_kind_of_failure_has_its_exit_status_and_one_line(logged_in, monkeypatch, tmp_path, capsys):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed = f"http://127.0.0.1:{probe.getsockname()[1]}"
    code, _, err = run(capsys, "--url", closed, "--team", "t", "resolve", "training/classifier:v0")
    assert code == 3 and "Cannot reach the registry" in err and err.count("\n") == 1

    code, _, err = run(capsys, "resolve", "training/classifier:v9")
    assert code == 5 and "Not found" in err

    code, _, err = run(capsys, "artifact", "put", str(tmp_path), "--project", "p", "--name", "c", "--metadata", "[1]")
    assert code == 7 and "--metadata must be a JSON object" in err
    (tmp_path / "m.bin").write_bytes(b"m")
    put = ["artifact", "put", str(tmp_path / "m.bin"), "--project", "training", "--name", "c"]
    code, _, err = run(capsys, *put, "--type", "t" * 80)
    assert code == 7 and "Refused (400): type: " in err  # the field at fault

    monkeypatch.setenv("REGISTRY_TOKEN", "revoked-or-wrong")
    code, _, err = run(capsys, "events")
    assert code == 4 and "Not authorised (401)" in err

    monkeypatch.delenv("REGISTRY_URL")
    code, _, err = run(capsys, "events")
    assert code == 2 and "No registry URL" in err
    with pytest.raises(SystemExit) as usage:
        main(["get"])
    assert usage.value.code == 2


def test_webhook_test_shows_the_endpoints_answer(logged_in, settings, capsys):
    settings.WEBHOOK_ALLOWED_NETWORKS = ["127.0.0.1/32"]
    with Receiver(Reply(202, body=b"queued"), Reply(500, body=b"down")) as receiver:
        webhook = automations.webhook_create(team=logged_in.team, name="ci", url=receiver.url, user=logged_in.user)
        code, out, err = run(capsys, "webhook", "test", str(webhook.pk), "--payload", '{"model": "m:v1"}')
        assert code == 0, err
        assert out.startswith("status 202 in ") and "queued" in out
        assert json.loads(receiver.requests[0].body) == {"model": "m:v1"}

        code, out, err = run(capsys, "webhook", "test", str(webhook.pk), "--json")
        assert code == 1 and json.loads(out)["status_code"] == 500


def _command(account, *argv: str, **kwargs) -> subprocess.Popen:
    env = {**os.environ, "REGISTRY_URL": account.url, "REGISTRY_TOKEN": account.token, "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen([sys.executable, "-m", "registry_client", *argv], env=env, **kwargs)


def test_events_follow_prints_each_new_event_until_interrupted(registry, account, tmp_path):
    follower = _command(account, "events", "--follow", "--interval", "0.2", stdout=subprocess.PIPE, text=True)
    try:
        time.sleep(1.5)  # the first listing (empty) is done
        (tmp_path / "m.bin").write_bytes(b"m")
        version = registry.log_artifact(tmp_path / "m.bin", project="training", name="classifier")
        registry.link(version.reference, "classifier", aliases=["staging"])
        lines = [follower.stdout.readline().split()[2] for _ in range(3)]
    finally:
        follower.send_signal(signal.SIGINT)
        follower.wait(10)
    assert lines == ["CREATE_ARTIFACT", "LINK_ARTIFACT", "ADD_ARTIFACT_ALIAS"]  # oldest first, as they came
    assert follower.returncode == 0


def test_events_follow_marks_a_run_by_hand_as_manual(registry, account, classifier_v0):
    deploy = deploy_automation(account)
    follower = _command(account, "events", "--follow", "--interval", "0.2", stdout=subprocess.PIPE, text=True)
    try:
        before = [follower.stdout.readline() for _ in range(2)]  # the link's events, already there
        (fired,) = registry.run_automation(deploy.pk, "v0", alias="production")
        line = follower.stdout.readline()
    finally:
        follower.send_signal(signal.SIGINT)
        follower.wait(10)
    assert [row.split()[2] for row in before] == ["CREATE_ARTIFACT", "LINK_ARTIFACT"]
    assert line.split()[1:3] == [fired.id, "ADD_ARTIFACT_ALIAS"]
    assert " classifier:v0 production by " in line and f"(manual for automation {deploy.pk}, " in line


def test_the_progress_bar_is_drawn_on_a_terminal_only(registry, account, tmp_path):
    source = write_tree(tmp_path / "out", {"model.bin": os.urandom(2_000_000)})
    registry.log_artifact(source, project="training", name="classifier")

    def stderr_on_a_terminal(*argv: str) -> str:
        main_fd, terminal = pty.openpty()
        process = _command(account, *argv, stdout=subprocess.DEVNULL, stderr=terminal)
        os.close(terminal)
        drawn = b""
        while True:
            ready, _, _ = select.select([main_fd], [], [], 30)
            try:
                chunk = os.read(main_fd, 65536) if ready else b""
            except OSError:  # the process closed its end
                chunk = b""
            if not chunk:
                break
            drawn += chunk
        os.close(main_fd)
        assert process.wait(10) == 0
        return drawn.decode(errors="replace")

    drawn = stderr_on_a_terminal("get", "training/classifier", "-o", str(tmp_path / "a"))
    assert "download" in drawn and "[" in drawn and "100%" in drawn and "2.0 MB/2.0 MB" in drawn
    assert stderr_on_a_terminal("get", "training/classifier", "-o", str(tmp_path / "b"), "--quiet") == ""


def test_token_list_shows_your_tokens_without_their_values_and_revoke_ends_one(logged_in, capsys):
    spare, spare_value = api_token_create(user=logged_in.user, name="ci runner")
    code, out, err = run(capsys, "token", "list")
    assert code == 0, err
    assert "ci runner" in out and spare.prefix in out
    assert spare_value not in out and logged_in.token not in out
    code, out, err = run(capsys, "token", "list", "--json")
    assert {t["name"] for t in json.loads(out)} >= {"ci runner"}

    code, out, err = run(capsys, "token", "revoke", str(spare.pk))
    assert (code, out.strip()) == (0, f"token {spare.pk} revoked")
    code, out, err = run(capsys, "token", "list")
    assert "ci runner" not in out
    code, out, err = run(capsys, "token", "revoke", str(spare.pk))
    assert code == 5 and "registry: error:" in err  # gone: not found

    revoked = requests.get(
        f"{logged_in.url}/api/v1/teams/", headers={"Authorization": f"Token {spare_value}"}, timeout=10
    )
    assert revoked.status_code == 401


# --- Automations: runs by hand, history, preview ------------------------------------------------------------


def test_a_run_by_hand_shows_as_manual_in_the_history_and_the_events(logged_in, classifier_v0, registry, capsys):
    deploy = deploy_automation(logged_in, throttle_runs=5, throttle_window=3600)
    registry.add_alias("classifier:v0", "production")
    dispatch_all()

    code, out, err = run(capsys, "automation", "run", str(deploy.pk), "classifier:production")
    dispatch_all()

    assert code == 0, err
    assert out.startswith(f"automation {deploy.pk} run by hand: ADD_ARTIFACT_ALIAS production manual (")
    (event,) = EventRow.objects.filter(manual_for=deploy.pk)
    code, out, err = run(capsys, "automation", "history", str(deploy.pk))
    assert code == 0, err
    by_hand, by_alias = out.splitlines()  # newest first
    assert f"event {str(event.pk)[:8]} ADD_ARTIFACT_ALIAS " in by_hand
    assert "classifier:production manual -> delivery " in by_hand
    assert "classifier:production -> delivery " in by_alias
    code, out, err = run(capsys, "automation", "history", str(deploy.pk), "--outcome", "skipped")
    assert (code, out, err) == (0, "", "(none)\n")

    code, out, err = run(capsys, "events")
    assert code == 0, err
    manual_line, alias_line, link_line, created_line = out.splitlines()
    assert manual_line.split()[1:3] == [str(event.pk), "ADD_ARTIFACT_ALIAS"]
    assert manual_line.endswith(f"(manual for automation {deploy.pk}, dispatched)")
    assert "manual" not in alias_line + link_line + created_line
    assert f" ADD_ARTIFACT_ALIAS classifier:v0 production by {logged_in.user.username} (dispatched)" in alias_line
    code, out, err = run(capsys, "events", "--json")
    assert [(e["manual"], e["automation"]) for e in json.loads(out)][:2] == [(True, deploy.pk), (False, None)]

    code, out, err = run(capsys, "automation", "history", str(deploy.pk), "--json")
    assert [(r["manual"], r["outcome"]) for r in json.loads(out)] == [(True, "delivery"), (False, "delivery")]
    assert json.loads(out)[0]["event"] == str(event.pk)
    code, out, err = run(capsys, "automations")
    assert f"{deploy.pk} deploy enabled ADD_ARTIFACT_ALIAS classifier /^production$/" in out
    assert out.rstrip().endswith("-> WEBHOOK ci at most 5 per 3600 s")


def test_a_run_by_hand_answers_its_event_as_json(logged_in, classifier_v0, capsys):
    deploy = deploy_automation(logged_in)

    code, out, err = run(capsys, "automation", "run", str(deploy.pk), "v0", "--alias", "production", "--json")

    assert code == 0, err
    (event,) = json.loads(out)["events"]
    assert (event["type"], event["alias"], event["manual"]) == ("ADD_ARTIFACT_ALIAS", "production", True)
    assert EventRow.objects.get(pk=event["id"]).manual_for == deploy.pk


def test_a_run_by_hand_of_a_disabled_automation_is_a_conflict_in_one_line(logged_in, classifier_v0, capsys):
    deploy = deploy_automation(logged_in, enabled=False)

    code, out, err = run(capsys, "automation", "run", str(deploy.pk), "classifier:production")

    assert (code, out) == (6, "")
    assert err.startswith("registry: error: ") and "disabled" in err and err.count("\n") == 1
    code, out, err = run(capsys, "automation", "run", str(deploy.pk + 1000), "classifier:production")
    assert code == 5 and err.count("\n") == 1
    deploy.enabled = True
    deploy.save(update_fields=["enabled"])
    code, out, err = run(capsys, "automation", "run", str(deploy.pk), "classifier:v9", "--alias", "production")
    assert code == 7 and "version" in err and err.count("\n") == 1
    assert not EventRow.objects.filter(manual_for=deploy.pk).exists()


def test_preview_prints_the_body_with_secrets_masked(logged_in, classifier_v0, registry, capsys):
    deploy = deploy_automation(logged_in)
    code, out, err = run(capsys, "automation", "preview", str(deploy.pk))
    assert code == 7 and "No ADD_ARTIFACT_ALIAS event yet" in err  # nothing to render against

    (event,) = registry.add_alias("classifier:v0", "production").events
    code, out, err = run(capsys, "automation", "preview", str(deploy.pk), "--event", event.id)

    assert code == 0, err
    version = f"{logged_in.team.name}/model-registry/classifier:production"
    assert out.splitlines() == [
        f"ADD_ARTIFACT_ALIAS event {event.id} on {version} (sent nowhere):",
        f'{{"v":"{version}","token":"${{TOKEN}}"}}',
    ]
    code, out, err = run(capsys, "automation", "preview", str(deploy.pk), "--json")
    assert code == 0, err
    assert json.loads(out)["body"] == f'{{"v":"{version}","token":"${{TOKEN}}"}}'
    assert "s3cr3t-value" not in out


def test_events_show_a_tag_events_tag_like_an_alias(logged_in, registry, tmp_path, capsys):
    (tmp_path / "m.bin").write_bytes(b"m")
    version = registry.log_artifact(tmp_path / "m.bin", project="training", name="classifier")
    registry.add_tag(version.reference, "reviewed")

    code, out, err = run(capsys, "events", "--type", "ADD_ARTIFACT_TAG")

    assert code == 0, err
    (line,) = out.splitlines()
    assert f" ADD_ARTIFACT_TAG {version.reference} reviewed by {logged_in.user.username} " in line
