"""Importing a bulletin issue from the Markdown the PDF converter produces.

Most tests read the real August 2022 issue; the checks on it are written from the raw text
wherever possible, so they do not simply repeat what the importer does.
"""

from __future__ import annotations

import re
import unicodedata
from functools import cache
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from webapp.document import Note
from webapp.importing import (
    DocumentError,
    ImportReport,
    make_lead,
    match_titles,
    normalize_title,
    parse_document,
)

SAMPLE = Path(__file__).resolve().parent.parent / "webapp" / "demo" / "bulletin-2022-08.md"

SECTIONS = {
    "质量要闻": (
        "市场监管总局关于印发《“十四五”认证认可检验检测发展规划》的通知",
        "关于开展2022年全国“质量月”活动的通知",
    ),
    "质量热点": (
        "市场监管总局查处哄抬煤炭价格 服务迎峰度夏",
        "市场监管总局集中整治商品过度包装、“天价”月饼等问题",
    ),
    "权威观点": (
        "罗文在内蒙古自治区调研时强调 压紧压实责任 坚决守住食品安全底线",
        "发挥数字政府引领作用 推动经济社会高质量发展",
    ),
    "国际动态": ("境外媒体：中欧班列高质量发展，支撑产业链供应链稳定畅通",),
}
TITLES = [title for titles in SECTIONS.values() for title in titles]
QUALITY_MONTH = TITLES[1]

SOURCES = {
    TITLES[0]: (
        "市场监管总局关于印发《“十四五”认证认可检验检测发展规划》的通知 (samr.gov.cn)",
        "http://samr.gov.cn",
    ),
    TITLES[1]: (
        "关于开展 2022 年全国“质量月”活动的通知（国市监质发〔2022〕76 号）-中国质量新闻网"
        " (cqn.com.cn)",
        "http://cqn.com.cn",
    ),
    # A bare attribution line: the domain is not turned into a link.
    TITLES[2]: ("市场监管总局查处哄抬煤炭价格 服务迎峰度夏-中国质量新闻网 (cqn.com.cn)", None),
    # Links whose target is "#" carry no address.
    TITLES[3]: ("市场监管总局集中整治商品过度包装、“天价”月饼等问题 (183read.cc)", None),
    TITLES[4]: (
        "罗文在内蒙古自治区调研时强调压紧压实责任 坚决守住食品安全底线 (samr.gov.cn)",
        "http://samr.gov.cn",
    ),
    TITLES[5]: ("【专家观点】发挥数字政府引领作用 推动经济社会高质量发展 (qq.com)", None),
    TITLES[6]: ("境外媒体：中欧班列高质量发展，支撑产业链供应链稳定畅通 腾讯新闻 (qq.com)", None),
}

# Counted on the sample by reading it: paragraphs the PDF cut mid-sentence at a page break.
SAMPLE_PAGE_BREAKS = 31


@cache
def sample_report() -> ImportReport:
    return parse_document(SAMPLE.read_bytes())


def raw_lines() -> list[str]:
    return SAMPLE.read_text(encoding="utf-8").split("\n")


def article(title: str):
    return next(a for a in sample_report().articles if a.title == title)


def squeeze(text: str) -> str:
    """Text with heading markers and all whitespace removed, to compare across joins."""
    return re.sub(r"\s+", "", re.sub(r"(?m)^#+\s*", "", text))


def paragraphs(markdown: str) -> list[str]:
    return [p.strip() for p in re.split(r"\n\s*\n", markdown) if p.strip()]


def is_ideograph(char: str) -> bool:
    return unicodedata.name(char, "").startswith("CJK UNIFIED IDEOGRAPH")


def title_heading_lines() -> dict[str, list[int]]:
    """0-based indexes of the raw heading lines of each title, found by squeezing spaces."""
    found: dict[str, list[int]] = {title: [] for title in TITLES}
    for index, line in enumerate(raw_lines()):
        if line.startswith("#"):
            text = squeeze(line)
            for title in TITLES:
                if text == squeeze(title):
                    found[title].append(index)
    return found


def raw_article_text(title: str) -> list[str]:
    """Raw lines after the title's first heading (and its source line) up to the next title."""
    lines = raw_lines()
    headings = title_heading_lines()
    start = headings[title][0] + 1
    others = [i for t, idx in headings.items() if t != title for i in idx if i > start]
    stop = min(others, default=len(lines))
    text = lines[start:stop]
    source = next(i for i, line in enumerate(text) if line.strip())
    return text[source + 1 :]


