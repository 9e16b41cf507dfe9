"""What comes back by email: bounces, complaints and unsubscribe requests, and only ours count."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from dataclasses import dataclass, replace
from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from pathlib import Path

import pytest
from sqlalchemy import select
from sqlalchemy.exc import OperationalError

from webapp import bounces
from webapp.bounces import IngestKind, ingest, read_verp, verp_address
from webapp.extensions import db
from webapp.models import (
    Delivery,
    DeliveryStatus,
    EventKind,
    Issue,
    IssueStatus,
    Subscriber,
    SubscriberEvent,
    SubscriberStatus,
    Suppression,
    SuppressionReason,
)
from webapp.subscriptions import link_payload
from webapp.tokens import Purpose, make_token

BULLETIN = str(Path(sys.executable).parent / "bulletin")
BOUNCE_DOMAIN = "bounces.example.org"
READER = "reader@example.com"


@pytest.fixture
def bounce_domain(app, monkeypatch):
    monkeypatch.setitem(app.config, "BOUNCE_DOMAIN", BOUNCE_DOMAIN)


@dataclass
class Sent:
    """One issue sent to one reader, as the sending engine leaves it."""

    issue_id: int
    subscriber_id: int
    delivery_id: int
    message_id: str
    verp: str


def send(email: str = READER) -> Sent:
    issue = Issue(title="工作简报 2022 年第 8 期", status=IssueStatus.SENT)
    db.session.add(issue)
    db.session.flush()
    subscriber = db.session.scalar(select(Subscriber).where(Subscriber.email == email))
    if subscriber is None:
        subscriber = Subscriber(email=email, status=SubscriberStatus.ACTIVE)
        db.session.add(subscriber)
        db.session.flush()
    delivery = Delivery(
        issue_id=issue.id,
        subscriber_id=subscriber.id,
        status=DeliveryStatus.SENT,
        smtp_reply="250 2.0.0 Ok: queued as 4LxYz",
        message_id=make_msgid(domain="example.org"),
    )
    db.session.add(delivery)
    db.session.commit()
    return Sent(
        issue.id, subscriber.id, delivery.id, delivery.message_id, verp_address(delivery.id)
    )


@pytest.fixture
def sent(db_session, bounce_domain) -> Sent:
    return send()


# --- messages as MTAs and mailbox providers write them -------------------------------------


def fields(**values: str) -> EmailMessage:
    block = EmailMessage()
    for name, value in values.items():
        block[name.replace("_", "-")] = value
    return block


def digest_copy(sent: Sent, *, return_path: bool = True) -> EmailMessage:
    """The reader's copy of the digest, as their mailbox stored it."""
    message = EmailMessage()
    if return_path:
        message["Return-Path"] = f"<{sent.verp}>"
    message["From"] = "工作简报 <bulletin@example.org>"
    message["To"] = READER
    message["Subject"] = "工作简报 2022 年第 8 期"
    message["Date"] = formatdate()
    message["Message-ID"] = sent.message_id
    message["List-Id"] = "<bulletin.example.org>"
    reader = db.session.get(Subscriber, sent.subscriber_id)
    token = make_token(Purpose.UNSUBSCRIBE, link_payload(reader))
    message["List-Unsubscribe"] = f"<https://bulletin.example.org/unsubscribe/{token}>"
    message.set_content("各位读者：本期简报共四个栏目。")
    return message


def report(report_type: str, human: str, machine: EmailMessage, original: EmailMessage, **headers):
    message = EmailMessage()
    for name, value in headers.items():
        message[name.replace("_", "-")] = value
    message["Date"] = formatdate()
    message["Message-ID"] = make_msgid(domain="mx.example.com")
    message.set_content(human)
    message.make_mixed()
    message.set_type("multipart/report")
    message.set_param("report-type", report_type)
    message.attach(machine)
    message.attach(original)
    return message


DIAGNOSTICS = {
    "5.1.1": "smtp; 550 5.1.1 <reader@example.com>: Recipient address rejected: "
    "User unknown in virtual mailbox table",
    "4.2.2": "smtp; 452 4.2.2 <reader@example.com>: Mailbox full",
}
POSTFIX_GREETING = "This is the mail system at host mail.example.org.\n\n"


