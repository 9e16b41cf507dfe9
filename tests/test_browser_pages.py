"""Every public and staff page, with data, in real Chromium at a phone's width (375 px) and
a desktop's (1280 px), in Chinese and in English (the browser's language): no page is wider
than the window, and axe-core (npm, in tests/email_clients) finds nothing serious or
critical and no two landmarks alike.

The data is the sample bulletin sent to a few readers, plus a second import left as a draft,
so the pages show what staff and readers really see. axe is injected into the page by
Playwright; the context bypasses the site's CSP for that one script (the site itself allows
no inline script).

With SCREENSHOTS_DIR set (`make screenshots`), the issue page at phone width is saved for
the README.
"""

from __future__ import annotations

import itertools
import os
from functools import partial
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect, sync_playwright
from sqlalchemy import select

from tests.helpers import STAFF_PASSWORD, wait_for
from tests.sample_content import SAMPLE_DOCUMENT
from webapp.extensions import db
from webapp.issues import import_document
from webapp.models import Issue, IssueStatus, StaffRole, Subscriber, SubscriberStatus
from webapp.staff import create_staff
from webapp.subscriptions import link_payload
from webapp.tokens import Purpose, make_token
from webapp.transactions import transaction

AXE = Path(__file__).resolve().parent / "email_clients" / "node_modules" / "axe-core" / "axe.min.js"
ADMIN = "zhubian@example.org"
WIDTHS = (375, 1280)
# The browser's language, which picks the site's, and the words the test clicks in it.
WORDS = {
    "zh-CN": {
        "email": "邮箱",
        "subscribe": "订阅",
        "password": "密码",
        "sign in": "登录",
        "check": "检查",
        "import report": "导入报告",
    },
    "en-US": {
        "email": "Email",
        "subscribe": "Subscribe",
        "password": "Password",
        "sign in": "Sign in",
        "check": "Check",
        "import report": "Import report",
    },
}
# Fails the page: what axe rates serious or critical, and landmark-unique whatever its rating.
BLOCKING_IMPACTS = {"serious", "critical"}
ALWAYS_BLOCKING = {"landmark-unique"}

# The first link on the page skips to <main> (the embedded form is a widget, not a page).
SKIP_LINK_WORKS = """() => {
  const first = document.querySelector("a[href]");
  return !!first && first.getAttribute("href") === "#main"
    && document.querySelector("main#main") !== null;
}"""
# What sticks out past the window's right edge, innermost first, as CSS-like paths.
WIDER_THAN_WINDOW = """() => {
  const path = e => [e.parentElement?.tagName, e.tagName].filter(Boolean).join(" > ").toLowerCase()
    + (e.id ? "#" + e.id : "") + (e.className && typeof e.className === "string"
       ? "." + e.className.trim().split(/\\s+/).join(".") : "");
  return [...document.body.querySelectorAll("*")]
    .filter(e => e.getBoundingClientRect().right > window.innerWidth + 0.5
      && ![...e.children].some(c => c.getBoundingClientRect().right > window.innerWidth + 0.5))
    .slice(0, 3).map(e => `${path(e)} to ${Math.round(e.getBoundingClientRect().right)} px`);
}"""
RUN_AXE = """async () => {
  const result = await axe.run(document, {resultTypes: ["violations"]});
  return result.violations.map(v => ({
    id: v.id, impact: v.impact, help: v.help,
    nodes: v.nodes.slice(0, 3).map(n => n.target.join(" ")),
  }));
}"""


@pytest.fixture
def browser(live_server, chromium):
    if not AXE.is_file():
        pytest.fail(f"no {AXE}: run `make install` (npm ci in tests/email_clients)")
    with sync_playwright() as playwright:
        # --no-sandbox: CI runs as root, where Chromium's sandbox refuses to start.
        browser = playwright.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
        yield browser
        browser.close()


def new_page(browser, width: int, locale: str) -> Page:
    context = browser.new_context(
        locale=locale, viewport={"width": width, "height": 900}, bypass_csp=True
    )
    return context.new_page()


def problems_on(page: Page, url: str, width: int | str) -> list[str]:
    """What is wrong with the page at `url`, as lines naming the page and the width."""
    response = page.goto(url)
    assert response is not None and response.status < 500, f"{url}: {response and response.status}"
    return problems_here(page, url, width)


def problems_here(page: Page, name: str, width: int | str) -> list[str]:
    """The same for the page the browser shows now (one a POST led to has no URL to revisit)."""
    found = []
    scroll_width, inner_width = page.evaluate(
        "() => [document.documentElement.scrollWidth, window.innerWidth]"
    )
    if scroll_width > inner_width:
        found.append(
            f"{name} @{width}: {scroll_width} px wide in a {inner_width} px window, "
            f"past its edge: {page.evaluate(WIDER_THAN_WINDOW)}"
        )
    if "/embed/" not in page.url and not page.evaluate(SKIP_LINK_WORKS):
        found.append(f"{name} @{width}: no skip link to the main content first on the page")
    page.add_script_tag(path=str(AXE))
    for violation in page.evaluate(RUN_AXE):
        if violation["impact"] in BLOCKING_IMPACTS or violation["id"] in ALWAYS_BLOCKING:
            found.append(
                f"{name} @{width}: axe {violation['id']} ({violation['impact']}): "
                f"{violation['help']} at {violation['nodes']}"
            )
    return found


def shown_after_reload(page: Page, selector: str) -> bool:
    page.reload()
    return page.locator(selector).count() == 1


def screenshot(page: Page, name: str) -> None:
    folder = os.environ.get("SCREENSHOTS_DIR")
    if folder:
        Path(folder).mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(Path(folder) / f"{name}.png"), full_page=False)


