"""Test setup. The suite runs on PostgreSQL and Redis (``./dev test`` points it there); see the README's "Tests".

Parallel runs (pytest-xdist, ``-n N``): pytest-django gives each worker its own test database (``test_<name>_gw0``,
``_gw1``, ...), and this module gives each its own Redis database: worker ``gwK`` uses the broker URL's database
number plus K, so ``redis://127.0.0.1:6379/1`` with four workers uses databases 1 to 4.
"""

from __future__ import annotations

import os
import sys
from urllib.parse import quote, urlsplit, urlunsplit

import pytest
from django.conf import settings
from django.core.cache import cache
from django.db import connection

from harness.processes import Process, celery_worker


def pytest_report_header(config) -> list[str]:
    db = settings.DATABASES["default"]
    header = [
        f"database: {db['ENGINE'].rsplit('.', 1)[-1]} {db.get('HOST') or ''}:{db.get('PORT') or ''}/{db['NAME']}",
        f"broker: {settings.CELERY_BROKER_URL.split('@')[-1]}",
    ]
    if config.getoption("numprocesses", None):
        base = urlsplit(settings.CELERY_BROKER_URL).path.strip("/") or "0"
        header.append(f"xdist worker gwK: test database test_{db['NAME']}_gwK, broker database {base} + K")
    return header


def worker_broker_url(base: str, worker: str) -> str:
    """The Redis URL of xdist worker ``worker`` (``gw3``): the base URL's database number plus the worker's."""
    if not base.startswith("redis://"):
        return base
    url = urlsplit(base)
    db = int(url.path.strip("/") or 0) + int(worker.removeprefix("gw"))
    return urlunsplit(url._replace(path=f"/{db}"))


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_setupnodes(config: pytest.Config, specs: list) -> None:
    """Start each worker with its own CELERY_BROKER_URL in its environment: the settings read it as they load, which
    pytest-django does before any conftest of the worker runs."""
    for spec in specs:
        spec.env["CELERY_BROKER_URL"] = worker_broker_url(settings.CELERY_BROKER_URL, spec.id)


@pytest.hookimpl(optionalhook=True)
def pytest_configure_node(node) -> None:
    node.workerinput["broker_url"] = node.gateway.spec.env["CELERY_BROKER_URL"]


# --- Tiers -------------------------------------------------------------------------------------------------------
# ``./dev test fast`` runs the tests that carry none of these markers, ``./dev test slow`` the others. Every test
# that starts a process, a live server or a browser carries one: the hooks below fail a test that does so unmarked.

SLOW_MARKERS = ("e2e", "browser", "fault")
SLOW_FIXTURES = frozenset({"live_server", "worker_factory", "browser"})
PROCESS_EVENTS = frozenset({"subprocess.Popen", "os.system", "os.posix_spawn", "os.exec", "os.fork"})
_unmarked_test: str | None = None  # node id of the running test, when it carries none of SLOW_MARKERS


def is_slow(item: pytest.Item) -> bool:
    return any(item.get_closest_marker(name) for name in SLOW_MARKERS)


def _refuse_processes_in_fast_tests(event: str, args: tuple) -> None:
    if _unmarked_test is not None and event in PROCESS_EVENTS:
        command = args[1] if len(args) > 1 else args[0] if args else ""  # never the environment: it holds secrets
        raise RuntimeError(
            f"{_unmarked_test} starts a process ({event}: {command!r}); mark it e2e (or browser, fault) so that it "
            "runs in the slow tier"
        )


sys.addaudithook(_refuse_processes_in_fast_tests)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_protocol(item: pytest.Item, nextitem: pytest.Item | None):
    global _unmarked_test
    _unmarked_test = None if is_slow(item) else item.nodeid
    try:
        return (yield)
    finally:
        _unmarked_test = None


def pytest_runtest_setup(item: pytest.Item) -> None:
    if not is_slow(item) and (used := SLOW_FIXTURES.intersection(item.fixturenames)):
        pytest.fail(f"{item.nodeid} uses {', '.join(sorted(used))}: mark it e2e or browser", pytrace=False)


def pytest_itemcollected(item: pytest.Item) -> None:
    """Fault tests stop services, kill processes and time recoveries: under ``--dist loadgroup`` they run one after
    another on one worker (xdist hands out the largest groups first)."""
    if item.get_closest_marker("fault") and item.config.pluginmanager.hasplugin("xdist"):
        item.add_marker(pytest.mark.xdist_group("fault"))


def _uses_database(item: pytest.Item) -> bool:
    return bool(item.get_closest_marker("django_db")) or not {"_django_db_helper", "live_server"}.isdisjoint(
        item.fixturenames
    )


@pytest.hookimpl(trylast=True)  # after pytest-django's order: tests in a transaction, then transactional ones
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """xdist workers take the slow tests that use no database first, so that the longest start at once (those with
    a database keep pytest-django's order, which a worker runs them in)."""
    if hasattr(config, "workerinput"):
        items.sort(key=lambda item: not is_slow(item) or _uses_database(item))  # stable


@pytest.hookimpl(trylast=True)
def pytest_collection_finish(session: pytest.Session) -> None:
    """xdist marks a grouped test by appending ``@group`` to its node id; some pytest releases ignore that change
    (pytest-xdist issue 1386, pytest 9.2), and the groups would silently run spread over all workers."""
    if not getattr(session.config.option, "loadgroup", False):  # set in xdist workers only
        return
    for item in session.items:
        if item.get_closest_marker("xdist_group") and "@" not in item.nodeid:
            raise pytest.UsageError(f"--dist loadgroup did not group {item.nodeid}: check the pytest version pin")


