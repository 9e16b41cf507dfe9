"""Following the archive in a feed reader, link cards for shared pages, and printing."""

from __future__ import annotations

from pathlib import Path

import feedparser
import lxml.html
import pytest
from playwright.sync_api import sync_playwright

from webapp.extensions import db
from webapp.issues import import_document
from webapp.models import IssueStatus, Topic, utcnow

SAMPLE = Path(__file__).parents[1] / "webapp" / "demo" / "bulletin-2022-08.md"


@pytest.fixture
def published(app, db_session):
    """The sample imported twice: the first published, the second still a draft."""
    sent, _ = import_document(SAMPLE.read_bytes())
    sent.status, sent.published_at, sent.sent_at = IssueStatus.SENT, utcnow(), utcnow()
    sent.preheader = "八月要闻：认证认可检验检测发展规划、质量月"
    draft, _ = import_document(SAMPLE.read_bytes())
    draft.title = "还没发出的一期"
    db.session.commit()
    return sent


def parse(client, path: str):
    answer = client.get(path)
    assert answer.status_code == 200
    assert answer.mimetype == "application/atom+xml"
    feed = feedparser.parse(answer.get_data())
    assert not feed.bozo, feed.get("bozo_exception")  # well-formed, as the parser reads it
    assert feed.version == "atom10"
    return feed


def test_the_issues_feed_lists_published_issues_only(app, published):
    client = app.test_client()
    feed = parse(client, "/feed.atom")
    assert feed.feed.title == "工作简报"
    [entry] = feed.entries
    assert entry.title.startswith(published.title) and "2022年第1期" in entry.title
    assert entry.link == f"{app.config['BASE_URL']}/issues/{published.id}"
    assert entry.summary == "八月要闻：认证认可检验检测发展规划、质量月"
    assert "市场监管总局关于印发" in entry.content[0].value
    assert all("还没发出" not in e.title for e in feed.entries)


def test_each_section_has_a_feed_of_its_articles(app, published):
    topic = db.session.query(Topic).filter_by(name="质量热点").one()
    feed = parse(app.test_client(), f"/sections/{topic.slug}/feed.atom")
    assert feed.feed.title == "工作简报 · 质量热点"
    titles = {e.title for e in feed.entries}
    assert titles == {
        "市场监管总局查处哄抬煤炭价格 服务迎峰度夏",
        "市场监管总局集中整治商品过度包装、“天价”月饼等问题",
    }
    assert all(e.tags[0].term == topic.slug for e in feed.entries)
    assert app.test_client().get("/sections/no-such-section/feed.atom").status_code == 404


def test_the_archive_pages_link_the_feeds(app, published):
    page = lxml.html.fromstring(app.test_client().get("/").get_data(as_text=True))
    alternates = page.xpath("//link[@rel='alternate'][@type='application/atom+xml']/@href")
    assert "/feed.atom" in alternates
    assert any(href.startswith("/sections/") for href in alternates)
    assert page.xpath("//section[@id='feeds']//a[@href='/feed.atom']")
    issue_page = lxml.html.fromstring(
        app.test_client().get(f"/issues/{published.id}").get_data(as_text=True)
    )
    assert "/feed.atom" in issue_page.xpath("//link[@rel='alternate']/@href")


def meta(page, key: str) -> str:
    [value] = page.xpath(f"//meta[@property='{key}' or @name='{key}']/@content")
    return value


def test_issue_and_article_pages_carry_a_link_card(app, published):
    client = app.test_client()
    page = lxml.html.fromstring(client.get(f"/issues/{published.id}").get_data(as_text=True))
    assert meta(page, "og:title").startswith(published.title)
    assert meta(page, "og:description") == "八月要闻：认证认可检验检测发展规划、质量月"
    assert meta(page, "og:url") == f"{app.config['BASE_URL']}/issues/{published.id}"
    assert meta(page, "og:site_name") == "工作简报"
    assert meta(page, "twitter:card") == "summary"

    article = published.articles[0]
    url = f"/issues/{published.id}/articles/{article.id}"
    page = lxml.html.fromstring(client.get(url).get_data(as_text=True))
    assert meta(page, "og:title") == article.title
    assert meta(page, "og:description").startswith(article.lead[:50])  # its lead
    assert meta(page, "og:type") == "article"
    assert meta(page, "twitter:title") == article.title


def test_an_issue_page_prints_on_a4_without_the_site_chrome(app, published, live_server, chromium):
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
        page = browser.new_page(locale="zh-CN")
        page.goto(f"{live_server}/issues/{published.id}")
        page.emulate_media(media="print")
        assert page.locator(".site-header nav").first.is_hidden()
        assert page.get_by_role("heading", name=published.title).is_visible()
        # Each teaser's address is printed after its title, for the paper copy.
        after = page.evaluate(
            "getComputedStyle(document.querySelector('.teaser h3 a'), '::after').content"
        )
        assert f"/issues/{published.id}/articles/" in after
        pdf = page.pdf(prefer_css_page_size=True)
        browser.close()
    # The page size the stylesheet asks for: A4 is 595 x 842 points.
    assert b"/MediaBox [0 0 595" in pdf or b"/MediaBox [0 0 594.9" in pdf
