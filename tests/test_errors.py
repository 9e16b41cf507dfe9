"""Errors are codes until a person reads them: every code has words in Chinese and English."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest
from flask import render_template_string

from webapp import errors
from webapp.document import DocumentError, Note
from webapp.errors import (
    MESSAGES,
    NOTES,
    STORED,
    BulletinError,
    describe,
    describe_document_error,
    describe_note,
    describe_stored,
)

WEBAPP = Path(__file__).resolve().parents[1] / "webapp"
PLACEHOLDER = re.compile(r"%\((\w+)\)s")
CJK = re.compile(r"[\u3000-\u303f\u4e00-\u9fff\uff00-\uffef]")
PLACEHOLDER_VALUE = re.compile(r"<\w+>")


def placeholders(code: str, table=MESSAGES) -> set[str]:
    return set(PLACEHOLDER.findall(table[code]._args[0]))


def error_classes() -> set[str]:
    """Names of BulletinError and its subclasses, found in the source."""
    names = {"BulletinError", "DocumentError"}  # DocumentError: pure, so not a subclass
    for path in WEBAPP.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ClassDef):
                bases = {getattr(b, "id", getattr(b, "attr", "")) for b in node.bases}
                if bases & {"BulletinError"}:
                    names.add(node.name)
    return names


def raised_codes() -> list[tuple[str, str, set[str]]]:
    """(where, code, keyword names) for every `SomeError("code", ...)` in webapp/."""
    classes = error_classes()
    found = []
    for path in WEBAPP.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if not isinstance(node, ast.Call):
                continue
            name = getattr(node.func, "id", getattr(node.func, "attr", ""))
            if name in classes and node.args and isinstance(node.args[0], ast.Constant):
                where = f"{path.relative_to(WEBAPP.parent)}:{node.lineno}"
                found.append((where, node.args[0].value, {k.arg for k in node.keywords}))
    return found


@pytest.mark.parametrize("locale", ["zh", "en"])
@pytest.mark.parametrize("code", sorted(MESSAGES))
def test_every_error_code_reads_in_both_languages(app, code, locale):
    params = {name: f"<{name}>" for name in placeholders(code)}
    error = BulletinError(code, **params)
    with app.test_request_context(f"/?lang={locale}"):
        text = render_template_string("{{ error|describe }}", error=error)
    for name in params:
        assert f"&lt;{name}&gt;" in text, f"{code} in {locale} lost %({name})s"
    if locale == "zh":
        assert CJK.search(text), f"{code}: {text}"
    else:
        assert not CJK.search(text), f"{code} has no English message: {text}"


@pytest.mark.parametrize("locale", ["zh", "en"])
@pytest.mark.parametrize("code", sorted(STORED))
def test_every_stored_reason_reads_in_both_languages(app, code, locale):
    with app.test_request_context(f"/?lang={locale}"):
        text = describe_stored(errors.stored_reason(code, "550 5.7.1 Go away"))
    assert "550 5.7.1 Go away" in text
    assert bool(CJK.search(text)) == (locale == "zh"), text


def noted_codes() -> list[tuple[str, str, set[str]]]:
    """(where, code, keyword names) for every `note("code", ...)` and `Note("code", ...)`."""
    found = []
    for path in WEBAPP.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if not isinstance(node, ast.Call):
                continue
            name = getattr(node.func, "id", getattr(node.func, "attr", ""))
            if name in ("note", "Note") and node.args:
                first = node.args[0]
                where = f"{path.relative_to(WEBAPP.parent)}:{node.lineno}"
                if isinstance(first, ast.Constant):
                    codes = [first.value]
                elif isinstance(first, ast.JoinedStr) or name == "Note":
                    # furniture-{edge}; a code chosen just above (furniture-page-number)
                    codes = [c for c in NOTES if c.startswith("furniture-")]
                else:  # the debris reason: a code from _debris_reason, maybe + "-intro"
                    codes = [c for c in NOTES if c.startswith("dropped-")]
                keywords = {k.arg for k in node.keywords}
                if name == "Note" and len(node.args) > 2:
                    params = node.args[2]
                    keywords = {k.value for k in getattr(params, "keys", [])}
                for code in codes:
                    found.append((where, code, keywords))
    return found


def test_every_import_note_has_a_message_and_gets_its_values():
    noted = noted_codes()
    assert len(noted) > 15  # the scan finds the notes
    for where, code, keywords in noted:
        assert code in NOTES, f"{where}: no message for the note {code!r}"
        if code.startswith(("furniture-", "dropped-")):
            continue  # one call site for several codes: the rendering test covers them
        missing = placeholders(code, NOTES) - keywords
        assert not missing, f"{where}: {code!r} needs {missing}"


@pytest.mark.parametrize("locale", ["zh", "en"])
@pytest.mark.parametrize("code", sorted(NOTES))
def test_every_import_note_reads_in_both_languages(app, code, locale):
    params = {name: f"<{name}>" for name in placeholders(code, NOTES)}
    with app.test_request_context(f"/?lang={locale}"):
        text = describe_note(Note(code, "page 3", {**params, "to": "page 5"}))
    for name in params:
        assert f"<{name}>" in text, f"{code} in {locale} lost %({name})s"
    stripped = PLACEHOLDER_VALUE.sub("", text)
    if locale == "zh":
        assert text.startswith("第 3 页：") and "至第 5 页" in text, text
    else:
        assert text.startswith("page 3: ") and "to page 5" in text, text
        assert not CJK.search(stripped), f"{code} has no English message: {text}"


@pytest.mark.parametrize("locale", ["zh", "en"])
def test_a_refused_document_says_where_in_the_readers_language(app, locale):
    error = DocumentError(
        "document-title-close", where="paragraph 12", title="标题", closest="page 4"
    )
    with app.test_request_context(f"/?lang={locale}"):
        text = describe_document_error(error)
    if locale == "zh":
        assert (
            text
            == "第 12 段：目录中的标题“标题”在正文中没有对应的标题（最接近的是第 4 页的标题）。"
        )
    else:
        assert text.startswith("paragraph 12: ") and "page 4" in text, text


def test_every_raised_code_has_a_message_and_gets_its_values():
    raised = raised_codes()
    assert len(raised) > 30  # the scan finds the raises
    for where, code, keywords in raised:
        assert code in MESSAGES, f"{where}: no message for {code!r}"
        missing = placeholders(code) - keywords
        assert not missing, f"{where}: {code!r} needs {missing}"


def test_an_unknown_code_is_refused_where_it_is_raised():
    with pytest.raises(KeyError, match="add it to MESSAGES"):
        BulletinError("no-such-code")


def test_raw_detail_follows_the_message_untranslated(app):
    error = BulletinError("email-invalid", field="email", detail="It must have an @-sign.")
    with app.test_request_context("/?lang=en"):
        assert describe(error) == (
            "Enter a valid email address, such as name@example.com. (It must have an @-sign.)"
        )
        assert describe(error, detail=False).endswith("name@example.com.")


def test_text_stored_before_codes_is_shown_as_it_is(app):
    with app.test_request_context("/?lang=en"):
        assert describe_stored("由 someone 暂停") == "由 someone 暂停"
        assert describe_stored("") == ""
