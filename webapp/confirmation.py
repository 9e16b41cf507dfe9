"""The second step of a destructive action (delete an article, cancel a send, archive a
section, a reader's 退订全部 or erase): the first POST shows what will happen, and only a
POST carrying `confirm=yes` from that page does it. Plain forms, so it works without
JavaScript, and a stray or replayed first click changes nothing."""

from __future__ import annotations

from flask import request


def confirmed() -> bool:
    """Whether this POST is the confirming second step."""
    return request.form.get("confirm") == "yes"
