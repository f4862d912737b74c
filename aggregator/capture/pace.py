"""How fast captures go: one request per host every few seconds, and when a failed capture
is tried again or given up.

`HostPace` hands out turns per host in the order they are asked for; hosts do not wait
for each other. Its clock and sleep are injectable so tests run without waiting.
`after_failure` is the pure retry decision.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from urllib.parse import urlsplit

DEFAULT_INTERVAL = 2.0  # seconds between two requests to one host

# Statuses a retry will not change: the page is not there, or not for us (451).
PERMANENT_STATUSES = frozenset({404, 410, 451})


class HostPace:
    """At most one request per host every `interval` seconds."""

    def __init__(
        self,
        interval: float = DEFAULT_INTERVAL,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self.interval = interval
        self.clock = clock
        self.sleep = sleep
        self._next_turn: dict[str, float] = {}  # host -> earliest time of its next request

    async def turn(self, url: str) -> None:
        """Return when a request to `url`'s host may start."""
        host = (urlsplit(url).hostname or "").lower()
        now = self.clock()
        # Reserved before sleeping (no await in between), so waiters get successive turns.
        start = max(now, self._next_turn.get(host, now))
        self._next_turn[host] = start + self.interval
        if start > now:
            await self.sleep(start - now)


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    max_attempts: int = 4  # the capture is given up after this many failures
    first_delay: float = 15 * 60.0  # seconds after the first failure; doubles with each
    max_delay: float = 24 * 3600.0


@dataclass(frozen=True, slots=True)
class Retry:
    at: datetime


@dataclass(frozen=True, slots=True)
class GiveUp:
    reason: str  # recorded with the item


def after_failure(
    attempts: int,
    error: str,
    now: datetime,
    rand: float,
    *,
    status: int | None = None,
    retry_after: datetime | None = None,
    policy: RetryPolicy = RetryPolicy(),
) -> Retry | GiveUp:
    """What to do after the `attempts`-th failed capture (1 = the first), which failed with
    `error` (and `status` when the server answered).

    The delay doubles from `first_delay` up to `max_delay`, jittered to between half and
    all of that (`rand` in [0, 1)) so captures that failed together spread out; a later
    Retry-After is honoured up to `max_delay`.
    """
    if status in PERMANENT_STATUSES:
        return GiveUp(f"gave up: {error} (retrying will not change a {status})")
    if attempts >= policy.max_attempts:
        return GiveUp(f"gave up after {attempts} attempts: {error}")
    doubled = policy.first_delay * 2 ** min(max(attempts, 1) - 1, 32)
    delay = min(policy.max_delay, doubled) * (0.5 + rand / 2)
    at = now + timedelta(seconds=delay)
    if retry_after is not None:
        at = max(at, min(retry_after, now + timedelta(seconds=policy.max_delay)))
    return Retry(at)