def postfix_dsn(
    sent: Sent,
    *,
    action: str = "failed",
    status: str = "5.1.1",
    diagnostic: str | None = None,
    final_recipient: str = READER,
    return_to: str | None = None,
) -> bytes:
    """A delivery status notification as Postfix writes it (RFC 3464)."""
    return_to = return_to or sent.verp
    if diagnostic is None:
        diagnostic = DIAGNOSTICS.get(status, f"smtp; 550 {status} refused")
    status_part = EmailMessage()
    status_part["Content-Type"] = "message/delivery-status"
    recipient = fields(
        Final_Recipient=f"rfc822; {final_recipient}",
        Original_Recipient=f"rfc822;{final_recipient}",
        Action=action,
        Status=status,
        Remote_MTA="dns; mx.example.com",
        Diagnostic_Code=diagnostic,
    )
    if action == "delayed":
        recipient["Will-Retry-Until"] = formatdate()
    status_part.set_payload(
        [
            fields(
                Reporting_MTA="dns; mail.example.org",
                X_Postfix_Queue_ID="4LxYz2Qk0Xz9",
                X_Postfix_Sender=f"rfc822; {return_to}",
                Arrival_Date=formatdate(),
            ),
            recipient,
        ]
    )
    if action == "delayed":
        human = POSTFIX_GREETING + "#### THIS IS A WARNING ONLY.  YOU DO NOT NEED TO RESEND. ####\n"
        subject = "Delayed Mail (still being retried)"
        # Postfix returns only the headers with a delay warning.
        original = EmailMessage()
        original["Content-Type"] = "text/rfc822-headers"
        original.set_payload(digest_copy(sent).as_bytes().split(b"\n\n")[0].decode("ascii"))
    else:
        human = POSTFIX_GREETING + (
            "I'm sorry to have to inform you that your message could not\n"
            "be delivered to one or more recipients.\n"
        )
        subject = "Undelivered Mail Returned to Sender"
        original = EmailMessage()
        original.set_content(digest_copy(sent))
    message = report(
        "delivery-status",
        human,
        status_part,
        original,
        Return_Path="<>",
        Delivered_To=return_to,
        From="MAILER-DAEMON@mail.example.org (Mail Delivery System)",
        To=return_to,
        Subject=subject,
        Auto_Submitted="auto-replied",
    )
    return message.as_bytes()


def arf_complaint(sent: Sent, *, return_path: bool = True, feedback_type: str = "abuse") -> bytes:
    """An abuse report from a mailbox provider's feedback loop (RFC 5965)."""
    feedback = EmailMessage()
    feedback["Content-Type"] = "message/feedback-report"
    feedback.set_payload(
        [
            fields(
                Feedback_Type=feedback_type,
                User_Agent="ExampleFBL/1.0",
                Version="1",
                Arrival_Date=formatdate(),
                Source_IP="192.0.2.25",
                Reported_Domain="example.org",
                # Providers redact the complaining address.
                Original_Rcpt_To="redacted@example.com",
            )
        ]
    )
    original = EmailMessage()
    original.set_content(digest_copy(sent, return_path=return_path))
    message = report(
        "feedback-report",
        "This is an email abuse report for an email message received from IP 192.0.2.25.",
        feedback,
        original,
        From="feedbackloop@mx.example.com",
        To="fbl@example.org",
        Subject="Email Feedback Report for IP 192.0.2.25",
    )
    return message.as_bytes()


def unsubscribe_mail(token: str) -> bytes:
    """What a mail client sends for the mailto: in our List-Unsubscribe header."""
    message = EmailMessage()
    message["From"] = READER
    message["To"] = "unsubscribe@example.org"
    message["Subject"] = f"unsubscribe {token}"
    message["Date"] = formatdate()
    message["Message-ID"] = make_msgid(domain="example.com")
    message.set_content("This message was automatically generated by the mail client.")
    return message.as_bytes()


def state(sent: Sent) -> tuple:
    """Everything a bounce could change."""
    db.session.expire_all()
    delivery = db.session.get(Delivery, sent.delivery_id)
    subscriber = db.session.get(Subscriber, sent.subscriber_id)
    return (
        delivery.status,
        delivery.smtp_reply,
        subscriber.status,
        subscriber.soft_bounces,
        db.session.scalars(select(Suppression.reason)).all(),
        db.session.scalars(select(SubscriberEvent.kind)).all(),
    )


