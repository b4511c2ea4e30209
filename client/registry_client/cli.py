"""``registry``: the model registry from the command line.

    registry login [--url URL] [--username NAME] [--password-stdin | --token-stdin]
    registry artifact put PATH --project P --name C [--type T] [--metadata JSON] [--reference SPEC ...] [--wait]
    registry link REF MODEL [--alias A ...] [--wait]
    registry alias add|mv MODEL:VERSION ALIAS [--wait]     registry alias rm MODEL ALIAS
    registry tag add REF TAG [--wait]                      registry tag rm REF TAG
    registry get REF [-o DIR] [--file PATH]                registry resolve REF
    registry events [--follow]   registry deliveries   registry automations   registry items
    registry automation run ID VERSION [--alias A] [--tag T] [--wait]
    registry automation history ID [--outcome O]           registry automation preview ID [--event E]
    registry webhook test ID [--payload JSON]              registry wait EVENT_ID ...
    registry token list                                    registry token revoke ID

Every command takes ``--url``, ``--team``, ``--json`` (machine-readable output on stdout) and ``--quiet`` (no
progress bar or progress lines). Settings not given come from REGISTRY_URL, REGISTRY_TOKEN, REGISTRY_TEAM or the
file ``registry login`` writes. On failure the command prints one line, ``registry: error: <reason>``, on stderr and
exits with the status of its kind (see ``registry --help``).
"""

from __future__ import annotations

import argparse
import getpass
import json
import os
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict
from typing import Any

from . import __version__
from .api import Registry
from .config import ENV_URL, config_path, load_config
from .errors import EXIT_CODES, BadRequest, ConfigError, RegistryError
from .progress import bar_for, human_bytes
from .types import (
    ApiToken,
    ArtifactVersion,
    Automation,
    AutomationRun,
    Delivery,
    Event,
    LaunchItem,
    ModelVersion,
    WaitResult,
)
from .wait import DEFAULT_TIMEOUT, Update, describe

__all__ = ["build_parser", "main"]


# --- Output -----------------------------------------------------------------------------------------------


class Output:
    def __init__(self, args: argparse.Namespace) -> None:
        self.json = bool(getattr(args, "json", False))
        self.quiet = bool(getattr(args, "quiet", False))

    def line(self, text: str = "") -> None:
        print(text, flush=True)

    def note(self, text: str) -> None:
        """Progress for a person: stderr, unless --quiet."""
        if not self.quiet:
            print(text, file=sys.stderr, flush=True)

    def data(self, value: Any) -> None:
        print(json.dumps(value, indent=2, sort_keys=True, default=str), flush=True)


def _events_line(events: Sequence[Any]) -> str:
    if not events:
        return "no events"
    return ", ".join(
        f"{e.type}{' ' + (e.alias or e.tag) if e.alias or e.tag else ''}{' manual' if e.manual else ''} ({e.id[:8]})"
        for e in events
    )


def _short(value: str | None, width: int = 8) -> str:
    return (value or "-")[:width]


# --- Commands ---------------------------------------------------------------------------------------------


def cmd_login(args: argparse.Namespace, out: Output) -> int:
    url = getattr(args, "url", None) or os.environ.get(ENV_URL) or load_config().get("url") or _ask("Registry URL: ")
    team = getattr(args, "team", None)
    if args.token_stdin:
        token = sys.stdin.readline().strip()
        registry = Registry.use_token(url, token, team=team)
        who = "a token"
    else:
        username = args.username or _ask("Username: ")
        if args.password_stdin:
            password = sys.stdin.readline().rstrip("\n")
        elif sys.stdin.isatty():
            password = getpass.getpass("Password: ")
        else:
            raise ConfigError("No terminal to ask the password on: pass --password-stdin (or --token-stdin).")
        registry = Registry.login(url, username, password, team=team)
        who = username
    path = config_path()
    team = load_config(path).get("team")  # the one saved: given, or the user's only team
    if out.json:
        out.data({"url": registry.url, "team": team, "config": str(path)})
    else:
        out.line(f"Logged in to {registry.url} with {who}{f' (team {team})' if team else ''}; saved in {path}.")
    return 0


