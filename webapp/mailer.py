"""MIME building and SMTP sessions. Knows nothing of Flask or the database.

`SmtpSession.send()` turns every SMTP outcome into a `SendResult` with a kind the delivery
rules act on, so that the never-twice logic in `delivery.py` never parses SMTP replies.
"""

from __future__ import annotations

import binascii
import email.utils
import re
import secrets
import smtplib
import ssl
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from email.header import Header
from email.headerregistry import Address, HeaderRegistry, UnstructuredHeader
from email.message import EmailMessage
from email.policy import SMTP
from email.utils import format_datetime, make_msgid, parseaddr
from enum import StrEnum

import dkim
import idna

# C0 and C1 controls, line separators, and the bidirectional controls (U+202A-U+202E,
# U+2066-U+2069, the marks) that make "Bob\u202egnp.exe" show as "Bobexe.png".
CONTROL_CHARS = re.compile(
    r"[\x00-\x1f\x7f-\x9f\u061c\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069]"
)


class _UrlListHeader(UnstructuredHeader):
    """`List-Unsubscribe`: `<url>, <mailto:...>` folded after each comma, never encoded.

    The stock folder turns any word longer than a line (a signed URL is) into an RFC 2047
    encoded-word, which no mail provider decodes in this header, so the unsubscribe button
    would silently disappear.
    """

    def fold(self, *, policy) -> str:
        value = str(self)
        if not value.isascii():
            raise ValueError(f"{self.name} must be ASCII URLs")
        items = [item.strip() for item in value.split(",")]
        return f"{self.name}: " + f",{policy.linesep} ".join(items) + policy.linesep


_headers = HeaderRegistry()
_headers.map_to_type("list-unsubscribe", _UrlListHeader)
POLICY = SMTP.clone(header_factory=_headers)


class MailerError(RuntimeError):
    """SMTP could not be used at all (connection refused, login refused, TLS failed)."""


class Outcome(StrEnum):
    SENT = "sent"  # 2xx after DATA
    TEMPORARY = "temporary"  # 4xx: try again later
    PERMANENT = "permanent"  # 5xx for this recipient: a hard bounce
    POLICY = "policy"  # 5.7.x: the server refuses *us*; stop and tell staff
    AMBIGUOUS = "ambiguous"  # connection lost after DATA was sent: maybe delivered


@dataclass(frozen=True)
class SendResult:
    outcome: Outcome
    code: int
    reply: str


class AddressError(ValueError):
    """An address that cannot go into an SMTP envelope or a To header as Bulletin sends them."""


# Printable ASCII but "<", ">" and "@", each side of one "@": enough to keep line breaks and
# brackets out of the SMTP commands and headers written by hand below.
_PLAIN_ADDRESS = re.compile(r"[!-;=?A-~]+@[!-;=?A-~]+")


def ascii_address(address: str) -> str:
    """The address as SMTP without SMTPUTF8 carries it: an IDN domain in its `xn--` form.

    A mailbox name (before the @) with non-ASCII characters would need SMTPUTF8, which
    Bulletin does not send: sign-up refuses such addresses, so only an older row has one.
    """
    if not address.isascii():
        local, _, domain = address.rpartition("@")
        if not local.isascii():
            raise AddressError(f"{address!r} has non-ASCII characters before the @ (SMTPUTF8)")
        try:
            address = f"{local}@{idna.encode(domain, uts46=True).decode('ascii')}"
        except idna.IDNAError as exc:
            raise AddressError(f"cannot encode the domain of {address!r}: {exc}") from None
    if not _PLAIN_ADDRESS.fullmatch(address):
        raise AddressError(f"cannot use {address!r} as an email address")
    return address


def clean_display_name(name: str, limit: int = 100) -> str:
    """A display name without control characters, so no name can inject a header."""
    return CONTROL_CHARS.sub(" ", name or "").strip()[:limit]


