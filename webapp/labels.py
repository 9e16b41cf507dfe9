"""The words people see for the values code stores: statuses, stages, audit actions.

Code and the database keep the string enums of `models` (``draft``, ``sent``, ``pending``)
and the audit log's action names (``publish``, ``edit-article``); pages never show them as
they are. Each value has one label here, Chinese with its English in the catalog, and
templates reach them through the ``label`` filter (``{{ issue.status|label }}``) and the
``action_label`` filter for the audit log; a topic's name in the page's language is the
``topic_name`` filter (`i18n.topic_name`). A value with no label shows as itself, so a new
status is visible (and `tests/test_labels.py` fails) rather than hidden.
"""

from __future__ import annotations

import enum
import json
import re
from collections.abc import Mapping

from flask import Flask
from flask_babel import gettext as _
from flask_babel import lazy_gettext

from .i18n import topic_name
from .models import (
    IMPORT_SOURCE_CLI,
    IMPORT_SOURCE_STAFF,
    ConsentMethod,
    DeliveryStatus,
    EventKind,
    EventSource,
    IssueStatus,
    ReviewStage,
    SubscriberEvent,
    SubscriberStatus,
    SuppressionReason,
)

LABELS: dict[type[enum.Enum], dict] = {
    IssueStatus: {
        IssueStatus.DRAFT: lazy_gettext("草稿"),
        IssueStatus.SCHEDULED: lazy_gettext("已定时"),
        IssueStatus.SENDING: lazy_gettext("发送中"),
        IssueStatus.PAUSED: lazy_gettext("已暂停"),
        IssueStatus.SENT: lazy_gettext("已发出"),
        IssueStatus.CANCELLED: lazy_gettext("已取消"),
    },
    ReviewStage: {
        ReviewStage.DRAFT: lazy_gettext("草稿"),
        ReviewStage.IN_REVIEW: lazy_gettext("待审核"),
        ReviewStage.RETURNED: lazy_gettext("已退回"),
        ReviewStage.APPROVED: lazy_gettext("已通过审核"),
    },
    DeliveryStatus: {
        DeliveryStatus.PENDING: lazy_gettext("排队中"),
        DeliveryStatus.SENDING: lazy_gettext("正在发送"),
        DeliveryStatus.SENT: lazy_gettext("已发送"),
        DeliveryStatus.FAILED: lazy_gettext("失败"),
        DeliveryStatus.UNKNOWN: lazy_gettext("状态未知"),
        DeliveryStatus.SKIPPED: lazy_gettext("已跳过"),
    },
    SubscriberStatus: {
        SubscriberStatus.ACTIVE: lazy_gettext("正在接收"),
        SubscriberStatus.PENDING: lazy_gettext("待确认"),
        SubscriberStatus.UNSUBSCRIBED: lazy_gettext("已退订"),
        SubscriberStatus.BOUNCED: lazy_gettext("退信"),
        SubscriberStatus.COMPLAINED: lazy_gettext("投诉"),
    },
    ConsentMethod: {
        ConsentMethod.DOUBLE_OPT_IN: lazy_gettext("读者点击了确认邮件中的链接"),
        ConsentMethod.IMPORTED_CONSENTED: lazy_gettext("工作人员导入，并确认读者已同意"),
    },
    EventKind: {
        EventKind.SUBSCRIBED: lazy_gettext("提交订阅"),
        EventKind.CONFIRMED: lazy_gettext("已确认订阅"),
        EventKind.TOPICS_CHANGED: lazy_gettext("更改栏目"),
        EventKind.UNSUBSCRIBED: lazy_gettext("已退订"),
        EventKind.RESUBSCRIBED: lazy_gettext("重新订阅"),
        EventKind.ERASED: lazy_gettext("数据已删除"),
        EventKind.IMPORTED: lazy_gettext("经导入"),
        EventKind.BOUNCED: lazy_gettext("退信"),
        EventKind.COMPLAINED: lazy_gettext("投诉"),
        EventKind.PROFILE_CHANGED: lazy_gettext("修改资料"),
        EventKind.CONFIRMATION_SENT: lazy_gettext("发出确认邮件"),
    },
    EventSource: {
        EventSource.WEB: lazy_gettext("网站"),
        EventSource.EMAIL_LINK: lazy_gettext("邮件中的链接"),
        EventSource.ONE_CLICK: lazy_gettext("邮箱的一键退订"),
        EventSource.IMPORT: lazy_gettext("导入"),
        EventSource.STAFF: lazy_gettext("工作人员"),
        EventSource.CLI: lazy_gettext("命令行"),
        EventSource.BOUNCE: lazy_gettext("退信处理"),
        EventSource.API: lazy_gettext("API 接口"),
        EventSource.STAFF_BULK: lazy_gettext("工作人员批量操作"),
    },
    SuppressionReason: {
        SuppressionReason.ERASED: lazy_gettext("读者删除了自己的数据"),
        SuppressionReason.HARD_BOUNCE: lazy_gettext("地址不存在（硬退信）"),
        SuppressionReason.COMPLAINT: lazy_gettext("标为垃圾邮件"),
        SuppressionReason.STAFF: lazy_gettext("工作人员停止投递"),
    },
}

