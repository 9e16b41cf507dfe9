"""Errors as codes until a person reads them, and error pages in the reader's language.

Domain modules raise `BulletinError` subclasses carrying a code from `MESSAGES`, the values
its message needs, and optionally the form field it belongs to. The web layer and the CLI
turn them into words with `describe()`, in the reader's language (the CLI: in English).
Stored reasons, such as why an issue paused, are a code plus raw text (an SMTP reply), and
`describe_stored()` translates them when they are shown.
"""

from __future__ import annotations

from flask import Flask, render_template
from flask_babel import force_locale, lazy_gettext
from flask_babel import gettext as _

# Every code a domain error may carry, and its message (Chinese; English in the catalog).
MESSAGES = {
    # publishing: an issue's sending life
    "issue-missing": lazy_gettext("第 %(id)s 期不存在。"),
    "issue-status": lazy_gettext("第 %(id)s 期的状态是 %(status)s，不能这样操作。"),
    "issue-empty": lazy_gettext("第 %(id)s 期还没有文章。"),
    "schedule-past": lazy_gettext("定时发布的时间必须在将来。"),
    "resend-status": lazy_gettext("只能重发失败或未知的邮件。"),
    "issue-not-approved": lazy_gettext("第 %(id)s 期尚未通过审核，不能发布或定时发布；请先送审。"),
    # review before sending (送审 / 审核)
    "review-stage": lazy_gettext("第 %(id)s 期现在是“%(stage)s”，不能这样操作；请刷新后再试。"),
    "review-empty": lazy_gettext("第 %(id)s 期还没有文章，不能送审。"),
    "review-not-reviewer": lazy_gettext("只有审核人或管理员可以审核。"),
    "review-own": lazy_gettext("送审人不能审核自己送审的一期，请另一位审核人审核。"),
    "review-comment-missing": lazy_gettext("请写明需要修改什么。"),
    "review-comment-too-long": lazy_gettext("意见最多 %(count)s 个字。"),
    # issues and articles: editing
    "issue-changed": lazy_gettext("第 %(id)s 期现在不能修改，请刷新后重试。"),
    "issue-not-editable": lazy_gettext(
        "第 %(id)s 期的状态是 %(status)s：发送开始后，内容以发出的为准，不能再修改。"
    ),
    "article-restore-draft-only": lazy_gettext(
        "第 %(id)s 期已不是草稿：删除的文章只能在草稿中恢复。"
    ),
    "issue-last-article": lazy_gettext("这一期已定时发布，不能删去最后一篇文章；请先取消定时。"),
    "article-title-missing": lazy_gettext("请填写标题。"),
    "article-title-too-long": lazy_gettext("标题最多 %(count)s 个字。"),
    "article-body-too-long": lazy_gettext("正文超过 %(size)s KB，请拆成几篇。"),
    "article-body-missing": lazy_gettext("请填写正文。"),
    "article-source-url": lazy_gettext("来源链接只接受 http:// 或 https:// 开头的网址。"),
    "article-source-name-too-long": lazy_gettext("来源名称最多 %(count)s 个字。"),
    "article-topic-closed": lazy_gettext("请选择一个在用的栏目。"),
    # an issue's masthead and envelope: title, number, subject
    "issue-field-too-long": lazy_gettext("最多 %(count)s 个字。"),
    "issue-number-invalid": lazy_gettext("请填写一个正整数。"),
    "subject-pattern-missing": lazy_gettext("请填写主题格式。"),
    "subject-pattern-braces": lazy_gettext("主题格式里的花括号不成对。"),
    "subject-pattern-unknown": lazy_gettext("主题格式只能用 %(fields)s，不认识 %(unknown)s。"),
    # topics, as staff manage them
    "topic-missing": lazy_gettext("栏目 #%(id)s 不存在。"),
    "topic-name-missing": lazy_gettext("请填写栏目名称。"),
    "topic-name-too-long": lazy_gettext("栏目名称最多 %(count)s 个字。"),
    "topic-name-taken": lazy_gettext("已经有名为“%(name)s”的栏目。请换一个名称。"),
    "topic-name-alike": lazy_gettext(
        "“%(name)s”与已有的栏目“%(existing)s”只差大小写、全角半角或空格，"
        "读者会以为是同一个栏目。请换一个名称。"
    ),
    "topic-name-is-slug": lazy_gettext(
        "“%(name)s”与栏目“%(existing)s”的标识 %(slug)s 相同，导入读者名单时会分不清。请换一个名称。"
    ),
    "topic-changed": lazy_gettext("另一位管理员刚刚修改了栏目，请刷新页面后再试。"),
    "topic-last-open": lazy_gettext(
        "这是最后一个开放的栏目，归档后订阅页将无栏目可选。请先添加或恢复另一个栏目。"
    ),
    # subscribers
    "email-invalid": lazy_gettext("请填写有效的电子邮箱地址，例如 name@example.com。"),
    "topics-none": lazy_gettext("请至少选择一个栏目。"),
    "topics-unknown": lazy_gettext("所选栏目已不存在，请刷新页面后重新选择。"),
    "subscriber-missing": lazy_gettext("这个订阅已不存在。"),
    "subscriber-not-pending": lazy_gettext(
        "只有待确认的读者才能重发确认邮件（这位读者的状态是 %(status)s）。"
    ),
    "bulk-nothing": lazy_gettext("没有符合条件的读者，没有做任何改动。"),
    # subscriber CSV files
    "csv-empty": lazy_gettext("文件是空的。"),
    "csv-binary": lazy_gettext(
        "这不是 UTF-8 编码的 CSV 文件（含有 NUL 字节：二进制数据或 UTF-16 文本）。"
    ),
    "csv-not-utf8": lazy_gettext(
        "第 %(line)s 行不是 UTF-8 文本；请把文件另存为“CSV UTF-8”后重新导入。"
    ),
    "csv-header": lazy_gettext("第 1 行：表头应为 %(expected)s，实际是 %(found)s。"),
    "csv-column-missing": lazy_gettext("缺少一列：%(column)s"),
    "csv-columns-extra": lazy_gettext(
        "有 %(count)s 列，表头只有 %(header)s 列（名字里有逗号时，请把名字放在双引号里）"
    ),
    "csv-email-missing": lazy_gettext("缺少电子邮箱地址"),
    "csv-topic-unknown": lazy_gettext("没有这个栏目：%(name)s"),
    "csv-topic-closed": lazy_gettext("栏目已不再开放：%(name)s"),
    # importing a bulletin document: refusals that name a format (see readers/)
    "document-too-large": lazy_gettext("文件超过 %(limit)s MB，不像是一期简报。"),
    "document-pdf-scan": lazy_gettext(
        "这个 PDF 是扫描件，没有文字：请从 Word 重新导出，或先做文字识别（OCR）。"
    ),
    "document-pdf-encrypted": lazy_gettext("这个 PDF 设有密码：请不加密码重新保存或打印。"),
    "document-doc": lazy_gettext("这是旧版 Word 文件（.doc）：请在 Word 中另存为 .docx。"),
    "document-rtf": lazy_gettext("这是 RTF 文件：请在 Word 中另存为 .docx。"),
    "document-not-docx": lazy_gettext("这是一个 ZIP 压缩包，不是 Word .docx 文件。"),
    # previews
    "preview-no-articles": lazy_gettext("所选栏目在这一期都没有文章。"),
    "preview-no-subscriber": lazy_gettext("没有地址为 %(email)s 的读者。"),
    "preview-no-topics": lazy_gettext("%(email)s 选的栏目在这一期都没有文章。"),
    # staff accounts
    "staff-exists": lazy_gettext("已经有 %(email)s 的管理账号。"),
    "staff-missing": lazy_gettext("没有 %(email)s 的管理账号。"),
    "staff-password-short": lazy_gettext("密码至少要 %(count)s 个字符。"),
}

