"""Entry points build the app here: the `bulletin` command, WSGI (`webapp.wsgi`) and the
worker (`tasks.worker`). A bad setting or an unreachable service ends the process with one
line naming the setting, never a traceback.
"""

from __future__ import annotations

import sys

from flask import Flask
from flask.cli import FlaskGroup

from . import create_app
from .cli import EX_TEMPFAIL, check_services
from .config import ConfigError

# Commands that do not touch the database (or that start it themselves).
NO_DATABASE = {"smtp-catcher", "dev", "routes", "--help", "-h", "--version"}
NEEDS_REDIS = {"publish", "run"}
# Commands an MTA pipes mail into: their failures exit EX_TEMPFAIL.
MTA_COMMANDS = {"ingest-bounce"}


def app_or_exit(*, check: bool = False, redis: bool = True, status: int = 2) -> Flask:
    """Build the app for a process entry point (WSGI, worker); exit with one line if we can't."""
    try:
        app = create_app()
        if check:
            check_services(app, redis=redis)
    except ConfigError as exc:
        print(f"bulletin: configuration error: {exc}", file=sys.stderr)
        raise SystemExit(status) from None
    return app


def main(argv: list[str] | None = None) -> None:
    """Entry point of the `bulletin` console script."""
    args = sys.argv[1:] if argv is None else argv
    command = next((a for a in args if not a.startswith("-")), args[0] if args else "--help")
    wants_help = any(a in ("--help", "-h") for a in args)
    status = EX_TEMPFAIL if command in MTA_COMMANDS else 2
    app = app_or_exit(status=status)
    if not wants_help and command not in NO_DATABASE:
        try:
            check_services(app, redis=command in NEEDS_REDIS)
        except ConfigError as exc:
            print(f"bulletin: configuration error: {exc}", file=sys.stderr)
            raise SystemExit(status) from None
    cli = FlaskGroup(create_app=lambda: app, help="Bulletin: subscriptions and sectioned digests.")
    cli.main(args=args, prog_name="bulletin")
