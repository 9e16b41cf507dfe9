"""What the inbox makes of a digest: SpamAssassin (offline, its shipped rules, no Bayes) finds
nothing to score on the sample sent to every set of sections, and every text in the HTML
stands out from its background (WCAG AA contrast)."""

from __future__ import annotations

import re
import shutil
import subprocess
from email import message_from_bytes, policy
from itertools import combinations
from pathlib import Path

import lxml.html
import pytest
from coloraide import Color
from sqlalchemy import select

from tests.sample_content import BASE_URL, sample_content
from webapp import delivery, publishing
from webapp.extensions import db
from webapp.issues import import_document
from webapp.models import Subscriber, SubscriberStatus, Topic
from webapp.readership import LinkKind, resolve, with_counted_links
from webapp.rendering import render_digest

SAMPLE = Path(__file__).parents[1] / "webapp" / "demo" / "bulletin-2022-08.md"

# Rules that SpamAssassin reports with a score of 0 only say what it saw (HTML_MESSAGE,
# "HTML included in message"; NO_RELAYS, "Informational: ..."): informational. Any other
# score, up or down, means a rule judged the message, and the digest should give none a
# reason to. The report rounds to 0.1, so its testing rules (T_..., 0.01) count as
# informational too.
RULE_LINE = re.compile(r"^\s*(-?\d+\.\d)\s+([A-Z0-9_]+)\s", re.MULTILINE)


@pytest.fixture
def sent_to_every_set(app, db_session, inbox) -> dict[str, bytes]:
    """The sample issue, sent to one reader per set of its sections: sections -> message."""
    issue, _ = import_document(SAMPLE.read_bytes())
    topics = list(db.session.scalars(select(Topic).order_by(Topic.position)))
    sets = [c for n in range(1, len(topics) + 1) for c in combinations(topics, n)]
    readers = {}
    for number, chosen in enumerate(sets, start=1):
        email = f"reader{number}@example.com"
        db.session.add(Subscriber(email=email, status=SubscriberStatus.ACTIVE, topics=list(chosen)))
        readers[email] = "、".join(t.name for t in chosen)
    db.session.commit()
    publishing.publish_issue(issue.id)
    db.session.commit()
    batches: list[list[int]] = []
    delivery.dispatch_issue(issue.id, lambda _, ids: batches.append(ids))
    for ids in batches:
        delivery.send_batch(issue.id, ids)
    assert len(sets) == 15
    return {readers[email]: inbox.raw_to(email)[0] for email in readers}


def spam_reports(messages: list[bytes]) -> list[list[tuple[float, str]]]:
    """The rules SpamAssassin lists for each message, as (score, name): one run over an
    mbox (its start-up, compiling the rules, is most of the time), local tests only."""
    mbox = b"".join(
        b"From bulletin@example.org Tue Dec  1 00:00:00 2026\n"
        + re.sub(rb"(?m)^(>*From )", rb">\1", raw.replace(b"\r\n", b"\n"))
        + b"\n"
        for raw in messages
    )
    if not shutil.which("spamassassin"):
        pytest.fail("no spamassassin here (Debian/Ubuntu: apt-get install spamassassin)")
    output = subprocess.run(
        ["spamassassin", "-L", "-t", "--mbox"],
        input=mbox,
        capture_output=True,
        timeout=600,
        check=True,
    ).stdout.decode("utf-8", "replace")
    tables = output.split("Content analysis details:")[1:]
    assert len(tables) == len(messages), output[-2000:]
    # Each table ends at the first blank line after its column headings.
    tables = [table.split("\n\n", 2)[1] for table in tables]
    return [[(float(s), name) for s, name in RULE_LINE.findall(t)] for t in tables]


@pytest.mark.spamassassin
def test_spamassassin_scores_nothing_on_any_set_of_sections(sent_to_every_set):
    reports = dict(
        zip(sent_to_every_set, spam_reports(list(sent_to_every_set.values())), strict=True)
    )
    scored = {
        sections: [f"{name} {score:+.1f}" for score, name in rules if score != 0]
        for sections, rules in reports.items()
    }
    assert not any(scored.values()), {k: v for k, v in scored.items() if v}
    # It did look: every report names the HTML part it parsed.
    assert all("HTML_MESSAGE" in {name for _, name in rules} for rules in reports.values())