def build_message(
    *,
    sender: str,
    to_email: str,
    to_name: str,
    subject: str,
    text: str,
    html: str | None = None,
    headers: dict[str, str] | None = None,
    message_id: str | None = None,
) -> EmailMessage:
    """A multipart/alternative UTF-8 message (text/plain, then text/html), CJK in base64.

    Base64 rather than quoted-printable because QP doubles the size of Chinese text.
    """
    sender_name, sender_addr = parseaddr(sender)
    msg = EmailMessage(policy=POLICY)
    msg["From"] = Address(display_name=clean_display_name(sender_name), addr_spec=sender_addr)
    msg["To"] = Address(display_name=clean_display_name(to_name), addr_spec=ascii_address(to_email))
    msg["Subject"] = clean_display_name(subject, limit=300)
    msg["Date"] = format_datetime(datetime.now(UTC))
    msg["Message-ID"] = message_id or make_msgid(domain=sender_addr.rpartition("@")[2] or None)
    msg["MIME-Version"] = "1.0"
    for name, value in (headers or {}).items():
        _check_header(name, value)
        msg[name] = value
    msg.set_content(text, subtype="plain", charset="utf-8", cte="base64")
    if html is not None:
        msg.add_alternative(html, **_HTML_PART)
    return msg


_HTML_PART = {"subtype": "html", "charset": "utf-8", "cte": "base64"}


def html_part(html: str) -> EmailMessage:
    """The text/html part `build_message` gives a message with this HTML, alone: what a
    figure about the HTML part needs, without the headers and text part around it."""
    part = EmailMessage(policy=POLICY)
    part.set_content(html, **_HTML_PART)
    return part


class MessageSkeleton:
    """The bytes of one digest's message, built once, with the per-reader parts left open.

    `build_message()` goes through the `email` package, which costs milliseconds for a
    60 KB digest: fine for one confirmation, a ceiling for 100,000 readers. Here everything
    the readers of one section set share (From, Subject, the MIME structure) is encoded
    once, and each message is the shared head, the reader's headers and two base64 bodies,
    joined. `tests/test_message.py` checks that both builders give the same message.
    """

    def __init__(self, *, sender: str, subject: str, headers: dict[str, str] | None = None):
        static = EmailMessage(policy=POLICY)
        sender_name, sender_addr = parseaddr(sender)
        static["From"] = Address(
            display_name=clean_display_name(sender_name), addr_spec=sender_addr
        )
        static["Subject"] = clean_display_name(subject, limit=300)
        static["MIME-Version"] = "1.0"
        for name, value in (headers or {}).items():
            _check_header(name, value)
            static[name] = value
        self._head = static.as_bytes().split(b"\r\n\r\n", 1)[0] + b"\r\n"
        self._boundary = f"=_bulletin_{secrets.token_hex(12)}".encode()

    def render(
        self,
        *,
        to_email: str,
        to_name: str,
        text: bytes,
        html: bytes,
        message_id: str,
        headers: dict[str, str] | None = None,
    ) -> bytes:
        """One reader's message; `text` and `html` are base64 bodies (`Base64Template`)."""
        to_email = ascii_address(to_email)
        lines = [self._head, b"To: ", _address_header(to_name, to_email), b"\r\n"]
        lines += [b"Date: ", format_datetime(datetime.now(UTC)).encode(), b"\r\n"]
        lines += [b"Message-ID: ", message_id.encode("ascii"), b"\r\n"]
        for name, value in (headers or {}).items():
            _check_header(name, value)
            lines.append(_ascii_header(name, value))
        boundary = self._boundary
        lines += [
            b'Content-Type: multipart/alternative; boundary="',
            boundary,
            b'"\r\n\r\n--',
            boundary,
            b"\r\n",
            _PART_HEAD % b"plain",
            text,
            b"--",
            boundary,
            b"\r\n",
            _PART_HEAD % b"html",
            html,
            b"--",
            boundary,
            b"--\r\n",
        ]
        return b"".join(lines)


