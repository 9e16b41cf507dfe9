"""Issue + set of sections -> subject, HTML and text. The only module that imports premailer.

Rendering happens in two steps so that premailer's CSS inlining (about 15 ms for a long
Chinese digest) runs once per (issue, set of sections) and never once per recipient:

1. `render_digest()` builds a `DigestTemplate`: the inlined HTML and the text part, with
   `@@PLACEHOLDER@@` markers where personal parts go (greeting, signed links).
2. `personalize()` fills the markers for one reader; sending fills them straight into the
   base64 bodies (`mailer.Base64Template`, from `pieces()` and `personal_values()`).

This module knows nothing of the database or the request: it takes plain dataclasses.
"""

from __future__ import annotations

import html
import logging
import re
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import html2text
import nh3
from cmarkgfm import cmark
from jinja2 import Environment, FileSystemLoader, select_autoescape
from markupsafe import Markup
from premailer import Premailer

from .i18n import Translator, topic_name

TEMPLATE_DIR = Path(__file__).resolve().parent.parent / "email_templates"

# Gmail clips messages whose HTML is over ~102 KB; stay well under it.
DEFAULT_BUDGET = 90 * 1024
# Room left in the budget for the personal parts filled in after inlining (four signed URLs
# per section plus a greeting).
PERSONAL_ALLOWANCE = 3 * 1024

CONTENT_MODES = ("full", "leads", "auto")

# Tags an article body may keep after Markdown rendering: structure and emphasis only.
ALLOWED_TAGS = {
    "p",
    "br",
    "h3",
    "h4",
    "h5",
    "h6",
    "ul",
    "ol",
    "li",
    "strong",
    "em",
    "b",
    "i",
    "a",
    "blockquote",
    "table",
    "thead",
    "tbody",
    "tr",
    "th",
    "td",
    "hr",
    "code",
    "pre",
    "sup",
    "sub",
}
ALLOWED_ATTRIBUTES = {"a": {"href", "title"}}
PLACEHOLDER = re.compile(r"@@([A-Z0-9_]+)@@")


@dataclass(frozen=True)
class ArticleContent:
    id: int
    title: str
    source_name: str
    source_url: str
    body: str  # Markdown
    lead: str
    web_url: str


@dataclass(frozen=True)
class TopicContent:
    topic_id: int
    name: str
    articles: tuple[ArticleContent, ...]
    name_en: str | None = None  # English emails use it when set (i18n.topic_name)


@dataclass(frozen=True)
class IssueContent:
    id: int
    title: str
    period: str
    bulletin_name: str
    web_url: str
    sections: tuple[TopicContent, ...]
    content_mode: str = "auto"
    subject: str = ""  # the inbox's subject line; the title when empty
    subject_en: str = ""  # English readers' subject line; the Chinese one when empty
    preheader: str = ""  # the inbox's preview text; made from the titles when empty
    year: int | None = None
    number: int | None = None  # 第N期 within the year
    total_number: int | None = None  # 总第N期


@dataclass(frozen=True)
class DigestTemplate:
    """A digest for one set of sections, inlined and waiting for the personal parts."""

    subject: str
    html: str
    text: str
    topic_ids: frozenset[int]
    full_article_ids: frozenset[int]  # articles carried in full; the others as leads

    @property
    def html_size(self) -> int:
        return len(self.html.encode("utf-8"))


@dataclass(frozen=True)
class Personal:
    """What differs between two readers of the same digest."""

    name: str
    preferences_url: str
    unsubscribe_url: str
    stop_urls: dict[int, str] = field(default_factory=dict)  # topic id -> signed URL
    unsubscribe_subject: str = ""  # for the mailto: in List-Unsubscribe


DEFAULT_COLOR = "#9b1c1c"


@dataclass(frozen=True)
class Identity:
    """Who sends: the masthead and footer of every email (`identity.current()` builds it
    from the site settings). Hashable, so a cache of renders can be keyed by it."""

    name: str = ""  # Chinese; empty: the issue's own `bulletin_name`
    name_en: str = ""  # English readers' name; empty: the Chinese one
    organization: str = ""
    postal_address: str = ""
    contact: str = ""
    color: str = DEFAULT_COLOR  # the masthead's background and the headings' colour
    logo_url: str = ""  # absolute; empty: no logo
    logo_width: int = 0  # display size in CSS pixels (the image has up to twice as many)
    logo_height: int = 0
    logo_alt: str = ""

    def name_for(self, locale: str) -> str:
        return (self.name_en if locale == "en" else "") or self.name


