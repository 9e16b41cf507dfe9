"""Errors as codes until a person reads them, and error pages in the reader's language.

Domain modules raise `BulletinError` subclasses carrying a code from `MESSAGES`, the values
its message needs, and optionally the form field it belongs to. The web layer and the CLI
turn them into words with `describe()`, in the reader's language (the CLI: in English).
Stored reasons, such as why an issue paused, are a code plus raw text (an SMTP reply), and
`describe_stored()` translates them when they are shown.
"""

from __future__ import annotations

import enum

from flask import Flask, Response, json, render_template, request
from flask_babel import force_locale, lazy_gettext
from flask_babel import gettext as _

from .document import DocumentError, Note
from .labels import label, origin_label

# Every code a domain error may carry, and its message (Chinese; English in the catalog).
MESSAGES = {
    # publishing: an issue's sending life
    "issue-missing": lazy_gettext("第 %(id)s 期不存在。"),
    "issue-status": lazy_gettext("第 %(id)s 期的状态是“%(status)s”，不能这样操作。"),
    "issue-empty": lazy_gettext("第 %(id)s 期还没有文章。"),
    "schedule-past": lazy_gettext("定时发布的时间必须在将来。"),
    "resend-status": lazy_gettext("只能重发失败或未知的邮件。"),
    "issue-not-approved": lazy_gettext("第 %(id)s 期尚未通过审核，不能发布或定时发布；请先送审。"),
    "identity-postal-address-missing": lazy_gettext(
        "还没有填写邮寄地址，不能发布：群发邮件必须写明发件单位的邮寄地址。"
        "请管理员在“出版信息”页填写后再发布。"
    ),
    # the publication's identity (出版信息)
    "identity-name-missing": lazy_gettext("请填写简报名称。"),
    "identity-too-long": lazy_gettext("最多 %(count)s 个字。"),
    "masthead-color-invalid": lazy_gettext("请把颜色写成 #RRGGBB，例如 #9b1c1c。"),
    "masthead-color-contrast": lazy_gettext(
        "刊头文字在这个颜色上的对比度只有 %(ratio)s:1，至少要 %(minimum)s:1 才易读；"
        "请选一个更深的颜色。"
    ),
    "logo-too-large": lazy_gettext("图片超过 %(limit)s MB，请缩小后再上传。"),
    "logo-format": lazy_gettext("只接受 PNG、JPEG 或 GIF 图片。"),
    "logo-not-image": lazy_gettext("这个文件不是完好的图片，无法读取。"),
    "logo-dimensions": lazy_gettext(
        "图片的宽和高至少要 %(min)s 像素，总共不超过 %(max)s 百万像素。"
    ),
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
        "第 %(id)s 期的状态是“%(status)s”：发送开始后，内容以发出的为准，不能再修改。"
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
    "csv-email-invalid": lazy_gettext("“%(email)s”不是有效的电子邮箱地址。"),
    "csv-email-no-at": lazy_gettext("“%(email)s”不是有效的电子邮箱地址：缺少 @。"),
    "csv-email-non-ascii": lazy_gettext(
        "“%(email)s”的 @ 前面有中文等非 ASCII 字符：这样的地址无法投递。"
    ),
    "csv-email-too-long": lazy_gettext("“%(email)s”太长，不是有效的电子邮箱地址。"),
    "csv-email-local": lazy_gettext(
        "“%(email)s”的 @ 前面的部分有误（为空，或有空格等不允许的字符）。"
    ),
    "csv-email-domain": lazy_gettext("“%(email)s”的 @ 后面的域名有误。"),
    "csv-email-periods": lazy_gettext("“%(email)s”的句点位置有误（在开头、结尾，或连续两个）。"),
    # an unknown or closed section is a warning: the row's other sections still apply
    "csv-topic-unknown": lazy_gettext("没有这个栏目：%(name)s（这一行的其他栏目照常导入）"),
    "csv-topic-closed": lazy_gettext("栏目已不再开放：%(name)s（这一行的其他栏目照常导入）"),
    "csv-topics-none": lazy_gettext("这一行的栏目（%(names)s）都不存在或已不再开放，没有导入。"),
    "csv-duplicate": lazy_gettext("与第 %(first)s 行地址相同，已并入该行。"),
    "csv-import-missing": lazy_gettext("导入 #%(id)s 不存在。"),
    "csv-import-status": lazy_gettext("导入 #%(id)s 现在不能开始：请刷新页面，看看它的状态。"),
    "csv-import-failed": lazy_gettext(
        "导入任务出错，已停下。已写入的读者会保留：请重新上传同一文件再导入一次，"
        "已导入的读者会算作“已存在”。"
    ),
    # importing a bulletin document: refusals that name a format (see readers/)
    "document-too-large": lazy_gettext("文件超过 %(limit)s MB，不像是一期简报。"),
    "document-pdf-scan": lazy_gettext(
        "这个 PDF 是扫描件，没有文字：请从 Word 重新导出，或先做文字识别（OCR）。"
    ),
    "document-pdf-encrypted": lazy_gettext("这个 PDF 设有密码：请不加密码重新保存或打印。"),
    "document-doc": lazy_gettext("这是旧版 Word 文件（.doc）：请在 Word 中另存为 .docx。"),
    "document-rtf": lazy_gettext("这是 RTF 文件：请在 Word 中另存为 .docx。"),
    "document-not-docx": lazy_gettext("这是一个 ZIP 压缩包，不是 Word .docx 文件。"),
    "document-zip-damaged": lazy_gettext("这个 ZIP 文件已损坏，无法读取。"),
    "document-docx-damaged": lazy_gettext("这个 Word 文件已损坏，无法读取。"),
    "document-pdf-damaged": lazy_gettext("这个 PDF 已损坏，无法读取。"),
    "document-pdf-only-furniture": lazy_gettext("这个 PDF 除了页眉、页脚和页码没有文字。"),
    # importing a bulletin document: refusals of its text (see importing.py)
    "document-empty": lazy_gettext("文件是空的。"),
    "document-binary": lazy_gettext("这是二进制文件，不是文本文档。"),
    "document-utf16": lazy_gettext("这是 UTF-16 编码的文本：请另存为 UTF-8。"),
    "document-not-utf8": lazy_gettext(
        "文件不是 UTF-8 文本：第 %(offset)s 字节（%(byte)s）无法解码。请另存为 UTF-8。"
    ),
    "document-gbk": lazy_gettext(
        "文件不是 UTF-8 文本：第 %(offset)s 字节（%(byte)s）无法解码；"
        "看起来是 GBK/GB18030 编码的中文，请另存为 UTF-8。"
    ),
    "document-no-contents": lazy_gettext(
        "没有找到目录：应有“### —— 质量要闻”这样的栏目标题，每个下面是“- ① 标题”这样的编号条目。"
    ),
    "document-contents-no-items": lazy_gettext("目录有栏目标题，但没有编号条目。"),
    "document-title-unmatched": lazy_gettext("目录中的标题“%(title)s”在正文中没有对应的标题。"),
    "document-title-close": lazy_gettext(
        "目录中的标题“%(title)s”在正文中没有对应的标题（最接近的是%(closest)s的标题）。"
    ),
    "document-title-taken": lazy_gettext(
        "目录中的标题“%(title)s”在正文中没有自己的标题（唯一相符的标题属于“%(other)s”）。"
    ),
    # previews
    "preview-no-articles": lazy_gettext("所选栏目在这一期都没有文章。"),
    "preview-none-chosen": lazy_gettext("请至少选择一个栏目。"),
    "preview-no-subscriber": lazy_gettext("没有地址为 %(email)s 的读者。"),
    "preview-no-topics": lazy_gettext("%(email)s 选的栏目在这一期都没有文章。"),
    # staff accounts
    "staff-exists": lazy_gettext("已经有 %(email)s 的管理账号。"),
    "staff-missing": lazy_gettext("没有 %(email)s 的管理账号。"),
    "staff-password-short": lazy_gettext("密码至少要 %(count)s 个字符。"),
    # the JSON API and its tokens
    "api-token-name-missing": lazy_gettext("请填写令牌名称。"),
    "api-token-name-too-long": lazy_gettext("令牌名称最多 %(count)s 个字。"),
    "api-token-missing": lazy_gettext("令牌 #%(id)s 不存在。"),
    "api-token-invalid": lazy_gettext(
        "缺少 API 令牌，或令牌无效、已撤销：请在请求头 Authorization: Bearer 中提供有效令牌。"
    ),
    "api-forbidden": lazy_gettext("这个令牌（%(role)s）没有权限这样操作。"),
    "api-invalid": lazy_gettext("请求内容有误：%(name)s %(problem)s"),
    "webhook-url": lazy_gettext("请填写以 http:// 或 https:// 开头的完整网址。"),
    "webhook-private-address": lazy_gettext(
        "%(host)s 是本机或内网地址：正式环境不向这样的地址发送 Webhook"
        "（需要时设置 WEBHOOK_ALLOW_PRIVATE=1）。"
    ),
    "webhook-events-none": lazy_gettext("请至少选择一种事件。"),
    "webhook-missing": lazy_gettext("Webhook #%(id)s 不存在。"),
    "subscriber-left": lazy_gettext(
        "这位读者的状态是 %(status)s：只有读者本人能通过邮件中的链接重新订阅。"
    ),
}