_PART_HEAD = b'Content-Type: text/%s; charset="utf-8"\r\nContent-Transfer-Encoding: base64\r\n\r\n'


def _canonical(text: str) -> bytes:
    # Canonical form for text parts: CRLF line ends. A bare CR is dropped rather than kept, so
    # the mapping works character by character and a text can be converted piece by piece.
    return text.replace("\r", "").replace("\n", "\r\n").encode("utf-8")


def _base64_lines(data: bytes) -> bytes:
    """Base64 in lines of at most 76 characters (RFC 2045), each ending in CRLF.

    One C call for the whole input, then slicing: base64.encodebytes loops in Python over
    57-byte chunks, which was once the largest cost of sending.
    """
    encoded = binascii.b2a_base64(data, newline=False)
    if len(encoded) <= 76:
        return encoded + b"\r\n" if encoded else b""
    return b"\r\n".join([encoded[i : i + 76] for i in range(0, len(encoded), 76)]) + b"\r\n"


class Base64Template:
    """A text with named holes, base64-encoded once, for many readers.

    A digest body is ~60 KB, and what one reader adds (greeting, signed links) ~1 KB.
    Encoding the whole body for each reader was the largest cost of sending, so the fixed
    pieces are encoded once and `fill()` encodes only the holes and the bytes beside them.

    Base64 encodes 3-byte groups, so a fixed piece's encoding depends on how many of its
    first bytes complete the group left open by the hole before it: each piece is encoded
    (when first needed) for each of the three cases, and the bytes left over at its end are
    carried into the next hole. RFC 2045 limits base64 lines to 76 characters but does not
    require full lines, and decoders skip line breaks, so encoded pieces are joined as they
    are. `tests/test_message.py` checks that decoding gives the filled text, byte for byte.
    """

    def __init__(self, pieces: Sequence[str]):
        """`pieces`: fixed text, hole name, fixed text, ..., fixed text (as `re.split`
        gives them with one group)."""
        if len(pieces) % 2 != 1:
            raise ValueError("pieces must alternate text and names, text first and last")
        self._fixed = [_canonical(piece) for piece in pieces[0::2]]
        self._names = list(pieces[1::2])
        # (piece index, bytes it gives to the group before it) -> (its encoded middle,
        # the bytes left over at its end)
        self._middles: dict[tuple[int, int], tuple[bytes, bytes]] = {}

    @classmethod
    def plain(cls, text: str) -> Base64Template:
        return cls((text,))

    def fill(self, values: Mapping[str, str] | None = None) -> bytes:
        """The base64 body of the text with each hole replaced by its value; a hole without
        a value keeps its marker, `@@NAME@@`."""
        values = values or {}
        out: list[bytes] = []
        open_group = b""  # bytes waiting for the rest of their 3-byte group
        for index, fixed in enumerate(self._fixed):
            if index:
                name = self._names[index - 1]
                value = values.get(name)
                open_group += _canonical(f"@@{name}@@" if value is None else value)
            give = -len(open_group) % 3
            if len(fixed) < give:  # a fixed piece too short to close the group
                open_group += fixed
                continue
            open_group += fixed[:give]
            if open_group:
                out.append(_base64_lines(open_group))
            middle, open_group = self._middle(index, give)
            out.append(middle)
        if open_group:
            out.append(_base64_lines(open_group))
        return b"".join(out)

    def _middle(self, index: int, give: int) -> tuple[bytes, bytes]:
        key = (index, give)
        found = self._middles.get(key)
        if found is None:
            fixed = self._fixed[index]
            end = give + (len(fixed) - give) // 3 * 3
            # Two threads may both compute it: the results are equal, so no lock is needed.
            found = self._middles[key] = (_base64_lines(fixed[give:end]), fixed[end:])
        return found


