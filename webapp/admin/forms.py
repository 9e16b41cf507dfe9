from flask_babel import gettext as _
from flask_babel import lazy_gettext
from flask_wtf import FlaskForm
from flask_wtf.file import FileField, FileRequired, FileSize
from wtforms import (
    BooleanField,
    DateTimeLocalField,
    EmailField,
    HiddenField,
    IntegerField,
    PasswordField,
    RadioField,
    SelectField,
    StringField,
    SubmitField,
    TextAreaField,
)
from wtforms.fields.choices import SelectChoice
from wtforms.validators import (
    URL,
    DataRequired,
    Length,
    NumberRange,
    Optional,
    StopValidation,
    ValidationError,
)

from .. import issues
from ..i18n import topic_name
from ..public.forms import MultiCheckboxField
from ..rendering import safe_url


class LoginForm(FlaskForm):
    email = EmailField(lazy_gettext("邮箱"), validators=[DataRequired()])
    password = PasswordField(lazy_gettext("密码"), validators=[DataRequired()])
    submit = SubmitField(lazy_gettext("登录"))


class ActionForm(FlaskForm):
    """A form with only a CSRF token, for buttons such as publish."""

    submit = SubmitField("OK")


class ImportUploadForm(FlaskForm):
    """Step 1: choose a document; the importer's report is shown before anything is saved."""

    # The size limit (IMPORT_MAX_MB) is checked by the view, which knows the setting.
    document = FileField(
        lazy_gettext("简报文件（Word .docx、PDF 或 Markdown）"),
        validators=[FileRequired(lazy_gettext("请选择一个文件。"))],
    )
    submit = SubmitField(lazy_gettext("检查"))


class ImportSaveForm(FlaskForm):
    """Step 2: a signed ticket names the upload held on the server (see held_uploads)."""

    upload = HiddenField(validators=[DataRequired()])
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


def _strip(value: str | None) -> str | None:
    return value.strip() if isinstance(value, str) else value


class NewIssueForm(FlaskForm):
    title = StringField(
        lazy_gettext("标题"),
        filters=[_strip],
        validators=[
            DataRequired(lazy_gettext("请填写标题。")),
            Length(max=200, message=lazy_gettext("标题最多 200 个字。")),
        ],
    )
    period = StringField(
        lazy_gettext("期号或日期（可不填）"),
        filters=[_strip],
        validators=[Optional(), Length(max=100, message=lazy_gettext("最多 100 个字。"))],
    )
    submit = SubmitField(lazy_gettext("新建一期"))


def _http_only(form, field) -> None:
    value = (field.data or "").strip()
    if value and safe_url(value) != value:
        # Stop here: this message says what is wrong; URL()'s would only add noise.
        raise StopValidation(_("来源链接只接受 http:// 或 https:// 开头的网址。"))


def _name_with_url(form, field) -> None:
    # Digests and web pages show the link on the source's name; a URL without one would
    # never be seen by a reader.
    if (form.source_url.data or "").strip() and not (field.data or "").strip():
        raise ValidationError(_("填写了来源链接，也请填写来源名称：读者点的是名称。"))


def _body_size(form, field) -> None:
    if len((field.data or "").encode("utf-8")) > issues.BODY_MAX_BYTES:
        limit = issues.BODY_MAX_BYTES // 1024
        raise ValidationError(_("正文超过 %(size)s KB，请拆成几篇。", size=limit))


def _int_or_none(value) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def _offered_choice(form, field) -> None:
    # Instead of SelectField's own check, whose message is WTForms' English.
    if field.data not in {value for value, _label in field.choices}:
        raise ValidationError(_("请选择一个在用的栏目。"))


