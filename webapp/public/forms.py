"""Readers' forms. Labels are lazy so each request renders them in the reader's language.

Called `lazy_gettext` by name (not aliased to `_l`): `make translations` extracts only `_` and
`lazy_gettext`, and an alias would leave these labels untranslated on English pages.
"""

from flask_babel import lazy_gettext
from flask_wtf import FlaskForm
from wtforms import EmailField, SelectField, SelectMultipleField, StringField, SubmitField, widgets
from wtforms.fields.choices import SelectChoice
from wtforms.validators import DataRequired, Length

from ..i18n import LOCALES

# Stored with each sign-up as consent evidence: which wording the reader agreed to.
SUBSCRIBE_FORM_VERSION = "web-form v1"
# The same wording, on another site (the page that embeds it is recorded after it).
EMBED_FORM_VERSION = "embed-form v1"


class MultiCheckboxField(SelectMultipleField):
    """A list of checkboxes, one per choice (WTForms' documented recipe).

    The chosen ids are not checked against the choices here: `subscriptions.active_topics`
    checks them, and the views turn its error into a message the reader understands ("this
    section no longer exists, reload the page"), where WTForms would say "'4' is not a valid
    choice for this field." in English to a reader whose page went stale.
    """

    widget = widgets.ListWidget(prefix_label=False)
    option_widget = widgets.CheckboxInput()

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("validate_choice", False)
        super().__init__(*args, **kwargs)


class SubscribeForm(FlaskForm):
    email = EmailField(
        lazy_gettext("电子邮箱"),
        validators=[DataRequired(message=lazy_gettext("请填写电子邮箱。")), Length(max=320)],
    )
    name = StringField(lazy_gettext("称呼（选填）"), validators=[Length(max=100)])
    topics = MultiCheckboxField(lazy_gettext("订阅栏目"), coerce=int)
    # A honeypot: hidden from people by CSS, filled in by bots that fill in every field.
    website = StringField(lazy_gettext("网站（请留空）"))
    submit = SubmitField(lazy_gettext("订阅"))


class PreferencesForm(FlaskForm):
    name = StringField(lazy_gettext("称呼"), validators=[Length(max=100)])
    locale = SelectField(
        lazy_gettext("邮件语言"),
        choices=[SelectChoice(code, label) for code, label in LOCALES.items()],
    )
    topics = MultiCheckboxField(lazy_gettext("订阅栏目"), coerce=int)
    submit = SubmitField(lazy_gettext("保存"))


class ButtonForm(FlaskForm):
    """Only a CSRF token and a button: confirm, unsubscribe, erase."""

    submit = SubmitField(lazy_gettext("确认"))
