"""Statuses, stages and audit actions are words in the page's language, never stored values."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

from webapp.labels import ACTIONS, LABELS, action_label, label

WEBAPP = Path(__file__).resolve().parents[1] / "webapp"
CJK = re.compile(r"[\u3000-\u303f\u4e00-\u9fff\uff00-\uffef]")


@pytest.mark.parametrize("locale", ["zh", "en"])
def test_every_value_of_every_shown_enum_has_words_in_both_languages(app, locale):
    with app.test_request_context(f"/?lang={locale}"):
        for kind, words in LABELS.items():
            assert set(words) == set(kind), f"{kind.__name__}: every value needs a label"
            for value in kind:
                text = label(value)
                assert text != value.value, f"{value!r} has no label"
                assert bool(CJK.search(text)) == (locale == "zh"), f"{value!r}: {text}"


def recorded_actions() -> set[str]:
    """Every action name given to audit.record(...) or to sending's _act(name=...)."""
    found = set()
    for path in WEBAPP.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if not isinstance(node, ast.Call):
                continue
            name = getattr(node.func, "id", getattr(node.func, "attr", ""))
            if name == "record" and node.args:
                first = node.args[0]
                if isinstance(first, ast.Constant):
                    found.add(first.value)
                elif isinstance(first, ast.IfExp):
                    found |= {first.body.value, first.orelse.value}
            for keyword in node.keywords:
                if name == "_act" and keyword.arg == "name":
                    if isinstance(keyword.value, ast.Constant):
                        found.add(keyword.value.value)
                    else:  # f"resend-{status}"
                        found |= {"resend-failed", "resend-unknown"}
    return found


@pytest.mark.parametrize("locale", ["zh", "en"])
def test_every_audit_action_has_words_in_both_languages(app, locale):
    actions = recorded_actions()
    assert {"publish", "edit-article", "section-move-up", "login-failed"} <= actions
    assert not actions - set(ACTIONS), "add these to labels.ACTIONS"
    with app.test_request_context(f"/?lang={locale}"):
        for action in actions:
            assert bool(CJK.search(action_label(action))) == (locale == "zh"), action


def test_a_value_without_words_shows_as_itself(app):
    with app.test_request_context("/?lang=en"):
        assert action_label("something-new") == "something-new"
        assert label(None) == ""
