"""The publication's identity: its name (Chinese and English), the organization that sends
it, the postal address and a contact, the masthead colour and a logo.

An admin sets them on /admin/identity; the text and the colour are site settings
(`site_settings`, defaults from the environment: BULLETIN_NAME, POSTAL_ADDRESS, ...), the
logo is a row of `site_images`, so every web machine and worker sees the same identity.
Every email (digest and notices) shows them in its masthead and footer, and so does the web
version. Bulk senders must say who and where they are: in production an issue is not
published or scheduled while the postal address is empty (`ensure_publishable`).

A digest is rendered from the identity of the moment: previews are cached by it
(`preview._rendered`), and an issue keeps, while it sends, the one it started with (its
digests are stored when sending starts).
"""

from __future__ import annotations

import hashlib
import io
import re
from dataclasses import dataclass, replace
from email.utils import quote

from coloraide import Color
from flask import Flask, current_app
from flask_babel import get_locale
from PIL import Image, ImageOps, UnidentifiedImageError
from sqlalchemy import select
from sqlalchemy.exc import SQLAlchemyError

from . import site_settings
from .errors import BulletinError
from .extensions import db
from .i18n import normalize_locale
from .models import SiteImage
from .rendering import Identity
from .tokens import external_url

TEXT_SETTINGS = (
    "bulletin_name",
    "bulletin_name_en",
    "organization",
    "postal_address",
    "contact",
    "masthead_color",
)
# The longest each text may be (characters).
LIMITS = {
    "bulletin_name": 60,
    "bulletin_name_en": 100,
    "organization": 100,
    "postal_address": 200,
    "contact": 200,
    "logo_alt": 200,
}

# The masthead's text colours in email_templates/_styles.css (.masthead-name and
# .masthead-period are the lighter, .masthead-title white); a background must stand out
# from both. Their sizes (14 px) are normal text: WCAG AA asks 4.5:1.
MASTHEAD_TEXT = ("#ffffff", "#fde8e8")
MIN_CONTRAST = 4.5

LOGO = "logo"
LOGO_MAX_BYTES = 2 * 1024 * 1024
LOGO_MIN_SIDE = 16  # pixels
LOGO_MAX_PIXELS = 25_000_000  # refused before decoding: a small file can unpack to gigabytes
LOGO_FORMATS = {"PNG", "JPEG", "GIF"}
WEB_BOX = (1200, 1200)  # pages and link cards (Open Graph wants 1200 wide at most)
# The email masthead's inner width (600 less 2 x 32 px padding) and a height that keeps a
# square logo from pushing the issue below the fold; the image keeps up to twice as many
# pixels, for retina screens.
EMAIL_BOX = (536, 96)


class IdentityError(BulletinError):
    """An identity value or logo that cannot be used; the code says why."""


@dataclass(frozen=True)
class LogoSummary:
    """What pages need of the logo, without its bytes."""

    alt: str
    digest: str
    email_width: int
    email_height: int
    web_width: int
    web_height: int

    @property
    def web_url(self) -> str:
        return logo_url("web", self.digest)


def current() -> Identity:
    """The identity as stored now (one query for the texts, one for the logo's size)."""
    values = site_settings.get_values(list(TEXT_SETTINGS))
    return _identity(values, logo_summary())


def sender(locale: str) -> str:
    """The From of an email in `locale`: MAIL_FROM, except that English readers see the
    bulletin's English name (when staff gave one) as the sender's name. The address, which
    SPF, DKIM and replies depend on, stays MAIL_FROM's."""
    config = current_app.config
    english = normalize_locale(locale) == "en"
    name_en = site_settings.cached_value("bulletin_name_en").strip() if english else ""
    if not name_en:
        return config["MAIL_FROM"]
    return f'"{quote(name_en)}" <{config["MAIL_FROM_ADDRESS"]}>'


def cached() -> Identity:
    """`current()`, read through the settings cache: for every page of the site."""
    values = {key: site_settings.cached_value(key) for key in TEXT_SETTINGS}
    return _identity(values, cached_logo_summary())


def cached_logo_summary() -> LogoSummary | None:
    return site_settings.remembered("identity.logo", logo_summary)


