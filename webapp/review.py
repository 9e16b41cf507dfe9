"""Review before sending (送审 / 审核): an editor submits a draft, a reviewer approves it or
returns it with a comment, and only an approved issue may be published or scheduled.

A reviewer is an admin or a staff member with the `reviewer` role, and never the person
who submitted the issue: the point is a second pair of eyes. Any edit to an approved issue
returns it to draft (`reopen_after_edit`, called by `issues.claim_for_edit`). Admins can
turn review off for a small team (the `review_required` setting, on by default).

Every step is one conditional UPDATE from the stages it may come from, like the status
moves in `publishing`, so two reviewers cannot both act on one submission. Functions flush
with their audit entry; the caller commits and then queues the reviewers' emails.
"""

from __future__ import annotations

from sqlalchemy import select, update

from . import audit, site_settings
from .errors import BulletinError
from .extensions import db
from .labels import label
from .models import Issue, IssueStatus, ReviewStage, StaffRole, StaffUser, utcnow

COMMENT_MAX = 1000
REVIEWER_ROLES = (StaffRole.ADMIN, StaffRole.REVIEWER)


class ReviewError(BulletinError):
    """A review step this issue or this person cannot take now; the code says why."""


def review_required() -> bool:
    """Whether an issue must be approved before it is published or scheduled."""
    return bool(site_settings.get_value("review_required"))


def can_review(user: StaffUser) -> bool:
    return user.role in REVIEWER_ROLES


def reviewers(*, besides: str = "") -> list[StaffUser]:
    """The active staff who may approve, except `besides` (the submitter)."""
    return list(
        db.session.scalars(
            select(StaffUser)
            .where(
                StaffUser.role.in_(REVIEWER_ROLES),
                StaffUser.active.is_(True),
                StaffUser.email != besides,
            )
            .order_by(StaffUser.id)
        )
    )


def _move(issue_id: int, allowed: tuple[ReviewStage, ...], to: ReviewStage, **values) -> Issue:
    issue = db.session.get(Issue, issue_id)
    if issue is None:
        raise ReviewError("issue-missing", id=issue_id)
    moved = db.session.execute(
        update(Issue)
        .where(
            Issue.id == issue_id,
            Issue.status == IssueStatus.DRAFT,
            Issue.review_stage.in_(allowed),
        )
        .values(review_stage=to, **values)
        .execution_options(synchronize_session=False)
    ).rowcount
    db.session.refresh(issue)
    if moved != 1:
        raise ReviewError("review-stage", id=issue_id, stage=stage_label(issue))
    return issue


def submit(issue_id: int, actor: StaffUser) -> Issue:
    """送审: a draft (or a returned one) goes to the reviewers. Raises `ReviewError`."""
    issue = db.session.get(Issue, issue_id)
    if issue is not None and not issue.articles:
        raise ReviewError("review-empty", id=issue_id)
    issue = _move(
        issue_id,
        (ReviewStage.DRAFT, ReviewStage.RETURNED),
        ReviewStage.IN_REVIEW,
        submitted_by=actor.email,
        review_comment="",
    )
    audit.record("submit-review", issue_id=issue_id)
    return issue


def approve(issue_id: int, actor: StaffUser) -> Issue:
    """审核通过: only a reviewer other than the submitter. Raises `ReviewError`."""
    _check_reviewer(issue_id, actor)
    issue = _move(
        issue_id,
        (ReviewStage.IN_REVIEW,),
        ReviewStage.APPROVED,
        reviewed_by=actor.email,
        reviewed_at=utcnow(),
        review_comment="",
    )
    audit.record("approve", issue_id=issue_id)
    return issue


def return_for_changes(issue_id: int, actor: StaffUser, comment: str) -> Issue:
    """退回修改 with a comment saying what to change. Raises `ReviewError`."""
    _check_reviewer(issue_id, actor)
    comment = comment.strip()
    if not comment:
        raise ReviewError("review-comment-missing")
    if len(comment) > COMMENT_MAX:
        raise ReviewError("review-comment-too-long", count=COMMENT_MAX)
    issue = _move(
        issue_id,
        (ReviewStage.IN_REVIEW,),
        ReviewStage.RETURNED,
        reviewed_by=actor.email,
        reviewed_at=utcnow(),
        review_comment=comment,
    )
    audit.record("return-review", issue_id=issue_id, detail=comment)
    return issue


def _check_reviewer(issue_id: int, actor: StaffUser) -> None:
    if not can_review(actor):
        raise ReviewError("review-not-reviewer")
    issue = db.session.get(Issue, issue_id)
    if issue is not None and issue.submitted_by == actor.email:
        raise ReviewError("review-own")


def reopen_after_edit(issue: Issue) -> None:
    """An approved issue that changes goes back to draft: what was approved is no longer
    what would be sent. While review is required, a scheduled one is unscheduled too."""
    if issue.review_stage != ReviewStage.APPROVED:
        return
    issue.review_stage = ReviewStage.DRAFT
    if issue.status == IssueStatus.SCHEDULED and review_required():
        issue.status = IssueStatus.DRAFT
        issue.scheduled_at = None
    db.session.flush()
    audit.record("review-reopened", issue_id=issue.id)


def ensure_approved(issue: Issue) -> None:
    """Raise `ReviewError` if review is required and the issue is not approved."""
    if review_required() and issue.review_stage != ReviewStage.APPROVED:
        raise ReviewError("issue-not-approved", id=issue.id)


def stage_label(issue: Issue) -> str:
    """Where the issue stands, in staff words: its review stage while it is a draft, then
    its sending status."""
    return label(issue.review_stage if issue.status == IssueStatus.DRAFT else issue.status)
