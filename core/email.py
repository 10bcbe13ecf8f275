"""Outgoing email: SMTP when ``TCC_SMTP_HOST`` is set, else printed to the log (development).

Both adapters take the same ``EmailMessage``; callers never choose by environment.
"""

from __future__ import annotations

import logging
import smtplib
from email.message import EmailMessage
from typing import Protocol

from core.settings import Settings

log = logging.getLogger(__name__)


class Mailer(Protocol):
    """Sends one plain-text email."""

    def send(self, to: str, subject: str, body: str) -> None: ...


def _message(sender: str, to: str, subject: str, body: str) -> EmailMessage:
    msg = EmailMessage()
    msg["From"], msg["To"], msg["Subject"] = sender, to, subject
    msg.set_content(body)
    return msg


class SmtpMailer:
    """Delivers through an SMTP server (STARTTLS and login when configured)."""

    def __init__(self, settings: Settings) -> None:
        if settings.smtp_host is None:
            raise ValueError("SmtpMailer needs TCC_SMTP_HOST")
        self.settings = settings
        self.host = settings.smtp_host

    def send(self, to: str, subject: str, body: str) -> None:
        """Send now (blocking: call it from a worker thread)."""
        s = self.settings
        with smtplib.SMTP(self.host, s.smtp_port, timeout=15) as smtp:
            if s.smtp_starttls:
                smtp.starttls()
            if s.smtp_username and s.smtp_password is not None:
                smtp.login(s.smtp_username, s.smtp_password.get_secret_value())
            smtp.send_message(_message(s.email_from, to, subject, body))


class LogMailer:
    """Development stand-in: the email is written to the log, so its link can be followed."""

    def __init__(self, settings: Settings) -> None:
        self.sender = settings.email_from

    def send(self, to: str, subject: str, body: str) -> None:
        """Log the message (no SMTP server is configured)."""
        log.warning("email (no SMTP configured) to %s: %s\n%s", to, subject, body)


def build_mailer(settings: Settings) -> Mailer:
    """The configured mailer."""
    return SmtpMailer(settings) if settings.smtp_host else LogMailer(settings)
