"""Our `bulletin` commands, registered on the Flask CLI by create_app() (`webapp.entry.main`
is the console script).

Configuration and connection problems end in one line naming the setting, never a traceback.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import click
import redis as redis_lib
from flask import Flask, current_app
from flask.cli import with_appcontext
from honcho.environ import parse_procfile
from honcho.manager import Manager
from sqlalchemy import func, select, text
from sqlalchemy.exc import OperationalError

from . import bounces, localredis, queue
from .catcher import serve
from .config import ConfigError
from .delivery import start_send
from .errors import describe_in_english
from .extensions import db
from .importing import DocumentError
from .issues import import_document
from .models import (
    IMPORT_SOURCE_CLI,
    Issue,
    StaffRole,
    StaffUser,
    Subscriber,
    SubscriberStatus,
    Topic,
)
from .publishing import PublishError, progress
from .readers import check_size
from .staff import StaffError, create_staff, set_password
from .subscriber_csv import CsvImportError, export_subscribers, import_subscribers
from .subscriptions import SubscriptionError
from .transactions import after_commit, transaction

# sysexits.h's EX_TEMPFAIL makes an MTA that pipes mail into us keep the message and try
# again later; any other failure would bounce it (or lose it, for a bounce).
EX_TEMPFAIL = 75
EX_DATAERR = 65  # sysexits.h: the input was not what it should be


def check_services(app: Flask, *, database: bool = True, redis: bool = True) -> None:
    """Connect to the database and Redis once; raise ConfigError naming the bad setting."""
    if database:
        try:
            with app.app_context():
                db.session.execute(text("SELECT 1"))
        except OperationalError as exc:
            reason = str(exc.orig).strip().splitlines()[0] if exc.orig else str(exc)
            raise ConfigError("DATABASE_URL", f"cannot connect to the database: {reason}") from None
    if redis:
        url = app.config["REDIS_URL"]
        try:
            redis_lib.Redis.from_url(url, socket_connect_timeout=2).ping()
        except redis_lib.exceptions.RedisError as exc:
            raise ConfigError("REDIS_URL", f"cannot connect to Redis at {url}: {exc}") from None


def register_commands(app: Flask) -> None:
    for command in (
        create_staff_command,
        set_password_command,
        import_issue_command,
        publish_command,
        issue_status_command,
        demo_command,
        smtp_catcher_command,
        dev_command,
        subscribers_group,
        ingest_bounce_command,
    ):
        app.cli.add_command(command)


@click.command("create-staff")
@click.argument("email")
@click.option(
    "--role",
    type=click.Choice(["admin", "editor", "reviewer"]),
    default="editor",
    show_default=True,
)
@click.option("--password", help="Generated and printed once when omitted.")
@with_appcontext
def create_staff_command(email: str, role: str, password: str | None) -> None:
    """Create a staff account."""
    try:
        with transaction():
            user, secret = create_staff(email, password, StaffRole(role))
    except (StaffError, SubscriptionError) as exc:
        raise click.ClickException(describe_in_english(exc)) from None
    click.echo(f"Created {role} {user.email}.")
    if not password:
        click.echo(f"Password (shown once): {secret}")


@click.command("set-password")
@click.argument("email")
@click.option("--password", help="Generated and printed once when omitted.")
@with_appcontext
def set_password_command(email: str, password: str | None) -> None:
    """Give a staff account a new password (when it was lost)."""
    try:
        with transaction():
            user, secret = set_password(email, password)
    except StaffError as exc:
        raise click.ClickException(describe_in_english(exc)) from None
    click.echo(f"New password set for {user.email}.")
    if not password:
        click.echo(f"Password (shown once): {secret}")


@click.command("import-issue")
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@with_appcontext
def import_issue_command(file: Path) -> None:
    """Import a bulletin document as a new draft issue and print the import report."""
    try:
        # Before reading: a 2 GB file is refused unread.
        check_size(file.stat().st_size, current_app.config["IMPORT_MAX_BYTES"])
        data = file.read_bytes()
    except OSError as exc:
        raise click.ClickException(f"{file}: {exc.strerror}") from None
    except DocumentError as exc:
        raise click.ClickException(f"{file}: {describe_in_english(exc)}") from None
    try:
        with transaction():
            issue, report = import_document(data)
    except DocumentError as exc:
        raise click.ClickException(f"{file}: {describe_in_english(exc)}") from None
    click.echo(format_report(report))
    click.echo(f"Created draft issue {issue.id}: {issue.title}")


_FORMAT_NAMES = {"markdown": "Markdown", "docx": "Word (.docx)", "pdf": "PDF"}


def format_report(report) -> str:
    read_from = _FORMAT_NAMES.get(report.format, report.format)
    if report.pages:
        read_from += f", {report.pages} pages"
    lines = [f"{report.title}  {report.period or ''}".rstrip(), f"Read from: {read_from}", ""]
    for section in report.sections:
        lines.append(f"{section.name}: {len(section.titles)} articles")
    lines.append("")
    for article in report.articles:
        size = len(article.body.encode("utf-8"))
        lines.append(f"  [{article.section}] {article.title} ({size:,} bytes)")
        lines.append(
            f"      source: {article.source_name or '-'} {article.source_url or ''}".rstrip()
        )
        lines.append(f"      from: {article.origin}")
    lines.append("")
    lines.append(f"Repaired paragraphs: {len(report.repaired)}")
    lines.extend(f"  {describe_in_english(note)}" for note in report.repaired)
    if report.format == "pdf":
        lines.append(f"Lines joined into paragraphs: {report.joined_lines:,}")
        lines.append(f"Dropped page headers, footers and numbers: {len(report.furniture)}")
        lines.extend(f"  {describe_in_english(note)}" for note in report.furniture)
    lines.append(f"Dropped debris: {len(report.dropped)}")
    lines.extend(f"  {describe_in_english(note)}" for note in report.dropped)
    if report.normalized:
        lines.append(f"Compatibility characters replaced (such as ⼯ -> 工): {report.normalized:,}")
    lines.append(f"Images not imported: {len(report.images)}")
    lines.extend(f"  {origin}" for origin in report.images)
    lines.append(f"Warnings: {len(report.warnings)}")
    lines.extend(f"  {describe_in_english(note)}" for note in report.warnings)
    return "\n".join(lines)


@click.command("publish")
@click.argument("issue_id", type=int)
@with_appcontext
def publish_command(issue_id: int) -> None:
    """Publish an issue now: plan its deliveries and hand them to the workers."""
    try:
        with transaction():
            planned = start_send(issue_id, queue.dispatch_issue)
    except PublishError as exc:
        raise click.ClickException(describe_in_english(exc)) from None
    click.echo(f"Issue {issue_id} is sending to {planned} readers.")


@click.command("issue-status")
@click.argument("issue_id", type=int)
@with_appcontext
def issue_status_command(issue_id: int) -> None:
    """Print an issue's status and its delivery counts."""
    issue = db.session.get(Issue, issue_id)
    if issue is None:
        raise click.ClickException(f"issue {issue_id} does not exist")
    counts = progress(issue_id)
    click.echo(f"Issue {issue.id}: {issue.title} [{issue.status.value}]")
    click.echo("  " + "  ".join(f"{k}={v}" for k, v in counts.items()))


