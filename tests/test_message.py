"""The message a reader receives, parsed back with Python's email parser."""

from __future__ import annotations

import base64
import re
import subprocess
from email import message_from_bytes, policy
from email.utils import parseaddr, parsedate_to_datetime
from pathlib import Path

import dkim
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from webapp.config import ConfigError, load_config
from webapp.digests import Recipient, compose, html_part_size
from webapp.extensions import db
from webapp.issues import add_article, create_issue, ensure_topics
from webapp.mailer import (
    Base64Template,
    MessageSkeleton,
    build_message,
    clean_display_name,
    html_part,
)
from webapp.models import Subscriber, SubscriberStatus

TITLE = "上海交通大学中国质量发展研究院 工作简报（2022年第8期）"


def reader_message(app, name: str = "韩梅梅", locale: str = "zh") -> bytes:
    news, world = ensure_topics(["质量要闻", "国际动态"])
    issue = create_issue(TITLE, period="2022年8月")
    issue.subject = TITLE  # staff's own subject, instead of the pattern's
    add_article(issue, news, "要闻一则", "正文第一段。\n\n第二段。", lead="导语。")
    add_article(issue, world, "国际动态一则", "国际正文。", lead="导语。")
    # Stored cleaned, as every way in stores it; composing must cope with the raw name too.
    reader = Subscriber(
        email="han@example.com",
        name=clean_display_name(name),
        status=SubscriberStatus.ACTIVE,
        topics=[news],
    )
    db.session.add(reader)
    db.session.commit()
    recipient = Recipient(1, reader.id, reader.email, name, locale, True)
    _, data = compose(issue.id, recipient, frozenset({news.id}))
    return data


def parse(data: bytes):
    return message_from_bytes(data, policy=policy.default)


def test_the_message_has_the_parts_and_headers_a_mail_provider_expects(app, db_session):
    data = reader_message(app)
    message = parse(data)
    assert message.get_content_type() == "multipart/alternative"
    text, html = message.get_payload()
    assert (text.get_content_type(), html.get_content_type()) == ("text/plain", "text/html")
    for part in (text, html):
        assert part.get_content_charset() == "utf-8"
        assert part["Content-Transfer-Encoding"] == "base64"
    assert "要闻一则" in html.get_content() and "要闻一则" in text.get_content()

    assert message["Subject"] == TITLE
    assert parseaddr(message["From"]) == ("工作简报", "bulletin@example.org")
    assert parseaddr(message["To"]) == ("韩梅梅", "han@example.com")
    assert parsedate_to_datetime(message["Date"]).tzinfo is not None
    assert re.fullmatch(r"<[^@>]+@example\.org>", message["Message-ID"])
    assert message["List-Id"] == "<bulletin.example.org>"
    https, mailto = (p.strip(" <>") for p in message["List-Unsubscribe"].split(","))
    assert https.startswith("https://bulletin.example.org/unsubscribe/")
    assert mailto.startswith("mailto:unsubscribe@example.org?subject=unsubscribe%20")
    assert message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert message["Auto-Submitted"] == "auto-generated"
    assert message["Feedback-ID"].endswith(":bulletin:example.org")


def test_the_html_part_alone_is_the_one_in_the_message():
    """The sizes table measures `html_part`; previews, the part of a whole message."""
    html = "<html><body><p>要闻一则</p>\n<p>@@GREETING@@</p></body></html>\n" * 200
    message = build_message(
        sender="工作简报 <bulletin@example.org>",
        to_email="han@example.com",
        to_name="韩梅梅",
        subject="标题",
        text="正文",
        html=html,
    )
    alone = html_part(html)
    assert alone.as_bytes() == message.get_body(("html",)).as_bytes()
    assert html_part_size(alone) == html_part_size(message)


def test_every_header_line_is_ascii_and_short_enough_for_any_hop(app, db_session):
    head = reader_message(app).split(b"\r\n\r\n", 1)[0]
    for line in head.split(b"\r\n"):
        assert line.isascii(), line
        assert len(line) <= 998, line  # RFC 5322's hard limit
    assert b"\n" not in head.replace(b"\r\n", b"")  # no bare LF


def test_chinese_text_is_base64_not_quoted_printable(app, db_session):
    data = reader_message(app)
    assert b"quoted-printable" not in data.lower()