def _ask(prompt: str) -> str:
    if not sys.stdin.isatty():
        raise ConfigError(f"No terminal to ask on: pass the value as an option ({prompt.rstrip(': ')}).")
    answer = input(prompt).strip()
    if not answer:
        raise ConfigError(f"{prompt.rstrip(': ')} is required.")
    return answer


def _json_object(text: str | None, option: str) -> dict[str, Any]:
    if text is None:
        return {}
    try:
        value = json.loads(text)
    except ValueError as exc:
        raise BadRequest(f"{option} is not JSON: {exc}.", field=option) from exc
    if not isinstance(value, dict):
        raise BadRequest(f"{option} must be a JSON object.", field=option)
    return value


def cmd_artifact_put(args: argparse.Namespace, out: Output) -> int:
    registry = _registry(args)
    version = registry.log_artifact(
        args.path,
        project=args.project,
        name=args.name,
        type=args.type,
        metadata=_json_object(args.metadata, "--metadata"),
        description=args.description,
        references=args.reference or (),
        file_name=args.file_name,
        progress=bar_for(quiet=out.quiet),
    )
    if out.json and not args.wait:
        out.data(version.raw)
    elif not out.json:
        size = sum(f.size for f in version.files)
        refs = f", {len(version.references)} reference(s)" if version.references else ""
        out.line(
            f"{version.reference} {version.state}: {len(version.files)} file(s), {human_bytes(size)}{refs}; "
            f"digest {version.digest}"
        )
        if "events" in version.raw:
            out.line(f"events: {_events_line(version.events)}")
    return _then_wait(args, out, registry, version)


def cmd_link(args: argparse.Namespace, out: Output) -> int:
    registry = _registry(args)
    model_version = registry.link(args.artifact, args.model, aliases=args.alias or (), create_model=not args.no_create)
    _print_model_version(out, model_version, f"{model_version.artifact} linked as", wait=args.wait)
    return _then_wait(args, out, registry, model_version)


def cmd_alias_add(args: argparse.Namespace, out: Output) -> int:
    registry = _registry(args)
    model_version = registry.add_alias(args.model_version, args.alias)
    _print_model_version(out, model_version, f"{args.alias} is on", wait=args.wait)
    return _then_wait(args, out, registry, model_version)


def cmd_alias_rm(args: argparse.Namespace, out: Output) -> int:
    _registry(args).remove_alias(args.model, args.alias)
    return _removed(out, args.alias, model=args.model)


def _removed(out: Output, name: str, **where: str) -> int:
    """Say that ``name`` was taken off what ``where`` names (an alias off a model, a tag off a version)."""
    if out.json:
        out.data({"removed": name, **where})
    else:
        out.line(f"{name} removed from {next(iter(where.values()))}.")
    return 0


def cmd_tag_add(args: argparse.Namespace, out: Output) -> int:
    registry = _registry(args)
    version = registry.add_tag(args.reference, args.tag)
    if out.json:
        if not args.wait:
            out.data(version.raw)
    else:
        out.line(f"{version.reference} tags: {', '.join(version.tags) or 'none'}")
        out.line(f"events: {_events_line(version.events)}")
    return _then_wait(args, out, registry, version)


def cmd_tag_rm(args: argparse.Namespace, out: Output) -> int:
    _registry(args).remove_tag(args.reference, args.tag)
    return _removed(out, args.tag, reference=args.reference)


def _print_model_version(out: Output, model_version: ModelVersion, prefix: str, *, wait: bool) -> None:
    if out.json:
        if not wait:
            out.data(model_version.raw)
        return
    aliases = ", ".join(model_version.aliases) or "none"
    out.line(f"{prefix} {model_version.registered_model}:{model_version.version} (aliases: {aliases})")
    if "events" in model_version.raw:
        out.line(f"events: {_events_line(model_version.events)}")


def _then_wait(
    args: argparse.Namespace, out: Output, registry: Registry, change: ArtifactVersion | ModelVersion
) -> int:
    if not args.wait:
        return 0
    result = registry.wait(change, timeout=args.timeout, poll=args.poll, on_update=_reporter(out))
    _print_wait(out, result, change=change.raw)
    return 0