def format_number(_, year: int | None, number: int | None, total: int | None) -> str:
    """ "2022年第8期 · 总第45期" (or "No. 8, 2022 · No. 45 overall") for a masthead; `_` is
    the reader's translator. Empty when the issue has no number."""
    parts = []
    if number:
        if year:
            parts.append(_("%(year)s年第%(n)s期", year=year, n=number))
        else:
            parts.append(_("第%(n)s期", n=number))
    if total:
        parts.append(_("总第%(n)s期", n=total))
    return " · ".join(parts)


class RenderError(RuntimeError):
    """The digest cannot be rendered (e.g. no article in the reader's sections)."""


# cmark-gfm (GitHub's C implementation of CommonMark, the one PyPI renders READMEs with) is
# linear in its input by design and fuzzed for it; markdown-it-py took seconds for 64 KB of
# "[a](". Raw HTML is let through ("unsafe") because nh3 sanitizes the result anyway; that is
# what lets `_cjk_strong` below hand Markdown a <strong>.
_CMARK_OPTIONS = cmark.Options.CMARK_OPT_UNSAFE
# nh3 (html5ever) slows down more than linearly on long text full of escaped ampersands, so
# they cross it as one private-use character and come back after. Any such character in the
# input is dropped first: it could otherwise only become a harmless "&".
_AMPERSAND = "\ue000"
# CommonMark will not close `**` between CJK punctuation and a letter ("**本报讯（记者）**中秋"),
# so such emphasis showed its asterisks. Bold spans inside one line become <strong> first.
_STRONG = re.compile(r"\*\*(?=\S)([^*\n]+?)(?<=\S)\*\*")


_CODE_SPAN = re.compile(r"(`[^`]*`)")


def _cjk_strong(text: str) -> str:
    if "**" not in text:
        return text
    lines, fenced = text.split("\n"), False
    # One pass over the lines, with the cheap tests first: a megabyte of short lines must
    # not cost a regular expression per line.
    for number, line in enumerate(lines):
        if ("`" in line or "~" in line) and line.lstrip().startswith(("```", "~~~")):
            fenced = not fenced
        if fenced or "**" not in line:
            continue
        if "`" in line:  # not inside `code` spans, the odd pieces of this split
            pieces = _CODE_SPAN.split(line)
            pieces[::2] = [_STRONG.sub(r"<strong>\1</strong>", p) for p in pieces[::2]]
            lines[number] = "".join(pieces)
        else:
            lines[number] = _STRONG.sub(r"<strong>\1</strong>", line)
    return "\n".join(lines)


# Article headings start at h3: h1 and h2 belong to the masthead and the sections.
_HEADINGS = (("<h1>", "<h3>"), ("</h1>", "</h3>"), ("<h2>", "<h4>"), ("</h2>", "</h4>"))


_env = Environment(
    loader=FileSystemLoader(TEMPLATE_DIR),
    autoescape=select_autoescape(["html"]),
    keep_trailing_newline=True,
)


def markdown_to_html(text: str) -> str:
    """Markdown -> sanitized HTML: no script, event handler or javascript: URL survives."""
    source = _cjk_strong(text.replace(_AMPERSAND, ""))
    rendered = cmark.markdown_to_html_with_extensions(
        source, options=_CMARK_OPTIONS, extensions=["table"]
    )
    for heading, lower in _HEADINGS:
        rendered = rendered.replace(heading, lower)
    clean = nh3.clean(
        rendered.replace("&amp;", _AMPERSAND),
        tags=ALLOWED_TAGS,
        attributes=ALLOWED_ATTRIBUTES,
        url_schemes={"http", "https", "mailto"},
        link_rel="noopener noreferrer",
    )
    return clean.replace(_AMPERSAND, "&amp;")


def safe_url(url: str) -> str:
    """The URL if it is http(s), else "": a source link must never run anything."""
    url = (url or "").strip()
    return url if re.match(r"(?i)^https?://[^\s]+$", url) else ""