@pytest.mark.parametrize(
    "name",
    [
        "Eve\r\nBcc: victim@example.net",
        "Eve\nSubject: spoofed",
        "Eve\x00\x1b[31m",
        "Eve\u2028Bcc: victim@example.net",
    ],
)
def test_a_name_cannot_inject_a_header(app, db_session, name):
    message = parse(reader_message(app, name=name))
    assert message["Bcc"] is None
    assert message["Subject"] == TITLE
    assert len(message.get_all("Subject")) == 1
    display, address = parseaddr(message["To"])
    assert address == "han@example.com"
    assert "\n" not in display and "\r" not in display and "\x00" not in display


def test_a_header_value_with_a_line_break_is_refused():
    with pytest.raises(ValueError, match="X-Campaign"):
        build_message(
            sender="a@example.org",
            to_email="b@example.org",
            to_name="",
            subject="s",
            text="t",
            headers={"X-Campaign": "one\r\nBcc: c@example.org"},
        )


def test_an_english_reader_gets_english_fixed_text(app, db_session):
    message = parse(reader_message(app, locale="en"))
    text = message.get_body(("plain",)).get_content()
    assert "Unsubscribe:" in text and "Dear 韩梅梅," in text


# --- DKIM ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def dkim_key(tmp_path_factory):
    folder = tmp_path_factory.mktemp("dkim")
    private = folder / "dkim.pem"
    subprocess.run(
        ["openssl", "genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048",
         "-out", str(private)],
        check=True,
        capture_output=True,
    )  # fmt: skip
    public_der = subprocess.run(
        ["openssl", "pkey", "-in", str(private), "-pubout", "-outform", "DER"],
        check=True,
        capture_output=True,
    ).stdout
    record = b"v=DKIM1; k=rsa; p=" + base64.b64encode(public_der)
    return private, record


def test_messages_are_dkim_signed_over_the_list_headers_when_a_key_is_set(
    app, db_session, dkim_key
):
    private, record = dkim_key
    settings = load_config(
        Path(app.instance_path),
        {
            "MAIL_FROM": "工作简报 <bulletin@example.org>",
            "DKIM_PRIVATE_KEY_FILE": str(private),
            "DKIM_SELECTOR": "news2026",
        },
    )["DKIM"]
    app.config["DKIM"] = settings
    try:
        data = reader_message(app)
    finally:
        app.config["DKIM"] = None
    assert data.startswith(b"DKIM-Signature:")
    signature = parse(data)["DKIM-Signature"]
    signed = re.search(r"h=([^;]+)", signature).group(1).replace(" ", "").lower().split(":")
    for header in ("from", "subject", "list-unsubscribe", "list-unsubscribe-post", "list-id"):
        assert header in signed

    def dns(name, timeout=5):
        assert name == b"news2026._domainkey.example.org."
        return record

    assert dkim.verify(data, dnsfunc=dns)
    tampered = data.replace(b"List-Unsubscribe-Post: List-Unsubscribe=One-Click", b"X: y")
    assert not dkim.verify(tampered, dnsfunc=dns)


def test_without_a_key_nothing_is_signed(app, db_session):
    assert b"DKIM-Signature" not in reader_message(app)


@pytest.mark.parametrize(
    ("env", "setting"),
    [
        ({"DKIM_PRIVATE_KEY_FILE": "/no/key.pem", "DKIM_SELECTOR": "s"}, "DKIM_PRIVATE_KEY_FILE"),
        ({"DKIM_PRIVATE_KEY_FILE": __file__, "DKIM_SELECTOR": "s"}, "DKIM_PRIVATE_KEY_FILE"),
        ({"MAIL_FROM": "no address here"}, "MAIL_FROM"),
    ],
)
def test_bad_signing_settings_are_named(tmp_path, env, setting):
    with pytest.raises(ConfigError) as caught:
        load_config(tmp_path, env)
    assert caught.value.setting == setting


def test_a_key_without_a_selector_is_named(tmp_path, dkim_key):
    private, _ = dkim_key
    with pytest.raises(ConfigError) as caught:
        load_config(tmp_path, {"DKIM_PRIVATE_KEY_FILE": str(private)})
    assert caught.value.setting == "DKIM_SELECTOR"


