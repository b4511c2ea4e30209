"""Where the client finds its server, token and team.

Each setting comes from the first of: the argument given (``Registry(url=..., token=..., team=...)`` or the command
line's ``--url``, ``--team``), the environment (``REGISTRY_URL``, ``REGISTRY_TOKEN``, ``REGISTRY_TEAM``), the config
file ``registry login`` writes. The file is ``$REGISTRY_CONFIG``, else ``$XDG_CONFIG_HOME/registry/config.json``,
else ``~/.config/registry/config.json``; it is written readable by its owner only (0600, in a 0700 folder).

A token from the file is sent only to the server it was issued by: with another URL given, it is not used.
"""

from __future__ import annotations

import json
import os
import stat
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from .errors import ConfigError

__all__ = [
    "API_PREFIX",
    "Settings",
    "config_path",
    "load_config",
    "normalize_url",
    "redact_url",
    "resolve_settings",
    "save_config",
]

API_PREFIX = "/api/v1"
ENV_URL = "REGISTRY_URL"
ENV_TOKEN = "REGISTRY_TOKEN"  # noqa: S105 (the variable's name)
ENV_TEAM = "REGISTRY_TEAM"
ENV_CONFIG = "REGISTRY_CONFIG"


@dataclass(frozen=True)
class Settings:
    url: str
    token: str | None
    team: str | None

    def __repr__(self) -> str:
        shown = "hidden" if self.token else None
        return f"Settings(url={redact_url(self.url)!r}, token={shown}, team={self.team!r})"


def normalize_url(url: str) -> str:
    """``scheme://host[:port][/prefix]`` without a trailing slash or ``/api/v1`` (both forms are accepted)."""
    parts = urlsplit(url.strip())
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ConfigError(f"Not an http(s) URL: {redact_url(url)!r}.")
    path = parts.path.rstrip("/")
    if path.endswith(API_PREFIX):
        path = path[: -len(API_PREFIX)]
    return urlunsplit((parts.scheme, parts.netloc, path, "", ""))


def redact_url(url: str) -> str:
    """The URL without any ``user:password@``, for messages."""
    parts = urlsplit(url)
    if "@" not in parts.netloc:
        return url
    return urlunsplit(parts._replace(netloc="***@" + parts.netloc.rsplit("@", 1)[1]))


def config_path() -> Path:
    if explicit := os.environ.get(ENV_CONFIG):
        return Path(explicit).expanduser()
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "registry" / "config.json"


def load_config(path: Path | None = None) -> dict[str, Any]:
    """The config file's settings, or ``{}`` when there is none."""
    path = path or config_path()
    try:
        mode = path.stat().st_mode
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return {}
    except OSError as exc:
        raise ConfigError(f"Cannot read the config file {path}: {exc.strerror}.") from exc
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        print(f"registry: warning: {path} holds a token and others may read it; run: chmod 600 {path}", file=sys.stderr)
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise ConfigError(f"The config file {path} is not JSON ({exc}); run registry login again.") from exc
    if not isinstance(data, dict):
        raise ConfigError(f"The config file {path} is not a JSON object; run registry login again.")
    return data


def save_config(*, url: str, token: str, team: str | None, path: Path | None = None) -> Path:
    """Write the settings, readable by their owner only; replaces the file in one step."""
    path = path or config_path()
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    data = {"url": normalize_url(url), "token": token, "team": team}
    fd, temporary = tempfile.mkstemp(prefix=".config-", suffix=".json", dir=path.parent)  # created 0600
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            json.dump(data, handle, indent=2)
            handle.write("\n")
        os.chmod(temporary, 0o600)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    return path


def resolve_settings(*, url: str | None = None, token: str | None = None, team: str | None = None) -> Settings:
    """The settings to use: arguments, then the environment, then the config file."""
    url = url or os.environ.get(ENV_URL) or None
    token = token or os.environ.get(ENV_TOKEN) or None
    team = team or os.environ.get(ENV_TEAM) or None
    saved = load_config()
    saved_url = saved.get("url") if isinstance(saved.get("url"), str) else None
    if url is None:
        url = saved_url
    if url is None:
        raise ConfigError(f"No registry URL: pass --url, set {ENV_URL}, or run registry login.")
    url = normalize_url(url)
    same_server = saved_url is not None and normalize_url(saved_url) == url
    if same_server:
        if token is None and isinstance(saved.get("token"), str):
            token = saved["token"]
        if team is None and isinstance(saved.get("team"), str):
            team = saved["team"]
    return Settings(url=url, token=token, team=team)