def _address_header(name: str, address: str) -> bytes:
    name = clean_display_name(name)
    if not name:
        return address.encode("ascii")
    if name.isascii():
        display = email.utils.quote(name)
        return f'"{display}" <{address}>'.encode("ascii")
    # RFC 2047 encoded-words, split so none is over 75 characters.
    encoded = Header(name, "utf-8").encode(linesep="\r\n", maxlinelen=76)
    return f"{encoded} <{address}>".encode("ascii")


def _check_header(name: str, value: str) -> None:
    if CONTROL_CHARS.search(value):
        raise ValueError(f"header {name} contains a line break or control character")


def _ascii_header(name: str, value: str) -> bytes:
    """A header of ASCII values (URLs, ids), folded after commas like `_UrlListHeader`."""
    if not value.isascii():
        raise ValueError(f"header {name} must be ASCII here")
    if name.lower() == "list-unsubscribe":
        value = ",\r\n ".join(item.strip() for item in value.split(","))
    return f"{name}: {value}\r\n".encode("ascii")


# Signed so that no hop can add or change them; the List-* pair is what mailbox providers
# check before showing their unsubscribe button.
DKIM_HEADERS = [
    b"From",
    b"To",
    b"Subject",
    b"Date",
    b"Message-ID",
    b"MIME-Version",
    b"Content-Type",
    b"List-Id",
    b"List-Unsubscribe",
    b"List-Unsubscribe-Post",
    b"Feedback-ID",
]


def dkim_sign(data: bytes, *, selector: str, domain: str, key: bytes) -> bytes:
    """The message with a DKIM-Signature header in front: the last step before sending."""
    present = [h for h in DKIM_HEADERS if re.search(rb"(?im)^" + h + rb":", data)]
    signature = dkim.sign(
        data, selector.encode(), domain.encode(), key, include_headers=present, linesep=b"\r\n"
    )
    return signature + data