# A reader event's details (the JSON in `SubscriberEvent.detail`): what each key is called.
EVENT_DETAILS = {
    "topics": lazy_gettext("订阅的栏目"),
    "added": lazy_gettext("添加的栏目"),
    "removed": lazy_gettext("移除的栏目"),
    "was": lazy_gettext("原状态"),
    "email": lazy_gettext("邮件"),
    "fields": lazy_gettext("修改的资料"),
    "updated": lazy_gettext("修改的资料"),
    "reason": lazy_gettext("原因"),
    "status": lazy_gettext("状态码"),
    "soft_bounces": lazy_gettext("软退信次数"),
    "delivery": lazy_gettext("投递"),
    "by": lazy_gettext("经由"),
    "import": lazy_gettext("导入任务"),
}
# The values of `email`, `fields` and `updated` that are words.
DETAIL_WORDS = {
    "confirmation": lazy_gettext("确认订阅的邮件"),
    "preferences-link": lazy_gettext("订阅设置链接"),
    "name": lazy_gettext("称呼"),
    "locale": lazy_gettext("语言"),
    "status": lazy_gettext("状态"),
}

# The audit log's actions (audit.record's first argument), as the sending page lists them.
ACTIONS = {
    "create-issue": lazy_gettext("新建一期"),
    "edit-issue": lazy_gettext("修改刊头"),
    "content-mode": lazy_gettext("更改全文/摘要"),
    "add-article": lazy_gettext("添加文章"),
    "edit-article": lazy_gettext("修改文章"),
    "delete-article": lazy_gettext("删除文章"),
    "restore-article": lazy_gettext("恢复文章"),
    "move-article": lazy_gettext("移动文章"),
    "submit-review": lazy_gettext("送审"),
    "approve": lazy_gettext("审核通过"),
    "return-review": lazy_gettext("退回修改"),
    "review-reopened": lazy_gettext("修改后重新审核"),
    "publish": lazy_gettext("发布"),
    "schedule": lazy_gettext("定时发布"),
    "schedule-refused": lazy_gettext("定时发布未执行"),
    "unschedule": lazy_gettext("取消定时"),
    "pause": lazy_gettext("暂停"),
    "resume": lazy_gettext("继续发送"),
    "cancel": lazy_gettext("取消发送"),
    "resend-failed": lazy_gettext("重发失败的邮件"),
    "resend-unknown": lazy_gettext("重发状态未知的邮件"),
    "section-create": lazy_gettext("新建栏目"),
    "section-rename": lazy_gettext("修改栏目名称"),
    "section-move-up": lazy_gettext("栏目上移"),
    "section-move-down": lazy_gettext("栏目下移"),
    "section-archive": lazy_gettext("归档栏目"),
    "section-unarchive": lazy_gettext("恢复栏目"),
    "settings": lazy_gettext("修改设置"),
    "identity": lazy_gettext("修改出版信息"),
    "logo": lazy_gettext("上传标志"),
    "logo-removed": lazy_gettext("移除标志"),
    "api-token-create": lazy_gettext("新建 API 令牌"),
    "api-token-revoke": lazy_gettext("撤销 API 令牌"),
    "webhook-create": lazy_gettext("添加 Webhook"),
    "webhook-delete": lazy_gettext("删除 Webhook"),
    "api-subscriber-create": lazy_gettext("通过 API 添加读者"),
    "api-subscriber-update": lazy_gettext("通过 API 修改读者"),
    "api-subscriber-unsubscribe": lazy_gettext("通过 API 退订读者"),
    "api-subscriber-erase": lazy_gettext("通过 API 删除读者"),
    "reader-topics": lazy_gettext("修改读者的栏目"),
    "reader-unsubscribe": lazy_gettext("为读者退订"),
    "reader-resend-confirmation": lazy_gettext("重发确认邮件"),
    "reader-suppress": lazy_gettext("停止向读者发信"),
    "reader-erase": lazy_gettext("删除读者"),
    "readers-export": lazy_gettext("导出读者"),
    "readers-unsubscribe": lazy_gettext("批量退订"),
    "readers-add-topic": lazy_gettext("批量添加栏目"),
    "readers-remove-topic": lazy_gettext("批量移除栏目"),
    "readers-unsubscribe-done": lazy_gettext("批量退订完成"),
    "readers-add-topic-done": lazy_gettext("批量添加栏目完成"),
    "readers-remove-topic-done": lazy_gettext("批量移除栏目完成"),
    "import-readers": lazy_gettext("导入读者"),
    "import-readers-failed": lazy_gettext("导入读者失败"),
    "login-failed": lazy_gettext("登录失败"),
}


