"""Discord's REST rate limits, as the real API applies and reports them.

From Discord's documentation (developers/topics/rate-limits) and what the API
answers:

- Each route has a bucket, per *major parameter* (channel, guild, webhook):
  two channels never share a bucket. A bucket allows ``limit`` requests per
  window; every response carries ``X-RateLimit-Limit``, ``-Remaining``,
  ``-Reset`` (epoch seconds), ``-Reset-After`` (seconds) and ``-Bucket`` (an
  opaque hash that names the bucket).
- Over the limit: HTTP 429 with ``{"message": "You are being rate limited.",
  "retry_after": <seconds>, "global": false, "code": 0}``, ``Retry-After`` and
  ``X-RateLimit-Scope: user``, and the ``Via`` header of Discord's edge (a 429
  without it is Cloudflare refusing the IP, and discord.py then stops).
- The global limit: 50 requests per second per bot, over all routes except
  interaction callbacks and webhooks; a 429 with ``"global": true`` and
  ``X-RateLimit-Global: true``.

Per-route limits used here (the values Discord has answered in its headers):
sending a message 5 per 5 s per channel; editing or deleting one 5 per 5 s
per channel; adding or removing a reaction 1 per 0.25 s per channel; any
other route 50 per second per major parameter.
"""
from __future__ import annotations

import hashlib
import math
import time
from dataclasses import dataclass, field
from typing import Callable, Optional

GLOBAL_LIMIT = 50  # requests per second per bot

# (method, route template) -> (limit, window seconds); routes not listed get DEFAULT.
ROUTE_LIMITS = {
    ("POST", "/channels/{channel_id}/messages"): (5, 5.0),
    ("PATCH", "/channels/{channel_id}/messages/{message_id}"): (5, 5.0),
    ("DELETE", "/channels/{channel_id}/messages/{message_id}"): (5, 5.0),
    ("PUT", "/channels/{channel_id}/messages/{message_id}/reactions/{emoji}/@me"): (1, 0.25),
    ("DELETE", "/channels/{channel_id}/messages/{message_id}/reactions/{emoji}/@me"): (1, 0.25),
    ("DELETE", "/channels/{channel_id}/messages/{message_id}/reactions/{emoji}/{user_id}"): (1, 0.25),
}
DEFAULT = (50, 1.0)
MAJOR = ("channel_id", "guild_id", "webhook_id")
# Interactions answer on their own terms (the 3-second window), not the bot's limits.
EXEMPT_PREFIXES = ("/interactions/", "/webhooks/")


@dataclass
class Bucket:
    limit: int
    window: float
    reset_at: float = 0.0  # monotonic
    used: int = 0


@dataclass
class Verdict:
    """What the limiter says of one request: its headers, and a 429 body when refused."""

    headers: dict = field(default_factory=dict)
    refused: Optional[dict] = None


class RateLimiter:
    def __init__(self, *, enabled: bool = True, clock: Callable[[], float] = time.monotonic,
                 wall: Callable[[], float] = time.time):
        self.enabled = enabled
        self.clock = clock
        self.wall = wall
        self.buckets: dict[tuple, Bucket] = {}
        self._global_window = 0.0
        self._global_used = 0
        self.refused: list[tuple[str, str, float]] = []  # (method, path, retry_after): what the bot ran into

    def check(self, method: str, path: str, template: str, params: dict) -> Verdict:
        if not self.enabled or path.startswith(EXEMPT_PREFIXES):
            return Verdict()
        now = self.clock()
        limit, window = ROUTE_LIMITS.get((method, template), DEFAULT)
        major = next((f"{k}={params[k]}" for k in MAJOR if k in params), "")
        key = (method, template, major)
        bucket = self.buckets.get(key)
        if bucket is None or now >= bucket.reset_at:
            bucket = self.buckets[key] = Bucket(limit, window, reset_at=now + window)
        if now >= self._global_window:
            self._global_window, self._global_used = now + 1.0, 0
        bucket_hash = hashlib.sha1(f"{method} {template}".encode()).hexdigest()[:16]
        if self._global_used >= GLOBAL_LIMIT:
            retry = round(self._global_window - now, 3)
            self.refused.append((method, path, retry))
            return Verdict({"Retry-After": str(math.ceil(retry)), "X-RateLimit-Global": "true",
                            "X-RateLimit-Scope": "global", "Via": "1.1 google"},
                           {"message": "You are being rate limited.", "retry_after": retry, "global": True, "code": 0})
        reset_after = max(0.0, bucket.reset_at - now)
        headers = {
            "X-RateLimit-Limit": str(bucket.limit),
            "X-RateLimit-Bucket": bucket_hash,
            "X-RateLimit-Reset": f"{self.wall() + reset_after:.3f}",
            "X-RateLimit-Reset-After": f"{reset_after:.3f}",
            "Via": "1.1 google",
        }
        if bucket.used >= bucket.limit:
            retry = round(reset_after, 3)
            self.refused.append((method, path, retry))
            headers.update({"X-RateLimit-Remaining": "0", "Retry-After": str(math.ceil(retry)),
                            "X-RateLimit-Scope": "user"})
            return Verdict(headers, {"message": "You are being rate limited.", "retry_after": retry,
                                     "global": False, "code": 0})
        bucket.used += 1
        self._global_used += 1
        headers["X-RateLimit-Remaining"] = str(bucket.limit - bucket.used)
        return Verdict(headers)