# --- VERP ----------------------------------------------------------------------------------


@pytest.mark.parametrize("delivery_id", [1, 255, 2**40 + 7, 2**63 - 1])
def test_a_verp_address_is_lower_case_short_and_names_its_delivery(app, bounce_domain, delivery_id):
    with app.app_context():
        address = verp_address(delivery_id)
        local, _, domain = address.rpartition("@")
        assert address == address.lower()
        assert domain == BOUNCE_DOMAIN
        assert local.startswith(f"bounces+{delivery_id:x}-")
        assert len(local) <= 64
        assert read_verp(address) == delivery_id
        # Some MTAs change the case of local parts; hex survives it.
        assert read_verp(address.upper()) == delivery_id
        assert read_verp(f"<{address}>") == delivery_id


def test_a_forged_or_borrowed_verp_signature_is_refused(app, bounce_domain):
    with app.app_context():
        good = verp_address(12)
        local, _, domain = good.partition("@")
        flipped = local[:-1] + ("0" if local[-1] != "0" else "1")
        signature = local.rpartition("-")[2]
        assert read_verp(f"{flipped}@{domain}") is None
        assert read_verp(f"bounces+d-{signature}@{domain}") is None  # another delivery's id
        assert read_verp(f"bounces+c@{domain}") is None
        assert read_verp(f"bounces+0c-{signature}@{domain}") is None
        assert read_verp("bulletin@example.org") is None
        assert read_verp("") is None


def test_a_verp_signature_made_with_a_fallback_key_still_verifies(app, bounce_domain):
    with app.app_context():
        old_address = verp_address(42)
    old_key = app.config["SECRET_KEY"]
    app.config.update(SECRET_KEY="a-brand-new-key", SECRET_KEY_FALLBACKS=[old_key])
    try:
        with app.app_context():
            assert read_verp(old_address) == 42
            assert verp_address(42) != old_address  # new mail is signed with the new key
        app.config.update(SECRET_KEY_FALLBACKS=[])
        with app.app_context():
            assert read_verp(old_address) is None
    finally:
        app.config.update(SECRET_KEY=old_key, SECRET_KEY_FALLBACKS=[])


def test_verp_needs_a_bounce_domain(app):
    with app.app_context(), pytest.raises(RuntimeError, match="BOUNCE_DOMAIN"):
        verp_address(1)


# --- effects -------------------------------------------------------------------------------


def test_a_hard_bounce_fails_the_delivery_and_suppresses_the_reader(sent):
    result = ingest(postfix_dsn(sent), recipient=sent.verp)
    db.session.commit()

    assert result.kind == IngestKind.HARD_BOUNCE
    assert (result.delivery_id, result.subscriber_id) == (sent.delivery_id, sent.subscriber_id)
    assert "5.1.1" in result.reason and READER not in result.reason
    delivery_status, reply, status, soft, suppressions, events = state(sent)
    assert delivery_status == DeliveryStatus.FAILED
    assert reply.startswith("smtp; 550 5.1.1") and "User unknown" in reply
    assert status == SubscriberStatus.BOUNCED
    assert suppressions == [SuppressionReason.HARD_BOUNCE]
    assert events == [EventKind.BOUNCED]


def test_the_verp_address_is_found_in_the_headers_without_an_envelope(sent):
    assert ingest(postfix_dsn(sent)).kind == IngestKind.HARD_BOUNCE


def test_a_delayed_mailbox_full_report_is_a_soft_bounce(sent):
    result = ingest(postfix_dsn(sent, action="delayed", status="4.2.2"), recipient=sent.verp)
    db.session.commit()

    assert result.kind == IngestKind.SOFT_BOUNCE
    assert "soft bounce 1 of 3" in result.reason
    delivery_status, reply, status, soft, suppressions, events = state(sent)
    # Still in the queue out there: the message may yet arrive.
    assert delivery_status == DeliveryStatus.SENT
    assert status == SubscriberStatus.ACTIVE
    assert soft == 1
    assert suppressions == []
    event = db.session.scalar(select(SubscriberEvent))
    assert json.loads(event.detail) == {
        "delivery": sent.delivery_id,
        "soft_bounces": 1,
        "status": "4.2.2",
    }


