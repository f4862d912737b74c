"""How fast captures go: one request per host every few seconds, and when a failed capture
is tried again or given up.

`HostPace` hands out turns per host in the order they are asked for, each an interval
after the last request to the host ended; hosts do not wait for each other. Its clock and
sleep are injectable so tests run without waiting.
`after_failure` is the pure retry decision.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from aggregator.config import CAPTURE
from aggregator.fetch import host_key

DEFAULT_INTERVAL: float = CAPTURE["per_host_interval"].default  # seconds, host to host
MAX_HOSTS = 1000  # hosts remembered before the idle ones are forgotten

# Statuses a retry will not change: the page is not there, or not for us (451).
PERMANENT_STATUSES = frozenset({404, 410, 451})


class HostPace:
    """One request at a time per host, each starting at least `interval` seconds after the
    one before it ended, in the order they were asked for (wget's --wait: the pause is
    between retrievals). Timed from the start instead, a request that went out late left
    the next one a few milliseconds behind it at the server."""

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
        self._hosts: dict[str, _Host] = {}

    @contextlib.asynccontextmanager
    async def turn(self, url: str) -> AsyncIterator[None]:
        """Hold `url`'s host for one request: enter when it may start, leave when it ended."""
        host = self._host(host_key(url))
        async with host.lock:  # asyncio's Lock is first come, first served
            wait = host.not_before - self.clock()
            if wait > 0:
                await self.sleep(wait)
            try:
                yield
            finally:
                host.not_before = self.clock() + self.interval

    def _host(self, name: str) -> _Host:
        """A daemon meets new hosts for ever (whatever articles link to): past MAX_HOSTS,
        the hosts nobody holds or waits for and whose pause is over are forgotten."""
        if name not in self._hosts and len(self._hosts) >= MAX_HOSTS:
            now = self.clock()
            for idle in [n for n, h in self._hosts.items() if h.idle(now)]:
                del self._hosts[idle]
        return self._hosts.setdefault(name, _Host())


@dataclass(slots=True)
class _Host:
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    not_before: float = float("-inf")  # when its next request may start

    def idle(self, now: float) -> bool:
        return not self.lock.locked() and now >= self.not_before


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    max_attempts: int = CAPTURE["max_attempts"].default  # failures before it is given up
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
        return GiveUp(f"{error} (retrying will not change a {status})")
    if attempts >= policy.max_attempts:
        return GiveUp(f"{error} ({attempts} attempts)")
    doubled = policy.first_delay * 2 ** min(max(attempts, 1) - 1, 32)
    delay = min(policy.max_delay, doubled) * (0.5 + rand / 2)
    at = now + timedelta(seconds=delay)
    if retry_after is not None:
        at = max(at, min(retry_after, now + timedelta(seconds=policy.max_delay)))
    return Retry(at)
