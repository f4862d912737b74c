"""robots.txt, as RFC 9309 reads it, per host, cached.

Rules are parsed with Protego (Scrapy's parser) rather than urllib.robotparser: Protego
follows RFC 9309, where the longest matching rule wins and `*` and `$` are wildcards, and
urllib.robotparser takes the first rule that matches and knows no wildcards, so a common
"Disallow: /" followed by "Allow: /news/" would lock us out of what the site allows.

What the answer means (RFC 9309, section 2.3.1): 2xx, the rules (the first 500 KiB);
4xx, no rules (allow all); 5xx or no answer at all, disallow all for now, asked again
sooner than a good answer. Fetching is the caller's: the cache is handed an async
`get(url) -> (status, body)` (status None when no HTTP answer came), and `allowed` is pure.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Literal
from urllib.parse import urlsplit

from protego import Protego

MAX_BYTES = 500 * 1024  # RFC 9309: parse at least 500 KiB; what follows is ignored
TTL = 24 * 3600.0  # seconds; RFC 9309: a cached robots.txt should not be used longer
ERROR_TTL = 3600.0  # a 5xx or no answer is asked again after this

# (status, body), or (None, b"", why) when robots.txt could not be fetched
Answer = tuple[int | None, bytes] | tuple[None, bytes, str]
Get = Callable[[str], Awaitable[Answer]]
Policy = Literal["rules", "allow all", "disallow all"]


@dataclass(frozen=True, slots=True)
class Rules:
    policy: Policy
    reason: str  # what the answer was, for logs and records
    parsed: Protego | None = None  # only for policy "rules"


def robots_url(url: str) -> str:
    """Where the robots.txt that governs `url` lives (scheme, host and port matter)."""
    parts = urlsplit(url)
    return f"{parts.scheme.lower()}://{parts.netloc.lower()}/robots.txt"


def rules_from_answer(status: int | None, body: bytes, error: str | None = None) -> Rules:
    """The rules of robots.txt's answer; `error` says why there was none (status None)."""
    if status is None:
        why = f": {error}" if error else ""
        return Rules("disallow all", f"robots.txt unreachable{why}")
    if status >= 500:
        return Rules("disallow all", f"robots.txt answered {status}")
    if status >= 400:
        return Rules("allow all", f"robots.txt answered {status}: no rules")
    if not 200 <= status < 300:
        # RFC 9309: redirects are followed by the fetcher; one left over means unavailable.
        return Rules("allow all", f"robots.txt answered {status}: unavailable, no rules")
    return Rules("rules", f"robots.txt answered {status}", Protego.parse(_capped_text(body)))


def _capped_text(body: bytes) -> str:
    """The first MAX_BYTES, cut at the last line end so no rule is read half."""
    if len(body) > MAX_BYTES:
        body = body[: body.rfind(b"\n", 0, MAX_BYTES) + 1]
    return body.decode("utf-8", errors="replace")


def allowed(rules: Rules, url: str, agent: str) -> bool:
    """May `agent` (our whole User-Agent; groups naming its product token apply) fetch `url`."""
    if rules.parsed is None:
        return rules.policy == "allow all"
    return rules.parsed.can_fetch(url, agent)


@dataclass(slots=True)
class _Entry:
    rules: Rules
    expires: float


MAX_ORIGINS = 1000  # origins whose rules are kept before expired ones are dropped


class RobotsCache:
    """Rules per origin, fetched once (even when many ask at the same moment) and kept
    until they expire."""

    def __init__(
        self,
        get: Get,
        *,
        ttl: float = TTL,
        error_ttl: float = ERROR_TTL,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.get = get
        self.ttl = ttl
        self.error_ttl = error_ttl
        self.clock = clock
        self._entries: dict[str, _Entry] = {}
        self._locks: dict[str, asyncio.Lock] = {}

    async def rules_for(self, url: str) -> Rules:
        where = robots_url(url)
        async with self._locks.setdefault(where, asyncio.Lock()):
            entry = self._entries.get(where)
            if entry is None or self.clock() >= entry.expires:
                rules = rules_from_answer(*await self.get(where))
                ttl = self.error_ttl if rules.policy == "disallow all" else self.ttl
                entry = self._entries[where] = _Entry(rules, self.clock() + ttl)
                self._forget_expired()
            return entry.rules

    def _forget_expired(self) -> None:
        """A daemon meets new origins for ever (whatever items link to): once the cache is
        big, rules past their expiry and idle locks go, so it holds only live origins."""
        if len(self._entries) <= MAX_ORIGINS:
            return
        now = self.clock()
        for where in [w for w, e in self._entries.items() if now >= e.expires]:
            del self._entries[where]
            lock = self._locks.get(where)
            if lock is not None and not lock.locked():
                del self._locks[where]

    async def allowed(self, url: str, agent: str) -> bool:
        return allowed(await self.rules_for(url), url, agent)