@pytest.mark.spamassassin
def test_the_spam_check_reads_scores_and_informational_rules_apart():
    bare = b"From: a@example.org\r\nTo: b@example.com\r\n\r\nFrom the office.\r\n"
    [rules] = spam_reports([bare])
    assert (2.7, "MISSING_DATE") in rules and (0.6, "MISSING_MID") in rules
    assert (0.0, "MISSING_SUBJECT") in rules  # reported, but scores nothing


# --- the table of contents ---------------------------------------------------------------


def test_the_contents_link_each_article_to_its_web_version(app):
    html = render_digest(sample_content(), {1, 2, 3, 4}).html
    entries = lxml.html.fromstring(html).find_class("toc-item")
    links = [entry.find("a").get("href") for entry in entries]
    assert links == [f"{BASE_URL}/issues/1/articles/{n}" for n in range(1, 8)]

    # Through a counted link when links are counted: it lands on the same page.
    with app.test_request_context():
        counted = render_digest(with_counted_links(sample_content()), {1, 2, 3, 4}).html
        entries = lxml.html.fromstring(counted).find_class("toc-item")
        first = entries[0].find("a").get("href")
        assert first.startswith(f"{BASE_URL}/r/")
        assert resolve(first.rsplit("/", 1)[1])[1:] == (1, LinkKind.WEB, links[0])


# --- contrast ------------------------------------------------------------------------------

LARGE_PX = 24.0  # WCAG: 18 pt, or 14 pt bold (18.66 px)
LARGE_BOLD_PX = 18.66


def declarations(style: str) -> dict[str, str]:
    pairs = (part.split(":", 1) for part in style.split(";") if ":" in part)
    return {name.strip().lower(): value.strip() for name, value in pairs}


def colour(value: str) -> str | None:
    value = value.replace("!important", "").strip()
    if value in ("", "inherit", "transparent", "currentcolor"):
        return None
    return Color(value).convert("srgb").to_string(hex=True)


def text_checks(html: str):
    """Every element with its own text: (text, colour, background, px, bold), colours and
    sizes inherited down the tree the way a mail client's CSS would."""
    document = lxml.html.fromstring(html)
    body = document.find("body")

    def walk(element, fg, bg, px, bold):
        style = declarations(element.get("style") or "")
        if "display" in style and style["display"].startswith("none"):
            return  # the hidden preheader
        fg = colour(style.get("color", "")) or fg
        background = style.get("background-color") or style.get("background", "")
        bg = colour(background.split()[0]) if background else bg
        bg = bg or colour(element.get("bgcolor") or "")
        if "font-size" in style and style["font-size"].endswith("px"):
            px = float(style["font-size"][:-2])
        weight = style.get("font-weight", "")
        bold = weight == "bold" or (weight.isdigit() and int(weight) >= 700) or bold
        bold = bold or element.tag in ("strong", "b", "h1", "h2", "h3", "h4")
        own = (element.text or "").strip() + "".join((c.tail or "").strip() for c in element)
        if own:
            yield own[:30], fg, bg, px, bold
        for child in element:
            if isinstance(child.tag, str):
                yield from walk(child, fg, bg, px, bold)

    yield from walk(body, "#000000", "#ffffff", 16.0, False)


def test_every_text_in_the_digest_stands_out_from_its_background(sent_to_every_set):
    checked, low = 0, set()
    for raw in sent_to_every_set.values():
        html = message_from_bytes(raw, policy=policy.default).get_body(("html",)).get_content()
        for text, fg, bg, px, bold in text_checks(html):
            large = px >= LARGE_PX or (bold and px >= LARGE_BOLD_PX)
            needed = 3.0 if large else 4.5
            ratio = Color(fg).contrast(bg, method="wcag21")
            checked += 1
            if ratio < needed:
                low.add(f"{text!r}: {fg} on {bg}, {ratio:.2f}:1 < {needed}:1")
    assert checked > 15 * 20  # masthead, contents, titles, paragraphs, links, footer
    assert not low, "\n".join(sorted(low))
