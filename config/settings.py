"""Settings, all from the environment (see .env.example).

With nothing set, the system runs on its embedded default: SQLite and Celery's filesystem broker under ./var,
so a fresh clone needs no server. DATABASE_URL and CELERY_BROKER_URL switch to PostgreSQL and Redis.
"""

import os
from pathlib import Path

import environ

BASE_DIR = Path(__file__).resolve().parent.parent

env = environ.Env()
environ.Env.read_env(BASE_DIR / ".env", overwrite=False)
VAR_DIR = Path(env.str("VAR_DIR", default=str(BASE_DIR / "var")))

DEBUG = env.bool("DEBUG", default=False)
# The embedded default generates a key once and keeps it in ./var; production sets SECRET_KEY.
SECRET_KEY = env.str("SECRET_KEY", default="")
if not SECRET_KEY:
    VAR_DIR.mkdir(parents=True, exist_ok=True)
    _key_file = VAR_DIR / "secret_key"
    if not _key_file.exists():
        import secrets as _secrets

        _key_file.write_text(_secrets.token_urlsafe(50))
        _key_file.chmod(0o600)
    SECRET_KEY = _key_file.read_text().strip()

# Where users and webhook receivers reach this registry: absolute links such as ${artifact_files_url} start with it.
# Unset, it is where the web process listens (WEB_BIND, PORT; the Procfile's defaults), on loopback when that is
# every address.
_bind = env.str("WEB_BIND", default="0.0.0.0")  # noqa: S104 (only read to build the URL below)
PUBLIC_BASE_URL = env.str(
    "PUBLIC_BASE_URL",
    default=f"http://{'127.0.0.1' if _bind in ('0.0.0.0', '::', '[::]') else _bind}:{env.str('PORT', default='8000')}",  # noqa: S104
).rstrip("/")

ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", default=["localhost", "127.0.0.1", "[::1]", "testserver"])
CSRF_TRUSTED_ORIGINS = env.list("CSRF_TRUSTED_ORIGINS", default=[])

# Behind a TLS-terminating proxy (README, Production). The proxy must set X-Forwarded-Proto itself, overwriting what
# a client sent; only then may Django take a request with "https" in it as secure.
SECURE_PROXY_SSL_HEADER = (
    ("HTTP_X_FORWARDED_PROTO", "https") if env.bool("TRUST_X_FORWARDED_PROTO", default=False) else None
)
USE_X_FORWARDED_HOST = env.bool("USE_X_FORWARDED_HOST", default=False)
SECURE_SSL_REDIRECT = env.bool("SECURE_SSL_REDIRECT", default=False)
# Prometheus scrapes each process over plain HTTP (the probes are answered before this: core/health.py).
SECURE_REDIRECT_EXEMPT = [r"^metrics$"]
SESSION_COOKIE_SECURE = env.bool("SESSION_COOKIE_SECURE", default=False)
CSRF_COOKIE_SECURE = env.bool("CSRF_COOKIE_SECURE", default=False)
SECURE_HSTS_SECONDS = env.int("SECURE_HSTS_SECONDS", default=0)
SECURE_HSTS_INCLUDE_SUBDOMAINS = env.bool("SECURE_HSTS_INCLUDE_SUBDOMAINS", default=False)
SECURE_HSTS_PRELOAD = env.bool("SECURE_HSTS_PRELOAD", default=False)

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "core",
    "registry",
    "secrets_vault",
    "automations",
    "launch",
    "alerts",
]

