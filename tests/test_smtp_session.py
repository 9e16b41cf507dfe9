"""One SMTP connection, many messages: what reaches a real server (aiosmtpd on loopback), how
each answer is classified, and STARTTLS + AUTH against a relay that demands them."""

from __future__ import annotations

import ssl
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from aiosmtpd.smtp import AuthResult

from tests.fault_smtp import advertise_pipelining
from tests.helpers import Inbox, serving_smtp
from webapp.mailer import AddressError, MailerError, Outcome, SmtpSession


class PipeliningInbox(Inbox):
    async def handle_EHLO(self, server, session, envelope, hostname, responses):  # noqa: N802
        return advertise_pipelining(session, hostname, responses)


@pytest.fixture(params=["one command at a time", "pipelining"])
def server(request) -> Iterator[tuple[Inbox, int]]:
    """An SMTP server with and without PIPELINING: the session speaks both ways."""
    inbox = PipeliningInbox() if request.param == "pipelining" else Inbox()
    with serving_smtp(inbox) as port:
        yield inbox, port


@pytest.fixture
def inbox(server) -> Inbox:
    return server[0]


@pytest.fixture
def session(server) -> Iterator[SmtpSession]:
    _, port = server
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


def test_pipelining_is_used_only_when_the_server_offers_it(session, server):
    inbox, _ = server
    assert session._smtp.has_extn("pipelining") == isinstance(inbox, PipeliningInbox)


@pytest.mark.parametrize(
    ("address", "why"),
    [
        ("a@b.org\r\nRCPT TO:<x@evil.org>", "cannot use"),
        ("<a@b.org>", "cannot use"),
        ("a b@c.org", "cannot use"),
        ("ab", "cannot use"),
        ("用户@例子.中国", "non-ASCII characters before the @"),
    ],
)
def test_an_address_smtp_cannot_carry_is_refused_before_anything_is_sent(
    session, inbox, address, why
):
    with pytest.raises(AddressError, match=why):
        session.send("bulletin@example.org", address, b"Subject: x\r\n\r\nhi\r\n")
    with pytest.raises(AddressError, match=why):
        session.send(address, "han@example.com", b"Subject: x\r\n\r\nhi\r\n")
    assert inbox.messages == []


def test_a_chinese_domain_travels_in_its_xn_form(session, inbox):
    result = session.send("bulletin@example.org", "han@例子.中国", b"Subject: x\r\n\r\nhi\r\n")
    assert result.outcome == Outcome.SENT
    assert len(inbox.to("han@xn--fsqu00a.xn--fiqs8s")) == 1


# --- STARTTLS and AUTH, as a relay asks for them -------------------------------------------


@pytest.fixture(scope="module")
def certificate(tmp_path_factory) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 (made by the openssl command)."""
    folder = tmp_path_factory.mktemp("tls")
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
         "-keyout", str(key), "-out", str(cert), "-subj", "/CN=relay.test",
         "-addext", "subjectAltName=IP:127.0.0.1"],
        check=True, capture_output=True,
    )  # fmt: skip
    return cert, key


class Relay:
    """A relay that takes mail only over TLS and only from `bulletin` / `s3cret`."""

    def __init__(self) -> None:
        self.received: list[tuple[str, bool, list[str]]] = []  # (user, over TLS, recipients)

    def authenticate(self, server, session, envelope, mechanism, auth_data):
        ok = (auth_data.login, auth_data.password) == (b"bulletin", b"s3cret")
        return AuthResult(success=ok, handled=False, auth_data=auth_data)

    async def handle_DATA(self, server, session, envelope):  # noqa: N802
        self.received.append((session.auth_data.login.decode(), session.ssl is not None,
                              list(envelope.rcpt_tos)))  # fmt: skip
        return "250 2.0.0 Ok: queued"


@pytest.fixture
def relay(certificate) -> Iterator[tuple[Relay, int]]:
    cert, key = certificate
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    relay = Relay()
    with serving_smtp(
        relay,
        tls_context=context,
        require_starttls=True,
        authenticator=relay.authenticate,
        auth_require_tls=True,
    ) as port:
        yield relay, port


def test_starttls_then_login_then_mail_through_a_relay(relay, certificate, monkeypatch):
    server, port = relay
    monkeypatch.setenv("SSL_CERT_FILE", str(certificate[0]))  # trust the relay's certificate
    with SmtpSession(
        "127.0.0.1", port, username="bulletin", password="s3cret", starttls=True, timeout=10
    ) as session:
        result = session.send("bulletin@example.org", "han@example.com", b"Subject: x\r\n\r\nhi")
    assert result.outcome == Outcome.SENT
    assert server.received == [("bulletin", True, ["han@example.com"])]


def test_a_wrong_password_is_a_clear_error_and_nothing_is_sent(relay, certificate, monkeypatch):
    server, port = relay
    monkeypatch.setenv("SSL_CERT_FILE", str(certificate[0]))
    session = SmtpSession(
        "127.0.0.1", port, username="bulletin", password="wrong", starttls=True, timeout=10
    )
    with pytest.raises(MailerError, match=rf"SMTP login refused by 127\.0\.0\.1:{port}: 535"):
        session.open()
    assert server.received == []


def test_a_relay_with_an_untrusted_certificate_is_refused(relay):
    _, port = relay
    session = SmtpSession(
        "127.0.0.1", port, username="bulletin", password="s3cret", starttls=True, timeout=10
    )
    with pytest.raises(MailerError, match="certificate verify failed"):
        session.open()


def test_without_starttls_a_relay_that_requires_it_refuses_to_log_in(relay):
    _, port = relay
    session = SmtpSession("127.0.0.1", port, username="bulletin", password="s3cret", timeout=10)
    with pytest.raises(MailerError, match=f"127.0.0.1:{port}"):
        session.open()


class CarelessServer(PipeliningInbox):
    """Refuses a recipient at RCPT yet answers 354 to DATA, as RFC 2920 says a server may."""

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):  # noqa: N802
        envelope.rcpt_tos.append(address)
        return "550 5.1.1 No such user" if address.startswith("gone") else "250 OK"

    async def handle_DATA(self, server, session, envelope):  # noqa: N802
        if envelope.rcpt_tos[0].startswith("gone"):
            return "554 5.5.1 No valid recipients"
        return await super().handle_DATA(server, session, envelope)


def test_data_accepted_after_a_refused_recipient_carries_no_message():
    inbox = CarelessServer()
    with serving_smtp(inbox) as port, SmtpSession("127.0.0.1", port, timeout=10) as session:
        gone = session.send("bulletin@example.org", "gone@example.com", b"Subject: x\r\n\r\nhi")
        kept = session.send("bulletin@example.org", "kept@example.com", b"Subject: x\r\n\r\nhi")
    assert (gone.outcome, gone.reply) == (Outcome.PERMANENT, "550 5.1.1 No such user")
    assert kept.outcome == Outcome.SENT
    assert [rcpts for rcpts, _, _ in inbox._messages] == [["kept@example.com"]]
