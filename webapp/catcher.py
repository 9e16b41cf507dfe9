"""A development SMTP server that files every message it receives in a Maildir.

`make run` starts it so that a published issue can be read with any Maildir-capable client
(mutt -f instance/maildir) or by looking at the files.
"""

from __future__ import annotations

import mailbox
import signal
import threading
from pathlib import Path

from aiosmtpd.controller import Controller


class MaildirHandler:
    def __init__(self, path: Path):
        # Maildir(create=True) makes tmp/new/cur only when the folder itself is new.
        for sub in ("tmp", "new", "cur"):
            (path / sub).mkdir(parents=True, exist_ok=True)
        self.maildir = mailbox.Maildir(path, create=False)

    async def handle_DATA(self, server, session, envelope):  # noqa: N802 (aiosmtpd's hook name)
        message = mailbox.MaildirMessage(envelope.original_content or envelope.content)
        message["X-Envelope-From"] = envelope.mail_from
        message["X-Envelope-To"] = ", ".join(envelope.rcpt_tos)
        try:
            self.maildir.add(message)
        except OSError as exc:
            # A temporary failure: the sender retries instead of taking the reader for a
            # hard bounce, which aiosmtpd's default 500 answer would mean.
            return f"451 4.3.0 could not store the message: {exc.strerror}"
        return "250 Message accepted for delivery"


def serve(host: str, port: int, maildir: Path) -> None:
    """Run until interrupted."""
    controller = Controller(MaildirHandler(maildir), hostname=host, port=port)
    controller.start()
    print(f"SMTP catcher on {host}:{port}, filing messages in {maildir}", flush=True)
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    stop.wait()
    controller.stop()