def label(value: enum.Enum | str | None) -> str:
    """The words for an enum value in the current language; the value itself if it has none."""
    if value is None:
        return ""
    table = LABELS.get(type(value), {})
    return str(table[value]) if value in table else str(getattr(value, "value", value))


def stored_label(kind: type[enum.Enum], value) -> str:
    """`label` for a value stored as a plain string (an event's source, a detail's status);
    a string that is no value of `kind` shows as itself."""
    try:
        return label(kind(value))
    except ValueError:
        return str(value)


def source_label(source: str) -> str:
    """Where a reader's change came from (an `EventSource` value, stored as a string)."""
    return stored_label(EventSource, source)


def event_detail(event: SubscriberEvent, topics: Mapping[int, object]) -> str:
    """An event's details as a line of text ("订阅的栏目：质量要闻、国际动态；原状态：已退订"), with
    sections by name (`topics`: id to anything `topic_name` takes) and stored words in the
    page's language. A key with no label shows as itself, as `label` does."""
    try:
        detail = json.loads(event.detail) if event.detail else {}
    except ValueError:
        return event.detail
    if not isinstance(detail, dict):
        return event.detail
    separator = _("、")

    def shown(key: str, value) -> str:
        if key in ("topics", "added", "removed") and isinstance(value, list):
            names = [topic_name(topics[i]) if i in topics else f"#{i}" for i in value]
            return separator.join(names) or "—"
        if key in ("email", "fields", "updated"):
            words = value if isinstance(value, list) else [value]
            return separator.join(str(DETAIL_WORDS.get(w, w)) for w in words)
        if key == "was":
            return stored_label(SubscriberStatus, value)
        if key == "reason":
            return stored_label(SuppressionReason, value)
        if key == "by":
            return _import_source(str(value))
        if key in ("delivery", "import"):
            return f"#{value}"
        return str(value)

    return _("；").join(
        _("%(name)s：%(value)s", name=EVENT_DETAILS.get(key, key), value=shown(key, value))
        for key, value in detail.items()
    )


def _import_source(source: str) -> str:
    """Who imported a reader, from the source the import recorded (`subscriber_csv`)."""
    if source == IMPORT_SOURCE_CLI:
        return _("命令行导入")
    staff = source.removeprefix(IMPORT_SOURCE_STAFF)
    if staff != source:
        return _("%(who)s 上传的 CSV", who=staff)
    return source_label(source)


def action_label(action: str) -> str:
    """An audit log action in the current language; the stored name if it has none."""
    return str(ACTIONS[action]) if action in ACTIONS else action


def origin_label(origin: str) -> str:
    """Where in a document: "page 3", "pages 1–21", "paragraph 12", "lines 27–118" (as the
    importer says it) in the current language; anything else as it is."""
    found = re.match(r"^(page|paragraph|line)s? (\S+)$", origin or "")
    if not found:
        return origin
    unit, where = found.groups()
    if unit == "page":
        return _("第 %(where)s 页", where=where)
    if unit == "paragraph":
        return _("第 %(where)s 段", where=where)
    return _("第 %(where)s 行", where=where)


def init_app(app: Flask) -> None:
    """The ``label`` and ``action_label`` filters, and the enums for templates that name a
    value (``DeliveryStatus.SENT|label``)."""
    app.jinja_env.filters["label"] = label
    app.jinja_env.filters["action_label"] = action_label
    app.jinja_env.filters["source_label"] = source_label
    app.jinja_env.filters["event_detail"] = event_detail
    app.jinja_env.filters["topic_name"] = topic_name
    app.jinja_env.filters["origin"] = origin_label
    app.jinja_env.globals["DeliveryStatus"] = DeliveryStatus
