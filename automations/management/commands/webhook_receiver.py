"""A loopback receiver for people testing their webhook setup: it checks both signatures and prints each delivery.

The checks are the engineers' client's (``registry_client.webhooks``), what a receiver of their own would call.
"""

from __future__ import annotations

import json
import os
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from django.core.management.base import BaseCommand, CommandError
from registry_client.webhooks import WebhookVerificationError, verify_standard, verify_wandb


class Command(BaseCommand):
    help = (
        "Listen on a loopback port and print every webhook delivery with its headers, body and a verdict on the "
        "X-Wandb-Signature, the Standard Webhooks signature and the bearer token. Allow the address in "
        "WEBHOOK_ALLOWED_NETWORKS (e.g. 127.0.0.1/32) to send to it."
    )
    # A developer's tool that serves no page: the deploy checks (static files, broker, cache) are not its business,
    # and their warnings would come before the address it prints first.
    requires_system_checks: list = []

    def add_arguments(self, parser) -> None:
        parser.add_argument("--host", default="127.0.0.1", help="Address to listen on (default 127.0.0.1).")
        parser.add_argument("--port", type=int, default=8765)
        parser.add_argument(
            "--secret", default=os.environ.get("WEBHOOK_RECEIVER_SECRET", ""),
            help="The signing secret's value (or WEBHOOK_RECEIVER_SECRET).",
        )  # fmt: skip
        parser.add_argument(
            "--token", default=os.environ.get("WEBHOOK_RECEIVER_TOKEN", ""),
            help="The expected access token (or WEBHOOK_RECEIVER_TOKEN).",
        )  # fmt: skip
        parser.add_argument("--status", type=int, default=200, help="HTTP status to answer with (default 200).")
        parser.add_argument("--max-requests", type=int, default=0, help="Stop after this many (0: run until Ctrl-C).")

    def handle(self, *args, **options) -> None:
        if options["host"] not in ("127.0.0.1", "::1", "localhost"):
            raise CommandError("The receiver listens on loopback only (127.0.0.1, ::1 or localhost).")
        command = self
        secret, token, answer = options["secret"], options["token"], options["status"]

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                verdicts = verdicts_for(dict(self.headers.items()), body, secret=secret, token=token)
                self.send_response(answer)
                self.send_header("Content-Type", "application/json")
                self.end_headers()
                self.wfile.write(json.dumps({"received": True, "verdicts": verdicts}).encode())
                command.report(self.headers, body, verdicts)

            def log_message(self, format: str, *args) -> None:  # the report says it all
                pass

        server = ThreadingHTTPServer((options["host"], options["port"]), Handler)
        # Let the last request finish its answer and report before the command exits.
        server.daemon_threads = False
        server.block_on_close = True
        self.stdout.write(f"Listening on http://{options['host']}:{server.server_port}/ (Ctrl-C stops)")
        self.stdout.flush()
        try:
            if options["max_requests"]:
                for _ in range(options["max_requests"]):
                    server.handle_request()
            else:
                server.serve_forever()
        except KeyboardInterrupt:
            pass
        finally:
            server.server_close()

    def report(self, headers, body: bytes, verdicts: dict[str, str]) -> None:
        lines = [f"--- delivery {headers.get('webhook-id', '?')} at {time.strftime('%H:%M:%S')}"]
        for name, value in headers.items():
            shown = "Bearer ***" if name.lower() == "authorization" else value
            lines.append(f"{name}: {shown}")
        lines.append("")
        lines.append(body.decode("utf-8", errors="replace"))
        lines += [f"{check}: {verdict}" for check, verdict in verdicts.items()]
        self.stdout.write("\n".join(lines))
        self.stdout.flush()


def verdicts_for(headers: dict[str, str], body: bytes, *, secret: str, token: str) -> dict[str, str]:
    lowered = {k.lower(): v for k, v in headers.items()}
    verdicts: dict[str, str] = {}
    if secret:
        verdicts["X-Wandb-Signature"] = _verdict(
            lambda: verify_wandb(secret, body, lowered.get("x-wandb-signature")), present="x-wandb-signature" in lowered
        )
        verdicts["webhook-signature"] = _verdict(
            lambda: verify_standard(
                secret,
                body,
                msg_id=lowered.get("webhook-id"),
                timestamp=lowered.get("webhook-timestamp"),
                signature=lowered.get("webhook-signature"),
            ),
            present="webhook-signature" in lowered,
        )
    else:
        verdicts["signatures"] = "not checked (no --secret)"
    if token:
        verdicts["Authorization"] = "valid" if lowered.get("authorization") == f"Bearer {token}" else "INVALID"
    return verdicts


def _verdict(check, *, present: bool) -> str:
    if not present:
        return "missing"
    try:
        check()
    except WebhookVerificationError as exc:
        return f"INVALID: {exc}"
    return "valid"