def html_to_text(fragment: str) -> str:
    converter = html2text.HTML2Text()
    converter.body_width = 0  # CJK has no spaces to wrap at; let the mail client wrap
    converter.ignore_images = True
    converter.ignore_emphasis = True
    return converter.handle(fragment).strip()


@lru_cache(maxsize=8)
def _css(color: str = DEFAULT_COLOR) -> str:
    """The stylesheet, with the masthead colour (a template: `{{ color }}` in it)."""
    return _env.get_template("_styles.css").render(color=color)


# Fixed for every document, so that what premailer works out from a stylesheet alone can be
# kept (`_stylesheet_rules`).
_PREMAILER_OPTIONS = dict(
    allow_network=False,
    allow_loading_external_files=False,
    disable_validation=True,
    disable_link_rewrites=True,
    keep_style_tags=False,
    strip_important=False,
    remove_classes=False,
    cssutils_logging_level=logging.CRITICAL,
)


class _Leftover(list):
    """A stylesheet's rules that cannot be inlined, with their text for the <style> block."""

    css: str = ""


class _Inliner(Premailer):
    """premailer, but a stylesheet's rules are read once, not once per document.

    premailer caches the parsed stylesheet, yet turns it back into text on every run (rule
    by rule through cssutils's serializer): about two thirds of inlining a digest, and the
    same text every time, as the stylesheet is one of a handful (`_css`, per colour). The
    rules come from premailer's own code, so the output is byte for byte premailer's
    (tests/test_rendering.py compares them).
    """

    def _parse_style_rules(self, css_body, ruleset_index):
        rules, leftover = _stylesheet_rules(css_body, ruleset_index)
        return list(rules), leftover

    def _css_rules_to_string(self, rules):
        if isinstance(rules, _Leftover):
            return rules.css
        return super()._css_rules_to_string(rules)


@lru_cache(maxsize=32)
def _stylesheet_rules(css_body: str, ruleset_index: int) -> tuple[tuple, _Leftover]:
    reader = Premailer(**_PREMAILER_OPTIONS)
    rules, leftover = Premailer._parse_style_rules(reader, css_body, ruleset_index)
    kept = _Leftover(leftover)
    # Serialized once: premailer marks these rules !important in the parsed sheet itself.
    kept.css = Premailer._css_rules_to_string(reader, leftover)
    return tuple(rules), kept


def inline_css(document: str) -> str:
    """Run premailer on one document, with the network off."""
    return _Inliner(document, **_PREMAILER_OPTIONS).transform()


def _topics_for(content: IssueContent, topic_ids: frozenset[int]) -> list[TopicContent]:
    sections = [s for s in content.sections if s.topic_id in topic_ids and s.articles]
    if not sections:
        raise RenderError(f"issue {content.id} has no article in sections {sorted(topic_ids)}")
    return sections


def _article_view(article: ArticleContent, full: bool) -> dict:
    view = {
        "id": article.id,
        "title": article.title,
        "source_name": article.source_name,
        "source_url": safe_url(article.source_url),
        "lead": article.lead,
        "web_url": article.web_url,
        "full": full,
    }
    if full:
        body_html, body_text = _article_body(article.body)
        view["body_html"] = Markup(body_html)
        view["body_text"] = body_text
    return view


# An article is in half the sets of sections of its issue (8 of the sample's 15), and one
# over the budget is rendered twice per set: its body's HTML and text are worked out once,
# by its text, so an edited body is a new key. 64 bodies hold a few issues' articles; at
# the 500 KB a body may have (issues.BODY_MAX_BYTES) they stay within ~100 MB.
ARTICLE_BODY_CACHE_SIZE = 64


@lru_cache(maxsize=ARTICLE_BODY_CACHE_SIZE)
def _article_body(body: str) -> tuple[str, str]:
    """An article's Markdown body as sanitized HTML and as text."""
    body_html = markdown_to_html(body)
    return body_html, html_to_text(body_html)