def _reporter(out: Output) -> Callable[[Update], None]:
    def report(thing: Update) -> None:
        out.note(describe(thing))

    return report


def _print_wait(out: Output, result: WaitResult, *, change: dict[str, Any] | None = None) -> None:
    if out.json:
        data: dict[str, Any] = {
            "events": [e.raw for e in result.events],
            "deliveries": [d.raw for d in result.deliveries],
            "items": [i.raw for i in result.items],
        }
        if change is not None:
            data["change"] = change
        out.data(data)
        return
    succeeded = sum(1 for d in result.deliveries if d.status == "succeeded")
    finished = sum(1 for i in result.items if i.state == "finished")
    out.line(
        f"settled: {len(result.events)} event(s), {succeeded} of {len(result.deliveries)} delivery(ies) succeeded, "
        f"{finished} of {len(result.items)} launch item(s) finished"
    )


def cmd_wait(args: argparse.Namespace, out: Output) -> int:
    result = _registry(args).wait(args.event, timeout=args.timeout, poll=args.poll, on_update=_reporter(out))
    _print_wait(out, result)
    return 0


def cmd_get(args: argparse.Namespace, out: Output) -> int:
    result = _registry(args).download(args.reference, args.output, file=args.file, progress=bar_for(quiet=out.quiet))
    if out.json:
        out.data(
            {
                "version": result.version.reference,
                "directory": result.directory,
                "written": result.written,
                "unchanged": result.unchanged,
                "references": [asdict(r) for r in result.references],
            }
        )
        return 0
    out.line(
        f"{result.version.reference} -> {result.directory}: {len(result.written)} file(s) written, "
        f"{len(result.unchanged)} already there"
    )
    for reference in result.references:
        out.line(f"reference (not fetched): {reference.path} {reference.uri} {human_bytes(reference.size)}")
    return 0


def cmd_resolve(args: argparse.Namespace, out: Output) -> int:
    version = _registry(args).resolve(args.reference)
    if out.json:
        out.data(version.raw)
        return 0
    out.line(f"{version.reference} {version.state} {version.uri}")
    out.line(f"digest {version.digest or '-'}; type {version.type}; by {version.created_by or '-'}")
    if version.metadata:
        out.line(f"metadata {json.dumps(version.metadata, sort_keys=True)}")
    for f in version.files:
        out.line(f"file {f.path} {human_bytes(f.size)} {f.sha256}")
    for r in version.references:
        out.line(f"reference {r.path} {r.uri} {human_bytes(r.size)} {r.sha256}")
    return 0


def _event_row(event: Event) -> str:
    # an artifact event's artifact names its version already
    where = f"{event.registered_model}:{event.version or '-'}" if event.registered_model else event.artifact or "-"
    alias = f" {event.alias or event.tag}" if event.alias or event.tag else ""
    marks = ["dispatched" if event.dispatched else "not dispatched"]
    if event.manual:
        marks.insert(0, "manual" + (f" for automation {event.automation}" if event.automation is not None else ""))
    return (
        f"{event.created_at or '-'} {event.id} {event.type} {where}{alias} "
        f"by {event.author or '-'} ({', '.join(marks)})"
    )


def cmd_events(args: argparse.Namespace, out: Output) -> int:
    registry = _registry(args)

    def fetch() -> list[Event]:
        return registry.events(type=args.type, registered_model=args.model, limit=args.limit)

    events = fetch()
    if not args.follow:
        if out.json:
            out.data([e.raw for e in events])
        for event in [] if out.json else events:
            out.line(_event_row(event))
        return 0
    seen: set[str] = set()
    try:
        while True:
            for event in reversed(events):  # oldest first
                if event.id not in seen:
                    seen.add(event.id)
                    out.line(json.dumps(event.raw, sort_keys=True) if out.json else _event_row(event))
            time.sleep(args.interval)
            events = fetch()
    except KeyboardInterrupt:
        return 0