def test_one_message_counts_as_one_soft_bounce_however_often_it_comes_back(sent):
    delayed = postfix_dsn(sent, action="delayed", status="4.2.2")
    given_up = postfix_dsn(sent, action="failed", status="4.4.7", diagnostic="")
    assert ingest(delayed, recipient=sent.verp).kind == IngestKind.SOFT_BOUNCE
    assert ingest(delayed, recipient=sent.verp).kind == IngestKind.SOFT_BOUNCE
    result = ingest(given_up, recipient=sent.verp)
    db.session.commit()

    assert result.kind == IngestKind.SOFT_BOUNCE
    delivery_status, reply, status, soft, _, _ = state(sent)
    assert soft == 1
    # A 4.x.x that the remote MTA gave up on: the message did not arrive.
    assert delivery_status == DeliveryStatus.FAILED
    assert reply == "4.4.7 failed"
    assert status == SubscriberStatus.ACTIVE


def test_soft_bounces_up_to_the_limit_count_as_a_hard_bounce(sent, app):
    assert app.config["SOFT_BOUNCE_LIMIT"] == 3
    kinds = []
    for number in range(3):
        one = sent if number == 0 else send()
        kinds.append(ingest(postfix_dsn(one, action="delayed", status="4.2.2")).kind)
        db.session.commit()

    assert kinds == [IngestKind.SOFT_BOUNCE, IngestKind.SOFT_BOUNCE, IngestKind.HARD_BOUNCE]
    _, _, status, soft, suppressions, _ = state(sent)
    assert (status, soft) == (SubscriberStatus.BOUNCED, 3)
    assert suppressions == [SuppressionReason.HARD_BOUNCE]


def test_a_policy_refusal_is_soft_even_with_a_5(sent):
    raw = postfix_dsn(sent, status="5.7.1", diagnostic="smtp; 550 5.7.1 Message rejected as spam")
    result = ingest(raw, recipient=sent.verp)
    assert result.kind == IngestKind.SOFT_BOUNCE
    delivery_status, _, status, soft, suppressions, _ = state(sent)
    assert (delivery_status, status, soft) == (DeliveryStatus.FAILED, SubscriberStatus.ACTIVE, 1)
    assert suppressions == []


def test_a_bounce_for_a_row_still_being_sent_leaves_the_row_to_the_engine(sent):
    delivery = db.session.get(Delivery, sent.delivery_id)
    delivery.status = DeliveryStatus.SENDING
    db.session.commit()
    assert ingest(postfix_dsn(sent)).kind == IngestKind.HARD_BOUNCE
    delivery_status, _, status, _, _, _ = state(sent)
    assert (delivery_status, status) == (DeliveryStatus.SENDING, SubscriberStatus.BOUNCED)


def test_an_abuse_complaint_suppresses_the_reader(sent):
    result = ingest(arf_complaint(sent), recipient="fbl@example.org")
    db.session.commit()

    assert result.kind == IngestKind.COMPLAINT
    assert (result.delivery_id, result.subscriber_id) == (sent.delivery_id, sent.subscriber_id)
    delivery_status, _, status, _, suppressions, events = state(sent)
    assert delivery_status == DeliveryStatus.SENT  # it did arrive
    assert status == SubscriberStatus.COMPLAINED
    assert suppressions == [SuppressionReason.COMPLAINT]
    assert events == [EventKind.COMPLAINED]


def test_a_complaint_without_a_return_path_is_matched_by_its_signed_unsubscribe_link(sent):
    send("other@example.com")  # another delivery, which must not be the one matched
    result = ingest(arf_complaint(sent, return_path=False))
    assert result.kind == IngestKind.COMPLAINT
    assert "signed unsubscribe link" in result.reason
    assert result.subscriber_id == sent.subscriber_id
    assert state(sent)[2] == SubscriberStatus.COMPLAINED


