"""Languages: Simplified Chinese first, English too.

Every string is written in Chinese where it is used (templates, code); Chinese is the source
language, so it needs no catalog. English lives in `translations/en/LC_MESSAGES/messages.po`
(`make translations` extracts new strings and compiles). Web pages get their language from
Flask-Babel; emails, rendered in Celery tasks for a reader whose language is stored, use
`Translator` on the same catalog.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from babel.support import NullTranslations, Translations
from flask import g, has_request_context, request
from flask_babel import get_locale

TRANSLATIONS_DIR = Path(__file__).parent / "translations"
LOCALES = {"zh": "简体中文", "en": "English"}
DEFAULT_LOCALE = "zh"
# What the HTML `lang` attribute says for each locale: zh-CN picks CJK glyphs for Simplified.
HTML_LANG = {"zh": "zh-CN", "en": "en"}


def normalize_locale(value: str | None) -> str:
    """One of LOCALES for anything a browser, a form or a CSV might say ('zh-Hans', 'en_US')."""
    primary = (value or "").replace("_", "-").split("-")[0].strip().lower()
    return primary if primary in LOCALES else DEFAULT_LOCALE


@lru_cache(maxsize=len(LOCALES))
def _catalog(locale: str) -> NullTranslations:
    return Translations.load(str(TRANSLATIONS_DIR), [locale])


class Translator:
    """gettext for one locale, with `%(name)s` values: `_("不再接收「%(name)s」", name=...)`."""

    def __init__(self, locale: str):
        self.locale = normalize_locale(locale)
        self._catalog = _catalog(self.locale)

    def gettext(self, message: str, **values) -> str:
        text = self._catalog.gettext(message)
        return text % values if values else text

    __call__ = gettext

    @property
    def separator(self) -> str:
        """How this language joins a list of names in running text."""
        return self.gettext("、")

    @property
    def html_lang(self) -> str:
        return HTML_LANG[self.locale]


def topic_name(topic, locale: str | None = None) -> str:
    """A topic's name in ``locale`` (default: the page's): its English name on English pages
    and in English emails when it has one, else its Chinese name. Takes anything with
    ``name`` and ``name_en``: a Topic, a rendering.TopicContent, a directory.TopicCount."""
    locale = normalize_locale(locale or (str(get_locale()) if has_request_context() else None))
    english = getattr(topic, "name_en", None)
    return english if locale == "en" and english else topic.name


LOCALE_COOKIE = "lang"


def select_locale() -> str:
    """The web page language: an explicit `?lang=`, then the reader's switch, then the browser.

    Outside a request (a shell, a CLI command calling code that translates), the default."""
    if not has_request_context():
        return DEFAULT_LOCALE
    chosen = request.args.get("lang") or request.cookies.get(LOCALE_COOKIE)
    if chosen:
        return normalize_locale(chosen)
    return request.accept_languages.best_match(list(LOCALES), default=DEFAULT_LOCALE)


def init_locale_switch(app) -> None:
    """`?lang=en` on any page switches the language and is remembered in a cookie."""

    @app.after_request
    def remember(response):
        chosen = request.args.get("lang")
        # A view that promises no cookie (a counted link) sets `g.cookieless`.
        if chosen and not g.get("cookieless"):
            response.set_cookie(
                LOCALE_COOKIE,
                normalize_locale(chosen),
                max_age=365 * 24 * 3600,
                samesite="Lax",
                secure=app.config["SESSION_COOKIE_SECURE"],
                httponly=True,
            )
        return response

    @app.context_processor
    def language():
        locale = normalize_locale(str(get_locale()))
        return {"html_lang": HTML_LANG[locale], "locale": locale, "locales": LOCALES}
