"""One SMTP connection, many messages: what reaches a real server (aiosmtpd on loopback) and
how each answer is classified."""

from __future__ import annotations

import pytest

from webapp.mailer import Outcome, SmtpSession


@pytest.fixture
def session(smtp_server):
    _, port = smtp_server
    with SmtpSession("127.0.0.1", port, timeout=10) as smtp:
        yield smtp


def test_lines_starting_with_a_dot_arrive_unchanged(session, inbox):
    # "." alone on a line would end the message early if it were not doubled on the wire.
    data = b"Subject: dots\r\n\r\n.\r\n..two\r\n.three\r\nlast line without an end"
    result = session.send("bulletin@example.org", "dots@example.com", data)
    assert result.outcome == Outcome.SENT
    assert result.reply.startswith("250")
    [raw] = inbox.raw_to("dots@example.com")
    # The last line gets the line end SMTP requires; nothing else changes.
    assert raw.replace(b"\r\n", b"\n") == data.replace(b"\r\n", b"\n") + b"\n"


def test_one_connection_carries_many_messages_and_refusals(session, inbox):
    inbox.replies["gone@example.com"] = (550, "5.1.1 No such user")
    inbox.replies["later@example.com"] = (451, "4.7.1 Greylisted")
    inbox.replies["policy@example.com"] = (550, "5.7.1 Sender blocked")
    outcomes = {
        address: session.send("bulletin@example.org", address, b"Subject: hi\r\n\r\nbody\r\n")
        for address in (
            "first@example.com",
            "gone@example.com",
            "later@example.com",
            "policy@example.com",
            "last@example.com",
        )
    }
    assert {a: r.outcome for a, r in outcomes.items()} == {
        "first@example.com": Outcome.SENT,
        "gone@example.com": Outcome.PERMANENT,
        "later@example.com": Outcome.TEMPORARY,
        "policy@example.com": Outcome.POLICY,
        "last@example.com": Outcome.SENT,
    }
    assert outcomes["gone@example.com"].reply == "550 5.1.1 No such user"
    # A refused recipient does not spoil the transaction of the next one.
    assert len(inbox.to("first@example.com")) == len(inbox.to("last@example.com")) == 1
    assert len(inbox.messages) == 2