@click.command("ingest-bounce")
@click.option("--recipient", metavar="ADDR", help="The envelope recipient (Postfix: ${recipient}).")
@with_appcontext
def ingest_bounce_command(recipient: str | None) -> None:
    """Act on one bounce, complaint or unsubscribe email read from standard input.

    For an MTA pipe transport: exits 0 when the message was handled or ignored (the MTA
    drops it) and 75 when the database is unreachable (the MTA tries again later).
    """
    # A bounce is never this big: read no further than the limit, and refuse what passes it
    # (EX_DATAERR: the MTA returns it to its sender, which for a bounce is nobody).
    raw = sys.stdin.buffer.read(bounces.MAX_MESSAGE_BYTES + 1)
    if len(raw) > bounces.MAX_MESSAGE_BYTES:
        click.echo(
            f"bulletin: message larger than {bounces.MAX_MESSAGE_BYTES} bytes, not read", err=True
        )
        sys.exit(EX_DATAERR)
    try:
        with transaction():
            result = bounces.ingest(raw, recipient=recipient)
    except OperationalError as exc:
        reason = str(exc.orig).strip().splitlines()[0] if exc.orig else str(exc)
        click.echo(f"bulletin: database unavailable, try again later: {reason}", err=True)
        sys.exit(EX_TEMPFAIL)
    ids = "".join(
        f" {name}={value}"
        for name, value in (("delivery", result.delivery_id), ("subscriber", result.subscriber_id))
        if value is not None
    )
    click.echo(f"{result.kind}{ids}: {result.reason}")


