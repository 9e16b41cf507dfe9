"""How long rendering the sample bulletin takes, per section set and per reader.

    .venv/bin/python bench/render.py

Prints the premailer runs and time for each set of the sample's four sections in auto mode,
then the cost of what is done once per reader (filling the personal parts and assembling the
MIME bytes from the set's skeleton), which is what scales with the list.
"""

from __future__ import annotations

import sys
import time
from itertools import combinations
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import premailer  # noqa: E402

from tests.sample_content import sample_content  # noqa: E402
from webapp.mailer import Base64Template, MessageSkeleton  # noqa: E402
from webapp.rendering import (  # noqa: E402
    Personal,
    html_values,
    personal_values,
    pieces,
    render_digest,
)

runs = 0
_transform = premailer.Premailer.transform


def counted(self, *args, **kwargs):
    global runs
    runs += 1
    return _transform(self, *args, **kwargs)


premailer.Premailer.transform = counted


def main() -> None:
    content = sample_content("auto")
    sets = [frozenset(c) for n in range(1, 5) for c in combinations([1, 2, 3, 4], n)]
    print(f"{'sections':<10} {'html bytes':>10} {'full':>5} {'premailer':>9} {'ms':>7}")
    total = 0.0
    for chosen in sets:
        before = runs
        start = time.perf_counter()
        digest = render_digest(content, chosen)
        elapsed = time.perf_counter() - start
        total += elapsed
        label = "+".join(str(i) for i in sorted(chosen))
        print(
            f"{label:<10} {digest.html_size:>10,} {len(digest.full_article_ids):>5} "
            f"{runs - before:>9} {elapsed * 1000:>7.1f}"
        )
    print(f"all {len(sets)} sets: {total:.2f} s, {runs} premailer runs")

    digest = render_digest(content, frozenset({1, 2, 3, 4}))
    skeleton = MessageSkeleton(sender="工作简报 <bulletin@example.org>", subject=digest.subject)
    # As sending does: the bodies are base64-encoded once, each reader fills the holes.
    text_body, html_body = Base64Template(pieces(digest.text)), Base64Template(pieces(digest.html))
    readers = 2000
    start = time.perf_counter()
    for n in range(readers):
        personal = Personal(
            name=f"读者{n}",
            preferences_url=f"https://bulletin.example.org/preferences/{'x' * 80}{n}",
            unsubscribe_url=f"https://bulletin.example.org/unsubscribe/{'y' * 80}{n}",
            stop_urls={
                i: f"https://bulletin.example.org/unsubscribe/{'z' * 80}{i}" for i in range(1, 5)
            },
        )
        values = personal_values(personal)
        skeleton.render(
            to_email=f"reader{n}@example.com",
            to_name=personal.name,
            text=text_body.fill(values),
            html=html_body.fill(html_values(values)),
            message_id=f"<{n}@example.org>",
            headers={"List-Unsubscribe": f"<{personal.unsubscribe_url}>"},
        )
    per = (time.perf_counter() - start) / readers
    print(
        f"per reader (all four sections, fill + MIME): {per * 1000:.3f} ms "
        f"-> {1 / per:,.0f} messages/s/core"
    )


if __name__ == "__main__":
    main()
