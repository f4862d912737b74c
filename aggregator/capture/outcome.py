"""What one capture attempt comes to: pure decisions from what the fetch and extraction gave.

Each function returns the `CaptureOutcome` the store records; none does I/O. Failures go
through `pace.after_failure`: retried later with back-off, or given up with the reason.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import TYPE_CHECKING

from aggregator.capture.pace import GiveUp, RetryPolicy, after_failure
from aggregator.models import Article, CaptureJob, CaptureOutcome, CaptureState

if TYPE_CHECKING:  # trafilatura loads when a page is extracted, not with this module
    from aggregator.capture.extract import Extracted


def refused(job: CaptureJob, now: datetime, reason: str) -> CaptureOutcome:
    """The fetcher refused the link or a redirect of it (`reason`, in its words): a retry
    would be refused again."""
    return CaptureOutcome(CaptureState.GIVEN_UP, now, job.attempts, reason=reason)


def disallowed(job: CaptureJob, now: datetime, url: str) -> CaptureOutcome:
    reason = f"robots.txt disallows {url} for our User-Agent"
    return CaptureOutcome(CaptureState.DISALLOWED, now, 0, reason=reason)


def failed(
    job: CaptureJob,
    now: datetime,
    rand: float,
    error: str,
    *,
    status: int | None = None,
    retry_after: datetime | None = None,
    policy: RetryPolicy,
) -> CaptureOutcome:
    attempts = job.attempts + 1
    decision = after_failure(
        attempts, error, now, rand, status=status, retry_after=retry_after, policy=policy
    )
    if isinstance(decision, GiveUp):
        return CaptureOutcome(CaptureState.GIVEN_UP, now, attempts, status=status,
                              reason=decision.reason)  # fmt: skip
    return CaptureOutcome(
        CaptureState.PENDING,
        now,
        attempts,
        next_attempt=decision.at,
        status=status,
        reason=f"attempt {attempts} failed: {error}",
    )


def not_modified(job: CaptureJob, now: datetime) -> CaptureOutcome:
    """A conditional re-fetch answered 304: what is stored is still the page."""
    return CaptureOutcome(CaptureState.CAPTURED, now, 0, status=304)


def answered(
    job: CaptureJob,
    now: datetime,
    status: int,
    final_url: str,
    headers: Mapping[str, str],
    page: bytes,
    extracted: Extracted | None,
) -> CaptureOutcome:
    """A page came: an article (stored with its item) or, with the reason, none."""
    validators = {"etag": headers.get("etag"), "last_modified": headers.get("last-modified")}
    common = {"status": status, "final_url": final_url, "page": page, **validators}
    if extracted is None:
        kind = headers.get("content-type", "").split(";", 1)[0].strip()
        reason = f"not an HTML page ({kind})"
        return CaptureOutcome(CaptureState.NOT_ARTICLE, now, 0, reason=reason, **common)
    if not extracted.is_article:
        reason = f"{extracted.verdict}: {extracted.reason}"
        return CaptureOutcome(CaptureState.NOT_ARTICLE, now, 0, reason=reason, **common)
    article = Article(
        extracted.html, extracted.text, extracted.title, extracted.author, extracted.published
    )
    return CaptureOutcome(CaptureState.CAPTURED, now, 0, article=article, **common)