def raw_text_under_second_quality_month_heading() -> list[str]:
    lines = raw_lines()
    headings = title_heading_lines()
    return lines[headings[QUALITY_MONTH][1] + 1 : headings[TITLES[2]][0]]


def raw_prose(title: str) -> list[str]:
    """The article's raw text a reader would call its prose.

    Under the first heading of the 质量月 notice there is only the source and the
    converter's description of a screenshot (with the screenshot's fields, which are
    Chinese); the notice itself is the text under its second heading.
    """
    if title == QUALITY_MONTH:
        return raw_text_under_second_quality_month_heading()
    return raw_article_text(title)


# --------------------------------------------------------------------------- the sample


def test_masthead_gives_bulletin_name_and_period():
    report = sample_report()
    assert report.title == "上海交通大学中国质量发展研究院 工作简报"
    assert report.period == "2022年8月1日-2022年8月31日"


def test_contents_gives_four_sections_and_seven_titles_as_written():
    report = sample_report()
    assert [s.name for s in report.sections] == list(SECTIONS)
    assert {s.name: s.titles for s in report.sections} == SECTIONS


def test_articles_follow_the_contents_order_and_sections():
    articles = sample_report().articles
    assert [a.title for a in articles] == TITLES
    assert [a.position for a in articles] == list(range(7))
    assert [a.section for a in articles] == [s for s, ts in SECTIONS.items() for _ in ts]


def test_article_line_is_its_first_title_heading():
    lines = raw_lines()
    for a in sample_report().articles:
        assert lines[a.line - 1].startswith("#")
        assert squeeze(lines[a.line - 1]) == squeeze(a.title)
    assert article(QUALITY_MONTH).line == 331


@pytest.mark.parametrize("title", TITLES)
def test_source_name_and_url(title):
    a = article(title)
    assert (a.source_name, a.source_url) == SOURCES[title]


def test_source_line_is_not_part_of_the_body():
    for a in sample_report().articles:
        assert "](" not in a.body
        assert "(cqn.com.cn)" not in a.body
        assert "(qq.com)" not in a.body


def test_quality_month_notice_is_one_article_without_duplicates():
    matching = [a for a in sample_report().articles if "质量月" in a.title]
    assert len(matching) == 1
    body = matching[0].body
    assert "关于开展" not in body  # neither the repeated heading nor the screenshot's title
    assert body.startswith("（国市监质发〔2022〕76号）")
    paras = paragraphs(body)
    assert len(paras) == len(set(paras))
    assert body.count("各地区各部门要对活动开展情况进行督促指导") == 1


def test_quality_month_body_is_the_text_under_its_second_heading():
    expected = "\n".join(raw_text_under_second_quality_month_heading())
    assert squeeze(article(QUALITY_MONTH).body) == squeeze(expected)


@pytest.mark.parametrize("title", [t for t in TITLES if t != QUALITY_MONTH])
def test_body_keeps_every_character_of_the_raw_article(title):
    # Page-break joins only remove blank lines, so nothing but whitespace may differ.
    assert squeeze(article(title).body) == squeeze("\n".join(raw_article_text(title)))


@pytest.mark.parametrize("title", TITLES)
def test_first_and_last_text_of_the_article_are_in_the_body(title):
    prose = [
        line
        for line in raw_prose(title)
        if line.strip() and not line.startswith("#") and is_mostly_chinese(line)
    ]
    first, last = squeeze(prose[0]), squeeze(prose[-1])
    body = squeeze(article(title).body)
    assert first[:20] in body
    assert last[-20:] in body
    assert body.endswith(last[-20:])


def is_mostly_chinese(line: str) -> bool:
    cjk = sum(1 for c in line if is_ideograph(c))
    return cjk > sum(1 for c in line if c.isascii() and c.isalpha())


def test_sub_headings_stay_headings():
    first = article(TITLES[0]).body
    assert re.search(r"(?m)^#{3,6} （二）“十四五”时期面临的新形势新要求$", first)
    assert re.search(r"(?m)^#{3,6} 1\. 坚持党的领导，凸显人民为本$", first)
    assert re.search(r"(?m)^#{3,6} 一、活动主题$", article(QUALITY_MONTH).body)
    assert re.search(r"(?m)^#{3,6} 以数字政府建设完善优政善治$", article(TITLES[5]).body)


