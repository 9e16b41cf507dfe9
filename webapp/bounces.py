"""What comes back to us by email: bounces, complaints, and unsubscribe requests by mail.

Every digest goes out with a signed VERP return path (`verp_address`), so a delivery status
notification (RFC 3464) names the delivery it is about, and a bounce we did not cause cannot
change anything: a message without a valid signature is ignored. `ingest` reads one message
and acts on it:

- a hard bounce (the message failed with a 5.x.x status) marks the delivery failed and
  suppresses the address;
- a soft bounce (4.x.x, or a delay warning) counts against the reader, and SOFT_BOUNCE_LIMIT
  of them is treated as a hard bounce;
- a complaint (an ARF `abuse` report, RFC 5965, from a mailbox provider's feedback loop)
  suppresses the address;
- an unsubscribe request sent through the `mailto:` in `List-Unsubscribe` unsubscribes.

Functions here flush and let the caller commit. Parsing (`read_message`) is pure: bytes in,
`Incoming` out, no database.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import json
import re
from dataclasses import dataclass
from email import message_from_bytes, policy
from email.header import decode_header, make_header
from email.message import Message
from email.parser import BytesHeaderParser
from email.utils import getaddresses, parseaddr
from enum import StrEnum
from typing import Literal

from flask import current_app
from sqlalchemy import select, update

from .extensions import db
from .models import (
    Delivery,
    DeliveryStatus,
    EventKind,
    EventSource,
    Subscriber,
    SubscriberEvent,
    SuppressionReason,
)
from .subscriptions import (
    SubscriptionError,
    log_event,
    normalize_email,
    reader_for_link,
    suppress,
    unsubscribe,
)
from .tokens import Purpose, TokenError, read_reader_link

# The HTTP hook refuses bigger bodies. Bounces quote at most the original digest (~100 KB).
MAX_MESSAGE_BYTES = 1024 * 1024

# A VERP return path is `bounces+<delivery id, hex>-<signature>@BOUNCE_DOMAIN`.
#
# Why not an itsdangerous token, as for links: its output is mixed-case base64 (some MTAs
# lower-case local parts, which breaks the signature) and, with the payload and timestamp,
# runs past the 64 characters RFC 5321 allows a local part. A plain HMAC in hex is
# case-proof and short: at most 8 + 16 + 1 + 16 = 41 characters.
VERP_PREFIX = "bounces"
SIGNATURE_LENGTH = 16  # hex characters: 64 bits, far beyond guessing by sending mail
_VERP = re.compile(
    rf"{VERP_PREFIX}\+([1-9a-f][0-9a-f]{{0,15}})-([0-9a-f]{{{SIGNATURE_LENGTH}}})@.+"
)

# RFC 3463 codes that a leading 5 makes permanent but that say nothing about whether the
# mailbox exists: X.2.2 "mailbox full" (the RFC itself calls it a persistent transient
# error) and X.7.x security or policy (the content or our reputation was refused). One issue
# taken for spam must not cost us a reader for good, so these count as soft bounces, and
# SOFT_BOUNCE_LIMIT still ends an address that keeps refusing us.
NOT_ABOUT_THE_MAILBOX = re.compile(r"5\.(2\.2|7\.\d{1,3})")
_STATUS = re.compile(r"\b([245])\.(\d{1,3})\.(\d{1,3})\b")
# The legacy policy keeps header values as the text that arrived: the modern one parses
# them into structured objects, which took minutes for one 1 MB Subject. Nothing here needs
# more than the text (addresses go through email.utils, which is linear).
_POLICY = policy.compat32
# The stdlib parser is linear but slow per line, per part and per header, so a hostile
# megabyte (100,000 empty parts, one address list of 200,000 entries) cost seconds to
# minutes. Real bounces and abuse reports are a few parts of a few thousand lines, and an
# address header or a report's field block far shorter than these bounds.
MAX_LINES = 30_000
MAX_PARTS = 200  # lines that open a MIME part boundary ("--...")
MAX_HEADER_BYTES = 64 * 1024  # the top-level header block
MAX_ADDRESS_HEADER = 4096  # characters of one address header that are read
MAX_REPORT_BLOCKS = 100  # per-recipient blocks read from one report


class IngestKind(StrEnum):
    HARD_BOUNCE = "hard_bounce"
    SOFT_BOUNCE = "soft_bounce"
    COMPLAINT = "complaint"
    UNSUBSCRIBE = "unsubscribe"
    IGNORED = "ignored"


@dataclass(frozen=True)
class IngestResult:
    """What `ingest` did. `reason` is short and holds no address (it ends up in MTA logs)."""

    kind: IngestKind
    reason: str
    delivery_id: int | None = None
    subscriber_id: int | None = None


class UnreadableMessage(ValueError):
    """The bytes are not a message we can read at all."""


# --- VERP ----------------------------------------------------------------------------------


def _verp_key(secret_key: str) -> bytes:
    # A key of its own, so a VERP signature can never be replayed as any other signature
    # made with SECRET_KEY (sessions, links), nor the other way round.
    return hmac.new(secret_key.encode(), b"bulletin.verp-return-path", hashlib.sha256).digest()


def _signature(id_hex: str, secret_key: str) -> str:
    digest = hmac.new(_verp_key(secret_key), id_hex.encode(), hashlib.sha256).hexdigest()
    return digest[:SIGNATURE_LENGTH]


def verp_address(delivery_id: int) -> str:
    """The signed return path for one delivery: `bounces+<id hex>-<sig>@BOUNCE_DOMAIN`."""
    domain = current_app.config["BOUNCE_DOMAIN"]
    if not domain:
        raise RuntimeError("BOUNCE_DOMAIN is not set: there is no VERP return path")
    id_hex = format(delivery_id, "x")
    signature = _signature(id_hex, current_app.config["SECRET_KEY"])
    return f"{VERP_PREFIX}+{id_hex}-{signature}@{domain}".lower()


def _verp_match(address: str) -> re.Match[str] | None:
    return _VERP.fullmatch(parseaddr(address)[1].strip().lower())


def read_verp(address: str) -> int | None:
    """The delivery id in a VERP address, or None unless its signature is ours.

    Old keys in SECRET_KEY_FALLBACKS still verify: bounces arrive days after the send, and
    a key rotation must not lose them. The domain is not checked (the signature is the
    credential, and BOUNCE_DOMAIN may have changed since the message went out).
    """
    match = _verp_match(address)
    if match is None:
        return None
    id_hex, signature = match.groups()
    config = current_app.config
    for key in (config["SECRET_KEY"], *config.get("SECRET_KEY_FALLBACKS", [])):
        if hmac.compare_digest(_signature(id_hex, key), signature):
            return int(id_hex, 16)
    return None


# --- reading a message (pure) --------------------------------------------------------------


@dataclass(frozen=True)
class RecipientReport:
    """One per-recipient block of a delivery status notification."""

    final_recipient: str
    original_recipient: str
    action: str  # failed | delayed | delivered | relayed | expanded
    status: str  # "5.1.1"; "" when the report gives none
    diagnostic: str

    @property
    def bounce(self) -> IngestKind | None:
        """A hard or soft bounce, or None when this block reports no failure."""
        if self.action == "delayed":
            return IngestKind.SOFT_BOUNCE
        if self.action != "failed":
            return None
        if self.status.startswith("5.") and not NOT_ABOUT_THE_MAILBOX.fullmatch(self.status):
            return IngestKind.HARD_BOUNCE
        return IngestKind.SOFT_BOUNCE

    def is_about(self, email: str) -> bool:
        return any(_same_address(a, email) for a in (self.final_recipient, self.original_recipient))


@dataclass(frozen=True)
class Incoming:
    """What one message coming back to us says, before anything is looked up."""

    kind: Literal["dsn", "complaint", "unsubscribe", "other"]
    # Where its VERP address may be, best first (for a complaint, from the original message).
    return_paths: tuple[str, ...] = ()
    recipients: tuple[RecipientReport, ...] = ()
    feedback_type: str = ""
    # The signed unsubscribe token in the reported copy's List-Unsubscribe header.
    original_unsubscribe_token: str = ""
    token: str = ""


def read_message(raw: bytes, recipient: str | None = None) -> Incoming:
    """Classify a raw RFC 822 message and pull out what `ingest` needs.

    `recipient` is the envelope recipient when the MTA passes it: it comes before any
    header, since headers are whatever the sender wrote. Raises `UnreadableMessage`.
    """
    if not raw or not raw.strip():
        raise UnreadableMessage("empty message")
    _check_shape(raw)
    try:
        return _read(message_from_bytes(raw, policy=_POLICY), recipient)
    except UnreadableMessage:
        raise
    except Exception as exc:
        # The stdlib parser copes with most damage by recording defects, but hostile or
        # mangled input can still make a header or part accessor raise almost anything.
        # Such a message is not one we sent anything about: it must be dropped, not retried.
        raise UnreadableMessage(f"unreadable message ({type(exc).__name__})") from exc


def _check_shape(raw: bytes) -> None:
    """Refuse, before parsing, a message no mail service would send us (see MAX_LINES)."""
    if raw.count(b"\n") > MAX_LINES:
        raise UnreadableMessage(f"more than {MAX_LINES} lines")
    if raw.count(b"\n--") > MAX_PARTS:
        raise UnreadableMessage(f"more than {MAX_PARTS} MIME parts")
    ends = [at for at in (raw.find(b"\n\n"), raw.find(b"\n\r\n")) if at >= 0]
    if (min(ends) if ends else len(raw)) > MAX_HEADER_BYTES:
        raise UnreadableMessage(f"headers longer than {MAX_HEADER_BYTES} bytes")


def _read(message: Message, recipient: str | None) -> Incoming:
    addressed_to = _addressed_to(message, recipient)
    if message.get_content_type() == "multipart/report":
        report_type = str(message.get_param("report-type") or "").lower()
        if report_type == "delivery-status":
            return Incoming("dsn", addressed_to, recipients=_recipient_reports(message))
        if report_type == "feedback-report":
            return _complaint(message, addressed_to)
    subject = " ".join(str(message.get("Subject", "")).split())
    match = re.fullmatch(r"unsubscribe (\S+)", subject, flags=re.IGNORECASE)
    if match:
        return Incoming("unsubscribe", addressed_to, token=match.group(1))
    return Incoming("other", addressed_to)


def _addressed_to(message: Message, recipient: str | None) -> tuple[str, ...]:
    """Where the message was sent, the envelope first, then the headers MTAs add."""
    found = [recipient] if recipient else []
    for header in ("Delivered-To", "X-Original-To", "To"):
        values = [str(v)[:MAX_ADDRESS_HEADER] for v in message.get_all(header, [])]
        found.extend(address for _, address in getaddresses(values))
    return tuple(a.strip() for a in found if a and a.strip())


def _recipient_reports(message: Message) -> tuple[RecipientReport, ...]:
    part = _first_part(message, "message/delivery-status")
    if part is None:
        return ()
    reports = []
    # The first block is about the message; each later block about one recipient.
    for block in _field_blocks(part):
        if not (block.get("Final-Recipient") or block.get("Action")):
            continue
        status = _STATUS.search(_field(block, "Status")) or _STATUS.search(
            _field(block, "Diagnostic-Code")
        )
        reports.append(
            RecipientReport(
                final_recipient=_typed_address(_field(block, "Final-Recipient")),
                original_recipient=_typed_address(_field(block, "Original-Recipient")),
                action=_field(block, "Action").lower(),
                status=".".join(status.groups()) if status else "",
                diagnostic=_field(block, "Diagnostic-Code"),
            )
        )
    return tuple(reports)


def _complaint(message: Message, addressed_to: tuple[str, ...]) -> Incoming:
    part = _first_part(message, "message/feedback-report")
    blocks = _field_blocks(part) if part is not None else []
    fields = blocks[0] if blocks else None
    feedback_type = _field(fields, "Feedback-Type").lower() if fields is not None else ""
    original = _original_headers(message)
    # A complaint goes to the feedback loop's address, not to our return path: our VERP
    # address is in the reported message's Return-Path (or the report's Original-Mail-From).
    return_paths = []
    if original is not None:
        return_paths.extend(
            parseaddr(str(v)[:MAX_ADDRESS_HEADER])[1] for v in original.get_all("Return-Path", [])
        )
    if fields is not None:
        return_paths.append(parseaddr(_field(fields, "Original-Mail-From"))[1])
    return Incoming(
        "complaint",
        tuple(a for a in return_paths if a) + addressed_to,
        feedback_type=feedback_type,
        original_unsubscribe_token=_unsubscribe_token(original),
    )


_UNSUBSCRIBE_URL = re.compile(r"/unsubscribe/([A-Za-z0-9_.\-]+)")


def _unsubscribe_token(original: Message | None) -> str:
    if original is None:
        return ""
    value = _field(original, "List-Unsubscribe")[:MAX_ADDRESS_HEADER]
    if "=?" in value:  # a generator may have encoded the long, unbreakable URL
        with contextlib.suppress(ValueError, LookupError):
            value = str(make_header(decode_header(value)))
    found = _UNSUBSCRIBE_URL.search(value)
    return found.group(1) if found else ""


def _original_headers(message: Message) -> Message | None:
    """The reported message (or just its headers), attached to an ARF report."""
    for part in message.walk():
        content_type = part.get_content_type()
        if content_type == "message/rfc822":
            payload = part.get_payload()
            if isinstance(payload, list) and payload:
                return payload[0]
        if content_type == "text/rfc822-headers":
            data = part.get_payload(decode=True) or b""
            return BytesHeaderParser(policy=_POLICY).parsebytes(data)
    return None


def _first_part(message: Message, content_type: str) -> Message | None:
    return next((p for p in message.walk() if p.get_content_type() == content_type), None)


def _field_blocks(part: Message) -> list[Message]:
    """The header blocks of a delivery-status or feedback-report part.

    The parser already splits `message/delivery-status` into blocks and reads other
    `message/*` parts as a message whose headers are the fields; anything else (an encoded
    part, say) is decoded and split on blank lines here.
    """
    payload = part.get_payload()
    if isinstance(payload, list):
        return payload[:MAX_REPORT_BLOCKS]
    data = part.get_payload(decode=True) or b""
    parser = BytesHeaderParser(policy=_POLICY)
    blocks = [b for b in re.split(rb"\r?\n[ \t]*\r?\n", data) if b.strip()]
    return [parser.parsebytes(b) for b in blocks[:MAX_REPORT_BLOCKS]]


def _field(block: Message | None, name: str) -> str:
    value = block.get(name) if block is not None else None
    return " ".join(str(value).split()) if value is not None else ""


def _typed_address(value: str) -> str:
    """`rfc822; reader@example.com` -> `reader@example.com` (RFC 3464 address fields)."""
    _, _, address = value.rpartition(";")
    return address.strip().strip("<>").strip()


def _same_address(reported: str, email: str) -> bool:
    if not reported:
        return False
    if reported.lower() == email.lower():
        return True
    try:
        return normalize_email(reported) == email.lower()
    except SubscriptionError:
        return False


# --- acting on it --------------------------------------------------------------------------


def ingest(raw: bytes, *, recipient: str | None = None) -> IngestResult:
    """Read one message sent back to us and act on it (see the module docstring).

    `recipient` is the envelope recipient, when the MTA tells us. Anything forged, unsigned,
    about someone else, or unreadable changes nothing and comes back as `ignored`. Flushes;
    the caller commits.
    """
    try:
        incoming = read_message(raw, recipient)
    except UnreadableMessage as exc:
        return IngestResult(IngestKind.IGNORED, str(exc))
    if incoming.kind == "dsn":
        return _ingest_bounce(incoming)
    if incoming.kind == "complaint":
        return _ingest_complaint(incoming)
    if incoming.kind == "unsubscribe":
        return _ingest_unsubscribe(incoming)
    return IngestResult(IngestKind.IGNORED, "not a bounce, complaint or unsubscribe request")


def _delivery_for(addresses: tuple[str, ...]) -> tuple[Delivery | None, str]:
    """The delivery named by the first VERP-shaped address, or (None, why not).

    Only the first counts: a later header cannot overrule what the envelope said.
    """
    address = next((a for a in addresses if _verp_match(a)), None)
    if address is None:
        return None, "no VERP return path"
    delivery_id = read_verp(address)
    if delivery_id is None:
        return None, "bad VERP signature"
    delivery = db.session.get(Delivery, delivery_id)
    if delivery is None:
        return None, f"delivery {delivery_id} does not exist"
    return delivery, ""


def _ingest_bounce(incoming: Incoming) -> IngestResult:
    delivery, why_not = _delivery_for(incoming.return_paths)
    if delivery is None:
        return IngestResult(IngestKind.IGNORED, why_not)
    subscriber = delivery.subscriber
    ignored = IngestResult(IngestKind.IGNORED, "", delivery.id, subscriber.id)
    # The signature proves we sent this delivery; the report must also be about its reader,
    # or anyone holding one of our messages could bounce somebody else.
    about = [r for r in incoming.recipients if r.is_about(subscriber.email)]
    if not about:
        return _replace(ignored, "the report is not about this delivery's reader")
    failures = [r for r in about if r.bounce]
    if not failures:
        return _replace(ignored, f"not a failure ({about[0].action or 'no action'})")
    # Several blocks for one reader (a relay and the final host): the gravest decides.
    report = max(failures, key=lambda r: (r.bounce == IngestKind.HARD_BOUNCE, r.action == "failed"))
    what = f"{report.status or 'no status'} {report.action}"

    if report.action == "failed":
        _mark_failed(delivery, report)
    if report.bounce == IngestKind.HARD_BOUNCE:
        suppress(subscriber.email, SuppressionReason.HARD_BOUNCE, source=EventSource.BOUNCE)
        return IngestResult(IngestKind.HARD_BOUNCE, what, delivery.id, subscriber.id)

    count = _count_soft_bounce(subscriber, delivery, report)
    limit = current_app.config["SOFT_BOUNCE_LIMIT"]
    if count >= limit:
        suppress(subscriber.email, SuppressionReason.HARD_BOUNCE, source=EventSource.BOUNCE)
        return IngestResult(
            IngestKind.HARD_BOUNCE,
            f"{what}: soft bounce {count} of {limit}, limit reached",
            delivery.id,
            subscriber.id,
        )
    what = f"{what}: soft bounce {count} of {limit}"
    return IngestResult(IngestKind.SOFT_BOUNCE, what, delivery.id, subscriber.id)


def _replace(result: IngestResult, reason: str) -> IngestResult:
    return IngestResult(result.kind, reason, result.delivery_id, result.subscriber_id)


def _mark_failed(delivery: Delivery, report: RecipientReport) -> None:
    """Record that a message our server accepted did not arrive after all.

    Only rows the sending engine has finished with (sent, or unknown after a lost
    connection) change: a row still being sent is the engine's, and it writes its answers
    only to rows it still holds, so touching it here would lose them.
    """
    reply = report.diagnostic or f"{report.status} {report.action}"
    db.session.execute(
        update(Delivery)
        .where(
            Delivery.id == delivery.id,
            Delivery.status.in_([DeliveryStatus.SENT, DeliveryStatus.UNKNOWN]),
        )
        .values(status=DeliveryStatus.FAILED, smtp_reply=reply[:1000])
        .execution_options(synchronize_session=False)
    )
    db.session.refresh(delivery, ["status", "smtp_reply", "updated_at"])


def _count_soft_bounce(subscriber: Subscriber, delivery: Delivery, report: RecipientReport) -> int:
    """Add one soft bounce to the reader, once per delivery; return their count.

    A message can come back several times (delay warnings after hours, then days, then the
    final failure): it is one message that did not arrive, so it counts once.
    """
    details = db.session.scalars(
        select(SubscriberEvent.detail).where(
            SubscriberEvent.subscriber_id == subscriber.id,
            SubscriberEvent.kind == EventKind.BOUNCED,
        )
    )
    if any(d.startswith("{") and json.loads(d).get("delivery") == delivery.id for d in details):
        return subscriber.soft_bounces
    # One UPDATE, so two bounces processed at once both count.
    count = db.session.scalar(
        update(Subscriber)
        .where(Subscriber.id == subscriber.id)
        .values(soft_bounces=Subscriber.soft_bounces + 1)
        .returning(Subscriber.soft_bounces)
        .execution_options(synchronize_session=False)
    )
    db.session.refresh(subscriber, ["soft_bounces", "updated_at"])
    log_event(
        subscriber.id,
        EventKind.BOUNCED,
        EventSource.BOUNCE,
        delivery=delivery.id,
        status=report.status,
        soft_bounces=count,
    )
    db.session.flush()
    return count


def _ingest_complaint(incoming: Incoming) -> IngestResult:
    if incoming.feedback_type != "abuse":
        # not-spam, virus, fraud, other: none of them is this reader asking us to stop.
        kind = incoming.feedback_type or "missing"
        return IngestResult(IngestKind.IGNORED, f"feedback type {kind} is not a complaint")
    delivery, why_not = _delivery_for(incoming.return_paths)
    if delivery is not None:
        subscriber = delivery.subscriber
        matched = "by return path"
    elif why_not == "no VERP return path":
        # Some providers strip the Return-Path from the copy they send back. The copy's
        # List-Unsubscribe link is the other thing we signed; a Message-ID is not signed,
        # and anyone who saw one could have a reader suppressed.
        subscriber = _reader_by_unsubscribe_token(incoming.original_unsubscribe_token)
        if subscriber is None:
            return IngestResult(IngestKind.IGNORED, "no VERP return path or signed link")
        matched = "by the signed unsubscribe link"
    else:
        return IngestResult(IngestKind.IGNORED, why_not)
    # Providers redact the complaining address, so there is nothing to compare it with.
    suppress(subscriber.email, SuppressionReason.COMPLAINT, source=EventSource.BOUNCE)
    return IngestResult(
        IngestKind.COMPLAINT,
        f"abuse report, matched {matched}",
        delivery.id if delivery else None,
        subscriber.id,
    )


def _reader_by_unsubscribe_token(token: str) -> Subscriber | None:
    try:
        return reader_for_link(read_reader_link(Purpose.UNSUBSCRIBE, token)) if token else None
    except TokenError:
        return None


def _ingest_unsubscribe(incoming: Incoming) -> IngestResult:
    # The signed token is the credential, as for the link: whichever of our addresses the
    # request reached, and whoever's mailbox sent it.
    try:
        link = read_reader_link(Purpose.UNSUBSCRIBE, incoming.token)
    except TokenError as exc:
        reason = "expired unsubscribe token" if exc.expired else "invalid unsubscribe token"
        return IngestResult(IngestKind.IGNORED, reason)
    reader = reader_for_link(link)
    if reader is None:
        return IngestResult(IngestKind.IGNORED, f"reader {link.subscriber_id} does not exist")
    subscriber = unsubscribe(reader.id, source=EventSource.EMAIL_LINK)
    return IngestResult(IngestKind.UNSUBSCRIBE, "unsubscribed by mail", subscriber_id=subscriber.id)
