"""The development SMTP catcher files what it receives as Maildir messages."""

from __future__ import annotations

import smtplib
from email import message_from_bytes, policy
from email.message import EmailMessage

import pytest
from aiosmtpd.controller import Controller

from tests.helpers import free_port
from webapp.catcher import MaildirHandler


@pytest.mark.parametrize("existing", [False, True], ids=["new folder", "existing empty folder"])
def test_a_message_sent_to_the_catcher_is_a_file_in_maildir_new(tmp_path, existing):
    maildir = tmp_path / "maildir"
    if existing:
        maildir.mkdir()
    port = free_port()
    controller = Controller(MaildirHandler(maildir), hostname="127.0.0.1", port=port)
    controller.start()
    try:
        message = EmailMessage()
        message["From"] = "bulletin@example.org"
        message["To"] = "reader@example.com"
        message["Subject"] = "工作简报 2022年第8期"
        message.set_content("正文")
        with smtplib.SMTP("127.0.0.1", port) as client:
            client.send_message(message)
    finally:
        controller.stop()
    [path] = list((maildir / "new").iterdir())
    stored = message_from_bytes(path.read_bytes(), policy=policy.default)
    assert stored["X-Envelope-To"] == "reader@example.com"
    assert stored["Subject"] == "工作简报 2022年第8期"
    assert stored.get_content().strip() == "正文"