@click.group("subscribers")
def subscribers_group() -> None:
    """Import and export readers as CSV."""


@subscribers_group.command("import")
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@click.option(
    "--consented",
    "mode",
    flag_value="consented",
    help="They agreed elsewhere: new readers are active at once.",
)
@click.option(
    "--send-confirmations",
    "mode",
    flag_value="confirm",
    help="New readers are pending until they confirm the email sent to them.",
)
@click.option("--dry-run", is_flag=True, help="Print what the import would do, and change nothing.")
@with_appcontext
def import_subscribers_command(file: Path, mode: str | None, dry_run: bool) -> None:
    """Import readers from a CSV file with the header email,name,sections."""
    if mode is None:
        raise click.UsageError("choose --consented or --send-confirmations")
    if mode == "confirm" and not dry_run:
        # Before importing: readers marked as mailed must really get their email.
        try:
            check_services(current_app, database=False, redis=True)
        except ConfigError as exc:
            raise click.ClickException(str(exc)) from None
    try:
        data = file.read_bytes()
    except OSError as exc:
        raise click.ClickException(f"{file}: {exc.strerror}") from None
    try:
        with transaction():
            report = import_subscribers(
                data, consented=mode == "consented", source=IMPORT_SOURCE_CLI, dry_run=dry_run
            )
            after_commit(lambda: queue.send_confirmations(report.confirmation_ids))
    except CsvImportError as exc:
        raise click.ClickException(f"{file}: {describe_in_english(exc)}") from None
    if dry_run:
        click.echo("Dry run: nothing was changed.")
    click.echo(format_csv_report(report))


def format_csv_report(report) -> str:
    lines = [
        f"Created: {report.created}",
        f"Updated: {report.updated}",
        f"Already here, unchanged: {report.unchanged}",
        f"Duplicates merged: {len(report.duplicates)}",
    ]
    lines.extend(f"  line {line}: merged into line {first}" for line, first in report.duplicates)
    lines.append(f"Skipped, suppressed: {len(report.skipped_suppressed)}")
    lines.extend(f"  line {line}" for line in report.skipped_suppressed)
    lines.append(f"Skipped, unsubscribed: {len(report.skipped_unsubscribed)}")
    lines.extend(f"  line {line}" for line in report.skipped_unsubscribed)
    lines.append(f"Errors: {len(report.errors)}")
    lines.extend(f"  line {line}: {describe_in_english(error)}" for line, error in report.errors)
    lines.append(f"Imported without some of their sections: {len(report.warnings)}")
    lines.extend(f"  line {line}: {describe_in_english(why)}" for line, why in report.warnings)
    if report.confirmations:
        lines.append(f"Confirmation emails queued: {report.confirmations}")
    return "\n".join(lines)


@subscribers_group.command("export")
@click.option(
    "-o",
    "--output",
    type=click.Path(dir_okay=False, writable=True, path_type=Path),
    help="Write to this file instead of standard output.",
)
@with_appcontext
def export_subscribers_command(output: Path | None) -> None:
    """Export every reader as CSV: email,name,status,sections,created_at."""
    text = export_subscribers()
    if output is None:
        click.echo(text, nl=False)
        return
    try:
        # UTF-8 with a BOM: Excel then reads the Chinese names correctly.
        output.write_text(text, encoding="utf-8-sig", newline="")
    except OSError as exc:
        raise click.ClickException(f"{output}: {exc.strerror}") from None
    click.echo(f"Exported to {output}.", err=True)


