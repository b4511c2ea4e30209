"""The embedded default under load, as a user runs it: ``./dev up`` (SQLite, the filesystem broker, every Procfile
process under the supervisor), 500 alias moves through the API with three webhook automations each, then Ctrl-C."""

from __future__ import annotations

import pytest

from harness.embedded import EmbeddedStack, soak
from harness.receiver import Receiver
from harness.util import tail

pytestmark = [pytest.mark.e2e]

EVENTS = 500
WEBHOOKS = 3


@pytest.fixture
def stack(tmp_path):
    stack = EmbeddedStack(var_dir=tmp_path / "var").start()
    yield stack
    stack.stop()


# 1,500 deliveries through SQLite and the file broker took 140 s here on a quiet machine and over 240 s in a busy CI
# run, before Ctrl-C was even sent.
@pytest.mark.timeout(420)
def test_embedded_default_delivers_every_event_once_and_stops_cleanly(stack):
    with Receiver() as receiver:
        result = soak(stack, receiver, events=EVENTS, webhooks=WEBHOOKS)

    assert sum(result.ids.values()) >= result.deliveries_expected, (
        f"{len(result.ids)} of {result.deliveries_expected} deliveries arrived\n{tail(stack.log())}"
    )
    duplicated = {webhook_id: n for webhook_id, n in result.ids.items() if n > 1}
    assert not duplicated, f"delivered more than once: {list(duplicated.items())[:5]}"
    assert len(result.ids) == result.deliveries_expected
    with stack.database() as db:
        statuses = dict(db.execute("select status, count(*) from automations_delivery group by status").fetchall())
        events = dict(db.execute("select type, count(*) from registry_event group by type").fetchall())
        delivery_ids = {row[0].replace("-", "") for row in db.execute("select id from automations_delivery")}
    assert statuses == {"succeeded": EVENTS * WEBHOOKS}
    assert events.get("ADD_ARTIFACT_ALIAS") == EVENTS
    assert {webhook_id.replace("-", "") for webhook_id in result.ids} == delivery_ids

    assert stack.trouble() == []
    assert stack.interrupt() == 0
    log = stack.log()
    for name in ("web", "worker", "deliveries", "beat"):
        assert f"{name} stopped (exit code 0)" in log
    assert stack.trouble() == [], "\n".join(stack.trouble())