MIDDLEWARE = [
    "core.health.HealthMiddleware",  # /healthz and /readyz, before host checks and redirects (core/health.py)
    "config.middleware.DrainUnreadBodyMiddleware",
    "config.middleware.KeptDatabaseConnectionMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "config.urls"
WSGI_APPLICATION = "config.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

DATABASES = {"default": env.db("DATABASE_URL", default=f"sqlite:///{VAR_DIR / 'db.sqlite3'}")}
DATABASES["default"]["CONN_MAX_AGE"] = env.int("DB_CONN_MAX_AGE", default=60)
DATABASES["default"]["CONN_HEALTH_CHECKS"] = True
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # Web, worker and beat share the file: WAL lets readers run beside one writer, IMMEDIATE takes the
    # write lock at BEGIN so two writers queue on the timeout instead of failing mid-transaction.
    DATABASES["default"]["OPTIONS"] = {
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
        "transaction_mode": "IMMEDIATE",
        "timeout": 20,
    }
    DATABASES["default"]["CONN_MAX_AGE"] = 0
elif env.bool("DB_SERVER_SIDE_BINDING", default=True):
    # Parameters travel apart from the SQL, so psycopg prepares queries a connection repeats: PostgreSQL then skips
    # planning them, which for the registry's many-table joins took longer than running them.
    DATABASES["default"].setdefault("OPTIONS", {})["server_side_binding"] = True
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# Staff users get the admin's model permissions from their team roles (core.scoping).
AUTHENTICATION_BACKENDS = ["django.contrib.auth.backends.ModelBackend", "core.scoping.TeamRoleBackend"]

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = Path(env.str("STATIC_ROOT", default=str(VAR_DIR / "static")))
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedManifestStaticFilesStorage"},
}
WHITENOISE_USE_FINDERS = DEBUG

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "registry.api.authentication.ApiTokenAuthentication",
        "launch.api.authentication.AgentTokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_PARSER_CLASSES": ["core.api.parsers.JSONParser"],
    "DEFAULT_PAGINATION_CLASS": "core.api.pagination.Pagination",
    "PAGE_SIZE": env.int("API_PAGE_SIZE", default=100),
    "EXCEPTION_HANDLER": "core.api.exceptions.exception_handler",
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "DEFAULT_THROTTLE_RATES": {"login": env.str("LOGIN_THROTTLE_RATE", default="20/min")},
    # Proxies in front of the web processes that append the client's address to X-Forwarded-For: throttles count
    # the address the outermost of them saw. 0: the connection's own address, whatever the header says.
    "NUM_PROXIES": env.int("TRUSTED_PROXY_COUNT", default=0),
}
if DEBUG:
    REST_FRAMEWORK["DEFAULT_RENDERER_CLASSES"].append("rest_framework.renderers.BrowsableAPIRenderer")
DATA_UPLOAD_MAX_MEMORY_SIZE = env.int("DATA_UPLOAD_MAX_MEMORY_SIZE", default=2 * 1024 * 1024)

SPECTACULAR_SETTINGS = {
    "TITLE": "Registry automations API",
    "DESCRIPTION": "Model registry whose changes trigger signed webhooks and launch jobs.",
    "VERSION": "1",
    "SERVE_INCLUDE_SCHEMA": False,
    "COMPONENT_SPLIT_REQUEST": True,
    # Swagger UI served from our own static files: the docs work on a machine without internet access.
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    # An event's type and an automation's event_type are one choice set: one name for it in the schema.
    "ENUM_NAME_OVERRIDES": {
        "EventTypeEnum": "registry.events.event_type_choices",
        "NoticeStatusEnum": "alerts.choices.NoticeStatus",
        "DeliveryStatusEnum": "automations.choices.DeliveryStatus",
        "AlertKindEnum": "alerts.choices.AlertKind",
    },
}


# --- Celery --------------------------------------------------------------------------------------------
BROKER_DIR = VAR_DIR / "broker"
CELERY_BROKER_URL = env.str("CELERY_BROKER_URL", default="filesystem://")
if CELERY_BROKER_URL.startswith("filesystem://"):
    for _sub in ("queue", "processed", "control"):
        (BROKER_DIR / _sub).mkdir(parents=True, exist_ok=True)
    # kombu's transport with whole-file writes and claims (config/filesystem_broker.py).
    CELERY_BROKER_TRANSPORT = "config.filesystem_broker:Transport"
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "data_folder_in": str(BROKER_DIR / "queue"),
        "data_folder_out": str(BROKER_DIR / "queue"),
        "processed_folder": str(BROKER_DIR / "processed"),
        "control_folder": str(BROKER_DIR / "control"),
        "store_processed": False,
        "polling_interval": env.float("BROKER_POLLING_INTERVAL", default=0.1),
        "bad_message_grace": env.float("BROKER_BAD_MESSAGE_GRACE", default=30.0),
    }