def test_sub_headings_are_levelled_by_their_numbering():
    headings = re.findall(r"(?m)^(#+) (.*)$", article(TITLES[0]).body)
    levels = {text[:2]: len(marks) for marks, text in headings}
    # The PDF gave "（二）" both ## and ####; siblings now share a level, outer above inner.
    assert levels["一、"] == 3
    assert levels["（一"] == levels["（二"] == 4
    assert levels["1."] == levels["2."] == 5


def continues_mid_sentence(before: str, after: str) -> bool:
    """Independent check: a Chinese paragraph cut after an ideograph or a comma."""
    if re.match(r"#|[-*+|>] |\d+\. |[（(]", after) or re.match(r"#|[-*+|>] ", before):
        return False
    return (is_ideograph(before[-1]) or before[-1] in "，、") and is_ideograph(after[0])


def test_the_mid_sentence_check_finds_the_sample_page_breaks():
    raw = paragraphs("\n".join(raw_lines()))
    breaks = [pair for pair in zip(raw, raw[1:], strict=False) if continues_mid_sentence(*pair)]
    assert len(breaks) >= 25


def test_no_body_paragraph_ends_mid_sentence():
    for a in sample_report().articles:
        paras = paragraphs(a.body)
        for before, after in zip(paras, paras[1:], strict=False):
            assert not continues_mid_sentence(before, after), (a.title, before[-20:], after[:20])


def test_page_breaks_are_repaired_and_reported():
    report = sample_report()
    assert len(report.repaired) == SAMPLE_PAGE_BREAKS
    assert report.repaired[0] == Note(
        "joined", "line 44", {"tail": "总局并对外保", "head": "留牌子，行政"}
    )
    assert all(n.code == "joined" and re.match(r"line \d+$", n.where) for n in report.repaired)
    first = article(TITLES[0]).body
    assert "国家市场监督管理总局并对外保留牌子，行政监管职能进一步强化" in first
    # A comma does not end a paragraph: the break after "认可制度，" is joined too.
    assert "多项认可制度，推动道路运输" in first
    # A closing quote alone does not end one either.
    assert "“秒审”等管理服务模式" in article(TITLES[5]).body


def test_page_break_that_repeats_a_character_is_kept_and_flagged():
    report = sample_report()
    assert "推动合格评定数数字化评价" in article(TITLES[0]).body
    assert any(w.where == "line 215" and w.params["char"] == "数" for w in report.warnings)


def test_screenshot_description_is_dropped_and_reported():
    report = sample_report()
    body = article(QUALITY_MONTH).body
    assert "screenshot" not in body.lower()
    assert "索 引 号" not in body and "2022-1661907381721" not in body
    assert len(report.dropped) == 1
    dropped = report.dropped[0]
    assert (dropped.code, dropped.where) == ("dropped-english-intro", "line 337")
    assert "The screenshot shows" in dropped.params["excerpt"]
    assert dropped.params["to"] == "line 342"


def test_sample_warnings_are_only_the_repeated_character():
    assert len(sample_report().warnings) == 1


def test_every_lead_is_short_ends_a_sentence_and_starts_the_article():
    for a in sample_report().articles:
        assert 0 < len(a.lead) <= 200, a.title
        assert re.search(r"[。！？!?][”’」』）)]*$|…$", a.lead), a.lead
        first = next(
            p.replace("**", "")
            for p in paragraphs(a.body)
            if not p.startswith("#") and len(p.replace("**", "")) >= 30
        )
        assert first.startswith(a.lead.removesuffix("…")), a.title


def test_leads_of_the_sample():
    assert article(TITLES[0]).lead.startswith("为统筹推进“十四五”时期")
    assert article(TITLES[0]).lead.endswith("制定本规划。")
    # The notice's document number line is too short to be a lead.
    assert article(QUALITY_MONTH).lead.startswith("为深入贯彻习近平新时代")
    assert article(TITLES[3]).lead.startswith("本报讯（实习记者 贾润梅）中秋、国庆将至")


def test_byte_order_mark_and_windows_line_endings_change_nothing():
    text = SAMPLE.read_text(encoding="utf-8")
    variant = parse_document(b"\xef\xbb\xbf" + text.replace("\n", "\r\n").encode("utf-8"))
    assert variant.articles == sample_report().articles
    assert variant.repaired == sample_report().repaired


def test_str_input_is_accepted():
    assert parse_document(SAMPLE.read_text(encoding="utf-8")).articles == sample_report().articles


# --------------------------------------------------------------------------- small documents

MASTHEAD = "# 研究院\n\n## 工作简报\n\n【2022年9月1日-2022年9月30日】\n\n---\n\n"
SOURCE = "[来源 \\(example.com\\)](https://example.com/a)"


