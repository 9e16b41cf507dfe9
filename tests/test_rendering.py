"""Rendering the sample bulletin: sections, size budget, sanitizing, languages, snapshots."""

from __future__ import annotations

import os
import re
from dataclasses import replace
from itertools import combinations
from pathlib import Path

import lxml.html
import pytest
from markupsafe import Markup

from tests.sample_content import sample_content
from webapp.identity import contrast
from webapp.rendering import (
    DEFAULT_BUDGET,
    DEFAULT_COLOR,
    ArticleContent,
    Identity,
    Personal,
    markdown_to_html,
    personalize,
    render_confirmation,
    render_digest,
)

ALL = frozenset({1, 2, 3, 4})
SECTIONS = {1: "质量要闻", 2: "质量热点", 3: "权威观点", 4: "国际动态"}
SNAPSHOTS = Path(__file__).parent / "snapshots"
READER = Personal(
    name="李雷",
    preferences_url="https://bulletin.example.org/preferences/TOKEN",
    unsubscribe_url="https://bulletin.example.org/unsubscribe/TOKEN",
    stop_urls={i: f"https://bulletin.example.org/unsubscribe/STOP{i}" for i in ALL},
)


def section_titles(html: str) -> list[str]:
    return [h.text_content() for h in lxml.html.fromstring(html).find_class("section-title")]


# --- sections ------------------------------------------------------------------------------


@pytest.mark.parametrize("chosen", [{1}, {2, 4}, {1, 2, 3, 4}], ids=str)
def test_a_digest_holds_exactly_the_chosen_sections_in_contents_order(chosen):
    digest = render_digest(sample_content(), frozenset(chosen))
    assert section_titles(digest.html) == [SECTIONS[i] for i in sorted(chosen)]
    for topic_id, name in SECTIONS.items():
        assert (f"==== {name} ====" in digest.text) == (topic_id in chosen)


def test_the_digest_has_the_parts_a_reader_needs():
    html, text = personalize(render_digest(sample_content(), ALL), READER)
    page = lxml.html.fromstring(html)
    assert page.get("lang") == "zh-CN"
    assert page.find_class("preheader")[0].text_content().startswith("本期共 7 篇")
    assert "上海交通大学中国质量发展研究院" in page.find_class("masthead-title")[0].text_content()
    assert page.find_class("masthead-period")[0].text_content() == "2022年8月1日-2022年8月31日"
    assert len(page.find_class("toc-item")) == 7
    assert "李雷，您好：" in html and "李雷，您好：" in text
    footer = page.find_class("footer")[0]
    assert "质量要闻、质量热点、权威观点、国际动态" in footer.text_content()
    links = {a.text_content(): a.get("href") for a in footer.iter("a")}
    assert links["修改订阅栏目"] == READER.preferences_url
    assert links["退订"] == READER.unsubscribe_url
    assert links["在浏览器中查看"] == "https://bulletin.example.org/issues/1"
    for url in (READER.preferences_url, READER.unsubscribe_url, READER.stop_urls[3]):
        assert url in text  # the text part carries the same links
    assert "@@" not in html and "@@" not in text


def test_the_font_stack_and_line_height_are_inlined_for_cjk():
    html = render_digest(sample_content(), {1}).html
    paragraph = lxml.html.fromstring(html).find_class("article-lead")[0]
    style = paragraph.get("style")
    assert '"PingFang SC", "Hiragino Sans GB", "Microsoft YaHei", "Noto Sans CJK SC"' in style
    assert "line-height:1.8" in style.replace(" ", "")


def test_the_style_block_kept_for_phones_and_dark_mode_is_small():
    html = render_digest(sample_content(), ALL).html
    [style] = re.findall(r"<style[^>]*>(.*?)</style>", html, re.S)
    assert "@media only screen and (max-width: 620px)" in style
    assert "prefers-color-scheme: dark" in style
    assert len(style.encode()) < 16 * 1024


def test_an_english_reader_gets_english_fixed_text():
    html, text = personalize(render_digest(sample_content(), {1}, locale="en"), READER, locale="en")
    assert 'lang="en"' in html
    assert "In this issue" in html and "Change your sections" in html and "Dear 李雷," in text
    assert "本期目录" not in html and "退订" not in text


# --- size ----------------------------------------------------------------------------------


def every_set():
    return [frozenset(c) for n in range(1, 5) for c in combinations(sorted(ALL), n)]