else:
    # The visibility timeout bounds how long an unacknowledged task stays invisible after its worker died;
    # long waits (retries) live in the database, never as countdowns longer than this.
    CELERY_BROKER_TRANSPORT_OPTIONS = {"visibility_timeout": env.int("BROKER_VISIBILITY_TIMEOUT", default=3600)}
# Shared by every process, so limits such as the login throttle hold across web workers and machines: CACHE_URL, or
# else the broker's Redis; on the embedded default, files under VAR_DIR (shared by the processes of one machine).
CACHE_URL = env.str("CACHE_URL", default="")
_cache_location = CACHE_URL or (CELERY_BROKER_URL if CELERY_BROKER_URL.startswith(("redis://", "rediss://")) else "")
if _cache_location:
    CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": _cache_location,
            "KEY_PREFIX": "registry-cache",
            # A cache that stopped answering must not hold a request for long (core/throttling.py lets it through).
            "OPTIONS": {"socket_connect_timeout": 1, "socket_timeout": 1},
        }
    }
else:
    CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.filebased.FileBasedCache",
            "LOCATION": str(VAR_DIR / "cache"),
        }
    }
CELERY_TASK_IGNORE_RESULT = True
CELERY_RESULT_BACKEND = None
CELERY_TASK_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TIMEZONE = "UTC"
# At-least-once: a task is acknowledged after it ran, and requeued if its worker dies mid-task.
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
# Workers keep their database connection between tasks, as web processes do between requests (DB_CONN_MAX_AGE,
# health-checked; see config/celery.py). Without this, Celery's Django fixup closes it around every task, and
# opening a PostgreSQL connection per event and per delivery was the largest single cost bench/ measured.
CELERY_DB_REUSE_MAX = 2**31
CELERY_BROKER_CONNECTION_TIMEOUT = env.float("BROKER_CONNECTION_TIMEOUT", default=2.0)
# Publishing happens on the request path after commit: fail fast and let the sweeper catch up.
CELERY_TASK_PUBLISH_RETRY_POLICY = {"max_retries": 2, "interval_start": 0, "interval_step": 0.2, "interval_max": 0.5}
CELERY_TASK_DEFAULT_QUEUE = "events"
# Deliveries wait on other people's servers: they get their own queue and workers so that a slow endpoint never
# holds up event dispatch.
CELERY_TASK_ROUTES = {
    "registry.tasks.*": {"queue": "events"},
    "automations.tasks.deliveries_send": {"queue": "deliveries"},
    "automations.tasks.deliveries_sweep": {"queue": "deliveries"},
    "launch.tasks.*": {"queue": "events"},
    # Mail servers and operational webhooks are other people's servers too.
    "alerts.tasks.*": {"queue": "deliveries"},
}
CELERY_BEAT_SCHEDULE = {
    "events-sweep": {
        "task": "registry.tasks.events_sweep",
        "schedule": env.float("EVENT_SWEEP_INTERVAL", default=15.0),
    },
    "launch-leases": {
        "task": "launch.tasks.items_expire_leases",
        "schedule": env.float("LAUNCH_LEASE_SWEEP_INTERVAL", default=5.0),
    },
    "deliveries-sweep": {
        "task": "automations.tasks.deliveries_sweep",
        "schedule": env.float("DELIVERY_SWEEP_INTERVAL", default=5.0),
    },
    "alerts-flush": {
        "task": "alerts.tasks.alerts_flush",
        "schedule": env.float("ALERT_FLUSH_INTERVAL", default=5.0),
    },
    "artifacts-clean": {
        "task": "registry.tasks.artifacts_clean",
        "schedule": env.float("ARTIFACT_CLEAN_INTERVAL", default=3600.0),
    },
}
CELERY_BEAT_SCHEDULE_FILENAME = str(VAR_DIR / "celerybeat-schedule")
# Touches a heartbeat file beside the schedule file on every tick: `manage.py workers_alive` reads its age.
CELERY_BEAT_SCHEDULER = "config.beat:HeartbeatScheduler"