def _identity(values: dict, logo: LogoSummary | None) -> Identity:
    identity = Identity(
        name=values["bulletin_name"].strip(),
        name_en=values["bulletin_name_en"].strip(),
        organization=values["organization"].strip(),
        postal_address=values["postal_address"].strip(),
        contact=values["contact"].strip(),
        color=values["masthead_color"],
    )
    if logo is None:
        return identity
    return replace(
        identity,
        logo_url=logo_url("email", logo.digest),
        logo_width=logo.email_width,
        logo_height=logo.email_height,
        logo_alt=logo.alt or identity.name,
    )


def logo_summary() -> LogoSummary | None:
    row = db.session.execute(
        select(
            SiteImage.alt,
            SiteImage.digest,
            SiteImage.email_width,
            SiteImage.email_height,
            SiteImage.web_width,
            SiteImage.web_height,
        ).where(SiteImage.key == LOGO)
    ).first()
    return LogoSummary(*row) if row else None


def logo_url(rendition: str, digest: str) -> str:
    """The logo's stable address; `v` only makes caches fetch a new logo at once (the
    server ignores it, so an old email shows the current logo)."""
    return external_url("public.logo", rendition=rendition, v=digest[:12])


def web_logo() -> SiteImage | None:
    return db.session.get(SiteImage, LOGO)


# --- saving --------------------------------------------------------------------------------


def save(values: dict[str, str], *, actor: str) -> list[str]:
    """Store the texts and the colour (flushed); returns the keys that changed.

    Raises `IdentityError` for an empty name, a text over its limit, or a colour that is
    not #RRGGBB or stands out too little from the masthead's text."""
    clean = {key: " ".join((values.get(key) or "").split()) for key in TEXT_SETTINGS}
    # The address may span lines on the form; one line in a footer.
    if not clean["bulletin_name"]:
        raise IdentityError("identity-name-missing", field="bulletin_name")
    for key, limit in LIMITS.items():
        if key in clean and len(clean[key]) > limit:
            raise IdentityError("identity-too-long", field=key, count=limit)
    clean["masthead_color"] = check_color(clean["masthead_color"])
    changed = []
    for key in TEXT_SETTINGS:
        if clean[key] != site_settings.get_value(key):
            site_settings.set_value(key, clean[key], actor=actor)
            changed.append(key)
    return changed


_HEX = re.compile(r"#?([0-9a-fA-F]{6}|[0-9a-fA-F]{3})")


def check_color(value: str) -> str:
    """The colour as #rrggbb, if the masthead's text stays readable on it (WCAG AA, 4.5:1).

    Raises `IdentityError`: `masthead-color-invalid`, or `masthead-color-contrast` with the
    ratio it has."""
    match = _HEX.fullmatch((value or "").strip())
    if not match:
        raise IdentityError("masthead-color-invalid", field="masthead_color")
    color = Color("#" + match.group(1)).to_string(hex=True, compress=False).lower()
    ratio = contrast(color, MASTHEAD_TEXT)
    if ratio < MIN_CONTRAST:
        raise IdentityError(
            "masthead-color-contrast",
            field="masthead_color",
            ratio=f"{int(ratio * 10) / 10:.1f}",  # rounded down: 4.47 is not "4.5"
            minimum=f"{MIN_CONTRAST:.1f}",
        )
    return color


def contrast(background: str, texts: tuple[str, ...]) -> float:
    """The lowest WCAG 2.1 contrast ratio between a background and these text colours."""
    return min(Color(background).contrast(text, method="wcag21") for text in texts)


