from flask_babel import lazy_gettext
from flask_wtf import FlaskForm
from flask_wtf.file import FileField, FileRequired, FileSize
from wtforms import (
    DateTimeLocalField,
    EmailField,
    HiddenField,
    PasswordField,
    RadioField,
    SubmitField,
    TextAreaField,
)
from wtforms.fields.choices import SelectChoice
from wtforms.validators import DataRequired

MAX_DOCUMENT_BYTES = 2 * 1024 * 1024  # a bulletin is ~100 KB of text; 2 MB is generous


class LoginForm(FlaskForm):
    email = EmailField(lazy_gettext("邮箱"), validators=[DataRequired()])
    password = PasswordField(lazy_gettext("密码"), validators=[DataRequired()])
    submit = SubmitField(lazy_gettext("登录"))


class ActionForm(FlaskForm):
    """A form with only a CSRF token, for buttons such as publish."""

    submit = SubmitField("OK")


class ImportUploadForm(FlaskForm):
    """Step 1: choose a document; the importer's report is shown before anything is saved."""

    document = FileField(
        lazy_gettext("简报文件（Markdown 或纯文本，UTF-8）"),
        validators=[
            FileRequired(lazy_gettext("请选择一个文件。")),
            FileSize(MAX_DOCUMENT_BYTES, message=lazy_gettext("文件超过 2 MB，不像是一期简报。")),
        ],
    )
    submit = SubmitField(lazy_gettext("检查"))


class ImportSaveForm(FlaskForm):
    """Step 2: the checked document travels back in a hidden field and is parsed again.

    A hidden <textarea>, not <input type=hidden>: browsers strip line breaks from input
    values, and the document's structure is its lines."""

    document = TextAreaField(validators=[DataRequired()])
    filename = HiddenField()
    submit = SubmitField(lazy_gettext("保存为草稿"))


class ContentModeForm(FlaskForm):
    mode = RadioField(
        lazy_gettext("正文形式"),
        choices=[
            SelectChoice(
                "auto", lazy_gettext("自动：放得下就全文，超出邮件大小上限的长文改为导语和链接")
            ),
            SelectChoice("full", lazy_gettext("全文")),
            SelectChoice("leads", lazy_gettext("只有导语和“阅读全文”链接")),
        ],
        validators=[DataRequired()],
    )
    submit = SubmitField(lazy_gettext("保存"))


class SubscriberImportForm(FlaskForm):
    """A CSV of readers; staff must say how the readers consented."""

    document = FileField(
        lazy_gettext("CSV 文件（表头：email,name,sections）"),
        validators=[
            FileRequired(lazy_gettext("请选择一个文件。")),
            FileSize(64 * 1024 * 1024, message=lazy_gettext("文件超过 64 MB。")),
        ],
    )
    consent = RadioField(
        lazy_gettext("这些读者如何同意接收"),
        choices=[
            SelectChoice("confirm", lazy_gettext("向新读者发送确认邮件，确认后才开始接收")),
            SelectChoice(
                "consented",
                lazy_gettext("他们已经同意（例如线下登记），直接开始接收；会记录为导入时已同意"),
            ),
        ],
        validators=[DataRequired(lazy_gettext("请选择读者如何同意接收。"))],
    )
    submit = SubmitField(lazy_gettext("导入"))


class ScheduleForm(FlaskForm):
    when = DateTimeLocalField(
        lazy_gettext("定时发布（本地时间）"),
        validators=[DataRequired(lazy_gettext("请填写发布时间。"))],
    )
    submit = SubmitField(lazy_gettext("定时发布"))