@pytest.mark.parametrize("chosen", every_set(), ids=lambda s: "+".join(map(str, sorted(s))))
def test_auto_mode_keeps_every_section_set_under_the_budget(chosen):
    digest = render_digest(sample_content("auto"), chosen)
    html, _ = personalize(digest, READER)
    assert len(html.encode("utf-8")) <= DEFAULT_BUDGET


def test_auto_mode_keeps_full_text_where_it_fits_and_leads_for_the_rest():
    digest = render_digest(sample_content("auto"), ALL)
    # The 58 KB 十四五 plan alone would break the budget; it becomes a lead with a link.
    assert digest.full_article_ids == frozenset({2, 3, 4, 5, 6, 7})
    article = lxml.html.fromstring(digest.html).find_class("read-more")
    assert [a.find("a").get("href") for a in article] == [
        "https://bulletin.example.org/issues/1/articles/1"
    ]


def test_full_mode_carries_everything_even_past_the_budget():
    digest = render_digest(sample_content("full"), ALL)
    assert len(digest.full_article_ids) == 7
    assert digest.html_size > DEFAULT_BUDGET  # why auto exists


def test_leads_mode_carries_no_full_text():
    digest = render_digest(sample_content("leads"), ALL)
    assert digest.full_article_ids == frozenset()
    assert len(lxml.html.fromstring(digest.html).find_class("read-more")) == 7


def test_a_smaller_budget_is_honoured():
    digest = render_digest(sample_content("auto"), ALL, budget=40 * 1024)
    assert digest.html_size <= 40 * 1024
    assert 0 < len(digest.full_article_ids) < 6


def test_rendering_depends_only_on_its_inputs():
    first = render_digest(sample_content("auto"), {1, 3})
    render_digest(sample_content("full"), ALL)
    assert render_digest(sample_content("auto"), {1, 3}) == first


def test_inlining_gives_exactly_what_premailer_gives():
    """inline_css keeps a stylesheet's rules between documents (rendering._Inliner): an
    upgrade of premailer that changed how it reads them must not change a byte."""
    from premailer import Premailer

    from webapp.rendering import _PREMAILER_OPTIONS, _css, _env, _render_pair, inline_css

    content = sample_content("full")
    documents = []
    for identity in (Identity(), Identity(color="#1d4ed8")):
        for chosen in ({2}, ALL):
            sections = [s for s in content.sections if s.topic_id in chosen]
            full = frozenset(a.id for s in sections for a in s.articles)
            html, _ = _render_pair(content, sections, full, locale="zh", identity=identity)
            documents.append(html)
        # The notices carry two <style> blocks.
        documents.append(
            _env.get_template("notice.html").render(
                _=str,
                subject="s",
                heading="h",
                body="b",
                button="去",
                footnote="f",
                bulletin_name="n",
                greeting="g",
                url="https://x.org",
                identity=identity,
                css=Markup(_css(identity.color)),
            )
        )
    for document in documents + documents:  # the second round from what the first kept
        assert inline_css(document) == Premailer(document, **_PREMAILER_OPTIONS).transform()


def test_an_edited_article_body_is_rendered_afresh():
    content = sample_content("full")
    section = content.sections[0]
    first = section.articles[0]
    before = render_digest(content, {1})
    edited = replace(first, body=first.body + "\n\n补记：新增的一段。")
    content = replace(
        content, sections=(replace(section, articles=(edited,)),) + content.sections[1:]
    )
    after = render_digest(content, {1})
    assert "补记：新增的一段。" in after.html and "补记：新增的一段。" in after.text
    assert "补记" not in before.html


# --- sanitizing ----------------------------------------------------------------------------

HOSTILE = [
    "<script>alert(1)</script>正文",
    '<img src=x onerror="alert(1)">',
    "[点我](javascript:alert(1))",
    '<a href="javascript:alert(1)">点我</a>',
    "<iframe src='https://evil.example'></iframe>",
    '<p style="background:url(javascript:alert(1))" onclick="x()">段落</p>',
    "[x](JaVaScRiPt:alert(1))",
    "<svg><script>alert(1)</script></svg>",
]


def assert_inert(html: str) -> None:
    """What a browser or mail client would run: elements, handlers and URLs, not text."""
    tree = lxml.html.fromstring(f"<div>{html}</div>")  # nh3 may leave nothing at all
    for element in tree.iter():
        if not isinstance(element.tag, str):
            continue  # comments
        assert element.tag not in ("script", "iframe", "svg", "object", "embed", "img")
        for name, value in element.attrib.items():
            assert not name.lower().startswith("on"), f"<{element.tag} {name}>"
            if name in ("href", "src", "action", "style"):
                assert "javascript:" not in value.lower().replace(" ", ""), value


