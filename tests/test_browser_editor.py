"""The article editor and the email preview in real Chromium: the preview beside the form
follows what staff type, leaving with unsaved edits asks first, and the preview's
phone/desktop switch changes the width of the email's frame."""

from __future__ import annotations

import pytest
from playwright.sync_api import Page, expect, sync_playwright

from tests.helpers import STAFF_PASSWORD
from webapp.extensions import db
from webapp.issues import add_article, create_issue, ensure_topics
from webapp.models import Article, StaffRole
from webapp.staff import create_staff

EDITOR = "bianji@example.org"


@pytest.fixture
def browser(live_server, chromium):
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
        yield browser
        browser.close()


def signed_in(browser, live_server, width: int, height: int = 900) -> Page:
    context = browser.new_context(locale="zh-CN", viewport={"width": width, "height": height})
    page = context.new_page()
    page.goto(f"{live_server}/admin/login")
    page.get_by_label("邮箱").fill(EDITOR)
    page.get_by_label("密码").fill(STAFF_PASSWORD)
    page.get_by_role("button", name="登录").click()
    expect(page.get_by_role("heading", name="概览", exact=True)).to_be_visible()
    return page


@pytest.fixture
def draft(app, db_session):
    news, hot = ensure_topics(["质量要闻", "质量热点"])
    issue = create_issue("2022年第8期", period="2022-08")
    add_article(issue, news, "甲", "甲的正文。" * 40, lead="甲的导语")
    add_article(issue, hot, "乙", "乙的正文。" * 40, lead="乙的导语")
    create_staff(EDITOR, STAFF_PASSWORD, StaffRole.EDITOR)
    db.session.commit()
    return issue


def test_the_preview_follows_typing_and_unsaved_edits_ask_before_leaving(
    live_server, browser, draft
):
    page = signed_in(browser, live_server, 1280)
    errors: list[str] = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.goto(f"{live_server}/admin/issues/{draft.id}/articles/new")
    preview = page.locator("#preview-content")
    expect(preview).to_contain_text("写下正文后")

    page.get_by_label("标题").fill("节日食品抽检")
    body = page.get_by_label("正文（Markdown）")
    body.press_sequentially("**加粗的一句**\n\n<script>window.ran=1</script>第二段", delay=5)
    expect(preview.locator(".body strong")).to_have_text("加粗的一句")
    expect(preview).to_contain_text("第二段")
    expect(preview.locator("h3")).to_have_text("节日食品抽检")
    assert preview.locator("script").count() == 0
    assert page.evaluate("window.ran") is None
    # Wide screen: the preview is beside the form, not below it.
    form_box = page.locator("form.article-form").bounding_box()
    preview_box = page.locator("#article-preview").bounding_box()
    assert preview_box["x"] > form_box["x"] + form_box["width"] - 1
    assert abs(preview_box["y"] - form_box["y"]) < 5

    # Leaving with edits asks; staying keeps what was typed.
    asked: list[str] = []

    def answer(dialog):
        asked.append(dialog.type)
        dialog.dismiss()

    page.on("dialog", answer)
    with page.expect_event("dialog"):
        page.get_by_role("link", name="取消").click()
    assert asked == ["beforeunload"]
    expect(body).to_have_value("**加粗的一句**\n\n<script>window.ran=1</script>第二段")

    # Saving does not ask.
    page.get_by_role("button", name="保存").click()
    expect(page.get_by_text("已保存：节日食品抽检")).to_be_visible()
    assert asked == ["beforeunload"]
    db.session.expire_all()
    assert db.session.query(Article).filter_by(title="节日食品抽检").count() == 1
    assert not [e for e in errors if "Content Security Policy" in e]


def test_on_a_phone_the_preview_is_under_the_form(live_server, browser, draft):
    page = signed_in(browser, live_server, 375, 800)
    page.goto(f"{live_server}/admin/issues/{draft.id}/articles/new")
    page.get_by_label("正文（Markdown）").fill("手机上写的正文")
    page.get_by_label("正文（Markdown）").press("End")
    page.get_by_label("正文（Markdown）").press_sequentially("。", delay=5)
    expect(page.locator("#preview-content")).to_contain_text("手机上写的正文。")
    form_box = page.locator("form.article-form").bounding_box()
    preview_box = page.locator("#article-preview").bounding_box()
    assert preview_box["y"] >= form_box["y"] + form_box["height"]
    assert page.evaluate("document.documentElement.scrollWidth") <= 375


def test_the_email_preview_switches_between_phone_and_desktop_width(live_server, browser, draft):
    page = signed_in(browser, live_server, 1280)
    page.goto(f"{live_server}/admin/issues/{draft.id}/preview")
    frame = page.locator("iframe.preview")
    expect(frame).to_have_css("width", "600px")
    page.get_by_label("手机（375 像素）").check()
    expect(frame).to_have_css("width", "375px")
    page.get_by_label("桌面（600 像素）").check()
    expect(frame).to_have_css("width", "600px")
    # A link can open it in the phone width.
    page.goto(f"{live_server}/admin/issues/{draft.id}/preview?width=phone")
    expect(page.locator("iframe.preview")).to_have_css("width", "375px")
    # Choosing other sections keeps the width.
    page.locator('input[name="topics"][type="checkbox"]').first.uncheck()
    with page.expect_navigation():
        page.get_by_role("button", name="预览", exact=True).click()
    expect(page.locator("iframe.preview")).to_have_css("width", "375px")
    # Every box unticked: said so, not a preview of everything.
    for box in page.locator('input[name="topics"][type="checkbox"]').all():
        box.uncheck()
    page.get_by_role("button", name="预览", exact=True).click()
    expect(page.get_by_role("alert")).to_have_text("请至少选择一个栏目。")
    assert page.locator("iframe.preview").count() == 0