def cmd_deliveries(args: argparse.Namespace, out: Output) -> int:
    deliveries = _registry(args).deliveries(event=args.event, status=args.status, limit=args.limit)
    _rows(out, deliveries, _delivery_row)
    return 0


def _delivery_row(d: Delivery) -> str:
    code = f" {d.last_status_code}" if d.last_status_code is not None else ""
    error = f" {d.last_error}" if d.last_error else ""
    return (
        f"{d.id} {d.status}{code} {d.event_type} event {_short(d.event)} {d.automation_name} -> {d.webhook_name} "
        f"attempts={d.attempt_count}{error}"
    )


def cmd_automations(args: argparse.Namespace, out: Output) -> int:
    _rows(out, _registry(args).automations(registered_model=args.model), _automation_row)
    return 0


def _automation_row(a: Automation) -> str:
    throttle = f" at most {a.throttle_runs} per {a.throttle_window} s" if a.throttle_runs and a.throttle_window else ""
    return (
        f"{a.id} {a.name} {'enabled' if a.enabled else 'disabled'} {a.event_type} "
        f"{a.registered_model or '(every model)'}{' /' + a.alias_regex + '/' if a.alias_regex else ''}"
        f"{' where ' + json.dumps(a.filter, separators=(',', ':')) if a.filter else ''} "
        f"-> {a.action_type} {a.action_name}{throttle}"
    )


def cmd_automation_run(args: argparse.Namespace, out: Output) -> int:
    registry = _registry(args)
    events = registry.run_automation(args.automation, args.version, alias=args.alias, tag=args.tag)
    fired = {"events": [asdict(e) for e in events]}
    if out.json and not args.wait:
        out.data(fired)
    elif not out.json:
        out.line(f"automation {args.automation} run by hand: {_events_line(events)}")
    if args.wait:
        result = registry.wait(events, timeout=args.timeout, poll=args.poll, on_update=_reporter(out))
        _print_wait(out, result, change=fired)
    return 0


def cmd_automation_history(args: argparse.Namespace, out: Output) -> int:
    _rows(out, _registry(args).automation_runs(args.automation, outcome=args.outcome), _run_row)
    return 0


def _run_row(r: AutomationRun) -> str:
    if r.outcome == "delivery":
        did = f"delivery {r.delivery or '-'} {r.delivery_status or '-'}"
    elif r.outcome == "queued":
        did = f"queued item {r.item or '-'} {r.item_state or '-'}"
    else:
        did = f"{r.outcome}{': ' + r.reason if r.reason else ''}"
    manual = " manual" if r.manual else ""
    return f"{r.created_at or '-'} event {_short(r.event)} {r.event_type} {r.version or '-'}{manual} -> {did}"


def cmd_automation_preview(args: argparse.Namespace, out: Output) -> int:
    preview = _registry(args).preview_automation(args.automation, event=args.event)
    if out.json:
        out.data(preview.raw)
        return 0
    out.line(f"{preview.event_type} event {preview.event} on {preview.version or '-'} (sent nowhere):")
    if preview.config is not None:
        out.line(json.dumps(preview.config, indent=2, sort_keys=True))
    else:
        out.line(preview.body or "")
    return 0


def cmd_items(args: argparse.Namespace, out: Output) -> int:
    items = _registry(args).items(event=args.event, queue=args.queue, state=args.state, limit=args.limit)
    _rows(out, items, _item_row)
    return 0


def _item_row(i: LaunchItem) -> str:
    exit_code = f" exit={i.exit_code}" if i.exit_code is not None else ""
    return f"{i.id} {i.state}{exit_code} {i.job_version} queue {i.queue} agent {i.agent or '-'} event {_short(i.event)}"


def _rows(out: Output, rows: Sequence[Any], row: Callable[[Any], str]) -> None:
    if out.json:
        out.data([r.raw for r in rows])
        return
    for r in rows:
        out.line(row(r))
    if not rows:
        out.note("(none)")


def cmd_token_list(args: argparse.Namespace, out: Output) -> int:
    _rows(out, _registry(args).tokens(), _token_row)
    return 0