def save_logo(data: bytes, alt: str, *, actor: str) -> SiteImage:
    """Check an uploaded image and store it, sized for pages and for email (flushed).

    Only PNG, JPEG and GIF (a GIF's first frame), decoded completely before anything is
    stored; raises `IdentityError` otherwise. JPEG stays JPEG; the others become PNG, which
    keeps transparency."""
    alt = " ".join((alt or "").split())
    if len(alt) > LIMITS["logo_alt"]:
        raise IdentityError("identity-too-long", field="logo_alt", count=LIMITS["logo_alt"])
    if len(data) > LOGO_MAX_BYTES:
        raise IdentityError("logo-too-large", limit=LOGO_MAX_BYTES // (1024 * 1024))
    image = _open(data)
    web = _fit(image, WEB_BOX)
    display = _fit_size(image.size, EMAIL_BOX)
    retina = _fit(image, (display[0] * 2, display[1] * 2))
    row = db.session.get(SiteImage, LOGO)
    if row is None:
        row = SiteImage(key=LOGO)
        db.session.add(row)
    kind = "JPEG" if image.format == "JPEG" else "PNG"
    row.alt = alt
    row.digest = hashlib.sha256(data).hexdigest()
    row.web_type, row.web_data = _encode(web, kind)
    row.web_width, row.web_height = web.size
    row.email_type, row.email_data = _encode(retina, kind)
    row.email_width, row.email_height = display
    row.updated_by = actor
    db.session.flush()
    site_settings.forget_cached()
    return row


def remove_logo() -> bool:
    """Delete the logo (flushed); True if there was one."""
    row = db.session.get(SiteImage, LOGO)
    if row is None:
        return False
    db.session.delete(row)
    db.session.flush()
    site_settings.forget_cached()
    return True


def _open(data: bytes) -> Image.Image:
    try:
        probe = Image.open(io.BytesIO(data))
        if probe.format not in LOGO_FORMATS:
            raise IdentityError("logo-format")
        width, height = probe.size
        if min(width, height) < LOGO_MIN_SIDE or width * height > LOGO_MAX_PIXELS:
            raise IdentityError(
                "logo-dimensions", min=LOGO_MIN_SIDE, max=LOGO_MAX_PIXELS // 1_000_000
            )
        probe.verify()  # the file's structure and checksums
        image = Image.open(io.BytesIO(data))  # verify() leaves the image unusable
        image.load()  # every pixel: a truncated file fails here, not in a reader's inbox
    except IdentityError:
        raise
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, Image.DecompressionBombError):
        raise IdentityError("logo-not-image") from None
    fmt = image.format
    image = ImageOps.exif_transpose(image)  # a phone photo's rotation
    # Resampling wants true colour: a GIF's palette would be resized pixel by pixel.
    has_alpha = image.mode in ("RGBA", "LA", "PA") or "transparency" in image.info
    image = image.convert("RGBA" if has_alpha else "RGB")
    image.format = fmt
    return image


def _fit_size(size: tuple[int, int], box: tuple[int, int]) -> tuple[int, int]:
    """`size` scaled to fit in `box`, never enlarged."""
    scale = min(1.0, box[0] / size[0], box[1] / size[1])
    return max(1, round(size[0] * scale)), max(1, round(size[1] * scale))


def _fit(image: Image.Image, box: tuple[int, int]) -> Image.Image:
    fitted = image.copy()
    fitted.thumbnail(box, Image.Resampling.LANCZOS)
    return fitted


def _encode(image: Image.Image, kind: str) -> tuple[str, bytes]:
    out = io.BytesIO()
    if kind == "JPEG":
        image.convert("RGB").save(out, "JPEG", quality=88, optimize=True, progressive=True)
        return "image/jpeg", out.getvalue()
    image.save(out, "PNG", optimize=True)
    return "image/png", out.getvalue()


# --- publishing ----------------------------------------------------------------------------


def ensure_publishable() -> None:
    """Raise `IdentityError` when an issue may not go out: in production, a bulk sender
    must give a postal address (CAN-SPAM; most mailbox providers' sender rules)."""
    if current_app.config["BULLETIN_ENV"] != "production":
        return
    if not site_settings.get_value("postal_address").strip():
        raise IdentityError("identity-postal-address-missing")


# --- pages ---------------------------------------------------------------------------------


def init_app(app: Flask) -> None:
    """Give every page the publication's name (in the page's language) and logo."""

    @app.context_processor
    def publication():
        try:
            site, logo = cached(), cached_logo_summary()
        except SQLAlchemyError:  # an error page while the database is away still renders
            db.session.rollback()
            site, logo = Identity(name=app.config["BULLETIN_NAME"]), None
        locale = normalize_locale(str(get_locale()))
        return {"site": site, "site_name": site.name_for(locale), "site_logo": logo}