@pytest.mark.parametrize("body", HOSTILE)
def test_no_script_handler_or_javascript_url_survives_markdown(body):
    assert_inert(markdown_to_html(body))


def test_hostile_bodies_do_not_reach_the_email():
    content = sample_content("full")
    section = content.sections[0]
    hostile = ArticleContent(
        id=99,
        title="<b>标题</b>",
        source_name="来源",
        source_url="javascript:alert(1)",
        body="\n\n".join(HOSTILE),
        lead="导语",
        web_url="https://bulletin.example.org/issues/1/articles/99",
    )
    content = replace(content, sections=(replace(section, articles=(hostile,)),))
    html = render_digest(content, {1}).html
    assert_inert(html)
    assert "&lt;b&gt;标题&lt;/b&gt;" in html  # titles are text, not markup


def test_bold_next_to_chinese_punctuation_is_bold_not_asterisks():
    html = markdown_to_html("**本报讯（实习记者 贾润梅）**中秋将至，`**代码**`照旧。")
    assert "<strong>本报讯（实习记者 贾润梅）</strong>中秋将至" in html
    assert "<code>**代码**</code>" in html


def test_a_name_full_of_markup_is_text_in_the_greeting():
    reader = replace(READER, name='<img src=x onerror="alert(1)">')
    html, _ = personalize(render_digest(sample_content(), {1}), reader)
    assert_inert(html)
    assert "&lt;img src=x onerror=" in html


# --- snapshots -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "chosen"), [("one-section", frozenset({2})), ("all-sections", ALL)]
)
@pytest.mark.parametrize("part", ["html", "txt"])
def test_snapshot_of_the_rendered_sample(app, name, chosen, part):
    """The sample as readers get it, counted links included. After a deliberate change to
    the templates, run `UPDATE_SNAPSHOTS=1 make test` and review the diff of tests/snapshots/
    like code."""
    from webapp.readership import with_counted_links

    with app.app_context():
        content = with_counted_links(sample_content("auto"))
    html, text = personalize(render_digest(content, chosen), READER)
    rendered = html if part == "html" else text
    path = SNAPSHOTS / f"sample-{name}.{part}"
    if os.environ.get("UPDATE_SNAPSHOTS") == "1" or not path.exists():
        path.parent.mkdir(exist_ok=True)
        path.write_text(rendered, encoding="utf-8")
    assert rendered == path.read_text(encoding="utf-8"), f"{path} differs"


# --- the confirmation email ----------------------------------------------------------------


def _inline(style: str) -> dict[str, str]:
    """An inline style attribute as {property: value}."""
    pairs = (part.split(":", 1) for part in style.split(";") if ":" in part)
    return {name.strip(): value.strip() for name, value in pairs}


@pytest.mark.parametrize("color", [DEFAULT_COLOR, "#1d4ed8", "#065f46"])
@pytest.mark.parametrize("locale", ["zh", "en"])
def test_the_confirmation_email_has_a_real_button_and_a_plain_link_in_its_text(color, locale):
    url = "https://bulletin.example.org/confirm/TOKEN"
    email = render_confirmation(
        identity=Identity(name="工作简报", color=color),
        name="",
        section_names=["质量要闻"],
        confirm_url=url,
        locale=locale,
    )
    page = lxml.html.fromstring(email.html)
    # A bulletproof button: a table cell with the colour (attribute and style) and a padded
    # link filling it, all inline, so clients that drop <style> still draw a button.
    [cell] = page.find_class("button-cell")
    assert cell.getparent().getparent().tag in ("table", "tbody")
    assert cell.get("bgcolor") == color
    assert _inline(cell.get("style"))["background"] == color
    [button] = cell.findall("a")
    assert button.get("href") == url
    style = _inline(button.get("style"))
    assert style["display"] == "inline-block" and style["padding"] == "12px 28px"
    assert button.text_content().strip() == (
        "Confirm my subscription" if locale == "en" else "确认订阅"
    )
    assert contrast(color, (style["color"],)) >= 4.5
    # The address in full under the button, for clients that show no button.
    assert any(a.get("href") == url and a.text_content() == url for a in page.iter("a"))
    # The text twin keeps the plain link on a line of its own.
    assert any(line.endswith(f": {url}") for line in email.text.splitlines()), email.text