# --- Product settings ----------------------------------------------------------------------------------
# An event not marked dispatched this many seconds after it was written is dispatched again by the sweeper.
EVENT_REDISPATCH_AFTER = env.float("EVENT_REDISPATCH_AFTER", default=30.0)
# Events caused by automations deeper than this are recorded but not dispatched (no automation loops).
EVENT_CHAIN_LIMIT = env.int("EVENT_CHAIN_LIMIT", default=5)

# text (for people) or json (one object per line, for log collectors; config/logs.py), in every process.
LOG_FORMAT = env.str("LOG_FORMAT", default="text")
if LOG_FORMAT not in ("text", "json"):
    from django.core.exceptions import ImproperlyConfigured

    raise ImproperlyConfigured(f"LOG_FORMAT is text or json, not {LOG_FORMAT!r}.")
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {
        "plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"},
        "json": {"()": "config.logs.JsonFormatter"},
    },
    "handlers": {
        "console": {"class": "logging.StreamHandler", "formatter": "json" if LOG_FORMAT == "json" else "plain"}
    },
    "root": {"handlers": ["console"], "level": env.str("LOG_LEVEL", default="INFO")},
    "loggers": {"django.db.backends": {"level": "WARNING"}},
}
if LOG_FORMAT == "json":
    # gunicorn's own error and access lines, in its workers, go through the same JSON handler.
    for _name in ("gunicorn.error", "gunicorn.access"):
        LOGGING["loggers"][_name] = {"handlers": ["console"], "level": "INFO", "propagate": False}

# --- Secrets vault ---------------------------------------------------------------------------------------
# Fernet keys, newest first; older keys still decrypt, so a key is rotated by prepending a new one and running
# `manage.py secrets_reencrypt`. The embedded default keeps a generated key in ./var (outside version control);
# a server database without keys is refused at startup, since a key file on one machine would not reach others.
SECRETS_ENCRYPTION_KEYS = env.list("SECRETS_ENCRYPTION_KEYS", default=[])
if not SECRETS_ENCRYPTION_KEYS:
    if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3" or env.bool("SECRETS_ALLOW_KEY_FILE", False):
        from cryptography.fernet import Fernet as _Fernet

        VAR_DIR.mkdir(parents=True, exist_ok=True)
        _secrets_key_file = Path(env.str("SECRETS_KEY_FILE", default=str(VAR_DIR / "secrets.key")))
        if not _secrets_key_file.exists():
            _secrets_key_file.write_bytes(_Fernet.generate_key())
            _secrets_key_file.chmod(0o600)
        SECRETS_ENCRYPTION_KEYS = [_secrets_key_file.read_text().strip()]
    else:
        from django.core.exceptions import ImproperlyConfigured

        raise ImproperlyConfigured(
            "SECRETS_ENCRYPTION_KEYS is required with a server database (team secrets are encrypted with it). "
            "Generate one with: "
            "python -c 'from cryptography.fernet import Fernet; print(Fernet.generate_key().decode())'"
        )