# --- the fast path -------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["韩梅梅", 'Han "Mei" Mei', "", "名" * 100])
def test_the_skeleton_builds_the_same_message_as_the_email_package(name):
    headers = {
        "List-Id": "<bulletin.example.org>",
        "List-Unsubscribe-Post": "List-Unsubscribe=One-Click",
        "Auto-Submitted": "auto-generated",
    }
    personal = {
        "List-Unsubscribe": "<https://bulletin.example.org/unsubscribe/"
        + "T" * 90
        + ">, <mailto:unsubscribe@example.org?subject=unsubscribe%20T>"
    }
    text, html = "纯文本正文。\n" * 300, "<p>正文</p>\n" * 300
    skeleton = MessageSkeleton(
        sender="工作简报 <bulletin@example.org>", subject=TITLE, headers=headers
    )
    fast = parse(
        skeleton.render(
            to_email="han@example.com",
            to_name=name,
            text=Base64Template.plain(text).fill(),
            html=Base64Template.plain(html).fill(),
            message_id="<1@example.org>",
            headers=personal,
        )
    )
    slow = parse(
        build_message(
            sender="工作简报 <bulletin@example.org>",
            to_email="han@example.com",
            to_name=name,
            subject=TITLE,
            text=text,
            html=html,
            headers={**personal, **headers},
            message_id="<1@example.org>",
        ).as_bytes()
    )
    for header in ("From", "Subject", "Message-ID", "MIME-Version", *headers, *personal):
        assert fast[header] == slow[header], header
    # Long names are split into several encoded-words, at places that may differ; Python's
    # parser shows a space at each split where mail clients (RFC 2047) show none.
    [fast_to], [slow_to] = fast["To"].addresses, slow["To"].addresses
    assert fast_to.addr_spec == slow_to.addr_spec == "han@example.com"
    assert fast_to.display_name.replace(" ", "") == slow_to.display_name.replace(" ", "")
    assert fast_to.display_name.replace(" ", "") == name.replace(" ", "")
    assert fast.get_content_type() == slow.get_content_type() == "multipart/alternative"
    for kind in ("plain", "html"):
        assert fast.get_body((kind,)).get_content() == slow.get_body((kind,)).get_content()
        assert fast.get_body((kind,))["Content-Transfer-Encoding"] == "base64"


def test_the_skeleton_refuses_to_address_a_line_break():
    skeleton = MessageSkeleton(sender="a@example.org", subject="s")
    with pytest.raises(ValueError):
        skeleton.render(
            to_email="a@example.org\r\nBcc: x@example.org",
            to_name="",
            text=b"dA==\r\n",
            html=b"aA==\r\n",
            message_id="<1@example.org>",
        )


# --- base64 bodies encoded once per digest ---------------------------------------------------

_texts = st.text(st.sampled_from("简报质量a.=\n\r 😀"), max_size=12)
_names = st.sampled_from(["GREETING", "URL", "STOP_URL_1"])


@settings(max_examples=300, deadline=None)
@given(
    fixed=st.lists(_texts, min_size=1, max_size=6),
    names=st.lists(_names, min_size=5, max_size=5),
    values=st.dictionaries(_names, st.text(st.sampled_from("读者Ab&<>"), max_size=7)),
)
def test_a_filled_template_decodes_to_the_filled_text(fixed, names, values):
    pieces = [fixed[0]]
    for name, text in zip(names, fixed[1:], strict=False):
        pieces += [name, text]
    template = Base64Template(pieces)
    expected = "".join(
        values.get(piece, f"@@{piece}@@") if i % 2 else piece for i, piece in enumerate(pieces)
    )
    expected_bytes = expected.replace("\r", "").replace("\n", "\r\n").encode()
    for _ in range(2):  # the second fill reuses the pieces encoded by the first
        body = template.fill(values)
        assert body == b"" or body.endswith(b"\r\n")
        lines = body.split(b"\r\n")[:-1]
        assert all(0 < len(line) <= 76 for line in lines)
        joined = b"".join(lines)
        assert b"=" not in joined.rstrip(b"="), "padding only at the very end"
        assert base64.b64decode(joined, validate=True) == expected_bytes


def test_a_template_without_holes_encodes_like_the_email_package():
    text = "纯文本正文。\n" * 300
    message = build_message(
        sender="a@example.org", to_email="b@example.org", to_name="", subject="s", text=text
    )
    assert Base64Template.plain(text).fill() == message.get_payload().encode().replace(
        b"\n", b"\r\n"
    )