def _token_row(t: ApiToken) -> str:
    return f"{t.id} {t.prefix}... {t.name} created {t.created_at} last used {t.last_used_at or 'never'}"


def cmd_token_revoke(args: argparse.Namespace, out: Output) -> int:
    _registry(args).revoke_token(args.token)
    if out.json:
        out.data({"revoked": args.token})
    else:
        out.line(f"token {args.token} revoked")
    return 0


def cmd_webhook_test(args: argparse.Namespace, out: Output) -> int:
    answer = _registry(args).test_webhook(args.webhook, _json_object(args.payload, "--payload"))
    if out.json:
        out.data(answer)
    else:
        status = answer.get("status_code")
        error = f" error: {answer.get('error')}" if answer.get("error") else ""
        out.line(f"status {status if status is not None else '-'} in {answer.get('duration_ms', 0):.0f} ms{error}")
        if answer.get("body"):
            out.line(str(answer["body"])[:2000])
    if answer.get("error") or not isinstance(answer.get("status_code"), int) or answer["status_code"] >= 300:
        return 1
    return 0


def _registry(args: argparse.Namespace) -> Registry:
    return Registry(url=getattr(args, "url", None), team=getattr(args, "team", None))


# --- Parser -----------------------------------------------------------------------------------------------


def _exit_codes_text() -> str:
    return "exit status:\n" + "\n".join(f"  {code:>3}  {meaning}" for code, meaning in EXIT_CODES.items())


def _common() -> argparse.ArgumentParser:
    # SUPPRESS: the options may come before or after the command without one side's default hiding the other's.
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--url", default=argparse.SUPPRESS, help="registry URL (REGISTRY_URL)")
    common.add_argument("--team", default=argparse.SUPPRESS, help="default team (REGISTRY_TEAM)")
    common.add_argument("--json", action="store_true", default=argparse.SUPPRESS, help="JSON output for scripts")
    common.add_argument(
        "-q", "--quiet", action="store_true", default=argparse.SUPPRESS, help="no progress bar or progress lines"
    )
    return common


def _wait_options(parser: argparse.ArgumentParser, *, flag: bool = True) -> None:
    if flag:
        parser.add_argument("--wait", action="store_true", help="then wait until what it started has settled")
    parser.add_argument(
        "--timeout", type=float, default=DEFAULT_TIMEOUT, help=f"seconds to wait (default {DEFAULT_TIMEOUT:g})"
    )
    parser.add_argument("--poll", type=float, default=1.0, help="seconds between checks (default 1)")