def test_an_unsubscribe_mail_unsubscribes(sent, app):
    token = make_token(Purpose.UNSUBSCRIBE, {"s": sent.subscriber_id})
    result = ingest(unsubscribe_mail(token), recipient=app.config["UNSUBSCRIBE_MAILTO"])
    db.session.commit()

    assert result.kind == IngestKind.UNSUBSCRIBE
    assert result.subscriber_id == sent.subscriber_id
    _, _, status, _, suppressions, _ = state(sent)
    assert status == SubscriberStatus.UNSUBSCRIBED
    assert suppressions == []  # they may come back through the sign-up form
    event = db.session.scalar(select(SubscriberEvent))
    assert (event.kind, event.source) == (EventKind.UNSUBSCRIBED, "email-link")


# --- what changes nothing ------------------------------------------------------------------


def forged_verp(sent: Sent) -> str:
    """The reader's own return path with one character of its signature changed."""
    local, _, domain = sent.verp.partition("@")
    return f"{local[:-1]}{'0' if local[-1] != '0' else '1'}@{domain}"


FORGERIES = {
    "forged signature": (lambda s: postfix_dsn(s, return_to=forged_verp(s)), "bad VERP signature"),
    "unsigned": (
        lambda s: postfix_dsn(s, return_to="bulletin@example.org"),
        "no VERP return path",
    ),
    "another reader": (
        lambda s: postfix_dsn(s, final_recipient="someone-else@example.net"),
        "not about this delivery's reader",
    ),
    "delivered, not failed": (
        lambda s: postfix_dsn(s, action="delivered", status="2.0.0"),
        "not a failure",
    ),
    "complaint with a forged return path": (
        lambda s: arf_complaint(replace(s, verp=forged_verp(s))),
        "bad VERP signature",
    ),
    "not-spam feedback": (lambda s: arf_complaint(s, feedback_type="not-spam"), "not-spam"),
    "bad unsubscribe token": (lambda s: unsubscribe_mail("eyJzIjoxfQ.forged.token"), "invalid"),
    "an out-of-office reply": (
        lambda s: b"From: reader@example.com\r\nSubject: Out of office\r\n\r\nBack Monday.\r\n",
        "not a bounce",
    ),
    "garbage": (lambda s: bytes(range(256)) * 40, "not a bounce"),
    "empty": (lambda s: b"", "empty message"),
}


@pytest.mark.parametrize("case", FORGERIES)
def test_forged_unsigned_or_foreign_mail_changes_nothing(sent, case):
    make, reason = FORGERIES[case]
    before = state(sent)
    result = ingest(make(sent))
    db.session.commit()
    assert result.kind == IngestKind.IGNORED
    assert reason in result.reason
    assert state(sent) == before


def test_the_envelope_recipient_outranks_the_headers(sent):
    result = ingest(postfix_dsn(sent), recipient=forged_verp(sent))
    assert (result.kind, result.reason) == (IngestKind.IGNORED, "bad VERP signature")


def test_a_parser_crash_is_an_ignored_message(sent, monkeypatch):
    def explode(message, recipient):
        raise IndexError("header parser bug")

    monkeypatch.setattr(bounces, "_read", explode)
    result = ingest(postfix_dsn(sent))
    assert (result.kind, result.reason) == (IngestKind.IGNORED, "unreadable message (IndexError)")


# --- the command an MTA pipes into ---------------------------------------------------------


def test_the_command_reads_standard_input_and_says_what_it_did(sent, app):
    runner = app.test_cli_runner()
    done = runner.invoke(args=["ingest-bounce", "--recipient", sent.verp], input=postfix_dsn(sent))
    assert done.exit_code == 0, done.output
    expected = f"hard_bounce delivery={sent.delivery_id} subscriber={sent.subscriber_id}: "
    assert done.output.startswith(expected)
    assert len(done.output.splitlines()) == 1
    assert state(sent)[2] == SubscriberStatus.BOUNCED

    ignored = runner.invoke(args=["ingest-bounce"], input=b"\x00\xff not mail")
    assert ignored.exit_code == 0, ignored.output
    assert ignored.output.startswith("ignored: ")


def test_the_command_asks_the_mta_to_retry_when_the_database_is_down(sent, app, monkeypatch):
    def down(raw, *, recipient=None):
        raise OperationalError("SELECT 1", {}, Exception("connection refused"))

    monkeypatch.setattr(bounces, "ingest", down)
    done = app.test_cli_runner().invoke(args=["ingest-bounce"], input=postfix_dsn(sent))
    assert done.exit_code == 75
    assert "database unavailable" in done.output