class SmtpSession:
    """One SMTP connection reused for many messages (STARTTLS and AUTH when configured)."""

    def __init__(
        self,
        host: str,
        port: int,
        *,
        username: str | None = None,
        password: str | None = None,
        starttls: bool = False,
        timeout: float = 30.0,
    ):
        self.host, self.port = host, port
        self.username, self.password = username, password
        self.starttls, self.timeout = starttls, timeout
        self._smtp: smtplib.SMTP | None = None

    def __enter__(self) -> SmtpSession:
        self.open()
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def open(self) -> None:
        try:
            smtp = smtplib.SMTP(self.host, self.port, timeout=self.timeout)
            smtp.ehlo()
            if self.starttls:
                smtp.starttls(context=ssl.create_default_context())
                smtp.ehlo()
            if self.username:
                smtp.login(self.username, self.password or "")
        except smtplib.SMTPAuthenticationError as exc:
            raise MailerError(
                f"SMTP login refused by {self.host}:{self.port}: {exc.smtp_code} {_reply(exc)}"
            ) from exc
        except (OSError, smtplib.SMTPException) as exc:
            raise MailerError(f"cannot talk to SMTP server {self.host}:{self.port}: {exc}") from exc
        self._smtp = smtp

    def ensure_open(self) -> None:
        """Connect now if not connected (raises MailerError), before a message is at stake."""
        if self._smtp is None:
            self.open()

    def close(self) -> None:
        if self._smtp is not None:
            try:
                self._smtp.quit()
            except (OSError, smtplib.SMTPException):
                self._smtp.close()
            self._smtp = None

    def send(self, envelope_from: str, recipient: str, data: bytes) -> SendResult:
        """Send one message to one recipient and classify the server's answer.

        Raises AddressError, before anything is sent, for an address SMTP cannot carry."""
        envelope_from, recipient = ascii_address(envelope_from), ascii_address(recipient)
        if self._smtp is None:
            self.open()
        smtp = self._smtp
        assert smtp is not None
        data_sent = False
        try:
            code, reply = self._envelope(smtp, envelope_from, recipient)
            if code != 354:
                self._after_refusal(code)
                return _classify(code, reply)
            data_sent = True
            code, reply = _data(smtp, data)
            if code == 421:  # the final answer ended the transaction; this one the connection
                self._drop()
            return _classify(code, reply)
        except (TimeoutError, smtplib.SMTPServerDisconnected, ConnectionError, OSError) as exc:
            self._drop()
            if data_sent:
                return SendResult(Outcome.AMBIGUOUS, 0, f"connection lost after DATA: {exc}")
            return SendResult(Outcome.TEMPORARY, 0, f"connection lost: {exc}")

    @staticmethod
    def _envelope(smtp: smtplib.SMTP, envelope_from: str, recipient: str) -> tuple[int, bytes]:
        """MAIL, RCPT and DATA: (354, ...) when the message may follow, else the refusal.

        With PIPELINING (RFC 2920; Postfix and most relays offer it) the three commands go
        in one write and their answers are read together: one round trip instead of three,
        which matters most when the relay is a few milliseconds away.
        """
        if not smtp.has_extn("pipelining"):
            answer = smtp.mail(envelope_from)
            if answer[0] == 250:
                answer = smtp.rcpt(recipient)
                if answer[0] in (250, 251):
                    smtp.putcmd("data")
                    answer = smtp.getreply()
            return answer
        smtp.send(f"MAIL FROM:<{envelope_from}>\r\nRCPT TO:<{recipient}>\r\nDATA\r\n")
        answers = []
        for _ in range(3):
            answers.append(smtp.getreply())
            if answers[-1][0] == 421:  # the server is closing: no more answers will come
                return answers[-1]
        mail, rcpt, data = answers
        refusal = mail if mail[0] != 250 else rcpt if rcpt[0] not in (250, 251) else None
        if refusal is None:
            return data
        if data[0] == 354:  # DATA accepted without a recipient (RFC 2920 asks: send a dot)
            smtp.send(b".\r\n")
            smtp.getreply()
        return refusal

    def _after_refusal(self, code: int) -> None:
        """Start the next transaction clean (some servers keep state), unless the server
        said it is closing the connection."""
        if code == 421:
            self._drop()
            return
        try:
            if self._smtp is not None:
                self._smtp.rset()
        except (OSError, smtplib.SMTPException):
            self._drop()

    def _drop(self) -> None:
        if self._smtp is not None:
            self._smtp.close()
            self._smtp = None


def _data(smtp: smtplib.SMTP, data: bytes) -> tuple[int, bytes]:
    """The message after a 354, as `smtplib.SMTP.data()` sends it, then the server's answer.

    smtplib runs a regular expression over the whole message to double the dots that start
    a line, which cost more than composing the message. Our messages are base64 bodies and
    headers, where a line never starts with a dot, so one fast search usually proves there
    is nothing to quote; anything else is quoted the same way smtplib would.
    """
    if data.startswith(b".") or b"\n." in data:
        data = _LINE_START_DOT.sub(b"..", data)
    if not data.endswith(b"\r\n"):
        data += b"\r\n"
    smtp.send(data + b".\r\n")  # one write: a separate short one could wait on Nagle
    return smtp.getreply()


_LINE_START_DOT = re.compile(rb"(?m)^\.")


def _reply(exc: smtplib.SMTPResponseException) -> str:
    err = exc.smtp_error
    return err.decode("utf-8", "replace") if isinstance(err, bytes) else str(err)


def _classify(code: int, reply: bytes | str) -> SendResult:
    text = reply.decode("utf-8", "replace") if isinstance(reply, bytes) else str(reply)
    text = f"{code} {text}".strip()
    if 200 <= code < 300:
        return SendResult(Outcome.SENT, code, text)
    if 400 <= code < 500:
        return SendResult(Outcome.TEMPORARY, code, text)
    if re.search(r"\b5\.7\.\d{1,3}\b", text):
        return SendResult(Outcome.POLICY, code, text)
    return SendResult(Outcome.PERMANENT, code, text)