# In CI (.ci/run sets CI=true) every service and tool is installed: a skipped test means one is missing, and fails
# the run like a failed test.
_skipped: list[str] = []


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    if report.skipped and not hasattr(report, "wasxfail"):
        _skipped.append(report.nodeid)


@pytest.hookimpl(trylast=True)
def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    if os.environ.get("CI") and _skipped and session.exitstatus == pytest.ExitCode.OK:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def pytest_terminal_summary(terminalreporter) -> None:
    """The figures fault tests record (``figures`` in their user properties), also from xdist workers, whose output
    the terminal does not show; in CI, why the run failed although every test that ran passed."""
    if os.environ.get("CI") and _skipped:
        message = f"CI: {len(_skipped)} skipped test(s) fail the run (reasons: SKIPPED below)"
        terminalreporter.write_sep("=", message, red=True)
    lines = [
        value
        for reports in terminalreporter.stats.values()
        for report in reports
        if getattr(report, "when", None) == "call"
        for name, value in getattr(report, "user_properties", ())
        if name == "figures"
    ]
    if lines:
        terminalreporter.write_sep("-", "fault figures")
        for line in lines:
            terminalreporter.write_line(line)


@pytest.fixture(autouse=True, scope="session")
def _real_services(request, django_db_setup, django_db_blocker) -> None:
    """Refuse to pass on SQLite unless asked to: the bar is the production stack."""
    if os.environ.get("ALLOW_SQLITE_TESTS") == "1":
        return
    with django_db_blocker.unblock():
        vendor = connection.vendor
    assert vendor == "postgresql", (
        "The suite runs on PostgreSQL: run it with ./dev test, or set DATABASE_URL=postgres://... "
        "(ALLOW_SQLITE_TESTS=1 to run on SQLite anyway)."
    )
    assert settings.CELERY_BROKER_URL.startswith("redis://"), "The suite runs with a Redis broker (./dev test)."
    broker = settings.CELERY_BROKER_URL
    assigned = getattr(request.config, "workerinput", {}).get("broker_url", broker)
    assert broker == assigned, f"this xdist worker was given the broker {assigned}, its settings loaded {broker}"
    import redis

    try:
        redis.Redis.from_url(broker).ping()
    except redis.ResponseError as exc:  # "DB index is out of range"
        raise AssertionError(
            f"Redis refuses {broker} ({exc}): each xdist worker adds its number to the database of "
            "TEST_BROKER_URL; lower that base or the number of workers (-n)."
        ) from exc


ARTIFACT_STORE = "store"  # below each test's tmp_path


@pytest.fixture(autouse=True)
def _test_settings(settings, tmp_path) -> None:
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    # Pages rendered in tests need no collectstatic run (production's manifest storage does).
    settings.STORAGES = {
        **settings.STORAGES,
        "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
        # Each test's model files in its own folder (filesystem storage; tests of S3 set their own).
        "artifacts": {
            "BACKEND": "registry.storages.ArtifactFileSystemStorage",
            "OPTIONS": {"location": str(tmp_path / ARTIFACT_STORE)},
        },
    }
    settings.ARTIFACT_UPLOAD_TEMP_DIR = tmp_path / ARTIFACT_STORE / ".incoming"
    # The login throttle counts in the cache: no test's auth/token/ requests count against another's.
    cache.clear()


# --- Real processes ---------------------------------------------------------------------------------------


def _test_database_url() -> str:
    """The URL of the test database pytest-django created (this xdist worker's own), for processes started by the
    tests."""
    db = connection.settings_dict
    auth = quote(db["USER"], safe="") + (f":{quote(db['PASSWORD'], safe='')}" if db.get("PASSWORD") else "")
    return f"postgres://{auth}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{db['NAME']}"


@pytest.fixture
def purge_broker():
    """Empty the test broker's queues so a test sees only its own messages."""
    import redis

    client = redis.Redis.from_url(settings.CELERY_BROKER_URL)
    client.flushdb()
    yield
    client.flushdb()


@pytest.fixture
def worker_factory(transactional_db, tmp_path, purge_broker):
    """Start real ``celery worker`` processes on this test's database and broker (``celery_worker``'s options, and
    ``extra_env`` for their environment); each is stopped at the end."""
    started: list[Process] = []

    def start(*, extra_env: dict | None = None, **options) -> Process:
        env = {
            **os.environ,
            "DATABASE_URL": _test_database_url(),
            "CELERY_BROKER_URL": settings.CELERY_BROKER_URL,
            **(extra_env or {}),
        }
        worker = celery_worker(log_dir=tmp_path, name=f"worker-{len(started)}", env=env, **options).start()
        started.append(worker)
        worker.wait_for_log(" ready.", timeout=40)
        return worker

    yield start
    for worker in started:
        worker.stop()


@pytest.fixture(autouse=True)
def _live_server_closes_connections(request):
    """The live server answers each request on a new thread; persistent connections would pile up per thread."""
    if "live_server" not in request.fixturenames:
        yield
        return
    from django.db import connections

    db = connections.settings["default"]
    previous = db["CONN_MAX_AGE"]
    db["CONN_MAX_AGE"] = 0
    yield
    db["CONN_MAX_AGE"] = previous