def one_article(body: str, title: str = "测试文章") -> tuple[str, ImportReport]:
    doc = f"{MASTHEAD}### —— 栏目\n\n- ① {title}\n\n## {title}\n\n{SOURCE}\n\n{body}\n"
    report = parse_document(doc)
    return report.articles[0].body, report


LONG_CUT = "这是一段很长的正文内容，它在页面底部被转换程序从句子中间截断了所以没有标点"


def test_chinese_halves_are_joined_without_a_space():
    body, report = one_article(f"{LONG_CUT}\n\n\n\n符号也在下一页继续。")
    assert body == f"{LONG_CUT}符号也在下一页继续。"
    assert len(report.repaired) == 1


def test_latin_halves_are_joined_with_one_space():
    doc = (
        "# Institute\n\n## Bulletin\n\n### —— News\n\n- ① A title\n\n## A title\n\n"
        "[Source](https://example.com/news)\n\n"
        "The committee met on Monday morning to discuss the\n\nbudget for the coming year.\n"
    )
    report = parse_document(doc)
    assert report.articles[0].body == (
        "The committee met on Monday morning to discuss the budget for the coming year."
    )
    assert report.articles[0].source_url == "https://example.com/news"


@pytest.mark.parametrize(
    "after",
    [
        "### 小标题\n\n继续的内容。",  # a heading
        "- 列表项的内容。",  # a list
        "1. 列表项的内容。",
        "> 引用的内容。",
        "| 表格 | 内容 |",
        "（二）新的一点从这里开始。",  # a paragraph that opens with its own number
        "（国市监质发〔2022〕76号）",  # a wholly bracketed note
        "[一个链接](https://example.com/b)",
    ],
)
def test_a_cut_paragraph_is_never_joined_to_a_block_that_starts_afresh(after):
    body, report = one_article(f"{LONG_CUT}\n\n{after}")
    assert report.repaired == []
    assert body.startswith(LONG_CUT + "\n\n")


@pytest.mark.parametrize(
    "before",
    [
        "本报记者 张三",  # a byline is short
        "第一句已经结束了，这一段以句号结束，后面的段落不该接上来。",
        "这一段以冒号结束，后面的内容是新的段落开始的地方：",
        "这一段以引号结束，但引号前面有句号，所以是完整的句子。”",
    ],
)
def test_a_complete_paragraph_is_not_joined(before):
    body, report = one_article(f"{before}\n\n正文从这里开始。")
    assert report.repaired == []
    assert body == f"{before}\n\n正文从这里开始。"


def test_a_repeated_title_heading_continues_the_article():
    body, report = one_article("第一部分的正文。\n\n## 测试 文章\n\n第二部分的正文。")
    assert body == "第一部分的正文。\n\n第二部分的正文。"
    assert len(report.articles) == 1


def test_the_title_heading_may_be_at_any_level():
    doc = f"{MASTHEAD}### —— 栏目\n\n- ① 测试文章\n\n###### 测试　文章\n\n{SOURCE}\n\n正文。\n"
    assert parse_document(doc).articles[0].body == "正文。"


def test_an_image_without_a_file_is_debris():
    body, report = one_article(
        "正文第一段。\n\n![Figure 1](_page_3_Picture_1.jpeg)\n\n正文第二段。"
    )
    assert body == "正文第一段。\n\n正文第二段。"
    assert len(report.dropped) == 1
    assert (report.dropped[0].code, report.dropped[0].where) == ("dropped-image", "line 19")


def test_an_english_paragraph_in_a_chinese_document_is_debris():
    english = (
        "The image shows a group of officials seated around a conference table "
        "with national flags behind them."
    )
    body, report = one_article(f"正文第一段。\n\n{english}\n\n正文第二段。")
    assert body == "正文第一段。\n\n正文第二段。"
    assert report.dropped[0].code == "dropped-english"
    assert "The image shows" in report.dropped[0].params["excerpt"]


def test_a_chinese_paragraph_with_english_terms_is_kept():
    text = "加强与 WTO、UNIDO、INetQI 等国际组织的合作，加强 ISO、IEC、IAF、ILAC 等组织的工作。"
    body, report = one_article(text)
    assert body == text and report.dropped == []


def test_a_missing_source_line_is_a_warning_and_the_text_stays():
    doc = f"{MASTHEAD}### —— 栏目\n\n- ① 测试文章\n\n## 测试文章\n\n正文第一句。\n"
    report = parse_document(doc)
    assert report.articles[0].source_name is None
    assert report.articles[0].body == "正文第一句。"
    assert report.warnings == [Note("no-source", "line 13", {"title": "测试文章"})]


