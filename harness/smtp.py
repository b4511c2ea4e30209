"""A mail server on loopback (aiosmtpd), for the alert e-mails: it keeps every message it accepts, or refuses them
all with a chosen reply, as a mail server that rejects the recipients would."""

from __future__ import annotations

import email
import email.policy
import threading
from email.message import EmailMessage

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session

from .util import free_port, wait_until


class MailServer:
    """``with MailServer() as mail:`` serves on 127.0.0.1:``mail.port``; ``mail.messages`` holds what it accepted.
    ``refuse`` (an SMTP reply such as ``"550 5.1.1 no such user"``) answers every RCPT TO with it instead."""

    def __init__(self, *, refuse: str = "") -> None:
        self.refuse = refuse
        self.port = free_port()
        self.messages: list[EmailMessage] = []
        self.envelopes: list[Envelope] = []
        self._lock = threading.Lock()
        self._controller = Controller(self, hostname="127.0.0.1", port=self.port)

    @property
    def url(self) -> str:
        """The server as EMAIL_URL names it."""
        return f"smtp://127.0.0.1:{self.port}"

    async def handle_RCPT(self, server: SMTP, session: Session, envelope: Envelope, address: str, options) -> str:
        if self.refuse:
            return self.refuse
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        message = email.message_from_bytes(envelope.content, policy=email.policy.default)
        with self._lock:
            self.envelopes.append(envelope)
            self.messages.append(message)  # type: ignore[arg-type]
        return "250 Message accepted"

    def wait_for(self, count: int, *, timeout: float = 30) -> list[EmailMessage]:
        wait_until(lambda: len(self.messages) >= count, timeout=timeout, message=f"{count} e-mail(s)")
        return list(self.messages)

    def __enter__(self) -> MailServer:
        self._controller.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._controller.stop()