def run_bulletin(args: list[str], stdin: bytes, **env: str) -> subprocess.CompletedProcess:
    environment = {k: v for k, v in os.environ.items() if k != "TEST_DATABASE_URL"}
    environment.update(env)
    return subprocess.run(
        [BULLETIN, *args], input=stdin, env=environment, capture_output=True, timeout=60
    )


def test_the_installed_command_takes_a_bounce_from_a_pipe(sent, app):
    done = run_bulletin(
        ["ingest-bounce", "--recipient", sent.verp],
        postfix_dsn(sent),
        DATABASE_URL=app.config["SQLALCHEMY_DATABASE_URI"],
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.decode().startswith(f"hard_bounce delivery={sent.delivery_id} ")
    assert state(sent)[2] == SubscriberStatus.BOUNCED


def test_the_installed_command_exits_75_when_the_database_is_unreachable(tmp_path):
    missing = tmp_path / "no-such-directory" / "bulletin.db"
    done = run_bulletin(
        ["ingest-bounce"], b"Subject: x\r\n\r\n", DATABASE_URL=f"sqlite:///{missing}"
    )
    assert done.returncode == 75, done.stderr
    assert done.stderr.decode().startswith("bulletin: configuration error: DATABASE_URL:")


# --- the HTTP hook -------------------------------------------------------------------------

SECRET = "s3cret-webhook-token"


@pytest.fixture
def hook_secret(app, monkeypatch):
    monkeypatch.setitem(app.config, "BOUNCE_WEBHOOK_SECRET", SECRET)


def post_bounce(app, body: bytes, secret: str | None = SECRET, query: str = ""):
    headers = {"Authorization": f"Bearer {secret}"} if secret else {}
    return app.test_client().post(
        f"/hooks/bounce{query}", data=body, headers=headers, content_type="message/rfc822"
    )


def test_the_hook_does_not_exist_without_a_secret(sent, app):
    assert app.config["BOUNCE_WEBHOOK_SECRET"] is None
    assert post_bounce(app, postfix_dsn(sent)).status_code == 404
    assert state(sent)[2] == SubscriberStatus.ACTIVE


@pytest.mark.parametrize("secret", [None, "wrong", SECRET[:-1], SECRET + "x"])
def test_the_hook_refuses_a_wrong_secret(sent, app, hook_secret, secret):
    answer = post_bounce(app, postfix_dsn(sent), secret=secret)
    assert answer.status_code == 403
    assert state(sent)[2] == SubscriberStatus.ACTIVE


def test_the_hook_takes_a_bounce_with_the_right_secret(sent, app, hook_secret):
    answer = post_bounce(app, postfix_dsn(sent), query=f"?recipient={sent.verp}")
    assert answer.status_code == 200
    assert answer.get_json() == {
        "kind": "hard_bounce",
        "reason": "5.1.1 failed",
        "delivery_id": sent.delivery_id,
        "subscriber_id": sent.subscriber_id,
    }
    assert state(sent)[2] == SubscriberStatus.BOUNCED


def test_the_hook_answers_200_for_what_it_ignores(sent, app, hook_secret):
    answer = post_bounce(app, b"Subject: hello\r\n\r\nnot a bounce\r\n")
    assert answer.status_code == 200
    assert answer.get_json()["kind"] == "ignored"


def test_the_hook_refuses_a_message_over_one_megabyte(sent, app, hook_secret):
    padding = b"\r\n" + b"x" * 998
    body = postfix_dsn(sent) + padding * (bounces.MAX_MESSAGE_BYTES // len(padding) + 1)
    assert post_bounce(app, body).status_code == 413
    # Without a Content-Length (a chunked upload) the limit holds too. The WSGI server
    # says that it ended the stream, as gunicorn and Werkzeug's server do for chunked bodies.
    chunked = app.test_client().post(
        "/hooks/bounce",
        input_stream=io.BytesIO(body),
        headers={"Authorization": f"Bearer {SECRET}", "Transfer-Encoding": "chunked"},
        environ_overrides={"wsgi.input_terminated": True},
    )
    assert chunked.status_code == 413
    assert state(sent)[2] == SubscriberStatus.ACTIVE
