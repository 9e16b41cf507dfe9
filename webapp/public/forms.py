from flask_wtf import FlaskForm
from wtforms import EmailField, SelectMultipleField, StringField, SubmitField, widgets
from wtforms.validators import DataRequired, Length


class MultiCheckboxField(SelectMultipleField):
    """A list of checkboxes, one per choice (WTForms' documented recipe)."""

    widget = widgets.ListWidget(prefix_label=False)
    option_widget = widgets.CheckboxInput()


class SubscribeForm(FlaskForm):
    email = EmailField(
        "电子邮箱", validators=[DataRequired(message="请填写电子邮箱"), Length(max=320)]
    )
    name = StringField("称呼（选填）", validators=[Length(max=100)])
    topics = MultiCheckboxField("订阅栏目", coerce=int)
    submit = SubmitField("订阅")


class PreferencesForm(FlaskForm):
    name = StringField("称呼", validators=[Length(max=100)])
    topics = MultiCheckboxField("订阅栏目", coerce=int)
    submit = SubmitField("保存")


class ConfirmForm(FlaskForm):
    submit = SubmitField("确认订阅")