def test_a_section_without_items_is_a_warning():
    doc = (
        f"{MASTHEAD}### —— 空栏目\n\n### —— 栏目\n\n- ① 测试文章\n\n"
        f"## 测试文章\n\n{SOURCE}\n\n正文。\n"
    )
    report = parse_document(doc)
    assert [s.name for s in report.sections] == ["空栏目", "栏目"]
    assert report.warnings == [Note("section-empty", "line 9", {"name": "空栏目"})]


# --------------------------------------------------------------------------- leads


def test_lead_cuts_at_the_sentence_end_nearest_the_target():
    sentence = "甲" * 79 + "。"
    assert make_lead(sentence * 3) == sentence * 2  # ends at 80, 160, 240: 160 is nearest


def test_lead_takes_the_earlier_of_two_equally_near_sentence_ends():
    sentence = "甲" * 99 + "。"
    assert make_lead(sentence * 3) == sentence  # ends at 100 and 200 are both 50 from 150


def test_lead_without_a_sentence_end_is_cut_and_marked():
    lead = make_lead("乙" * 400)
    assert lead == "乙" * 150 + "…"


def test_lead_never_goes_far_past_the_target():
    lead = make_lead("丙" * 260 + "。")
    assert lead == "丙" * 150 + "…"


def test_lead_skips_headings_lists_and_short_lines():
    body = (
        "### 小标题\n\n2022年8月26日\n\n- 列表。\n\n"
        "这才是第一段真正的正文，它足够长，可以当作导语使用。后面还有。"
    )
    assert make_lead(body) == "这才是第一段真正的正文，它足够长，可以当作导语使用。后面还有。"


def test_lead_is_plain_text():
    body = "**本报讯** 这是一段带有[链接](https://example.com)和*强调*的正文，长度超过三十个字符。"
    assert make_lead(body) == "本报讯 这是一段带有链接和强调的正文，长度超过三十个字符。"


def test_lead_of_an_empty_body_is_empty():
    assert make_lead("") == ""


# --------------------------------------------------------------------------- bad documents


def refused(data) -> DocumentError:
    with pytest.raises(DocumentError) as caught:
        parse_document(data)
    return caught.value


@pytest.mark.parametrize("data", [b"", "", b"  \n\n\t \r\n", "\ufeff\n", b"\xef\xbb\xbf"])
def test_empty_document(data):
    err = refused(data)
    assert err.code == "document-empty"
    assert err.line is None
    assert str(err) == "document-empty"


def test_document_that_is_not_utf8_names_the_byte_and_line():
    data = "# 研究院\n\n".encode() + "第三行是GBK编码".encode("gbk") + b"\n"
    offset = len("# 研究院\n\n".encode())
    err = refused(data)
    assert err.line == 3
    assert err.code == "document-not-utf8"  # UTF-8 and GBK mixed: not GBK as a whole either
    assert err.params == {"byte": f"0x{data[offset]:02x}", "offset": offset}
    assert str(err).startswith("line 3: ")


@pytest.mark.parametrize(
    "data",
    [
        b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR",
        "\x01\x02\x03\x04\x05abc",
        "text with a NUL\x00 inside",
    ],
)
def test_binary_file(data):
    err = refused(data)
    assert err.code == "document-binary"
    assert err.line is None


def test_document_without_contents():
    err = refused("# 研究院\n\n## 一篇文章\n\n正文。\n")
    assert err.code == "document-no-contents"
    assert err.line is None


def test_contents_with_sections_but_no_items():
    err = refused(f"{MASTHEAD}### —— 栏目\n\n## 一篇文章\n\n正文。\n")
    assert err.code == "document-contents-no-items"
    assert err.line == 9


def test_title_without_a_heading_names_the_title_and_its_contents_line():
    text = SAMPLE.read_text(encoding="utf-8").replace(
        "## 市场监管总局查处哄抬煤炭价格 服务迎峰度夏", "## 市场监管总局查处煤炭价格"
    )
    err = refused(text)
    assert err.params["title"] == "市场监管总局查处哄抬煤炭价格 服务迎峰度夏"
    assert err.line == 18
    assert str(err).startswith("line 18: ")


@given(st.one_of(st.text(), st.binary()))
def test_arbitrary_input_is_imported_or_refused_with_a_document_error(data):
    try:
        parse_document(data)
    except DocumentError:
        pass