def _render_pair(
    content: IssueContent,
    sections: list[TopicContent],
    full_ids: frozenset[int],
    *,
    locale: str,
    identity: Identity,
) -> tuple[str, str]:
    _ = Translator(locale)
    views = [
        {
            "topic_id": s.topic_id,
            "name": topic_name(s, locale),
            "articles": [_article_view(a, a.id in full_ids) for a in s.articles],
        }
        for s in sections
    ]
    titles = [a.title for s in sections for a in s.articles]
    context = {
        "_": _,
        "issue": content,
        "sections": views,
        "section_names": _.separator.join(topic_name(s, locale) for s in sections),
        "bulletin_name": identity.name_for(locale) or content.bulletin_name,
        "identity": identity,
        "css": Markup(_css(identity.color)),
        "number_label": format_number(_, content.year, content.number, content.total_number),
        "preheader": content.preheader
        or _("本期共 %(count)d 篇：%(titles)s", count=len(titles), titles=_.separator.join(titles))[
            :150
        ],
    }
    return _env.get_template("issue.html").render(context), _env.get_template("issue.txt").render(
        context
    )


def render_digest(
    content: IssueContent,
    topic_ids: frozenset[int] | set[int],
    *,
    locale: str = "zh",
    identity: Identity = Identity(),
    budget: int = DEFAULT_BUDGET,
) -> DigestTemplate:
    """Render the digest for one set of sections.

    `full` carries every article in full and `leads` none. `auto` carries articles in full
    while the HTML fits in `budget` bytes; past it, the longest ones fall back to their lead
    and a "read more" link. premailer runs once when the digest fits and usually twice when
    it does not (once to measure). The result depends only on the arguments: `identity`
    (masthead name, colour and logo; footer) included.
    """
    topic_ids = frozenset(topic_ids)
    sections = _topics_for(content, topic_ids)
    articles = [a for s in sections for a in s.articles]
    mode = content.content_mode if content.content_mode in CONTENT_MODES else "auto"
    full_ids = frozenset(a.id for a in articles) if mode != "leads" else frozenset()
    limit = budget - PERSONAL_ALLOWANCE

    def render(ids: frozenset[int]) -> tuple[str, str]:
        return _render_pair(content, sections, ids, locale=locale, identity=identity)

    raw_html, text = render(full_ids)
    inlined = inline_css(raw_html)
    # Over budget: scale by what inlining just added to this very document, turn the longest
    # articles into leads until the estimate fits, and inline again. The estimate is exact
    # for the document measured, so each round drops at least one article.
    while mode == "auto" and _size(inlined) > limit and full_ids:
        ratio = _size(inlined) / _size(raw_html)
        full_ids, raw_html, text = _fit(articles, full_ids, limit, ratio, render)
        inlined = inline_css(raw_html)
    return DigestTemplate(
        subject=(locale == "en" and content.subject_en) or content.subject or content.title,
        html=inlined,
        text=text,
        topic_ids=topic_ids,
        full_article_ids=full_ids,
    )


def _size(document: str) -> int:
    return len(document.encode("utf-8"))


def _fit(articles, full_ids, limit, ratio, render):
    """Turn the longest full articles into leads until the estimated inlined size fits."""
    by_size = sorted((a for a in articles if a.id in full_ids), key=lambda a: -len(a.body))
    for article in by_size:
        full_ids = full_ids - {article.id}
        raw_html, text = render(full_ids)
        if _size(raw_html) * ratio <= limit:
            break
    return full_ids, raw_html, text


def personalize(
    template: DigestTemplate, personal: Personal, *, locale: str = "zh"
) -> tuple[str, str]:
    """Fill one reader's greeting and signed links into a digest: returns (html, text)."""
    values = personal_values(personal, locale=locale)
    return _fill(template.html, html_values(values)), _fill(template.text, values)


def personal_values(personal: Personal, *, locale: str = "zh") -> dict[str, str]:
    """What each marker stands for in one reader's copy, as text (see `html_values`)."""
    values = {
        "GREETING": _greeting(Translator(locale), personal.name),
        "PREFERENCES_URL": personal.preferences_url,
        "UNSUBSCRIBE_URL": personal.unsubscribe_url,
    }
    for topic_id, url in personal.stop_urls.items():
        values[f"STOP_URL_{topic_id}"] = url
    return values


def html_values(values: dict[str, str]) -> dict[str, str]:
    """The same values escaped for the HTML part (markers sit in text and in attributes)."""
    return {name: html.escape(value) for name, value in values.items()}