def sent_sample_issue(app) -> Issue:
    with transaction():
        issue, _report = import_document(SAMPLE_DOCUMENT.read_bytes())
    topics = sorted({a.topic for a in issue.articles}, key=lambda t: t.id)
    db.session.add_all(
        Subscriber(
            email=f"duzhe{n}@example.com",
            name=f"读者{n}",
            status=SubscriberStatus.ACTIVE,
            topics=topics[: 1 + n % len(topics)],
        )
        for n in range(4)
    )
    db.session.commit()
    result = app.test_cli_runner().invoke(args=["publish", str(issue.id)])
    assert result.exit_code == 0, result.output

    def sent() -> bool:
        db.session.expire_all()
        return db.session.get(Issue, issue.id).status == IssueStatus.SENT

    wait_for(sent, what="the sample issue to be sent")
    return db.session.get(Issue, issue.id)


def test_every_page_fits_a_phone_and_a_desktop_and_passes_axe(
    app, db_session, celery_worker, inbox, live_server, browser, tmp_path
):
    sent = sent_sample_issue(app)
    with transaction():
        draft, _report = import_document(SAMPLE_DOCUMENT.read_bytes())
    pending = Subscriber(email="daiqueren@example.com", status=SubscriberStatus.PENDING)
    db.session.add(pending)
    create_staff(ADMIN, STAFF_PASSWORD, StaffRole.ADMIN)
    db.session.commit()
    reader = db.session.scalars(
        select(Subscriber).where(Subscriber.email == "duzhe1@example.com")
    ).one()
    preferences = make_token(Purpose.PREFERENCES, link_payload(reader))
    unsubscribe = make_token(Purpose.UNSUBSCRIBE, link_payload(reader))
    confirm = make_token(Purpose.CONFIRM, link_payload(pending))
    article = sent.articles[0]
    draft_article = draft.articles[0]
    topic_ids = "&".join(f"topics={t}" for t in {a.topic_id for a in draft.articles})

    public = [
        "/",
        "/subscribe",
        "/privacy",
        f"/issues/{sent.id}",
        f"/issues/{sent.id}/articles/{article.id}",
        f"/confirm/{confirm}",
        f"/preferences/{preferences}",
        f"/preferences/{preferences}/erase",
        f"/unsubscribe/{unsubscribe}",
        "/embed/subscribe",
        "/api/v1/",
        "/no-such-page",
    ]
    staff = [
        "/admin/",
        "/admin/issues",
        f"/admin/issues/{sent.id}",
        f"/admin/issues/{draft.id}",
        f"/admin/issues/{draft.id}/articles/{draft_article.id}/edit",
        f"/admin/issues/{draft.id}/articles/new",
        f"/admin/issues/{draft.id}/preview?{topic_ids}",
        f"/admin/issues/{draft.id}/publish",
        f"/admin/issues/{sent.id}/readership",
        f"/admin/issues/{sent.id}/sending",
        "/admin/issues/import",
        "/admin/sections",
        "/admin/subscribers",
        f"/admin/subscribers/{reader.id}",
        "/admin/subscribers/import",
        "/admin/settings",
        "/admin/identity",
        "/admin/api",
    ]

    readers_csv = tmp_path / "readers.csv"
    readers_csv.write_text("email,name,sections\nli.lei@example.com,李雷,\nbad-address,,\n")
    problems: list[str] = []
    for locale, width in itertools.product(WORDS, WIDTHS):
        words = WORDS[locale]
        page = new_page(browser, width, locale)
        # Problems name the width, and the language when it is not the first.
        at = width if locale == "zh-CN" else f"{width} {locale}"
        for path in public:
            problems += problems_on(page, live_server + path, at)
        # Pages a form leads to: after subscribing, and after unsubscribing.
        page.goto(f"{live_server}/subscribe")
        page.get_by_label(words["email"]).fill(f"xin{width}.{locale}@example.com")
        page.get_by_role("button", name=words["subscribe"]).click()
        problems += problems_here(page, "subscribed", at)
        page.goto(f"{live_server}/unsubscribe/{unsubscribe}")
        page.locator("main form button").click()
        problems += problems_here(page, "unsubscribed", at)
        problems += problems_on(page, f"{live_server}/admin/login", at)
        page.get_by_label(words["email"]).fill(ADMIN)
        page.get_by_label(words["password"]).fill(STAFF_PASSWORD)
        page.get_by_role("button", name=words["sign in"]).click()
        page.wait_for_url(f"{live_server}/admin/")
        for path in staff:
            problems += problems_on(page, live_server + path, at)
            if at == 375 and path == f"/admin/issues/{sent.id}":
                screenshot(page, "phone-issue")
        # The import report, after a real upload (a page only a POST shows).
        page.goto(f"{live_server}/admin/issues/import")
        page.locator('input[type="file"]').set_input_files(str(SAMPLE_DOCUMENT))
        page.get_by_role("button", name=words["check"]).click()
        expect(page.get_by_role("heading", name=words["import report"])).to_be_visible()
        problems += problems_here(page, "import report", at)
        # A readers' CSV import: its dry-run report page.
        page.goto(f"{live_server}/admin/subscribers/import")
        page.locator('input[type="file"]').set_input_files(str(readers_csv))
        page.locator('input[type="radio"]').first.check()
        page.locator("main form button, main form input[type=submit]").first.click()
        page.wait_for_url("**/admin/subscribers/import/*")
        wait_for(partial(shown_after_reload, page, "#dry-run"), what="the dry-run report")
        problems += problems_here(page, "readers import", at)
        page.context.close()

    assert not problems, "\n".join(problems)