DEMO_DOCUMENT = Path(__file__).parent / "demo" / "bulletin-2022-08.md"
DEMO_STAFF = "admin@example.com"
DEMO_SUBSCRIBER = "reader@example.com"
DEMO_REVIEWER = "reviewer@example.com"


@click.command("demo")
@with_appcontext
def demo_command() -> None:
    """Load the sample bulletin, a demo reader and a staff login (each only once)."""
    with transaction():
        if not db.session.scalar(select(func.count()).select_from(Issue)):
            issue, report = import_document(DEMO_DOCUMENT.read_bytes())
            click.echo(
                f"Loaded the sample bulletin as draft issue {issue.id} "
                f"({len(report.articles)} articles)."
            )
        if not db.session.scalar(select(Subscriber).where(Subscriber.email == DEMO_SUBSCRIBER)):
            topics = db.session.scalars(select(Topic).where(Topic.active.is_(True))).all()
            db.session.add(
                Subscriber(
                    email=DEMO_SUBSCRIBER,
                    name="演示读者",
                    status=SubscriberStatus.ACTIVE,
                    topics=list(topics),
                )
            )
            click.echo(f"Added the demo reader {DEMO_SUBSCRIBER} with every section.")
        if not db.session.scalar(select(func.count()).select_from(StaffUser)):
            user, password = create_staff(DEMO_STAFF, role=StaffRole.ADMIN)
            click.echo(f"Staff login: {user.email}  password: {password}  (shown once)")
            # Review is on by default and nobody approves their own issue: a second login.
            user, password = create_staff(DEMO_REVIEWER, role=StaffRole.REVIEWER)
            click.echo(f"Reviewer login: {user.email}  password: {password}  (shown once)")


@click.command("smtp-catcher")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8025, show_default=True, type=int)
@click.option(
    "--maildir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Default: the instance folder's maildir/.",
)
def smtp_catcher_command(host: str, port: int, maildir: Path | None) -> None:
    """A local SMTP server that keeps every message it receives in a Maildir (development)."""
    target = maildir or Path(current_app.instance_path) / "maildir"
    serve(host, port, target)


@click.command("dev")
def dev_command() -> None:
    """Upgrade the database, load the demo, and run web + worker + SMTP catcher (+ Redis)."""
    app = current_app._get_current_object()  # noqa: SLF001
    env = dict(os.environ, BULLETIN_ENV=app.config["BULLETIN_ENV"], PYTHONUNBUFFERED="1")
    bin_dir = Path(sys.executable).parent
    env["PATH"] = f"{bin_dir}{os.pathsep}{env.get('PATH', '')}"
    # PORT moves the site (Procfile.dev reads it); links in the caught mail follow it.
    port = env.setdefault("PORT", "5000")
    env.setdefault("BASE_URL", f"http://127.0.0.1:{port}")
    redis_server = start_private_redis(app.config["REDIS_URL"], Path(app.instance_path))
    try:
        for step in (["db", "upgrade"], ["demo"]):
            subprocess.run([str(bin_dir / "bulletin"), *step], check=True, env=env)
        click.echo(
            f"Bulletin is starting on http://127.0.0.1:{port}/ (staff: /admin/). Ctrl-C stops it."
        )
        manager = Manager()
        procfile = parse_procfile((Path(app.root_path).parent / "Procfile.dev").read_text())
        for name, command in procfile.processes.items():
            manager.add_process(name, command, env=env)
        manager.loop()
    finally:
        if redis_server is not None:
            localredis.stop(redis_server)
    sys.exit(manager.returncode)


def start_private_redis(url: str, instance: Path) -> subprocess.Popen | None:
    """Start a private server when none answers at `url`; None if one already does.

    It is up before the worker starts, because the worker refuses to start without Redis.
    """
    if localredis.answers(url):
        return None
    binary = localredis.server_binary()
    if binary is not None:
        click.echo(f"No Redis at {url}: starting a private {binary.name} ({binary}).")
    try:
        return localredis.start(url, instance, binary)
    except localredis.LocalRedisError as exc:
        raise click.ClickException(f"REDIS_URL: {exc}") from None