def build_parser() -> argparse.ArgumentParser:
    common = _common()
    parser = argparse.ArgumentParser(
        prog="registry",
        description="The model registry from the command line.",
        epilog=_exit_codes_text(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
        parents=[common],
    )
    parser.add_argument("--version", action="version", version=f"registry-client {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name: str, handler: Callable[[argparse.Namespace, Output], int], help: str, **kwargs: Any) -> Any:
        sub = commands.add_parser(name, help=help, description=help, parents=[common], **kwargs)
        sub.set_defaults(handler=handler)
        return sub

    p = command("login", cmd_login, "get an API token and save it (0600) for the next commands")
    p.add_argument("--username")
    secret = p.add_mutually_exclusive_group()
    secret.add_argument("--password-stdin", action="store_true", help="read the password from stdin")
    secret.add_argument("--token-stdin", action="store_true", help="save an existing token, read from stdin")

    artifact = commands.add_parser("artifact", help="artifact versions", parents=[common])
    artifact_commands = artifact.add_subparsers(dest="artifact_command", required=True, metavar="COMMAND")
    p = artifact_commands.add_parser(
        "put", help="log a version from a file or folder", description="Log a version from a file or folder: "
        "only files the team does not store yet are uploaded, then the version is committed.", parents=[common],
    )  # fmt: skip
    p.set_defaults(handler=cmd_artifact_put)
    p.add_argument("path", help="a file or a folder")
    p.add_argument("--project", required=True)
    p.add_argument("--name", required=True, help="the artifact collection")
    p.add_argument("--type", default="model")
    p.add_argument("--metadata", help="a JSON object")
    p.add_argument("--description", default="")
    p.add_argument("--file-name", help="the path a single file is logged under (default: its name)")
    p.add_argument(
        "--reference",
        action="append",
        metavar="SPEC",
        help="bytes kept elsewhere, never fetched: path=P,uri=s3://...,size=N,sha256=H (or a JSON object); repeatable",
    )
    _wait_options(p)

    p = command("link", cmd_link, "link an artifact version to a registered model")
    p.add_argument("artifact", metavar="REF", help="team/project/collection:vN (or :alias)")
    p.add_argument("model", metavar="MODEL", help="registered model (made if missing)")
    p.add_argument("--alias", action="append", help="put this alias on the new model version; repeatable")
    p.add_argument("--no-create", action="store_true", help="fail if the registered model does not exist")
    _wait_options(p)

    alias = commands.add_parser("alias", help="add, move or remove an alias", parents=[common])
    alias_commands = alias.add_subparsers(dest="alias_command", required=True, metavar="COMMAND")
    for name in ("add", "mv"):
        p = alias_commands.add_parser(
            name,
            help="put an alias on a model version (moving it off another)",
            description="Put ALIAS on MODEL:VERSION; a version that had it loses it.",
            parents=[common],
        )
        p.set_defaults(handler=cmd_alias_add)
        p.add_argument("model_version", metavar="MODEL:VERSION", help="e.g. classifier:v3 or classifier:staging")
        p.add_argument("alias", metavar="ALIAS")
        _wait_options(p)
    p = alias_commands.add_parser("rm", help="remove an alias", parents=[common])
    p.set_defaults(handler=cmd_alias_rm)
    p.add_argument("model", metavar="MODEL")
    p.add_argument("alias", metavar="ALIAS")

    tag = commands.add_parser("tag", help="add or remove an artifact version's tag", parents=[common])
    tag_commands = tag.add_subparsers(dest="tag_command", required=True, metavar="COMMAND")
    reference_help = "project/collection:vN, or model-registry/MODEL:vN|ALIAS for a model version's artifact"
    p = tag_commands.add_parser("add", help="tag an artifact version (fires ADD_ARTIFACT_TAG)", parents=[common])
    p.set_defaults(handler=cmd_tag_add)
    p.add_argument("reference", metavar="REF", help=reference_help)
    p.add_argument("tag", metavar="TAG")
    _wait_options(p)
    p = tag_commands.add_parser("rm", help="remove a tag (fires REMOVE_ARTIFACT_TAG)", parents=[common])
    p.set_defaults(handler=cmd_tag_rm)
    p.add_argument("reference", metavar="REF", help=reference_help)
    p.add_argument("tag", metavar="TAG")

    p = command("get", cmd_get, "download a version's files, each checked against its SHA-256")
    p.add_argument("reference", metavar="REF")
    p.add_argument("-o", "--output", default=".", metavar="DIR", help="folder to write into (default: .)")
    p.add_argument("--file", metavar="PATH", help="only this file of the version")

    p = command("resolve", cmd_resolve, "the artifact version a reference names, with its manifest")
    p.add_argument("reference", metavar="REF")

    p = command("events", cmd_events, "the team's events, newest first")
    p.add_argument("--follow", action="store_true", help="keep printing new events (Ctrl-C stops)")
    p.add_argument("--interval", type=float, default=1.0, help="seconds between checks with --follow")
    p.add_argument("--type")
    p.add_argument("--model", help="registered model")
    p.add_argument("--limit", type=int, default=50)

    p = command("deliveries", cmd_deliveries, "webhook deliveries, newest first")
    p.add_argument("--event")
    p.add_argument("--status", choices=["pending", "sending", "succeeded", "retrying", "failed"])
    p.add_argument("--limit", type=int, default=50)

    p = command("automations", cmd_automations, "the team's automations")
    p.add_argument("--model", help="only those acting on this registered model")

    automation = commands.add_parser(
        "automation", help="run an automation by hand, its history, a preview of what it sends", parents=[common]
    )
    automation_commands = automation.add_subparsers(dest="automation_command", required=True, metavar="COMMAND")
    p = automation_commands.add_parser(
        "run", help="run an automation by hand for an existing version (team admins)",
        description="Run automation ID now for VERSION: one manual event of its type, for it alone (outside its "
        "throttle and filters). Refused (exit 6) when the automation is disabled.", parents=[common],
    )  # fmt: skip
    p.set_defaults(handler=cmd_automation_run)
    p.add_argument("automation", metavar="ID")
    p.add_argument(
        "version", metavar="VERSION",
        help="MODEL:vN or MODEL:ALIAS (vN alone when it watches one model); PROJECT/COLLECTION:vN for artifact events",
    )  # fmt: skip
    p.add_argument("--alias", default="", help="alias events: the alias, when VERSION does not name it")
    p.add_argument("--tag", default="", help="tag events: the tag")
    _wait_options(p)
    p = automation_commands.add_parser(
        "history", help="what the automation did with each event it matched, newest first", parents=[common]
    )
    p.set_defaults(handler=cmd_automation_history)
    p.add_argument("automation", metavar="ID")
    p.add_argument("--outcome", choices=["delivery", "queued", "skipped"])
    p = automation_commands.add_parser(
        "preview", help="what the automation would send for a past event (sent nowhere)",
        description="Render automation ID's webhook body (secrets shown as ${NAME}) or launch config against a past "
        "event of its type (default: the latest); nothing is sent.", parents=[common],
    )  # fmt: skip
    p.set_defaults(handler=cmd_automation_preview)
    p.add_argument("automation", metavar="ID")
    p.add_argument("--event", metavar="EVENT_ID", help="default: the latest event of the automation's type")

    p = command("items", cmd_items, "launch queue items")
    p.add_argument("--event")
    p.add_argument("--queue")
    p.add_argument("--state", choices=["pending", "claimed", "running", "finished", "failed", "cancelled"])
    p.add_argument("--limit", type=int, default=50)

    webhook = commands.add_parser("webhook", help="webhooks", parents=[common])
    webhook_commands = webhook.add_subparsers(dest="webhook_command", required=True, metavar="COMMAND")
    p = webhook_commands.add_parser(
        "test", help="send a payload once to a webhook (nothing recorded)", parents=[common]
    )
    p.set_defaults(handler=cmd_webhook_test)
    p.add_argument("webhook", metavar="ID")
    p.add_argument("--payload", default='{"test": true}', help='a JSON object (default: {"test": true})')

    token = commands.add_parser("token", help="your API tokens", parents=[common])
    token_commands = token.add_subparsers(dest="token_command", required=True, metavar="COMMAND")
    p = token_commands.add_parser(
        "list", help="your tokens: id, prefix, name, when made and last used", parents=[common]
    )
    p.set_defaults(handler=cmd_token_list)
    p = token_commands.add_parser("revoke", help="revoke one of your tokens (at once)", parents=[common])
    p.set_defaults(handler=cmd_token_revoke)
    p.add_argument("token", metavar="ID", type=int)

    p = command("wait", cmd_wait, "wait until what events started has settled")
    p.add_argument("event", nargs="+", metavar="EVENT_ID")
    _wait_options(p, flag=False)
    return parser


def _fail(message: str, code: int) -> int:
    print(f"registry: error: {' '.join(message.split())}", file=sys.stderr, flush=True)
    return code


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; returns the exit status (argparse exits with 2 on bad arguments)."""
    args = build_parser().parse_args(argv)
    out = Output(args)
    handler: Callable[[argparse.Namespace, Output], int] = args.handler
    try:
        return handler(args, out)
    except RegistryError as exc:
        return _fail(exc.message, exc.exit_code)
    except KeyboardInterrupt:
        return _fail("interrupted", 130)
    except OSError as exc:  # a local file: unreadable source, full disk, ...
        where = f"{exc.filename}: " if exc.filename else ""
        return _fail(f"{where}{exc.strerror or exc}", 1)


if __name__ == "__main__":
    sys.exit(main())