markdownish = st.text(st.sampled_from(list("#-*①② \n\t[]()!|>`~—质量要闻月通知。，Ab1")))


@given(markdownish)
def test_arbitrary_markdown_is_imported_or_refused_with_a_document_error(text):
    try:
        parse_document(f"# 简报\n\n### —— 栏目\n\n- ① 质量\n\n## 质量\n\n{text}")
    except DocumentError:
        pass


def test_document_error_is_a_value_error():
    assert isinstance(DocumentError("x", 3), ValueError)
    assert str(DocumentError("bad", 3)) == "line 3: bad"


# --------------------------------------------------------------------------- matching titles

title_chars = st.sampled_from(
    list("质量月活动通知市场监管总局关于开展年全国境外媒体中欧班列")
    + list("AbcXyz0129")
    + list("，、“”《》：-")
)
titles = st.text(title_chars, min_size=1, max_size=20)
spaces = st.sampled_from([" ", "  ", "\u3000", "\t"])


def widen(text: str, which: list[bool]) -> str:
    """Turn chosen ASCII letters and digits into their full-width forms."""
    return "".join(
        chr(ord(c) + 0xFEE0) if c.isascii() and c.isalnum() and flag else c
        for c, flag in zip(text, which + [False] * len(text), strict=False)
    )


@st.composite
def variants(draw, title: str) -> str:
    """The title as a converter might print it: spaces moved around, letters widened."""
    chars = [c for c in title if not c.isspace()]
    out = []
    for char in chars:
        if draw(st.booleans()):
            out.append(draw(spaces))
        out.append(char)
    if draw(st.booleans()):
        out.append(draw(spaces))
    return widen("".join(out), draw(st.lists(st.booleans(), max_size=len(out))))


@given(st.data(), titles)
def test_spacing_and_width_never_change_the_key(data, title):
    assert normalize_title(data.draw(variants(title))) == normalize_title(title)


@given(st.data(), st.lists(titles, min_size=1, max_size=6, unique_by=normalize_title))
def test_each_title_finds_its_variant_heading(data, contents):
    noise = [
        t
        for t in data.draw(st.lists(titles, max_size=4))
        if normalize_title(t) not in {normalize_title(c) for c in contents}
    ]
    texts = data.draw(st.permutations([data.draw(variants(t)) for t in contents] + noise))
    headings = [(10 + 3 * i, text) for i, text in enumerate(texts)]
    found = match_titles(contents, headings)
    assert set(found) == set(contents)
    for title, line in found.items():
        first = next(ln for ln, t in headings if normalize_title(t) == normalize_title(title))
        assert line == first


@given(st.lists(titles, min_size=1, max_size=6), st.lists(titles, max_size=8))
def test_no_two_titles_share_a_heading(contents, heading_texts):
    headings = [(i + 1, text) for i, text in enumerate(heading_texts)]
    try:
        found = match_titles(contents, headings)
    except DocumentError:
        return
    lines = dict(headings)
    assert len(set(found.values())) == len(found)
    for title, line in found.items():
        assert normalize_title(lines[line]) == normalize_title(title)


@given(st.lists(titles, min_size=1, max_size=6), titles)
def test_a_title_absent_from_the_headings_is_refused(heading_texts, missing):
    heading_texts = [t for t in heading_texts if normalize_title(t) != normalize_title(missing)]
    headings = [(i + 1, text) for i, text in enumerate(heading_texts)]
    with pytest.raises(DocumentError) as caught:
        match_titles(
            [*heading_texts, missing], headings, title_lines=[None] * len(heading_texts) + [7]
        )
    assert caught.value.params["title"] == missing
    assert caught.value.line == 7


def test_two_titles_with_one_key_take_the_headings_in_order():
    found = match_titles(["甲 乙", "甲乙"], [(5, "甲乙"), (9, "甲 乙")])
    assert found == {"甲 乙": 5, "甲乙": 9}
    with pytest.raises(DocumentError) as caught:
        match_titles(["甲 乙", "甲乙"], [(5, "甲乙")])
    assert caught.value.code == "document-title-taken"
    assert caught.value.params == {"title": "甲乙", "other": "甲 乙"}


def test_key_ignores_markdown_emphasis_escapes_and_quotes():
    assert normalize_title('**关于** \\(试行\\) 的 "通知"') == normalize_title("关于(试行)的“通知”")
    assert normalize_title("关于开展 2022 年全国“质量月”活动的通知") == normalize_title(
        "关于开展２０２２年全国“质量月”活动的通知"
    )