@lru_cache(maxsize=256)
def pieces(document: str) -> tuple[str, ...]:
    """The document split at its markers: text, name, text, name, ..., text. Done once per
    digest (a str caches its hash), so each reader costs a join, not a regex pass."""
    return tuple(PLACEHOLDER.split(document))


def _fill(document: str, values: dict[str, str]) -> str:
    parts = list(pieces(document))
    for i in range(1, len(parts), 2):
        value = values.get(parts[i])
        # A marker that is not ours (an article may contain "@@NAME@@") is left be.
        parts[i] = f"@@{parts[i]}@@" if value is None else value
    return "".join(parts)


def _greeting(_: Translator, name: str) -> str:
    return _("%(name)s，您好：", name=name) if name else _("您好：")


@dataclass(frozen=True)
class RenderedEmail:
    subject: str
    html: str
    text: str


def render_confirmation(
    *,
    identity: Identity,
    name: str,
    section_names: list[str],
    confirm_url: str,
    locale: str = "zh",
) -> RenderedEmail:
    """The double opt-in email: subject, inlined HTML and text."""
    _ = Translator(locale)
    bulletin_name = identity.name_for(locale)
    sections = _.separator.join(section_names)
    return _render_notice(
        _,
        subject=_("请确认订阅《%(name)s》", name=bulletin_name),
        heading=_("请确认您的订阅"),
        body=_(
            "您申请订阅以下栏目：%(sections)s。请点击下面的按钮确认，链接 7 天内有效。",
            sections=sections,
        ),
        button=_("确认订阅"),
        footnote=_("如果这不是您本人的操作，请忽略本邮件，您不会收到任何简报。"),
        bulletin_name=bulletin_name,
        name=name,
        url=confirm_url,
        identity=identity,
    )


def render_preferences_notice(
    *,
    identity: Identity,
    name: str,
    section_names: list[str],
    preferences_url: str,
    locale: str = "zh",
) -> RenderedEmail:
    """For an active reader whose address was submitted again: here is how to change things."""
    _ = Translator(locale)
    bulletin_name = identity.name_for(locale)
    return _render_notice(
        _,
        subject=_("您已订阅《%(name)s》", name=bulletin_name),
        heading=_("您已经订阅了"),
        body=_(
            "有人用这个邮箱再次提交了订阅。您目前订阅的栏目是：%(sections)s。"
            "如需修改栏目或退订，请使用下面的链接。",
            sections=_.separator.join(section_names),
        ),
        button=_("管理订阅设置"),
        footnote=_("如果这不是您本人的操作，请忽略本邮件，您的订阅不会有任何变化。"),
        bulletin_name=bulletin_name,
        name=name,
        url=preferences_url,
        identity=identity,
    )


def render_review_request(
    *,
    identity: Identity,
    issue_title: str,
    submitted_by: str,
    preview_url: str,
    locale: str = "zh",
) -> RenderedEmail:
    """To a reviewer: an issue was submitted for review (送审); the link opens its preview."""
    _ = Translator(locale)
    bulletin_name = identity.name_for(locale)
    return _render_notice(
        _,
        subject=_("[送审] %(title)s", title=issue_title),
        heading=_("有一期简报等待您审核"),
        body=_(
            "%(who)s 提交了《%(title)s》，请在预览页检查后“审核通过”，或写明意见“退回修改”。"
            "测试邮件另行发出，您会看到读者收到的样子。",
            who=submitted_by,
            title=issue_title,
        ),
        button=_("打开预览"),
        footnote=_("您收到这封邮件，是因为您是本简报的审核人。"),
        bulletin_name=bulletin_name,
        name="",
        url=preview_url,
        identity=identity,
    )


def _render_notice(_: Translator, *, subject: str, name: str, **context) -> RenderedEmail:
    """A short transactional email with one button (notice.html and notice.txt)."""
    context.update(
        _=_,
        subject=subject,
        greeting=_greeting(_, name),
        css=Markup(_css(context["identity"].color)),
    )
    return RenderedEmail(
        subject=subject,
        html=inline_css(_env.get_template("notice.html").render(context)),
        text=_env.get_template("notice.txt").render(context),
    )