class ArticleForm(FlaskForm):
    title = StringField(
        lazy_gettext("标题"),
        filters=[_strip],
        validators=[
            DataRequired(lazy_gettext("请填写标题。")),
            Length(max=issues.TITLE_MAX, message=lazy_gettext("标题最多 300 个字。")),
        ],
    )
    topic_id = SelectField(
        lazy_gettext("栏目"),
        coerce=_int_or_none,
        validate_choice=False,
        validators=[_offered_choice],
    )
    source_name = StringField(
        lazy_gettext("来源名称（可不填）"),
        filters=[_strip],
        validators=[
            _name_with_url,
            Length(max=issues.SOURCE_NAME_MAX, message=lazy_gettext("来源名称最多 300 个字。")),
        ],
    )
    source_url = StringField(
        lazy_gettext("来源链接（可不填，只接受 http:// 或 https://）"),
        filters=[issues.source_url_as_typed],
        validators=[
            Optional(),
            _http_only,
            URL(require_tld=False, message=lazy_gettext("这不是一个完整的网址。")),
            Length(max=issues.SOURCE_URL_MAX, message=lazy_gettext("网址太长。")),
        ],
    )
    lead = TextAreaField(lazy_gettext("导语（可不填，留空则自动生成）"))
    body = TextAreaField(
        lazy_gettext("正文（Markdown）"),
        validators=[DataRequired(lazy_gettext("请填写正文。")), _body_size],
    )
    preview = SubmitField(lazy_gettext("预览"))
    submit = SubmitField(lazy_gettext("保存"))

    def __init__(self, *args, current_topic_id: int | None = None, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.topic_id.choices = [
            (t.id, topic_name(t) if t.active else _("%(name)s（已归档）", name=topic_name(t)))
            for t in issues.topic_choices(current_topic_id)
        ]

    def draft(self) -> issues.ArticleDraft:
        return issues.ArticleDraft(
            topic_id=self.topic_id.data,
            title=self.title.data or "",
            body=self.body.data or "",
            lead=self.lead.data or "",
            source_name=self.source_name.data or "",
            source_url=self.source_url.data or "",
        )


def _count(label):
    return IntegerField(
        label,
        validators=[
            Optional(),
            NumberRange(1, 99999, message=lazy_gettext("请填写一个正整数。")),
        ],
    )


class IssueDetailsForm(FlaskForm):
    """An issue's masthead and envelope: title, period, number, subject, preheader."""

    title = StringField(
        lazy_gettext("标题"),
        filters=[_strip],
        validators=[
            DataRequired(lazy_gettext("请填写标题。")),
            Length(max=200, message=lazy_gettext("标题最多 200 个字。")),
        ],
    )
    period = StringField(
        lazy_gettext("期间（可不填，如 2022年8月1日-2022年8月31日）"),
        filters=[_strip],
        validators=[Length(max=100, message=lazy_gettext("最多 100 个字。"))],
    )
    year = _count(lazy_gettext("年份"))
    number = _count(lazy_gettext("本年第几期"))
    total_number = _count(lazy_gettext("总第几期"))
    subject = StringField(
        lazy_gettext("邮件主题（留空则按主题格式生成）"),
        filters=[_strip],
        validators=[Length(max=300, message=lazy_gettext("最多 300 个字。"))],
    )
    preheader = StringField(
        lazy_gettext("预览文字（收件箱里主题后显示的一行；留空则列出本期文章标题）"),
        filters=[_strip],
        validators=[Length(max=300, message=lazy_gettext("最多 300 个字。"))],
    )
    submit = SubmitField(lazy_gettext("保存"))


class ReturnForm(FlaskForm):
    """退回修改: what the editor should change."""

    comment = TextAreaField(
        lazy_gettext("退回意见（编辑会在本期页面看到）"),
        filters=[_strip],
        validators=[
            DataRequired(lazy_gettext("请写明需要修改什么。")),
            Length(max=1000, message=lazy_gettext("意见最多 1000 个字。")),
        ],
    )
    submit = SubmitField(lazy_gettext("退回修改"))


class IdentityForm(FlaskForm):
    """The publication's identity (identity.py checks the values: lengths, colour)."""

    bulletin_name = StringField(lazy_gettext("简报名称（中文）"))
    bulletin_name_en = StringField(
        lazy_gettext("简报名称（英文）"),
        description=lazy_gettext("英文读者的邮件和英文网页使用；留空则用中文名称。"),
    )
    organization = StringField(lazy_gettext("发件单位"))
    postal_address = TextAreaField(
        lazy_gettext("邮寄地址"),
        description=lazy_gettext(
            "显示在每封邮件的页脚：群发邮件必须写明发件人的邮寄地址。"
            "正式环境下，没有填写邮寄地址时不能发布。"
        ),
        render_kw={"rows": 2},
    )
    contact = StringField(
        lazy_gettext("联系方式"),
        description=lazy_gettext("例如电话或邮箱，显示在页脚的“联系我们”之后。"),
    )
    masthead_color = StringField(
        lazy_gettext("刊头颜色"),
        description=lazy_gettext(
            "邮件刊头的底色，也用于栏目标题和网页顶栏；写成 #RRGGBB。"
            "刊头文字在它上面的对比度须至少 4.5:1。"
        ),
    )
    submit = SubmitField(lazy_gettext("保存"))


class LogoForm(FlaskForm):
    logo = FileField(
        lazy_gettext("标志图片（PNG、JPEG 或 GIF，不超过 2 MB）"),
        validators=[FileRequired(lazy_gettext("请选择一个文件。"))],
    )
    logo_alt = StringField(
        lazy_gettext("图片的替代文字"),
        description=lazy_gettext("图片不显示时和读屏软件读出的文字；留空则用简报名称。"),
    )
    submit = SubmitField(lazy_gettext("上传标志"))


class RemoveLogoForm(FlaskForm):
    """Removing the logo must be ticked first: a form that works without JavaScript."""

    confirm = BooleanField(
        lazy_gettext("确认删除标志：之后的邮件和网页不再显示它"),
        validators=[DataRequired(lazy_gettext("请先勾选确认。"))],
    )
    submit = SubmitField(lazy_gettext("删除标志"))


class ApiTokenForm(FlaskForm):
    """A new API token: its name and what it may do."""

    name = StringField(
        lazy_gettext("名称（用在哪里，例如“官网 CMS”）"),
        validators=[DataRequired(message=lazy_gettext("请填写令牌名称。")), Length(max=100)],
    )
    role = SelectField(
        lazy_gettext("权限"),
        choices=[
            SelectChoice("read-only", lazy_gettext("只读（编辑能看到的内容，不能修改）")),
            SelectChoice("editor", lazy_gettext("编辑（简报：导入、修改、送审、发布）")),
            SelectChoice("admin", lazy_gettext("管理员（包括读者地址和审核）")),
        ],
    )
    submit = SubmitField(lazy_gettext("创建令牌"))


class WebhookForm(FlaskForm):
    """A new webhook: the receiver's address and the events it hears about."""

    url = StringField(
        lazy_gettext("接收地址（https://…）"),
        validators=[DataRequired(message=lazy_gettext("请填写接收地址。")), Length(max=2000)],
    )
    events = MultiCheckboxField(lazy_gettext("事件"))
    submit = SubmitField(lazy_gettext("添加 Webhook"))