# What the importer tells the editor about a document (importing.ImportReport's notes).
NOTES = {
    # repairs
    "joined": lazy_gettext("接回了分页截断的句子：“…%(tail)s”+“%(head)s…”"),
    "heading-joined": lazy_gettext("分 %(lines)s 行印出的标题已合为一个：“%(excerpt)s”"),
    # dropped converter debris
    "dropped-image": lazy_gettext("删去了文件中没有的图片：“%(excerpt)s”"),
    "dropped-comment": lazy_gettext("删去了转换工具留下的 HTML 注释：“%(excerpt)s”"),
    "dropped-english": lazy_gettext("删去了中文文档中的英文段落（对图片的描述）：“%(excerpt)s”"),
    "dropped-english-intro": lazy_gettext(
        "删去了中文文档中的英文段落（对图片的描述）和它引出的文字：“%(excerpt)s”"
    ),
    # page furniture of a PDF
    "furniture-page-number": lazy_gettext("页码“%(text)s”"),
    "furniture-header": lazy_gettext("页眉“%(text)s”"),
    "furniture-footer": lazy_gettext("页脚“%(text)s”"),
    # warnings
    "no-masthead": lazy_gettext("目录上方没有刊头标题：这一期没有名称。"),
    "listed-twice": lazy_gettext("“%(title)s”在目录中列了两次，只导入一次。"),
    "contents-text-ignored": lazy_gettext("目录中的这段文字未导入：“%(excerpt)s”"),
    "section-empty": lazy_gettext("栏目“%(name)s”下没有条目。"),
    "text-before-first-article": lazy_gettext("第一篇文章之前的文字未导入。"),
    "articles-out-of-order": lazy_gettext("文章的顺序与目录不同。"),
    "title-repeated": lazy_gettext(
        "标题“%(title)s”在另一篇文章之后再次出现，其下的文字并入第一次出现的那篇。"
    ),
    "repeated-character": lazy_gettext(
        "分页处重复了“%(char)s”（“…%(tail)s”+“%(head)s…”）；两个都保留了，请对照原文检查。"
    ),
    "no-source": lazy_gettext("标题“%(title)s”下没有来源行。"),
    "article-empty": lazy_gettext("文章“%(title)s”没有正文。"),
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
    # Why a delivery was skipped: written in its smtp_reply by us, not by a server.
    "reader-left": lazy_gettext("读者在发送前已不再订阅%(detail)s"),
    "send-cancelled": lazy_gettext("这一期已取消发送%(detail)s"),
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
    text = str(MESSAGES[error.code]) % _worded(error.params)
    if detail and error.detail:
        text = _("%(message)s（%(detail)s）", message=text, detail=error.detail)
    return text


def _worded(params: dict) -> dict:
    """Values as a person reads them: a status or stage in words (labels), the rest as is."""
    return {k: label(v) if isinstance(v, enum.Enum) else v for k, v in params.items()}


def describe_document_error(error: DocumentError) -> str:
    """A refused document's reason in the current language, with the place it is about."""
    text = str(MESSAGES[error.code]) % _places(error.params)
    if error.detail:
        text = _("%(message)s（%(detail)s）", message=text, detail=error.detail)
    return _placed(error.where, text)


def describe_note(note: Note) -> str:
    """An import note in the current language: where it is, what was done or noticed."""
    text = str(NOTES[note.code]) % _places(note.params)
    if "to" in note.params:
        text = _("%(message)s（至%(to)s）", message=text, to=origin_label(note.params["to"]))
    return _placed(note.where, text)


def _places(params: dict) -> dict:
    # Values that are places ("line 12") in words; a dropped passage's end is said apart.
    return {k: origin_label(v) if k == "closest" else v for k, v in params.items() if k != "to"}


def _placed(where: str, text: str) -> str:
    return _("%(where)s：%(message)s", where=origin_label(where), message=text) if where else text


def describe_in_english(error: BulletinError | DocumentError | Note) -> str:
    """For the CLI, whose every other line is English."""
    with force_locale("en"):
        if isinstance(error, DocumentError):
            return describe_document_error(error)
        if isinstance(error, Note):
            return describe_note(error)
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
    app.jinja_env.filters["describe_note"] = describe_note
    register_error_pages(app)


# The JSON API answers errors as RFC 9457 problem details instead of pages.
API_PREFIX = "/api/"
PROBLEM_TYPE = "application/problem+json"


def problem(status: int, title: str, detail: str = "", *, code: str = "", **extra) -> Response:
    """An RFC 9457 problem details answer: `title` says what kind of problem (the error
    pages' heading), `detail` this occurrence (a domain error's message), `code` the
    `MESSAGES` key when there is one, in the request's language."""
    body = {"type": "about:blank", "title": title, "status": status}
    if detail:
        body["detail"] = detail
    if code:
        body["code"] = code
    body.update(extra)
    return Response(json.dumps(body, ensure_ascii=False), status, mimetype=PROBLEM_TYPE)


def domain_problem(error: BulletinError, status: int) -> Response:
    """A domain error as a problem: the same words the pages show for it."""
    title = HTTP_TITLES.get(status, HTTP_TITLES[400])()
    extra = {"field": error.field} if error.field else {}
    return problem(status, str(title), describe(error), code=error.code, **extra)


HTTP_TITLES = {
    400: lambda: _("请求有误"),
    401: lambda: _("需要登录或令牌"),
    403: lambda: _("没有权限"),
    404: lambda: _("找不到这个页面"),
    405: lambda: _("无法这样打开这个页面"),
    409: lambda: _("与当前状态冲突"),
    413: lambda: _("提交的内容太大"),
    415: lambda: _("不支持的内容类型"),
    422: lambda: _("请求内容有误"),
    429: lambda: _("操作太频繁"),
    500: lambda: _("出错了"),
}


def register_error_pages(app: Flask) -> None:
    messages = {
        400: lambda: (_("请求有误"), _("请返回上一页，检查后重试。")),
        401: lambda: (_("需要登录或令牌"), _("请先登录。")),
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
        if request.path.startswith(API_PREFIX):
            # Werkzeug's stock descriptions are English prose for browsers; a description
            # the raiser wrote (the rate limit hit, say) is worth passing on.
            said = getattr(error, "description", None)
            detail = said if said and said != type(error).description else ""
            answer = problem(error.code, str(title), str(detail))
            answer.headers.extend(headers)
            return answer
        return render_template("error.html", title=title, hint=hint), error.code, headers

    for code in messages:
        app.register_error_handler(code, page)
