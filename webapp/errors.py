"""Error pages in the reader's language: a page that says what happened, never a stack trace."""

from __future__ import annotations

from flask import Flask, render_template
from flask_babel import gettext as _


def register_error_pages(app: Flask) -> None:
    messages = {
        400: lambda: (_("请求有误"), _("请返回上一页，检查后重试。")),
        403: lambda: (_("没有权限"), _("这个页面只对管理员开放。")),
        404: lambda: (_("找不到这个页面"), _("链接可能有误，或者该页面尚未公开。")),
        405: lambda: (_("无法这样打开这个页面"), _("请使用页面上的按钮，或邮件中的链接。")),
        429: lambda: (_("操作太频繁"), _("请稍后再试。")),
        # Werkzeug's own page otherwise: English, unstyled, whatever the reader's language.
        500: lambda: (_("出错了"), _("服务器出了点问题，请稍后再试。")),
    }

    def page(error):
        title, hint = messages[error.code]()
        # Keep what the error itself says to clients, such as a 405's `Allow`.
        headers = [(k, v) for k, v in error.get_headers() if k.lower() != "content-type"]
        return render_template("error.html", title=title, hint=hint), error.code, headers

    for code in messages:
        app.register_error_handler(code, page)
