from flask_wtf import FlaskForm
from wtforms import EmailField, PasswordField, SubmitField
from wtforms.validators import DataRequired


class LoginForm(FlaskForm):
    email = EmailField("邮箱", validators=[DataRequired()])
    password = PasswordField("密码", validators=[DataRequired()])
    submit = SubmitField("登录")


class ActionForm(FlaskForm):
    """A form with only a CSRF token, for buttons such as publish."""

    submit = SubmitField("OK")