# --- Webhook deliveries ------------------------------------------------------------------------------------
# Networks outbound webhooks may reach although they are private or loopback (CIDRs), e.g. an internal CI server.
WEBHOOK_ALLOWED_NETWORKS = env.list("WEBHOOK_ALLOWED_NETWORKS", default=[])
WEBHOOK_CONNECT_TIMEOUT = env.float("WEBHOOK_CONNECT_TIMEOUT", default=5.0)
WEBHOOK_READ_TIMEOUT = env.float("WEBHOOK_READ_TIMEOUT", default=10.0)
WEBHOOK_DEADLINE = env.float("WEBHOOK_DEADLINE", default=30.0)
WEBHOOK_MAX_RESPONSE_BYTES = env.int("WEBHOOK_MAX_RESPONSE_BYTES", default=64 * 1024)
# Seconds between attempts; one entry per retry.
WEBHOOK_RETRY_SCHEDULE = env.list(
    "WEBHOOK_RETRY_SCHEDULE", cast=float, default=[5, 30, 120, 600, 1800, 3600, 10800, 21600, 43200, 86400]
)
WEBHOOK_RETRY_JITTER = env.float("WEBHOOK_RETRY_JITTER", default=0.1)
WEBHOOK_RETRY_AFTER_MAX = env.float("WEBHOOK_RETRY_AFTER_MAX", default=86400)
# A webhook whose every delivery failed for this long is disabled, with the reason shown to admins.
WEBHOOK_DISABLE_AFTER = env.float("WEBHOOK_DISABLE_AFTER", default=3 * 86400)
WEBHOOK_CA_BUNDLE = env.str("WEBHOOK_CA_BUNDLE", default=None)
# A claimed delivery whose worker died is taken back after this lease (longer than the deadline).
DELIVERY_CLAIM_LEASE = env.float("DELIVERY_CLAIM_LEASE", default=120.0)
# Retries due within this many seconds ride a Celery countdown; longer waits are the beat sweep's.
DELIVERY_COUNTDOWN_MAX = env.float("DELIVERY_COUNTDOWN_MAX", default=60.0)
# The sweep leaves deliveries this many seconds past due to their own task first.
DELIVERY_SWEEP_GRACE = env.float("DELIVERY_SWEEP_GRACE", default=5.0)
# Deliveries to one destination travel in batches of at most this many (one task, one claim, one record).
DELIVERY_BATCH = env.int("DELIVERY_BATCH", default=100)
# Threads of the Procfile's `deliveries` and `worker` processes (read there too): the send capacity the shares
# below are cut from.
DELIVERY_CONCURRENCY = env.int("DELIVERY_CONCURRENCY", default=16)
EVENTS_CONCURRENCY = env.int("EVENTS_CONCURRENCY", default=8)
# No destination (scheme, host, port) holds more sends at once than this, and no team more than the next one,
# across every process, so one slow server or one busy team cannot take every sender.
DELIVERY_DESTINATION_MAX_SENDS = env.int("DELIVERY_DESTINATION_MAX_SENDS", default=max(1, DELIVERY_CONCURRENCY // 4))
DELIVERY_TEAM_MAX_SENDS = env.int("DELIVERY_TEAM_MAX_SENDS", default=max(1, DELIVERY_CONCURRENCY // 2))
# The task that dispatches an event sends the first batch itself when the event has at most this many deliveries
# (the rest, and larger fan-outs, go to the deliveries queue), from at most half the events worker's threads.
DISPATCH_SEND_MAX = env.int("DISPATCH_SEND_MAX", default=20)
# A destination's breaker opens after this many failed answers in a row (network errors, timeouts, 408, 429, 5xx,
# or answers slower than DESTINATION_SLOW_AFTER seconds); it stays open DESTINATION_BACKOFF_MIN seconds, twice as
# long after each failed probe, up to DESTINATION_BACKOFF_MAX.
DESTINATION_OPEN_AFTER = env.int("DESTINATION_OPEN_AFTER", default=5)
DESTINATION_SLOW_AFTER = env.float("DESTINATION_SLOW_AFTER", default=10.0)
DESTINATION_BACKOFF_MIN = env.float("DESTINATION_BACKOFF_MIN", default=5.0)
DESTINATION_BACKOFF_MAX = env.float("DESTINATION_BACKOFF_MAX", default=300.0)
# Testing a webhook waits on its endpoint inside a web request: it has a shorter deadline, and only a few may run
# at once per team and per web process (more get a 429).
WEBHOOK_TEST_DEADLINE = env.float("WEBHOOK_TEST_DEADLINE", default=10.0)
WEBHOOK_TEST_MAX_PER_TEAM = env.int("WEBHOOK_TEST_MAX_PER_TEAM", default=2)
WEBHOOK_TEST_MAX_PER_PROCESS = env.int("WEBHOOK_TEST_MAX_PER_PROCESS", default=2)

# --- Launch ------------------------------------------------------------------------------------------------
# Seconds an agent's claim lasts without a heartbeat; agents heartbeat well within it.
LAUNCH_LEASE_SECONDS = env.float("LAUNCH_LEASE_SECONDS", default=30.0)
# Claims (lease expiries included) after which an item fails instead of going back to pending.
LAUNCH_MAX_ATTEMPTS = env.int("LAUNCH_MAX_ATTEMPTS", default=3)

# --- Model files -------------------------------------------------------------------------------------------
# Blobs live in STORAGES["artifacts"]: files under ARTIFACT_STORAGE_DIR, or with ARTIFACT_STORAGE=s3 any
# S3-compatible object store (django-storages). Uploads are written to ARTIFACT_UPLOAD_TEMP_DIR while their digest
# is checked; on the same filesystem as the files, storing one is a rename.
ARTIFACT_STORAGE = env.str("ARTIFACT_STORAGE", default="filesystem")
ARTIFACT_STORAGE_DIR = Path(env.str("ARTIFACT_STORAGE_DIR", default=str(VAR_DIR / "artifacts")))
if ARTIFACT_STORAGE == "s3":
    STORAGES["artifacts"] = {
        "BACKEND": "registry.storages.ArtifactS3Storage",
        "OPTIONS": {
            "bucket_name": env.str("ARTIFACT_S3_BUCKET"),
            "location": env.str("ARTIFACT_S3_PREFIX", default=""),
            "endpoint_url": env.str("ARTIFACT_S3_ENDPOINT_URL", default=None),
            "region_name": env.str("ARTIFACT_S3_REGION", default=None),
            # Unset: boto3's own chain (AWS_ACCESS_KEY_ID, ~/.aws, an instance role).
            "access_key": env.str("ARTIFACT_S3_ACCESS_KEY_ID", default=None),
            "secret_key": env.str("ARTIFACT_S3_SECRET_ACCESS_KEY", default=None),
            "addressing_style": env.str("ARTIFACT_S3_ADDRESSING_STYLE", default=None),
            "signature_version": "s3v4",
            "default_acl": None,
            "file_overwrite": True,
        },
    }
    ARTIFACT_UPLOAD_TEMP_DIR = Path(env.str("ARTIFACT_UPLOAD_TEMP_DIR", default=str(VAR_DIR / "uploads")))
elif ARTIFACT_STORAGE == "filesystem":
    STORAGES["artifacts"] = {
        "BACKEND": "registry.storages.ArtifactFileSystemStorage",
        "OPTIONS": {"location": str(ARTIFACT_STORAGE_DIR), "base_url": None},
    }
    _incoming = ARTIFACT_STORAGE_DIR / ".incoming"
    ARTIFACT_UPLOAD_TEMP_DIR = Path(env.str("ARTIFACT_UPLOAD_TEMP_DIR", default=str(_incoming)))
else:
    from django.core.exceptions import ImproperlyConfigured

    raise ImproperlyConfigured(f"ARTIFACT_STORAGE is {ARTIFACT_STORAGE!r}: use filesystem or s3.")
# Largest file an artifact version may hold (bytes); larger uploads and manifests are refused with 413.
ARTIFACT_MAX_FILE_SIZE = env.int("ARTIFACT_MAX_FILE_SIZE", default=50 * 2**30)
# Most entries (files and references) in one manifest.
ARTIFACT_MAX_ENTRIES = env.int("ARTIFACT_MAX_ENTRIES", default=10000)
# Downloads from an object store answer with a redirect to a signed URL valid this many seconds, so the bytes skip
# the web process; false: the web process streams them.
ARTIFACT_DOWNLOAD_REDIRECT = env.bool("ARTIFACT_DOWNLOAD_REDIRECT", default=False)
ARTIFACT_DOWNLOAD_URL_EXPIRY = env.int("ARTIFACT_DOWNLOAD_URL_EXPIRY", default=300)
# Beat removes versions still pending this many seconds after they were created, and blobs no version names once
# they are older than the grace period (a client may upload files before it creates their version).
ARTIFACT_PENDING_MAX_AGE = env.float("ARTIFACT_PENDING_MAX_AGE", default=86400.0)
ARTIFACT_BLOB_GRACE = env.float("ARTIFACT_BLOB_GRACE", default=86400.0)

# --- Alerts ------------------------------------------------------------------------------------------------
# A team's alerts (a webhook disabled, deliveries failed for good, an agent lost) are one burst until none has come
# for ALERT_GROUP_WAIT seconds, or the oldest is ALERT_GROUP_MAX_WAIT old; each burst is one e-mail to the team's
# admins and one request per alert to its operational webhooks (alerts/grouping.py).
ALERT_GROUP_WAIT = env.float("ALERT_GROUP_WAIT", default=30.0)
ALERT_GROUP_MAX_WAIT = env.float("ALERT_GROUP_MAX_WAIT", default=600.0)
# E-mail: smtp://user:password@host:587 (smtp+tls://, smtps:// for TLS). Unset, alerts are written to the worker's
# output instead, which suits the embedded default and nothing else (manage.py check --deploy says so).
EMAIL_CONFIG = env.email_url("EMAIL_URL", default="consolemail://")
vars().update(EMAIL_CONFIG)
DEFAULT_FROM_EMAIL = env.str("DEFAULT_FROM_EMAIL", default="registry@localhost")
SERVER_EMAIL = DEFAULT_FROM_EMAIL
EMAIL_SUBJECT_PREFIX = env.str("EMAIL_SUBJECT_PREFIX", default="[registry] ")
EMAIL_TIMEOUT = env.float("EMAIL_TIMEOUT", default=10.0)

# --- Metrics -----------------------------------------------------------------------------------------------
# Every process (gunicorn's workers, the Celery workers) writes its counters to files here, and /metrics sums the
# files of all: prometheus_client's multi-process mode, which reads the variable as it is imported, so it is set
# here, before any module imports it. Files of processes no longer running are removed when gunicorn starts
# (config/gunicorn.py): point every process of one machine at the same directory, and no two machines at one.
PROMETHEUS_MULTIPROC_DIR = Path(env.str("PROMETHEUS_MULTIPROC_DIR", default=str(VAR_DIR / "metrics")))
PROMETHEUS_MULTIPROC_DIR.mkdir(parents=True, exist_ok=True)
os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(PROMETHEUS_MULTIPROC_DIR)
# Who may read /metrics: clients from these networks (CIDRs; empty: any address) that also send
# "Authorization: Bearer <METRICS_TOKEN>" when a token is set. With neither set, nobody.
METRICS_TOKEN = env.str("METRICS_TOKEN", default="")
METRICS_ALLOWED_NETWORKS = env.list("METRICS_ALLOWED_NETWORKS", default=["127.0.0.1/32", "::1/128"])

# --- Error reports -------------------------------------------------------------------------------------------
# Errors of the web and Celery processes go to Sentry when this is set (config/sentry.py); no secret is sent.
SENTRY_DSN = env.str("SENTRY_DSN", default="")
SENTRY_ENVIRONMENT = env.str("SENTRY_ENVIRONMENT", default="")
if SENTRY_DSN:
    from config.sentry import sentry_init

    sentry_init(SENTRY_DSN, environment=SENTRY_ENVIRONMENT)