# Stored reasons: the code, a space, then raw text (an address, an SMTP reply).
STORED = {
    "paused-by": lazy_gettext("由 %(detail)s 暂停"),
    "smtp-refused": lazy_gettext("SMTP 服务器拒绝了我们：%(detail)s"),
    # Why the last batch of a send stopped early (its rows are retried later).
    "smtp-unreachable": lazy_gettext("连不上 SMTP 服务器：%(detail)s"),
    "smtp-connection-lost": lazy_gettext("SMTP 连接中断：%(detail)s"),
    "journal-unavailable": lazy_gettext("Redis 不可用：%(detail)s"),
    "lease-lost": lazy_gettext("这批邮件已被另一个进程接手：%(detail)s"),
}


class BulletinError(Exception):
    """Something a person must be told: `code` (a key of MESSAGES), the values its message
    needs, the form field it belongs to (if any), and `detail`: raw text from elsewhere,
    such as email-validator's explanation, shown after the message and never translated."""

    def __init__(self, code: str, /, *, field: str | None = None, detail: str = "", **params):
        if code not in MESSAGES:
            raise KeyError(f"no message for the error code {code!r}: add it to MESSAGES")
        super().__init__(code, params)
        self.code = code
        self.field = field
        self.detail = detail
        self.params = params

    def __str__(self) -> str:
        # Logs and tracebacks; people get describe().
        values = "".join(f" {k}={v!r}" for k, v in self.params.items())
        return f"{self.code}{values}{f' ({self.detail})' if self.detail else ''}"


def describe(error: BulletinError, *, detail: bool = True) -> str:
    """The error's message in the current language (a request's, or zh outside one)."""
    text = str(MESSAGES[error.code]) % error.params
    if detail and error.detail:
        text = _("%(message)s（%(detail)s）", message=text, detail=error.detail)
    return text


def describe_in_english(error: BulletinError) -> str:
    """For the CLI, whose every other line is English."""
    with force_locale("en"):
        return describe(error)


def stored_reason(code: str, detail: str = "") -> str:
    """A reason to store: the code and raw text, translated later by describe_stored()."""
    if code not in STORED:
        raise KeyError(f"no message for the stored code {code!r}: add it to STORED")
    return f"{code} {detail}".strip()


def describe_stored(reason: str) -> str:
    """A stored reason in the current language; text stored before codes is shown as it is."""
    code, _sep, detail = (reason or "").partition(" ")
    if code not in STORED:
        return reason or ""
    return str(STORED[code]) % {"detail": detail}


def init_app(app: Flask) -> None:
    """Error pages in the reader's language, and the `describe` filters for templates."""
    app.jinja_env.filters["describe"] = describe
    app.jinja_env.filters["describe_stored"] = describe_stored
    register_error_pages(app)


def register_error_pages(app: Flask) -> None:
    messages = {
        400: lambda: (_("请求有误"), _("请返回上一页，检查后重试。")),
        403: lambda: (_("没有权限"), _("这个页面只对管理员开放。")),
        404: lambda: (_("找不到这个页面"), _("链接可能有误，或者该页面尚未公开。")),
        405: lambda: (_("无法这样打开这个页面"), _("请使用页面上的按钮，或邮件中的链接。")),
        413: lambda: (_("提交的内容太大"), _("请缩小文件或内容后重试。")),
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
